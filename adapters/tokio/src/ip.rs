//! CONNECT-IP (RFC 9484) on tokio: moving packets between the engine and a TUN device.
//!
//! The engine decides everything about a packet (addresses, scope, routes, egress policy,
//! hop limit, ICMP errors); this module only moves bytes:
//!
//! - **edge** ([`IpEgress`]): packets the engine let out of a client's tunnel go to the
//!   device (the kernel routes them on); what the device reads goes to
//!   `Endpoint::ip_deliver`, which finds the tunnel by destination address, and an ICMP
//!   error it answers with goes back to the device.
//! - **client** ([`IpTunnel`], [`run_tun_client`]): one CONNECT-IP tunnel whose packets are
//!   carried as a [`UdpTunnel`]'s datagrams (the driver passes them through
//!   `tunnel_send_packet` / `tunnel_recv_packet`), with the addresses and routes the edge
//!   gives in a watch channel; `run_tun_client` gives them to a TUN device, moves packets
//!   both ways and opens a new tunnel when one ends.
//!
//! Packets cross the driver one `Bytes` each: batching with the kernel's offloads is
//! future work (see `veil_tun`).

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use veil_engine::{IpAddressRange, IpPrefix, IpScope};
use veil_tun::{BATCH_PACKETS, RecvBatch, SendBatch, Tun};

use crate::command::Command;
use crate::udp_tunnel::UdpTunnel;
use crate::{OpenFailure, Opener};

/// Packets waiting for the device, at most; beyond, they are dropped as a congested link
/// would drop them.
const DEVICE_QUEUE: usize = 1024;

/// The edge's IP off-ramp: where the clients' packets go out.
#[derive(Debug, Clone)]
pub struct IpEgress {
    /// `None`: the `decap` off-ramp (`crate::decap`).
    device: Option<Arc<Tun>>,
}

impl IpEgress {
    /// Packets go out through `device`, which the caller has brought up with a route to
    /// each pool through it.
    pub fn new(device: Arc<Tun>) -> Self {
        Self {
            device: Some(device),
        }
    }

    /// The `decap` off-ramp: the engine takes packets apart into UDP and ICMP echo flows
    /// and each flow gets an ordinary socket (no device, no privileges); TCP is answered
    /// with ICMP "administratively prohibited" (it rides L4 streams instead).
    pub fn decap() -> Self {
        Self { device: None }
    }

    /// Whether this is the `decap` off-ramp.
    pub fn is_decap(&self) -> bool {
        self.device.is_none()
    }

    /// Opens TUN device `name`, brings it up and routes each pool (`pools`: CIDR
    /// prefixes) through it.
    ///
    /// The device gets no address in the pools: each pool's first address is the edge's
    /// own inside the tunnels (the source of the ICMP errors the engine writes, such as
    /// Packet Too Big), and a kernel that owned it would drop those errors as martians (a
    /// packet arriving with a local source address).
    ///
    /// `offload`: with the kernel's segmentation offloads ([`open_tun`]).
    pub fn open(name: &str, pools: &[(IpAddr, u8)], offload: bool) -> io::Result<Self> {
        let device = open_tun(name, offload)?;
        device.up()?;
        for &(network, len) in pools {
            device.add_route(network, len)?;
        }
        Ok(Self::new(Arc::new(device)))
    }

    /// The device's name (`decap` for the decap off-ramp).
    pub fn name(&self) -> &str {
        self.device.as_deref().map_or("decap", Tun::name)
    }
}

/// The driver's end of an [`IpEgress`]: where packets for the device go.
#[derive(Debug)]
pub(crate) struct DeviceLink {
    to_device: mpsc::Sender<Bytes>,
    /// Packets dropped because the device's writer was behind.
    pub(crate) dropped: u64,
}

