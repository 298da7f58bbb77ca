//! How a request's body is delimited, and the framing shapes that enable request
//! smuggling.
//!
//! veil rewrites the framing fields of every request it forwards (one `Content-Length` or
//! `Transfer-Encoding: chunked`), so whatever it accepts here reaches the next hop in a form
//! that cannot be read two ways.

use core::fmt;

use super::request::{HeaderField, Version};
use super::syntax::{is_token, list_members};

/// How the body of a request is delimited, so the forwarder knows how much to relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: neither `Content-Length` nor `Transfer-Encoding` was sent.
    //# RFC 9112 §6.3: "If this is a request message and none of the above are true, then
    //# the message body length is zero (no message body is present)."
    None,
    /// Exactly this many bytes follow the head (possibly zero).
    ContentLength(u64),
    /// The body uses the chunked transfer coding; it ends with the last chunk and trailer
    /// section.
    Chunked,
}

/// A request whose body length cannot be determined safely.
///
/// After any of these the connection must be closed: where the next request would start
/// is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FramingError {
    /// Both `Transfer-Encoding` and `Content-Length`.
    ContentLengthWithTransferEncoding,
    /// A `Content-Length` member that is not a plain decimal (`+5`, `0x5`, `-1`, empty, or
    /// too large for 64 bits).
    InvalidContentLength,
    /// `Content-Length` values that differ.
    ConflictingContentLength,
    /// `Transfer-Encoding` in an HTTP/1.0 request.
    TransferEncodingInHttp10,
    /// A `Transfer-Encoding` member that is not a bare token, or no member at all.
    InvalidTransferEncoding,
    /// `chunked` is not the final transfer coding.
    ChunkedNotFinal,
    /// `chunked` applied more than once.
    ChunkedTwice,
    /// A transfer coding other than `chunked` (veil relays bodies as they are and does not
    /// implement the others).
    UnsupportedTransferCoding,
}

impl FramingError {
    /// Whether the framing was understood but uses a coding veil does not implement,
    /// rather than being malformed.
    pub const fn is_unsupported(&self) -> bool {
        matches!(self, Self::UnsupportedTransferCoding)
    }
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ContentLengthWithTransferEncoding => {
                "both Content-Length and Transfer-Encoding present"
            }
            Self::InvalidContentLength => "Content-Length is not a decimal number",
            Self::ConflictingContentLength => "Content-Length values differ",
            Self::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            Self::InvalidTransferEncoding => "malformed Transfer-Encoding",
            Self::ChunkedNotFinal => "chunked is not the final transfer coding",
            Self::ChunkedTwice => "chunked applied more than once",
            Self::UnsupportedTransferCoding => "transfer coding other than chunked",
        })
    }
}

impl core::error::Error for FramingError {}

/// Determines the body framing of a request from its header fields.
pub(crate) fn body_framing(
    fields: &[HeaderField<'_>],
    version: Version,
) -> Result<BodyFraming, FramingError> {
    let named = |name: &'static str| {
        fields
            .iter()
            .filter(move |f| f.name().eq_ignore_ascii_case(name))
            .map(HeaderField::value)
    };
    let mut transfer_encodings = named("transfer-encoding").peekable();
    let mut content_lengths = named("content-length").peekable();
    if transfer_encodings.peek().is_some() {
        //# RFC 9112 §6.1: "A server or client that receives an HTTP/1.0 message containing
        //# a Transfer-Encoding header field MUST treat the message as if the framing is
        //# faulty, even if a Content-Length is present, and close the connection after
        //# processing the message."
        if version == Version::Http10 {
            return Err(FramingError::TransferEncodingInHttp10);
        }
        //# RFC 9112 §6.1: "A server MAY reject a request that contains both Content-Length
        //# and Transfer-Encoding or process such a request in accordance with the
        //# Transfer-Encoding alone. Regardless, the server MUST close the connection after
        //# responding to such a request to avoid the potential attacks."
        if content_lengths.peek().is_some() {
            return Err(FramingError::ContentLengthWithTransferEncoding);
        }
        return chunked_framing(transfer_encodings);
    }
    match content_lengths.peek() {
        Some(_) => content_length(content_lengths).map(BodyFraming::ContentLength),
        None => Ok(BodyFraming::None),
    }
}

/// Accepts exactly one coding, `chunked`, across all `Transfer-Encoding` lines.
fn chunked_framing<'v>(
    values: impl Iterator<Item = &'v [u8]>,
) -> Result<BodyFraming, FramingError> {
    let mut last = None;
    let mut chunked = 0usize;
    let mut others = 0usize;
    // Empty members are skipped, as RFC 9110 §5.6.1.2 asks; the rewrite drops them.
    for coding in values.flat_map(list_members).filter(|m| !m.is_empty()) {
        if !is_token(coding) {
            return Err(FramingError::InvalidTransferEncoding);
        }
        if coding.eq_ignore_ascii_case(b"chunked") {
            chunked += 1;
        } else {
            others += 1;
        }
        last = Some(coding);
    }
    let last = last.ok_or(FramingError::InvalidTransferEncoding)?;
    //# RFC 9112 §6.3: "If a Transfer-Encoding header field is present in a request and the
    //# chunked transfer coding is not the final encoding, the message body length cannot
    //# be determined reliably; the server MUST respond with the 400 (Bad Request) status
    //# code and then close the connection."
    if !last.eq_ignore_ascii_case(b"chunked") {
        return Err(FramingError::ChunkedNotFinal);
    }
    //# RFC 9112 §6.1: "A sender MUST NOT apply [chunked] more than once to a message body
    //# (i.e., chunking an already chunked message is not allowed)."
    if chunked > 1 {
        return Err(FramingError::ChunkedTwice);
    }
    //# RFC 9112 §6.1: "A server that receives a request message with a transfer coding it
    //# does not understand SHOULD respond with 501 (Not Implemented)."
    if others > 0 {
        return Err(FramingError::UnsupportedTransferCoding);
    }
    Ok(BodyFraming::Chunked)
}

/// The one value all `Content-Length` lines and list members agree on.
//# RFC 9110 §8.6: "a recipient of a Content-Length header field value consisting of the
//# same decimal value repeated as a comma-separated list (e.g, "Content-Length: 42, 42")
//# MAY either reject the message as invalid or replace that invalid field value with a
//# single instance of the decimal value"
//
// veil takes the second branch: the forwarded head carries the single value, so the next
// hop cannot see the list.
fn content_length<'v>(values: impl Iterator<Item = &'v [u8]>) -> Result<u64, FramingError> {
    let mut agreed = None;
    for member in values.flat_map(list_members) {
        let length = parse_decimal(member).ok_or(FramingError::InvalidContentLength)?;
        match agreed {
            Some(previous) if previous != length => {
                return Err(FramingError::ConflictingContentLength);
            }
            _ => agreed = Some(length),
        }
    }
    agreed.ok_or(FramingError::InvalidContentLength)
}

/// `1*DIGIT` as a `u64`, refusing signs, prefixes and overflow.
//# RFC 9110 §8.6: Content-Length = 1*DIGIT
fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_parsing_is_strict() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"0042"), Some(42));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"0x5",
            b"5 5",
            b"5_0",
            b"1e3",
            b"\xd9\xa3",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }
}
