//! IP prefixes (`10.0.0.0/8`, `2001:db8::/32`), as the configuration writes them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// An IPv4 or IPv6 prefix: a network address and a prefix length.
///
/// Written `address/length` (`10.0.0.0/8`, `::1/128`); a bare address is a host prefix
/// (`/32` or `/128`). Parsing is strict: an address with bits set past the prefix length
/// (`10.0.0.1/8`) is refused with [`IpNetError::HostBitsSet`], which names the network the
/// operator probably meant. An allowlist entry widens what the edge may reach, so a typo
/// must stop the configuration from loading rather than silently allow a larger network.
///
/// An IPv4 prefix contains only IPv4 addresses and an IPv6 prefix only IPv6 addresses:
/// `::ffff:10.0.0.0/104` is a prefix of IPv6 addresses. (The egress policy itself matches
/// IPv4 prefixes against the IPv4 address an IPv6 address embeds; see
/// [`EgressPolicy`](super::EgressPolicy).)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    prefix_len: u8,
}

impl IpNet {
    /// The prefix of `addr` with `prefix_len` leading bits.
    ///
    /// Fails if the length exceeds the family's address width, or if `addr` has bits set
    /// past the prefix (it is then not the network address).
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, IpNetError> {
        let max = address_bits(addr);
        if prefix_len > max {
            return Err(IpNetError::PrefixTooLong { max });
        }
        let network = Self {
            addr: mask(addr, prefix_len),
            prefix_len,
        };
        if network.addr == addr {
            Ok(network)
        } else {
            Err(IpNetError::HostBitsSet { network })
        }
    }

    /// A prefix from parts the caller knows to be consistent (for constants).
    pub(super) const fn from_parts(addr: IpAddr, prefix_len: u8) -> Self {
        Self { addr, prefix_len }
    }

    /// The prefix holding `addr` alone (`/32` or `/128`).
    pub const fn host(addr: IpAddr) -> Self {
        Self {
            addr,
            prefix_len: address_bits(addr),
        }
    }

    /// The network address (host bits are zero).
    pub const fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The number of leading bits that are fixed.
    pub const fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether the prefix holds a single address.
    pub const fn is_host(&self) -> bool {
        self.prefix_len == address_bits(self.addr)
    }

    /// Whether `addr` falls within the prefix. Addresses of the other family never do.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(net), IpAddr::V4(addr)) => {
                addr.to_bits() & mask_v4(self.prefix_len) == net.to_bits()
            }
            (IpAddr::V6(net), IpAddr::V6(addr)) => {
                addr.to_bits() & mask_v6(self.prefix_len) == net.to_bits()
            }
            _ => false,
        }
    }
}

/// The width of an address of `addr`'s family, in bits.
const fn address_bits(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `addr` with every bit past `prefix_len` cleared.
fn mask(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(addr) => Ipv4Addr::from_bits(addr.to_bits() & mask_v4(prefix_len)).into(),
        IpAddr::V6(addr) => Ipv6Addr::from_bits(addr.to_bits() & mask_v6(prefix_len)).into(),
    }
}

/// The IPv4 netmask with `prefix_len` leading ones (all ones past 32).
pub(super) fn mask_v4(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32_u32.saturating_sub(u32::from(prefix_len)))
        .unwrap_or(0)
}

/// The IPv6 netmask with `prefix_len` leading ones (all ones past 128).
pub(super) fn mask_v6(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128_u32.saturating_sub(u32::from(prefix_len)))
        .unwrap_or(0)
}

impl fmt::Display for IpNet {
    /// Always `address/length`, host prefixes included, so it parses back to itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    /// Parses `address/length` or a bare address. The address is a standard literal
    /// (dotted-quad IPv4, RFC 4291 IPv6 text without brackets or zone); the length is
    /// 1–3 decimal digits.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr_text, len_text) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| IpNetError::InvalidAddress)?;
        match len_text {
            None => Ok(Self::host(addr)),
            Some(len) => Self::new(addr, parse_prefix_len(len)?),
        }
    }
}

/// Parses 1–3 ASCII digits (no sign, no spaces) as a prefix length.
fn parse_prefix_len(text: &str) -> Result<u8, IpNetError> {
    if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IpNetError::InvalidPrefixLength);
    }
    text.parse().map_err(|_| IpNetError::InvalidPrefixLength)
}

impl<'de> Deserialize<'de> for IpNet {
    /// Reads the text form, as [`FromStr`] does (`"10.0.0.0/8"`, `"::1"`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(FromStrVisitor::<Self>::new(
            "an IP prefix such as \"10.0.0.0/8\"",
        ))
    }
}

/// A serde visitor for types read from their [`FromStr`] text.
pub(super) struct FromStrVisitor<T> {
    expecting: &'static str,
    target: std::marker::PhantomData<T>,
}

impl<T> FromStrVisitor<T> {
    pub(super) const fn new(expecting: &'static str) -> Self {
        Self {
            expecting,
            target: std::marker::PhantomData,
        }
    }
}

impl<T> Visitor<'_> for FromStrVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        text.parse()
            .map_err(|error| E::custom(format_args!("{error} in {text:?}")))
    }
}

/// Why text or values do not make an [`IpNet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpNetError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    InvalidAddress,
    /// The part after `/` is not 1–3 decimal digits.
    InvalidPrefixLength,
    /// The prefix length exceeds the address width (`max`: 32 or 128).
    PrefixTooLong {
        /// The longest prefix of this family.
        max: u8,
    },
    /// Bits past the prefix length are set: `network` is the prefix with them cleared.
    HostBitsSet {
        /// The network the text probably meant.
        network: IpNet,
    },
}

