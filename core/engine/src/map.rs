//! The engine's hash tables: std's, with aHash instead of `SipHash-1-3`.
//!
//! The tables are looked up for every datagram (connection IDs, connection handles) and
//! every chunk (tunnel and stream IDs), and `SipHash` was 1.8% of the proxied path's CPU.
//! aHash is keyed at random per process (its `runtime-rng`), as std's hasher is, so a peer
//! that chooses connection IDs or stream IDs still cannot aim for collisions.

/// A `std::collections::HashMap` with aHash. Build it with `HashMap::default()`.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// A `std::collections::HashSet` with aHash. Build it with `HashSet::default()`.
pub(crate) type HashSet<K> = std::collections::HashSet<K, ahash::RandomState>;
