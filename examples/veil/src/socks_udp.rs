//! SOCKS5 UDP ASSOCIATE (RFC 1928 §7): a UDP relay on the listener's address, bound to
//! the association's TCP control connection and closed with it. Each destination the
//! client sends to gets its own CONNECT-UDP tunnel, reused while alive; answers come back
//! with the UDP request header naming that destination as the client wrote it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use veil_proto::socks5::{Reply, ReplyCode, Target, UdpError, decode_udp};
use veil_tokio::udp::{self, UdpIo};

use crate::route::Front;
use crate::socks::{send_reply, tunnel_target};
use crate::udp_flows::{FlowLimits, Flows, ReplyPath};

/// Destinations (tunnels) one association may have open at once.
const MAX_FLOWS: usize = 64;
/// Datagrams read from the relay socket before the association lets other tasks run.
const RECV_BUDGET: usize = 256;

/// What the relay dropped, for the log line at the end of the association.
#[derive(Debug, Default)]
struct Drops {
    /// From an address other than the client's.
    stranger: u64,
    /// FRAG ≠ 0.
    fragment: u64,
    /// Malformed header, or a destination veil does not accept.
    malformed: u64,
}

/// Serves one UDP ASSOCIATE: replies with the relay's address, relays until the control
/// connection closes. A destination's tunnel closes after `idle` without a datagram.
pub(crate) async fn associate(
    mut control: TcpStream,
    requested: &Target,
    front: &Front,
    idle: Duration,
) -> anyhow::Result<()> {
    let client_ip = canonical(control.peer_addr()?.ip());
    let relay = match UdpIo::bind(SocketAddr::new(control.local_addr()?.ip(), 0)) {
        Ok(relay) => Arc::new(relay),
        Err(e) => {
            tracing::warn!(error = %e, "socks5: cannot bind a UDP relay");
            return send_reply(&mut control, &Reply::failure(ReplyCode::GeneralFailure)).await;
        }
    };
    let bound = relay.local_addr();
    send_reply(&mut control, &Reply::success(bound)).await?;
    // DST.ADDR/DST.PORT of the request: where the client says it will send from. The
    // address must be the control connection's; the port, when given, is held to.
    let expected_port = Some(requested.port()).filter(|port| *port != 0);
    tracing::debug!(%bound, %client_ip, ?expected_port, "socks5: UDP association");
    let mut drops = Drops::default();
    let mut flows: Flows<Target> = Flows::new(
        front.clone(),
        FlowLimits {
            max_flows: MAX_FLOWS,
            idle,
        },
    );
    //# RFC 1928 §7: "A UDP association terminates when the TCP connection that the UDP
    //# ASSOCIATE request arrived on terminates."
    tokio::select! {
        () = control_closed(&mut control) => {}
        () = relay_datagrams(&relay, client_ip, expected_port, &mut flows, &mut drops) => {}
    }
    tracing::debug!(%bound, ?drops, flow_drops = ?flows.drops(), "socks5: UDP association ended");
    // Dropping `flows` ends every flow task; their tunnels finish.
    Ok(())
}

/// Waits until the client closes the control connection (or it fails). Anything the
/// client sends on it meanwhile is ignored.
async fn control_closed(control: &mut TcpStream) {
    let mut sink = [0; 512];
    while let Ok(n) = control.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

/// Reads the relay socket forever, handing each valid datagram of the client to its
/// destination's flow.
async fn relay_datagrams(
    relay: &Arc<UdpIo>,
    client_ip: IpAddr,
    expected_port: Option<u16>,
    flows: &mut Flows<Target>,
    drops: &mut Drops,
) {
    // The client's UDP address, learnt from its first datagram when the request left the
    // port open.
    let mut client: Option<SocketAddr> = None;
    loop {
        if let Err(e) = relay.readable().await {
            tracing::debug!(error = %e, "socks5: UDP relay failed");
            return;
        }
        let drained = udp::drain(relay, RECV_BUDGET, |from, datagram| {
            if !accepts(client, client_ip, expected_port, from) {
                drops.stranger += 1;
                return;
            }
            client = Some(from);
            relay_one(relay, from, datagram, flows, drops);
        });
        match drained {
            // The budget was spent: let the flows' tasks run before reading on.
            Ok(read) if read >= RECV_BUDGET => tokio::task::yield_now().await,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "socks5: UDP relay receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Hands one datagram of the client to its destination's flow, or drops it (counted).
fn relay_one(
    relay: &Arc<UdpIo>,
    from: SocketAddr,
    datagram: &[u8],
    flows: &mut Flows<Target>,
    drops: &mut Drops,
) {
    let datagram = match decode_udp(datagram) {
        Ok(datagram) => datagram,
        Err(UdpError::Fragmented(_)) => {
            // decode_udp quotes the rule: FRAG ≠ 0 is dropped, not reassembled.
            drops.fragment += 1;
            return;
        }
        Err(e) => {
            tracing::debug!(error = %e, "socks5: malformed UDP datagram dropped");
            drops.malformed += 1;
            return;
        }
    };
    let Some(target) = tunnel_target(&datagram.target) else {
        drops.malformed += 1;
        return;
    };
    let key = datagram.target.clone();
    flows.dispatch(&key, datagram.payload, || {
        let reply = ReplyPath {
            socket: relay.clone(),
            peer: from,
            header: Some(key.clone()),
        };
        (target, reply)
    });
}

/// Whether a datagram from `from` belongs to this association.
//# RFC 1928 §7: "The UDP relay server MUST acquire from the SOCKS server the expected IP
//# address of the client that will send datagrams to the BND.PORT given in the reply to
//# UDP ASSOCIATE.  It MUST drop any datagrams arriving from any source IP address other
//# than the one recorded for the particular association."
fn accepts(
    client: Option<SocketAddr>,
    client_ip: IpAddr,
    expected_port: Option<u16>,
    from: SocketAddr,
) -> bool {
    if let Some(client) = client {
        // Once learnt, the client's address is the only one.
        return canonical(from.ip()) == canonical(client.ip()) && from.port() == client.port();
    }
    canonical(from.ip()) == client_ip && expected_port.is_none_or(|port| port == from.port())
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("valid address")
    }

    #[test]
    fn only_the_client_address_is_accepted() {
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        // Port left open in the request: any port of the client's IP, until one is learnt.
        assert!(accepts(None, ip, None, addr("127.0.0.1:5000")));
        assert!(!accepts(None, ip, None, addr("127.0.0.2:5000")));
        // Port given: only that one.
        assert!(accepts(None, ip, Some(5000), addr("127.0.0.1:5000")));
        assert!(!accepts(None, ip, Some(5000), addr("127.0.0.1:5001")));
        // Learnt: only that address.
        let learnt = Some(addr("127.0.0.1:5000"));
        assert!(accepts(learnt, ip, None, addr("127.0.0.1:5000")));
        assert!(!accepts(learnt, ip, None, addr("127.0.0.1:5001")));
        // A mapped address is its IPv4 address.
        assert!(accepts(None, ip, None, addr("[::ffff:127.0.0.1]:5000")));
    }
}
