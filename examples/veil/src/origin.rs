//! A small HTTP/1.1 origin for the demo and the tests: `GET /bytes/N` answers N bytes of
//! the [pattern](crate::body::fill_pattern); `POST /upload` answers the SHA-256 of the
//! body it received. One request per connection.

use std::io;
use std::net::SocketAddr;

use anyhow::{Context, bail};
use boring::sha::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::body::{fill_pattern, hex};

/// Longest request head the origin reads.
const MAX_HEAD: usize = 16 * 1024;
/// Largest body `GET /bytes/N` serves.
pub const MAX_BODY: u64 = 16 * 1024 * 1024 * 1024;

/// A running origin; dropping it stops accepting.
#[derive(Debug)]
pub struct Origin {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Origin {
    /// Listens on `bind` and serves each connection in a task of its own.
    pub async fn start(bind: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    if let Err(e) = serve(stream).await {
                        tracing::debug!(%peer, error = %e, "origin: request failed");
                    }
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Job {
    Download(u64),
    Upload(u64),
    NotFound,
}

async fn serve(mut stream: TcpStream) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let (job, head_len) = loop {
        if buf.len() >= MAX_HEAD {
            bail!("request head too large");
        }
        let mut piece = [0; 4096];
        let n = stream.read(&mut piece).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(piece.get(..n).unwrap_or_default());
        if let Some(parsed) = parse_request(&buf)? {
            break parsed;
        }
    };
    let early = buf.get(head_len..).unwrap_or_default();
    match job {
        Job::Download(len) => send_pattern(&mut stream, len).await?,
        Job::Upload(len) => receive_upload(&mut stream, early, len).await?,
        Job::NotFound => {
            stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await?;
        }
    }
    stream.shutdown().await?;
    Ok(())
}

/// The job and head length of a complete request head, `None` while incomplete.
fn parse_request(buf: &[u8]) -> anyhow::Result<Option<(Job, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_len) = request.parse(buf)? else {
        return Ok(None);
    };
    let content_length = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| {
            std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .map(|len| len.context("invalid Content-Length"))
        .transpose()?;
    let job = match (request.method, request.path) {
        (Some("GET"), Some(path)) => match path.strip_prefix("/bytes/").map(str::parse::<u64>) {
            Some(Ok(len)) if len <= MAX_BODY => Job::Download(len),
            _ => Job::NotFound,
        },
        (Some("POST"), Some("/upload")) => {
            Job::Upload(content_length.context("an upload needs Content-Length")?)
        }
        _ => Job::NotFound,
    };
    Ok(Some((job, head_len)))
}

async fn send_pattern(stream: &mut TcpStream, len: u64) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let mut buf = vec![0; 256 * 1024];
    let mut offset = 0;
    while offset < len {
        let take = usize::try_from((len - offset).min(buf.len() as u64)).unwrap_or(buf.len());
        let chunk = buf.get_mut(..take).unwrap_or_default();
        fill_pattern(offset, chunk);
        stream.write_all(chunk).await?;
        offset += take as u64;
    }
    Ok(())
}

async fn receive_upload(stream: &mut TcpStream, early: &[u8], len: u64) -> anyhow::Result<()> {
    let mut hasher = Sha256::new();
    let early = early
        .get(..usize::try_from(len).unwrap_or(usize::MAX).min(early.len()))
        .unwrap_or_default();
    hasher.update(early);
    let mut remaining = len - early.len() as u64;
    let mut buf = vec![0; 256 * 1024];
    while remaining > 0 {
        let want = usize::try_from(remaining.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = stream.read(buf.get_mut(..want).unwrap_or_default()).await?;
        if n == 0 {
            bail!("upload ended {remaining} bytes early");
        }
        hasher.update(buf.get(..n).unwrap_or_default());
        remaining -= n as u64;
    }
    let body = format!("sha256:{}\n", hex(&hasher.finish()));
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_become_jobs() {
        assert_eq!(
            parse_request(b"GET /bytes/42 HTTP/1.1\r\nHost: x\r\n\r\n").expect("valid"),
            Some((Job::Download(42), 35))
        );
        assert_eq!(
            parse_request(b"POST /upload HTTP/1.1\r\nContent-Length: 7\r\n\r\nabc").expect("valid"),
            Some((Job::Upload(7), 44))
        );
        assert_eq!(
            parse_request(b"GET /nothing HTTP/1.1\r\n\r\n").expect("valid"),
            Some((Job::NotFound, 25))
        );
        assert_eq!(
            parse_request(b"GET /bytes/1 HTTP/1.1\r\n").expect("partial"),
            None
        );
        assert!(parse_request(b"POST /upload HTTP/1.1\r\n\r\n").is_err());
    }
}
