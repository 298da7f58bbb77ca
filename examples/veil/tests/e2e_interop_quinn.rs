//! Interop with quinn (and hyperium's h3): a QUIC stack nobody here wrote, which
//! acknowledges fast. Many tunnels at once, each of which must end with its FIN, both ways:
//!
//! - quinn client → `veil server` → a TCP echo target: the edge finishes each tunnel after
//!   the target's echo and FIN;
//! - application → `veil client` → a quinn + h3 server: half the tunnels echo (the client
//!   finishes first), half answer and finish first (the client finishes last, after the
//!   application's bytes and half-close).
//!
//! Before the engine wrote its FINs on an empty DATA frame (`core/engine/src/endpoint/fin.rs`),
//! some tunnels in most runs got every byte and never the FIN.

mod quinn_peer;
mod support;

use std::time::Duration;

use anyhow::{Context, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use veil_cli::fetch::{SocksOutcome, socks5_connect};

use quinn_peer::{GREETING, SPEAKS_FIRST, Server, connect_client};
use support::{Client, Echo, Edge, TOKEN, TempDir, make_certificate, wait_until};

/// Tunnels open at once on one connection.
const TUNNELS: usize = 50;
/// Rounds of [`TUNNELS`], each on a fresh connection (a lost FIN showed in about half of
/// the single rounds before the fix).
const ROUNDS: usize = 4;
/// Bytes each tunnel sends, and gets back.
const LEN: usize = 64 * 1024;
/// How long a tunnel may take, FIN included; loopback needs a fraction of a second.
const TUNNEL_BOUND: Duration = Duration::from_secs(15);

/// The bytes tunnel `index` of round `round` sends: distinct per tunnel, so a crossed
/// stream shows.
fn payload(round: usize, index: usize) -> Vec<u8> {
    let seed = (round * TUNNELS + index) as u64;
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..LEN)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// What became of one tunnel.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Every byte back, then the FIN.
    Whole,
    /// This many bytes back (all of them, or not) and no FIN within the bound.
    NoFin {
        received: usize,
    },
    /// Bytes back that differ from those sent.
    Corrupted,
    Failed(String),
}

/// Fails unless every tunnel of every round is [`Outcome::Whole`], naming the others.
fn check(outcomes: &[Outcome], diagnostics: impl Fn() -> String) -> anyhow::Result<()> {
    let bad: Vec<(usize, &Outcome)> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, outcome)| **outcome != Outcome::Whole)
        .collect();
    ensure!(
        bad.is_empty(),
        "{} of {} tunnels did not end whole: {bad:?}\n{}",
        bad.len(),
        outcomes.len(),
        diagnostics()
    );
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

