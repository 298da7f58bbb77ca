//! The QUIC sockets' buffers follow the length of the paths, as the kernel sees them
//! (`ss -m`): curl → `veil client` → the tests' relay (10 ms each way, nothing else) →
//! `veil server` → nginx.
//!
//! Across a path longer than a LAN (a handshake's smallest round trip over
//! `veil_engine::LONG_PATH_RTT`, 5 ms) both ends ask for 1 MiB each way, since there the
//! receiving socket is the path's only queue; when the edge's last such connection has
//! closed, its socket goes back to the size it started with; across a short path nothing
//! changes; and while a path is long, a transfer whose flights outgrow half the buffer
//! grows the receiver's further (a download the client's, an upload the glommio edge's) (docs/CONFIG.md, "Socket buffers"; `veil_engine::socket_buffers`).
//! The engine's count and measure and the sizer are tested on their own; this is the
//! hosts doing what they say, on both of the edge's runtimes.

mod support;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use support::impair::{ImpairedPath, Impairment};
use support::{Client, Edge, Origin, TOKEN, TempDir, curl, require_tool, wait_until};

/// What the hosts ask for while a path is long (`examples/veil/src/config.rs`).
const LONG_PATH_BUFFER: usize = 1 << 20;
/// Bound of each wait for the kernel's figures to change.
const SETTLE: Duration = Duration::from_secs(15);
/// One curl through the tunnel.
const FETCH: Duration = Duration::from_secs(30);

/// A path long enough to count: 20 ms round trips, no loss, no bottleneck.
const LONG: Impairment = Impairment {
    delay: Duration::from_millis(10),
    ..Impairment::CLEAN
};

/// The receive buffers Linux may report (`ss`'s `rb`) after a program asked for `asked`,
/// twice what it keeps for the data: capped at `net.core.rmem_max`, or not, where the
/// program may ask past the cap (`CAP_NET_ADMIN`, as the tests run in CI).
fn reported_after_asking(asked: usize) -> anyhow::Result<[usize; 2]> {
    let max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")?
        .trim()
        .parse()
        .context("net.core.rmem_max")?;
    Ok([2 * asked.min(max), 2 * asked])
}

/// The receive buffer of a socket that nobody resized (`net.core.rmem_default`).
fn kernel_default() -> anyhow::Result<usize> {
    std::fs::read_to_string("/proc/sys/net/core/rmem_default")?
        .trim()
        .parse()
        .context("net.core.rmem_default")
}

/// Which UDP sockets [`receive_buffers`] reads.
#[derive(Debug, Clone, Copy)]
enum Sockets {
    /// Those bound to this local port (the edge's listener; one per core on glommio).
    Port(u16),
    /// Those of this process (the client's).
    Process(u32),
}

/// The receive buffer (`rb`, bytes) of each UDP socket `which` names, from `ss -uanmp`.
fn receive_buffers(which: Sockets) -> anyhow::Result<Vec<usize>> {
    let out = Command::new("ss")
        .args(["-H", "-O", "-u", "-a", "-n", "-m", "-p"])
        .output()
        .context("ss")?;
    anyhow::ensure!(out.status.success(), "ss: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sizes = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let ours = match which {
            Sockets::Port(port) => fields
                .get(3)
                .is_some_and(|local| local.ends_with(&format!(":{port}"))),
            Sockets::Process(pid) => line.contains(&format!("pid={pid},")),
        };
        if !ours {
            continue;
        }
        let rb = line
            .split_once("skmem:(")
            .and_then(|(_, rest)| rest.split(',').find_map(|f| f.strip_prefix("rb")))
            .with_context(|| format!("no rb in: {line}"))?;
        sizes.push(rb.parse().with_context(|| format!("rb in: {line}"))?);
    }
    anyhow::ensure!(!sizes.is_empty(), "no UDP socket for {which:?} in:\n{text}");
    Ok(sizes)
}

/// Fetches a small file through `client`, so that it has a connection to its edge.
fn fetch(client: &Client, origin: &Origin) -> anyhow::Result<()> {
    let socks = format!("socks5h://{}", client.socks());
    let out = curl(
        &[
            "--proxy",
            &socks,
            "--silent",
            "--show-error",
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code}",
            &origin.url("small.bin"),
        ],
        FETCH,
    )?;
    anyhow::ensure!(
        out.code() == 0 && out.stdout == "200",
        "curl: {out:?}\n{}",
        client.diagnostics()
    );
    Ok(())
}

