//! [`RuleSet`]: rules compiled into indexes, and the first-match lookup.

use alloc::vec::Vec;
use core::net::IpAddr;

use super::address_index::AddressTable;
use super::name::NamePattern;
use super::name_index::NameIndex;
use super::postings::index_u32;
use super::prefix::bits;
use super::{Query, Rule};

/// An ordered list of rules, compiled for lookups that never allocate.
///
/// Compiling indexes each rule's destination condition (`targets` and `hosts`); a lookup
/// collects, from the indexes, the lists of rules whose destination condition the query
/// meets (each list increasing), plus the list of rules without a destination condition,
/// and in each list tests the remaining conditions only on rules before the best match so
/// far. See the [module documentation](super) for the semantics.
#[derive(Debug, Clone)]
pub struct RuleSet<A> {
    rules: Vec<Rule<A>>,
    index: Index,
}

#[derive(Debug, Clone)]
struct Index {
    /// Every index key's rule list, back to back.
    postings: Vec<u32>,
    v4: AddressTable,
    v6: AddressTable,
    names: NameIndex,
    /// Rules with neither `targets` nor `hosts`, increasing.
    anywhere: Vec<u32>,
    first_address_rule: Option<usize>,
}

impl<A> RuleSet<A> {
    /// Compiles `rules`, in first-match order.
    ///
    /// # Panics
    ///
    /// With 2^32 rules or more.
    pub fn new(rules: Vec<Rule<A>>) -> Self {
        let index = Index::new(&rules);
        RuleSet { rules, index }
    }

    /// No rules: nothing matches.
    pub fn empty() -> Self {
        Self::new(Vec::new())
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in the order given.
    pub fn rules(&self) -> &[Rule<A>] {
        &self.rules
    }

    /// The first rule (lowest index) that matches, and its action. Never allocates.
    pub fn first_match(&self, query: &Query<'_>) -> Option<(usize, &A)> {
        let index = &self.index;
        let mut best = u32::MAX;
        let mut consider = |candidates: &[u32]| {
            for &candidate in candidates {
                if candidate >= best {
                    break;
                }
                if self.rules[candidate as usize].holds_besides_destination(query) {
                    best = candidate;
                    break;
                }
            }
        };
        if let Some(addr) = query.addr {
            let addr = addr.to_canonical();
            let table = match addr {
                IpAddr::V4(_) => &index.v4,
                IpAddr::V6(_) => &index.v6,
            };
            table.for_each(bits(addr), &index.postings, &mut consider);
        }
        if let Some(name) = query.name {
            index.names.for_each(name, &index.postings, &mut consider);
        }
        consider(&index.anywhere);
        let best = best as usize;
        self.rules.get(best).map(|rule| (best, &rule.action))
    }

    /// The index of the first rule whose destination condition can only be met by an
    /// address (non-empty `targets`): a caller that knows only a name can decide early only
    /// when the name-only first match comes before it.
    pub fn first_address_rule(&self) -> Option<usize> {
        self.index.first_address_rule
    }
}

impl<A> Default for RuleSet<A> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<A> FromIterator<Rule<A>> for RuleSet<A> {
    fn from_iter<I: IntoIterator<Item = Rule<A>>>(iter: I) -> Self {
        Self::new(iter.into_iter().collect())
    }
}

impl Index {
    fn new<A>(rules: &[Rule<A>]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut exact = Vec::new();
        let mut suffix = Vec::new();
        let mut anywhere = Vec::new();
        for (at, rule) in rules.iter().enumerate() {
            let at = index_u32(at);
            for target in &rule.targets {
                let key = (target.len(), bits(target.addr()));
                match target.addr() {
                    IpAddr::V4(_) => v4.push((key, at)),
                    IpAddr::V6(_) => v6.push((key, at)),
                }
            }
            for host in &rule.hosts {
                match host {
                    NamePattern::Exact(name) => exact.push((name.as_str(), at)),
                    NamePattern::Suffix(parent) => suffix.push((parent.as_str(), at)),
                }
            }
            if rule.targets.is_empty() && rule.hosts.is_empty() {
                anywhere.push(at);
            }
        }
        let mut postings = Vec::new();
        Index {
            v4: AddressTable::new(32, v4, &mut postings),
            v6: AddressTable::new(128, v6, &mut postings),
            names: NameIndex::new(exact, suffix, &mut postings),
            postings,
            anywhere,
            first_address_rule: rules.iter().position(|rule| !rule.targets.is_empty()),
        }
    }
}
