//! Which transport a request asks for, and sets of them for a rule's `protocols` condition.

use core::fmt;
use core::str::FromStr;

/// The transport of a request: a CONNECT tunnel (TCP), a CONNECT-UDP tunnel (UDP) or a
/// CONNECT-IP tunnel (IP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// A TCP tunnel (HTTP CONNECT, SOCKS5 CONNECT).
    Tcp,
    /// A UDP tunnel (CONNECT-UDP, SOCKS5 UDP ASSOCIATE, UDP forwards).
    Udp,
    /// An IP tunnel (CONNECT-IP).
    Ip,
}

impl Protocol {
    /// Every protocol, in a fixed order.
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Ip];

    /// The name configuration uses: `tcp`, `udp` or `ip`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Ip => "ip",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Protocol::Tcp => 0b001,
            Protocol::Udp => 0b010,
            Protocol::Ip => 0b100,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not `tcp`, `udp` or `ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownProtocol;

impl fmt::Display for UnknownProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown protocol: expected tcp, udp or ip")
    }
}

impl core::error::Error for UnknownProtocol {}

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    /// `tcp`, `udp` or `ip`, ASCII case-insensitively (configuration is written by people).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or(UnknownProtocol)
    }
}

/// A set of [`Protocol`]s: the `protocols` condition of a rule.
///
/// [`ProtocolSet::ALL`] sets no condition. [`ProtocolSet::EMPTY`] is a condition no request
/// meets: a rule holding it never matches (the matcher tests membership, nothing more).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolSet(u8);

impl ProtocolSet {
    /// Every protocol: the rule does not look at the protocol.
    pub const ALL: ProtocolSet = ProtocolSet(0b111);
    /// No protocol: a rule with this set matches nothing.
    pub const EMPTY: ProtocolSet = ProtocolSet(0);

    /// Whether `protocol` is in the set.
    pub const fn contains(self, protocol: Protocol) -> bool {
        self.0 & protocol.bit() != 0
    }

    /// Adds `protocol` to the set.
    pub fn insert(&mut self, protocol: Protocol) {
        self.0 |= protocol.bit();
    }

    /// Whether the set holds every protocol.
    pub const fn is_all(self) -> bool {
        self.0 == Self::ALL.0
    }

    /// Whether the set holds no protocol.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The protocols in the set, in [`Protocol::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Protocol> {
        Protocol::ALL.into_iter().filter(move |&p| self.contains(p))
    }
}

impl Default for ProtocolSet {
    /// [`ProtocolSet::ALL`]: by default a rule does not look at the protocol.
    fn default() -> Self {
        Self::ALL
    }
}

impl fmt::Debug for ProtocolSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<Protocol> for ProtocolSet {
    fn from_iter<I: IntoIterator<Item = Protocol>>(iter: I) -> Self {
        let mut set = ProtocolSet::EMPTY;
        for protocol in iter {
            set.insert(protocol);
        }
        set
    }
}

impl From<Protocol> for ProtocolSet {
    fn from(protocol: Protocol) -> Self {
        ProtocolSet(protocol.bit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_each_protocol() {
        for p in Protocol::ALL {
            assert_eq!(p.as_str().parse::<Protocol>(), Ok(p));
            assert_eq!(std::format!("{p}"), p.as_str());
        }
        assert_eq!("TCP".parse::<Protocol>(), Ok(Protocol::Tcp));
        assert_eq!("Udp".parse::<Protocol>(), Ok(Protocol::Udp));
        for bad in ["", "tcp ", "icmp", "t", "ipv4"] {
            assert_eq!(bad.parse::<Protocol>(), Err(UnknownProtocol), "{bad:?}");
        }
    }

    #[test]
    fn set_operations() {
        assert!(ProtocolSet::ALL.is_all());
        assert!(ProtocolSet::EMPTY.is_empty());
        let mut set = ProtocolSet::EMPTY;
        assert!(!set.contains(Protocol::Tcp));
        set.insert(Protocol::Tcp);
        assert!(set.contains(Protocol::Tcp) && !set.contains(Protocol::Udp));
        let both: ProtocolSet = [Protocol::Udp, Protocol::Ip].into_iter().collect();
        assert!(!both.contains(Protocol::Tcp) && both.contains(Protocol::Ip));
        assert_eq!(
            both.iter().collect::<std::vec::Vec<_>>(),
            [Protocol::Udp, Protocol::Ip]
        );
        assert_eq!(
            Protocol::ALL.into_iter().collect::<ProtocolSet>(),
            ProtocolSet::ALL
        );
        assert_eq!(ProtocolSet::default(), ProtocolSet::ALL);
        assert_eq!(std::format!("{both:?}"), "{Udp, Ip}");
    }
}
