//! A Linux TUN device for veil's tokio host.
//!
//! CONNECT-IP (RFC 9484) carries whole IP packets. Both of its ends need a TUN device: the
//! client (`veil client --tun veil0`) gives its device the addresses the edge assigned and the
//! routes the edge advertised, and moves packets between the device and the tunnel; the
//! edge's `tun` off-ramp writes the clients' decapsulated packets into a device and reads the
//! answers back. This crate is only the device: [`Tun::open`] it, configure it
//! ([`Tun::set_mtu`], [`Tun::add_address`], [`Tun::up`], [`Tun::add_route`]), then move
//! packets with [`Tun::recv`] and [`Tun::send`]. What a packet means is the caller's concern.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use veil_tun::Tun;
//!
//! let tun = Arc::new(Tun::open("veil%d")?); // the kernel picks veil0, veil1, ...
//! tun.set_mtu(1400)?;
//! tun.add_address("10.77.0.1".parse().unwrap(), 24)?;
//! tun.up()?;
//! tun.add_route("10.78.0.0".parse().unwrap(), 16)?;
//!
//! // One task reads, another writes, through the same device.
//! let reader = Arc::clone(&tun);
//! tokio::spawn(async move {
//!     let mut buf = vec![0; 65535];
//!     while let Ok(n) = reader.recv(&mut buf).await {
//!         let _packet = &buf[..n]; // one whole IPv4 or IPv6 packet
//!     }
//! });
//! tun.send(&[/* an IPv4 or IPv6 packet */]).await?;
//! # Ok(()) }
//! ```
//!
//! # Privileges and namespaces
//!
//! Opening and configuring a device needs `CAP_NET_ADMIN` (errors say so). Everything acts in
//! the network namespace of the calling thread: the device is created in the namespace of the
//! thread that calls [`Tun::open`], and each configuration call opens its netlink socket in
//! the namespace of the thread that makes it. The device disappears when the [`Tun`] is
//! dropped (it is not made persistent).
//!
//! # Sharing between tasks
//!
//! Every method takes `&self`, and a [`Tun`] is `Send + Sync`: wrap it in an [`Arc`] and give
//! one clone to the task that reads and one to the task that writes. The descriptor is
//! non-blocking and registered with tokio's reactor (`AsyncFd`), so a reader waiting for a
//! packet never holds up a writer. Reads and writes on a TUN descriptor are atomic per
//! packet, so several readers or several writers are also correct (each packet goes to
//! exactly one reader), though not faster: the kernel serialises them on one queue.
//!
//! [`Arc`]: std::sync::Arc
//!
//! # Offloads and batches
//!
//! Each [`Tun::recv`] and [`Tun::send`] is one packet and one system call. A device opened
//! with [`Tun::open_offloading`] asks the kernel for `IFF_VNET_HDR` and `TUNSETOFFLOAD`
//! (TSO for IPv4 and IPv6, and USO where the kernel has it): the host's TCP and UDP then
//! hand the device segments of up to 64 KiB behind a `virtio_net_hdr`, one read for what
//! would be some fifty packets, and accept coalesced ones the same way. Such a device
//! prefixes every packet with that header, so it is a mode chosen at open, and it is read
//! and written only in batches: [`Tun::recv_batch`] splits what one read brings into whole
//! IP packets (checksums completed), [`Tun::send_batch`] coalesces the packets queued in a
//! [`SendBatch`] into as few writes as the kernel accepts (GRO, the way the kernel's own
//! would). Both batch methods also work on a plain device, one packet per system call,
//! so a caller can use them whatever the mode. tun-rs does the splitting and coalescing
//! (`recv_multiple`, `send_multiple` with its GRO table).
//!
//! # Dependencies, and why
//!
//! - `tun-rs` (with only its `async_tokio` feature, default features off): opens the device
//!   (`/dev/net/tun`, `TUNSETIFF` with `IFF_TUN | IFF_NO_PI`), sets the MTU and the up flag
//!   with the usual `SIOCSIF*` ioctls, and does the readiness-driven async reads and writes
//!   on tokio's `AsyncFd`, all behind a safe API, so this crate has no unsafe code (the
//!   workspace denies it). Of the crates weighed it is the actively maintained one with
//!   tokio support that needs no second runtime on Linux (its `blocking` thread pool is only
//!   for Windows and macOS), and it already has the Linux offload path (`IFF_VNET_HDR`, GSO
//!   splitting, GRO coalescing) that the batching above would use. `tun` (rust-tun) was
//!   passed over: it configures IPv4 only through ioctls, its async side brings
//!   `tokio-util`'s codecs, and its licence (WTFPL) is not one the workspace otherwise has.
//!   tun-rs's own address management (its default `address-management` feature, through
//!   `netconfig-rs`) is left off: it has no routes and cannot skip IPv6 DAD.
//! - `netlink-packet-route`, `netlink-packet-core` and `netlink-sys`: addresses and routes of
//!   both families through rtnetlink (`RTM_NEWADDR` with `IFA_F_NODAD`, `RTM_NEWROUTE` with
//!   the device as output interface), as typed messages on a plain blocking netlink socket.
//!   `rtnetlink` (the async layer over the same packets) was passed over: it would add
//!   `netlink-proto`, `futures` and a connection task to spawn, for requests the kernel
//!   answers at once. The old ioctls (`SIOCADDRT`, `SIOCSIFADDR` on an `AF_INET6` socket)
//!   were passed over too: they need hand-written unsafe structures and cannot ask for
//!   `IFA_F_NODAD`.
//! - `tokio`: only to check that [`Tun::open`] is called inside a runtime (registering the
//!   descriptor with the reactor elsewhere would panic); tun-rs brings tokio in any case.
//!
//! Nothing here shells out to `ip`.
#![cfg(target_os = "linux")]

