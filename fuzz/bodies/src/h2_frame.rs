//! `veil_proto::h2::decode` on a run of HTTP/2 frames.
//!
//! Byte 0 picks our `SETTINGS_MAX_FRAME_SIZE` (0: the default 16,384; otherwise 16,384 plus
//! 64 times it, so that some frames are refused as too long); the rest is decoded frame
//! after frame until it ends or an error stops it.
//!
//! - Nothing panics; a decoded frame's length is within the input and equals its
//!   `encoded_len`; `Truncated` asks for more than the input has, and a stream error names a
//!   length within it.
//! - Every decoded frame re-encodes into as many bytes as it came from, and they decode to
//!   an equal frame (padding content and undefined flags are the only things not kept).
//! - Every strict prefix of a decoded frame is `Truncated`, never another verdict.

use veil_proto::Writer;
use veil_proto::h2::{DEFAULT_MAX_FRAME_SIZE, FRAME_HEADER_LEN, Frame, FrameError, decode};

/// Decodes the frames in `data[1..]`.
///
/// # Panics
///
/// When an invariant in the module documentation breaks.
pub fn run(data: &[u8]) {
    let Some((&pick, mut input)) = data.split_first() else {
        return;
    };
    let max_frame_size = DEFAULT_MAX_FRAME_SIZE + 64 * u32::from(pick);
    loop {
        match decode(input, max_frame_size) {
            Ok((used, frame)) => {
                assert!(used <= input.len(), "used {used} of {}", input.len());
                assert_eq!(frame.encoded_len(), used, "{frame:?}");
                reencode(&frame, max_frame_size);
                for cut in [0, 1, FRAME_HEADER_LEN - 1, FRAME_HEADER_LEN, used - 1] {
                    if cut < used {
                        assert!(
                            matches!(
                                decode(&input[..cut], max_frame_size),
                                Err(FrameError::Truncated { needed }) if needed > cut
                            ),
                            "prefix of {cut} of a {used}-byte frame"
                        );
                    }
                }
                input = &input[used..];
            }
            Err(FrameError::Truncated { needed }) => {
                assert!(needed > input.len(), "Truncated with {needed} in hand");
                return;
            }
            Err(FrameError::Stream { frame_len, .. }) => {
                assert!(frame_len <= input.len(), "stream error past the input");
                input = &input[frame_len..];
            }
            Err(FrameError::Connection { .. }) => return,
        }
    }
}

/// The frame encodes into as many bytes as it came from, which decode to it again.
fn reencode(frame: &Frame<'_>, max_frame_size: u32) {
    let mut buf = vec![0; frame.encoded_len()];
    let written = frame
        .encode(&mut Writer::new(&mut buf))
        .expect("a decoded frame re-encodes");
    assert_eq!(written, buf.len());
    let (used, again) = decode(&buf, max_frame_size).expect("a re-encoded frame decodes");
    assert_eq!(used, written);
    assert_eq!(&again, frame);
}
