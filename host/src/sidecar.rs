//! The optional `<name>.toml` beside a plugin's `.wasm`: settings an operator gives one plugin.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::config::PluginLimits;

/// Bytes in a mebibyte, for `memory_mib`.
const MIB: u64 = 1 << 20;

/// Settings read from a plugin's sidecar file. Unknown keys are refused so a typo is an error,
/// not a silently ignored setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// Path prefix the plugin serves instead of `/<name>`, e.g. `/api/chat`. The plugin then
    /// answers that path and everything below it.
    pub route: Option<String>,
    /// Limits for this plugin, over the host's defaults.
    #[serde(default)]
    pub limits: LimitOverrides,
}

/// The `[limits]` table: each key, when present, replaces the host's default for this plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Linear memory per instance, in MiB; at most the host's `--memory-mib`.
    pub memory_mib: Option<u64>,
    /// Wall time `handle` may take, in milliseconds.
    pub handle_timeout_ms: Option<u64>,
    /// CPU time per session, in milliseconds.
    pub session_cpu_ms: Option<u64>,
    /// CPU time per wake-up of a session, in milliseconds.
    pub run_cpu_ms: Option<u64>,
    /// Time from the `101` until the connection is handed over, in milliseconds.
    pub handshake_timeout_ms: Option<u64>,
    /// Time a session may pass with no bytes either way, in milliseconds.
    pub idle_timeout_ms: Option<u64>,
    /// Longest a session may last, in seconds.
    pub max_session_secs: Option<u64>,
    /// Sessions of this plugin alive at once.
    pub max_sessions: Option<u32>,
    /// `handle` calls of this plugin in progress at once.
    pub max_concurrent_requests: Option<u32>,
    /// Protocols this plugin may switch to, e.g. `["websocket"]`.
    pub allowed_upgrades: Option<Vec<String>>,
}

impl LimitOverrides {
    /// The host's defaults with these overrides applied. Memory cannot exceed the host's own
    /// maximum: the pooling allocator reserved slots of that size.
    pub fn apply(&self, defaults: &PluginLimits) -> Result<PluginLimits, String> {
        let mut limits = defaults.clone();
        if let Some(mib) = self.memory_mib {
            let bytes = mib.saturating_mul(MIB);
            if bytes > defaults.max_memory_bytes as u64 {
                return Err(format!(
                    "memory_mib = {mib} is above the host's maximum of {} MiB (--memory-mib)",
                    defaults.max_memory_bytes as u64 / MIB
                ));
            }
            limits.max_memory_bytes = bytes as usize;
        }
        let millis = Duration::from_millis;
        if let Some(ms) = self.handle_timeout_ms {
            limits.handle_timeout = millis(ms);
        }
        if let Some(ms) = self.session_cpu_ms {
            limits.session_cpu_budget = millis(ms);
        }
        if let Some(ms) = self.run_cpu_ms {
            limits.run_cpu_limit = millis(ms);
        }
        if let Some(ms) = self.handshake_timeout_ms {
            limits.handshake_timeout = millis(ms);
        }
        if let Some(ms) = self.idle_timeout_ms {
            limits.idle_timeout = millis(ms);
        }
        if let Some(secs) = self.max_session_secs {
            limits.max_session_duration = Some(Duration::from_secs(secs));
        }
        if let Some(max) = self.max_sessions {
            limits.max_sessions = max;
        }
        if let Some(max) = self.max_concurrent_requests {
            limits.max_concurrent_requests = max;
        }
        if let Some(allowed) = &self.allowed_upgrades {
            limits.allowed_upgrades = Some(allowed.clone());
        }
        Ok(limits)
    }
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
    fn overrides_replace_defaults_within_the_host_maximum() {
        let settings: PluginSettings = toml::from_str(
            "[limits]\nmemory_mib = 16\nidle_timeout_ms = 250\nallowed_upgrades = [\"websocket\"]",
        )
        .unwrap();
        let limits = settings.limits.apply(&PluginLimits::default()).unwrap();
        assert_eq!(limits.max_memory_bytes, 16 << 20);
        assert_eq!(limits.idle_timeout, Duration::from_millis(250));
        assert_eq!(limits.allowed_upgrades, Some(vec!["websocket".to_owned()]));
        let too_big = LimitOverrides {
            memory_mib: Some(1 << 20),
            ..LimitOverrides::default()
        };
        assert!(too_big.apply(&PluginLimits::default()).is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<PluginSettings>("rout = \"/x\"").unwrap_err();
        assert!(err.message().contains("unknown field"), "{err}");
    }
}
