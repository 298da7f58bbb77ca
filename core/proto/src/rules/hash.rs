//! The index's hash functions.
//!
//! Names hash from their last byte to their first, lowercasing each byte as it goes: one
//! pass over a query yields the hash of every suffix that starts after a dot, which is what
//! the suffix table is probed with, and the query never needs a lowercased copy.
//!
//! The hashes are not keyed (`no_std` has no entropy to key them with). That is safe here:
//! the tables' keys come from the operator's configuration, and a query only probes, so a
//! client who picks names or addresses cannot make any probe longer than the longest probe
//! sequence the configuration itself built.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const MIX_A: u64 = 0x9e37_79b9_7f4a_7c15;
const MIX_B: u64 = 0xd6e8_feb8_6659_fd93;

/// The low and high halves of the full product: a cheap mix in which every input bit
/// reaches every output bit (hashbrown takes its bucket from the low bits and its tag from
/// the top seven).
fn fold_mul(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    #[allow(clippy::cast_possible_truncation)] // Both halves are wanted.
    let (low, high) = (product as u64, (product >> 64) as u64);
    low ^ high
}

/// FNV-1a over a name's bytes, fed last to first, ASCII case folded.
#[derive(Clone, Copy)]
pub(super) struct NameHasher(u64);

impl NameHasher {
    pub(super) const fn new() -> Self {
        NameHasher(FNV_OFFSET)
    }

    /// Feeds the byte in front of those fed so far.
    pub(super) fn push_front(&mut self, byte: u8) {
        self.0 = (self.0 ^ u64::from(byte.to_ascii_lowercase())).wrapping_mul(FNV_PRIME);
    }

    /// The hash of the bytes fed so far.
    pub(super) fn finish(self) -> u64 {
        fold_mul(self.0 ^ MIX_A, MIX_B)
    }
}

/// The hash of a whole name, as [`NameHasher`] computes it incrementally.
pub(super) fn hash_name(name: &[u8]) -> u64 {
    let mut hasher = NameHasher::new();
    for &byte in name.iter().rev() {
        hasher.push_front(byte);
    }
    hasher.finish()
}

/// The hash of a prefix: its right-aligned, masked bits and its length.
pub(super) fn hash_prefix(bits: u128, len: u8) -> u64 {
    #[allow(clippy::cast_possible_truncation)] // Both halves are wanted.
    let (low, high) = (bits as u64, (bits >> 64) as u64);
    fold_mul(low ^ MIX_A, high ^ MIX_B ^ u64::from(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_hash_folds_case_and_is_incremental() {
        assert_eq!(hash_name(b"Example.COM"), hash_name(b"example.com"));
        assert_ne!(hash_name(b"example.com"), hash_name(b"example.org"));
        let mut hasher = NameHasher::new();
        for &b in b"www.example.com".iter().rev() {
            hasher.push_front(b);
            if b == b'.' {
                break;
            }
        }
        assert_eq!(hasher.finish(), hash_name(b".com"));
    }

    #[test]
    fn prefix_hash_depends_on_length() {
        assert_ne!(hash_prefix(0, 0), hash_prefix(0, 1));
        assert_ne!(hash_prefix(1 << 100, 8), hash_prefix(1, 8));
    }
}