impl DeviceLink {
    /// Starts the device's reader (packets to the driver as `Command::IpFromDevice`) and
    /// writer tasks.
    /// `None` for the decap off-ramp, which has no device.
    pub(crate) fn spawn(
        egress: &IpEgress,
        commands: mpsc::UnboundedSender<Command>,
    ) -> Option<Self> {
        let device = egress.device.clone()?;
        let (to_device, mut queue) = mpsc::channel::<Bytes>(DEVICE_QUEUE);
        let writer = device.clone();
        tokio::spawn(async move {
            let mut batch = SendBatch::default();
            let mut packets = Vec::with_capacity(BATCH_PACKETS);
            while queue.recv_many(&mut packets, BATCH_PACKETS).await > 0 {
                for packet in packets.drain(..) {
                    batch.push(&packet);
                }
                if let Err(error) = writer.send_batch(&mut batch).await {
                    tracing::debug!(%error, "writing packets to the TUN device failed");
                }
            }
        });
        let reader = device;
        tokio::spawn(async move {
            let mut batch = RecvBatch::default();
            loop {
                match reader.recv_batch(&mut batch).await {
                    Ok(_) => {
                        let packets = batch.packets().map(<[u8]>::to_vec).collect();
                        if commands.send(Command::IpFromDevice { packets }).is_err() {
                            return;
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                        tracing::debug!(%error, "a read from the TUN device was dropped");
                    }
                    Err(error) => {
                        tracing::warn!(%error, "reading the TUN device failed; IP egress stops");
                        return;
                    }
                }
            }
        });
        Some(Self {
            to_device,
            dropped: 0,
        })
    }

    /// Queues a packet for the device, or drops it (counted) when the writer is behind.
    pub(crate) fn send(&mut self, packet: &[u8]) {
        if self
            .to_device
            .try_send(Bytes::copy_from_slice(packet))
            .is_err()
        {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped,
                    "packets for the IP egress device dropped: its writer is behind"
                );
            }
        }
    }
}

/// Opens TUN device `name`, with the kernel's segmentation offloads when `offload` is set
/// (one read or write moves up to 64 KiB of a TCP or UDP flow; `veil_tun`'s "Offloads and
/// batches"), falling back to a plain device, with a warning, on a kernel that refuses
/// them. Either way this module reads and writes it in batches.
pub fn open_tun(name: &str, offload: bool) -> io::Result<Tun> {
    if offload {
        match Tun::open_offloading(name) {
            Ok(device) => return Ok(device),
            Err(error) if error.kind() == io::ErrorKind::InvalidInput => {
                tracing::warn!(%error, "TUN offloads refused; opening without them");
            }
            Err(error) => return Err(error),
        }
    }
    Tun::open(name)
}

/// What the edge gave a client's IP tunnel: its addresses and the routes it carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpTunnelConfig {
    /// The assigned address prefixes (one address each, in practice).
    pub addresses: Vec<IpPrefix>,
    /// The advertised routes.
    pub routes: Vec<IpAddressRange>,
    /// The largest packet the tunnel carries now (what fits in one QUIC DATAGRAM frame),
    /// for the device's MTU; `None` when unknown.
    pub mtu: Option<usize>,
}

/// A client's open CONNECT-IP tunnel: packets as the datagrams of `packets` (whole IP
/// packets, checked and hop-limit-decremented by the engine on the way out), and the
/// edge's configuration as it arrives.
#[derive(Debug)]
pub struct IpTunnel {
    /// The packets both ways.
    pub packets: UdpTunnel,
    /// The addresses and routes; the first configuration comes right after the open.
    pub config: watch::Receiver<IpTunnelConfig>,
}

impl Opener {
    /// Opens a CONNECT-IP tunnel (RFC 9484) for `scope` and waits for the edge's answer.
    pub async fn open_ip(&self, scope: IpScope) -> Result<IpTunnel, OpenFailure> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.lane()
            .send(Command::OpenIp {
                scope: Box::new(scope),
                reply,
            })
            .map_err(|_| OpenFailure::Stopped)?;
        answer.await.map_err(|_| OpenFailure::Stopped)?
    }
}

