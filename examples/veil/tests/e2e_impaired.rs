//! A bad network between `veil client` and `veil server`, with real programs on loopback:
//! curl → `veil client` (SOCKS5) → the tests' impairing relay (`support/impair.rs`: 50 ms
//! each way, 2% loss each way, 1% of datagrams 10 ms late, a 20 Mbit/s bottleneck with a
//! 100 kB queue) → `veil server` → nginx.
//!
//! A download must arrive whole (SHA-256) over the clean path and over the bad one, with
//! CUBIC and with `BBRv2` (`[quic] congestion_control`); the goodput of each is printed (a
//! figure, not a test: docs/RELIABILITY.md). Random loss is not congestion: a controller
//! that backs off at every loss keeps a fraction of the clean goodput. The same over the
//! issue's far path (750 ms RTT, 10 Mbit/s), and UDP datagrams over both.

mod support;

use std::time::{Duration, Instant};

use anyhow::Context;
use support::impair::{ImpairedPath, Impairment};
use support::{Client, Edge, Origin, TOKEN, TempDir, require_tool};

/// The file downloaded.
const SIZE: usize = 4 << 20;
/// Bound of one download: at a tenth of the bottleneck it takes 17 s.
const DOWNLOAD: Duration = Duration::from_secs(120);

/// The bad path of the measurement, at a rate this machine keeps up with.
const BAD: Impairment = Impairment::BAD;

/// The clean path with the same delay and bottleneck, for the goodput to compare with.
const CLEAN_BUT_FAR: Impairment = Impairment {
    loss: 0.0,
    reorder: 0.0,
    ..BAD
};

/// The far path: 750 ms RTT, a 10 Mbit/s bottleneck (a queue of a quarter of its
/// bandwidth-delay product), 2% loss and 1% reordering each way.
const FAR: Impairment = Impairment {
    delay: Duration::from_millis(375),
    loss: 0.02,
    reorder: 0.01,
    reorder_by: Duration::from_millis(10),
    rate_bps: 10_000_000,
    queue_bytes: 250_000,
};

/// [`FAR`] without loss or reordering.
const FAR_CLEAN: Impairment = Impairment {
    loss: 0.0,
    reorder: 0.0,
    ..FAR
};

/// Whether the long form runs (`scripts/reliability long`): cases that take minutes.
fn long_form() -> bool {
    std::env::var_os("VEIL_RELIABILITY_LONG").is_some()
}

/// Downloads `big.bin` (`SIZE` bytes) through a fresh edge and client with `congestion`
/// over `path`; returns the goodput in Mbit/s.
fn download(
    dir: &TempDir,
    origin: &Origin,
    served_sum: &str,
    congestion: &str,
    path: Impairment,
) -> anyhow::Result<f64> {
    download_file(
        dir,
        origin,
        ("big.bin", SIZE, served_sum),
        congestion,
        path,
        DOWNLOAD,
    )
}

/// Downloads `file` (its name, size and SHA-256) through a fresh edge and client with
/// `congestion` over `path`, within `bound`; returns the goodput in Mbit/s.
fn download_file(
    dir: &TempDir,
    origin: &Origin,
    file: (&str, usize, &str),
    congestion: &str,
    path: Impairment,
    bound: Duration,
) -> anyhow::Result<f64> {
    let settings = format!("congestion_control = \"{congestion}\"");
    download_with(dir, origin, file, (congestion, &settings), path, bound)
}

/// [`download_file`] with `settings` in both ends' `[quic]` section; `label` names them in
/// the diagnostics.
fn download_with(
    dir: &TempDir,
    origin: &Origin,
    (file, size, served_sum): (&str, usize, &str),
    (label, settings): (&str, &str),
    path: Impairment,
    bound: Duration,
) -> anyhow::Result<f64> {
    let config = dir.join("quic.toml");
    std::fs::write(&config, format!("[quic]\n{settings}\n"))?;
    let config = config.to_str().context("a UTF-8 path")?.to_owned();
    let edge = Edge::start(
        dir.path(),
        &[
            "--config",
            &config,
            "--token",
            TOKEN,
            "--allow-target",
            "127.0.0.0/8",
        ],
    )?;
    let relay = ImpairedPath::start(edge.addr(), path)?;
    let client = Client::start(
        dir.path(),
        relay.addr(),
        &["--config", &config, "--pin", edge.pin()?, "--token", TOKEN],
    )?;
    let downloaded = dir.join("downloaded.bin");
    let socks = format!("socks5h://{}", client.socks());
    let started = Instant::now();
    let output = support::download(&socks, &downloaded, &origin.url(file), bound)?;
    let seconds = started.elapsed().as_secs_f64();
    let counters = &relay.counters;
    let context = || {
        format!(
            "{label}: forwarded {:?}, lost {:?}, reordered {:?}, queue drops {:?}\n{}\n{}",
            counters.forwarded,
            counters.lost,
            counters.reordered,
            counters.queue_drops,
            edge.diagnostics(),
            client.diagnostics()
        )
    };
    support::check_download(&output, &downloaded, served_sum, context)?;
    #[allow(clippy::cast_precision_loss)]
    let mbit = (size as f64) * 8.0 / 1e6 / seconds;
    Ok(mbit)
}

