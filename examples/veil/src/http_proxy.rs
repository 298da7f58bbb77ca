//! The local HTTP proxy listener: `CONNECT host:port` opens a tunnel; an absolute-form
//! request (`GET http://host/path`) is forwarded over a tunnel of its own to the origin,
//! its head rewritten by veil-proto, and the connection closes after the response.

use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use veil_engine::ProxyErrorType;
use veil_engine::rules::{ClientAction, Protocol};
use veil_engine::{Name, TunnelTarget};
use veil_proto::http1::{
    Authority, Host, ProxyRequest, RequestDecoder, Response, StatusCode, UpstreamOptions,
};
use veil_tokio::RelayEnd;

use crate::refusal::HttpRefusal;
use crate::route::Front;

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts HTTP proxy clients forever.
pub(crate) async fn serve(listener: TcpListener, front: Front) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "http: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let front = front.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &front).await {
                tracing::debug!(%peer, error = %e, "http: session failed");
            }
        });
    }
}

/// What to do with a decoded request.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Open a tunnel, answer 200, relay.
    Connect { target: TunnelTarget },
    /// Open a tunnel, send `upstream_head`, relay until the origin has answered.
    Forward {
        target: TunnelTarget,
        upstream_head: Vec<u8>,
    },
    /// Answer with this status and close.
    Reject(StatusCode),
}

async fn handle(mut stream: TcpStream, front: &Front) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    let Some((plan, early)) = tokio::time::timeout(HEAD_TIMEOUT, read_request(&mut stream))
        .await
        .context("request head timed out")??
    else {
        return Ok(());
    };
    let (target, initial, end) = match plan {
        Plan::Reject(status) => {
            return write_and_close(&mut stream, &error_head(status)).await;
        }
        Plan::Connect { target } => (target, early.freeze(), RelayEnd::BothFinished),
        Plan::Forward {
            target,
            mut upstream_head,
        } => {
            upstream_head.extend_from_slice(&early);
            (target, Bytes::from(upstream_head), RelayEnd::AfterPeerFin)
        }
    };
    match front.route(&target, Protocol::Tcp) {
        ClientAction::Tunnel => {}
        ClientAction::Block => {
            tracing::info!(%target, "http: blocked by a client rule");
            let refusal = HttpRefusal {
                status: StatusCode::FORBIDDEN,
                proxy: "veil".to_owned(),
                error: Some(ProxyErrorType::HttpRequestDenied),
            };
            return write_and_close(&mut stream, &refusal.response_head()).await;
        }
        ClientAction::Direct => {
            let origin = match front.dial_direct(&target).await {
                Ok(origin) => origin,
                Err(e) => {
                    tracing::info!(%target, error = %e, "http: direct dial failed");
                    return write_and_close(&mut stream, &error_head(StatusCode::BAD_GATEWAY))
                        .await;
                }
            };
            if end == RelayEnd::BothFinished {
                stream
                    .write_all(&encode(&Response::connection_established()))
                    .await?;
            }
            let outcome = crate::route::relay_direct(stream, initial, origin).await;
            tracing::debug!(%target, ?outcome, "http: direct relay ended");
            return Ok(());
        }
    }
    // CONNECT answers with 200; a forwarded request has nothing to answer before the origin.
    let answered = front.answers_first() && end == RelayEnd::BothFinished;
    if answered {
        stream
            .write_all(&encode(&Response::connection_established()))
            .await?;
    }
    let tunnel = match front.opener.open(target.clone()).await {
        Ok(tunnel) => tunnel,
        Err(failure) => {
            tracing::info!(%target, %failure, "http: tunnel refused");
            if answered {
                crate::route::reset(stream);
                return Ok(());
            }
            return write_and_close(&mut stream, &HttpRefusal::of(&failure).response_head()).await;
        }
    };
    if end == RelayEnd::BothFinished && !answered {
        stream
            .write_all(&encode(&Response::connection_established()))
            .await?;
    }
    tracing::debug!(%target, tunnel = ?tunnel.id(), "http: relaying");
    // A task of its own, sized for the relay alone (see `socks::handle`).
    tokio::spawn(tunnel.relay(stream, initial, end));
    Ok(())
}

