//! Port ranges: a rule's `ports`.

use core::fmt;
use core::str::FromStr;

/// An inclusive range of ports: `443` or `7100-7200`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

/// Why text or bounds do not make a [`PortRange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRangeError {
    /// A bound is not a decimal number from 0 to 65535 without sign or leading zeros.
    InvalidPort,
    /// The first port is larger than the last.
    Reversed,
}

impl fmt::Display for PortRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortRangeError::InvalidPort => "invalid port: expected 0 to 65535",
            PortRangeError::Reversed => "port range ends before it starts",
        })
    }
}

impl core::error::Error for PortRangeError {}

impl PortRange {
    /// The ports from `first` to `last`, both included.
    pub const fn new(first: u16, last: u16) -> Result<Self, PortRangeError> {
        if first > last {
            return Err(PortRangeError::Reversed);
        }
        Ok(PortRange { first, last })
    }

    /// One port.
    pub const fn single(port: u16) -> Self {
        PortRange {
            first: port,
            last: port,
        }
    }

    /// The first port of the range.
    pub const fn first(&self) -> u16 {
        self.first
    }

    /// The last port of the range (included).
    pub const fn last(&self) -> u16 {
        self.last
    }

    /// Whether `port` is in the range.
    pub const fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

impl fmt::Display for PortRange {
    /// `443` for one port, `7100-7200` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('-') {
            Some((first, last)) => PortRange::new(parse_port(first)?, parse_port(last)?),
            None => parse_port(s).map(PortRange::single),
        }
    }
}

/// A decimal port, one spelling per number: no sign, no spaces, no leading zeros.
fn parse_port(text: &str) -> Result<u16, PortRangeError> {
    let digits = text.as_bytes();
    if digits.is_empty()
        || digits.len() > 5
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits[0] == b'0')
    {
        return Err(PortRangeError::InvalidPort);
    }
    let value = digits
        .iter()
        .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| PortRangeError::InvalidPort)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn parses_and_displays() {
        let one: PortRange = "443".parse().unwrap();
        assert_eq!((one.first(), one.last()), (443, 443));
        assert_eq!(one.to_string(), "443");
        let range: PortRange = "7100-7200".parse().unwrap();
        assert_eq!(range, PortRange::new(7100, 7200).unwrap());
        assert_eq!(range.to_string(), "7100-7200");
        assert_eq!(
            "0-65535".parse::<PortRange>().unwrap().to_string(),
            "0-65535"
        );
        assert_eq!("5-5".parse::<PortRange>().unwrap().to_string(), "5");
    }

    #[test]
    fn refuses_bad_text() {
        for bad in [
            "", "-", "1-", "-1", "65536", "+443", "0443", " 443", "1 - 2", "a", "1-2-3",
        ] {
            assert_eq!(
                bad.parse::<PortRange>(),
                Err(PortRangeError::InvalidPort),
                "{bad:?}"
            );
        }
        assert_eq!(
            "200-100".parse::<PortRange>(),
            Err(PortRangeError::Reversed)
        );
        assert_eq!(PortRange::new(2, 1), Err(PortRangeError::Reversed));
    }

    #[test]
    fn contains() {
        let range = PortRange::new(7100, 7200).unwrap();
        assert!(range.contains(7100) && range.contains(7200) && range.contains(7150));
        assert!(!range.contains(7099) && !range.contains(7201));
        assert!(PortRange::single(0).contains(0));
        assert!(PortRange::new(0, u16::MAX).unwrap().contains(u16::MAX));
    }
}
