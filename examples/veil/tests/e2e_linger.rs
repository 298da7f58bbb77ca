//! The edge's linger after a stop, on both edge runtimes: `veil client` → `veil server`
//! (tokio, then glommio) → a target that keeps talking after it has read the whole request.
//!
//! The application sends its request, half-closes, and resets; the client's relay notices
//! when it writes the target's answer, and, its tunnel finished, only stops the edge's
//! direction (`STOP_SENDING`). The edge's relay (the engine's `Relay`) must then:
//!
//! - write every byte of the request and the FIN to the target, with no reset;
//! - linger: read and discard what the target still sends, so that the target's writes
//!   keep succeeding (a closed socket would answer them with RST, one that stopped
//!   reading would stall them);
//! - close the connection once the target has sent nothing for `LINGER_IDLE` (5 s), and
//!   not hold it longer: the target's next writes then fail;
//! - and not drain a target that never stops: past `LINGER_BYTES` (1 MiB) discarded the
//!   edge stops reading (the target's writes stall) without closing, which would reset
//!   what the target has not read (the second test; the engine's unit tests check the
//!   bound and the wait that follows).
//!
//! `e2e_stop` proves the first point with a target that reads slowly; this file adds the
//! linger and its idle bound, which the engine's unit tests check on a clock of their own
//! and the tokio adapter's tests on a tunnel driven by hand.

mod support;

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use support::{Client, Edge, TOKEN, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use veil_cli::fetch::{self, SocksOutcome};

/// The request the application sends before it resets.
const REQUEST: usize = 256 * 1024;
/// What the target sends after it has read the request: under the linger's bound on
/// discarded bytes (`veil_engine::relay::LINGER_BYTES`, 1 MiB).
const AFTER_EOF: usize = 512 * 1024;
/// What a target that never stops talking tries to send after the request: far more than
/// the linger discards and loopback's socket buffers hold.
const ENDLESS: usize = 64 * 1024 * 1024;
/// How long its writes must stay stalled.
const STALL: Duration = Duration::from_secs(3);
/// Bound of the whole exchange on a busy machine.
const EXCHANGE: Duration = Duration::from_secs(60);
/// How long the application waits after its request before it resets: ample for the
/// request to leave its socket (it fits in the tunnel's windows) even in a debug build.
const APP_RESETS_AFTER: Duration = Duration::from_millis(500);
/// When the target answers again, after the application's reset, counted from the accept:
/// the client's relay fails to write this answer and stops the edge's direction.
const TARGET_ANSWERS_AGAIN_AFTER: Duration = Duration::from_secs(1);
/// When the target starts reading the request, counted from that second answer: the stop
/// has reached the edge by then.
const TARGET_READS_AFTER: Duration = Duration::from_millis(900);
/// The edge's idle bound on a linger (`veil_engine::relay::LINGER_IDLE`).
const LINGER_IDLE: Duration = Duration::from_secs(5);
/// How long after its last byte the target waits before it checks that the edge closed.
const QUIET: Duration = Duration::from_secs(7);

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i * 13 % 251).expect("below 251"))
        .collect()
}

/// The target's side: answers, reads the request to its EOF, keeps sending, goes quiet,
/// and then finds the connection closed; or, `endless`, tries to send without end and
/// finds its writes stalled, not failed. Returns the request it read.
async fn talkative_target(listener: TcpListener, endless: bool) -> anyhow::Result<Vec<u8>> {
    let (mut stream, _) = listener.accept().await?;
    stream.write_all(b"early\n").await?;
    tokio::time::sleep(TARGET_ANSWERS_AGAIN_AFTER).await;
    stream.write_all(b"late\n").await?;
    tokio::time::sleep(TARGET_READS_AFTER).await;
    let mut request = Vec::new();
    stream
        .read_to_end(&mut request)
        .await
        .context("the request ends with EOF, not a reset")?;

    let piece = vec![7; 64 * 1024];
    if endless {
        let flood = async {
            for _ in 0..ENDLESS / piece.len() {
                stream.write_all(&piece).await?;
            }
            anyhow::Ok(())
        };
        return match tokio::time::timeout(STALL, flood).await {
            Err(_) => Ok(request),
            Ok(Ok(())) => bail!("the lingering edge read {ENDLESS} bytes without pausing"),
            Ok(Err(e)) => bail!("the lingering edge reset the target: {e}"),
        };
    }

    // Lingering, the edge reads and throws away whatever comes.
    for _ in 0..AFTER_EOF / piece.len() {
        stream
            .write_all(&piece)
            .await
            .context("the edge lingers: a write after the request's EOF succeeds")?;
    }

    // Quiet for longer than the idle bound: the edge has closed, and its kernel answers
    // the next bytes with RST, which fails the write after them.
    tokio::time::sleep(QUIET).await;
    if still_open(&mut stream).await {
        bail!("the edge still held the connection {QUIET:?} after the target's last byte");
    }
    Ok(request)
}

/// Whether the far end still takes bytes: two writes a moment apart both succeed.
async fn still_open(stream: &mut TcpStream) -> bool {
    for _ in 0..2 {
        if stream.write_all(b"?").await.is_err() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    true
}

async fn request_then_reset(runtime: &str, endless: bool) -> anyhow::Result<()> {
    let dir = TempDir::new(&format!("linger-{runtime}"))?;
    let edge = Edge::on_runtime(dir.path(), runtime)?;
    let client = Client::of(dir.path(), &edge, TOKEN)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let target = tokio::spawn(talkative_target(listener, endless));

    let outcome = fetch::socks5_connect(client.socks(), "127.0.0.1", port, None).await?;
    let SocksOutcome::Connected(mut app) = outcome else {
        bail!("refused: {outcome:?}");
    };
    app.write_all(&pattern(REQUEST)).await?;
    app.shutdown().await?;
    tokio::time::sleep(APP_RESETS_AFTER).await;
    app.set_zero_linger()?;
    drop(app);

    let request = target.await.context("the target task")?.with_context(|| {
        format!(
            "{runtime}\n{}\n{}",
            edge.diagnostics(),
            client.diagnostics()
        )
    })?;
    ensure!(
        request.len() == REQUEST,
        "{runtime}: the target read {} of {REQUEST} bytes\n{}\n{}",
        request.len(),
        edge.diagnostics(),
        client.diagnostics()
    );
    ensure!(
        request == pattern(REQUEST),
        "{runtime}: the request arrived changed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_stop_the_edge_lingers_then_closes_once_the_target_is_quiet() -> anyhow::Result<()>
{
    assert!(QUIET > LINGER_IDLE);
    for runtime in ["tokio", "glommio"] {
        tokio::time::timeout(EXCHANGE, request_then_reset(runtime, false))
            .await
            .with_context(|| format!("{runtime}: the exchange finished in time"))??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lingering_edge_stops_reading_a_target_that_never_stops() -> anyhow::Result<()> {
    for runtime in ["tokio", "glommio"] {
        tokio::time::timeout(EXCHANGE, request_then_reset(runtime, true))
            .await
            .with_context(|| format!("{runtime}: the exchange finished in time"))??;
    }
    Ok(())
}
