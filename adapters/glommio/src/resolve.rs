//! A tunnel's target as addresses: an IP literal is itself, a name is resolved once by the
//! system resolver on glommio's blocking thread (the core keeps running), within a
//! timeout. Which of the addresses is used is the engine's choice (`egress_for`), made
//! by the caller.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use futures_lite::future;
use veil_engine::{Host, Refusal, TunnelTarget};

/// The addresses of `target`: the literal itself, or what the system resolver answers (on
/// glommio's blocking thread, so that the core keeps running), within `timeout`.
pub(crate) async fn resolve(
    target: &TunnelTarget,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, Refusal> {
    let name = match &target.host {
        Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, target.port)]),
        Host::Name(name) => name.as_str().to_owned(),
    };
    let port = target.port;
    let lookup = glommio::executor().spawn_blocking(move || {
        (name.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect::<Vec<_>>)
            .map_err(|e| (name, e))
    });
    let expired = async {
        glommio::timer::sleep(timeout).await;
        Err(Refusal::DnsTimeout)
    };
    let addrs = future::or(
        async {
            lookup.await.map_err(|(name, e)| {
                tracing::debug!(%name, error = %e, "resolving failed");
                Refusal::DnsError
            })
        },
        expired,
    )
    .await?;
    // None at all is the engine's to judge (`egress_for`: a DNS error).
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_off_the_core_and_literals_to_themselves() {
        crate::test_executor().run(async {
            let ip: std::net::IpAddr = "192.0.2.9".parse().expect("valid address");
            let literal = TunnelTarget::new(ip, 443);
            let addrs = resolve(&literal, Duration::from_secs(1)).await;
            assert_eq!(addrs, Ok(vec![SocketAddr::new(ip, 443)]));
            let name = veil_engine::Name::new("localhost").expect("valid name");
            let addrs = resolve(&TunnelTarget::new(name, 80), Duration::from_secs(5))
                .await
                .expect("localhost resolves");
            assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
        });
    }
}
