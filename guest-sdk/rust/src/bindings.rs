//! The WIT bindings for the `switchyard:plugin` world (`raw-plugin` with the `raw-upgrade`
//! feature), generated at build time from `wit/`.
//!
//! This is the crate's only `generate!` call. Plugin code never names these types: the rest of
//! the SDK converts them into its own. The module is public only because the expansion of
//! [`export!`](crate::export) refers to it from inside plugin crates.

// The generated code is not ours to document or restrict: it needs `unsafe` for the canonical
// ABI and declares `pub` items inside private modules.
#![allow(missing_docs, unreachable_pub, unsafe_code)]

// A plugin is a `plugin` (responses and managed WebSockets) unless it opts into raw upgrades
// with the `raw-upgrade` feature; the host runs the two on differently configured engines.
#[cfg(not(feature = "raw-upgrade"))]
wit_bindgen::generate!({
    // Relative to this crate's manifest directory: the workspace's one WIT package.
    path: "../../wit",
    world: "plugin",
    // Plugin crates depend on this crate only, so both the generated runtime paths and the
    // export macro's default bindings path go through `switchyard_sdk`.
    runtime_path: "switchyard_sdk::__private::wit_bindgen::rt",
    default_bindings_module: "switchyard_sdk::bindings",
    pub_export_macro: true,
    // Keeps the name `export!` free for the SDK's own macro.
    export_macro_name: "__export_plugin",
});

#[cfg(feature = "raw-upgrade")]
wit_bindgen::generate!({
    // Relative to this crate's manifest directory: the workspace's one WIT package.
    path: "../../wit",
    world: "raw-plugin",
    // Plugin crates depend on this crate only, so both the generated runtime paths and the
    // export macro's default bindings path go through `switchyard_sdk`.
    runtime_path: "switchyard_sdk::__private::wit_bindgen::rt",
    default_bindings_module: "switchyard_sdk::bindings",
    pub_export_macro: true,
    // Keeps the name `export!` free for the SDK's own macro.
    export_macro_name: "__export_plugin",
});