#[test]
fn a_quinn_client_gets_every_fin_from_veil_server() -> anyhow::Result<()> {
    let dir = TempDir::new("quinn-client")?;
    let echo = Echo::start()?;
    let edge = Edge::start(
        dir.path(),
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let target = echo.addr().to_string();
    let outcomes = runtime()?.block_on(async {
        let mut outcomes = Vec::new();
        for round in 0..ROUNDS {
            let client = std::sync::Arc::new(connect_client(edge.addr(), edge.pin()?).await?);
            let mut tunnels = JoinSet::new();
            for index in 0..TUNNELS {
                let (client, target) = (std::sync::Arc::clone(&client), target.clone());
                tunnels.spawn(async move {
                    let sent = payload(round, index);
                    let mut received = Vec::new();
                    let exchange = async {
                        let mut tunnel = client.connect(&target, TOKEN).await?;
                        tunnel.send(&sent).await?;
                        tunnel.finish()?;
                        tunnel.read_to_fin(&mut received).await
                    };
                    let outcome = match tokio::time::timeout(TUNNEL_BOUND, exchange).await {
                        Ok(Ok(())) if received == sent => Outcome::Whole,
                        Ok(Ok(())) => Outcome::Corrupted,
                        Ok(Err(error)) => Outcome::Failed(format!("{error:#}")),
                        Err(_) => Outcome::NoFin {
                            received: received.len(),
                        },
                    };
                    (index, outcome)
                });
            }
            let mut round_outcomes: Vec<(usize, Outcome)> = tunnels.join_all().await;
            round_outcomes.sort_by_key(|(index, _)| *index);
            outcomes.extend(round_outcomes.into_iter().map(|(_, outcome)| outcome));
        }
        anyhow::Ok(outcomes)
    })?;
    check(&outcomes, || edge.diagnostics())
}

/// Through `veil client`'s SOCKS5 listener at `socks`: tunnel `index` of `round` to the
/// quinn server's echo (the application finishes first), or, with `speaks_first`, to its
/// target that answers and finishes first (the application reads that, then sends and
/// finishes last). Either way the application reads to the end of the stream.
async fn through_veil_client(
    socks: std::net::SocketAddr,
    round: usize,
    index: usize,
    speaks_first: bool,
) -> Outcome {
    let sent = payload(round, index);
    let mut received = Vec::new();
    let host = if speaks_first {
        SPEAKS_FIRST
    } else {
        "echo.test"
    };
    let exchange = async {
        let outcome = socks5_connect(socks, host, 7, None).await?;
        let SocksOutcome::Connected(stream) = outcome else {
            anyhow::bail!("SOCKS5 refused: {outcome:?}");
        };
        let (mut read, mut write) = stream.into_split();
        if speaks_first {
            read.read_to_end(&mut received).await?;
            write.write_all(&sent).await?;
            // The half-close comes a little later, by a different amount per tunnel: the
            // FIN then goes on a later turn of the client's loop, around the time the
            // server's ACK of the last bytes comes back.
            tokio::time::sleep(Duration::from_micros(250 * (index as u64 % 16))).await;
            write.shutdown().await?;
            // veil closes the connection once the tunnel has ended both ways.
            ensure!(read.read(&mut [0; 1]).await? == 0, "bytes after the end");
            return anyhow::Ok(());
        }
        let writer = async {
            write.write_all(&sent).await?;
            write.shutdown().await
        };
        let (written, read) = tokio::join!(writer, read.read_to_end(&mut received));
        written.context("sending")?;
        read.context("reading")?;
        anyhow::Ok(())
    };
    let expected = if speaks_first { GREETING } else { &sent[..] };
    match tokio::time::timeout(TUNNEL_BOUND, exchange).await {
        Ok(Ok(())) if received == expected => Outcome::Whole,
        Ok(Ok(())) => Outcome::Corrupted,
        Ok(Err(error)) => Outcome::Failed(format!("{error:#}")),
        Err(_) => Outcome::NoFin {
            received: received.len(),
        },
    }
}

#[test]
fn veil_client_gets_and_sends_every_fin_with_a_quinn_server() -> anyhow::Result<()> {
    let dir = TempDir::new("quinn-server")?;
    let (cert, key) = make_certificate(dir.path())?;
    let runtime = runtime()?;
    let server = {
        let _inside = runtime.enter();
        Server::start(&cert, &key)?
    };
    let client = Client::start(
        dir.path(),
        server.addr()?,
        &["--pin", server.pin(), "--token", TOKEN],
    )?;
    let socks = client.socks();
    let outcomes = runtime.block_on(async {
        let mut outcomes = Vec::new();
        for round in 0..ROUNDS {
            // Even tunnels echo, odd ones finish last on the client's side.
            let mut tunnels = JoinSet::new();
            for index in 0..TUNNELS {
                tunnels.spawn(async move {
                    let outcome = through_veil_client(socks, round, index, index % 2 == 1).await;
                    (index, outcome)
                });
            }
            let mut round_outcomes: Vec<(usize, Outcome)> = tunnels.join_all().await;
            round_outcomes.sort_by_key(|(index, _)| *index);
            outcomes.extend(round_outcomes.into_iter().map(|(_, outcome)| outcome));
        }
        outcomes
    });
    let diagnostics = || {
        format!(
            "the quinn server echoed {} tunnels and heard the FIN of {} speak-first ones\n{}",
            server.echoed(),
            server.heard().len(),
            client.diagnostics()
        )
    };
    check(&outcomes, diagnostics)?;
    // Every speak-first tunnel ended at the client once it wrote its FIN; the server must
    // read each of those FINs, after every byte.
    let expected = ROUNDS * TUNNELS / 2;
    let all_heard = wait_until("the server reads every FIN", TUNNEL_BOUND, || {
        server.heard().len() >= expected
    });
    let heard = server.heard();
    ensure!(
        all_heard.is_ok(),
        "the server read the FIN of {} of {expected} speak-first tunnels\n{}",
        heard.len(),
        diagnostics()
    );
    ensure!(
        heard.iter().all(|&len| len == LEN),
        "the server read {heard:?}\n{}",
        diagnostics()
    );
    Ok(())
}
