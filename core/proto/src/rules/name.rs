//! DNS names and name patterns: a rule's `hosts` and `snis`.
//!
//! Patterns are stored lowercased without a trailing dot. Queries are compared as given,
//! ASCII case-insensitively after dropping one trailing dot ([`query_name`]), so a lookup
//! never lowercases into a buffer.

use alloc::string::String;
use core::fmt;
use core::str::FromStr;

/// The longest name, in text form without the trailing dot (RFC 1035 §2.3.4's 255 octets
/// on the wire).
pub const MAX_NAME_LEN: usize = 253;
/// The longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// A DNS name as a rule names it: lowercased, without a trailing dot.
///
/// Labels hold ASCII letters, digits, `-` and `_` (service labels such as `_dmarc`); the
/// last label is not all digits, since `10.0.0.1` is an address that belongs in `targets`
/// (as a name it would never match: requests that name an address have no name).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainName(String);

impl DomainName {
    /// The name, lowercased, without a trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why text is not a [`DomainName`] or a [`NamePattern`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// No name at all (`""`, `"."`, `"*."`).
    Empty,
    /// Two dots in a row, or a leading dot.
    EmptyLabel,
    /// A label longer than 63 bytes.
    LabelTooLong,
    /// Longer than 253 bytes without the trailing dot.
    TooLong,
    /// A `*` anywhere but as the whole first label of a pattern.
    MisplacedWildcard,
    /// A character other than an ASCII letter, digit, `-` or `_`.
    InvalidCharacter(char),
    /// The last label is all digits: an IPv4 address (or a typo of one), not a name.
    NumericName,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("empty name"),
            NameError::EmptyLabel => f.write_str("empty label in name"),
            NameError::LabelTooLong => f.write_str("label longer than 63 bytes"),
            NameError::TooLong => f.write_str("name longer than 253 bytes"),
            NameError::MisplacedWildcard => {
                f.write_str("'*' is only allowed as the first label of a pattern: *.example.com")
            }
            NameError::InvalidCharacter(c) => write!(f, "invalid character {c:?} in name"),
            NameError::NumericName => {
                f.write_str("a name ending in a numeric label is an address: use a target prefix")
            }
        }
    }
}

impl core::error::Error for NameError {}

impl FromStr for DomainName {
    type Err = NameError;

    /// Validates the name and stores it lowercased; one trailing dot is dropped.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.strip_suffix('.').unwrap_or(s);
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        let mut last: &str = "";
        for label in name.split('.') {
            check_label(label)?;
            last = label;
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NameError::NumericName);
        }
        Ok(DomainName(name.to_ascii_lowercase()))
    }
}

fn check_label(label: &str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel);
    }
    if let Some(bad) = label
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err(if bad == '*' {
            NameError::MisplacedWildcard
        } else {
            NameError::InvalidCharacter(bad)
        });
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(NameError::LabelTooLong);
    }
    Ok(())
}

/// A name condition: one name, or every strict subdomain of one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NamePattern {
    /// `example.com`: that name only.
    Exact(DomainName),
    /// `*.example.com`, holding `example.com`: any name with at least one more label in
    /// front (`a.example.com`, `a.b.example.com`), not `example.com` itself.
    Suffix(DomainName),
}

impl NamePattern {
    /// Whether `name` matches: ASCII case-insensitively, one trailing dot of `name` ignored.
    /// Never allocates.
    pub fn matches(&self, name: &str) -> bool {
        let query = query_name(name);
        match self {
            NamePattern::Exact(exact) => query.eq_ignore_ascii_case(exact.as_str().as_bytes()),
            NamePattern::Suffix(parent) => {
                let parent = parent.as_str().as_bytes();
                // At least one byte, then a dot, then the parent.
                query.len() > parent.len() + 1
                    && query[query.len() - parent.len() - 1] == b'.'
                    && query[query.len() - parent.len()..].eq_ignore_ascii_case(parent)
            }
        }
    }

    /// The name the pattern is built on: the exact name, or the parent of the subdomains.
    pub fn name(&self) -> &DomainName {
        match self {
            NamePattern::Exact(name) | NamePattern::Suffix(name) => name,
        }
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamePattern::Exact(name) => write!(f, "{name}"),
            NamePattern::Suffix(parent) => write!(f, "*.{parent}"),
        }
    }
}

