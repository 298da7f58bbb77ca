//! Address validation with Retry (RFC 9000 §8.1.2): how an edge under a flood of Initials
//! makes each new client prove it receives at its address before the edge spends a
//! handshake's state and crypto on it.
//!
//! A tokenless Initial that would open a connection is answered, when the policy says so
//! ([`RetryPolicy`]: always, never, or above a rate of new handshakes), with a Retry packet
//! carrying a token; only an Initial that comes back with that token, from the same
//! address, within [`TOKEN_LIFETIME`], opens a connection. The edge keeps nothing between
//! the two: the token carries the client's original Destination Connection ID and the
//! time it was issued, under an HMAC that binds both to the client's address and port.
//!
//! A token this edge did not issue is not ours to judge (a client may hold one from a
//! `NEW_TOKEN` of another server): the Initial is treated as tokenless. One of ours that
//! fails (forged, expired, from another address) is dropped and counted; a Retry in answer
//! would be ignored by the client, which accepts only one per connection attempt.
//!
//! Tokens are valid only in the process that issued them (their clock is its start), which
//! suits Retry: a client uses its token within a round trip.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use boring::hash::hmac_sha256;

use crate::config::RetryPolicy;

/// How long a token may take to come back: a round trip, with room for a slow path.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(10);

/// First byte of every token this edge issues ("veil Retry token, layout 1").
const MAGIC: u8 = 0x7e;
/// Bytes of the HMAC kept in a token.
const MAC_LEN: usize = 16;
/// The longest connection ID QUIC v1 allows (RFC 9000 §17.2).
const MAX_CID_LEN: usize = 20;
/// Magic, issue time (ms, u64), connection ID length.
const HEADER_LEN: usize = 1 + 8 + 1;

/// The edge's Retry state: the policy, the key of its tokens and the rate of handshakes.
pub(crate) struct RetryGate {
    policy: RetryPolicy,
    key: [u8; 32],
    /// The clock tokens count their issue time from.
    origin: Instant,
    /// The second being counted, and the handshakes started in it without a Retry.
    window: (Instant, u32),
}

impl RetryGate {
    pub(crate) fn new(policy: RetryPolicy, key: [u8; 32], now: Instant) -> Self {
        Self {
            policy,
            key,
            origin: now,
            window: (now, 0),
        }
    }

    /// Whether a tokenless Initial arriving `now` must first be answered with a Retry;
    /// when not, it counts as a handshake started in this second.
    pub(crate) fn wants_retry(&mut self, now: Instant) -> bool {
        let limit = match self.policy {
            RetryPolicy::Never => return false,
            RetryPolicy::Always => return true,
            RetryPolicy::AboveRate { per_second } => per_second,
        };
        if now.saturating_duration_since(self.window.0) >= Duration::from_secs(1) {
            self.window = (now, 0);
        }
        if self.window.1 >= limit {
            return true;
        }
        self.window.1 += 1;
        false
    }

    /// A token for a client at `peer` whose first Initial went to `odcid`.
    pub(crate) fn token(&self, peer: SocketAddr, odcid: &[u8], now: Instant) -> Option<Vec<u8>> {
        if odcid.len() > MAX_CID_LEN {
            return None;
        }
        let issued = u64::try_from(now.saturating_duration_since(self.origin).as_millis()).ok()?;
        let mut token = Vec::with_capacity(HEADER_LEN + odcid.len() + MAC_LEN);
        token.push(MAGIC);
        token.extend_from_slice(&issued.to_be_bytes());
        token.push(u8::try_from(odcid.len()).ok()?);
        token.extend_from_slice(odcid);
        let mac = self.mac(peer, &token)?;
        token.extend_from_slice(&mac);
        Some(token)
    }

