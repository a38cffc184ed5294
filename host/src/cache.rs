//! The compiled-artifact cache: plugins compiled once are kept as native code on disk, keyed by
//! the plugin's content hash and the engine's configuration, so a restart or a re-dropped file
//! loads in a fraction of a millisecond instead of recompiling.
//!
//! The cache holds native code that wasmtime runs without checking, so it must only ever hold
//! files this host wrote: it lives in a folder of the host's own (created private), never in the
//! plugins folder, whose writers are only trusted with sandboxed WebAssembly.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use wasmtime::Engine;
use wasmtime::component::Component;

/// File extension of a cached component.
const ARTIFACT_EXTENSION: &str = "cwasm";

/// Where compiled components are kept, for one engine configuration.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    /// Distinguishes engines whose artifacts are not interchangeable (wasmtime version, CPU
    /// features, configuration).
    engine_key: String,
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled from the `.wasm` just now.
    Compiled,
    /// Loaded from the cache.
    Cached,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Compiled => "compiled",
            Origin::Cached => "cached",
        })
    }
}

impl ArtifactCache {
    /// A cache in `dir` (created if missing, readable only by this user) for `engine`.
    pub fn open(dir: &Path, engine: &Engine) -> anyhow::Result<Self> {
        create_private_dir(dir)
            .with_context(|| format!("creating the compiled-plugin cache {}", dir.display()))?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_owned(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    /// The component for `wasm` (whose SHA-256 in hex is `digest`): from the cache if it is
    /// there and loads, otherwise compiled and then stored. A cache that cannot be read or
    /// written only costs time; it never fails the load.
    pub fn component(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &str,
    ) -> wasmtime::Result<(Component, Origin)> {
        let path = self
            .dir
            .join(format!("{digest}-{}.{ARTIFACT_EXTENSION}", self.engine_key));
        if let Ok(native) = std::fs::read(&path) {
            // SAFETY: `Component::deserialize` runs the bytes as native code without checking
            // them. They come from this cache's private folder, where only `store` below writes,
            // and only output of `Engine::precompile_component` for this engine configuration.
            #[allow(unsafe_code)]
            let cached = unsafe { Component::deserialize(engine, &native) };
            match cached {
                Ok(component) => return Ok((component, Origin::Cached)),
                Err(err) => {
                    tracing::warn!(file = %path.display(), "ignoring an unusable compiled plugin: {err}")
                }
            }
        }
        let native = engine.precompile_component(wasm)?;
        // SAFETY: `native` was produced just now by `precompile_component` on this engine.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &native)? };
        if let Err(err) = store(&path, &native) {
            tracing::warn!(file = %path.display(), "could not cache the compiled plugin: {err:#}");
        }
        Ok((component, Origin::Compiled))
    }
}

/// Writes `bytes` to `path` atomically (temporary file, then rename), so a reader never sees a
/// half-written artifact.
fn store(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let staging = path.with_extension(format!("{ARTIFACT_EXTENSION}.{}.tmp", std::process::id()));
    std::fs::write(&staging, bytes).context("writing")?;
    std::fs::rename(&staging, path).context("renaming into place")?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The default cache folder: `$XDG_CACHE_HOME/switchyard`, else `~/.cache/switchyard`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("switchyard"))
}
