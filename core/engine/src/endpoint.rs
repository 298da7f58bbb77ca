//! The [`Endpoint`]: one per UDP socket, both roles.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::config::Config;
use crate::error::{ConfigError, OpenError, TunnelError};
use crate::types::{
    EndpointStats, Event, Recv, RecvMeta, Refusal, Role, Transmit, TunnelId, TunnelTarget,
};

/// A sans-IO QUIC + HTTP/3 endpoint for one UDP socket.
///
/// Run loop for every driver: feed one input (`handle_datagram` or `handle_timeout`), then
/// drain `poll_transmit` and `poll_event`, then re-arm the timer from `poll_timeout`, then
/// wait. Tunnel calls (`open_tunnel`, `tunnel_send`, …) are inputs too: drain after them.
pub struct Endpoint {
    _private: (),
}

impl Endpoint {
    /// Builds an endpoint: TLS context, QUIC and HTTP/3 settings; an edge without a
    /// certificate generates a self-signed one here.
    pub fn new(config: Config, now: Instant) -> Result<Self, ConfigError> {
        let _ = (config, now);
        todo!()
    }

    /// The role this endpoint plays.
    pub fn role(&self) -> Role {
        todo!()
    }

    /// Edge: SHA-256 of the DER of the certificate it serves (self-signed or loaded), to
    /// print for clients that pin it. `None` on a client.
    pub fn certificate_fingerprint(&self) -> Option<[u8; 32]> {
        todo!()
    }

    /// Feeds one received UDP datagram. The buffer may be modified (decrypted in place).
    pub fn handle_datagram(&mut self, now: Instant, meta: RecvMeta, datagram: &mut [u8]) {
        let _ = (now, meta, datagram);
        todo!()
    }

    /// Tells the endpoint that `now` has come; call it when `poll_timeout` is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Writes the next datagram, or GSO batch of same-size datagrams of one connection and
    /// path, to the start of `out`. `out` should hold at least `max_send_udp_payload_size`
    /// bytes (or the PMTU); a larger `out` lets the engine batch segments. `None`: nothing
    /// to send now.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        let _ = (now, out);
        todo!()
    }

    /// When `handle_timeout` should be called next; `None`: no timer needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }

    /// Client: opens a CONNECT tunnel to `target`. The endpoint connects to the edge on the
    /// first call and reconnects with backoff when the connection dies; meanwhile tunnels
    /// wait in a bounded queue until `pending_deadline`, then fail with
    /// `TunnelRefused { reason: EdgeUnavailable }`. The answer comes as `TunnelOpened` or
    /// `TunnelRefused`.
    pub fn open_tunnel(
        &mut self,
        now: Instant,
        target: &TunnelTarget,
    ) -> Result<TunnelId, OpenError> {
        let _ = (now, target);
        todo!()
    }

    /// Edge: answers a `TunnelRequest` with 200; the tunnel then carries bytes.
    pub fn accept_tunnel(&mut self, tunnel: TunnelId) -> Result<(), TunnelError> {
        let _ = tunnel;
        todo!()
    }

    /// Edge: answers a `TunnelRequest` with the status and Proxy-Status of `refusal`; the
    /// tunnel id is dead afterwards.
    pub fn refuse_tunnel(&mut self, tunnel: TunnelId, refusal: Refusal) -> Result<(), TunnelError> {
        let _ = (tunnel, refusal);
        todo!()
    }

    /// Edge: whether egress policy lets a tunnel go to `ip`, for adapters that resolved a
    /// name. `Err(Refusal::Prohibited)` is the refusal to give.
    pub fn check_egress(&self, ip: IpAddr) -> Result<(), Refusal> {
        let _ = ip;
        todo!()
    }

    /// Sends bytes on an open tunnel. Returns how many were taken; fewer than offered (or
    /// 0) means the stream is blocked: wait for `TunnelWritable`.
    pub fn tunnel_send(&mut self, tunnel: TunnelId, data: &[u8]) -> Result<usize, TunnelError> {
        let _ = (tunnel, data);
        todo!()
    }

    /// Finishes our direction (FIN), after the bytes already sent.
    pub fn tunnel_finish(&mut self, tunnel: TunnelId) -> Result<(), TunnelError> {
        let _ = tunnel;
        todo!()
    }

    /// Reads received bytes into `out`. `len == 0 && !fin`: nothing more now, wait for
    /// `TunnelReadable`. `fin`: the peer finished its direction.
    pub fn tunnel_recv(&mut self, tunnel: TunnelId, out: &mut [u8]) -> Result<Recv, TunnelError> {
        let _ = (tunnel, out);
        todo!()
    }

    /// Resets the tunnel both ways with `H3_CONNECT_ERROR` (the target connection was reset
    /// or failed). The id is dead afterwards; no event follows.
    pub fn tunnel_abort(&mut self, tunnel: TunnelId) -> Result<(), TunnelError> {
        let _ = tunnel;
        todo!()
    }

    /// Graceful shutdown: GOAWAY, then CONNECTION_CLOSE with `error_code` and `reason` on
    /// every connection; a client stops reconnecting and refuses waiting tunnels.
    pub fn close(&mut self, now: Instant, error_code: u64, reason: &[u8]) {
        let _ = (now, error_code, reason);
        todo!()
    }

    /// Whether every connection has drained (after `close`, or before any connection).
    pub fn is_closed(&self) -> bool {
        todo!()
    }

    /// Counters.
    pub fn stats(&self) -> EndpointStats {
        todo!()
    }

    /// The local address a client connection uses, for drivers that need it.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        todo!()
    }
}
