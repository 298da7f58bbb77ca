//! IP prefixes: a rule's `targets`.

use core::fmt;
use core::net::IpAddr;
use core::str::FromStr;

/// An IPv4 or IPv6 prefix in CIDR form: `10.0.0.0/8`, `2001:db8::/32`.
///
/// Its host bits (those past the length) are zero, so each prefix has one spelling and a
/// typo such as `10.0.0.1/8` (meant `/32`, or `10.0.0.0/8`) is refused instead of read as
/// something the author did not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

/// Why text or parts do not make an [`IpPrefix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixError {
    /// The address part is not an IPv4 or IPv6 address.
    InvalidAddress,
    /// The length is not a decimal number without sign or leading zeros.
    InvalidLength,
    /// The length is larger than the address (32 bits for IPv4, 128 for IPv6).
    LengthTooLong,
    /// The address has bits set past the length.
    HostBitsSet,
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrefixError::InvalidAddress => "invalid IP address",
            PrefixError::InvalidLength => "invalid prefix length",
            PrefixError::LengthTooLong => "prefix length longer than the address",
            PrefixError::HostBitsSet => "address has bits set past the prefix length",
        })
    }
}

impl core::error::Error for PrefixError {}

impl IpPrefix {
    /// The prefix of `addr`'s first `len` bits; the remaining bits must be zero.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let width = width(addr);
        if len > width {
            return Err(PrefixError::LengthTooLong);
        }
        if bits(addr) & !mask(len, width) != 0 {
            return Err(PrefixError::HostBitsSet);
        }
        Ok(IpPrefix { addr, len })
    }

    /// The address with every bit past the length zero.
    pub const fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The number of leading bits that count.
    pub const fn len(&self) -> u8 {
        self.len
    }

    /// Whether this is `0.0.0.0/0` or `::/0`, the prefix that holds every address of its
    /// family (clippy expects an `is_empty` beside `len`; here it says "no bit counts").
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `addr` is inside the prefix. The families compare literally: an
    /// IPv4-mapped IPv6 address is not inside an IPv4 prefix (the rule matcher maps such
    /// addresses to IPv4 before it asks; see the [`rules`](super) module).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let family = width(self.addr);
        family == width(addr) && bits(addr) & mask(self.len, family) == bits(self.addr)
    }
}

impl fmt::Display for IpPrefix {
    /// Always with the length: `192.0.2.1/32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for IpPrefix {
    type Err = PrefixError;

    /// `address/length`, or a bare address for the one-address prefix (`/32`, `/128`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| PrefixError::InvalidAddress)?;
        let len = match len {
            None => width(addr),
            Some(text) => parse_len(text)?,
        };
        IpPrefix::new(addr, len)
    }
}

/// A decimal length of one to three digits, without sign or leading zeros.
fn parse_len(text: &str) -> Result<u8, PrefixError> {
    let digits = text.as_bytes();
    if digits.is_empty()
        || digits.len() > 3
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits[0] == b'0')
    {
        return Err(PrefixError::InvalidLength);
    }
    let value = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    u8::try_from(value).map_err(|_| PrefixError::LengthTooLong)
}

/// The number of bits of `addr`'s family.
pub(super) const fn width(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The address as an integer, right-aligned (an IPv4 address fills the low 32 bits).
pub(super) fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The first `len` of `width` bits set, right-aligned like [`bits`].
pub(super) const fn mask(len: u8, width: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    let all = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    all & (u128::MAX << (width - len))
}

/// An address of `addr`'s family from right-aligned bits.
#[cfg(test)]
pub(super) fn from_bits(bits: u128, v6: bool) -> IpAddr {
    use core::net::{Ipv4Addr, Ipv6Addr};
    if v6 {
        IpAddr::V6(Ipv6Addr::from(bits))
    } else {
        #[allow(clippy::cast_possible_truncation)]
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;
    use std::string::ToString;

    fn p(s: &str) -> IpPrefix {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_displays() {
        assert_eq!(p("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(p("10.0.0.0/8").len(), 8);
        assert_eq!(p("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(p("192.0.2.1").to_string(), "192.0.2.1/32");
        assert_eq!(p("2001:db8::1").to_string(), "2001:db8::1/128");
        assert_eq!(p("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert!(p("::/0").is_empty());
        assert_eq!(p("::/0").addr(), "::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn refuses_bad_text() {
        let cases = [
            ("10.0.0.1/8", PrefixError::HostBitsSet),
            ("2001:db8::1/32", PrefixError::HostBitsSet),
            ("10.0.0.0/33", PrefixError::LengthTooLong),
            ("::/129", PrefixError::LengthTooLong),
            ("::/255", PrefixError::LengthTooLong),
            ("::/256", PrefixError::LengthTooLong),
            ("10.0.0.0/", PrefixError::InvalidLength),
            ("10.0.0.0/08", PrefixError::InvalidLength),
            ("10.0.0.0/+8", PrefixError::InvalidLength),
            ("10.0.0.0/8/8", PrefixError::InvalidLength),
            ("10.0.0.0/1000", PrefixError::InvalidLength),
            ("10.0.0.0/ 8", PrefixError::InvalidLength),
            ("10.0.0/8", PrefixError::InvalidAddress),
            ("", PrefixError::InvalidAddress),
            ("/8", PrefixError::InvalidAddress),
            ("example.com/8", PrefixError::InvalidAddress),
            ("[::1]/128", PrefixError::InvalidAddress),
        ];
        for (text, error) in cases {
            assert_eq!(text.parse::<IpPrefix>(), Err(error), "{text:?}");
        }
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(IpPrefix::new(v4, 33), Err(PrefixError::LengthTooLong));
        assert_eq!(IpPrefix::new(v4, 7).map(|p| p.len()), Ok(7));
        assert_eq!(IpPrefix::new(v4, 6), Err(PrefixError::HostBitsSet));
    }

    #[test]
    fn contains() {
        let ten = p("10.0.0.0/8");
        assert!(ten.contains("10.255.1.2".parse().unwrap()));
        assert!(!ten.contains("11.0.0.0".parse().unwrap()));
        assert!(!ten.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(p("0.0.0.0/0").contains("255.255.255.255".parse().unwrap()));
        assert!(!p("0.0.0.0/0").contains("::".parse().unwrap()));
        assert!(!p("::/0").contains("0.0.0.0".parse().unwrap()));
        assert!(p("::/0").contains("ffff::1".parse().unwrap()));
        let doc = p("2001:db8::/33");
        assert!(doc.contains("2001:db8:7fff::1".parse().unwrap()));
        assert!(!doc.contains("2001:db8:8000::".parse().unwrap()));
        let host = p("2001:db8::1");
        assert!(host.contains("2001:db8::1".parse().unwrap()));
        assert!(!host.contains("2001:db8::2".parse().unwrap()));
    }

    #[test]
    fn masks() {
        assert_eq!(mask(0, 32), 0);
        assert_eq!(mask(32, 32), 0xffff_ffff);
        assert_eq!(mask(8, 32), 0xff00_0000);
        assert_eq!(mask(128, 128), u128::MAX);
        assert_eq!(mask(1, 128), 1 << 127);
        assert_eq!(
            from_bits(0x0a00_0001, false),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
