//! Which rules name a prefix holding an address: one hash table per address family, keyed
//! by (masked bits, length), and the set of lengths in use.
//!
//! A lookup masks the address once per length in use and probes the table: as many probes
//! as there are distinct prefix lengths in the rules of that family (at most 33 or 129,
//! typically a handful), independent of the number of rules.

use alloc::vec::Vec;

use hashbrown::HashTable;

use super::hash::hash_prefix;
use super::postings::{Span, group};
use super::prefix::mask;

#[derive(Debug, Clone)]
struct Entry {
    bits: u128,
    len: u8,
    hash: u64,
    rules: Span,
}

/// The prefixes of one family.
#[derive(Debug, Clone)]
pub(super) struct AddressTable {
    /// Bits per address: 32 or 128.
    width: u8,
    /// Bit `n` is set when some prefix has length `n` (0 ..= width).
    lengths: [u64; 3],
    entries: HashTable<Entry>,
}

impl AddressTable {
    /// The table of `(right-aligned masked bits, length) → rule` pairs of a family
    /// `width` bits wide; their rule lists go to `postings`.
    pub(super) fn new(width: u8, pairs: Vec<((u8, u128), u32)>, postings: &mut Vec<u32>) -> Self {
        let groups = group(pairs, postings);
        let mut table = AddressTable {
            width,
            lengths: [0; 3],
            entries: HashTable::with_capacity(groups.len()),
        };
        for ((len, bits), rules) in groups {
            debug_assert!(len <= width && bits & !mask(len, width) == 0);
            table.lengths[usize::from(len / 64)] |= 1 << (len % 64);
            let hash = hash_prefix(bits, len);
            let entry = Entry {
                bits,
                len,
                hash,
                rules,
            };
            table.entries.insert_unique(hash, entry, |e| e.hash);
        }
        table
    }

    /// Calls `visit` with the rule list of every prefix that holds `bits` (an address of
    /// this family, right-aligned).
    pub(super) fn for_each(&self, bits: u128, postings: &[u32], mut visit: impl FnMut(&[u32])) {
        for (word_index, &word) in self.lengths.iter().enumerate() {
            let mut rest = word;
            while rest != 0 {
                #[allow(clippy::cast_possible_truncation)] // At most 2 * 64 + 63.
                let len = (word_index * 64) as u8 + rest.trailing_zeros() as u8;
                rest &= rest - 1;
                let masked = bits & mask(len, self.width);
                let hash = hash_prefix(masked, len);
                if let Some(entry) = self
                    .entries
                    .find(hash, |e| e.bits == masked && e.len == len)
                {
                    visit(entry.rules.get(postings));
                }
            }
        }
    }
}
