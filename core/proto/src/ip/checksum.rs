//! The Internet checksum (RFC 1071): sums by etherparse, plus the RFC 1624 update.
//!
//! etherparse's [`Sum16BitWords`] adds native-endian words, which RFC 1071 allows because
//! the one's-complement sum is byte-order independent; its `ones_complement` therefore
//! returns the checksum in native byte order, and `to_ne_bytes` gives the wire bytes.

use etherparse::checksum::Sum16BitWords;

/// The one's-complement sum of `bytes`, an odd last byte padded with zero.
pub(super) fn sum(bytes: &[u8]) -> Sum16BitWords {
    Sum16BitWords::new().add_slice(bytes)
}

/// The sum of a TCP/UDP/ICMPv6 pseudo header: `addresses` is source then destination, as
/// both IP headers lay them out; `upper_len` is the upper-layer packet length.
///
/// The IPv4 pseudo header carries the length in 16 bits and the IPv6 one in 32 (RFC 8200
/// §8.1); below 2^16 both add the same words, so one function serves both.
pub(super) fn pseudo_header(addresses: &[u8], protocol: u8, upper_len: usize) -> Sum16BitWords {
    // usize → u64 never truncates on the targets Rust supports.
    let len = upper_len as u64;
    sum(addresses)
        .add_2bytes([0, protocol])
        .add_slice(&len.to_be_bytes())
}

/// Whether data summed together with its checksum field verifies.
//# RFC 1071 §1: "To check a checksum, the 1's complement sum is computed over the same set of
//# octets, including the checksum field. If the result is all 1 bits (-0 in 1's complement
//# arithmetic), the check succeeds."
pub(super) fn verifies(sum: &Sum16BitWords) -> bool {
    sum.ones_complement() == 0
}

/// The checksum field, in wire order, for data summed with that field zeroed.
pub(super) fn field(sum: &Sum16BitWords) -> [u8; 2] {
    sum.ones_complement().to_ne_bytes()
}

/// Like [`field`], but a computed zero is sent as all ones, for UDP.
//# RFC 1122 §4.1.3.4: "If the transmitter really calculates a UDP checksum of zero, it must
//# transmit the checksum as all 1's (65535)."
pub(super) fn udp_field(sum: &Sum16BitWords) -> [u8; 2] {
    sum.to_ones_complement_with_no_zero().to_ne_bytes()
}

/// The checksum after one 16-bit word of the covered data changes from `old` to `new`.
//# RFC 1624 §3: "HC' = ~(C + (-m) + m')    --    [Eqn. 3]
//#                   = ~(~HC + ~m + m')"
pub(super) fn update(checksum: u16, old: u16, new: u16) -> u16 {
    !ones_complement_add(ones_complement_add(!checksum, !old), new)
}

/// 16-bit one's-complement addition: the carry out of the top bit wraps around.
fn ones_complement_add(a: u16, b: u16) -> u16 {
    let (sum, carry) = a.overflowing_add(b);
    // With a carry, `sum` is at most 0xfffe, so adding it back cannot overflow.
    sum + u16::from(carry)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A widely used worked example of an IPv4 header (192.168.0.1 → 192.168.0.199, UDP,
    /// TTL 64) and its checksum, 0xb861.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn computes_and_verifies_a_known_header_checksum() {
        assert!(verifies(&sum(&HEADER)));
        let mut zeroed = HEADER;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(field(&sum(&zeroed)), [0xb8, 0x61]);
    }

    #[test]
    fn incremental_update_matches_recomputation_for_a_ttl_decrement() {
        let mut header = HEADER;
        let old = u16::from_be_bytes([header[8], header[9]]);
        header[8] -= 1;
        let new = u16::from_be_bytes([header[8], header[9]]);
        let updated = update(0xb861, old, new);
        header[10..12].copy_from_slice(&updated.to_be_bytes());
        assert!(verifies(&sum(&header)));
        header[10] = 0;
        header[11] = 0;
        assert_eq!(updated.to_be_bytes(), field(&sum(&header)));
    }

    #[test]
    fn ones_complement_addition_wraps_the_carry() {
        assert_eq!(ones_complement_add(0xffff, 0x0001), 0x0001);
        assert_eq!(ones_complement_add(0x8000, 0x8000), 0x0001);
        assert_eq!(ones_complement_add(0x1234, 0x0001), 0x1235);
    }

    #[test]
    fn udp_field_never_sends_zero() {
        // Data whose sum is 0xffff has checksum 0, which UDP sends as 0xffff.
        assert_eq!(field(&sum(&[0xff, 0xff])), [0, 0]);
        assert_eq!(udp_field(&sum(&[0xff, 0xff])), [0xff, 0xff]);
    }
}