mod netlink;

use std::fmt;
use std::io;
use std::net::IpAddr;

/// An open TUN device (`IFF_TUN | IFF_NO_PI`: whole IPv4 and IPv6 packets, no Ethernet header
/// and no packet-information prefix).
///
/// Dropping it closes the descriptor, which deletes the device with its addresses and routes.
pub struct Tun {
    dev: tun_rs::AsyncDevice,
    /// Opened with `IFF_VNET_HDR` and offloads ([`Tun::open_offloading`]).
    offload: bool,
    /// The name the kernel gave, a pattern such as `veil%d` resolved; kept for error messages
    /// so that they name the device without a system call.
    name: String,
    /// The interface index that netlink requests address.
    index: u32,
}

impl fmt::Debug for Tun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// The longest interface name Linux accepts (`IFNAMSIZ` less the terminating NUL).
pub const MAX_NAME_LEN: usize = 15;

impl Tun {
    /// Creates a TUN device named `name`, or attaches to an existing persistent TUN device of
    /// that name that nobody has open; `name` may be a pattern with one `%d`, such as
    /// `veil%d`, for which the kernel picks the first free number ([`Tun::name`] tells which).
    ///
    /// The device starts down (or keeps the state of the persistent device it attaches to):
    /// configure it, then call [`Tun::up`].
    ///
    /// Must be called within a tokio runtime with I/O enabled: the descriptor is registered
    /// with its reactor.
    ///
    /// # Errors
    ///
    /// Each error names the device and says it could not be opened:
    /// - an invalid name (empty, longer than [`MAX_NAME_LEN`] bytes, `.` or `..`, or with a
    ///   `/`, `:`, NUL or whitespace): `InvalidInput`, checked before any system call;
    /// - a TUN device of that name that is already open (by this process or another; this
    ///   crate does not ask for `IFF_MULTI_QUEUE`, so a device has one queue and one owner):
    ///   the kernel's `EBUSY`, `ResourceBusy`;
    /// - a name taken by an interface that is not a TUN device: the kernel's `EINVAL`;
    /// - no `CAP_NET_ADMIN`: `PermissionDenied`; no `/dev/net/tun`: `NotFound`;
    /// - no tokio runtime: `Other`.
    pub fn open(name: &str) -> io::Result<Tun> {
        Self::open_with(name, false)
    }

