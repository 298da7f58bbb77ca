//! Stateless resets (RFC 9000 §10.3): how an edge that lost a connection's state (a restart,
//! a crash) tells the client at once, instead of leaving it to wait for its idle timeout.
//!
//! The token for each connection ID the edge issues is an HMAC of the ID under a key the
//! edge can recompute after a restart: the configured `stateless_reset_key`, or else one
//! derived from the certificate's private key. An edge with a self-signed certificate made
//! at start has neither; its key is random, so its resets help only while it runs (its
//! clients must learn a new fingerprint after a restart anyway).

use boring::error::ErrorStack;
use boring::hash::hmac_sha256;

/// Fewest bytes a reset may have: one byte of header, four unpredictable, the 16-byte token.
//# RFC 9000 §10.3: "the Unpredictable Bits field needs to include at least 38 bits of data
//# (or 5 bytes, less the two fixed bits)."
const MIN_RESET_LEN: usize = 1 + 4 + TOKEN_LEN;

/// Most bytes a reset has: enough to look like any short packet, cheap to send.
const MAX_RESET_LEN: usize = 64;

/// Length of a stateless reset token.
const TOKEN_LEN: usize = 16;

/// Label mixed into a key derived from the certificate's private key, so the derived key
/// is used for nothing else.
const DERIVATION_LABEL: &[u8] = b"veil stateless reset key v1";

/// The edge's stateless reset key.
pub(crate) struct StatelessReset {
    key: [u8; 32],
}

impl StatelessReset {
    /// A key for another purpose (`label` names it), derived from this one, so that an
    /// edge has one secret to configure and share.
    pub(crate) fn derive(&self, label: &[u8]) -> Option<[u8; 32]> {
        hmac_sha256(&self.key, label).ok()
    }

    /// A key from `material` (a configured secret or the private key's DER), or a random
    /// one when there is none.
    pub(crate) fn new(material: Option<&[u8]>) -> Result<Self, ErrorStack> {
        if let Some(material) = material {
            return Ok(Self {
                key: hmac_sha256(material, DERIVATION_LABEL)?,
            });
        }
        let mut key = [0; 32];
        boring::rand::rand_bytes(&mut key)?;
        Ok(Self { key })
    }

    /// The token of connection ID `cid`, as quiche takes it (big-endian `u128`).
    pub(crate) fn token(&self, cid: &[u8]) -> Option<u128> {
        let mac = hmac_sha256(&self.key, cid).ok()?;
        let token: [u8; TOKEN_LEN] = mac.get(..TOKEN_LEN)?.try_into().ok()?;
        Some(u128::from_be_bytes(token))
    }

    /// A reset for a packet of `received_len` bytes addressed to `cid`, which no connection
    /// owns; `None` when the packet is too small to answer.
    //# RFC 9000 §10.3.3: "An endpoint MUST ensure that every Stateless Reset that it sends
    //# is smaller than the trigger packet, unless it maintains other means to prevent
    //# looping."
    pub(crate) fn packet(&self, cid: &[u8], received_len: usize) -> Option<Vec<u8>> {
        let len = received_len.checked_sub(1)?.min(MAX_RESET_LEN);
        if len < MIN_RESET_LEN {
            return None;
        }
        let mut packet = vec![0; len];
        boring::rand::rand_bytes(&mut packet).ok()?;
        //# RFC 9000 §10.3: "Fixed Bit (1) = 1, Header Form (1) = 0" — the first two bits
        //# of a short header, so the reset looks like any other packet.
        let first = packet.first_mut()?;
        *first = (*first & 0x3f) | 0x40;
        let token = self.token(cid)?.to_be_bytes();
        packet.get_mut(len - TOKEN_LEN..)?.copy_from_slice(&token);
        Some(packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_depend_on_the_id_and_the_key_only() {
        let a = StatelessReset::new(Some(b"key material")).expect("key");
        let b = StatelessReset::new(Some(b"key material")).expect("key");
        let other = StatelessReset::new(Some(b"other material")).expect("key");
        assert_eq!(a.token(b"cid one"), b.token(b"cid one"));
        assert_ne!(a.token(b"cid one"), a.token(b"cid two"));
        assert_ne!(a.token(b"cid one"), other.token(b"cid one"));
        let random = StatelessReset::new(None).expect("key");
        assert_ne!(random.token(b"cid one"), a.token(b"cid one"));
    }

    #[test]
    fn packets_are_shorter_than_their_trigger_and_end_with_the_token() {
        let reset = StatelessReset::new(Some(b"k")).expect("key");
        let token = reset.token(b"cid").expect("token").to_be_bytes();
        for (received, expected) in [(22, 21), (43, 42), (65, 64), (1350, 64)] {
            let packet = reset.packet(b"cid", received).expect("packet");
            assert_eq!(packet.len(), expected, "trigger of {received} bytes");
            assert_eq!(packet[0] & 0xc0, 0x40, "short header form, fixed bit");
            assert_eq!(&packet[expected - TOKEN_LEN..], &token);
        }
    }

    #[test]
    fn triggers_too_small_to_answer_get_nothing() {
        let reset = StatelessReset::new(Some(b"k")).expect("key");
        for received in [0, 1, 20, 21] {
            assert_eq!(reset.packet(b"cid", received), None, "{received} bytes");
        }
    }
}
