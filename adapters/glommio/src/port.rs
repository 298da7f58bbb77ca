//! What a tunnel's tasks see of their core: the [`Port`], exactly the engine operations a
//! dial and a relay need, and the [`TunnelSignals`] through which the core's driver tells a
//! relay what the engine did. The core implements the port; the tunnel code knows nothing
//! else of it.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use veil_engine::{CloseReason, Egress, IpFlowId, Recv, Refusal, TunnelError, TunnelId};

use crate::signal::Signal;

/// The engine operations of one core that its tunnel tasks may call. Every call that feeds
/// the engine also wakes the core's driver, which flushes.
pub(crate) trait Port {
    /// How long resolving a target, and then connecting to it, may take each.
    fn connect_timeout(&self) -> Duration;

    /// The bytes to write on the connection dialled for `tunnel` to `dialed` before any of
    /// its own (a PROXY header for the origin, `Endpoint::egress_preamble`).
    fn egress_preamble(&self, tunnel: TunnelId, dialed: SocketAddr) -> Option<Vec<u8>>;

    /// What the engine's cache of resolved names holds for `tunnel`'s target
    /// (`Endpoint::cached_addresses`): `None` to look it up.
    fn cached_addresses(&self, tunnel: TunnelId) -> Option<Vec<SocketAddr>>;

    /// Where the engine lets `tunnel` go among its resolved addresses, and from which local
    /// address (`Endpoint::egress_for`).
    fn egress_for(&self, tunnel: TunnelId, addrs: &[SocketAddr]) -> Result<Egress, Refusal>;

    /// Answers a tunnel request: accepts it (and returns the signals of the now open
    /// tunnel) or refuses it. `None` after a refusal, or when the request is gone (the
    /// client gave up while we dialled).
    fn answer(&self, tunnel: TunnelId, result: Result<(), Refusal>) -> Option<Rc<TunnelSignals>>;

    /// Reads what the engine has for a TCP tunnel into `out`; `None` if the tunnel failed
    /// or is gone.
    fn tunnel_recv(&self, tunnel: TunnelId, out: &mut [u8]) -> Option<Recv>;

    /// Offers bytes of a TCP tunnel to the engine; how many it took, or why it took none
    /// (for the relay to judge: `WriteClosed` is the peer's stop, not a failure).
    fn tunnel_send(&self, tunnel: TunnelId, data: &[u8]) -> Result<usize, TunnelError>;

    /// Sends FIN on the tunnel (the target finished); a failure is for the relay to judge,
    /// as for [`tunnel_send`](Self::tunnel_send).
    fn tunnel_finish(&self, tunnel: TunnelId) -> Result<(), TunnelError>;

    /// Resets the tunnel both ways (the target failed) and forgets it.
    fn tunnel_abort(&self, tunnel: TunnelId);

    /// Hands one datagram from a UDP target to the engine, which sends it or drops it
    /// (counted in its stats, as UDP would). `false`: the tunnel is gone.
    fn send_datagram(&self, tunnel: TunnelId, payload: &[u8]) -> bool;

    /// Moves the next datagram the engine queued for a UDP tunnel's target into `out`
    /// (65 527 bytes always suffice); `None` when none is queued or the tunnel is gone.
    fn recv_datagram(&self, tunnel: TunnelId, out: &mut [u8]) -> Option<usize>;

    /// Counts a datagram towards a UDP target that its socket refused (dropped, as UDP
    /// would).
    fn count_target_drop(&self);

    /// Moves the next payload the client sent on a decapsulated IP flow into `out`
    /// (`Endpoint::ip_flow_recv`); `None` when none is queued or the flow is gone.
    fn flow_recv(&self, flow: IpFlowId, out: &mut [u8]) -> Option<usize>;

    /// Hands what a flow's destination answered to the engine, which builds the packet
    /// (`Endpoint::ip_flow_send`). `false`: the flow is gone.
    fn flow_send(&self, flow: IpFlowId, payload: &[u8]) -> bool;

    /// Closes a flow whose socket failed or could not be made (`Endpoint::ip_flow_close`).
    fn flow_close(&self, flow: IpFlowId);
}

/// How the driver tells a tunnel's relay what the engine did.
#[derive(Debug, Default)]
pub(crate) struct TunnelSignals {
    /// The engine has bytes (or FIN) for the target: `TunnelReadable`, or for a UDP
    /// tunnel `TunnelDatagrams`.
    pub(crate) readable: Signal,
    /// The engine can take more bytes after a short send.
    pub(crate) writable: Signal,
    /// The tunnel was closed ([`closed`](Self::closed) says why): wakes a TCP relay's
    /// watcher, which tells the engine's `Relay`.
    pub(crate) ended: Signal,
    /// Why the tunnel was closed: the engine's reason (`TunnelClosed`), or a reset when
    /// the host aborted it.
    closed: Cell<Option<CloseReason>>,
}

impl TunnelSignals {
    /// The tunnel was closed for `reason`; wakes every waiter.
    pub(crate) fn close(&self, reason: CloseReason) {
        self.closed.set(Some(reason));
        self.readable.notify();
        self.writable.notify();
        self.ended.notify();
    }

    /// Why the tunnel was closed, once it was.
    pub(crate) fn closed(&self) -> Option<CloseReason> {
        self.closed.get()
    }

    /// Whether the tunnel was closed, however.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get().is_some()
    }
}
