//! UDP-in-IP builders: the edge's way back into the tunnel for UDP flows.

use core::fmt;
use core::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

use super::encode::{ipv4_header, ipv6_header};
use super::packet::{IPV4_HEADER_LEN, IPV6_HEADER_LEN, IpVersion, ipv4_addresses, ipv6_addresses};
use super::{checksum, protocol};
use crate::cursor::Writer;
use crate::error::BufferTooSmall;

const UDP_HEADER_LEN: usize = 8;

/// Bytes of IP and UDP header in front of a UDP payload: 28 for IPv4, 48 for IPv6.
///
/// Receive a UDP payload at this offset in a buffer and [`encode_udp_in_place`] completes the
/// packet without moving it.
pub const fn udp_headroom(version: IpVersion) -> usize {
    match version {
        IpVersion::V4 => IPV4_HEADER_LEN + UDP_HEADER_LEN,
        IpVersion::V6 => IPV6_HEADER_LEN + UDP_HEADER_LEN,
    }
}

/// Why a UDP packet could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeUdpError {
    /// The output buffer cannot hold the packet.
    BufferTooSmall(BufferTooSmall),
    /// The payload does not fit in one UDP datagram over this IP version.
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// The largest payload this IP version can carry.
        max: usize,
    },
    /// The source and destination are not both IPv4 or both IPv6.
    AddressFamilyMismatch,
}

impl From<BufferTooSmall> for EncodeUdpError {
    fn from(e: BufferTooSmall) -> Self {
        Self::BufferTooSmall(e)
    }
}

impl fmt::Display for EncodeUdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall(e) => e.fmt(f),
            Self::PayloadTooLarge { len, max } => {
                write!(f, "UDP payload of {len} bytes exceeds the maximum of {max}")
            }
            Self::AddressFamilyMismatch => {
                f.write_str("UDP source and destination are of different IP versions")
            }
        }
    }
}

impl core::error::Error for EncodeUdpError {}

/// Writes a UDP datagram from `source` to `destination` carrying `payload`, in an IPv4 or
/// IPv6 packet as the addresses are, into `out`. Returns the packet's length.
///
/// The packet has correct IPv4 header and UDP checksums; see the module documentation for
/// the header fields. An IPv6 address's flow info and scope id are not used.
pub fn encode_udp(
    out: &mut [u8],
    source: SocketAddr,
    destination: SocketAddr,
    payload: &[u8],
) -> Result<usize, EncodeUdpError> {
    let plan = Plan::new(source, destination, payload.len())?;
    let available = out.len();
    out.get_mut(plan.headroom..plan.total)
        .ok_or(BufferTooSmall {
            needed: plan.total,
            available,
        })?
        .copy_from_slice(payload);
    plan.write_headers(out)
}

/// Completes a UDP packet whose `payload_len`-byte payload already sits at
/// [`udp_headroom`] in `buf`, by writing the IP and UDP headers in front of it. Returns the
/// packet's length.
pub fn encode_udp_in_place(
    buf: &mut [u8],
    source: SocketAddr,
    destination: SocketAddr,
    payload_len: usize,
) -> Result<usize, EncodeUdpError> {
    Plan::new(source, destination, payload_len)?.write_headers(buf)
}

/// The two ends of a UDP packet, of one IP version.
#[derive(Clone, Copy)]
enum Endpoints {
    V4(SocketAddrV4, SocketAddrV4),
    V6(SocketAddrV6, SocketAddrV6),
}

/// A UDP packet whose addresses and sizes have been checked.
struct Plan {
    endpoints: Endpoints,
    headroom: usize,
    total: usize,
    /// The UDP Length: header and payload.
    udp_len: u16,
}

impl Plan {
    fn new(
        source: SocketAddr,
        destination: SocketAddr,
        payload_len: usize,
    ) -> Result<Self, EncodeUdpError> {
        let (endpoints, version) = match (source, destination) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => (Endpoints::V4(s, d), IpVersion::V4),
            (SocketAddr::V6(s), SocketAddr::V6(d)) => (Endpoints::V6(s, d), IpVersion::V6),
            _ => return Err(EncodeUdpError::AddressFamilyMismatch),
        };
        let headroom = udp_headroom(version);
        // IPv4 bounds the whole packet by its 16-bit Total Length; IPv6 bounds the UDP
        // datagram by its 16-bit Payload Length (and UDP's own Length).
        let max = match version {
            IpVersion::V4 => usize::from(u16::MAX) - headroom,
            IpVersion::V6 => usize::from(u16::MAX) - UDP_HEADER_LEN,
        };
        let udp_len = Some(payload_len)
            .filter(|&len| len <= max)
            .and_then(|len| u16::try_from(UDP_HEADER_LEN + len).ok())
            .ok_or(EncodeUdpError::PayloadTooLarge {
                len: payload_len,
                max,
            })?;
        Ok(Self {
            endpoints,
            headroom,
            total: headroom + payload_len,
            udp_len,
        })
    }

    /// Writes the headers in front of the payload at `headroom` in `buf`.
    fn write_headers(&self, buf: &mut [u8]) -> Result<usize, EncodeUdpError> {
        let available = buf.len();
        let payload = buf.get(self.headroom..self.total).ok_or(BufferTooSmall {
            needed: self.total,
            available,
        })?;
        let (source_port, destination_port) = match self.endpoints {
            Endpoints::V4(s, d) => (s.port(), d.port()),
            Endpoints::V6(s, d) => (s.port(), d.port()),
        };
        let [sp_hi, sp_lo] = source_port.to_be_bytes();
        let [dp_hi, dp_lo] = destination_port.to_be_bytes();
        let [len_hi, len_lo] = self.udp_len.to_be_bytes();
        let mut udp = [sp_hi, sp_lo, dp_hi, dp_lo, len_hi, len_lo, 0, 0];
        match self.endpoints {
            Endpoints::V4(source, destination) => {
                // The UDP Length plus 20 stays within u16: `Plan::new` capped the payload.
                let total_len = self.udp_len + 20;
                let ip = ipv4_header(total_len, protocol::UDP, *source.ip(), *destination.ip());
                let checksum = udp_checksum(ipv4_addresses(&ip), udp, payload);
                udp[6..].copy_from_slice(&checksum);
                write_headers(buf, &ip, &udp)?;
            }
            Endpoints::V6(source, destination) => {
                let ip = ipv6_header(self.udp_len, protocol::UDP, *source.ip(), *destination.ip());
                let checksum = udp_checksum(ipv6_addresses(&ip), udp, payload);
                udp[6..].copy_from_slice(&checksum);
                write_headers(buf, &ip, &udp)?;
            }
        }
        Ok(self.total)
    }
}

/// Writes the IP then the UDP header at the start of `buf`.
fn write_headers(buf: &mut [u8], ip: &[u8], udp: &[u8]) -> Result<(), BufferTooSmall> {
    let mut out = Writer::new(buf);
    out.bytes(ip)?;
    out.bytes(udp)
}

/// The UDP checksum field for `header` (checksum zeroed) and `payload`.
fn udp_checksum(addresses: &[u8], header: [u8; UDP_HEADER_LEN], payload: &[u8]) -> [u8; 2] {
    let sum = checksum::pseudo_header(addresses, protocol::UDP, header.len() + payload.len())
        .add_slice(&header)
        .add_slice(payload);
    checksum::udp_field(&sum)
}
