//! veil-tun against the real kernel: each test opens its devices in a network namespace of
//! its own, so it never sees or disturbs the host's interfaces, addresses or routes, and
//! every packet it sends stays inside that namespace.
//!
//! They need root (`CAP_NET_ADMIN` and `CAP_SYS_ADMIN` for the namespace) and `/dev/net/tun`;
//! without either they print why and return (CI runs as root). Any other failure, such as a
//! namespace that cannot be made, fails the test.
#![cfg(target_os = "linux")]

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use veil_tun::Tun;

/// How long one test may take in all; each runs in milliseconds when it passes.
const TEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for one expected packet.
const PACKET_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `body` on a single-threaded tokio runtime in a fresh thread that has moved to a new
/// network namespace (`unshare(CLONE_NEWNET)` moves only the calling thread). The namespace,
/// and the devices in it, go away when the thread ends and the devices are closed. Returns
/// without running `body` (printing why) only when not root or without `/dev/net/tun`.
fn in_netns<F, Fut>(test: &str, body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED {test}: needs root (CAP_NET_ADMIN) to create TUN devices");
        return;
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        println!("SKIPPED {test}: /dev/net/tun is missing");
        return;
    }
    let thread = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET): cannot make a network namespace for the test");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async move {
            tokio::time::timeout(TEST_TIMEOUT, body())
                .await
                .expect("the test did not finish in time");
        });
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Reads packets from `tun` in a task of its own (the device is shared with the task that
/// writes) and hands them over a channel.
fn reader(tun: &Arc<Tun>) -> mpsc::UnboundedReceiver<Vec<u8>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let tun = Arc::clone(tun);
    tokio::spawn(async move {
        let mut buf = vec![0; 65535];
        loop {
            let n = tun.recv(&mut buf).await.expect("recv from the TUN device");
            if tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    rx
}

/// A UDP datagram seen on the device.
#[derive(Debug)]
struct Udp {
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
}

/// Parses an IP packet read from the device as UDP, or `None` for anything else.
fn parse_udp(packet: &[u8]) -> Option<Udp> {
    let sliced = SlicedPacket::from_ip(packet).ok()?;
    let (src, dst) = match sliced.net? {
        NetSlice::Ipv4(ip) => (
            IpAddr::V4(ip.header().source_addr()),
            IpAddr::V4(ip.header().destination_addr()),
        ),
        NetSlice::Ipv6(ip) => (
            IpAddr::V6(ip.header().source_addr()),
            IpAddr::V6(ip.header().destination_addr()),
        ),
        NetSlice::Arp(_) => return None,
    };
    let Some(TransportSlice::Udp(udp)) = sliced.transport else {
        return None;
    };
    Some(Udp {
        src: SocketAddr::new(src, udp.source_port()),
        dst: SocketAddr::new(dst, udp.destination_port()),
        payload: udp.payload().to_vec(),
    })
}

/// Waits for the first UDP datagram to `dst`, passing over whatever else the kernel sends
/// into the device (IPv6 router solicitations, MLD reports).
async fn next_udp_to(packets: &mut mpsc::UnboundedReceiver<Vec<u8>>, dst: SocketAddr) -> Udp {
    tokio::time::timeout(PACKET_TIMEOUT, async {
        loop {
            let packet = packets.recv().await.expect("the reader task ended");
            if let Some(udp) = parse_udp(&packet) {
                if udp.dst == dst {
                    return udp;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no UDP datagram to {dst} came out of the TUN device"))
}

/// A UDP datagram in an IP packet, with the IP header's and the UDP checksums computed.
fn udp_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let builder = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families"),
    };
    let builder = builder.udp(src.port(), dst.port());
    let mut packet = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut packet, payload).expect("build packet");
    packet
}

/// Waits until the kernel can deliver packets for the IPv6 address `addr` locally.
///
/// The kernel finishes an IPv6 address's setup in a work queue, even without DAD: the
/// address can be bound at once, but the route that delivers packets to it (in the local
/// table) appears a moment after `up`, and a packet written into the device before then is
/// dropped as one to forward (`Ip6InAddrErrors`). `/proc/thread-self/net/ipv6_route` lists
/// the routes of this thread's namespace, the local table's included.
async fn wait_for_ipv6_local_route(addr: std::net::Ipv6Addr) {
    let dest = format!("{:032x} 80 ", u128::from(addr));
    tokio::time::timeout(PACKET_TIMEOUT, async {
        loop {
            let routes = std::fs::read_to_string("/proc/thread-self/net/ipv6_route")
                .expect("read /proc/thread-self/net/ipv6_route");
            if routes.lines().any(|line| line.starts_with(&dest)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the kernel never installed the local route of {addr}"));
}

/// The full round trip for one family: a datagram from a host socket bound to `local` to
/// `peer` comes out of the device, and a reply written into the device reaches the socket.
async fn round_trip(tun: Arc<Tun>, local: IpAddr, peer: SocketAddr) {
    let mut packets = reader(&tun);
    let socket = UdpSocket::bind(SocketAddr::new(local, 0))
        .await
        .expect("bind the host socket to the device's address");
    let socket_addr = socket.local_addr().expect("local addr");

    socket
        .send_to(b"hello through veil", peer)
        .await
        .expect("send to the peer behind the device");
    let out = next_udp_to(&mut packets, peer).await;
    assert_eq!(
        out.src, socket_addr,
        "source of the packet read from the device"
    );
    assert_eq!(out.payload, b"hello through veil");

    let reply = udp_packet(peer, socket_addr, b"and back");
    let written = tun.send(&reply).await.expect("write the reply");
    assert_eq!(written, reply.len());
    let mut buf = [0; 64];
    let (n, from) = tokio::time::timeout(PACKET_TIMEOUT, socket.recv_from(&mut buf))
        .await
        .expect("the reply written into the device never reached the host socket")
        .expect("recv_from");
    assert_eq!(from, peer);
    assert_eq!(&buf[..n], b"and back");
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn sock(s: &str) -> SocketAddr {
    s.parse().expect("test socket address")
}

#[test]
fn ipv4_round_trip_through_the_kernel() {
    in_netns("ipv4_round_trip_through_the_kernel", || async {
        let tun = Arc::new(Tun::open("veil%d").expect("open"));
        assert_eq!(tun.name(), "veil0", "the pattern is resolved by the kernel");
        tun.set_mtu(1400).expect("set_mtu");
        assert_eq!(tun.mtu().expect("mtu"), 1400);
        tun.add_address(ip("10.77.0.1"), 24).expect("add_address");
        tun.up().expect("up");

        let again = tun
            .add_address(ip("10.77.0.1"), 24)
            .expect_err("a second time");
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists, "{again}");
        assert!(
            again
                .to_string()
                .starts_with("cannot add address 10.77.0.1/24 to TUN device veil0: "),
            "{again}"
        );

        round_trip(tun, ip("10.77.0.1"), sock("10.77.0.2:9999")).await;
    });
}

#[test]
fn ipv6_round_trip_through_the_kernel() {
    in_netns("ipv6_round_trip_through_the_kernel", || async {
        let tun = Arc::new(Tun::open("veil6").expect("open"));
        tun.set_mtu(1400).expect("set_mtu");
        // Added before up, as the client does: usable at once, with no DAD to wait for
        // (binding to a tentative address would fail with EADDRNOTAVAIL).
        tun.add_address(ip("fd77::1"), 64).expect("add_address");
        tun.up().expect("up");
        wait_for_ipv6_local_route("fd77::1".parse().expect("v6")).await;
        round_trip(tun, ip("fd77::1"), sock("[fd77::2]:9999")).await;
    });
}

#[test]
fn routes_through_the_device() {
    in_netns("routes_through_the_device", || async {
        let tun = Arc::new(Tun::open("veilr").expect("open"));
        tun.add_address(ip("10.77.0.1"), 24)
            .expect("add_address v4");
        tun.add_address(ip("fd77::1"), 64).expect("add_address v6");
        // The device starts down, and the kernel routes nothing through a device that is down.
        let down = tun
            .add_route(ip("10.78.0.0"), 16)
            .expect_err("the device is down");
        assert_eq!(down.kind(), io::ErrorKind::NetworkDown, "{down}");
        tun.up().expect("up");
        let mut packets = reader(&tun);

        let v4 = UdpSocket::bind("0.0.0.0:0").await.expect("bind v4");
        let v6 = UdpSocket::bind("[::]:0").await.expect("bind v6");
        let (v4_dst, v6_dst) = (sock("10.78.5.5:9999"), sock("[fd78:0:0:5::5]:9999"));

        // Without the routes the namespace has no way there.
        for (socket, dst) in [(&v4, v4_dst), (&v6, v6_dst)] {
            let err = socket.send_to(b"x", dst).await.expect_err("no route yet");
            assert_eq!(
                err.kind(),
                io::ErrorKind::NetworkUnreachable,
                "{dst}: {err}"
            );
        }

        tun.add_route(ip("10.78.0.0"), 16).expect("add_route v4");
        // Host bits past the prefix are cleared: this is fd78::/48.
        tun.add_route(ip("fd78::1"), 48).expect("add_route v6");

        for (socket, dst, src) in [(&v4, v4_dst, ip("10.77.0.1")), (&v6, v6_dst, ip("fd77::1"))] {
            socket
                .send_to(b"routed", dst)
                .await
                .expect("send along the route");
            let udp = next_udp_to(&mut packets, dst).await;
            assert_eq!(udp.src.ip(), src, "the device's address is the source");
            assert_eq!(udp.payload, b"routed");
        }

        let again = tun
            .add_route(ip("10.78.0.0"), 16)
            .expect_err("a second time");
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists, "{again}");
        assert!(
            again
                .to_string()
                .starts_with("cannot add route 10.78.0.0/16 via TUN device veilr: "),
            "{again}"
        );
        let bad = tun
            .add_route(ip("10.78.0.0"), 33)
            .expect_err("prefix too long");
        assert_eq!(bad.kind(), io::ErrorKind::InvalidInput, "{bad}");
    });
}

#[test]
fn open_errors_are_clear() {
    in_netns("open_errors_are_clear", || async {
        let first = Tun::open("veil0").expect("open");

        // One queue, one owner: the kernel refuses a second open of a TUN device in use.
        let busy = Tun::open("veil0").expect_err("veil0 is already open");
        assert_eq!(busy.kind(), io::ErrorKind::ResourceBusy, "{busy}");
        let text = busy.to_string();
        assert!(text.starts_with("cannot open TUN device veil0: "), "{text}");
        assert!(text.contains("already open"), "{text}");

        // A pattern takes the next free number instead.
        let second = Tun::open("veil%d").expect("open a pattern");
        assert_eq!(second.name(), "veil1");

        // A name taken by an interface that is not a TUN device.
        let lo = Tun::open("lo").expect_err("lo is not a TUN device");
        assert_eq!(lo.kind(), io::ErrorKind::InvalidInput, "{lo}");
        assert!(
            lo.to_string().starts_with("cannot open TUN device lo: "),
            "{lo}"
        );

        // 15 bytes is Linux's limit; 16 is refused before any system call.
        let longest = Tun::open("veil56789012345").expect("a 15-byte name");
        assert_eq!(longest.name(), "veil56789012345");
        let long = Tun::open("veil567890123456").expect_err("a 16-byte name");
        assert_eq!(long.kind(), io::ErrorKind::InvalidInput, "{long}");
        let text = long.to_string();
        assert!(
            text.starts_with("cannot open TUN device veil567890123456: "),
            "{text}"
        );
        assert!(text.contains("longer than Linux's limit of 15"), "{text}");
        for bad in ["", "a/b", "a b", "a\0b"] {
            let err = Tun::open(bad).expect_err(bad);
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {err}");
        }

        // Closing frees the name.
        drop(first);
        let reopened = Tun::open("veil0").expect("veil0 again after it was closed");
        assert_eq!(reopened.name(), "veil0");
    });
}

/// Outside a tokio runtime `open` is an error, not the reactor's panic. Needs no privilege:
/// the runtime is checked before the device is opened.
#[test]
fn open_outside_a_runtime_is_an_error() {
    let err = Tun::open("veil0").expect_err("no runtime");
    assert_eq!(err.kind(), io::ErrorKind::Other);
    assert_eq!(
        err.to_string(),
        "cannot open TUN device veil0: not called within a tokio runtime"
    );
}

/// Reads UDP datagrams to `dst` with [`Tun::recv_batch`] until `count` have come, returning
/// their payloads and how many reads it took.
async fn batch_udp_to(tun: &Tun, dst: SocketAddr, count: usize) -> (Vec<Vec<u8>>, usize) {
    let mut batch = veil_tun::RecvBatch::default();
    let mut payloads = Vec::new();
    let mut reads = 0;
    tokio::time::timeout(PACKET_TIMEOUT, async {
        while payloads.len() < count {
            tun.recv_batch(&mut batch).await.expect("recv_batch");
            reads += 1;
            for packet in batch.packets() {
                if let Some(udp) = parse_udp(packet).filter(|udp| udp.dst == dst) {
                    payloads.push(udp.payload);
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {count} datagrams to {dst} came", payloads.len()));
    (payloads, reads)
}

/// Both directions in batches, on an offloading device and on a plain one: ten UDP
/// segments the host sends as one UDP GSO write come out whole and in order (in one read
/// where the kernel hands the device the super-packet), and ten packets queued in one
/// `SendBatch` all reach the host's socket.
async fn batch_round_trip(tun: Tun) {
    tun.add_address(ip("10.79.0.1"), 24).expect("add_address");
    tun.up().expect("up");
    let peer = sock("10.79.0.2:9999");
    let socket = std::net::UdpSocket::bind("10.79.0.1:0").expect("bind");
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::UdpGsoSegment, &1000)
        .expect("UDP_SEGMENT");
    let segments: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 1000]).collect();
    socket
        .send_to(&segments.concat(), peer)
        .expect("a GSO send");
    let (payloads, reads) = batch_udp_to(&tun, peer, 10).await;
    assert_eq!(payloads, segments, "the segments, whole and in order");
    println!("offload {}: 10 segments in {reads} read(s)", tun.offloads());

    let socket = UdpSocket::from_std({
        socket.set_nonblocking(true).expect("non-blocking");
        socket
    })
    .expect("tokio socket");
    let local = socket.local_addr().expect("local addr");
    let mut batch = veil_tun::SendBatch::default();
    for i in 0..10u8 {
        assert!(batch.push(&udp_packet(peer, local, &[i; 900])));
    }
    assert_eq!(batch.len(), 10);
    tun.send_batch(&mut batch).await.expect("send_batch");
    assert!(batch.is_empty(), "emptied by the send");
    let mut buf = [0; 2048];
    for i in 0..10u8 {
        let (n, from) = tokio::time::timeout(PACKET_TIMEOUT, socket.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("packet {i} of the batch never reached the socket"))
            .expect("recv_from");
        assert_eq!((from, &buf[..n]), (peer, &[i; 900][..]));
    }
}

#[test]
fn batches_go_both_ways_on_an_offloading_device() {
    in_netns("batches_go_both_ways_on_an_offloading_device", || async {
        let tun = Tun::open_offloading("veiloff").expect("open with offloads");
        assert!(tun.offloads());
        // One packet at a time would read or write the offload header as data.
        let mut buf = [0; 1500];
        let refused = tun
            .recv(&mut buf)
            .await
            .expect_err("recv on an offloading device");
        assert_eq!(refused.kind(), io::ErrorKind::Unsupported, "{refused}");
        let refused = tun.send(&buf[..20]).await.expect_err("send too");
        assert_eq!(refused.kind(), io::ErrorKind::Unsupported, "{refused}");
        batch_round_trip(tun).await;
    });
}

#[test]
fn batches_work_on_a_plain_device_too() {
    in_netns("batches_work_on_a_plain_device_too", || async {
        let tun = Tun::open("veilplain").expect("open");
        assert!(!tun.offloads());
        batch_round_trip(tun).await;
    });
}
