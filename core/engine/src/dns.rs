//! The edge's cache of what names resolved to: hosts do the lookups (the engine has no
//! I/O), the engine keeps the answers, bounded, and gives them back to the next request
//! for the same name, so that a burst of tunnels to one name costs one lookup.
//!
//! - **What goes in**: the addresses a host handed to `Endpoint::egress_for` /
//!   `egress_plan` for a tunnel whose target is a name (the whole answer, before egress
//!   policy and rules judge it: they judge every request again), kept for
//!   [`DnsCacheConfig::ttl`]; and, for [`DnsCacheConfig::negative_ttl`], that a name did not
//!   resolve (the host refused the tunnel with `DnsError`). A timeout is not remembered:
//!   the next request tries again.
//! - **TTL**: the system resolver that hosts use (`getaddrinfo`) gives no record TTL, so
//!   the cache holds answers for a fixed time, short enough to follow DNS changes the way
//!   a stub resolver's cache would.
//! - **Bound**: at most [`DnsCacheConfig::entries`] names; inserting into a full cache
//!   drops expired entries first, then the one closest to expiring (a scan, only when
//!   full). Names compare without case and without a trailing dot.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::map::HashMap;

/// How the edge caches resolved names (`EdgeConfig::dns_cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsCacheConfig {
    /// Names kept at most; 0 turns the cache off.
    pub entries: usize,
    /// How long an answer is used.
    #[serde(rename = "ttl_ms", deserialize_with = "crate::config::duration_ms")]
    pub ttl: Duration,
    /// How long a name that did not resolve stays unresolved.
    #[serde(
        rename = "negative_ttl_ms",
        deserialize_with = "crate::config::duration_ms"
    )]
    pub negative_ttl: Duration,
}

impl Default for DnsCacheConfig {
    fn default() -> Self {
        Self {
            entries: 4096,
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
        }
    }
}

/// One name's answer.
#[derive(Debug)]
struct Entry {
    /// Empty: the name did not resolve.
    addrs: Vec<IpAddr>,
    expires: Instant,
}

/// The cache (see the module documentation).
#[derive(Debug)]
pub(crate) struct DnsCache {
    config: DnsCacheConfig,
    entries: HashMap<Box<str>, Entry>,
}

/// What the cache knows of a name.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cached {
    /// Nothing fresh: look it up.
    Unknown,
    /// It did not resolve a moment ago.
    Unresolved,
    /// Its addresses.
    Addresses(Vec<IpAddr>),
}

impl DnsCache {
    pub(crate) fn new(config: DnsCacheConfig) -> Self {
        Self {
            config,
            entries: HashMap::default(),
        }
    }

    /// What `name` resolved to, if that is still fresh at `now`.
    pub(crate) fn get(&mut self, name: &str, now: Instant) -> Cached {
        let key = key(name);
        let Some(entry) = self.entries.get(key.as_str()) else {
            return Cached::Unknown;
        };
        if entry.expires <= now {
            self.entries.remove(key.as_str());
            return Cached::Unknown;
        }
        if entry.addrs.is_empty() {
            Cached::Unresolved
        } else {
            Cached::Addresses(entry.addrs.clone())
        }
    }

    /// Remembers that `name` resolved to `addrs` (an empty answer is not remembered: a
    /// host that got none says so with [`unresolved`](Self::unresolved)).
    pub(crate) fn resolved(&mut self, name: &str, addrs: &[IpAddr], now: Instant) {
        if addrs.is_empty() {
            return;
        }
        self.insert(name, addrs.to_vec(), now + self.config.ttl, now);
    }

    /// Remembers that `name` did not resolve.
    pub(crate) fn unresolved(&mut self, name: &str, now: Instant) {
        self.insert(name, Vec::new(), now + self.config.negative_ttl, now);
    }

    /// How many names it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn insert(&mut self, name: &str, addrs: Vec<IpAddr>, expires: Instant, now: Instant) {
        if self.config.entries == 0 {
            return;
        }
        let key = key(name);
        if !self.entries.contains_key(key.as_str()) && self.entries.len() >= self.config.entries {
            self.entries.retain(|_, entry| entry.expires > now);
            if self.entries.len() >= self.config.entries {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.expires)
                    .map(|(name, _)| name.clone());
                if let Some(soonest) = soonest {
                    self.entries.remove(&soonest);
                }
            }
        }
        self.entries
            .insert(key.into_boxed_str(), Entry { addrs, expires });
    }
}

/// The key of `name`: lower case, without a trailing dot.
fn key(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    fn cache(entries: usize) -> DnsCache {
        DnsCache::new(DnsCacheConfig {
            entries,
            ..DnsCacheConfig::default()
        })
    }

    #[test]
    fn answers_are_kept_for_their_ttl_and_names_compare_loosely() {
        let now = Instant::now();
        let mut cache = cache(8);
        cache.resolved("Example.COM.", &[ip("192.0.2.1"), ip("2001:db8::1")], now);
        assert_eq!(
            cache.get("example.com", now + Duration::from_secs(29)),
            Cached::Addresses(vec![ip("192.0.2.1"), ip("2001:db8::1")])
        );
        assert_eq!(
            cache.get("example.com", now + Duration::from_secs(30)),
            Cached::Unknown
        );
        assert_eq!(cache.len(), 0, "an expired entry goes when seen");
    }

    #[test]
    fn a_name_that_did_not_resolve_stays_so_briefly() {
        let now = Instant::now();
        let mut cache = cache(8);
        cache.unresolved("nx.example", now);
        assert_eq!(cache.get("nx.example", now), Cached::Unresolved);
        assert_eq!(
            cache.get("nx.example", now + Duration::from_secs(5)),
            Cached::Unknown
        );
        cache.resolved("empty.example", &[], now);
        assert_eq!(cache.get("empty.example", now), Cached::Unknown);
    }

    #[test]
    fn a_full_cache_drops_the_expired_then_the_soonest_to_expire() {
        let now = Instant::now();
        let mut cache = cache(2);
        cache.resolved("a.example", &[ip("192.0.2.1")], now);
        cache.unresolved("b.example", now); // expires first
        cache.resolved("c.example", &[ip("192.0.2.3")], now);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("b.example", now), Cached::Unknown);
        assert!(matches!(cache.get("a.example", now), Cached::Addresses(_)));
        assert!(matches!(cache.get("c.example", now), Cached::Addresses(_)));
        let mut off = DnsCache::new(DnsCacheConfig {
            entries: 0,
            ..DnsCacheConfig::default()
        });
        off.resolved("a.example", &[ip("192.0.2.1")], now);
        assert_eq!(off.get("a.example", now), Cached::Unknown);
    }
}
