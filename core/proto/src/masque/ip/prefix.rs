//! IP prefixes whose bits past the prefix length are zero.
//!
//! CONNECT-IP uses the same shape in three places: a `target` scope (RFC 9484 §4.6), an
//! Assigned Address (§4.7.1) and a Requested Address (§4.7.2). Each of them requires the
//! host bits to be zero, so [`IpPrefix`] makes that an invariant of the type.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP address and a prefix length, with every bit past the prefix length zero.
///
/// `IpPrefix::new(10.1.0.0, 16)` is a prefix; `10.1.2.3/16` is refused (use
/// [`IpPrefix::new_masked`] to truncate instead). A full-length prefix (`/32`, `/128`) is a
/// single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

/// Why an address and a length do not form an [`IpPrefix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrefixError {
    /// The length is longer than the address (32 bits for IPv4, 128 for IPv6).
    LengthTooLong {
        /// The length given.
        len: u8,
        /// The address's length in bits.
        max: u8,
    },
    /// A bit past the prefix length is set.
    HostBitsSet,
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LengthTooLong { len, max } => {
                write!(
                    f,
                    "prefix length {len} is longer than the address ({max} bits)"
                )
            }
            Self::HostBitsSet => f.write_str("address has bits set past the prefix length"),
        }
    }
}

impl core::error::Error for PrefixError {}

impl IpPrefix {
    /// Makes a prefix, refusing a length past the address or any host bit set.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let prefix = Self::new_masked(addr, len)?;
        if prefix.addr == addr {
            Ok(prefix)
        } else {
            Err(PrefixError::HostBitsSet)
        }
    }

    /// Makes a prefix, clearing the host bits of `addr` (`10.1.2.3/16` becomes
    /// `10.1.0.0/16`). Only a length past the address is refused.
    pub fn new_masked(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let max = max_prefix_len(addr);
        if len > max {
            return Err(PrefixError::LengthTooLong { len, max });
        }
        Ok(Self {
            addr: with_host_bits(addr, len, false),
            len,
        })
    }

    /// The prefix holding exactly `addr` (`/32` or `/128`).
    pub const fn host(addr: IpAddr) -> Self {
        Self {
            addr,
            len: max_prefix_len(addr),
        }
    }

    /// The first address of the prefix (its host bits are zero).
    pub const fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub const fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether the prefix is a single address (`/32` or `/128`).
    pub const fn is_host(&self) -> bool {
        self.len == max_prefix_len(self.addr)
    }

    /// The last address of the prefix (its host bits are all one).
    pub fn last(&self) -> IpAddr {
        with_host_bits(self.addr, self.len, true)
    }

    /// Whether `ip` lies in the prefix. Addresses of the other IP version never do.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && with_host_bits(ip, self.len, false) == self.addr
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The length of `addr` in bits: 32 or 128.
pub(crate) const fn max_prefix_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `addr` with every bit past the first `len` cleared (`ones == false`) or set.
///
/// `len` must not exceed the address length; callers check it first.
fn with_host_bits(addr: IpAddr, len: u8, ones: bool) -> IpAddr {
    let shift = u32::from(max_prefix_len(addr) - len);
    match addr {
        IpAddr::V4(v4) => {
            // A shift by the full width (a /0 prefix) overflows: every bit is a host bit.
            let host = u32::MAX.checked_shl(shift).map_or(u32::MAX, |m| !m);
            let bits = u32::from(v4);
            let bits = if ones { bits | host } else { bits & !host };
            IpAddr::V4(Ipv4Addr::from(bits))
        }
        IpAddr::V6(v6) => {
            let host = u128::MAX.checked_shl(shift).map_or(u128::MAX, |m| !m);
            let bits = u128::from(v6);
            let bits = if ones { bits | host } else { bits & !host };
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn accepts_masked_prefixes_and_hosts() {
        let p = IpPrefix::new(v4(192, 0, 2, 0), 24).unwrap();
        assert_eq!(p.addr(), v4(192, 0, 2, 0));
        assert_eq!(p.prefix_len(), 24);
        assert_eq!(p.last(), v4(192, 0, 2, 255));
        assert!(!p.is_host());
        assert!(IpPrefix::new(v4(192, 0, 2, 1), 32).unwrap().is_host());
        assert_eq!(
            IpPrefix::new(v4(0, 0, 0, 0), 0).unwrap().last(),
            v4(255, 255, 255, 255)
        );
    }

    #[test]
    fn refuses_host_bits() {
        assert_eq!(
            IpPrefix::new(v4(192, 0, 2, 1), 24),
            Err(PrefixError::HostBitsSet)
        );
        assert_eq!(
            IpPrefix::new(v4(0, 0, 0, 1), 0),
            Err(PrefixError::HostBitsSet)
        );
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(IpPrefix::new(v6, 127), Err(PrefixError::HostBitsSet));
        assert!(IpPrefix::new(v6, 128).is_ok());
    }

    #[test]
    fn refuses_lengths_past_the_address() {
        assert_eq!(
            IpPrefix::new(v4(0, 0, 0, 0), 33),
            Err(PrefixError::LengthTooLong { len: 33, max: 32 })
        );
        assert_eq!(
            IpPrefix::new_masked("::".parse().unwrap(), 129),
            Err(PrefixError::LengthTooLong { len: 129, max: 128 })
        );
    }

    #[test]
    fn masks_and_contains() {
        let p = IpPrefix::new_masked("2001:db8:1234::a".parse().unwrap(), 32).unwrap();
        assert_eq!(p.addr(), "2001:db8::".parse::<IpAddr>().unwrap());
        assert_eq!(
            p.last(),
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
                .parse::<IpAddr>()
                .unwrap()
        );
        assert!(p.contains("2001:db8:5::1".parse().unwrap()));
        assert!(!p.contains("2001:db9::".parse().unwrap()));
        assert!(!p.contains(v4(32, 1, 13, 184)));
        assert_eq!(std::format!("{p}"), "2001:db8::/32");
    }
}