    /// [`Tun::open`], with the kernel's segmentation offloads (see the crate's "Offloads
    /// and batches"): read and write it with [`Tun::recv_batch`] and [`Tun::send_batch`];
    /// [`Tun::recv`] and [`Tun::send`] refuse (`Unsupported`), since every packet of such a
    /// device carries a header they would not take off or put on.
    ///
    /// # Errors
    ///
    /// As [`Tun::open`]; a kernel without `IFF_VNET_HDR` support fails here (`EINVAL`),
    /// and the caller can open the device without offloads instead.
    pub fn open_offloading(name: &str) -> io::Result<Tun> {
        Self::open_with(name, true)
    }

    fn open_with(name: &str, offload: bool) -> io::Result<Tun> {
        let what = || format!("open TUN device {name}");
        check_name(name).map_err(|e| context(e, &what()))?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(context(
                io::Error::other("not called within a tokio runtime"),
                &what(),
            ));
        }
        let dev = tun_rs::DeviceBuilder::new()
            .name(name)
            .packet_information(false)
            .inherit_enable_state()
            .offload(offload)
            .build_async()
            .map_err(|e| context(e, &what()))?;
        let name = dev.name().map_err(|e| context(e, &what()))?;
        let index = dev
            .if_index()
            .map_err(|e| context(e, &format!("find the index of TUN device {name}")))?;
        Ok(Tun {
            dev,
            offload,
            name,
            index,
        })
    }

    /// Whether the device was opened with offloads ([`Tun::open_offloading`]).
    pub fn offloads(&self) -> bool {
        self.offload
    }

    /// The device's name, as the kernel gave it (a pattern such as `veil%d` resolved).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's interface index, for callers that address it in other kernel interfaces
    /// (`IPV6_UNICAST_IF`, `SO_BINDTOIFINDEX`, netlink).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The device's MTU: the largest packet [`Tun::send`] may write and [`Tun::recv`] may
    /// return (Linux gives a new TUN device 1500).
    pub fn mtu(&self) -> io::Result<u16> {
        self.dev
            .mtu()
            .map_err(|e| context(e, &format!("read the MTU of TUN device {}", self.name)))
    }

    /// Sets the device's MTU. For CONNECT-IP this is the tunnel's room for a packet: the QUIC
    /// path's datagram size less the HTTP Datagram and context ID overhead. IPv6 needs at least
    /// 1280 (RFC 8200); below that the kernel disables IPv6 on the device and drops its IPv6
    /// addresses.
    pub fn set_mtu(&self, mtu: u16) -> io::Result<()> {
        self.dev
            .set_mtu(mtu)
            .map_err(|e| context(e, &format!("set MTU {mtu} on TUN device {}", self.name)))
    }

    /// Adds `addr/prefix_len` to the device, IPv4 or IPv6 (IPv6 without Duplicate Address
    /// Detection, pointless on a point-to-point link, so that the address is usable at once).
    /// Once the device is up the kernel routes the address's prefix through it.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a prefix longer than the family's width; the kernel's `EEXIST`
    /// (`AlreadyExists`) for an address the device already has.
    pub fn add_address(&self, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let what = || {
            format!(
                "add address {addr}/{prefix_len} to TUN device {}",
                self.name
            )
        };
        check_prefix(addr, prefix_len).map_err(|e| context(e, &what()))?;
        netlink::add_address(self.index, addr, prefix_len).map_err(|e| context(e, &what()))
    }

    /// Brings the device up (`IFF_UP`), which makes the kernel install the routes of its
    /// addresses' prefixes and lets [`Tun::add_route`] route through it.
    ///
    /// The kernel finishes an IPv6 address's setup in a work queue, even without DAD: the
    /// address can be bound at once, but for a moment (milliseconds) after `up` the kernel
    /// drops packets written into the device for it, until it has installed the address's
    /// local route. Like any loss on a link, the peers' retransmissions cover it; a caller
    /// that must not lose the first packets can wait for the local route
    /// (`tests/device.rs` does, through `/proc/thread-self/net/ipv6_route`).
    pub fn up(&self) -> io::Result<()> {
        self.dev
            .enabled(true)
            .map_err(|e| context(e, &format!("bring up TUN device {}", self.name)))
    }

    /// Routes `dest/prefix_len` (IPv4 or IPv6) through the device, in the main routing table,
    /// so that packets the host sends there arrive on [`Tun::recv`]. Bits of `dest` past the
    /// prefix are ignored (`10.78.5.5/16` is `10.78.0.0/16`), as a route is to a prefix.
    ///
    /// Call it after [`Tun::up`]: the kernel refuses an IPv4 route through a device that is
    /// down (`ENETDOWN`).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a prefix longer than the family's width; the kernel's `EEXIST`
    /// (`AlreadyExists`) for a route that exists already.
    pub fn add_route(&self, dest: IpAddr, prefix_len: u8) -> io::Result<()> {
        let what = || format!("add route {dest}/{prefix_len} via TUN device {}", self.name);
        check_prefix(dest, prefix_len).map_err(|e| context(e, &what()))?;
        let dest = netlink::network(dest, prefix_len);
        netlink::add_route(self.index, dest, prefix_len).map_err(|e| context(e, &what()))
    }

    /// Waits for the next packet the host sent into the device and copies it into `buf`,
    /// returning its length: one whole IPv4 or IPv6 packet per call.
    ///
    /// A packet longer than `buf` is cut to `buf.len()` (the kernel discards the rest), so
    /// give at least [`Tun::mtu`] bytes; 65535 is always enough.
    ///
    /// Cancel safe: a future dropped before it completes has taken no packet.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.refuse_if_offloading("read a packet from")?;
        self.dev
            .recv(buf)
            .await
            .map_err(|e| context(e, &format!("read a packet from TUN device {}", self.name)))
    }

    /// Writes one whole IPv4 or IPv6 packet into the device, as if the host had received it
    /// on this link, returning `packet.len()`. The kernel checks only the version nibble
    /// (neither 4 nor 6 is `EINVAL`); a packet it then finds malformed or not for it is
    /// dropped silently, as on any link.
    ///
    /// Cancel safe: a future dropped before it completes has written nothing.
    pub async fn send(&self, packet: &[u8]) -> io::Result<usize> {
        self.refuse_if_offloading("write a packet to")?;
        self.dev
            .send(packet)
            .await
            .map_err(|e| context(e, &format!("write a packet to TUN device {}", self.name)))
    }
}

