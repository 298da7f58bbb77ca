//! `veil_proto::sniff` on raw bytes, as a client's first bytes on a TCP tunnel.
//!
//! - It never panics, and a name it returns is a slice of the input made of DNS name bytes
//!   (letters, digits, `-`, `_`, `.`), or for HTTP an IPv6 literal.
//! - Every prefix of the input sniffs to `NeedMore` or to the whole input's answer: an
//!   answer never depends on bytes not yet received (all prefixes up to 4 KiB, then a
//!   stride).
//! - Nothing past `SNIFF_LIMIT` is read.

use core::net::Ipv6Addr;

use veil_proto::sniff::{SNIFF_LIMIT, Sniffed, sniff};

/// Inputs up to this length have every prefix checked; longer ones, a sample.
const EVERY_PREFIX_UP_TO: usize = 4096;

/// Sniffs the input whole and in every prefix.
///
/// # Panics
///
/// When an invariant in the module documentation breaks.
pub fn run(data: &[u8]) {
    let whole = sniff(data);
    check_name(data, whole);
    if data.len() > SNIFF_LIMIT {
        let within = sniff(&data[..SNIFF_LIMIT]);
        let expected = if within == Sniffed::NeedMore {
            Sniffed::Nothing
        } else {
            within
        };
        assert_eq!(whole, expected, "bytes past SNIFF_LIMIT changed the answer");
    }
    let stride = if data.len() <= EVERY_PREFIX_UP_TO {
        1
    } else {
        data.len() / 512
    };
    for end in (0..data.len()).step_by(stride) {
        let part = sniff(&data[..end]);
        assert!(
            part == Sniffed::NeedMore || part == whole,
            "prefix of {end} bytes: {part:?}, whole: {whole:?}"
        );
    }
}

fn check_name(data: &[u8], answer: Sniffed<'_>) {
    let (name, http) = match answer {
        Sniffed::TlsServerName(name) => (name, false),
        Sniffed::HttpHost(name) => (name, true),
        Sniffed::NeedMore | Sniffed::Nothing => return,
    };
    let range = data.as_ptr_range();
    let start = name.as_ptr();
    assert!(
        range.contains(&start) && start.wrapping_add(name.len()) <= range.end,
        "the name is not a slice of the input"
    );
    assert!(!name.is_empty() && name.len() <= 254);
    if !(http && name.parse::<Ipv6Addr>().is_ok()) {
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')),
            "not a DNS name: {name:?}"
        );
        assert!(!name.starts_with('.') && !name.contains(".."), "{name:?}");
    }
}
