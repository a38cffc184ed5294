//! Header-field helpers shared by requests and answers.
//!
//! Fields are kept as the WIT contract carries them: a list of `(name, value)` pairs in order,
//! names lower-case ASCII, values raw bytes.

/// Header fields in order, as the WIT contract carries them.
pub(crate) type Fields = Vec<(String, Vec<u8>)>;

/// Turns a header name into the contract's lower-case form.
pub(crate) fn normalize_name(name: impl Into<String>) -> String {
    let mut name = name.into();
    name.make_ascii_lowercase();
    name
}

/// Every value of the fields called `name`, compared case-insensitively, in order.
pub(crate) fn values<'f>(
    fields: &'f [(String, Vec<u8>)],
    name: &str,
) -> impl Iterator<Item = &'f [u8]> {
    fields
        .iter()
        .filter(move |(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_slice())
}

/// The comma-separated tokens of every field called `name`, trimmed, empty ones skipped.
///
/// Values that are not UTF-8 hold no tokens we could compare, so they are skipped too.
pub(crate) fn tokens<'a>(
    fields: &'a [(String, Vec<u8>)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> {
    values(fields, name)
        .filter_map(|value| std::str::from_utf8(value).ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// All fields as `(name, value)` pairs.
pub(crate) fn iter(fields: &[(String, Vec<u8>)]) -> impl Iterator<Item = (&str, &[u8])> {
    fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    /// Tokens come from every field of that name, split on commas and trimmed.
    #[test]
    fn tokens_span_repeated_fields() {
        let fields = fields(&[
            ("connection", "keep-alive, Upgrade"),
            ("Connection", " ,close "),
        ]);
        let tokens: Vec<_> = tokens(&fields, "CONNECTION").collect();
        assert_eq!(tokens, ["keep-alive", "Upgrade", "close"]);
    }

    /// Names are stored lower-case whatever the caller wrote.
    #[test]
    fn names_are_lowercased() {
        assert_eq!(normalize_name("Content-Type"), "content-type");
    }
}
