//! The path a request is routed on, and the path its plugin sees: the request target's path
//! normalised so that both always agree, whatever spelling a client chose.
//!
//! What is done, in order (compare nginx, which does the same with `merge_slashes on`, and
//! Envoy's `normalize_path` + `merge_slashes`):
//! 1. Percent-encoded *unreserved* characters (letters, digits, `-`, `.`, `_`, `~`) are decoded,
//!    as RFC 3986 §6.2.2.2 allows: `/hel%6Co` is `/hello`. Every other escape is kept, with its
//!    hex digits upper-cased (§6.2.2.1), so `%2F` stays a byte of a segment, never a separator.
//!    A `%` not followed by two hex digits makes the path malformed.
//! 2. Empty segments are merged (`//a///b` is `/a/b`).
//! 3. Dot segments are removed (RFC 3986 §5.2.4): `/a/./b/../c` is `/a/c`. A `..` that would
//!    climb above the root makes the path malformed rather than being clamped, so a request
//!    that tries to escape is answered `400` instead of being served something else.
//!
//! A trailing slash is kept (`/echo/` stays `/echo/`; routing ignores it), and the query is
//! passed on untouched.

use std::fmt::Write as _;

/// Why a request path cannot be served (`400`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    /// The target is not an absolute path (e.g. `*`).
    #[error("the request target is not an absolute path")]
    NotAbsolute,
    /// A `%` is not followed by two hex digits.
    #[error("the path has a malformed percent-escape")]
    BadEscape,
    /// `..` segments climb above the root.
    #[error("the path climbs above the root with '..'")]
    AboveRoot,
}

/// The normalised form of `path` (without its query), as described in the module docs.
pub(crate) fn normalize(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode_unreserved(path)?;
    let mut segments: Vec<&str> = Vec::new();
    // Whether the normalised path ends in a slash: the input did, or it ended on a dot segment
    // (`/a/b/..` is the folder `/a/`).
    let mut trailing_slash = false;
    for segment in decoded.split('/').skip(1) {
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop().ok_or(PathError::AboveRoot)?;
            }
            _ => segments.push(segment),
        }
    }
    let mut normalised = String::with_capacity(decoded.len());
    for segment in &segments {
        normalised.push('/');
        normalised.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        normalised.push('/');
    }
    Ok(normalised)
}

/// Decodes `%XX` escapes of unreserved characters and upper-cases the others.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(at) = rest.find('%') {
        let (before, escape) = rest.split_at(at);
        out.push_str(before);
        let hex = escape
            .get(1..3)
            // `from_str_radix` would also take a sign: only two hex digits make an escape.
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or(PathError::BadEscape)?;
        let byte = u8::from_str_radix(hex, 16).map_err(|_| PathError::BadEscape)?;
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
        rest = escape.get(3..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str) -> String {
        normalize(path).unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(ok("/hello/../kv"), "/kv");
        assert_eq!(ok("/xyz/../hello"), "/hello");
        assert_eq!(ok("/a/./b/../c"), "/a/c");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/a/b/."), "/a/b/");
    }

    #[test]
    fn climbing_above_the_root_is_refused() {
        assert_eq!(normalize("/.."), Err(PathError::AboveRoot));
        assert_eq!(normalize("/a/../.."), Err(PathError::AboveRoot));
        assert_eq!(normalize("/%2e%2e/etc"), Err(PathError::AboveRoot));
        assert_eq!(normalize("/a/%2E%2E/%2e%2e/x"), Err(PathError::AboveRoot));
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_kept() {
        assert_eq!(ok("/hel%6co"), "/hello");
        assert_eq!(ok("/hel%6Co/%7e%5F"), "/hello/~_");
        assert_eq!(ok("/a%2fb"), "/a%2Fb");
        assert_eq!(ok("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(ok("/a%20b"), "/a%20b");
    }

    #[test]
    fn slashes_merge_and_a_trailing_one_stays() {
        assert_eq!(ok("//hello///x"), "/hello/x");
        assert_eq!(ok("/echo/"), "/echo/");
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("//"), "/");
    }

    #[test]
    fn malformed_targets_are_refused() {
        assert_eq!(normalize("*"), Err(PathError::NotAbsolute));
        assert_eq!(normalize("/a%2"), Err(PathError::BadEscape));
        assert_eq!(normalize("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize("/a%+1"), Err(PathError::BadEscape));
        assert_eq!(normalize("/%"), Err(PathError::BadEscape));
    }
}
