//! The optional `<name>.toml` beside a plugin's `.wasm`: settings an operator gives one plugin.

use std::path::Path;

use serde::Deserialize;

use crate::config::docs::ALLOWED_UPGRADES_KEY;
use crate::config::limits::{self, MIB};
use crate::config::{InstanceModel, PluginLimits};
use crate::topics::Overflow;

/// Settings read from a plugin's sidecar file. Unknown keys are refused so a typo is an error,
/// not a silently ignored setting.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// Path prefix the plugin serves instead of `/<name>`, e.g. `/api/chat`. The plugin then
    /// answers that path and everything below it.
    pub route: Option<String>,
    /// What a publish does to one of this plugin's managed WebSockets whose outbound buffer is
    /// full: `"close"` it (the default) or `"drop"` the message for it.
    pub overflow: Option<OverflowSetting>,
    /// Whether the plugin's managed WebSockets each get an instance of their own
    /// (`"per-connection"`, the default) or share a few (`"shared"`).
    pub instances: Option<InstancesSetting>,
    /// The `[limits]` table: each key, when present, replaces the host's default for this
    /// plugin. Kept as read; [`PluginSettings::limits`] checks it against the declarations in
    /// [`crate::config::limits::PLUGIN`].
    #[serde(default)]
    limits: toml::Table,
}

impl PluginSettings {
    /// The host's defaults with this sidecar's `[limits]` applied. Every key must be a
    /// declared per-plugin limit and every value within its range; memory cannot exceed the
    /// host's own maximum, because the pooling allocator reserved slots of that size.
    pub fn limits(&self, defaults: &PluginLimits) -> Result<PluginLimits, String> {
        let mut limits = defaults.clone();
        if let Some(overflow) = self.overflow {
            limits.overflow = overflow.into();
        }
        if let Some(instances) = self.instances {
            limits.instances = instances.into();
        }
        for (key, value) in &self.limits {
            if key == ALLOWED_UPGRADES_KEY {
                limits.allowed_upgrades = Some(protocol_list(value)?);
                continue;
            }
            let Some(limit) = limits::PLUGIN.iter().find(|l| l.sidecar_key == Some(key)) else {
                return Err(format!("unknown key {key:?} in [limits]"));
            };
            let number = value
                .as_integer()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| format!("[limits] {key} must be a whole number, not {value}"))?;
            limit.try_set(&mut limits, number, &format!("[limits] {key}"))?;
        }
        if limits.max_memory_bytes > defaults.max_memory_bytes {
            return Err(format!(
                "[limits] memory_mib = {} is above the host's maximum of {} MiB (--memory-mib)",
                limits.max_memory_bytes as u64 / MIB,
                defaults.max_memory_bytes as u64 / MIB
            ));
        }
        Ok(limits)
    }
}

/// The sidecar's `overflow` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverflowSetting {
    /// Close the connection (`1008`).
    Close,
    /// Drop the message for that connection.
    Drop,
}

impl From<OverflowSetting> for Overflow {
    fn from(setting: OverflowSetting) -> Self {
        match setting {
            OverflowSetting::Close => Overflow::Close,
            OverflowSetting::Drop => Overflow::DropMessage,
        }
    }
}

/// The sidecar's `instances` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstancesSetting {
    /// An instance per awake connection.
    PerConnection,
    /// A few instances all the plugin's connections share, one event at a time each.
    Shared,
}

impl From<InstancesSetting> for InstanceModel {
    fn from(setting: InstancesSetting) -> Self {
        match setting {
            InstancesSetting::PerConnection => InstanceModel::PerConnection,
            InstancesSetting::Shared => InstanceModel::Shared,
        }
    }
}

/// `allowed_upgrades`: a list of protocol names as a client's `Upgrade:` header carries them
/// (RFC 9110 `protocol-name ["/" protocol-version]`, both tokens).
fn protocol_list(value: &toml::Value) -> Result<Vec<String>, String> {
    let invalid = || {
        format!(
            "[limits] {ALLOWED_UPGRADES_KEY} must be a list of protocol names like [\"websocket\", \"kv/1\"], not {value}"
        )
    };
    let items = value.as_array().ok_or_else(invalid)?;
    items
        .iter()
        .map(|item| {
            let name = item.as_str().ok_or_else(invalid)?;
            if is_protocol(name) {
                Ok(name.to_owned())
            } else {
                Err(format!(
                    "[limits] {ALLOWED_UPGRADES_KEY}: {name:?} is not a protocol name (a token, optionally /version)"
                ))
            }
        })
        .collect()
}

/// `token ["/" token]`, with RFC 9110's token characters.
fn is_protocol(name: &str) -> bool {
    let mut parts = name.splitn(2, '/');
    let is_token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    parts.next().is_some_and(is_token) && parts.next().is_none_or(is_token)
}

impl PluginSettings {
    /// Reads the sidecar at `path`; a missing file means default settings.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(err) => return Err(format!("cannot read: {err}")),
        };
        let settings: Self = toml::from_str(&text).map_err(|err| describe(&err, &text))?;
        if let Some(route) = &settings.route {
            validate_route(route)?;
        }
        Ok(settings)
    }
}

/// A TOML error on one line, naming the line it is about (the parser's own rendering spans
/// several lines).
fn describe(err: &toml::de::Error, text: &str) -> String {
    let line = err
        .span()
        .and_then(|span| text.get(..span.start))
        .map(|before| before.matches('\n').count());
    match line.and_then(|index| Some((index + 1, text.lines().nth(index)?.trim()))) {
        Some((number, content)) => format!("line {number} ({content:?}): {}", err.message()),
        None => err.message().to_owned(),
    }
}