impl FromStr for NamePattern {
    type Err = NameError;

    /// `example.com` (exact) or `*.example.com` (strict subdomains).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("*.") {
            Some(parent) => parent.parse().map(NamePattern::Suffix),
            None => s.parse().map(NamePattern::Exact),
        }
    }
}

/// A query's name as the matcher compares it: its bytes without one trailing dot.
pub(super) fn query_name(name: &str) -> &[u8] {
    let bytes = name.as_bytes();
    bytes.strip_suffix(b".").unwrap_or(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn pattern(s: &str) -> NamePattern {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_displays() {
        assert_eq!(pattern("Example.COM.").to_string(), "example.com");
        assert_eq!(pattern("*.Example.com").to_string(), "*.example.com");
        assert_eq!(
            pattern("_dmarc.example.com").to_string(),
            "_dmarc.example.com"
        );
        assert_eq!(pattern("localhost").to_string(), "localhost");
        assert_eq!(pattern("*.com").to_string(), "*.com");
        assert_eq!(pattern("a1.b2.3com").to_string(), "a1.b2.3com");
        assert!(matches!(pattern("*.a.b"), NamePattern::Suffix(n) if n.as_str() == "a.b"));
        assert_eq!(pattern("x.y").name().as_str(), "x.y");
        let long_label = "a".repeat(63);
        assert!(long_label.parse::<NamePattern>().is_ok());
        let longest = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(longest.len(), 253);
        assert!(longest.parse::<DomainName>().is_ok());
        assert!(std::format!("{longest}.").parse::<DomainName>().is_ok());
    }

    #[test]
    fn refuses_bad_names() {
        let cases = [
            ("", NameError::Empty),
            (".", NameError::Empty),
            ("*.", NameError::Empty),
            ("..", NameError::EmptyLabel),
            (".example.com", NameError::EmptyLabel),
            ("example..com", NameError::EmptyLabel),
            ("example.com..", NameError::EmptyLabel),
            ("*", NameError::MisplacedWildcard),
            ("*example.com", NameError::MisplacedWildcard),
            ("a.*.example.com", NameError::MisplacedWildcard),
            ("*.*.example.com", NameError::MisplacedWildcard),
            ("example.*", NameError::MisplacedWildcard),
            ("**.example.com", NameError::MisplacedWildcard),
            ("exa mple.com", NameError::InvalidCharacter(' ')),
            ("example.com:443", NameError::InvalidCharacter(':')),
            ("http://example.com", NameError::InvalidCharacter(':')),
            ("exämple.com", NameError::InvalidCharacter('ä')),
            ("10.0.0.1", NameError::NumericName),
            ("*.10", NameError::NumericName),
            ("a.123", NameError::NumericName),
        ];
        for (text, error) in cases {
            assert_eq!(text.parse::<NamePattern>(), Err(error), "{text:?}");
        }
        let too_long_label = "a".repeat(64);
        assert_eq!(
            too_long_label.parse::<NamePattern>(),
            Err(NameError::LabelTooLong)
        );
        let too_long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62),
        ]
        .join(".");
        assert_eq!(too_long.parse::<NamePattern>(), Err(NameError::TooLong));
    }

    #[test]
    fn exact_matches() {
        let p = pattern("example.com");
        for yes in ["example.com", "EXAMPLE.com", "example.com.", "Example.Com."] {
            assert!(p.matches(yes), "{yes:?}");
        }
        for no in [
            "example.com..",
            "www.example.com",
            "example.co",
            "xexample.com",
            "",
            ".",
        ] {
            assert!(!p.matches(no), "{no:?}");
        }
    }

    #[test]
    fn suffix_matches_strict_subdomains() {
        let p = pattern("*.example.com");
        for yes in [
            "a.example.com",
            "A.B.Example.COM",
            "www.example.com.",
            "-.example.com",
        ] {
            assert!(p.matches(yes), "{yes:?}");
        }
        let no = [
            "example.com",
            "example.com.",
            ".example.com",
            "aexample.com",
            "a.example.com..",
            "a.example.co",
            "",
        ];
        for no in no {
            assert!(!p.matches(no), "{no:?}");
        }
        // Multi-byte characters never panic the byte comparison.
        assert!(!p.matches("ä.exämple.com"));
        assert!(pattern("*.com").matches("ä.com"));
    }
}
