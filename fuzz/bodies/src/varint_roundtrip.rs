//! `veil_proto::varint`: `decode(encode(x)) == x` for every value and every length.

use arbitrary::{Arbitrary, Unstructured};
use veil_proto::BufferTooSmall;
use veil_proto::varint::{EncodeWithLenError, VarInt, VarIntTooLarge};

#[derive(Debug, Arbitrary)]
struct Input {
    /// The raw value, shifted right by `shift % 64` so that every length gets its share.
    raw: u64,
    shift: u8,
    /// The size of a possibly short output buffer, modulo 9.
    buffer: u8,
}

/// Encodes an arbitrary value in every way and decodes it back.
///
/// # Panics
///
/// When a value does not come back exactly, or an encoder misreports a length.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let raw = input.raw >> (input.shift % 64);
    let value = match VarInt::new(raw) {
        Ok(value) => value,
        Err(e) => {
            assert_eq!(e, VarIntTooLarge(raw));
            assert!(raw > VarInt::MAX.into_inner());
            return;
        }
    };
    let mut out = [0; VarInt::MAX_LEN];
    let len = value.encode(&mut out).expect("8 bytes hold any varint");
    assert_eq!(len, value.encoded_len());
    assert_eq!(VarInt::decode(&out[..len]), Ok((value, len)));
    assert_eq!(u64::from(value), raw);

    for width in [1, 2, 4, 8] {
        match value.encode_with_len(width, &mut out) {
            Ok(()) => {
                assert!(width >= value.encoded_len());
                assert_eq!(VarInt::decode(&out[..width]), Ok((value, width)));
            }
            Err(e) => {
                assert_eq!(e, EncodeWithLenError::TooShort);
                assert!(width < value.encoded_len());
            }
        }
    }

    let available = usize::from(input.buffer % 9);
    match value.encode(&mut out[..available]) {
        Ok(n) => assert_eq!(n, len),
        Err(e) => {
            assert_eq!(
                e,
                BufferTooSmall {
                    needed: len,
                    available
                }
            );
            assert!(available < len);
        }
    }
}
