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

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use anyhow::{Context, ensure};

/// The namespace the edge runs in.
pub(crate) const NAMESPACE: &str = "veil-bench";
/// The root namespace's end of the link: where the bench's targets listen.
pub(crate) const HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 203, 0, 1));
/// The edge's end.
pub(crate) const EDGE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 203, 0, 2));
/// The link's MTU, a real Ethernet's.
pub(crate) const MTU: &str = "1500";

/// The namespace and its veth pair, removed on drop.
pub(crate) struct Link;

impl Link {
    /// Creates the namespace and the pair, addressed and up (a leftover of an interrupted
    /// run is removed first).
    pub(crate) fn create() -> anyhow::Result<Self> {
        let _ = ip(&["netns", "delete", NAMESPACE]);
        let _ = ip(&["link", "delete", "vb-host"]);
        ip(&["netns", "add", NAMESPACE])
            .context("creating a network namespace (root and ip needed)")?;
        let link = Self;
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

    /// What runs a program inside the namespace: `ip netns exec NAMESPACE` (which execs it:
    /// the pid is the program's).
    pub(crate) fn exec_prefix() -> [&'static str; 3] {
        ["netns", "exec", NAMESPACE]
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Err(error) = ip(&["netns", "delete", NAMESPACE]) {
            eprintln!("veil bench tcp: could not delete network namespace {NAMESPACE}: {error:#}");
        }
    }
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
