//! Percent-encoding helpers (RFC 3986 §2.1) shared by the template and target parsers.

/// The value of one hexadecimal digit, either case.
//# RFC 3986 §2.1: "The uppercase hexadecimal digits 'A' through 'F' are equivalent to
//# the lowercase digits 'a' through 'f', respectively."
pub(super) const fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes the two hex digits that follow a `%` at the front of `rest`.
///
/// `rest` starts right after the `%`. Returns `None` unless two hex digits are there.
pub(super) fn decode_escape(rest: &[u8]) -> Option<u8> {
    let high = hex_value(*rest.first()?)?;
    let low = hex_value(*rest.get(1)?)?;
    Some((high << 4) | low)
}

/// Whether `byte` is in the RFC 3986 unreserved set, the only characters simple and
/// form-style template expansion copy without percent-encoding.
//# RFC 3986 §2.3: "unreserved  = ALPHA / DIGIT / "-" / "." / "_" / "~""
pub(super) const fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// One byte of a percent-encoded value, as [`Decoder`] yields it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decoded {
    /// A byte that was written as itself.
    Raw(u8),
    /// A byte that was written as `%XX`.
    Escaped(u8),
}

/// A `%` that is not followed by two hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MalformedEscape;

/// Iterates over the bytes of a percent-encoded value, decoding `%XX` triplets.
#[derive(Debug, Clone)]
pub(super) struct Decoder<'a> {
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    /// Starts decoding `encoded`.
    pub(super) const fn new(encoded: &'a [u8]) -> Self {
        Self { rest: encoded }
    }
}

impl Iterator for Decoder<'_> {
    type Item = Result<Decoded, MalformedEscape>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&first, after) = self.rest.split_first()?;
        if first != b'%' {
            self.rest = after;
            return Some(Ok(Decoded::Raw(first)));
        }
        let Some(byte) = decode_escape(after) else {
            self.rest = &[];
            return Some(Err(MalformedEscape));
        };
        self.rest = after.get(2..).unwrap_or_default();
        Some(Ok(Decoded::Escaped(byte)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn decode(input: &str) -> Vec<Result<Decoded, MalformedEscape>> {
        Decoder::new(input.as_bytes()).collect()
    }

    #[test]
    fn decodes_both_hex_cases() {
        assert_eq!(
            decode("a%3A%3a"),
            [
                Ok(Decoded::Raw(b'a')),
                Ok(Decoded::Escaped(b':')),
                Ok(Decoded::Escaped(b':'))
            ]
        );
    }

    #[test]
    fn malformed_escapes_end_decoding_with_an_error() {
        assert_eq!(decode("%"), [Err(MalformedEscape)]);
        assert_eq!(
            decode("x%4"),
            [Ok(Decoded::Raw(b'x')), Err(MalformedEscape)]
        );
        assert_eq!(decode("%G1"), [Err(MalformedEscape)]);
        assert_eq!(decode("%1G"), [Err(MalformedEscape)]);
    }

    #[test]
    fn unreserved_set_is_exactly_rfc3986() {
        let unreserved: Vec<u8> = (0..=u8::MAX).filter(|&b| is_unreserved(b)).collect();
        let mut expected: Vec<u8> = (b'0'..=b'9')
            .chain(b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .collect();
        expected.extend_from_slice(b"-._~");
        expected.sort_unstable();
        assert_eq!(unreserved, expected);
    }
}
