//! NAT rebinding in the middle of a download, with real programs on loopback: curl →
//! `veil client` (SOCKS5) → a NAT of the test's own → `veil server` → nginx.
//!
//! The NAT is the tests' UDP relay (`support/relay.rs`): the client talks to it as if it
//! were the edge, and it forwards the client's datagrams to the edge from a socket of its
//! own, as a NAT's mapping would.
//! A quarter of the way into a 64 MiB download it "rebinds": from then on it forwards from
//! a new socket (a new source port, as when a NAT's mapping expires), and whatever the
//! edge still sends to the old one is lost, as the forgotten mapping's would be. The edge
//! must follow the client to its new address and the download must complete, whole and on
//! the same connection (before the engine's workaround for cloudflare/quiche#2452 it stalled
//! until the idle timeout).

mod support;

use std::time::Duration;

use anyhow::ensure;
use support::relay::Relay;
use support::{Client, Edge, Origin, TOKEN, TempDir, require_tool, timed};

/// The file downloaded.
const SIZE: usize = 64 << 20;
/// When the NAT rebinds: after this many bytes came from the edge.
const REBIND_AFTER: u64 = (SIZE / 4) as u64;
/// Bound of the download in a debug build on a busy machine (a few seconds alone); a
/// stalled transfer would wait for the idle timeout instead.
const DOWNLOAD: Duration = Duration::from_secs(60);

#[test]
fn a_download_survives_the_client_s_nat_rebinding() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("rebinding")?;
    let origin = Origin::start(dir.path())?;
    let served = origin.root().join("big.bin");
    let served_sum = support::write_random_file(&served, SIZE, 0x5eed_0b1d)?;
    let edge = Edge::start(
        dir.path(),
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let nat = Relay::start(edge.addr())?;
    nat.rebind_after(REBIND_AFTER);
    let client = Client::start(
        dir.path(),
        nat.addr(),
        &["--pin", edge.pin()?, "--token", TOKEN],
    )?;
    let downloaded = dir.join("downloaded.bin");
    let socks = format!("socks5h://{}", client.socks());
    let url = origin.url("big.bin");
    let output = timed("64 MiB download across a NAT rebinding", || {
        support::download(&socks, &downloaded, &url, DOWNLOAD)
    })?;
    let (rebound, forgotten) = nat.rebound();
    let context = || {
        format!(
            "rebound {rebound}, {forgotten} datagrams to the forgotten mapping\n{}\n{}",
            edge.diagnostics(),
            client.diagnostics()
        )
    };
    support::check_download(&output, &downloaded, &served_sum, context)?;
    ensure!(
        rebound,
        "the NAT never rebound: nothing was tested\n{}",
        context()
    );
    ensure!(
        edge.connections_established() == 1,
        "the client connected again instead of being followed\n{}",
        context()
    );
    eprintln!("e2e: rebinding: {forgotten} datagrams lost to the forgotten mapping");
    Ok(())
}
