//! `veil bench tcp --veth`: the edge in a network namespace of its own, behind a veth pair
//! with a 1,500-byte MTU, so that tunnels and the edge's dials cross a link sized as real
//! ones are (loopback's 64 KiB MTU flatters QUIC, whose packets stay at about 1,350 bytes
//! while TCP's segments grow to 64 KiB).
//!
//! ```text
//!  root namespace                               namespace veil-bench
//!  bench (sink, echo) 10.203.0.1 ── vb-host ═══ vb-edge ── 10.203.0.2 veil server
//!  veil client(s) ──────────────────┘   (veth, MTU 1500)
//! ```
//!
//! The clients and the targets stay in the root namespace: a tunnel's bytes cross the
//! link twice (client → edge, edge → sink), as they cross a network twice in a real
//! deployment. Offloads (TSO, GSO, GRO) stay as the kernel sets them for veth, as a real
//! NIC has them. Needs root and `ip`; the namespace (and the pair with it) is deleted on
//! drop.
//!
//! With `--delay-ms` (this kernel has no netem), a router namespace stands in the middle
//! and routes every packet through the delay line ([`super::delay_line`]), which holds it
//! for the delay and drops `--loss-percent` of them, TCP and UDP alike; `--link-mbit`
//! caps each direction with the kernel's token bucket (`tbf`) on the router's way out:
//!
//! ```text
//!  root namespace              namespace veil-bench-link              namespace veil-bench
//!  10.203.0.1 vb-host ═══ vr-host 10.203.0.254 ─┐  ┌ 10.204.0.254 vr-edge ═══ vb-edge 10.204.0.2
//!                                   (tbf)       vbd0 (TUN: the delay line)  (tbf)
//! ```
//!
//! Packets that come in on either veth are routed into `vbd0` (a rule by incoming
//! interface); what the delay line writes back comes in on `vbd0` and takes the main
//! table's routes out.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use anyhow::{Context, ensure};

/// The namespace the edge runs in.
pub(crate) const NAMESPACE: &str = "veil-bench";
/// The router namespace of a link with a delay line.
const ROUTER: &str = "veil-bench-link";
/// The delay line's TUN device, in [`ROUTER`].
const LINE_DEVICE: &str = "vbd0";
/// Packets the kernel holds for the delay line to read (the device's `txqueuelen`).
const LINE_QUEUE_PACKETS: u32 = 20_000;
/// The root namespace's end of the link: where the bench's targets listen.
pub(crate) const HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 203, 0, 1));
/// The edge's end of a plain link.
const EDGE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 203, 0, 2));
/// The edge's end of a link with a delay line (a subnet of its own, behind the router).
const EDGE_BEHIND_LINE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 204, 0, 2));
/// The link's MTU, a real Ethernet's.
pub(crate) const MTU: &str = "1500";
/// [`MTU`] as a number.
pub(crate) const MTU_BYTES: u16 = 1500;

/// What a link with a delay line does to each direction (`--delay-ms`, `--loss-percent`,
/// `--link-mbit`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Impairment {
    pub(crate) delay_ms: u64,
    pub(crate) loss_percent: f64,
    /// Each direction's rate cap, in Mbit/s (`None`: what the delay line moves).
    pub(crate) link_mbit: Option<u64>,
}

/// The namespaces and their veth pairs (and the delay line, if any), removed on drop.
pub(crate) struct Link {
    edge: IpAddr,
    /// The delay line's process, when the link has one (stopped before the namespaces go).
    line: Option<super::procs::VeilProcess>,
}

impl Link {
    /// Creates the namespace and the pair, addressed and up (a leftover of an interrupted
    /// run is removed first); with `impairment`, the router namespace and its delay line
    /// between them.
    pub(crate) fn create(impairment: Option<Impairment>) -> anyhow::Result<Self> {
        for namespace in [NAMESPACE, ROUTER] {
            let _ = ip(&["netns", "delete", namespace]);
        }
        let _ = ip(&["link", "delete", "vb-host"]);
        ip(&["netns", "add", NAMESPACE])
            .context("creating a network namespace (root and ip needed)")?;
        match impairment {
            None => Self::plain(),
            Some(impairment) => Self::behind_line(impairment),
        }
    }

    /// One veth pair from the root namespace to the edge's.
    fn plain() -> anyhow::Result<Self> {
        let link = Self {
            edge: EDGE,
            line: None,
        };
        let host = format!("{HOST}/24");
        let edge = format!("{EDGE}/24");
        for args in [
            &[
                "link", "add", "vb-host", "type", "veth", "peer", "name", "vb-edge",
            ][..],
            &["link", "set", "vb-edge", "netns", NAMESPACE],
            &["addr", "add", &host, "dev", "vb-host"],
            &["link", "set", "vb-host", "mtu", MTU, "up"],
            &["-n", NAMESPACE, "addr", "add", &edge, "dev", "vb-edge"],
            &["-n", NAMESPACE, "link", "set", "vb-edge", "mtu", MTU, "up"],
            &["-n", NAMESPACE, "link", "set", "lo", "up"],
        ] {
            ip(args)?;
        }
        println!(
            "veil bench tcp: the edge runs in network namespace {NAMESPACE} at {EDGE}, behind a veth pair (MTU {MTU}) from {HOST}"
        );
        Ok(link)
    }