impl fmt::Display for IpNetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidAddress => f.write_str("invalid IP address in prefix"),
            Self::InvalidPrefixLength => f.write_str("invalid prefix length"),
            Self::PrefixTooLong { max } => write!(f, "prefix length exceeds {max}"),
            Self::HostBitsSet { network } => {
                write!(
                    f,
                    "host bits set past the prefix length (the network is {network})"
                )
            }
        }
    }
}

impl std::error::Error for IpNetError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error as ValueError, StrDeserializer};

    fn net(text: &str) -> IpNet {
        text.parse().expect("valid prefix")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("valid address")
    }

    #[test]
    fn parses_prefixes_and_bare_addresses() {
        let eight = net("10.0.0.0/8");
        assert_eq!(eight.addr(), ip("10.0.0.0"));
        assert_eq!(eight.prefix_len(), 8);
        assert!(!eight.is_host());
        assert_eq!(net("::1/128"), IpNet::host(ip("::1")));
        assert_eq!(
            net("192.0.2.7"),
            IpNet::new(ip("192.0.2.7"), 32).expect("host")
        );
        assert_eq!(net("2001:db8::1").prefix_len(), 128);
        assert!(net("2001:db8::1").is_host());
        assert_eq!(net("0.0.0.0/0").prefix_len(), 0);
        assert_eq!(net("::/0").prefix_len(), 0);
        assert_eq!(net("10.0.0.0/008").prefix_len(), 8);
    }

    #[test]
    fn refuses_malformed_text() {
        let cases = [
            ("", IpNetError::InvalidAddress),
            ("10.0.0/8", IpNetError::InvalidAddress),
            ("0x0a000000/8", IpNetError::InvalidAddress),
            ("[::1]/128", IpNetError::InvalidAddress),
            ("fe80::1%eth0/64", IpNetError::InvalidAddress),
            (" 10.0.0.0/8", IpNetError::InvalidAddress),
            ("10.0.0.0/", IpNetError::InvalidPrefixLength),
            ("10.0.0.0/+8", IpNetError::InvalidPrefixLength),
            ("10.0.0.0/8 ", IpNetError::InvalidPrefixLength),
            ("10.0.0.0/0008", IpNetError::InvalidPrefixLength),
            ("10.0.0.0/8/8", IpNetError::InvalidPrefixLength),
            ("10.0.0.0/33", IpNetError::PrefixTooLong { max: 32 }),
            ("::/129", IpNetError::PrefixTooLong { max: 128 }),
            ("::/255", IpNetError::PrefixTooLong { max: 128 }),
            ("::/256", IpNetError::InvalidPrefixLength),
        ];
        for (text, error) in cases {
            assert_eq!(text.parse::<IpNet>(), Err(error), "{text:?}");
        }
    }

    #[test]
    fn refuses_host_bits_and_names_the_network() {
        assert_eq!(
            "10.0.0.1/8".parse::<IpNet>(),
            Err(IpNetError::HostBitsSet {
                network: net("10.0.0.0/8")
            })
        );
        assert_eq!(
            "2001:db8::1/32".parse::<IpNet>(),
            Err(IpNetError::HostBitsSet {
                network: net("2001:db8::/32")
            })
        );
        assert_eq!(
            IpNet::new(ip("1.2.3.4"), 0),
            Err(IpNetError::HostBitsSet {
                network: net("0.0.0.0/0")
            })
        );
    }

    #[test]
    fn contains_matches_prefix_bits_within_one_family() {
        let private = net("172.16.0.0/12");
        assert!(private.contains(ip("172.16.0.0")));
        assert!(private.contains(ip("172.31.255.255")));
        assert!(!private.contains(ip("172.32.0.0")));
        assert!(!private.contains(ip("172.15.255.255")));
        assert!(!private.contains(ip("::ffff:172.16.0.1")));

        let all_v4 = net("0.0.0.0/0");
        assert!(all_v4.contains(ip("255.255.255.255")));
        assert!(!all_v4.contains(ip("::")));

        let host = net("::1");
        assert!(host.contains(ip("::1")));
        assert!(!host.contains(ip("::2")));
        assert!(!host.contains(ip("127.0.0.1")));

        let doc = net("2001:db8::/32");
        assert!(doc.contains(ip("2001:db8:ffff::1")));
        assert!(!doc.contains(ip("2001:db9::")));
    }

    #[test]
    fn display_parses_back() {
        for text in [
            "10.0.0.0/8",
            "::1/128",
            "192.0.2.7/32",
            "2001:db8::/32",
            "::/0",
        ] {
            assert_eq!(net(text).to_string(), text);
        }
        assert_eq!(net("192.0.2.7").to_string(), "192.0.2.7/32");
    }

    #[test]
    fn deserializes_from_a_string() {
        let de: StrDeserializer<'_, ValueError> = "100.64.0.0/10".into_deserializer();
        assert_eq!(IpNet::deserialize(de), Ok(net("100.64.0.0/10")));

        let de: StrDeserializer<'_, ValueError> = "10.0.0.1/8".into_deserializer();
        let error = IpNet::deserialize(de).expect_err("host bits");
        assert_eq!(
            error.to_string(),
            "host bits set past the prefix length (the network is 10.0.0.0/8) in \"10.0.0.1/8\""
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            IpNetError::InvalidAddress.to_string(),
            "invalid IP address in prefix"
        );
        assert_eq!(
            IpNetError::InvalidPrefixLength.to_string(),
            "invalid prefix length"
        );
        assert_eq!(
            IpNetError::PrefixTooLong { max: 32 }.to_string(),
            "prefix length exceeds 32"
        );
    }
}
