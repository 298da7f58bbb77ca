//! Lists of rule indices, one per index key, stored back to back in one vector.
//!
//! Each key (a prefix, an exact name, a suffix) maps to a [`Span`] of the shared vector:
//! the indices of the rules that name the key, increasing and without duplicates, so a
//! lookup walks them in first-match order and stops at the first rule that holds.

use alloc::vec::Vec;

/// A run of the shared index vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The rule indices of the span.
    pub(super) fn get(self, postings: &[u32]) -> &[u32] {
        postings
            .get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }
}

/// Groups `(key, rule)` pairs by key: sorts them, drops duplicates, appends each group's
/// rule indices (increasing) to `postings`, and gives back each key with its span.
pub(super) fn group<K: Ord + Clone>(
    mut pairs: Vec<(K, u32)>,
    postings: &mut Vec<u32>,
) -> Vec<(K, Span)> {
    pairs.sort_unstable();
    pairs.dedup();
    let mut groups: Vec<(K, Span)> = Vec::new();
    for (key, rule) in pairs {
        let at = index_u32(postings.len());
        postings.push(rule);
        match groups.last_mut() {
            Some((last, span)) if *last == key => span.end = at + 1,
            _ => groups.push((
                key,
                Span {
                    start: at,
                    end: at + 1,
                },
            )),
        }
    }
    groups
}

/// A count or position as the index stores it.
///
/// # Panics
///
/// Past `u32::MAX`, which would take more than 16 GiB of rule indices alone.
pub(super) fn index_u32(n: usize) -> u32 {
    u32::try_from(n).expect("fewer than 2^32 rules and keys")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn groups_sorted_and_deduplicated() {
        let mut postings = Vec::new();
        let groups = group(
            vec![("b", 3), ("a", 2), ("b", 1), ("a", 2), ("b", 7)],
            &mut postings,
        );
        let got: Vec<(&str, &[u32])> = groups
            .iter()
            .map(|(k, span)| (*k, span.get(&postings)))
            .collect();
        assert_eq!(got, [("a", &[2][..]), ("b", &[1, 3, 7][..])]);
    }
}
