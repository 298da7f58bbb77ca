//! How the incremental-decoder targets read a chunking out of their input.
//!
//! ```text
//! byte 0        high nibble: target flags (a configuration choice)
//!               low nibble:  n, the number of chunk-size bytes that follow
//! bytes 1..=n   chunk sizes, used in turn and cycled; a size byte of 0 means 1
//! the rest      the stream
//! ```
//!
//! With `n = 0` the stream is fed one byte at a time, the hardest chunking. Seeds written by
//! `fuzz/seed.py` start with `0x00` (one byte at a time) or a few sizes.

/// A stream and the chunking to feed it in.
#[derive(Debug, Clone, Copy)]
pub struct Chunked<'a> {
    /// The high nibble of byte 0, for the target to interpret.
    pub flags: u8,
    sizes: &'a [u8],
    /// The bytes to decode.
    pub stream: &'a [u8],
}

impl<'a> Chunked<'a> {
    /// Splits `data` as the module documentation says; `None` if it is too short for its
    /// own size bytes.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (&first, rest) = data.split_first()?;
        let count = usize::from(first & 0x0f);
        let (sizes, stream) = rest.split_at_checked(count)?;
        Some(Self {
            flags: first >> 4,
            sizes,
            stream,
        })
    }

    /// The stream cut into chunks: never empty ones, and together exactly the stream.
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        if self.sizes.is_empty() {
            split(self.stream, &[1])
        } else {
            split(self.stream, self.sizes)
        }
    }

    /// The growing prefixes a caller that keeps one buffer would see after each chunk.
    pub fn prefix_lens(&self) -> Vec<usize> {
        let mut total = 0;
        self.chunks()
            .iter()
            .map(|chunk| {
                total += chunk.len();
                total
            })
            .collect()
    }
}

/// Cuts `stream` into chunks of the given sizes, cycled (a size of 0 means 1); with no
/// sizes, into one piece. The round-trip targets take their sizes from `arbitrary`.
pub fn split<'a>(stream: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = stream;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = sizes.next().map_or(rest.len(), |&s| usize::from(s).max(1));
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        out.push(chunk);
        rest = tail;
    }
    out
}