/// The test on the edge's `runtime`.
fn buffers_follow_the_paths(runtime: &str) -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    require_tool("ss", "iproute2")?;
    let dir = TempDir::new(&format!("buffers-{runtime}"))?;
    let origin = Origin::start(dir.path())?;
    std::fs::write(origin.root().join("small.bin"), vec![7u8; 4096])?;
    let grown = reported_after_asking(LONG_PATH_BUFFER)?;
    let start = kernel_default()?;
    anyhow::ensure!(
        grown[1] > start,
        "the kernel's default ({start} bytes) is already this large: nothing to see"
    );
    let has_grown = |sizes: &[usize]| sizes.iter().any(|rb| grown.contains(rb) && *rb > start);

    let mut edge = Edge::on_runtime(dir.path(), runtime)?;
    let at_edge = Sockets::Port(edge.addr().port());
    let edge_buffers = || receive_buffers(at_edge);
    anyhow::ensure!(
        edge_buffers()?.iter().all(|&rb| rb == start),
        "the edge's sockets before any connection: {:?}, expected {start}",
        edge_buffers()?
    );

    // A short path: a client straight to the edge. Nothing grows, or, where a busy host
    // took over 5 ms for the handshake, not beyond the exchanges that measure less.
    let near = Client::of(dir.path(), &edge, TOKEN)?;
    let near_pid = near.pid();
    let at_start = |sizes: anyhow::Result<Vec<usize>>| {
        sizes.is_ok_and(|sizes| sizes.iter().all(|&rb| rb == start))
    };
    let mut settled = false;
    for _ in 0..5 {
        fetch(&near, &origin)?;
        std::thread::sleep(Duration::from_millis(300));
        settled = at_start(receive_buffers(Sockets::Process(near_pid))) && at_start(edge_buffers());
        if settled {
            break;
        }
    }
    anyhow::ensure!(
        settled,
        "a short path grew buffers: client {:?}, edge {:?}\n{}",
        receive_buffers(Sockets::Process(near_pid)),
        edge_buffers(),
        edge.diagnostics()
    );

    // A long path: a second client through the relay. Both ends grow.
    let relay = ImpairedPath::start(edge.addr(), LONG)?;
    let mut far = Client::start(
        dir.path(),
        relay.addr(),
        &["--pin", edge.pin()?, "--token", TOKEN],
    )?;
    fetch(&far, &origin)?;
    let far_pid = far.pid();
    wait_until("the far client's socket to grow", SETTLE, || {
        receive_buffers(Sockets::Process(far_pid)).is_ok_and(|sizes| has_grown(&sizes))
    })
    .with_context(|| {
        format!(
            "{:?}\n{}",
            receive_buffers(Sockets::Process(far_pid)),
            far.diagnostics()
        )
    })?;
    wait_until("the edge's socket to grow", SETTLE, || {
        edge_buffers().is_ok_and(|sizes| has_grown(&sizes))
    })
    .with_context(|| format!("{:?}\n{}", edge_buffers(), edge.diagnostics()))?;
    // The near client's path is still short.
    let near_buffers = receive_buffers(Sockets::Process(near.pid()))?;
    anyhow::ensure!(
        near_buffers.iter().all(|&rb| rb == start),
        "the near client's socket grew: {near_buffers:?}"
    );

    // The far client leaves (it closes its connection): the edge's socket goes back.
    far.terminate(SETTLE)?;
    wait_until("the edge's socket to go back", SETTLE, || {
        edge_buffers().is_ok_and(|sizes| sizes.iter().all(|&rb| rb == start))
    })
    .with_context(|| format!("{:?}\n{}", edge_buffers(), edge.diagnostics()))?;
    // And the short path still works.
    fetch(&near, &origin)?;
    anyhow::ensure!(edge.proc().exited().is_none(), "the edge exited");
    Ok(())
}

#[test]
fn the_tokio_edge_and_client_grow_their_sockets_for_a_long_path_only() -> anyhow::Result<()> {
    buffers_follow_the_paths("tokio")
}