impl Tun {
    /// Waits for what the host sent into the device and puts it in `batch` as whole IP
    /// packets, returning how many ([`RecvBatch::packets`] lists them): on an offloading
    /// device one read of up to 64 KiB split into segments, otherwise one packet.
    ///
    /// # Errors
    ///
    /// The system's, for the read (then the device is likely gone); `InvalidData` for a
    /// read that could not be split (a malformed or unsupported offload header, or a
    /// segment larger than a batch buffer): that read's packets are lost, and the next call
    /// reads on.
    ///
    /// Cancel safe: a future dropped before it completes has taken nothing.
    pub async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.count = 0;
        let RecvBatch {
            raw, slots, sizes, ..
        } = batch;
        let mut bufs: Vec<&mut [u8]> = slots.chunks_mut(BATCH_SLOT).collect();
        let result = self.dev.recv_multiple(raw, &mut bufs, sizes, 0).await;
        match result {
            Ok(count) => {
                batch.count = count;
                Ok(count)
            }
            Err(e) if e.raw_os_error().is_some() => Err(context(
                e,
                &format!("read packets from TUN device {}", self.name),
            )),
            Err(e) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                OpError {
                    message: format!(
                        "cannot split what TUN device {} gave into packets: {e}",
                        self.name
                    ),
                    source: e,
                },
            )),
        }
    }

    /// Writes the packets queued in `batch` into the device, coalescing them (on an
    /// offloading device) into as few writes as it can, and empties the batch. Every packet
    /// is tried: the first error is returned after the rest are written.
    ///
    /// Not cancel safe: a future dropped midway may have written some of the packets (the
    /// batch is emptied either way).
    pub async fn send_batch(&self, batch: &mut SendBatch) -> io::Result<()> {
        let queued = batch.queued;
        batch.queued = 0;
        if queued == 0 {
            return Ok(());
        }
        let bufs = batch.bufs.get_mut(..queued).unwrap_or_default();
        self.dev
            .send_multiple(&mut batch.gro, bufs, SEND_HEADROOM)
            .await
            .map(drop)
            .map_err(|e| context(e, &format!("write packets to TUN device {}", self.name)))
    }

    /// `Unsupported` on an offloading device, whose packets carry a header.
    fn refuse_if_offloading(&self, what: &str) -> io::Result<()> {
        if !self.offload {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "cannot {what} TUN device {} one packet at a time: it was opened with offloads \
                 (use recv_batch and send_batch)",
                self.name
            ),
        ))
    }
}

