//! `veil_proto::varint` on raw bytes.
//!
//! Decoding takes exactly the length the first byte announces, and re-encoding the value on
//! that same length gives back the same bytes (decoding accepts non-minimal encodings and
//! loses no bit).

use veil_proto::Truncated;
use veil_proto::varint::VarInt;

/// Decodes a varint from the front of `data` and checks it.
///
/// # Panics
///
/// When an invariant above breaks.
pub fn run(data: &[u8]) {
    let announced = data.first().map_or(1, |&b| VarInt::len_from_first_byte(b));
    match VarInt::decode(data) {
        Err(Truncated) => assert!(data.len() < announced, "{data:02x?} is long enough"),
        Ok((value, len)) => {
            assert_eq!(len, announced, "{data:02x?}");
            assert!(len <= data.len());
            assert!(value.encoded_len() <= len, "{value:?} in {len} bytes");
            let mut out = [0; VarInt::MAX_LEN];
            value
                .encode_with_len(len, &mut out)
                .expect("a decoded value fits its own length");
            assert_eq!(out[..len], data[..len], "re-encoding {value:?}");
        }
    }
}
