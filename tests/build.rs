//! Builds every plugin the end-to-end tests load (the examples in `plugins/` and the test-only
//! ones in `tests/plugins/`) for `wasm32-wasip2`, with nested `cargo build`s into a target
//! folder of its own (sharing the outer build's would deadlock on its lock), and tells the tests
//! where the `.wasm` files are.
//!
//! Python plugins (`PYTHON_PLUGINS`) are built with `guest-sdk/python/build`, which caches by
//! content, once `tests/python/setup.sh` has installed its toolchain; without it the tests that
//! need them skip (or fail, when `SWITCHYARD_PYTHON_REQUIRED` says the setup succeeded).
//!
//! Two builds: the plugins that take raw upgrades enable the SDK's `raw-upgrade` feature, and
//! cargo unifies a package's features across one build, so built together every plugin would
//! become a `raw-plugin` (and run on the host's dearer engine).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
/// The workspace's profile for plugins (link-time optimised, stripped).
const PROFILE: &str = "plugin";
/// Plugins of the `plugin` world: responses and managed WebSockets.
const PLUGINS: &[&str] = &["hello", "echo", "chat", "managed", "fanout"];
/// Plugins of the `raw-plugin` world (the SDK's `raw-upgrade` feature), built apart.
const RAW_PLUGINS: &[&str] = &["echo-raw", "kv", "misbehave"];
/// Python plugins: the folder holding each one's `plugin.py`, and the name it is built as.
const PYTHON_PLUGINS: &[(&str, &str)] = &[
    ("plugins/hello-py", "hello-py"),
    ("plugins/chat-py", "chat-py"),
    ("tests/plugins/echo-py", "echo-py"),
    ("tests/plugins/misbehave-py", "misbehave-py"),
];
/// The toolchain's marker that `tests/python/setup.sh` (`guest-sdk/python/build --install`)
/// writes last, under `<target>/python`; the version is the one the build script pins.
const PYTHON_TOOLCHAIN_MARKER: &str = "componentize-py-0.25.0/installed";
const WATCHED: &[&str] = &[
    "guest-sdk/rust",
    "guest-sdk/python/switchyard",
    "guest-sdk/python/tools",
    "plugins/hello-py",
    "plugins/chat-py",
    "plugins/hello",
    "plugins/echo",
    "plugins/echo-raw",
    "plugins/chat",
    "plugins/kv",
    "tests/plugins",
    "wit",
    "Cargo.toml",
    "Cargo.lock",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("tests/ sits in the workspace root");
    for path in WATCHED {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    require_target_installed();

    let target_dir = workspace.join("target").join("test-plugins");
    for group in [PLUGINS, RAW_PLUGINS] {
        build_plugins(workspace, &target_dir, group);
    }

    let out = target_dir.join(TARGET).join(PROFILE);
    let python = build_python_plugins(workspace, &out);
    println!("cargo:rustc-env=SWITCHYARD_PYTHON_PLUGINS={python}");
    for name in PLUGINS.iter().chain(RAW_PLUGINS) {
        let wasm = out.join(format!("{}.wasm", name.replace('-', "_")));
        assert!(wasm.is_file(), "{} was not built", wasm.display());
    }
    println!("cargo:rustc-env=SWITCHYARD_TEST_PLUGINS={}", out.display());
}

/// Builds the Python plugins into `out` beside the Rust ones, all at once (each build is one
/// process, mostly single-threaded). Returns `built`, or why they were not built.
fn build_python_plugins(workspace: &Path, out: &Path) -> String {
    println!("cargo:rerun-if-env-changed=SWITCHYARD_PYTHON_REQUIRED");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let python_dir = env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from)
        .join("python");
    let marker = python_dir.join(PYTHON_TOOLCHAIN_MARKER);
    println!("cargo:rerun-if-changed={}", marker.display());
    if !marker.is_file() {
        return format!(
            "componentize-py is not installed ({} is missing); `bash tests/python/setup.sh` installs it",
            marker.display()
        );
    }
    let build = workspace.join("guest-sdk/python/build");
    let builds: Vec<_> = PYTHON_PLUGINS
        .iter()
        .map(|(dir, name)| {
            let wasm = out.join(format!("{}.wasm", name.replace('-', "_")));
            let child = Command::new(&build)
                .arg(workspace.join(dir))
                .arg(&wasm)
                .spawn()
                .expect("running guest-sdk/python/build");
            (*dir, child)
        })
        .collect();
    for (dir, mut child) in builds {
        let status = child.wait().expect("waiting for guest-sdk/python/build");
        assert!(
            status.success(),
            "building the Python plugin {dir} failed ({status}; see the output above)"
        );
    }
    "built".to_owned()
}

/// Builds `plugins` with one nested cargo build.
fn build_plugins(workspace: &Path, target_dir: &Path, plugins: &[&str]) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(workspace)
        .args(["build", "--profile", PROFILE, "--target", TARGET])
        .args(plugins.iter().flat_map(|name| ["-p", name]))
        .env("CARGO_TARGET_DIR", target_dir)
        // Flags and wrappers meant for the outer (host) build must not reach the guests.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET");
    let status = build.status().expect("running the nested cargo build");
    assert!(
        status.success(),
        "building the test plugins failed (see the output above)"
    );
}

/// Fails with the fix spelled out when the WebAssembly target is missing, instead of a wall of
/// "can't find crate for `core`" errors.
fn require_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("running rustc --print sysroot");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    let target_lib = Path::new(&sysroot).join("lib/rustlib").join(TARGET);
    assert!(
        target_lib.is_dir(),
        "the {TARGET} target is not installed; run `rustup target add {TARGET}`"
    );
}