/// The packets a batch holds at most: a 64 KiB segment split at the smallest MSS IPv6
/// allows (1280-byte packets) makes 55, and tun-rs's own choice is this.
pub const BATCH_PACKETS: usize = tun_rs::IDEAL_BATCH_SIZE;

/// Room for one packet in a [`RecvBatch`]: the largest IP packet, so that neither a
/// device's MTU nor a segment size can overflow it.
const BATCH_SLOT: usize = 65_535;

/// Room before each packet in a [`SendBatch`] for the `virtio_net_hdr` an offloading device
/// takes.
const SEND_HEADROOM: usize = tun_rs::VIRTIO_NET_HDR_LEN;

/// Buffers for [`Tun::recv_batch`], reused from call to call. Its memory is reserved once
/// (8 MiB of address space: [`BATCH_PACKETS`] slots of 64 KiB and one for the raw read), and
/// the system gives it pages only as packets are written into them.
pub struct RecvBatch {
    /// The raw read: the offload header and a super-packet.
    raw: Vec<u8>,
    /// [`BATCH_PACKETS`] slots of [`BATCH_SLOT`] bytes, one packet each.
    slots: Vec<u8>,
    sizes: Vec<usize>,
    count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            raw: vec![0; SEND_HEADROOM + BATCH_SLOT],
            slots: vec![0; BATCH_PACKETS * BATCH_SLOT],
            sizes: vec![0; BATCH_PACKETS],
            count: 0,
        }
    }
}

impl fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBatch")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl RecvBatch {
    /// The packets the last [`Tun::recv_batch`] read, in order.
    pub fn packets(&self) -> impl Iterator<Item = &[u8]> {
        self.slots
            .chunks(BATCH_SLOT)
            .zip(&self.sizes)
            .take(self.count)
            .map(|(slot, &len)| slot.get(..len).unwrap_or_default())
    }
}

/// Packets queued for [`Tun::send_batch`]; its buffers are kept from batch to batch.
#[derive(Default)]
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    queued: usize,
    gro: tun_rs::GROTable,
}

impl fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendBatch")
            .field("queued", &self.queued)
            .finish_non_exhaustive()
    }
}

impl SendBatch {
    /// Queues a copy of `packet`; `false` when the batch is full ([`BATCH_PACKETS`]):
    /// send it first.
    pub fn push(&mut self, packet: &[u8]) -> bool {
        if self.queued == BATCH_PACKETS {
            return false;
        }
        if self.queued == self.bufs.len() {
            self.bufs.push(Vec::new());
        }
        let Some(buf) = self.bufs.get_mut(self.queued) else {
            return false;
        };
        buf.clear();
        buf.resize(SEND_HEADROOM, 0);
        buf.extend_from_slice(packet);
        self.queued += 1;
        true
    }

