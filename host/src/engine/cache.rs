//! The compiled-artifact cache: plugins compiled once are kept as native code on disk, keyed by
//! the plugin's content hash and the engine that compiled it (which of the host's engines, and
//! that engine's configuration), so a restart or a re-dropped file loads in a fraction of a
//! millisecond instead of recompiling.
//!
//! The cache holds native code that wasmtime runs without checking, so it must only ever hold
//! files this host wrote: it lives in a folder of the host's own (created private), never in the
//! plugins folder, whose writers are only trusted with sandboxed WebAssembly. Like OpenSSH's
//! `StrictModes`, the folder and every entry are checked before use: owned by the host's user
//! and writable by nobody else, or not used at all (the plugin is compiled instead). Nobody else
//! can then put a file in the folder or change one; the entry's header, which holds the full
//! SHA-256 of the `.wasm` it was compiled from, makes sure an entry copied or renamed into
//! another plugin's place is not run for it.

use std::fs::Metadata;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::engine::runtime::EngineKind;

/// File extension of a cached component.
const ARTIFACT_EXTENSION: &str = "cwasm";
/// How an entry starts; a new layout gets a new number, so older entries are recompiled.
const ENTRY_MAGIC: &[u8] = b"switchyard-artifact-1\n";
/// Mode bits that let the group or others write.
const WRITABLE_BY_OTHERS: u32 = 0o022;
/// Mode of the cache folder when the host creates it, and of every entry it writes.
const PRIVATE_DIR_MODE: u32 = 0o700;
const PRIVATE_FILE_MODE: u32 = 0o600;

/// SHA-256 of a plugin's `.wasm`.
pub type ContentHash = [u8; 32];

/// Where compiled components are kept, for one engine: each of the host's engines has its own
/// entries, since one engine's native code cannot run on the other.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    /// Distinguishes engines whose artifacts are not interchangeable: which of the host's
    /// engines, then wasmtime version, CPU features and configuration.
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
    /// A cache in `dir` (created if missing, private to this user) for `engine`, the host's
    /// `kind` engine. `None`, with a
    /// warning saying why, if the folder is not the host user's own or others may write it:
    /// plugins are then compiled on every load. Fails only if the folder cannot be created.
    pub fn open(dir: &Path, engine: &Engine, kind: EngineKind) -> anyhow::Result<Option<Self>> {
        create_private_dir(dir)
            .with_context(|| format!("creating the compiled-plugin cache {}", dir.display()))?;
        let meta = std::fs::metadata(dir)
            .with_context(|| format!("inspecting the compiled-plugin cache {}", dir.display()))?;
        if let Some(reason) = untrusted(&meta) {
            tracing::warn!(
                dir = %dir.display(),
                "compiled-plugin cache not used: the folder {reason}; every plugin is compiled on load (make it private: chmod 700, owned by this user)"
            );
            return Ok(None);
        }
        Ok(Some(Self {
            dir: dir.to_owned(),
            engine_key: engine_key(engine, kind),
        }))
    }

    /// The same folder, already checked, for another of the host's engines.
    pub fn for_engine(&self, engine: &Engine, kind: EngineKind) -> Self {
        Self {
            dir: self.dir.clone(),
            engine_key: engine_key(engine, kind),
        }
    }

    /// The component for `wasm` (whose SHA-256 is `hash`): from the cache if it is there,
    /// trusted and made from these bytes, otherwise compiled and then stored. A cache that
    /// cannot be read or written only costs time; it never fails the load.
    pub fn component(
        &self,
        engine: &Engine,
        wasm: &[u8],
        hash: &ContentHash,
    ) -> wasmtime::Result<(Component, Origin)> {
        let path = self.dir.join(format!(
            "{}-{}.{ARTIFACT_EXTENSION}",
            hex(hash),
            self.engine_key
        ));
        match read_entry(&path, hash) {
            Ok(Some(native)) => {
                // SAFETY: `Component::deserialize` runs the bytes as native code without
                // checking them. They come from a file owned by this user that nobody else may
                // write, in a folder nobody else may write, where only `store` below writes:
                // output of `Engine::precompile_component`, for this engine configuration
                // (the key) and these exact `.wasm` bytes (the header just checked).
                #[allow(unsafe_code)]
                let cached = unsafe { Component::deserialize(engine, &native) };
                match cached {
                    Ok(component) => return Ok((component, Origin::Cached)),
                    Err(err) => {
                        tracing::warn!(file = %path.display(), "ignoring an unusable compiled plugin: {err}")
                    }
                }
            }
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(file = %path.display(), "ignoring a compiled plugin: {reason}; compiling instead")
            }
        }
        let native = engine.precompile_component(wasm)?;
        // SAFETY: `native` was produced just now by `precompile_component` on this engine.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &native)? };
        if let Err(err) = store(&path, hash, &native) {
            tracing::warn!(file = %path.display(), "could not cache the compiled plugin: {err:#}");
        }
        Ok((component, Origin::Compiled))
    }
}

/// What names `engine`'s entries: the engine's name as well as its configuration's hash. The
/// hash alone already differs between the host's two engines; the name keeps them apart should
/// a wasmtime upgrade ever make them hash alike, and says in a listing whose entry is whose.
fn engine_key(engine: &Engine, kind: EngineKind) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{kind}-{:016x}", hasher.finish())
}

/// The native code in the entry at `path`: `None` if there is none, an error saying why if it
/// must not be used.
fn read_entry(path: &Path, hash: &ContentHash) -> Result<Option<Vec<u8>>, String> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("cannot open it: {err}")),
    };
    // Checked on the open file, so it is the file that is then read.
    let meta = file
        .metadata()
        .map_err(|err| format!("cannot inspect it: {err}"))?;
    if !meta.is_file() {
        return Err("it is not a regular file".to_owned());
    }
    if let Some(reason) = untrusted(&meta) {
        return Err(format!("the file {reason}"));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|err| format!("cannot read it: {err}"))?;
    let made_from_these_bytes = bytes
        .strip_prefix(ENTRY_MAGIC)
        .is_some_and(|rest| rest.starts_with(hash));
    if !made_from_these_bytes {
        return Err("it was not compiled from this plugin's exact bytes".to_owned());
    }
    // Just checked to be there.
    bytes.drain(..ENTRY_MAGIC.len() + hash.len());
    Ok(Some(bytes))
}

/// Why a cache folder or entry with `meta` may not be trusted with native code, if so: it must
/// be owned by the host's user, and neither its group nor others may write it.
fn untrusted(meta: &Metadata) -> Option<String> {
    let own = rustix::process::geteuid().as_raw();
    if meta.uid() != own {
        return Some(format!(
            "is owned by user id {}, not by this host's user id {own}",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    (mode & WRITABLE_BY_OTHERS != 0)
        .then(|| format!("can be written by its group or by others (mode {mode:o})"))
}

/// Writes the entry for `hash` to `path` atomically (private temporary file, then rename), so a
/// reader never sees a half-written artifact.
fn store(path: &Path, hash: &ContentHash, native: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let staging = path.with_extension(format!("{ARTIFACT_EXTENSION}.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE_MODE)
        .open(&staging)
        .context("creating")?;
    file.write_all(ENTRY_MAGIC)
        .and_then(|()| file.write_all(hash))
        .and_then(|()| file.write_all(native))
        .context("writing")?;
    std::fs::rename(&staging, path).context("renaming into place")?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
}

/// `hash` in lower-case hex.
pub(crate) fn hex(hash: &ContentHash) -> String {
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The default cache folder: `$XDG_CACHE_HOME/switchyard`, else `~/.cache/switchyard`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("switchyard"))
}
