//! `--metrics ADDR`: a small HTTP listener that answers `GET /metrics` with the engine's
//! counters in the Prometheus text format (`veil_engine::metrics`), for either runtime.
//! Anything else gets 404; a request head is bounded in size and time.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use veil_engine::EndpointStats;
use veil_engine::metrics::{CONTENT_TYPE, encode_text};

/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a scraper may take to send its request.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a scrape's counters come from.
#[derive(Debug, Clone)]
pub(crate) enum StatsSource {
    /// A tokio node's driver.
    Tokio(veil_tokio::StatsProbe),
    /// A glommio edge's cores, summed.
    #[cfg(target_os = "linux")]
    Glommio(veil_glommio::StatsHandle),
    /// Several tenants' tokio nodes, each sample labelled with its tenant.
    Tenants(Vec<(String, veil_tokio::StatsProbe)>),
}

impl StatsSource {
    /// The page a scrape gets; `None` once the endpoints have stopped.
    async fn text(&self) -> Option<String> {
        if let Self::Tenants(tenants) = self {
            let mut all = Vec::with_capacity(tenants.len());
            for (name, probe) in tenants {
                all.push((name.as_str(), probe.stats().await?));
            }
            return Some(veil_engine::metrics::encode_text_by_tenant(&all));
        }
        self.snapshot().await.map(|stats| encode_text(&stats))
    }

    async fn snapshot(&self) -> Option<EndpointStats> {
        match self {
            Self::Tokio(probe) => probe.stats().await,
            #[cfg(target_os = "linux")]
            Self::Glommio(handle) => {
                let mut sum = EndpointStats::default();
                for core in handle.stats() {
                    sum.merge(&core.endpoint);
                }
                Some(sum)
            }
            Self::Tenants(_) => None,
        }
    }
}

/// Binds `addr` for metrics (before the runtime needs it, so that a taken port fails the
/// start, not the first scrape).
/// Binds the metrics listener, to be served later (or handed to an upgrade's successor).
pub(crate) fn bind_std(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} (metrics)"))
}

/// Answers scrapes forever.
pub(crate) async fn serve(listener: TcpListener, source: StatsSource) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let source = source.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &source).await {
                tracing::debug!(%peer, error = %e, "metrics: request failed");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, source: &StatsSource) -> anyhow::Result<()> {
    let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream))
        .await
        .context("request head timed out")??;
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next(), parts.next());
    let response = match (method, target.map(|t| t.split('?').next().unwrap_or(t))) {
        (Some("GET"), Some("/metrics")) => match source.text().await {
            Some(text) => response("200 OK", CONTENT_TYPE, &text),
            None => response("503 Service Unavailable", "text/plain", "stopped\n"),
        },
        (Some("GET"), _) => response("404 Not Found", "text/plain", "try /metrics\n"),
        _ => response("405 Method Not Allowed", "text/plain", "GET only\n"),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

/// Reads until the end of the request head (or `MAX_HEAD` bytes).
async fn read_head(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        anyhow::ensure!(head.len() < MAX_HEAD, "request head too long");
        let len = stream.read(&mut buf).await?;
        anyhow::ensure!(len > 0, "closed before the end of the head");
        head.extend_from_slice(&buf[..len]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
