//! `veil_proto::sniff::quic` on raw datagrams, as the first datagrams of a UDP flow.
//!
//! The input is a sequence of datagrams, each a 2-byte big-endian length and that many
//! bytes (the last one takes what is left). They go through one sniffer and one buffer in
//! order, while the answer is `NeedMore`.
//!
//! - It never panics, and a name it returns is a slice of the caller's buffer made of DNS
//!   name bytes.
//! - `Nothing` on the first datagram for anything that is not an authentic client Initial:
//!   random bytes almost never carry a valid AEAD tag, so the corpus seeds (RFC 9001's
//!   Initial, whole, cut and damaged) are what reaches the frame walk.

use veil_proto::sniff::quic::{CRYPTO_LIMIT, InitialSniffer, QuicSniffed};

/// Feeds the datagrams to one sniffer.
///
/// # Panics
///
/// When an invariant in the module documentation breaks.
pub fn run(data: &[u8]) {
    let mut sniffer = InitialSniffer::new();
    let mut crypto = vec![0; CRYPTO_LIMIT];
    let mut rest = data;
    while !rest.is_empty() {
        let (mut datagram, after) = match rest {
            [hi, lo, tail @ ..] => {
                let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
                (tail[..len].to_vec(), &tail[len..])
            }
            _ => (rest.to_vec(), &[][..]),
        };
        rest = after;
        let range = crypto.as_ptr_range();
        match sniffer.sniff(&mut datagram, &mut crypto) {
            QuicSniffed::NeedMore => {}
            QuicSniffed::Nothing => return,
            QuicSniffed::ServerName(name) => {
                let start = name.as_ptr();
                assert!(
                    range.contains(&start) && start.wrapping_add(name.len()) <= range.end,
                    "the name is not a slice of the buffer"
                );
                assert!(!name.is_empty() && name.len() <= 254);
                assert!(
                    name.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')),
                    "not a DNS name: {name:?}"
                );
                return;
            }
        }
    }
}
