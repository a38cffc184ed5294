//! Which of the contract's worlds a plugin is, read from the component's top-level exports
//! before it is compiled, so the engine that suits it compiles it: a component exporting
//! `raw-upgrade` is a `raw-plugin` and needs component-model concurrency; any other is a
//! `plugin` and runs on the engine without it (see [`runtime`](crate::engine::runtime)).
//!
//! Reading the export names costs one pass over the section headers (microseconds), not a
//! compile; a binary that cannot be read this way is left to the compiler, which then says what
//! is wrong with it.

use wasmparser::{Parser, Payload};

use crate::engine::runtime::EngineKind;

/// The export that makes a component a `raw-plugin`: the WIT package's `raw-upgrade`
/// interface at the one version the host supports.
pub(crate) const RAW_UPGRADE_EXPORT: &str = "switchyard:plugin/raw-upgrade@0.3.0";

/// The engine a component runs on, from its top-level exports.
pub(crate) fn engine_for(component: &[u8]) -> EngineKind {
    if exports_raw_upgrade(component) {
        EngineKind::Concurrent
    } else {
        EngineKind::Plain
    }
}

/// Whether the outermost component exports [`RAW_UPGRADE_EXPORT`]. Nested modules and
/// components are stepped over: their exports are not the plugin's. Reading stops at the first
/// malformed section; what was read until then decides.
fn exports_raw_upgrade(component: &[u8]) -> bool {
    // Each module or component, the outermost included, starts with a `Version` payload and
    // ends with an `End`: depth 1 is the outermost component.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(component) {
        match payload {
            Ok(Payload::Version { .. }) => depth = depth.saturating_add(1),
            Ok(Payload::End(_)) => depth = depth.saturating_sub(1),
            Ok(Payload::ComponentExportSection(exports)) if depth == 1 => {
                for export in exports {
                    match export {
                        Ok(export) if export.name.name == RAW_UPGRADE_EXPORT => return true,
                        Ok(_) => {}
                        Err(_) => return false,
                    }
                }
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component there is: its magic, version and layer, and nothing else.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    #[test]
    fn a_component_without_exports_is_plain() {
        assert_eq!(engine_for(EMPTY_COMPONENT), EngineKind::Plain);
    }

    #[test]
    fn bytes_that_are_no_component_are_left_to_the_compiler() {
        assert_eq!(engine_for(b"not wasm at all"), EngineKind::Plain);
        assert_eq!(engine_for(b""), EngineKind::Plain);
    }

    /// The name matches the WIT package the host is built from.
    #[test]
    fn the_export_name_is_the_contracts() {
        let wit = include_str!("../../../wit/switchyard.wit");
        let version = wit
            .lines()
            .find_map(|line| line.strip_prefix("package switchyard:plugin@"))
            .and_then(|rest| rest.strip_suffix(';'))
            .expect("the package line");
        assert_eq!(
            RAW_UPGRADE_EXPORT,
            format!("switchyard:plugin/raw-upgrade@{version}")
        );
        assert!(wit.contains("interface raw-upgrade {"));
    }
}
