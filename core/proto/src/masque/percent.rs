//! Percent-encoding (RFC 3986 §2.1) as CONNECT-UDP and CONNECT-IP use it: escapes in
//! template literals, variable values decoded on the proxy, `:` encoded on the client.

use core::fmt;

use super::template::Sink;
use crate::error::BufferTooSmall;

/// The value of one hexadecimal digit, either case.
//# RFC 3986 §2.1: "The uppercase hexadecimal digits 'A' through 'F' are equivalent to
//# the lowercase digits 'a' through 'f', respectively."
const fn hex_value(byte: u8) -> Option<u8> {
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

/// Writes `value`'s text to `sink`, percent-encoding each `:` as `%3A`: the one character
/// outside the unreserved set that an address, a DNS name or a number can hold.
//# RFC 3986 §2.1: "For consistency, URI producers and normalizers should use uppercase
//# hexadecimal digits for all percent-encodings."
pub(super) fn put_encoded(
    sink: &mut dyn Sink,
    value: impl fmt::Display,
) -> Result<(), BufferTooSmall> {
    let mut encoder = ColonEncoder {
        sink,
        result: Ok(()),
    };
    // Formatting core::net addresses, names and integers fails only when the sink does,
    // which leaves why in `result`.
    let _ = fmt::write(&mut encoder, format_args!("{value}"));
    encoder.result
}

/// Formats into a [`Sink`], writing `:` as `%3A`.
struct ColonEncoder<'s> {
    sink: &'s mut dyn Sink,
    result: Result<(), BufferTooSmall>,
}

impl ColonEncoder<'_> {
    fn put(&mut self, bytes: &[u8]) -> fmt::Result {
        self.result = self.sink.put(bytes);
        self.result.map_err(|_| fmt::Error)
    }
}

impl fmt::Write for ColonEncoder<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for (index, piece) in text.split(':').enumerate() {
            if index > 0 {
                self.put(b"%3A")?;
            }
            self.put(piece.as_bytes())?;
        }
        Ok(())
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

    #[test]
    fn put_encoded_writes_colons_as_3a() {
        let mut out = [0; 64];
        let mut writer = crate::Writer::new(&mut out);
        let ip: core::net::IpAddr = "2001:db8::42".parse().unwrap();
        put_encoded(&mut writer, ip).unwrap();
        put_encoded(&mut writer, 443).unwrap();
        assert_eq!(writer.written(), b"2001%3Adb8%3A%3A42443");
        // "2001" fits, "%3A" does not: the sink's own error comes back.
        let mut short = [0; 6];
        let mut writer = crate::Writer::new(&mut short);
        assert_eq!(
            put_encoded(&mut writer, ip),
            Err(BufferTooSmall {
                needed: 7,
                available: 6
            })
        );
    }
}