    /// What a token in an Initial from `peer` says: `NotOurs` (not one this edge issues),
    /// `Invalid`, or the original Destination Connection ID it vouches for.
    pub(crate) fn check(&self, token: &[u8], peer: SocketAddr, now: Instant) -> Checked {
        let (Some(&MAGIC), Some(len)) = (token.first(), token.get(HEADER_LEN - 1)) else {
            return Checked::NotOurs;
        };
        let cid_end = HEADER_LEN + usize::from(*len);
        if usize::from(*len) > MAX_CID_LEN || token.len() != cid_end + MAC_LEN {
            return Checked::NotOurs;
        }
        let (body, mac) = token.split_at(cid_end);
        let Some(expected) = self.mac(peer, body) else {
            return Checked::Invalid;
        };
        if !boring::memcmp::eq(&expected, mac) {
            return Checked::Invalid;
        }
        let Some(issued) = body
            .get(1..9)
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map(u64::from_be_bytes)
        else {
            return Checked::Invalid;
        };
        let age_ms = now.saturating_duration_since(self.origin).as_millis();
        let fresh = u128::from(issued) <= age_ms
            && age_ms - u128::from(issued) <= TOKEN_LIFETIME.as_millis();
        match body.get(HEADER_LEN..) {
            Some(odcid) if fresh => Checked::Valid(odcid.to_vec()),
            _ => Checked::Invalid,
        }
    }

    /// The HMAC binding `body` to `peer` (address and port), cut to [`MAC_LEN`] bytes.
    fn mac(&self, peer: SocketAddr, body: &[u8]) -> Option<[u8; MAC_LEN]> {
        let mut input = Vec::with_capacity(18 + 2 + body.len());
        match peer.ip() {
            std::net::IpAddr::V4(ip) => input.extend_from_slice(&ip.to_ipv6_mapped().octets()),
            std::net::IpAddr::V6(ip) => input.extend_from_slice(&ip.octets()),
        }
        input.extend_from_slice(&peer.port().to_be_bytes());
        input.extend_from_slice(body);
        let mac = hmac_sha256(&self.key, &input).ok()?;
        mac.get(..MAC_LEN)?.try_into().ok()
    }
}

/// What [`RetryGate::check`] found in a token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Checked {
    /// Not a token this edge issues: the Initial is as good as tokenless.
    NotOurs,
    /// One of ours, but forged, expired or from another address.
    Invalid,
    /// Valid: the client's original Destination Connection ID.
    Valid(Vec<u8>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(policy: RetryPolicy, now: Instant) -> RetryGate {
        RetryGate::new(policy, [7; 32], now)
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[test]
    fn a_token_vouches_for_its_address_and_connection_id_for_a_while() {
        let start = Instant::now();
        let gate = gate(RetryPolicy::Always, start);
        let peer = addr("192.0.2.7:4000");
        let token = gate.token(peer, b"original-dcid", start).expect("token");
        let later = start + Duration::from_secs(3);
        assert_eq!(
            gate.check(&token, peer, later),
            Checked::Valid(b"original-dcid".to_vec())
        );
        // Another port or address, too late, tampered with: invalid.
        assert_eq!(
            gate.check(&token, addr("192.0.2.7:4001"), later),
            Checked::Invalid
        );
        assert_eq!(
            gate.check(&token, addr("192.0.2.8:4000"), later),
            Checked::Invalid
        );
        let expired = start + TOKEN_LIFETIME + Duration::from_millis(1);
        assert_eq!(gate.check(&token, peer, expired), Checked::Invalid);
        let mut tampered = token.clone();
        tampered[5] ^= 1;
        assert_eq!(gate.check(&tampered, peer, later), Checked::Invalid);
        // Another edge's key: invalid too.
        let other = RetryGate::new(RetryPolicy::Always, [8; 32], start);
        assert_eq!(other.check(&token, peer, later), Checked::Invalid);
    }

    #[test]
    fn tokens_of_other_shapes_are_not_ours() {
        let now = Instant::now();
        let gate = gate(RetryPolicy::Always, now);
        let peer = addr("[2001:db8::1]:443");
        for token in [
            &b""[..],
            b"\x7e",
            b"some NEW_TOKEN of another server",
            &[0x7e; 200],
        ] {
            assert_eq!(gate.check(token, peer, now), Checked::NotOurs, "{token:?}");
        }
        assert!(
            gate.token(peer, &[1; 21], now).is_none(),
            "a connection ID over 20 bytes"
        );
    }

    #[test]
    fn the_policy_says_when_to_retry() {
        let now = Instant::now();
        assert!(gate(RetryPolicy::Always, now).wants_retry(now));
        assert!(!gate(RetryPolicy::Never, now).wants_retry(now));
        let mut gate = gate(RetryPolicy::AboveRate { per_second: 3 }, now);
        let wants: Vec<bool> = (0..5).map(|_| gate.wants_retry(now)).collect();
        assert_eq!(wants, [false, false, false, true, true]);
        // A new second, a new count.
        assert!(!gate.wants_retry(now + Duration::from_secs(1)));
    }
}