/// The far path (750 ms RTT, 10 Mbit/s, 2% loss, 1% reordering): a download
/// arrives whole with `BBRv2`. The long form (`VEIL_RELIABILITY_LONG=1`) measures 8 MiB
/// with both controllers, each with and without quiche's pacing, clean and lossy
/// (docs/RELIABILITY.md, "The far path").
#[test]
fn a_download_arrives_whole_over_a_750_ms_10_mbit_lossy_path() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("impaired-far")?;
    let origin = Origin::start(dir.path())?;
    // 2 MiB is mostly slow start at this RTT; the long form's 8 MiB reaches the steady
    // state the goodput figure is about.
    let (controllers, bound, size): (&[(&str, &str)], _, usize) = if long_form() {
        (
            &[
                (
                    "bbr2, paced",
                    "congestion_control = \"bbr2\"\npacing = true",
                ),
                (
                    "cubic, paced",
                    "congestion_control = \"cubic\"\npacing = true",
                ),
                ("bbr2", "congestion_control = \"bbr2\""),
                ("cubic", "congestion_control = \"cubic\""),
            ],
            Duration::from_secs(1800),
            8 << 20,
        )
    } else {
        (
            &[("bbr2", "congestion_control = \"bbr2\"")],
            DOWNLOAD,
            2 << 20,
        )
    };
    let sum = support::write_random_file(&origin.root().join("far.bin"), size, 0x750)?;
    let mut figures = Vec::new();
    for &(label, settings) in controllers {
        let file = ("far.bin", size, sum.as_str());
        let clean = download_with(&dir, &origin, file, (label, settings), FAR_CLEAN, bound)?;
        let bad = download_with(&dir, &origin, file, (label, settings), FAR, bound)?;
        figures.push(format!(
            "{label}: clean {clean:.2} Mbit/s, 2% loss + 1% reordering {bad:.2} Mbit/s ({:.0}% of clean)",
            100.0 * bad / clean
        ));
    }
    eprintln!(
        "e2e: {} MiB over 750 ms RTT, 10 Mbit/s: {}",
        size >> 20,
        figures.join("; ")
    );
    Ok(())
}

/// A long fat path: 100 ms RTT, 400 Mbit/s, no loss. The short form downloads 8 MiB with
/// the default windows and checks it whole; the long form alternates 64 MiB downloads with
/// the defaults and with a 1 MiB initial connection window, three of each, and prints the
/// goodputs (docs/PERFORMANCE.md: why the default window stays).
#[test]
fn a_long_fat_path_with_the_default_and_a_small_connection_window() -> anyhow::Result<()> {
    const LONG_FAT: Impairment = Impairment {
        delay: Duration::from_millis(50),
        rate_bps: 400_000_000,
        queue_bytes: 6_000_000,
        ..Impairment::CLEAN
    };
    require_tool("curl", "curl")?;
    let dir = TempDir::new("impaired-long-fat")?;
    let origin = Origin::start(dir.path())?;
    let (size, rounds, windows): (usize, usize, &[(&str, &str)]) = if long_form() {
        (
            64 << 20,
            3,
            &[
                ("default windows", ""),
                ("1 MiB initial window", "initial_max_data = 1048576"),
            ],
        )
    } else {
        (8 << 20, 1, &[("default windows", "")])
    };
    let sum = support::write_random_file(&origin.root().join("fat.bin"), size, 0xfa7)?;
    let mut figures = vec![Vec::new(); windows.len()];
    for _ in 0..rounds {
        for (figure, window) in figures.iter_mut().zip(windows) {
            let file = ("fat.bin", size, sum.as_str());
            figure.push(download_with(
                &dir, &origin, file, *window, LONG_FAT, DOWNLOAD,
            )?);
        }
    }
    for ((label, _), figure) in windows.iter().zip(&figures) {
        eprintln!(
            "e2e: {} MiB over 100 ms RTT, 400 Mbit/s, {label}: {figure:.1?} Mbit/s",
            size >> 20
        );
    }
    Ok(())
}

