//! `veil_proto::proxy_protocol` on a connection's first bytes.
//!
//! The decoder keeps no state, so every prefix of the input is a possible "bytes so far":
//! prefixes shorter than a complete header are `Incomplete`, longer ones give the same
//! header and length, and once a prefix is refused every longer one is refused with the
//! same error, so any chunking reaches the same answer. [`detect`] agrees with the decoder.
//! A decoded header re-encodes (v1 with [`V1Line`], v2 with [`V2Encoder`], TLVs and
//! checksum included) into bytes that decode to the same header.

use veil_proto::proxy_protocol::{
    Addresses, DecodeError, Decoded, Detection, Header, V1Line, V2Encoder, Version, decode, detect,
    tlv,
};

/// Decodes every prefix of `data` and re-encodes what decodes.
///
/// # Panics
///
/// When the prefixes disagree or a header does not come back exactly.
pub fn run(data: &[u8]) {
    let whole = decode(data);
    check_detect(data, whole);
    match whole {
        Ok(Decoded::Incomplete) => {
            for end in 0..data.len() {
                assert_eq!(decode(&data[..end]), Ok(Decoded::Incomplete), "at {end}");
            }
        }
        Ok(Decoded::Complete { header, len }) => {
            assert!(len <= data.len());
            for end in 0..len {
                assert_eq!(decode(&data[..end]), Ok(Decoded::Incomplete), "at {end}");
            }
            assert_eq!(decode(&data[..len]), whole, "the header alone");
            reencode(&header);
        }
        Err(error) => {
            let first = (0..=data.len())
                .find(|&end| decode(&data[..end]).is_err())
                .expect("the whole input is refused");
            for end in 0..first {
                assert_eq!(decode(&data[..end]), Ok(Decoded::Incomplete), "at {end}");
            }
            // Every longer prefix; past a few hundred bytes only the input itself, which is
            // enough for a decoder that reads at most one header (and keeps the target fast).
            let ends = (first..=data.len().min(first + 300)).chain([data.len()]);
            for end in ends {
                assert_eq!(decode(&data[..end]), Err(error), "at {end} of {first}..");
            }
        }
    }
}

fn check_detect(data: &[u8], decoded: Result<Decoded<'_>, DecodeError>) {
    match detect(data) {
        Detection::Incomplete => assert_eq!(decoded, Ok(Decoded::Incomplete)),
        Detection::NotProxy => assert_eq!(decoded, Err(DecodeError::NotProxy)),
        Detection::V1 => assert!(!matches!(
            decoded,
            Err(DecodeError::NotProxy | DecodeError::V2(_))
        )),
        Detection::V2 => assert!(!matches!(
            decoded,
            Err(DecodeError::NotProxy | DecodeError::V1(_))
        )),
    }
}

/// Re-encodes `header` in its own version and decodes it again.
fn reencode(header: &Header<'_>) {
    let mut out = vec![0; 64 * 1024 + 64];
    let len = match header.version {
        Version::V1 => {
            assert!(header.tlvs.is_empty());
            assert!(!matches!(header.addresses, Addresses::Unix { .. }));
            let line = V1Line::new(&header.addresses);
            let len = line.encode(&mut out).expect("64 KiB hold a line");
            assert_eq!(len, line.encoded_len());
            len
        }
        Version::V2 => {
            let tlvs: Vec<(u8, &[u8])> = header
                .tlvs
                .iter()
                .filter(|t| t.kind != tlv::CRC32C)
                .map(|t| (t.kind, t.value))
                .collect();
            let encoder = V2Encoder {
                command: header.command,
                transport: header.transport,
                addresses: header.addresses,
                tlvs: &tlvs,
                crc32c: header.tlvs.find(tlv::CRC32C).is_some(),
            };
            let len = encoder
                .encode(&mut out)
                .expect("a decoded header re-encodes");
            assert_eq!(encoder.encoded_len(), Ok(len));
            len
        }
    };
    let Ok(Decoded::Complete {
        header: again,
        len: again_len,
    }) = decode(&out[..len])
    else {
        panic!("re-encoded {header:?} does not decode");
    };
    assert_eq!(again_len, len);
    assert_eq!(again.version, header.version);
    assert_eq!(again.command, header.command);
    assert_eq!(again.transport, header.transport);
    assert_eq!(again.addresses, header.addresses);
    let without_checksum = |h: &Header<'_>| -> Vec<(u8, Vec<u8>)> {
        h.tlvs
            .iter()
            .filter(|t| t.kind != tlv::CRC32C)
            .map(|t| (t.kind, t.value.to_vec()))
            .collect()
    };
    assert_eq!(without_checksum(&again), without_checksum(header));
    assert_eq!(
        again.tlvs.find(tlv::CRC32C).is_some(),
        header.tlvs.find(tlv::CRC32C).is_some()
    );
}