/// A route is `/` or an absolute path prefix of one or more segments, each of which a client can
/// send as is (see [`check_segment`]): no query, no trailing slash, no empty or dot segments, no
/// percent-encoding. So a route is already in the normal form requests are routed by, and
/// matching by segments is unambiguous.
fn validate_route(route: &str) -> Result<(), String> {
    if route == "/" {
        return Ok(());
    }
    let Some(segments) = route.strip_prefix('/') else {
        return Err(format!(
            "route {route:?} must be an absolute path like \"/api/chat\""
        ));
    };
    segments
        .split('/')
        .try_for_each(check_segment)
        .map_err(|reason| format!("route {route:?} is not usable: {reason}"))
}

/// Whether a client can send `c` in a path without percent-encoding it: RFC 3986's unreserved
/// characters, ASCII only.
fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~')
}

/// Checks one path segment of a route (or a plugin name, which becomes one): not empty, not `.`
/// or `..` (a client's path is normalised before routing, so it never holds one), and only
/// unreserved characters, so the segment reads the same encoded or not.
pub(crate) fn check_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err("empty segment (a trailing slash or \"//\")".to_owned());
    }
    if segment == "." || segment == ".." {
        return Err(format!("dot segment {segment:?}"));
    }
    match segment.chars().find(|&c| !is_unreserved(c)) {
        Some(c) => Err(format!(
            "{c:?} is not allowed: only ASCII letters, digits, '-', '_', '.' and '~' can be sent unencoded"
        )),
        None => Ok(()),
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
        assert!(validate_route("/.well-known/x~y_z-1.2").is_ok());
        for bad in [
            "/a/../hello",
            "/..",
            "/.",
            "/a/./b",
            "/%2e%2e",
            "/a b",
            "/ü",
            "//",
            "/a#b",
        ] {
            assert!(validate_route(bad).is_err(), "{bad}");
        }
    }

    fn limits_of(toml: &str) -> Result<PluginLimits, String> {
        let settings: PluginSettings = toml::from_str(toml).map_err(|e| describe(&e, toml))?;
        settings.limits(&PluginLimits::default())
    }

    #[test]
    fn overrides_replace_defaults_within_the_host_maximum() {
        let limits = limits_of(
            "[limits]\nmemory_mib = 16\nidle_timeout_ms = 250\nallowed_upgrades = [\"websocket\", \"kv/1\"]",
        )
        .unwrap();
        assert_eq!(limits.max_memory_bytes, 16 << 20);
        assert_eq!(limits.idle_timeout, std::time::Duration::from_millis(250));
        assert_eq!(
            limits.allowed_upgrades,
            Some(vec!["websocket".to_owned(), "kv/1".to_owned()])
        );
        assert!(limits_of("[limits]\nmemory_mib = 1024").is_err());
    }

    #[test]
    fn useless_or_malformed_limits_are_refused() {
        for (toml, expected) in [
            ("[limits]\nmemory_mib = 0", "memory_mib = 0 is out of range"),
            (
                "[limits]\nidle_timeout_ms = 0",
                "idle_timeout_ms = 0 is out of range",
            ),
            (
                "[limits]\nmax_session_secs = 0",
                "max_session_secs = 0 is out of range",
            ),
            (
                "[limits]\nsession_cpu_ms = 0",
                "session_cpu_ms = 0 is out of range",
            ),
            ("[limits]\nrun_cpu_ms = 0", "run_cpu_ms = 0 is out of range"),
            (
                "[limits]\nhandle_timeout_ms = 18446744073709551615",
                "line 2 (\"handle_timeout_ms = 18446744073709551615\"): ",
            ),
            (
                "[limits]\nhandle_timeout_ms = 86400000",
                "handle_timeout_ms = 86400000 is out of range",
            ),
            ("[limits]\nhandle_timeout_ms = -1", "must be a whole number"),
            (
                "[limits]\nallowed_upgrades = [\"a b\", \"\"]",
                "\"a b\" is not a protocol name",
            ),
            (
                "[limits]\nallowed_upgrades = [\"\"]",
                "\"\" is not a protocol name",
            ),
            (
                "[limits]\nallowed_upgrades = \"websocket\"",
                "must be a list",
            ),
            ("[limits]\nmemory = 3", "unknown key \"memory\""),
        ] {
            let err = limits_of(toml).unwrap_err();
            assert!(err.contains(expected), "{toml}: {err}");
        }
    }

    #[test]
    fn instances_are_per_connection_unless_shared_is_asked_for() {
        use crate::config::InstanceModel;
        assert_eq!(
            limits_of("").unwrap().instances,
            InstanceModel::PerConnection
        );
        assert_eq!(
            limits_of("instances = \"shared\"").unwrap().instances,
            InstanceModel::Shared
        );
        assert_eq!(
            limits_of("instances = \"per-connection\"")
                .unwrap()
                .instances,
            InstanceModel::PerConnection
        );
        let err = limits_of("instances = \"pooled\"").unwrap_err();
        assert!(
            err.contains("per-connection") && err.contains("shared"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<PluginSettings>("rout = \"/x\"").unwrap_err();
        assert!(err.message().contains("unknown field"), "{err}");
    }

    /// The sidecar example in the README is valid: every key it shows exists and every value
    /// is within its range.
    #[test]
    fn readme_sidecar_example_is_valid() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("### Sidecar settings")
            .nth(1)
            .expect("README has a sidecar section");
        let example = section
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("the section shows a TOML example");
        let settings: PluginSettings = toml::from_str(example).unwrap();
        validate_route(settings.route.as_deref().unwrap()).unwrap();
        let limits = settings.limits(&PluginLimits::default()).unwrap();
        assert_eq!(limits.max_concurrent_requests, 4);
    }
}
