//! CRC-32C (Castagnoli), the checksum of the `PP2_TYPE_CRC32C` TLV.
//!
//! Parameters, as RFC 4960 Appendix B and RFC 3720 §B.4 define them: polynomial
//! 0x1EDC6F41 processed bit-reflected (0x82F63B78), initial value 0xFFFFFFFF, final XOR
//! 0xFFFFFFFF. Table-driven, one byte at a time: a PROXY header is a few hundred bytes, so
//! a 1 KiB table is the right trade against slicing-by-8's 8 KiB.

/// The Castagnoli polynomial, bit-reflected.
const REFLECTED_POLYNOMIAL: u32 = 0x82F6_3B78;

/// `TABLE[b]` is the CRC register after shifting the byte `b` through an empty register.
static TABLE: [u32; 256] = build_table();

const fn build_table() -> [u32; 256] {
    let mut table = [0; 256];
    let mut byte = 0;
    while byte < table.len() {
        #[allow(clippy::cast_possible_truncation)] // byte < 256
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ REFLECTED_POLYNOMIAL
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

/// An incremental CRC-32C.
///
/// Feeding pieces lets a checksum cover discontiguous bytes without copying them: the PROXY
/// v2 receiver checksums the header with its checksum field replaced by zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crc32c {
    register: u32,
}

impl Crc32c {
    /// A checksum over no bytes yet.
    pub const fn new() -> Self {
        Self { register: !0 }
    }

    /// Adds `bytes` to the checksum.
    pub fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            let [low, ..] = self.register.to_le_bytes();
            self.register = (self.register >> 8) ^ TABLE[usize::from(low ^ byte)];
        }
    }

    /// The checksum of every byte fed so far.
    pub const fn finish(self) -> u32 {
        !self.register
    }
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

/// The CRC-32C of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = Crc32c::new();
    crc.update(bytes);
    crc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bit-at-a-time reference, written straight from the polynomial, to check the table.
    fn bitwise(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (REFLECTED_POLYNOMIAL & mask);
            }
        }
        !crc
    }

    #[test]
    fn matches_the_standard_check_value() {
        // CRC-32C of the ASCII digits "123456789" (the CRC catalogue's "check" value).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn matches_rfc3720_b4_vectors() {
        assert_eq!(crc32c(&[0; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xff; 32]), 0x62A8_AB43);
        let ascending: [u8; 32] = core::array::from_fn(|i| u8::try_from(i).unwrap());
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
        let descending: [u8; 32] = core::array::from_fn(|i| u8::try_from(31 - i).unwrap());
        assert_eq!(crc32c(&descending), 0x113F_DB5C);
    }

    proptest! {
        #[test]
        fn table_matches_bitwise_and_pieces_match_whole(
            bytes in prop::collection::vec(any::<u8>(), 0..300),
            split in any::<prop::sample::Index>(),
        ) {
            let whole = crc32c(&bytes);
            prop_assert_eq!(whole, bitwise(&bytes));
            let (head, tail) = bytes.split_at(split.index(bytes.len() + 1));
            let mut pieces = Crc32c::new();
            pieces.update(head);
            pieces.update(tail);
            prop_assert_eq!(pieces.finish(), whole);
        }
    }
}
