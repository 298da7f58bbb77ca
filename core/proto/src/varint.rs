//! QUIC variable-length integers (RFC 9000 §16).
//!
//! The two most significant bits of the first byte give the encoding length:
//!
//! | 2MSB | length | usable bits | range |
//! |------|--------|-------------|-------|
//! | 00 | 1 | 6 | 0–63 |
//! | 01 | 2 | 14 | 0–16383 |
//! | 10 | 4 | 30 | 0–1073741823 |
//! | 11 | 8 | 62 | 0–4611686018427387903 |
//!
//! Decoding accepts any of the lengths for a value (RFC 9000 §16: "values do not need to be
//! encoded on the minimum number of bytes necessary"); encoding always writes the shortest.

use core::fmt;

use crate::error::{BufferTooSmall, Truncated};

/// An integer in `0..2^62`, the range a QUIC variable-length integer can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VarInt(u64);

/// A value at or above 2^62 cannot be a [`VarInt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VarIntTooLarge(pub u64);

impl fmt::Display for VarIntTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} does not fit in a QUIC varint (max 2^62-1)", self.0)
    }
}

impl core::error::Error for VarIntTooLarge {}

impl VarInt {
    /// The largest value a varint can carry, 2^62 − 1.
    pub const MAX: Self = Self((1 << 62) - 1);
    /// Zero.
    pub const ZERO: Self = Self(0);
    /// The longest encoding, in bytes.
    pub const MAX_LEN: usize = 8;

    /// Wraps `value`, which must be below 2^62.
    pub const fn new(value: u64) -> Result<Self, VarIntTooLarge> {
        if value > Self::MAX.0 {
            Err(VarIntTooLarge(value))
        } else {
            Ok(Self(value))
        }
    }

    /// Wraps a `u32`, which always fits.
    pub const fn from_u32(value: u32) -> Self {
        Self(value as u64)
    }

    /// The value.
    pub const fn into_inner(self) -> u64 {
        self.0
    }

    /// Bytes of the shortest encoding of this value.
    pub const fn encoded_len(self) -> usize {
        match self.0 {
            0..=63 => 1,
            64..=16_383 => 2,
            16_384..=1_073_741_823 => 4,
            _ => 8,
        }
    }

    /// Bytes of the encoding whose first byte is `first`.
    pub const fn len_from_first_byte(first: u8) -> usize {
        1 << (first >> 6)
    }

    /// Decodes a varint from the front of `buf`, returning it and the bytes it took.
    pub fn decode(buf: &[u8]) -> Result<(Self, usize), Truncated> {
        // One fixed-width big-endian load per length instead of a byte loop: this sits on
        // every datagram and capsule header.
        let first = *buf.first().ok_or(Truncated)?;
        let (value, len) = match first >> 6 {
            0b00 => (u64::from(first), 1),
            0b01 => (u64::from(u16::from_be_bytes(prefix(buf)?) & 0x3fff), 2),
            0b10 => (u64::from(u32::from_be_bytes(prefix(buf)?) & 0x3fff_ffff), 4),
            _ => (u64::from_be_bytes(prefix(buf)?) & Self::MAX.0, 8),
        };
        Ok((Self(value), len))
    }

    /// Writes the shortest encoding to the front of `out`, returning its length.
    pub fn encode(self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let len = self.encoded_len();
        self.encode_with_len(len, out)?;
        Ok(len)
    }

    /// Writes the value using exactly `len` bytes (1, 2, 4 or 8).
    ///
    /// Useful to reserve a fixed-size length field and fill it in later. Fails with
    /// [`EncodeWithLenError::TooShort`] if the value does not fit in `len` bytes.
    pub fn encode_with_len(self, len: usize, out: &mut [u8]) -> Result<(), EncodeWithLenError> {
        let tag: u8 = match len {
            1 => 0b00,
            2 => 0b01,
            4 => 0b10,
            8 => 0b11,
            _ => return Err(EncodeWithLenError::BadLength(len)),
        };
        if self.encoded_len() > len {
            return Err(EncodeWithLenError::TooShort);
        }
        let available = out.len();
        let out = out.get_mut(..len).ok_or(BufferTooSmall {
            needed: len,
            available,
        })?;
        out.copy_from_slice(&self.0.to_be_bytes()[8 - len..]);
        out[0] |= tag << 6;
        Ok(())
    }
}

/// Why [`VarInt::encode_with_len`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeWithLenError {
    /// The length is not 1, 2, 4 or 8.
    BadLength(usize),
    /// The value needs more bytes than were asked for.
    TooShort,
    /// The output buffer is shorter than the length.
    Buffer(BufferTooSmall),
}

impl From<BufferTooSmall> for EncodeWithLenError {
    fn from(e: BufferTooSmall) -> Self {
        Self::Buffer(e)
    }
}

