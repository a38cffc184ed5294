//! The optional `<name>.toml` beside a plugin's `.wasm`: settings an operator gives one plugin.

use std::path::Path;

use serde::Deserialize;

/// Settings read from a plugin's sidecar file. Unknown keys are refused so a typo is an error,
/// not a silently ignored setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// Path prefix the plugin serves instead of `/<name>`, e.g. `/api/chat`. The plugin then
    /// answers that path and everything below it.
    pub route: Option<String>,
}

impl PluginSettings {
    /// Reads the sidecar at `path`; a missing file means default settings.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(err) => return Err(format!("cannot read: {err}")),
        };
        let settings: Self = toml::from_str(&text).map_err(|err| err.message().to_owned())?;
        if let Some(route) = &settings.route {
            validate_route(route)?;
        }
        Ok(settings)
    }
}

/// A route is an absolute path prefix without a query, a trailing slash (except `/` itself) or
/// empty segments, so that matching by segments is unambiguous.
fn validate_route(route: &str) -> Result<(), String> {
    let well_formed = route.starts_with('/')
        && !route.contains(['?', '#', ' '])
        && (route == "/" || (!route.ends_with('/') && !route.contains("//")));
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "route {route:?} must be an absolute path like \"/api/chat\" (no query, no trailing slash)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_absolute_prefixes() {
        assert!(validate_route("/").is_ok());
        assert!(validate_route("/api/chat").is_ok());
        assert!(validate_route("api").is_err());
        assert!(validate_route("/api/").is_err());
        assert!(validate_route("/a//b").is_err());
        assert!(validate_route("/a?b").is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<PluginSettings>("rout = \"/x\"").unwrap_err();
        assert!(err.message().contains("unknown field"), "{err}");
    }
}