/// Reads until a request head is complete; returns the plan and the bytes after the head.
async fn read_request(stream: &mut TcpStream) -> anyhow::Result<Option<(Plan, BytesMut)>> {
    let mut decoder = RequestDecoder::default();
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
        let (plan, head_len) = match decoder.decode(&buf) {
            Ok(None) => continue,
            Ok(Some(request)) => (plan(&request), request.head().head_len()),
            Err(e) => {
                tracing::debug!(error = %e, "http: bad request");
                (Plan::Reject(e.status()), buf.len())
            }
        };
        let early = buf.split_off(head_len.min(buf.len()));
        return Ok(Some((plan, early)));
    }
}

fn plan(request: &ProxyRequest<'_>) -> Plan {
    let Some(target) = tunnel_target(request.target()) else {
        return Plan::Reject(StatusCode::BAD_REQUEST);
    };
    match request {
        ProxyRequest::Connect(_) => Plan::Connect { target },
        ProxyRequest::Forward(forward) => {
            // One request per tunnel: the origin closes after answering, and so do we.
            let options = UpstreamOptions {
                via: None,
                connection_close: true,
            };
            let mut upstream_head = vec![0; forward.upstream_head_len(&options)];
            match forward.write_upstream_head(&options, &mut upstream_head) {
                Ok(len) => {
                    upstream_head.truncate(len);
                    Plan::Forward {
                        target,
                        upstream_head,
                    }
                }
                Err(_) => Plan::Reject(StatusCode::INTERNAL_SERVER_ERROR),
            }
        }
    }
}

/// The tunnel target of a request-target's authority; `None` for a name the engine would
/// not accept.
fn tunnel_target(authority: Authority<'_>) -> Option<TunnelTarget> {
    let port = authority.port();
    match authority.host() {
        Host::Name(name) => Some(TunnelTarget::new(Name::new(name).ok()?, port)),
        Host::Ipv4(ip) => Some(TunnelTarget::new(std::net::IpAddr::V4(ip), port)),
        Host::Ipv6(ip) => Some(TunnelTarget::new(std::net::IpAddr::V6(ip), port)),
    }
}

fn error_head(status: StatusCode) -> Vec<u8> {
    encode(&Response::new(status).with_connection_close())
}

fn encode(response: &Response<'_>) -> Vec<u8> {
    let mut head = vec![0; response.encoded_len()];
    let len = response.encode(&mut head).unwrap_or(0);
    head.truncate(len);
    head
}

async fn write_and_close(stream: &mut TcpStream, head: &[u8]) -> anyhow::Result<()> {
    stream.write_all(head).await?;
    stream.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &[u8]) -> Plan {
        let mut decoder = RequestDecoder::default();
        let request = decoder
            .decode(text)
            .expect("valid request")
            .expect("complete head");
        plan(&request)
    }

    #[test]
    fn connect_requests_open_tunnels() {
        let plan = decode(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        let Plan::Connect { target } = plan else {
            panic!("a CONNECT plan expected, got {plan:?}");
        };
        assert_eq!(target.to_string(), "example.com:443");
    }

    #[test]
    fn forward_requests_get_an_origin_form_head_that_closes() {
        let plan = decode(
            b"GET http://127.0.0.1:8000/bytes/5 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n",
        );
        let Plan::Forward {
            target,
            upstream_head,
        } = plan
        else {
            panic!("a forward plan expected, got {plan:?}");
        };
        assert_eq!(target.to_string(), "127.0.0.1:8000");
        assert_eq!(
            String::from_utf8(upstream_head).expect("ASCII"),
            "GET /bytes/5 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn ipv6_targets_keep_their_brackets() {
        let plan = decode(b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n");
        let Plan::Connect { target } = plan else {
            panic!("a CONNECT plan expected, got {plan:?}");
        };
        assert_eq!(target.to_string(), "[2001:db8::1]:443");
    }

    #[test]
    fn error_heads_close_the_connection() {
        assert_eq!(
            error_head(StatusCode::BAD_REQUEST),
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
}
