//! Edge: from a tunnel request to a connected TCP stream — resolve once, let the engine
//! choose the addresses and the local address to dial from (`Endpoint::egress_plan`: rules,
//! egress policy, the egress hook, Happy Eyeballs' order), and race exactly those, each
//! attempt started the plan's delay after the one before (or when it fails); the engine
//! also says what a failure becomes (`Refusal::from_io_error`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use veil_engine::{Egress, EgressPlan, Host, Refusal, TunnelId, TunnelTarget};

use crate::command::Command;

/// Connects `tunnel` where the engine lets it go: by `plan` when the driver could make it
/// at once ([`known_addresses`]), otherwise after resolving `target` and asking the driver
/// ([`allowed_address`]). Resolution and connection each get `timeout`.
pub(crate) async fn dial(
    tunnel: TunnelId,
    target: &TunnelTarget,
    plan: Option<EgressPlan>,
    commands: &mpsc::UnboundedSender<Command>,
    timeout: Duration,
) -> Result<Connected, Refusal> {
    let plan = match plan {
        Some(plan) => plan,
        None => allowed_address(tunnel, target, None, commands, timeout).await?,
    };
    let connected = match tokio::time::timeout(timeout, race(plan)).await {
        Err(_elapsed) => return Err(Refusal::ConnectionTimeout),
        Ok(Err(e)) => return Err(Refusal::from_io_error(&e)),
        Ok(Ok(connected)) => connected,
    };
    // Tunnel bytes arrive in bursts already; don't hold small writes back.
    let _ = connected.stream.set_nodelay(true);
    Ok(connected)
}

/// A connected stream and the address it reached (the attempt that won the race): the
/// engine's egress record and a PROXY header need that address, and the dial knows it
/// without asking the kernel (`getpeername(2)`) again.
#[derive(Debug)]
pub(crate) struct Connected {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
}

/// Happy Eyeballs (RFC 8305) over the engine's plan: the first attempt alone for the
/// plan's delay, then the next, and so on (an attempt that fails starts the next at once);
/// the first connection wins and the others are dropped. The last error when all fail.
async fn race(mut plan: EgressPlan) -> std::io::Result<Connected> {
    if plan.attempts.len() == 1 {
        // Nothing to race: no task of its own, and no hand-over back from it.
        if let Some(only) = plan.attempts.pop() {
            return connect(only).await;
        }
    }
    let mut pending = plan.attempts.into_iter();
    let mut running = JoinSet::new();
    let mut last_error = None;
    loop {
        if let Some(egress) = pending.next() {
            running.spawn(connect(egress));
        }
        let more = pending.len() > 0;
        let finished = if more {
            tokio::select! {
                finished = running.join_next() => finished,
                () = tokio::time::sleep(plan.attempt_delay) => continue,
            }
        } else {
            running.join_next().await
        };
        match finished {
            Some(Ok(Ok(connected))) => return Ok(connected),
            Some(Ok(Err(e))) => last_error = Some(e),
            Some(Err(e)) => last_error = Some(std::io::Error::other(e)),
            None if more => {}
            None => {
                return Err(last_error.unwrap_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no address to dial")
                }));
            }
        }
    }
}

/// A TCP connection to `egress.to`, from `egress.from` when the engine named one.
async fn connect(egress: Egress) -> std::io::Result<Connected> {
    let peer = egress.to;
    let stream = match egress.from {
        None => TcpStream::connect(peer).await?,
        Some(from) => {
            let socket = if peer.is_ipv6() {
                TcpSocket::new_v6()?
            } else {
                TcpSocket::new_v4()?
            };
            socket.bind(from)?;
            socket.connect(peer).await?
        }
    };
    Ok(Connected { stream, peer })
}

/// Resolves `target` (within `timeout`) and asks the driver where the engine lets
/// `tunnel` go. The caller uses exactly these addresses, so that no second lookup can swap
/// in one that was not checked.
pub(crate) async fn allowed_address(
    tunnel: TunnelId,
    target: &TunnelTarget,
    cached: Option<Vec<SocketAddr>>,
    commands: &mpsc::UnboundedSender<Command>,
    timeout: Duration,
) -> Result<EgressPlan, Refusal> {
    let addrs = match cached {
        Some(addrs) => addrs,
        None => resolve(target, timeout).await?,
    };
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

/// The addresses of `target` known without a lookup: the literal itself. (The engine's
/// cache of resolved names is the driver's to ask.)
pub(crate) fn known_addresses(target: &TunnelTarget) -> Option<Vec<SocketAddr>> {
    match &target.host {
        Host::Ip(ip) => Some(vec![SocketAddr::new(*ip, target.port)]),
        Host::Name(_) => None,
    }
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

    fn plan(to: &[SocketAddr], attempt_delay: Duration) -> EgressPlan {
        EgressPlan {
            attempts: to.iter().map(|&to| Egress { to, from: None }).collect(),
            attempt_delay,
        }
    }

    /// A listener whose accept queue is full: connecting to it hangs (the kernel drops
    /// the SYN), as a blackholed address does. Returns it with the connections that fill it.
    async fn blackhole() -> (tokio::net::TcpListener, Vec<tokio::task::JoinHandle<()>>) {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let listener = socket.listen(0).expect("listen");
        let addr = listener.local_addr().expect("address");
        let fillers = (0..3)
            .map(|_| {
                tokio::spawn(async move {
                    let _ = TcpStream::connect(addr).await.map(std::mem::forget);
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        (listener, fillers)
    }

    #[tokio::test]
    async fn a_hanging_first_attempt_loses_to_the_next_after_the_delay() {
        let (stuck, fillers) = blackhole().await;
        let good = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addrs = [
            stuck.local_addr().expect("address"),
            good.local_addr().expect("address"),
        ];
        let alone = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addrs[0]));
        assert!(alone.await.is_err(), "the blackhole hangs a lone attempt");
        let connected = tokio::time::timeout(
            Duration::from_secs(10),
            race(plan(&addrs, Duration::from_millis(100))),
        )
        .await
        .expect("the second attempt connects long before the first gives up")
        .expect("connected");
        assert_eq!(connected.peer, addrs[1]);
        assert_eq!(connected.stream.peer_addr().expect("peer"), addrs[1]);
        fillers.iter().for_each(tokio::task::JoinHandle::abort);
    }

    #[tokio::test]
    async fn a_failed_attempt_starts_the_next_at_once() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let closed_addr = closed.local_addr().expect("address");
        drop(closed);
        let good = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addrs = [closed_addr, good.local_addr().expect("address")];
        // A delay far longer than the test's bound: only the failure can start attempt 2.
        let connected = tokio::time::timeout(
            Duration::from_secs(10),
            race(plan(&addrs, Duration::from_secs(600))),
        )
        .await
        .expect("the refusal of the first attempt starts the second")
        .expect("connected");
        assert_eq!(connected.peer, addrs[1]);
        assert_eq!(connected.stream.peer_addr().expect("peer"), addrs[1]);
    }

    #[tokio::test]
    async fn when_every_attempt_fails_the_last_error_is_the_answer() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = closed.local_addr().expect("address");
        drop(closed);
        let error = race(plan(&[addr, addr], Duration::from_secs(600)))
            .await
            .expect_err("nothing listens");
        assert_eq!(Refusal::from_io_error(&error), Refusal::ConnectionRefused);
        let error = race(plan(&[], Duration::from_secs(600)))
            .await
            .expect_err("no address");
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
    }
}
