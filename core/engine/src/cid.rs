//! Connection IDs this endpoint issues.
//!
//! Every source connection ID comes from [`new_connection_id`], and every incoming packet is
//! routed by looking its destination connection ID up in a table. Keeping generation in one
//! function lets a later change encode the owning core (thread-per-core drivers) in the ID,
//! so that a kernel or a dispatcher can route by the ID's bytes without the table.

use quiche::ConnectionId;

/// Length of every connection ID this endpoint issues, in bytes.
///
/// 16 bytes of randomness make IDs unguessable and collisions negligible; RFC 9000 allows
/// up to 20.
pub(crate) const CID_LEN: usize = 16;

/// A fresh connection ID: [`CID_LEN`] bytes from `BoringSSL`'s random generator.
///
/// `None` only if the RNG fails, which `BoringSSL` treats as fatal; the caller then drops the
/// packet that needed the ID.
pub(crate) fn new_connection_id() -> Option<ConnectionId<'static>> {
    let mut id = [0; CID_LEN];
    boring::rand::rand_bytes(&mut id).ok()?;
    Some(ConnectionId::from_vec(id.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_fixed_length_and_differ() {
        let a = new_connection_id().expect("rng");
        let b = new_connection_id().expect("rng");
        assert_eq!(a.len(), CID_LEN);
        assert_ne!(a, b);
    }
}