    /// Two veth pairs through the router's namespace, whose delay line every packet
    /// crosses.
    fn behind_line(impairment: Impairment) -> anyhow::Result<Self> {
        let mut link = Self {
            edge: EDGE_BEHIND_LINE,
            line: None,
        };
        let host = format!("{HOST}/24");
        ip(&["netns", "add", ROUTER]).context("creating the router's network namespace")?;
        let edge = format!("{EDGE_BEHIND_LINE}/24");
        for args in [
            &[
                "link", "add", "vb-host", "type", "veth", "peer", "name", "vr-host",
            ][..],
            &["link", "set", "vr-host", "netns", ROUTER],
            &["addr", "add", &host, "dev", "vb-host"],
            &["link", "set", "vb-host", "mtu", MTU, "up"],
            &["route", "add", "10.204.0.0/24", "via", "10.203.0.254"],
            &[
                "-n", ROUTER, "link", "add", "vr-edge", "type", "veth", "peer", "name", "vb-edge",
            ],
            &["-n", ROUTER, "link", "set", "vb-edge", "netns", NAMESPACE],
            &[
                "-n",
                ROUTER,
                "addr",
                "add",
                "10.203.0.254/24",
                "dev",
                "vr-host",
            ],
            &[
                "-n",
                ROUTER,
                "addr",
                "add",
                "10.204.0.254/24",
                "dev",
                "vr-edge",
            ],
            &["-n", ROUTER, "link", "set", "vr-host", "mtu", MTU, "up"],
            &["-n", ROUTER, "link", "set", "vr-edge", "mtu", MTU, "up"],
            &["-n", ROUTER, "link", "set", "lo", "up"],
            &["-n", NAMESPACE, "addr", "add", &edge, "dev", "vb-edge"],
            &["-n", NAMESPACE, "link", "set", "vb-edge", "mtu", MTU, "up"],
            &["-n", NAMESPACE, "link", "set", "lo", "up"],
            &[
                "-n",
                NAMESPACE,
                "route",
                "add",
                "default",
                "via",
                "10.204.0.254",
            ],
        ] {
            ip(args)?;
        }
        link.line = Some(start_router(impairment)?);
        println!(
            "veil bench tcp: the edge runs in network namespace {NAMESPACE} at {EDGE_BEHIND_LINE}, {HOST} beyond a router whose delay line holds each packet {} ms, drops {}% and {} (MTU {MTU})",
            impairment.delay_ms,
            impairment.loss_percent,
            impairment.link_mbit.map_or_else(
                || "caps nothing".to_owned(),
                |mbit| format!("caps each direction at {mbit} Mbit/s")
            ),
        );
        Ok(link)
    }

    /// The edge's address.
    pub(crate) fn edge(&self) -> IpAddr {
        self.edge
    }

    /// What runs a program inside the namespace: `ip netns exec NAMESPACE` (which execs it:
    /// the pid is the program's).
    pub(crate) fn exec_prefix() -> [&'static str; 3] {
        ["netns", "exec", NAMESPACE]
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        drop(self.line.take());
        for namespace in [NAMESPACE, ROUTER] {
            if namespace == ROUTER && self.edge != EDGE_BEHIND_LINE {
                continue;
            }
            if let Err(error) = ip(&["netns", "delete", namespace]) {
                eprintln!(
                    "veil bench tcp: could not delete network namespace {namespace}: {error:#}"
                );
            }
        }
    }
}

/// Sets the router up to forward through the delay line, which it starts (and returns):
/// forwarding on, the rate caps, then the rules that send every packet from either veth
/// into the line's device.
fn start_router(impairment: Impairment) -> anyhow::Result<super::procs::VeilProcess> {
    // The router forwards, and takes back from the delay line packets whose source
    // lies behind another interface.
    for setting in [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
    ] {
        in_router(&["sysctl", "-q", "-w", setting])?;
    }
    if let Some(mbit) = impairment.link_mbit {
        let rate = format!("{mbit}mbit");
        for device in ["vr-host", "vr-edge"] {
            in_router(&[
                "tc", "qdisc", "add", "dev", device, "root", "tbf", "rate", &rate, "burst", "64kb",
                "latency", "25ms",
            ])?;
        }
    }
    let line = super::procs::start_delay_line(["netns", "exec", ROUTER], LINE_DEVICE, impairment)?;
    // The kernel queues what it routes into the line's device until the line reads it:
    // at the default 500 packets, the bursts of a TCP sender's 64 KiB segments (cut to
    // 1,500 bytes on the way in) overflowed it at about 85 MiB/s and TCP retransmitted 5%.
    let queue = LINE_QUEUE_PACKETS.to_string();
    for args in [
        &[
            "-n",
            ROUTER,
            "link",
            "set",
            LINE_DEVICE,
            "txqueuelen",
            &queue,
        ][..],
        &[
            "-n", ROUTER, "rule", "add", "iif", "vr-host", "lookup", "200",
        ],
        &[
            "-n", ROUTER, "rule", "add", "iif", "vr-edge", "lookup", "200",
        ],
        &[
            "-n",
            ROUTER,
            "route",
            "add",
            "default",
            "dev",
            LINE_DEVICE,
            "table",
            "200",
        ],
    ] {
        ip(args)?;
    }
    Ok(line)
}

/// Runs `PROGRAM ARGS…` in the router's namespace (`ip netns exec`).
fn in_router(args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["netns", "exec", ROUTER];
    full.extend_from_slice(args);
    ip(&full)
}

/// Runs `ip ARGS`.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    ensure!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}
