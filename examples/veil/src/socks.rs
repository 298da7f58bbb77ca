//! The local SOCKS5 listener: each CONNECT becomes a tunnel through the edge; each UDP
//! ASSOCIATE becomes a UDP relay whose destinations get CONNECT-UDP tunnels
//! ([`socks_udp`](crate::socks_udp)).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use veil_engine::rules::{ClientAction, Protocol};
use veil_engine::{Name, TunnelTarget};
use veil_proto::socks5::{
    Action, Command, Config, MAX_REPLY_LEN, Reply, ReplyCode, Server, Target, encode_reply,
};
use veil_tokio::RelayEnd;

use crate::config::LocalCredentials;
use crate::refusal::socks_reply;
use crate::route::Front;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts SOCKS5 clients forever.
/// UDP ASSOCIATE flows close after `udp_idle` without a datagram either way.
pub(crate) async fn serve(
    listener: TcpListener,
    front: Front,
    credentials: Option<LocalCredentials>,
    udp_idle: Duration,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "socks5: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let front = front.clone();
        let credentials = credentials.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &front, credentials.as_ref(), udp_idle).await {
                tracing::debug!(%peer, error = %e, "socks5: session failed");
            }
        });
    }
}

async fn handle(
    mut stream: TcpStream,
    front: &Front,
    credentials: Option<&LocalCredentials>,
    udp_idle: Duration,
) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut stream, credentials));
    let Some((request, early)) = handshake.await.context("handshake timed out")?? else {
        return Ok(());
    };
    // BIND never gets here: the state machine refuses it.
    if request.command == Command::UdpAssociate {
        return crate::socks_udp::associate(stream, &request.target, front, udp_idle).await;
    }
    let Some(target) = tunnel_target(&request.target) else {
        return send_reply(&mut stream, &Reply::failure(ReplyCode::HostUnreachable)).await;
    };
    // The edge's own address is not known here; RFC 1928 lets BND be all zeros.
    let bound = SocketAddr::from(([0, 0, 0, 0], 0));
    match front.route(&target, Protocol::Tcp) {
        ClientAction::Tunnel => {}
        //# RFC 1928 §6: "X'02' connection not allowed by ruleset"
        ClientAction::Block => {
            return send_reply(
                &mut stream,
                &Reply::failure(ReplyCode::ConnectionNotAllowed),
            )
            .await;
        }
        ClientAction::Direct => {
            let origin = match front.dial_direct(&target).await {
                Ok(origin) => origin,
                Err(e) => {
                    tracing::info!(%target, error = %e, "socks5: direct dial failed");
                    let code = direct_failure(&e);
                    return send_reply(&mut stream, &Reply::failure(code)).await;
                }
            };
            send_reply(&mut stream, &Reply::success(bound)).await?;
            let outcome = crate::route::relay_direct(stream, early.freeze(), origin).await;
            tracing::debug!(%target, ?outcome, "socks5: direct relay ended");
            return Ok(());
        }
    }
    let answered = front.answers_first();
    if answered {
        send_reply(&mut stream, &Reply::success(bound)).await?;
    }
    match front.opener.open(target.clone()).await {
        Ok(tunnel) => {
            if !answered {
                send_reply(&mut stream, &Reply::success(bound)).await?;
            }
            tracing::debug!(%target, tunnel = ?tunnel.id(), "socks5: relaying");
            // The relay becomes a task of its own, sized for it alone, and this session's
            // task (sized for the handshake and every other way a session can go) ends: an
            // idle tunnel keeps only the relay (docs/PERFORMANCE.md, "Idle tunnels").
            tokio::spawn(tunnel.relay(stream, early.freeze(), RelayEnd::BothFinished));
        }
        Err(failure) => {
            tracing::info!(%target, %failure, "socks5: tunnel refused");
            if answered {
                crate::route::reset(stream);
            } else {
                send_reply(&mut stream, &Reply::failure(socks_reply(&failure))).await?;
            }
        }
    }
    Ok(())
}

