//! An application that resets its connection after sending its whole request, on both edge
//! runtimes: `veil client` → `veil server` (tokio, then glommio) → a target that reads
//! slowly.
//!
//! The client's relay notices the reset only when it writes the target's answer; by then
//! its tunnel is finished, so it only stops the edge's direction (`STOP_SENDING`). The edge
//! must still write every byte and the FIN to the target, and then close that connection
//! without a reset: closing with unread bytes or with `SO_LINGER` 0 would make the kernel
//! drop what the target has not read yet.

mod support;

use std::time::Duration;

use anyhow::{Context, ensure};
use support::{Client, Edge, TOKEN, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use veil_cli::fetch::{self, SocksOutcome};

/// The request the application sends before it resets.
const REQUEST: usize = 1024 * 1024;
/// Bound of the whole exchange on a busy machine.
const EXCHANGE: Duration = Duration::from_secs(60);
/// How long the application waits after its request before it resets: ample for the
/// request to leave its socket (it fits in the tunnel's windows) even in a debug build.
const APP_RESETS_AFTER: Duration = Duration::from_millis(500);
/// When the target answers again, after the application's reset, counted from the accept.
const TARGET_ANSWERS_AGAIN_AFTER: Duration = Duration::from_secs(1);
/// When the target starts reading the request, counted from that second answer.
const TARGET_READS_AFTER: Duration = Duration::from_millis(900);

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i * 13 % 251).expect("below 251"))
        .collect()
}

/// What the target read: the bytes, and whether the connection ended with EOF.
async fn slow_target(listener: TcpListener) -> anyhow::Result<Vec<u8>> {
    let (mut stream, _) = listener.accept().await?;
    stream.write_all(b"early\n").await?;
    // After the application's reset: this answer is what the client's relay fails to
    // write, which makes it abort its finished tunnel.
    tokio::time::sleep(TARGET_ANSWERS_AGAIN_AFTER).await;
    stream.write_all(b"late\n").await?;
    // Read only now, and slowly: the request's tail waits in the tunnel and in the edge's
    // socket meanwhile, where a reset would drop it.
    tokio::time::sleep(TARGET_READS_AFTER).await;
    let mut request = Vec::new();
    let mut piece = vec![0; 16 * 1024];
    loop {
        let len = stream
            .read(&mut piece)
            .await
            .context("the request ends with EOF, not a reset")?;
        if len == 0 {
            return Ok(request);
        }
        request.extend_from_slice(piece.get(..len).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn request_then_reset(runtime: &str) -> anyhow::Result<()> {
    let dir = TempDir::new(&format!("stop-{runtime}"))?;
    let edge = Edge::on_runtime(dir.path(), runtime)?;
    let client = Client::of(dir.path(), &edge, TOKEN)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let target = tokio::spawn(slow_target(listener));

    let outcome = fetch::socks5_connect(client.socks(), "127.0.0.1", port, None).await?;
    let SocksOutcome::Connected(mut app) = outcome else {
        anyhow::bail!("refused: {outcome:?}");
    };
    app.write_all(&pattern(REQUEST)).await?;
    app.shutdown().await?;
    tokio::time::sleep(APP_RESETS_AFTER).await;
    app.set_zero_linger()?;
    drop(app);

    let request = target.await.context("the target task")??;
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
async fn a_request_before_a_reset_reaches_the_target_whole() -> anyhow::Result<()> {
    for runtime in ["tokio", "glommio"] {
        tokio::time::timeout(EXCHANGE, request_then_reset(runtime))
            .await
            .with_context(|| format!("{runtime}: the exchange finished in time"))??;
    }
    Ok(())
}