#[test]
fn downloads_arrive_whole_over_a_lossy_reordering_far_path() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("impaired")?;
    let origin = Origin::start(dir.path())?;
    let served_sum = support::write_random_file(&origin.root().join("big.bin"), SIZE, 0x5eed_1055)?;
    let mut figures = Vec::new();
    for congestion in ["cubic", "bbr2"] {
        let clean = download(&dir, &origin, &served_sum, congestion, CLEAN_BUT_FAR)?;
        let bad = download(&dir, &origin, &served_sum, congestion, BAD)?;
        figures.push(format!(
            "{congestion}: clean {clean:.1} Mbit/s, 2% loss + 1% reordering {bad:.1} Mbit/s ({:.0}% of clean)",
            100.0 * bad / clean
        ));
    }
    eprintln!(
        "e2e: {} MiB over 100 ms RTT, 20 Mbit/s: {}",
        SIZE >> 20,
        figures.join("; ")
    );
    Ok(())
}

/// Datagrams sent through the UDP forward over the bad path, at about 2 Mbit/s (25 every
/// 100 ms), well within what the path and CUBIC carry, so that what is missing is the
/// path's loss (QUIC DATAGRAM frames are never retransmitted).
const DATAGRAMS: u32 = 1000;

/// The payload of datagram `seq`: its number, then bytes that depend on it, so that an
/// echo that arrives changed, or cut, is told apart from one that is lost.
fn payload(seq: u32) -> Vec<u8> {
    let mut out = seq.to_be_bytes().to_vec();
    out.extend((0..1000u32).map(|i| u8::try_from((i * 7 + seq) % 251).unwrap_or(0)));
    out
}

/// UDP over CONNECT-UDP across the bad path (CUBIC; datagrams have no retransmission):
/// some are lost, as UDP may be, and every one that comes back is exactly what was sent.
#[test]
fn udp_over_a_lossy_path_loses_datagrams_but_never_changes_one() -> anyhow::Result<()> {
    udp_over("100 ms RTT, 20 Mbit/s, 2% loss each way", BAD)
}

/// The same across the far path (750 ms RTT, 10 Mbit/s).
#[test]
fn udp_over_a_750_ms_lossy_path_loses_datagrams_but_never_changes_one() -> anyhow::Result<()> {
    udp_over("750 ms RTT, 10 Mbit/s, 2% loss each way", FAR)
}

/// Sends [`DATAGRAMS`] through a UDP forward across `path` to an echo; fails if one comes
/// back changed or if more are missing than the path's loss explains.
fn udp_over(name: &str, path: Impairment) -> anyhow::Result<()> {
    let dir = TempDir::new("impaired-udp")?;
    let echo = support::UdpEcho::start(b"")?;
    let edge = Edge::start(
        dir.path(),
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let relay = ImpairedPath::start(edge.addr(), path)?;
    let forward = format!("127.0.0.1:0={}", echo.addr());
    let client = Client::start(
        dir.path(),
        relay.addr(),
        &[
            "--pin",
            edge.pin()?,
            "--token",
            TOKEN,
            "--udp-forward",
            &forward,
        ],
    )?;
    let local = client.udp_forward()?;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut buf = vec![0; 4096];
    // The tunnel opens with the first datagram: wait until one comes back (the path loses
    // some), so that the burst measures the path, not the tunnel's set-up queue.
    let opened = (0..20).any(|_| {
        socket.send_to(b"hello", local).is_ok()
            && socket
                .recv(&mut buf)
                .is_ok_and(|len| &buf[..len] == b"hello")
    });
    anyhow::ensure!(
        opened,
        "no echo through the forward\n{}",
        client.diagnostics()
    );
    // Echoes are read as they come (a socket's buffer holds only some hundred kB).
    let reader = {
        let socket = socket.try_clone()?;
        std::thread::spawn(move || {
            let mut seen = vec![false; DATAGRAMS as usize];
            let mut changed = 0;
            let mut buf = vec![0; 4096];
            while let Ok(len) = socket.recv(&mut buf) {
                let got = &buf[..len];
                let seq = got
                    .get(..4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_be_bytes);
                match seq {
                    Some(seq) if seq < DATAGRAMS && got == payload(seq) => {
                        seen[seq as usize] = true;
                    }
                    _ if got == b"hello" => {}
                    _ => changed += 1,
                }
            }
            (seen, changed)
        })
    };
    for seq in 0..DATAGRAMS {
        socket.send_to(&payload(seq), local)?;
        if seq % 25 == 24 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (seen, changed) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader panicked"))?;
    let back = seen.iter().filter(|s| **s).count();
    eprintln!(
        "e2e: UDP over {name}: {back} of {DATAGRAMS} datagrams came back, {changed} changed; relay lost {:?}, queue drops {:?}",
        relay.counters.lost, relay.counters.queue_drops
    );
    anyhow::ensure!(changed == 0, "{changed} datagrams came back changed");
    anyhow::ensure!(
        back > (DATAGRAMS as usize) * 85 / 100,
        "only {back} of {DATAGRAMS} came back: more than the path's loss\n{}\n{}",
        edge.diagnostics(),
        client.diagnostics()
    );
    Ok(())
}