/// How [`run_tun_client`] sets up the device.
#[derive(Debug, Clone, Default)]
pub struct TunClientOptions {
    /// Routes to give the device instead of the advertised ones (empty: the advertised).
    pub routes: Vec<(IpAddr, u8)>,
}

/// Gives `device` the tunnel's addresses and routes and moves packets both ways between
/// it and a CONNECT-IP tunnel opened through `opener`, opening a new one (after a pause
/// that grows to 10 s) whenever it ends. `ready` is told each configuration applied.
/// Returns when the node stops.
pub async fn run_tun_client(
    opener: Opener,
    device: Arc<Tun>,
    options: TunClientOptions,
    ready: mpsc::UnboundedSender<IpTunnelConfig>,
) -> Result<(), OpenFailure> {
    let mut pause = Duration::from_millis(100);
    let mut configured = IpTunnelConfig::default();
    loop {
        let tunnel = match opener.open_ip(IpScope::ANY).await {
            Ok(tunnel) => tunnel,
            Err(OpenFailure::Stopped) => return Err(OpenFailure::Stopped),
            Err(error) => {
                tracing::warn!(%error, "opening the IP tunnel failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        pause = Duration::from_millis(100);
        tracing::info!(tunnel = ?tunnel.packets.id(), "IP tunnel open");
        pump(tunnel, &device, &options, &mut configured, &ready).await;
        tracing::info!("IP tunnel ended; opening a new one");
        tokio::time::sleep(pause).await;
    }
}

/// Moves packets between `device` and `tunnel` until the tunnel ends, applying each new
/// configuration to the device.
async fn pump(
    tunnel: IpTunnel,
    device: &Arc<Tun>,
    options: &TunClientOptions,
    configured: &mut IpTunnelConfig,
    ready: &mpsc::UnboundedSender<IpTunnelConfig>,
) {
    let IpTunnel {
        packets,
        mut config,
    } = tunnel;
    let (sender, mut receiver) = packets.split();
    let from_device = {
        let device = device.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            let mut batch = RecvBatch::default();
            loop {
                match device.recv_batch(&mut batch).await {
                    Ok(_) => {
                        for packet in batch.packets() {
                            // A packet the engine cannot take now is dropped, as a full
                            // link would.
                            if sender.try_send(packet).is_err() {
                                return;
                            }
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                        tracing::debug!(%error, "a read from the TUN device was dropped");
                    }
                    Err(error) => {
                        tracing::warn!(%error, "reading the TUN device failed");
                        return;
                    }
                }
            }
        })
    };
    let mut to_device = SendBatch::default();
    let mut packets = Vec::with_capacity(BATCH_PACKETS);
    loop {
        tokio::select! {
            taken = receiver.recv_many(&mut packets, BATCH_PACKETS) => {
                if taken == 0 {
                    break;
                }
                for packet in packets.drain(..) {
                    to_device.push(&packet);
                }
                if let Err(error) = device.send_batch(&mut to_device).await {
                    tracing::debug!(%error, "writing packets to the TUN device failed");
                }
            },
            changed = config.changed() => {
                if changed.is_err() {
                    break;
                }
                let new = config.borrow_and_update().clone();
                apply(device, options, configured, &new);
                let _ = ready.send(new);
            }
        }
    }
    from_device.abort();
}

/// Gives the device the addresses and routes of `new` it does not have yet. (Addresses a
/// later configuration removes stay until the device closes: the engine drops packets
/// from them.)
fn apply(
    device: &Tun,
    options: &TunClientOptions,
    configured: &mut IpTunnelConfig,
    new: &IpTunnelConfig,
) {
    for prefix in &new.addresses {
        if configured.addresses.contains(prefix) {
            continue;
        }
        match device.add_address(prefix.addr(), prefix.prefix_len()) {
            Ok(()) => configured.addresses.push(*prefix),
            Err(error) => tracing::warn!(%error, "cannot give the TUN device its address"),
        }
    }
    if let Some(mtu) = new.mtu {
        // Larger packets would be dropped on the way in: the kernel must not send them.
        // (1280 at least: IPv6's minimum, RFC 9484 §7.2.)
        let mtu = u16::try_from(mtu.clamp(1280, 1500)).unwrap_or(1500);
        if let Err(error) = device.set_mtu(mtu) {
            tracing::warn!(%error, "cannot set the TUN device's MTU");
        }
    }
    if let Err(error) = device.up() {
        tracing::warn!(%error, "cannot bring the TUN device up");
    }
    let routes: Vec<(IpAddr, u8)> = if options.routes.is_empty() {
        new.routes.iter().flat_map(range_prefixes).collect()
    } else {
        options.routes.clone()
    };
    for (dest, len) in routes {
        let range = IpAddressRange {
            start: dest,
            end: dest,
            ip_protocol: 0,
        };
        if configured.routes.contains(&range) {
            continue;
        }
        match device.add_route(dest, len) {
            Ok(()) => configured.routes.push(range),
            Err(error) => {
                tracing::warn!(%error, %dest, len, "cannot add a route to the TUN device");
            }
        }
    }
}

/// The CIDR prefixes that cover `range` exactly (an advertised range need not be one
/// prefix).
fn range_prefixes(range: &IpAddressRange) -> Vec<(IpAddr, u8)> {
    match (range.start, range.end) {
        (IpAddr::V4(start), IpAddr::V4(end)) => {
            cover(u128::from(u32::from(start)), u128::from(u32::from(end)), 32)
                .into_iter()
                .filter_map(|(addr, len)| {
                    let addr = u32::try_from(addr).ok()?;
                    Some((IpAddr::V4(addr.into()), len))
                })
                .collect()
        }
        (IpAddr::V6(start), IpAddr::V6(end)) => cover(u128::from(start), u128::from(end), 128)
            .into_iter()
            .map(|(addr, len)| (IpAddr::V6(addr.into()), len))
            .collect(),
        _ => Vec::new(),
    }
}

/// The fewest prefixes of a `bits`-bit address space that cover `start..=end`.
fn cover(start: u128, end: u128, bits: u8) -> Vec<(u128, u8)> {
    let mut out = Vec::new();
    let mut next = start;
    while next <= end && out.len() < 256 {
        // The largest aligned block at `next` that ends within `end`; a block of one
        // address always does.
        let mut size_bits = u32::from(bits).min(next.trailing_zeros());
        let last = |size_bits: u32| match 1u128.checked_shl(size_bits) {
            Some(block) => next.saturating_add(block - 1),
            None => u128::MAX,
        };
        while size_bits > 0 && last(size_bits) > end {
            size_bits -= 1;
        }
        let len = bits.saturating_sub(u8::try_from(size_bits).unwrap_or(bits));
        out.push((next, len));
        match last(size_bits).checked_add(1) {
            Some(after) => next = after,
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_become_the_fewest_prefixes() {
        let range = |a: &str, b: &str| IpAddressRange {
            start: a.parse().expect("ip"),
            end: b.parse().expect("ip"),
            ip_protocol: 0,
        };
        let text = |r| {
            range_prefixes(&r)
                .into_iter()
                .map(|(a, l)| format!("{a}/{l}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(text(range("0.0.0.0", "255.255.255.255")), ["0.0.0.0/0"]);
        assert_eq!(text(range("10.0.0.0", "10.0.0.255")), ["10.0.0.0/24"]);
        assert_eq!(
            text(range("10.0.0.1", "10.0.0.6")),
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
        assert_eq!(
            text(range("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            ["::/0"]
        );
        assert_eq!(text(range("fd00::", "fd00::ffff")), ["fd00::/112"]);
    }
}
