//! The Capsule Protocol (RFC 9297 §3.2).
//!
//! ```text
//! Capsule {
//!   Capsule Type (i),
//!   Capsule Length (i),
//!   Capsule Value (..),
//! }
//! ```

use crate::cursor::Writer;
use crate::error::BufferTooSmall;
use crate::varint::VarInt;

/// Capsule types veil knows. Every other type is skipped.
pub mod types {
    use crate::varint::VarInt;

    /// DATAGRAM (RFC 9297 §3.5).
    pub const DATAGRAM: VarInt = VarInt::from_u32(0x00);
    /// `ADDRESS_ASSIGN` (RFC 9484 §4.7.1).
    pub const ADDRESS_ASSIGN: VarInt = VarInt::from_u32(0x01);
    /// `ADDRESS_REQUEST` (RFC 9484 §4.7.2).
    pub const ADDRESS_REQUEST: VarInt = VarInt::from_u32(0x02);
    /// `ROUTE_ADVERTISEMENT` (RFC 9484 §4.7.3).
    pub const ROUTE_ADVERTISEMENT: VarInt = VarInt::from_u32(0x03);
}

/// Writes a capsule header (type and length) for a value of `value_len` bytes.
///
/// The caller writes the value right after. Returns the header's length.
pub fn encode_header(
    capsule_type: VarInt,
    value_len: usize,
    out: &mut Writer<'_>,
) -> Result<usize, BufferTooSmall> {
    let len = VarInt::try_from(value_len).map_err(|_| BufferTooSmall {
        needed: usize::MAX,
        available: out.remaining(),
    })?;
    let header_len = capsule_type.encoded_len() + len.encoded_len();
    out.reserve(header_len)?;
    out.varint(capsule_type)?;
    out.varint(len)?;
    Ok(header_len)
}
