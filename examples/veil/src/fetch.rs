//! The client side of the demo and the tests, written against the proxies' wire formats
//! with plain tokio sockets: a SOCKS5 handshake (RFC 1928, RFC 1929), an HTTP CONNECT, and
//! an HTTP/1.1 exchange whose body is hashed as it arrives.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail, ensure};
use boring::sha::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::body::fill_pattern;

/// Longest response head read.
const MAX_HEAD: usize = 16 * 1024;

/// What a SOCKS5 proxy answered to a CONNECT.
#[derive(Debug)]
pub enum SocksOutcome {
    /// `REP` 0: the stream now reaches the target.
    Connected(TcpStream),
    /// Any other `REP`.
    Refused(u8),
}

/// Connects through the SOCKS5 proxy at `proxy` to `host`:`port` (an IP address or a
/// name the proxy resolves), with username/password if given.
pub async fn socks5_connect(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    credentials: Option<(&str, &str)>,
) -> anyhow::Result<SocksOutcome> {
    let mut stream = TcpStream::connect(proxy)
        .await
        .context("connecting to the SOCKS5 listener")?;
    let method = if credentials.is_some() { 2 } else { 0 };
    stream.write_all(&[5, 1, method]).await?;
    let mut choice = [0; 2];
    stream.read_exact(&mut choice).await?;
    ensure!(choice == [5, method], "SOCKS5 method refused: {choice:?}");
    if let Some((user, password)) = credentials {
        let mut auth = vec![1, u8::try_from(user.len())?];
        auth.extend_from_slice(user.as_bytes());
        auth.push(u8::try_from(password.len())?);
        auth.extend_from_slice(password.as_bytes());
        stream.write_all(&auth).await?;
        let mut status = [0; 2];
        stream.read_exact(&mut status).await?;
        ensure!(status == [1, 0], "SOCKS5 authentication failed");
    }
    stream.write_all(&socks5_request(host, port)?).await?;
    let mut reply = [0; 4];
    stream.read_exact(&mut reply).await?;
    ensure!(reply[0] == 5, "not a SOCKS5 reply: {reply:?}");
    let bound_len = match reply[3] {
        1 => 4,
        4 => 16,
        3 => usize::from(stream.read_u8().await?),
        atyp => bail!("reply address type {atyp}"),
    };
    let mut bound = vec![0; bound_len + 2];
    stream.read_exact(&mut bound).await?;
    Ok(match reply[1] {
        0 => SocksOutcome::Connected(stream),
        code => SocksOutcome::Refused(code),
    })
}

/// `VER CMD RSV ATYP DST.ADDR DST.PORT` for a CONNECT.
fn socks5_request(host: &str, port: u16) -> anyhow::Result<Vec<u8>> {
    let mut request = vec![5, 1, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            request.push(3);
            request.push(u8::try_from(host.len()).context("name too long")?);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    Ok(request)
}

/// A response head: status and fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// Field names (lowercased) and values.
    pub fields: Vec<(String, String)>,
}

impl ResponseHead {
    /// The value of the first field called `name` (lowercase).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Reads a response head; returns it and the bytes read past it.
pub async fn read_response_head(stream: &mut TcpStream) -> anyhow::Result<(ResponseHead, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        ensure!(buf.len() < MAX_HEAD, "response head too large");
        let mut piece = [0; 2048];
        let n = stream.read(&mut piece).await?;
        ensure!(n > 0, "connection closed before a response head");
        buf.extend_from_slice(piece.get(..n).unwrap_or_default());
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(len) = response.parse(&buf)? {
            let head = ResponseHead {
                status: response.code.context("no status")?,
                fields: response
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect(),
            };
            return Ok((head, buf.split_off(len)));
        }
    }
}

/// Sends `CONNECT authority` to the HTTP proxy at `proxy`; returns the response head and,
/// on 2xx, the stream that now reaches the target.
pub async fn http_connect(
    proxy: SocketAddr,
    authority: &str,
) -> anyhow::Result<(ResponseHead, Option<TcpStream>)> {
    let mut stream = TcpStream::connect(proxy)
        .await
        .context("connecting to the HTTP listener")?;
    let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let (head, early) = read_response_head(&mut stream).await?;
    ensure!(early.is_empty(), "bytes after the CONNECT response head");
    let open = (200..300).contains(&head.status);
    Ok((head, open.then_some(stream)))
}

/// A body received and hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The response head.
    pub head: ResponseHead,
    /// Body bytes.
    pub len: u64,
    /// SHA-256 of the body.
    pub digest: [u8; 32],
}

/// Sends `GET target` with `Host: host` and `Connection: close` on `stream`, then reads
/// and hashes the response body (by `Content-Length`, else to EOF).
pub async fn get(stream: &mut TcpStream, target: &str, host: &str) -> anyhow::Result<Received> {
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    read_body(stream).await
}

/// Sends `POST /upload` with `len` bytes of the pattern, then reads the answer body.
pub async fn upload(
    stream: &mut TcpStream,
    host: &str,
    len: u64,
) -> anyhow::Result<(ResponseHead, String)> {
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
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
    let (head, mut body) = read_response_head(stream).await?;
    stream.read_to_end(&mut body).await?;
    Ok((head, String::from_utf8_lossy(&body).trim().to_owned()))
}

async fn read_body(stream: &mut TcpStream) -> anyhow::Result<Received> {
    let (head, early) = read_response_head(stream).await?;
    let expected = head
        .field("content-length")
        .map(|v| v.trim().parse::<u64>().context("invalid Content-Length"))
        .transpose()?;
    let mut hasher = Sha256::new();
    hasher.update(&early);
    let mut len = early.len() as u64;
    let mut buf = vec![0; 256 * 1024];
    loop {
        if expected.is_some_and(|expected| len >= expected) {
            break;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
        len += n as u64;
    }
    if let Some(expected) = expected {
        ensure!(
            len == expected,
            "body of {len} bytes, Content-Length {expected}"
        );
    }
    Ok(Received {
        head,
        len,
        digest: hasher.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socks_requests_carry_the_address_type() {
        assert_eq!(
            socks5_request("127.0.0.1", 80).expect("valid"),
            [5, 1, 0, 1, 127, 0, 0, 1, 0, 80]
        );
        assert_eq!(
            socks5_request("a.b", 443).expect("valid"),
            [5, 1, 0, 3, 3, b'a', b'.', b'b', 1, 187]
        );
        let v6 = socks5_request("::1", 1).expect("valid");
        assert_eq!(v6[3], 4);
        assert_eq!(v6.len(), 3 + 1 + 16 + 2);
    }
}
