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
//! # Data in flight when the client moves (quiche 0.30, cloudflare/quiche#2452)
//!
//! Packets still in flight on the old path when quiche switches paths stay in that path's
//! loss recovery, and only acknowledgements of packets *sent on that path* move it: the
//! client's acknowledgements of what the new path carries never declare them lost, and a
//! PTO on the old path only resends the frames of its oldest one or two packets, again and
//! again. The NAT already dropped those packets, so their stream data never comes again,
//! and a transfer under way stalls, its connection otherwise healthy, until the idle
//! timeout (the engine test `migration` reproduced it: 8 MiB echoed both ways, stuck at a
//! third with 102 packets lost to the old address).
//!
//! The engine works around it with quiche's public API: when quiche reports the peer
//! migrated (the new path is validated), it asks quiche to validate the *old* path again
//! (`probe_path`), and sends whatever quiche addresses to the old address to the new one
//! instead (`Conn::moved`, applied in `poll_transmit`). quiche's `PATH_CHALLENGE` on the old
//! path thus reaches the client, whose acknowledgement of that packet is one sent on the
//! old path: its loss recovery moves past the stranded packets, declares them lost, and
//! their frames are sent again on the new path. No datagram goes to an address the
//! connection has not validated, so the redirection opens no amplification or
//! redirection attack (RFC 9000 §9.3, §21.5). The probe's `PATH_RESPONSE` arrives on the new
//! path, which quiche takes in its stride.
//!
use quiche::PathEvent;

use super::Endpoint;

impl Endpoint {
    /// Handles every path event quiche queued for a connection.
    pub(super) fn drain_path_events(&mut self, handle: u64) {
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        while let Some(event) = conn
            .wire
            .quic_mut()
            .and_then(quiche::Connection::path_event_next)
        {
            match event {
                // quiche reports a migration (RFC 9000 §9.3) only once the path is
                // validated.
                PathEvent::PeerMigrated(local, peer) => {
                    tracing::debug!(connection = handle, %local, %peer, "peer migrated");
                    let left = conn.peer;
                    conn.peer = peer;
                    conn.local = local;
                    if left != peer {
                        // See the module documentation: the old path's stranded packets.
                        // Only validated addresses are ever sent to:
                        //# RFC 9000 §9.3: "An endpoint MUST perform path validation
                        //# (Section 8.2) if it detects any change to its peer's address,
                        //# unless it has previously validated that address."
                        conn.moved = Some((left, peer));
                        // The new path may be longer or shorter: measured again when
                        // quiche has its RTT (`Conn::measure_path`).
                        conn.path_length = super::PathLength::Moved {
                            was_long: conn.path_length.is_long(),
                        };
                        let probed = conn.wire.quic_mut().map(|q| q.probe_path(local, left));
                        if let Some(Err(error)) = probed {
                            tracing::debug!(connection = handle, %error, "old path not probed");
                        }
                    }
                }
                PathEvent::FailedValidation(local, peer) => {
                    tracing::debug!(connection = handle, %local, %peer, "path not validated");
                }
                other => tracing::trace!(connection = handle, event = ?other, "path event"),
            }
        }
    }
}
