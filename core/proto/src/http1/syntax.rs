//! Byte-level grammar shared by the HTTP/1 codecs, and a sink that either counts or writes.
//!
//! Every encoder in this module is written once, generic over [`Sink`]: run against a
//! [`Counter`] it measures the encoding, run against a [`Writer`] it writes it. The public
//! `encode` functions measure first and reserve the whole length, so a failed encode never
//! leaves a half-written head that looks valid.

use core::convert::Infallible;

use crate::cursor::Writer;
use crate::error::BufferTooSmall;

/// Whether `b` is a `tchar`.
//# RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
//#   "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA ; any VCHAR, except delimiters
pub(crate) const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Whether `s` is a `token` (`1*tchar`).
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// `s` without leading and trailing optional whitespace (SP / HTAB).
pub(crate) fn trim_ows(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| matches!(b, b' ' | b'\t');
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// The members of a comma-separated list field value, each trimmed of OWS.
///
/// Empty members are yielded as empty slices: some callers ignore them (RFC 9110 §5.6.1.2
/// asks recipients to), others treat them as malformed.
pub(crate) fn list_members(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// Somewhere bytes go: a counter or a buffer.
pub(crate) trait Sink {
    /// Why a write can fail.
    type Error;
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

/// A sink that only counts, to measure an encoding before writing it.
pub(crate) struct Counter(usize);

impl Sink for Counter {
    type Error = Infallible;
    fn put(&mut self, bytes: &[u8]) -> Result<(), Infallible> {
        self.0 += bytes.len();
        Ok(())
    }
}

impl Sink for Writer<'_> {
    type Error = BufferTooSmall;
    fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        self.bytes(bytes)
    }
}

/// The length of what `emit` writes.
pub(crate) fn measure(emit: impl FnOnce(&mut Counter) -> Result<(), Infallible>) -> usize {
    let mut counter = Counter(0);
    match emit(&mut counter) {
        Ok(()) => counter.0,
        Err(never) => match never {},
    }
}

/// Writes what `emit` writes into `out`, after checking that all `len` bytes fit.
pub(crate) fn encode_measured(
    len: usize,
    out: &mut [u8],
    emit: impl FnOnce(&mut Writer<'_>) -> Result<(), BufferTooSmall>,
) -> Result<usize, BufferTooSmall> {
    let mut writer = Writer::new(out);
    writer.reserve(len)?;
    emit(&mut writer)?;
    Ok(writer.finish())
}

/// Writes `value` in decimal.
pub(crate) fn put_decimal<S: Sink>(sink: &mut S, value: u64) -> Result<(), S::Error> {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        // `rest % 10` is below 10, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (rest % 10) as u8;
        if let Some(slot) = digits.get_mut(start) {
            *slot = b'0' + digit;
        }
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    sink.put(digits.get(start..).unwrap_or_default())
}

/// Writes one field line, `name: value` and CRLF.
pub(crate) fn put_field<S: Sink>(sink: &mut S, name: &[u8], value: &[u8]) -> Result<(), S::Error> {
    sink.put(name)?;
    sink.put(b": ")?;
    sink.put(value)?;
    sink.put(b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn trims_only_sp_and_htab() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b"\r1\r"), b"\r1\r");
    }

    #[test]
    fn splits_lists_keeping_empty_members() {
        let members: Vec<&[u8]> = list_members(b" a ,, b,").collect();
        assert_eq!(members, [&b"a"[..], b"", b"b", b""]);
    }

    #[test]
    fn tokens_are_nonempty_tchar_runs() {
        assert!(is_token(b"chunked"));
        assert!(is_token(b"x-y.z~!"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a:b"));
        assert!(!is_token(b"\x0bchunked"));
    }

    #[test]
    fn decimal_matches_display() {
        for value in [0, 7, 10, 65_535, u64::MAX] {
            let mut buf = [0; 20];
            let len = encode_measured(measure(|s| put_decimal(s, value)), &mut buf, |w| {
                put_decimal(w, value)
            })
            .unwrap();
            assert_eq!(&buf[..len], std::format!("{value}").as_bytes());
        }
    }

    #[test]
    fn encode_measured_refuses_before_writing() {
        let mut buf = [0xaa; 3];
        let err = encode_measured(4, &mut buf, |w| w.put(b"abcd")).unwrap_err();
        assert_eq!(
            err,
            BufferTooSmall {
                needed: 4,
                available: 3
            }
        );
        assert_eq!(buf, [0xaa; 3]);
    }
}
