//! Which rules name a pattern matching a name: a hash table of exact names, one of the
//! parents of `*.` patterns, and the set of label counts those parents have.
//!
//! A lookup walks the query once from its last byte to its first, hashing as it goes (see
//! [`super::hash`]): at each dot it probes the suffix table with the part after the dot
//! when a parent with that many labels exists, and at the start it probes the exact table
//! with the whole name. No copy, no lowercasing into a buffer.

use alloc::string::String;
use alloc::vec::Vec;

use hashbrown::HashTable;

use super::hash::{NameHasher, hash_name};
use super::name::{MAX_NAME_LEN, query_name};
use super::postings::{Span, group, index_u32};

#[derive(Debug, Clone)]
struct Entry {
    hash: u64,
    /// The name in the table's text.
    start: u32,
    len: u32,
    rules: Span,
}

/// Lowercase names and their rule lists.
#[derive(Debug, Clone, Default)]
struct NameTable {
    entries: HashTable<Entry>,
    /// Every key, back to back.
    text: String,
}

impl NameTable {
    fn new(pairs: Vec<(&str, u32)>, postings: &mut Vec<u32>) -> Self {
        let groups = group(pairs, postings);
        let mut table = NameTable {
            entries: HashTable::with_capacity(groups.len()),
            text: String::new(),
        };
        for (name, rules) in groups {
            let hash = hash_name(name.as_bytes());
            let entry = Entry {
                hash,
                start: index_u32(table.text.len()),
                len: index_u32(name.len()),
                rules,
            };
            table.text.push_str(name);
            table.entries.insert_unique(hash, entry, |e| e.hash);
        }
        table
    }

    /// The rule list of `name` (any case), whose [`hash_name`] is `hash`.
    fn get(&self, hash: u64, name: &[u8]) -> Option<Span> {
        let text = self.text.as_bytes();
        self.entries
            .find(hash, |e| {
                e.hash == hash
                    && e.len as usize == name.len()
                    && text
                        .get(e.start as usize..(e.start + e.len) as usize)
                        .is_some_and(|key| key.eq_ignore_ascii_case(name))
            })
            .map(|e| e.rules)
    }
}

/// The exact names and the suffixes of every rule.
#[derive(Debug, Clone, Default)]
pub(super) struct NameIndex {
    exact: NameTable,
    /// Keyed by the parent: `example.com` for `*.example.com`.
    suffix: NameTable,
    /// Bit `n` is set when some parent has `n` labels (a 253-byte name has at most 127).
    suffix_labels: u128,
}

impl NameIndex {
    /// The index of `(lowercase name, rule)` pairs, exact and suffix; their rule lists go
    /// to `postings`.
    pub(super) fn new(
        exact: Vec<(&str, u32)>,
        suffix: Vec<(&str, u32)>,
        postings: &mut Vec<u32>,
    ) -> Self {
        let mut suffix_labels = 0;
        for (parent, _) in &suffix {
            let labels = parent.bytes().filter(|&b| b == b'.').count() + 1;
            suffix_labels |= 1u128.checked_shl(index_u32(labels)).unwrap_or(0);
        }
        NameIndex {
            exact: NameTable::new(exact, postings),
            suffix: NameTable::new(suffix, postings),
            suffix_labels,
        }
    }

    /// Calls `visit` with the rule list of every pattern that matches `name`.
    pub(super) fn for_each(&self, name: &str, postings: &[u32], mut visit: impl FnMut(&[u32])) {
        let name = query_name(name);
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return; // No pattern matches it.
        }
        let mut hasher = NameHasher::new();
        let mut labels: u32 = 0;
        for (at, &byte) in name.iter().enumerate().rev() {
            if byte == b'.' {
                labels += 1;
                // `*.parent` wants at least one byte before the dot.
                let wanted = self.suffix_labels & 1u128.checked_shl(labels).unwrap_or(0) != 0;
                if at > 0 && wanted {
                    let parent = &name[at + 1..];
                    if let Some(span) = self.suffix.get(hasher.finish(), parent) {
                        visit(span.get(postings));
                    }
                }
            }
            hasher.push_front(byte);
        }
        if let Some(span) = self.exact.get(hasher.finish(), name) {
            visit(span.get(postings));
        }
    }
}