impl From<EncodeWithLenError> for BufferTooSmall {
    /// Only [`VarInt::encode`] converts, and it always asks for a valid, large-enough length.
    fn from(e: EncodeWithLenError) -> Self {
        match e {
            EncodeWithLenError::Buffer(b) => b,
            EncodeWithLenError::BadLength(len) => Self {
                needed: len,
                available: 0,
            },
            EncodeWithLenError::TooShort => Self {
                needed: VarInt::MAX_LEN,
                available: 0,
            },
        }
    }
}

impl fmt::Display for EncodeWithLenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadLength(len) => write!(f, "{len} is not a varint length (1, 2, 4 or 8)"),
            Self::TooShort => f.write_str("value does not fit in the requested varint length"),
            Self::Buffer(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for EncodeWithLenError {}

/// The first `N` bytes of `buf` as an array.
fn prefix<const N: usize>(buf: &[u8]) -> Result<[u8; N], Truncated> {
    buf.get(..N)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(Truncated)
}

impl From<u8> for VarInt {
    fn from(v: u8) -> Self {
        Self(u64::from(v))
    }
}

impl From<u16> for VarInt {
    fn from(v: u16) -> Self {
        Self(u64::from(v))
    }
}

impl From<u32> for VarInt {
    fn from(v: u32) -> Self {
        Self(u64::from(v))
    }
}

impl TryFrom<u64> for VarInt {
    type Error = VarIntTooLarge;
    fn try_from(v: u64) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl TryFrom<usize> for VarInt {
    type Error = VarIntTooLarge;
    fn try_from(v: usize) -> Result<Self, Self::Error> {
        Self::new(v as u64)
    }
}

impl From<VarInt> for u64 {
    fn from(v: VarInt) -> Self {
        v.0
    }
}

impl fmt::Display for VarInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 9000 Appendix A.1, "Sample Variable-Length Integer Decoding".
    const RFC9000_A1: &[(&[u8], u64)] = &[
        (
            &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
            151_288_809_941_952_652,
        ),
        (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
        (&[0x7b, 0xbd], 15_293),
        (&[0x25], 37),
        (&[0x40, 0x25], 37),
    ];

    #[test]
    fn decodes_rfc9000_appendix_a1_examples() {
        for &(bytes, value) in RFC9000_A1 {
            assert_eq!(
                VarInt::decode(bytes),
                Ok((VarInt(value), bytes.len())),
                "{bytes:02x?}"
            );
        }
    }

    #[test]
    fn encodes_rfc9000_examples_in_shortest_form() {
        // The two-byte encoding of 37 is valid but not shortest; every other example is.
        for &(bytes, value) in &RFC9000_A1[..4] {
            let mut out = [0; 8];
            let len = VarInt(value).encode(&mut out).unwrap();
            assert_eq!(&out[..len], bytes);
        }
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert_eq!(VarInt::decode(&[]), Err(Truncated));
        assert_eq!(VarInt::decode(&[0x40]), Err(Truncated));
        assert_eq!(VarInt::decode(&[0xc2, 0x19, 0x7c]), Err(Truncated));
    }

    #[test]
    fn rejects_values_at_or_above_2_pow_62() {
        assert_eq!(VarInt::new(1 << 62), Err(VarIntTooLarge(1 << 62)));
        assert_eq!(VarInt::new(u64::MAX), Err(VarIntTooLarge(u64::MAX)));
        assert!(VarInt::new((1 << 62) - 1).is_ok());
    }

    #[test]
    fn encode_reports_buffer_too_small() {
        let mut out = [0; 3];
        assert_eq!(
            VarInt(494_878_333).encode(&mut out),
            Err(BufferTooSmall {
                needed: 4,
                available: 3
            })
        );
    }

    #[test]
    fn encode_with_len_pads_and_refuses_too_short() {
        let mut out = [0; 8];
        VarInt(37).encode_with_len(2, &mut out).unwrap();
        assert_eq!(&out[..2], &[0x40, 0x25]);
        assert_eq!(
            VarInt(16_384).encode_with_len(2, &mut out),
            Err(EncodeWithLenError::TooShort)
        );
        assert_eq!(
            VarInt(1).encode_with_len(3, &mut out),
            Err(EncodeWithLenError::BadLength(3))
        );
    }

    proptest! {
        #[test]
        fn round_trips(value in 0..=VarInt::MAX.0) {
            let v = VarInt(value);
            let mut out = [0; 8];
            let len = v.encode(&mut out).unwrap();
            prop_assert_eq!(len, v.encoded_len());
            prop_assert_eq!(VarInt::decode(&out[..len]), Ok((v, len)));
        }

        #[test]
        fn every_length_round_trips(value in 0..=VarInt::MAX.0, len in prop::sample::select(&[1usize, 2, 4, 8][..])) {
            let v = VarInt(value);
            let mut out = [0; 8];
            match v.encode_with_len(len, &mut out) {
                Ok(()) => prop_assert_eq!(VarInt::decode(&out), Ok((v, len))),
                Err(e) => prop_assert_eq!(e, EncodeWithLenError::TooShort),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..12)) {
            if let Ok((v, len)) = VarInt::decode(&bytes) {
                prop_assert!(len <= bytes.len());
                prop_assert!(v <= VarInt::MAX);
            }
        }
    }
}
