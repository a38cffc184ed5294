//! The README's limits table, rendered from the declarations in [`super::limits`], so the
//! documentation cannot drift from the code: a test compares the README with this output.

use std::fmt::Write as _;

use super::limits::{HOST, Limit, PLUGIN, Preset, Unit};

/// Sidecar key of the one per-plugin setting that is a list rather than a number.
pub const ALLOWED_UPGRADES_KEY: &str = "allowed_upgrades";
/// Top-level sidecar key of the policy for a managed WebSocket whose outbound buffer is full.
pub const OVERFLOW_KEY: &str = "overflow";
/// Top-level sidecar key of how a plugin's managed WebSockets get their instances.
pub const INSTANCES_KEY: &str = "instances";

/// The limits table as Markdown, one row per declared limit (host-wide first).
pub fn limits_table() -> String {
    let mut table = String::from(
        "| limit | flag | sidecar key | default | allowed | when exceeded |\n\
         |---|---|---|---|---|---|\n",
    );
    for limit in HOST {
        row(&mut table, limit);
    }
    for limit in PLUGIN {
        row(&mut table, limit);
    }
    table.push_str(&format!(
        "| protocols a plugin may switch to | – | `{ALLOWED_UPGRADES_KEY}` | any the client offered | \
         a list of protocol tokens (RFC 9110 `token`, optionally `/version`) | `502` |\n"
    ));
    table.push_str(&format!(
        "| what a publish does to a managed WebSocket whose outbound buffer is full | – | \
         `{OVERFLOW_KEY}` (top level, not in `[limits]`) | `\"close\"` | `\"close\"` (close `1008`) or \
         `\"drop\"` (the message is dropped for it) | counted; logged at most 5 lines a second |\n"
    ));
    table.push_str(&format!(
        "| instances a plugin's managed WebSockets run their events on | – | \
         `{INSTANCES_KEY}` (top level, not in `[limits]`) | `\"per-connection\"` | \
         `\"per-connection\"` (an instance per awake connection) or `\"shared\"` (each event borrows \
         one of a few shared instances) | – |\n"
    ));
    table
}

fn row<T>(table: &mut String, limit: &Limit<T>) {
    let code = |name: Option<&str>, dashes: &str| {
        name.map_or_else(|| "–".to_owned(), |name| format!("`{dashes}{name}`"))
    };
    let default = match limit.default {
        Preset::Value(value) => amount(value, limit.unit),
        Preset::Unlimited => "none".to_owned(),
        Preset::Derived(how) => how.to_owned(),
    };
    let _ = writeln!(
        table,
        "| {} | {} | {} | {} | {} – {} | {} |",
        limit.what,
        code(limit.flag, "--"),
        code(limit.sidecar_key, ""),
        default,
        amount(limit.min, limit.unit),
        amount(limit.max, limit.unit),
        limit.exceeded,
    );
}

/// `value` in `unit`, as a person reads it: `1,000`, `64 KiB`, `2,000 ms`.
fn amount(value: u64, unit: Unit) -> String {
    match unit {
        Unit::Count => grouped(value),
        Unit::Bytes => binary_size(value),
        Unit::Mebibytes => binary_size(value.saturating_mul(1 << 20)),
        Unit::Millis => duration(value),
        Unit::Seconds => duration(value.saturating_mul(1000)),
    }
}

/// A duration in the largest unit that states it exactly: `2 s`, `10 min`, `1 day`, `250 ms`.
fn duration(millis: u64) -> String {
    const UNITS: [(u64, &str, &str); 4] = [
        (86_400_000, "day", "days"),
        (3_600_000, "h", "h"),
        (60_000, "min", "min"),
        (1_000, "s", "s"),
    ];
    for (size, one, many) in UNITS {
        if millis >= size && millis.is_multiple_of(size) {
            let count = millis / size;
            return format!("{} {}", grouped(count), if count == 1 { one } else { many });
        }
    }
    format!("{} ms", grouped(millis))
}

fn binary_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, name) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {name}", grouped(bytes / size));
        }
    }
    format!("{} bytes", grouped(bytes))
}

/// `1234567` → `1,234,567`.
fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_naturally() {
        assert_eq!(grouped(1_000_000), "1,000,000");
        assert_eq!(grouped(12), "12");
        assert_eq!(amount(64 << 10, Unit::Bytes), "64 KiB");
        assert_eq!(amount(1500, Unit::Bytes), "1,500 bytes");
        assert_eq!(amount(0, Unit::Bytes), "0 bytes");
        assert_eq!(amount(4096, Unit::Mebibytes), "4 GiB");
        assert_eq!(amount(2_000, Unit::Millis), "2 s");
        assert_eq!(amount(1_500, Unit::Millis), "1,500 ms");
        assert_eq!(amount(600_000, Unit::Millis), "10 min");
        assert_eq!(amount(86_400, Unit::Seconds), "1 day");
        assert_eq!(amount(0, Unit::Millis), "0 ms");
    }

    /// The README's limits table is exactly what the declarations say.
    #[test]
    fn readme_limits_table_matches_the_code() {
        let readme = include_str!("../../../README.md");
        let table = limits_table();
        assert!(
            readme.contains(&table),
            "README.md's limits table differs from the code; replace it with:\n\n{table}"
        );
    }
}
