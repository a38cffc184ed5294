//! The plugins folder a benchmarked host serves: a fresh temporary folder holding plugins the
//! test harness built from source (`echo` and `hello` unless a section asks for others), in a
//! quiet parent folder of its own.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tempfile::TempDir;

/// The plugins every host in the benchmark serves.
const SERVED: &[&str] = &["echo", "hello"];

/// The `.wasm` the test harness built for plugin `name`, checked to exist.
pub(crate) fn built(name: &str) -> anyhow::Result<PathBuf> {
    let path = switchyard_tests::built_plugin(name);
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: rebuild with `cargo build --release -p switchyard-bench`",
        path.display()
    );
    Ok(path)
}

/// A temporary plugins folder, inside a temporary folder of its own: the host also watches
/// the plugins folder's parent (to see the folder replaced), and a parent as busy as `/tmp`
/// would cost the measured host a wake-up for every file anyone makes there. Both are removed
/// when dropped.
pub(crate) struct Folder {
    path: PathBuf,
    _parent: TempDir,
}

impl Folder {
    /// The plugins folder.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// A new temporary folder with `echo.wasm` and `hello.wasm`; removed when dropped.
pub(crate) fn folder() -> anyhow::Result<Folder> {
    folder_with(SERVED)
}

/// A new temporary folder with the plugins `names` (workspace names: `echo-raw` is built as
/// `echo_raw.wasm` and installed as `echo-raw.wasm`, so it serves `/echo-raw`); removed when
/// dropped.
pub(crate) fn folder_with(names: &[&str]) -> anyhow::Result<Folder> {
    let parent = tempfile::Builder::new()
        .prefix("switchyard-bench-")
        .tempdir()
        .context("creating a temporary folder for the plugins folder")?;
    let path = parent.path().join("plugins");
    std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
    for name in names {
        install(&path, name, name)?;
    }
    Ok(Folder {
        path,
        _parent: parent,
    })
}

/// Puts plugin `built_name` into `dir` as `<as_name>.wasm` the way the README says to
/// replace a live plugin: copy to a hidden temporary name, then rename over, so the host never
/// sees a half-written file.
pub(crate) fn install(dir: &Path, built_name: &str, as_name: &str) -> anyhow::Result<()> {
    let staging = dir.join(format!(".{as_name}.incoming"));
    std::fs::copy(built(built_name)?, &staging)
        .with_context(|| format!("copying {built_name}.wasm into {}", dir.display()))?;
    std::fs::rename(&staging, dir.join(format!("{as_name}.wasm")))
        .with_context(|| format!("renaming {} into place", staging.display()))
}

/// Copies plugin `built_name` to a hidden staging name in `dir`, to be renamed into place
/// later by the caller (who times the rename).
pub(crate) fn stage(dir: &Path, built_name: &str) -> anyhow::Result<PathBuf> {
    let staging = dir.join(format!(".{built_name}.staged"));
    std::fs::copy(built(built_name)?, &staging)
        .with_context(|| format!("staging {built_name}.wasm in {}", dir.display()))?;
    Ok(staging)
}
