//! Whether the Python plugins were built. `tests/build.rs` builds them with
//! `guest-sdk/python/build` once `tests/python/setup.sh` (run by `tests/run-all.sh`) has
//! installed componentize-py. Without them a test is skipped with a loud message on stderr; it
//! fails instead when run-all.sh said the setup succeeded (`SWITCHYARD_PYTHON_REQUIRED`), and is
//! skipped with the setup's reason when PyPI was unreachable (`SWITCHYARD_PYTHON_SKIP`).

use std::sync::OnceLock;

/// The Python plugins `tests/build.rs` builds (its `PYTHON_PLUGINS`).
const PLUGINS: &[&str] = &["hello-py", "chat-py", "echo-py", "misbehave-py"];

/// What `tests/build.rs` said about the Python plugins: `built`, or why not.
const BUILT: &str = env!("SWITCHYARD_PYTHON_PLUGINS");

/// `true` when the Python plugins were built; otherwise says loudly why `test` is skipped and
/// returns `false`. Panics if run-all.sh said the toolchain was installed but they were not
/// built.
pub fn python_plugins_ready(test: &str) -> bool {
    if BUILT == "built" {
        // The first caller compiles them into the test hosts' artifact cache while the others
        // wait, instead of every test host compiling them at once.
        static COMPILED: OnceLock<()> = OnceLock::new();
        COMPILED.get_or_init(|| crate::host::precompile(PLUGINS));
        return true;
    }
    if let Some(reason) = std::env::var_os("SWITCHYARD_PYTHON_SKIP") {
        eprintln!("\n!!! SKIPPED {test}: {}\n", reason.to_string_lossy());
        return false;
    }
    assert!(
        std::env::var_os("SWITCHYARD_PYTHON_REQUIRED").is_none(),
        "tests/python/setup.sh reported componentize-py installed, but the Python plugins were \
         not built: {BUILT} (touch tests/build.rs to rebuild them)"
    );
    eprintln!("\n!!! SKIPPED {test}: {BUILT}\n");
    false
}
