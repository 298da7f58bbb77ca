//! Network paths of a connection: a client that a NAT rebinds (its datagrams come from a
//! new address with the same connection ID) is followed once the new path is validated.
//!
//! quiche does the protocol work itself: a datagram from a new address creates a path
//! (bounded by quiche's path table), a non-probing packet with the largest packet number
//! makes it the active one, and `PATH_CHALLENGE` validates it; a path that fails
//! validation is dropped and the connection goes back to a validated one. The engine drains
//! quiche's path events (which otherwise pile up) and keeps the peer address it reports to
//! the host (`ClientIdentity::peer`) on the validated active path.
//!
//! Known limit (quiche 0.30): packets still in flight on the old path when the switch
//! happens are tracked by that path's loss recovery, which acknowledgements of packets
//! sent on the new path never advance, so their frames are not retransmitted and a
//! transfer that was under way can stall until the idle timeout. A rebinding while the
//! connection is quiet is followed cleanly (see the engine test `migration`).
//!
use quiche::PathEvent;

use super::Endpoint;

impl Endpoint {
    /// Handles every path event quiche queued for a connection.
    pub(super) fn drain_path_events(&mut self, handle: u64) {
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        while let Some(event) = conn.quic.path_event_next() {
            match event {
                // quiche reports a migration (RFC 9000 §9.3) only once the path is
                // validated.
                PathEvent::PeerMigrated(local, peer) => {
                    tracing::debug!(connection = handle, %local, %peer, "peer migrated");
                    conn.peer = peer;
                    conn.local = local;
                }
                PathEvent::FailedValidation(local, peer) => {
                    tracing::debug!(connection = handle, %local, %peer, "path not validated");
                }
                other => tracing::trace!(connection = handle, event = ?other, "path event"),
            }
        }
    }
}
