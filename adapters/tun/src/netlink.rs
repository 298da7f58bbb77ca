//! Addresses and routes through rtnetlink: one request, one acknowledgement.
//!
//! A fresh `NETLINK_ROUTE` socket per request: configuration happens a handful of times per
//! device, so keeping a socket open buys nothing, and a socket made at the call lives in the
//! caller's network namespace, which is what a caller that moved threads between namespaces
//! expects. The socket is blocking: the kernel answers these requests at once, without I/O.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Adds `addr/prefix_len` to the interface `index`.
///
/// IPv4: both `IFA_LOCAL` and `IFA_ADDRESS` are the address, as `ip addr add` does on a link
/// without a peer, so the kernel adds the prefix's route through the device once it is up.
/// IPv6: `IFA_F_NODAD`, because a TUN device is a point-to-point link with no neighbour to
/// collide with, and Duplicate Address Detection would keep the address tentative (unusable
/// for binding or as a source) for a second or more after it is added.
pub(crate) fn add_address(index: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = prefix_len;
    match addr {
        IpAddr::V4(_) => {
            msg.header.family = AddressFamily::Inet;
            msg.attributes.push(AddressAttribute::Local(addr));
            msg.attributes.push(AddressAttribute::Address(addr));
        }
        IpAddr::V6(_) => {
            msg.header.family = AddressFamily::Inet6;
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes.push(AddressAttribute::Address(addr));
        }
    }
    request(RouteNetlinkMessage::NewAddress(msg))
}

/// Adds a route to `dest/prefix_len` (host bits already cleared) through the interface
/// `index`, in the main table, without a gateway: on a TUN device every destination is
/// directly on the link, the other end of which is this process.
pub(crate) fn add_route(index: u32, dest: IpAddr, prefix_len: u8) -> io::Result<()> {
    let mut msg = RouteMessage::default();
    msg.header.destination_prefix_length = prefix_len;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    // What `ip route add` marks its routes with: configured by an administrator (here, the
    // proxy), not learned from a routing protocol.
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.kind = RouteType::Unicast;
    match dest {
        IpAddr::V4(v4) => {
            msg.header.address_family = AddressFamily::Inet;
            // No gateway: the destination is on the link.
            msg.header.scope = RouteScope::Link;
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(v4)));
        }
        IpAddr::V6(v6) => {
            msg.header.address_family = AddressFamily::Inet6;
            // IPv6 routes carry no scope; the kernel expects universe.
            msg.header.scope = RouteScope::Universe;
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet6(v6)));
        }
    }
    msg.attributes.push(RouteAttribute::Oif(index));
    request(RouteNetlinkMessage::NewRoute(msg))
}

/// Clears the bits of `addr` past `prefix_len` (which the caller has checked against the
/// family's width): the kernel refuses an IPv4 route whose destination has host bits set.
pub(crate) fn network(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// Sends one creating request (`NLM_F_CREATE | NLM_F_EXCL`: an existing address or route is
/// an error, `EEXIST`, rather than silently kept) and waits for the kernel's acknowledgement.
fn request(inner: RouteNetlinkMessage) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    header.sequence_number = 1;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket.send(&buf, 0)?;

    loop {
        let (reply, _) = socket.recv_from_full()?;
        let mut offset = 0;
        while offset < reply.len() {
            let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[offset..])
                .map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("undecodable rtnetlink reply: {e}"),
                    )
                })?;
            let len = answer.header.length as usize;
            if answer.header.sequence_number == 1 {
                match answer.payload {
                    // An acknowledgement carries no error code.
                    NetlinkPayload::Error(err) if err.code.is_none() => return Ok(()),
                    NetlinkPayload::Error(err) => return Err(err.to_io()),
                    _ => {}
                }
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::network;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn network_clears_host_bits() {
        assert_eq!(network(ip("10.78.5.5"), 16), ip("10.78.0.0"));
        assert_eq!(network(ip("10.78.5.5"), 32), ip("10.78.5.5"));
        assert_eq!(network(ip("10.78.5.5"), 0), ip("0.0.0.0"));
        assert_eq!(network(ip("fd77:1:2:3::9"), 48), ip("fd77:1:2::"));
        assert_eq!(network(ip("fd77::9"), 128), ip("fd77::9"));
        assert_eq!(network(ip("fd77::9"), 0), ip("::"));
    }
}