#[test]
fn the_glommio_edge_grows_its_socket_for_a_long_path_only() -> anyhow::Result<()> {
    buffers_follow_the_paths("glommio")
}

/// The relay's own sockets hold this much, so that the relay is not the path's narrowest
/// queue (the kernel caps it at `net.core.rmem_max`).
const RELAY_BUFFER: usize = 16 << 20;

/// Which way [`a_fast_transfer_grows_the_receivers_socket`] moves its bytes.
#[derive(Debug, Clone, Copy)]
enum Way {
    /// nginx → edge → client: the client's socket receives the flights.
    Download,
    /// client → edge → nginx: the edge's does.
    Upload,
}

/// A 64 MiB transfer across the 20 ms path, with nothing capping its rate but the relay's
/// threads: the flights the receiving end gets outgrow half of its 1 MiB, and its socket
/// grows past it (the edge on `runtime`).
fn a_fast_transfer_grows_the_receivers_socket(runtime: &str, way: Way) -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    require_tool("ss", "iproute2")?;
    let dir = TempDir::new(&format!("buffers-flight-{runtime}"))?;
    let origin = Origin::start(dir.path())?;
    let size = 64 << 20;
    let edge = Edge::on_runtime(dir.path(), runtime)?;
    let (front, back) = (
        UdpSocket::bind("127.0.0.1:0")?,
        UdpSocket::bind("127.0.0.1:0")?,
    );
    for socket in [&front, &back] {
        let socket = socket2::SockRef::from(socket);
        socket.set_recv_buffer_size(RELAY_BUFFER)?;
        socket.set_send_buffer_size(RELAY_BUFFER)?;
    }
    let relay = ImpairedPath::start_on(front, back, edge.addr(), LONG)?;
    let client = Client::start(
        dir.path(),
        relay.addr(),
        &["--pin", edge.pin()?, "--token", TOKEN],
    )?;
    let socks = format!("socks5h://{}", client.socks());
    let context = || {
        format!(
            "relay {:?}\n{}\n{}",
            relay.counters,
            client.diagnostics(),
            edge.diagnostics()
        )
    };
    let receiver = match way {
        Way::Download => {
            let sum = support::write_random_file(&origin.root().join("big.bin"), size, 0xb0f)?;
            let downloaded = dir.join("downloaded.bin");
            let url = origin.url("big.bin");
            let output = support::download(&socks, &downloaded, &url, Duration::from_secs(120))?;
            support::check_download(&output, &downloaded, &sum, context)?;
            Sockets::Process(client.pid())
        }
        Way::Upload => {
            let upload = dir.join("up.bin");
            let sum = support::write_random_file(&upload, size, 0xb0f)?;
            let output = curl(
                &[
                    "--proxy",
                    &socks,
                    "--fail",
                    "-T",
                    upload.to_str().context("a UTF-8 path")?,
                    &origin.url("upload/up.bin"),
                ],
                Duration::from_secs(120),
            )?;
            anyhow::ensure!(output.status.success(), "upload: {output:?}\n{}", context());
            anyhow::ensure!(
                support::sha256_file(&origin.root().join("upload/up.bin"))? == sum,
                "upload: checksum\n{}",
                context()
            );
            Sockets::Port(edge.addr().port())
        }
    };
    // The connection is still open: the buffers have not gone back.
    let sizes = receive_buffers(receiver)?;
    let least = reported_after_asking(LONG_PATH_BUFFER)?;
    anyhow::ensure!(
        sizes.iter().any(|rb| *rb > least[1]),
        "{way:?}: the receiver's socket did not grow past {} bytes: {sizes:?}, {}",
        least[1],
        context()
    );
    Ok(())
}

#[test]
fn a_fast_download_across_a_long_path_grows_the_clients_socket_past_the_least() -> anyhow::Result<()>
{
    a_fast_transfer_grows_the_receivers_socket("tokio", Way::Download)
}

#[test]
fn a_fast_upload_across_a_long_path_grows_the_glommio_edges_socket_past_the_least()
-> anyhow::Result<()> {
    a_fast_transfer_grows_the_receivers_socket("glommio", Way::Upload)
}