    /// How many packets are queued.
    pub fn len(&self) -> usize {
        self.queued
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Whether another packet fits.
    pub fn is_full(&self) -> bool {
        self.queued == BATCH_PACKETS
    }
}

/// Checks `name` the way the kernel's `dev_valid_name` does, so that a bad name is a clear
/// error before any system call (and never the truncation or panic of a C string copy).
fn check_name(name: &str) -> io::Result<()> {
    let problem = if name.is_empty() {
        Some("the name is empty".to_owned())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!(
            "the name is {} bytes long, longer than Linux's limit of {MAX_NAME_LEN}",
            name.len()
        ))
    } else if name == "." || name == ".." {
        Some("the name may not be . or ..".to_owned())
    } else {
        name.chars()
            .find(|&c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
            .map(|c| format!("the name may not contain {c:?}"))
    };
    match problem {
        Some(p) => Err(io::Error::new(io::ErrorKind::InvalidInput, p)),
        None => Ok(()),
    }
}

/// Checks that `prefix_len` fits `addr`'s family (32 bits for IPv4, 128 for IPv6).
fn check_prefix(addr: IpAddr, prefix_len: u8) -> io::Result<()> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix_len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("prefix length {prefix_len} is longer than {max} bits"),
        ));
    }
    Ok(())
}

/// Puts `what` (the operation and the device) before the OS error, keeping its kind so that
/// callers can still match on it (`ResourceBusy`, `AlreadyExists`, ...) and the original error
/// as the [`std::error::Error::source`], with a hint where the cause is usually the same.
fn context(source: io::Error, what: &str) -> io::Error {
    let hint = match source.kind() {
        io::ErrorKind::PermissionDenied => " (needs CAP_NET_ADMIN)",
        io::ErrorKind::ResourceBusy => " (a TUN device of that name is already open)",
        _ => "",
    };
    io::Error::new(
        source.kind(),
        OpError {
            message: format!("cannot {what}: {source}{hint}"),
            source,
        },
    )
}

/// An error of this crate: a sentence naming the operation and the device, over the error
/// the system gave.
#[derive(Debug)]
struct OpError {
    message: String,
    source: io::Error,
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::{Tun, check_name, check_prefix, context};
    use std::io;

    #[test]
    fn tun_is_shareable_between_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Tun>();
    }

    #[test]
    fn names_are_checked_as_the_kernel_does() {
        assert!(check_name("veil0").is_ok());
        assert!(check_name("veil%d").is_ok());
        assert!(check_name("a23456789012345").is_ok());
        for bad in [
            "",
            "a234567890123456",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\0b",
        ] {
            let err = check_name(bad).expect_err(bad);
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn prefixes_fit_their_family() {
        let v4 = "10.0.0.1".parse().expect("v4");
        let v6 = "fd77::1".parse().expect("v6");
        assert!(check_prefix(v4, 32).is_ok());
        assert!(check_prefix(v4, 33).is_err());
        assert!(check_prefix(v6, 128).is_ok());
        assert!(check_prefix(v6, 129).is_err());
    }

    #[test]
    fn errors_name_the_operation_keep_the_kind_and_hint() {
        let err = context(
            io::Error::from_raw_os_error(1), // EPERM
            "open TUN device veil0",
        );
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        let text = err.to_string();
        assert!(text.starts_with("cannot open TUN device veil0: "), "{text}");
        assert!(text.ends_with("(needs CAP_NET_ADMIN)"), "{text}");
        let source = err
            .get_ref()
            .and_then(std::error::Error::source)
            .expect("the OS error is kept as the source");
        assert!(source.to_string().contains("os error 1"), "{source}");
    }
}
