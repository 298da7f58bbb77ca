//! The demo's bodies: a deterministic byte pattern that both ends can regenerate at any
//! offset, and SHA-256 digests to compare what arrived with what was sent.

use boring::sha::Sha256;

/// Fills `buf` with the pattern's bytes starting at `offset`.
///
/// Each aligned 8-byte block is `splitmix64(block index)`, little-endian: cheap, and no
/// two blocks of a transfer repeat, so a misplaced or duplicated chunk changes the digest.
pub fn fill_pattern(offset: u64, buf: &mut [u8]) {
    let mut position = offset;
    let mut rest = buf;
    while !rest.is_empty() {
        let word = splitmix64(position / 8).to_le_bytes();
        // `position % 8` is below 8: the conversion is lossless.
        #[allow(clippy::cast_possible_truncation)]
        let skip = (position % 8) as usize;
        let take = (8 - skip).min(rest.len());
        let (head, tail) = rest.split_at_mut(take);
        head.copy_from_slice(word.get(skip..skip + take).unwrap_or_default());
        rest = tail;
        position += take as u64;
    }
}

/// SHA-256 of the first `len` bytes of the pattern.
pub fn pattern_digest(len: u64) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    let mut offset = 0;
    while offset < len {
        let take = usize::try_from((len - offset).min(64 * 1024)).unwrap_or(64 * 1024);
        let chunk = buf.get_mut(..take).unwrap_or_default();
        fill_pattern(offset, chunk);
        hasher.update(chunk);
        offset += take as u64;
    }
    hasher.finish()
}

/// Lowercase hex of a digest.
pub fn hex(digest: &[u8]) -> String {
    use std::fmt::Write as _;
    digest.iter().fold(String::new(), |mut text, b| {
        // Writing to a String cannot fail.
        let _ = write!(text, "{b:02x}");
        text
    })
}

/// `SplitMix64`'s output function of `index`: well-mixed 64 bits for each index (also the
/// bench's delay line's coin).
pub(crate) fn splitmix64(index: u64) -> u64 {
    let mut z = index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_is_the_same_in_any_chunking() {
        let mut whole = vec![0; 1000];
        fill_pattern(0, &mut whole);
        let mut pieces = vec![0; 1000];
        for (start, end) in [(0, 3), (3, 11), (11, 512), (512, 1000)] {
            fill_pattern(start as u64, &mut pieces[start..end]);
        }
        assert_eq!(whole, pieces);
        assert_ne!(whole[..8], whole[8..16]);
    }

    #[test]
    fn digests_depend_on_the_length() {
        assert_eq!(pattern_digest(100_000), pattern_digest(100_000));
        assert_ne!(pattern_digest(100_000), pattern_digest(100_001));
        assert_eq!(
            hex(&pattern_digest(0)),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