/// The reply for a direct dial that failed.
fn direct_failure(error: &std::io::Error) -> ReplyCode {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => ReplyCode::ConnectionRefused,
        std::io::ErrorKind::TimedOut => ReplyCode::TtlExpired,
        std::io::ErrorKind::HostUnreachable => ReplyCode::HostUnreachable,
        std::io::ErrorKind::NetworkUnreachable => ReplyCode::NetworkUnreachable,
        _ => ReplyCode::GeneralFailure,
    }
}

/// Runs the RFC 1928/1929 handshake; returns the request and the client bytes that came
/// after it, or `None` when the session ended (refused, or the client left).
async fn handshake(
    stream: &mut TcpStream,
    credentials: Option<&LocalCredentials>,
) -> anyhow::Result<Option<(veil_proto::socks5::Request, BytesMut)>> {
    let config = if credentials.is_some() {
        Config::USERNAME_PASSWORD
    } else {
        Config::NO_AUTH
    };
    let mut server = Server::new(config);
    let mut input = BytesMut::with_capacity(1024);
    loop {
        if input.is_empty() && stream.read_buf(&mut input).await? == 0 {
            return Ok(None);
        }
        let (consumed, action) = server.feed(&input)?;
        match action {
            None => {}
            Some(Action::Send(bytes)) => stream.write_all(bytes).await?,
            Some(Action::Close { reply, reason }) => {
                tracing::debug!(%reason, "socks5: refused by the protocol");
                stream.write_all(reply).await?;
                return Ok(None);
            }
            Some(Action::Authenticate(given)) => {
                let accepted = credentials.is_some_and(|expected| {
                    expected.user.as_bytes() == given.username()
                        && expected.password.matches(given.password())
                });
                let reply = server.accept_auth(accepted)?;
                stream.write_all(reply).await?;
                if !accepted {
                    tracing::info!("socks5: wrong username or password");
                    return Ok(None);
                }
            }
            Some(Action::Request(request)) => {
                input.advance(consumed);
                return Ok(Some((request, input)));
            }
        }
        input.advance(consumed);
    }
}

/// The tunnel target of a SOCKS5 destination; `None` for a name the engine would not
/// accept (answered "host unreachable", what resolving it would give). An address sent as
/// a domain name (ATYP 3, as clients that leave resolving to the proxy do for any host) is
/// the address.
pub(crate) fn tunnel_target(target: &Target) -> Option<TunnelTarget> {
    match target {
        Target::Ip(addr) => Some(TunnelTarget::new(addr.ip(), addr.port())),
        Target::Domain(domain, port) => {
            if let Ok(ip) = domain.as_str().parse::<std::net::IpAddr>() {
                return Some(TunnelTarget::new(ip, *port));
            }
            let name = Name::new(domain.as_str()).ok()?;
            Some(TunnelTarget::new(name, *port))
        }
    }
}

pub(crate) async fn send_reply(stream: &mut TcpStream, reply: &Reply) -> anyhow::Result<()> {
    let mut out = [0; MAX_REPLY_LEN];
    let len = encode_reply(reply, &mut out)?;
    stream.write_all(out.get(..len).unwrap_or_default()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use veil_engine::Host;
    use veil_proto::socks5::Domain;

    #[test]
    fn destinations_become_tunnel_targets() {
        let ip = tunnel_target(&Target::Ip("192.0.2.1:80".parse().expect("addr")))
            .expect("an address is a target");
        assert_eq!(ip.to_string(), "192.0.2.1:80");
        let name = tunnel_target(&Target::Domain(
            Domain::new("Example.COM").expect("domain"),
            443,
        ))
        .expect("a name is a target");
        assert_eq!(name.port, 443);
        assert!(matches!(&name.host, Host::Name(n) if n.as_str() == "example.com"));
        // An address sent as a name is the address.
        let literal = tunnel_target(&Target::Domain(
            Domain::new("127.0.0.1").expect("domain"),
            80,
        ))
        .expect("an address literal is a target");
        assert_eq!(literal.host, Host::Ip([127, 0, 0, 1].into()));
        // A name whose last label is numeric could be read as an IPv4 address: refused.
        assert_eq!(
            tunnel_target(&Target::Domain(
                Domain::new("10.0.0.010").expect("domain"),
                80
            )),
            None
        );
    }
}
