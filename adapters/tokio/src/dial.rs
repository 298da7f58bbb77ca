//! Edge: from a tunnel request to a connected TCP stream — resolve once, let the engine
//! choose the address and the local address to dial from (`Endpoint::egress_for`: rules,
//! egress policy, the egress hook), and dial exactly that; the engine also says what a
//! failure becomes (`Refusal::from_io_error`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use veil_engine::{Egress, Host, Refusal, TunnelId, TunnelTarget};

use crate::command::Command;

/// Resolves `target`, asks the driver where the engine lets `tunnel` go, and connects
/// there ([`allowed_address`]). Resolution and connection each get `timeout`.
pub(crate) async fn dial(
    tunnel: TunnelId,
    target: &TunnelTarget,
    commands: &mpsc::UnboundedSender<Command>,
    timeout: Duration,
) -> Result<TcpStream, Refusal> {
    let egress = allowed_address(tunnel, target, commands, timeout).await?;
    let stream = match tokio::time::timeout(timeout, connect(egress)).await {
        Err(_elapsed) => return Err(Refusal::ConnectionTimeout),
        Ok(Err(e)) => return Err(Refusal::from_io_error(&e)),
        Ok(Ok(stream)) => stream,
    };
    // Tunnel bytes arrive in bursts already; don't hold small writes back.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A TCP connection to `egress.to`, from `egress.from` when the engine named one.
async fn connect(egress: Egress) -> std::io::Result<TcpStream> {
    let Some(from) = egress.from else {
        return TcpStream::connect(egress.to).await;
    };
    let socket = if egress.to.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    socket.bind(from)?;
    socket.connect(egress.to).await
}

/// Resolves `target` (within `timeout`) and asks the driver where the engine lets
/// `tunnel` go. The caller uses exactly this address, so that no second lookup can swap
/// in one that was not checked.
pub(crate) async fn allowed_address(
    tunnel: TunnelId,
    target: &TunnelTarget,
    commands: &mpsc::UnboundedSender<Command>,
    timeout: Duration,
) -> Result<Egress, Refusal> {
    let addrs = resolve(target, timeout).await?;
    let (reply, chosen) = oneshot::channel();
    commands
        .send(Command::ChooseEgress {
            tunnel,
            addrs,
            reply,
        })
        .map_err(|_| Refusal::Internal)?;
    chosen.await.map_err(|_| Refusal::Internal)?
}

/// The addresses of `target`: the literal itself, or what the system resolver answers.
pub(crate) async fn resolve(
    target: &TunnelTarget,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, Refusal> {
    let name = match &target.host {
        Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, target.port)]),
        Host::Name(name) => name.as_str(),
    };
    let lookup = tokio::net::lookup_host((name, target.port));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(timeout, lookup).await {
        Err(_elapsed) => return Err(Refusal::DnsTimeout),
        Ok(Err(e)) => {
            tracing::debug!(%name, error = %e, "resolving failed");
            return Err(Refusal::DnsError);
        }
        Ok(Ok(addrs)) => addrs.collect(),
    };
    // None at all is the engine's to judge (`egress_for`: a DNS error).
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[tokio::test]
    async fn an_ip_literal_resolves_to_itself() {
        let ip: IpAddr = "192.0.2.9".parse().expect("valid address");
        let target = TunnelTarget::new(ip, 443);
        let addrs = resolve(&target, Duration::from_secs(1)).await;
        assert_eq!(addrs, Ok(vec![SocketAddr::new(ip, 443)]));
    }

    #[tokio::test]
    async fn localhost_resolves_through_the_system() {
        let name = veil_engine::Name::new("localhost").expect("valid name");
        let target = TunnelTarget::new(name, 80);
        let addrs = resolve(&target, Duration::from_secs(5))
            .await
            .expect("localhost resolves");
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
    }

    #[tokio::test]
    async fn a_refused_connection_is_connection_refused() {
        // A port that was just free: bind, learn the port, close.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        drop(listener);
        let error = TcpStream::connect(addr).await.expect_err("nothing listens");
        assert_eq!(Refusal::from_io_error(&error), Refusal::ConnectionRefused);
    }
}
