//! Printing: aligned plain-text tables (first column left, the rest right-aligned), with notes
//! under them, and the number formats every section shares.

use std::time::Duration;

/// A table printed under a section heading.
pub(crate) struct Table {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    /// An empty table with these column headers.
    pub(crate) fn new(title: impl Into<String>, headers: &[&str]) -> Self {
        Self {
            title: title.into(),
            headers: headers.iter().map(|&header| header.to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a row; missing cells print empty.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Adds a line printed under the table.
    pub(crate) fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// Prints the table to stdout.
    pub(crate) fn print(&self) {
        println!("{}", self.render());
    }

    fn render(&self) -> String {
        let columns = self.headers.len();
        let width = |column: usize| {
            std::iter::once(&self.headers)
                .chain(&self.rows)
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(column, &width)| {
                    let cell = cells.get(column).map_or("", String::as_str);
                    let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
                    if column == 0 {
                        format!("{cell}{pad}")
                    } else {
                        format!("{pad}{cell}")
                    }
                })
                .collect();
            padded.join("  ").trim_end().to_owned()
        };
        let rule = "-".repeat(widths.iter().sum::<usize>() + 2 * columns.saturating_sub(1));
        let mut out = format!("\n{}\n{}\n{rule}\n", self.title, line(&self.headers));
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        for note in &self.notes {
            out.push_str(&format!("  {note}\n"));
        }
        out
    }
}

/// Prints a section's heading.
pub(crate) fn heading(title: &str) {
    println!("\n=== {title} ===");
}

/// A rate with thousands separators: `123,456/s`.
pub(crate) fn rate(per_sec: f64) -> String {
    let whole = per_sec.round() as u64;
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// A short duration in µs (or ms past 10 ms).
pub(crate) fn micros(duration: Duration) -> String {
    let us = duration.as_secs_f64() * 1e6;
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1_000.0)
    } else if us >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

/// A longer duration in ms.
pub(crate) fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

/// A ratio to two decimals.
pub(crate) fn ratio(value: f64) -> String {
    format!("{value:.2}")
}

/// Bytes as KiB with one decimal.
pub(crate) fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

/// Whether a figure meets its target, as printed beside it.
pub(crate) fn verdict(met: bool) -> String {
    if met { "ok" } else { "MISS" }.to_owned()
}

/// The three cells of a ratio with a lower bound: the ratio, the bound, and the verdict. Where
/// the bound does not apply to the row (`applies` false) it is shown in brackets, unjudged.
pub(crate) fn ratio_at_least(value: f64, target: f64, applies: bool) -> [String; 3] {
    if applies {
        [
            ratio(value),
            format!("≥ {target:.1}"),
            verdict(value >= target),
        ]
    } else {
        [ratio(value), format!("(≥ {target:.1})"), String::new()]
    }
}

/// The median of some durations (the upper one of an even count); zero if there are none.
pub(crate) fn median(durations: &[Duration]) -> Duration {
    let mut sorted = durations.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// The `q` quantile of some durations (nearest rank); zero if there are none.
pub(crate) fn percentile(durations: &[Duration], q: f64) -> Duration {
    let mut sorted = durations.to_vec();
    sorted.sort();
    let rank = ((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1);
    sorted.get(rank).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rate(1_234_567.4), "1,234,567");
        assert_eq!(rate(999.0), "999");
        assert_eq!(micros(Duration::from_nanos(42_340)), "42.3 µs");
        assert_eq!(micros(Duration::from_micros(250)), "250 µs");
        assert_eq!(micros(Duration::from_micros(12_500)), "12.5 ms");
        assert_eq!(kib(65_536.0), "64.0 KiB");
        assert_eq!(
            median(&[3, 1, 2].map(Duration::from_millis)),
            Duration::from_millis(2)
        );
        let hundred: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&hundred, 0.99), Duration::from_millis(99));
    }

    #[test]
    fn aligns_columns() {
        let mut table = Table::new("t", &["name", "value"]);
        table.row(vec!["a".into(), "1".into()]);
        table.row(vec!["longer".into(), "µs 22".into()]);
        let rendered = table.render();
        assert!(rendered.contains("name    value\n"), "{rendered}");
        assert!(rendered.contains("a           1\n"), "{rendered}");
        assert!(rendered.contains("longer  µs 22\n"), "{rendered}");
    }
}
