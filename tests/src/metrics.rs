//! [`Samples`]: the Prometheus text format (version 0.0.4) that the admin listener's
//! `/metrics` serves, parsed strictly enough that a malformed line fails the test: every
//! sample belongs to a family declared by a `# TYPE` line before it, label values are quoted,
//! and every value is a number.

use std::collections::{BTreeMap, BTreeSet};

/// One scrape: every sample by its name and labels.
#[derive(Debug, Default)]
pub struct Samples {
    /// (metric name, sorted labels) → value.
    values: BTreeMap<(String, Vec<(String, String)>), f64>,
    /// Families declared with `# TYPE`, and their type.
    types: BTreeMap<String, String>,
}

impl Samples {
    /// Parses `text`; panics, naming the line, on anything that is not the text format.
    pub fn parse(text: &str) -> Self {
        let mut samples = Self::default();
        for line in text.lines() {
            if let Some(declaration) = line.strip_prefix("# TYPE ") {
                let (family, kind) = declaration
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("a TYPE line without a type: {line:?}"));
                samples.types.insert(family.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (name, labels, value) = parse_sample(line);
            assert!(
                samples.family_of(&name).is_some(),
                "sample {name} has no TYPE line before it"
            );
            let previous = samples.values.insert((name, labels), value);
            assert!(previous.is_none(), "a sample appears twice: {line:?}");
        }
        samples
    }

    /// The value of sample `name` with exactly `labels` (in any order); `None` if absent.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        labels.sort();
        self.values.get(&(name.to_owned(), labels)).copied()
    }

    /// [`Samples::get`] for a sample that must be there.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            panic!(
                "no sample {name}{labels:?}; the scrape has {:?}",
                self.names()
            )
        })
    }

    /// The type (`counter`, `gauge`, `histogram`) of the family sample `name` belongs to.
    pub fn family_of(&self, name: &str) -> Option<&str> {
        let family = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|family| self.types.contains_key(*family))
            })
            .unwrap_or(name);
        self.types.get(family).map(String::as_str)
    }

    /// Every sample name, for failure messages.
    pub fn names(&self) -> BTreeSet<&str> {
        self.values.keys().map(|(name, _)| name.as_str()).collect()
    }
}

/// `name{key="value",…} value` → its parts.
fn parse_sample(line: &str) -> (String, Vec<(String, String)>, f64) {
    let (head, value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("a sample without a value: {line:?}"));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        number => number
            .parse()
            .unwrap_or_else(|_| panic!("a value that is not a number: {line:?}")),
    };
    let (name, labels) = match head.split_once('{') {
        None => (head, Vec::new()),
        Some((name, rest)) => {
            let body = rest
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("labels not closed: {line:?}"));
            (name, parse_labels(body, line))
        }
    };
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "a bad metric name: {line:?}"
    );
    let mut labels = labels;
    labels.sort();
    (name.to_owned(), labels, value)
}

/// `key="value",key="value"` (values without escapes: ours never need them).
fn parse_labels(body: &str, line: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("a label without a quoted value: {line:?}"));
        let (value, after) = after
            .split_once('"')
            .unwrap_or_else(|| panic!("a label value not closed: {line:?}"));
        labels.push((key.to_owned(), value.to_owned()));
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    labels
}
