//! Whether the external servers the scale-out tests run (redis-server, nginx) are installed.
//! `tests/services/setup.sh` (run by `tests/run-all.sh`) installs them. Without them a test is
//! skipped with a loud message on stderr; it fails instead when run-all.sh said they were ready
//! (`SWITCHYARD_SCALEOUT_REQUIRED`), and is skipped with the setup's reason when a registry was
//! unreachable (`SWITCHYARD_SCALEOUT_SKIP`).

use std::path::Path;

use crate::nginx::NGINX;
use crate::redis::RedisServer;

/// `true` when redis-server and nginx are installed; otherwise says loudly why the calling test
/// is skipped and returns `false`. Panics if run-all.sh said they were installed but they are
/// not there.
pub fn scaleout_tools_ready(test: &str) -> bool {
    if let Some(reason) = std::env::var_os("SWITCHYARD_SCALEOUT_SKIP") {
        skip_loudly(test, &reason.to_string_lossy());
        return false;
    }
    let mut missing: Vec<&str> = Vec::new();
    if !RedisServer::available() {
        missing.push("redis-server");
    }
    if !Path::new(NGINX).is_file() {
        missing.push(NGINX);
    }
    if missing.is_empty() {
        return true;
    }
    let reason = format!(
        "missing {}; `bash tests/services/setup.sh` installs them",
        missing.join(", ")
    );
    assert!(
        std::env::var_os("SWITCHYARD_SCALEOUT_REQUIRED").is_none(),
        "tests/services/setup.sh reported the scale-out tools ready, but: {reason}"
    );
    skip_loudly(test, &reason);
    false
}

fn skip_loudly(test: &str, reason: &str) {
    eprintln!("\n!!! SKIPPED {test}: {reason}\n");
}
