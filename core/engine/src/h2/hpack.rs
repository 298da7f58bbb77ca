//! HPACK (RFC 7541) through `loona-hpack`, with our memory bounds around it.

use loona_hpack::{Decoder, Encoder, encoder::encode_integer_into};

/// The dynamic table size both directions use at most: the protocol's default, which we
/// announce as our `SETTINGS_HEADER_TABLE_SIZE` and never exceed when encoding.
pub(super) const TABLE_SIZE: usize = 4096;

/// A header list, in order.
pub(super) type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;

/// What a header block decoded to.
#[derive(Debug)]
pub(super) enum Decoded {
    /// The list, within the limit.
    List(HeaderList),
    /// The list grew past the limit; nothing of it was kept.
    TooLarge,
}

/// The block is not valid HPACK: a connection error of type `COMPRESSION_ERROR`.
#[derive(Debug, Clone, Copy)]
pub(super) struct CompressionError;

/// The connection's two HPACK contexts.
pub(super) struct HeaderCodec {
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
    /// The encoder's current dynamic table size.
    encoder_table: usize,
    /// Table size updates to signal at the start of our next block: the smallest size
    /// since the last block, then the current one (RFC 7541 §4.2).
    pending_update: Option<(usize, usize)>,
}

impl std::fmt::Debug for HeaderCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderCodec")
            .field("encoder_table", &self.encoder_table)
            .finish_non_exhaustive()
    }
}

impl HeaderCodec {
    pub(super) fn new() -> Self {
        let mut decoder = Decoder::new();
        // A peer's table size update above what we announced is a decoding error, so the
        // dynamic table never holds more than TABLE_SIZE.
        decoder.set_max_allowed_table_size(TABLE_SIZE);
        Self {
            decoder,
            encoder: Encoder::new(),
            encoder_table: TABLE_SIZE,
            pending_update: None,
        }
    }

    /// Decodes a whole header block, keeping at most `max_list_size` (RFC 9113 §6.5.2
    /// counting).
    ///
    /// The whole block is always decoded, also past the limit, because the dynamic table
    /// must see every entry the peer's encoder added; past the limit nothing is copied, so
    /// a small block referencing a large table entry many times (an HPACK bomb) costs
    /// time bounded by the block's length and no memory.
    //# RFC 9113 §4.3: "A receiver MUST terminate the connection with a connection error
    //# (Section 5.4.1) of type COMPRESSION_ERROR if it does not decompress a field block."
    pub(super) fn decode(
        &mut self,
        block: &[u8],
        max_list_size: usize,
    ) -> Result<Decoded, CompressionError> {
        let mut list = Vec::new();
        let mut size = 0usize;
        let mut too_large = false;
        self.decoder
            .decode_with_cb(block, |name, value| {
                if too_large {
                    return;
                }
                //# RFC 9113 §6.5.2: "The value is based on the uncompressed size of field
                //# lines, including the length of the name and value in octets plus an
                //# overhead of 32 octets for each field line."
                size = size.saturating_add(name.len() + value.len() + 32);
                if size > max_list_size {
                    too_large = true;
                    list = Vec::new();
                    return;
                }
                list.push((name.into_owned(), value.into_owned()));
            })
            .map_err(|_| CompressionError)?;
        Ok(if too_large {
            Decoded::TooLarge
        } else {
            Decoded::List(list)
        })
    }

    /// The peer's `SETTINGS_HEADER_TABLE_SIZE`: our encoder's table shrinks to fit it (and
    /// never grows past [`TABLE_SIZE`]); the change is signalled in our next block.
    pub(super) fn set_peer_table_size(&mut self, size: u32) {
        let size = usize::try_from(size).map_or(TABLE_SIZE, |s| s.min(TABLE_SIZE));
        if size == self.encoder_table && self.pending_update.is_none() {
            return;
        }
        self.encoder.set_max_table_size(size);
        self.encoder_table = size;
        let smallest = self.pending_update.map_or(size, |(min, _)| min.min(size));
        self.pending_update = Some((smallest, size));
    }

    /// Encodes a header list into one block.
    //# RFC 7541 §4.2: "This dynamic table size update MUST occur at the beginning of the
    //# first header block following the change to the dynamic table size."
    pub(super) fn encode(&mut self, headers: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut block = Vec::new();
        if let Some((smallest, current)) = self.pending_update.take() {
            let mut sizes = vec![smallest];
            if current != smallest {
                sizes.push(current);
            }
            for size in sizes {
                // Writing into a Vec cannot fail.
                let _ = encode_integer_into(size, 5, 0x20, &mut block);
            }
        }
        let _ = self
            .encoder
            .encode_into(headers.iter().copied(), &mut block);
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_table_size_update() {
        let mut ours = HeaderCodec::new();
        let mut theirs = HeaderCodec::new();
        let headers: [(&[u8], &[u8]); 2] = [(b":method", b"CONNECT"), (b":authority", b"a:1")];
        let block = ours.encode(&headers);
        let Ok(Decoded::List(list)) = theirs.decode(&block, 1000) else {
            panic!("decodes");
        };
        assert_eq!(list.len(), 2);
        ours.set_peer_table_size(0);
        ours.set_peer_table_size(100);
        let block = ours.encode(&headers);
        assert_eq!(&block[..2], &[0x20, 0x3f], "0, then 100 on a 5-bit prefix");
        assert!(matches!(theirs.decode(&block, 1000), Ok(Decoded::List(_))));
    }

    #[test]
    fn a_bomb_is_decoded_but_not_kept() {
        let mut peer = Encoder::new();
        // One 4000-byte value in the table, then 1000 one-byte references to it.
        let value = vec![b'x'; 4000];
        let mut block = peer.encode([(&b"bomb"[..], &value[..])]);
        block.extend(std::iter::repeat_n(0x80 | 0x3e, 1000));
        let mut codec = HeaderCodec::new();
        assert!(matches!(
            codec.decode(&block, 16 << 10),
            Ok(Decoded::TooLarge)
        ));
        // The table still holds the entry: the next block that references it decodes.
        assert!(
            matches!(codec.decode(&[0x80 | 0x3e], 16 << 10), Ok(Decoded::List(l)) if l.len() == 1)
        );
    }

    #[test]
    fn table_size_above_ours_is_a_compression_error() {
        let mut codec = HeaderCodec::new();
        // Size update to 4097, then an indexed field.
        assert!(codec.decode(&[0x3f, 0xe2, 0x1f, 0x82], 100).is_err());
    }
}
