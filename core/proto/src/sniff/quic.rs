//! The server name in a QUIC client's first Initial packets: the packets are decrypted with
//! the Initial keys anyone can derive from the Destination Connection ID (RFC 9001 §5.2),
//! their CRYPTO frames put back in order, and the `ClientHello` they carry walked to its
//! SNI like a TLS one (the same walk as [`super::sniff`], without the record layer).
//!
//! This lets a router that sees raw UDP (a CONNECT-IP edge) route or refuse HTTP/3 by name
//! without terminating anything: Initial packets are protected against tampering, not
//! against reading.
//!
//! # Use
//!
//! One [`InitialSniffer`] per UDP flow, and one buffer for the `ClientHello`'s bytes
//! ([`CRYPTO_LIMIT`] is enough for every browser's). Call [`InitialSniffer::sniff`] with
//! the flow's first datagram, then with each next one while the answer is
//! [`QuicSniffed::NeedMore`] (a `ClientHello` with post-quantum key shares spans two or
//! more Initial packets); bound the wait yourself (packets, time).
//!
//! # Decisions
//!
//! - **Versions**: QUIC v1 (RFC 9000) and v2 (RFC 9369); they differ only in the Initial
//!   salt, the key labels and the long-header type bits. Another version gives
//!   [`QuicSniffed::Nothing`].
//! - **First packet only.** Of the packets coalesced in a datagram, only the first is read
//!   (a client's Initial comes first; what follows it is 0-RTT or padding).
//! - **Keys** come from the Destination Connection ID of the flow's first Initial, kept for
//!   the later ones: the client keeps using them even once it has switched to the server's
//!   connection ID (RFC 9001 §5.2). After a Retry the keys change, and the sniff fails
//!   (answers `NeedMore` until the caller gives up).
//! - **Authenticated.** A packet whose AEAD tag does not verify is not read: a first one
//!   gives `Nothing`, a later one leaves the state as it was (`NeedMore`), as does a later
//!   datagram that is not an Initial of the same version (0-RTT, say).
//! - **Frames**: PADDING, PING, ACK and CRYPTO, the ones a client's first Initials carry;
//!   any other frame makes the packet, and the flow, `Nothing`. CRYPTO data is copied by
//!   offset into the caller's buffer; bytes beyond its end are dropped (a `ClientHello`
//!   whose name lies beyond gives `Nothing`); out-of-order frames (Chrome shuffles them on
//!   purpose) are tracked as at most [`MAX_GAPS`] + 1 filled ranges.
//! - **Bounded, no panic, no allocation**: the state is a few hundred bytes, decryption is
//!   in place in the caller's datagram (which is garbled afterwards: pass a copy).

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes128Gcm, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;

use super::{Sniffed, tls};
use crate::cursor::Reader;
use crate::varint::VarInt;

/// What a client's Initial packets say so far about the server it wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuicSniffed<'a> {
    /// The `host_name` of the `ClientHello`'s `server_name` extension, a valid DNS name
    /// (the same check as [`Sniffed::TlsServerName`]), borrowed from the caller's buffer.
    ServerName(&'a str),
    /// The `ClientHello` is not complete yet: call again with the flow's next datagram.
    NeedMore,
    /// Not a QUIC v1 or v2 client Initial, or a `ClientHello` without a server name, or
    /// malformed, or too big for the buffer: stop looking.
    Nothing,
}

/// A buffer for a `ClientHello` this long holds every one a browser sends today: Chrome's
/// with an X25519MLKEM768 key share (1 216 bytes of it) and ECH is about 2 KiB.
pub const CRYPTO_LIMIT: usize = 4096;

/// The most holes between the filled ranges of the CRYPTO stream before the sniff gives
/// up: out-of-order frames in two or three packets leave a few at a time.
pub const MAX_GAPS: usize = 15;

//# RFC 9000 §17.2: "Header Form: The most significant bit (0x80) of byte 0 (the first
//# byte) is set to 1 for long headers."
const LONG_HEADER: u8 = 0x80;
//# RFC 9000 §17.2: "This length is encoded as an 8-bit unsigned integer. In QUIC version
//# 1, this value MUST NOT exceed 20 bytes."
const MAX_CID_LEN: usize = 20;
//# RFC 9000 §7.2: "This Destination Connection ID MUST be at least 8 bytes in length."
const MIN_CLIENT_DCID_LEN: usize = 8;
//# RFC 9001 §5.4.2: "in sampling packet ciphertext for header protection, the Packet
//# Number field is assumed to be 4 bytes long"
const SAMPLE_OFFSET: usize = 4;
const SAMPLE_LEN: usize = 16;
const TAG_LEN: usize = 16;

/// The QUIC versions whose Initials this reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

impl Version {
    fn from_wire(version: u32) -> Option<Self> {
        match version {
            0x0000_0001 => Some(Self::V1),
            //# RFC 9369 §3.1: "The Version field of long headers is 0x6b3343cf."
            0x6b33_43cf => Some(Self::V2),
            _ => None,
        }
    }

    /// The long-header packet type of an Initial.
    fn initial_type(self) -> u8 {
        match self {
            //# RFC 9000 §17.2: "0x00 | Initial"
            Self::V1 => 0b00,
            //# RFC 9369 §3.2: "Initial: 0b01"
            Self::V2 => 0b01,
        }
    }

    fn salt(self) -> &'static [u8; 20] {
        match self {
            //# RFC 9001 §5.2: initial_salt = 0x38762cf7f55934b34d179ae6a4c80cadccbb7f0a
            Self::V1 => &[
                0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8,
                0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a,
            ],
            //# RFC 9369 §3.3.1: "The salt used to derive Initial keys in Section 5.2 of
            //# [QUIC-TLS] changes to: initial_salt = 0x0dede3def700a6db819381be6e269dcbf9bd2ed9"
            Self::V2 => &[
                0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26,
                0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9,
            ],
        }
    }

    /// The labels of the packet protection key, IV and header protection key.
    fn labels(self) -> [&'static [u8]; 3] {
        match self {
            Self::V1 => [b"quic key", b"quic iv", b"quic hp"],
            //# RFC 9369 §3.3.2: "The labels used in [QUIC-TLS] to derive packet protection
            //# keys (Section 5.1), header protection keys (Section 5.4), [...] change from
            //# "quic key" to "quicv2 key", from "quic iv" to "quicv2 iv", from "quic hp" to
            //# "quicv2 hp""
            Self::V2 => [b"quicv2 key", b"quicv2 iv", b"quicv2 hp"],
        }
    }
}

/// A client's Initial packet protection keys.
struct Keys {
    key: [u8; 16],
    iv: [u8; 12],
    hp: [u8; 16],
}

impl Keys {
    //# RFC 9001 §5.2:
    //# initial_secret = HKDF-Extract(initial_salt, client_dst_connection_id)
    //# client_initial_secret = HKDF-Expand-Label(initial_secret, "client in", "", Hash.length)
    fn client_initial(version: Version, dcid: &[u8]) -> Option<Self> {
        let initial = Hkdf::<Sha256>::new(Some(version.salt()), dcid);
        let mut secret = [0; 32];
        expand_label(&initial, b"client in", &mut secret)?;
        let client = Hkdf::<Sha256>::from_prk(&secret).ok()?;
        let [key_label, iv_label, hp_label] = version.labels();
        let mut keys = Keys {
            key: [0; 16],
            iv: [0; 12],
            hp: [0; 16],
        };
        expand_label(&client, key_label, &mut keys.key)?;
        expand_label(&client, iv_label, &mut keys.iv)?;
        expand_label(&client, hp_label, &mut keys.hp)?;
        Some(keys)
    }
}

/// TLS 1.3's HKDF-Expand-Label with an empty context.
//# RFC 8446 §7.1:
//# struct {
//#     uint16 length = Length;
//#     opaque label<7..255> = "tls13 " + Label;
//#     opaque context<0..255> = Context;
//# } HkdfLabel;
fn expand_label(prk: &Hkdf<Sha256>, label: &[u8], out: &mut [u8]) -> Option<()> {
    let length = u16::try_from(out.len()).ok()?.to_be_bytes();
    let label_len = [u8::try_from(b"tls13 ".len() + label.len()).ok()?];
    prk.expand_multi_info(&[&length, &label_len, b"tls13 ", label, &[0]], out)
        .ok()
}

/// The ranges of the CRYPTO stream received so far: sorted, disjoint and not touching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Filled {
    ranges: [(usize, usize); MAX_GAPS + 1],
    len: usize,
}

impl Filled {
    const EMPTY: Self = Self {
        ranges: [(0, 0); MAX_GAPS + 1],
        len: 0,
    };

    /// Adds `start..end` (not empty), merging; `None` when that would need more ranges
    /// than there is room for.
    fn insert(&mut self, mut start: usize, mut end: usize) -> Option<()> {
        let mut merged = Self::EMPTY;
        let mut placed = false;
        for &(a, b) in self.ranges.get(..self.len)? {
            if b < start {
                merged.push(a, b)?;
            } else if end < a {
                if !placed {
                    merged.push(start, end)?;
                    placed = true;
                }
                merged.push(a, b)?;
            } else {
                start = start.min(a);
                end = end.max(b);
            }
        }
        if !placed {
            merged.push(start, end)?;
        }
        *self = merged;
        Some(())
    }

    fn push(&mut self, start: usize, end: usize) -> Option<()> {
        *self.ranges.get_mut(self.len)? = (start, end);
        self.len += 1;
        Some(())
    }

    /// How many bytes from offset 0 are in.
    fn contiguous(&self) -> usize {
        match self.ranges.first() {
            Some(&(0, end)) if self.len > 0 => end,
            _ => 0,
        }
    }
}

/// What one UDP flow's Initials have given so far: the version and connection ID that
/// key them, and which bytes of the CRYPTO stream are in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitialSniffer {
    /// Set by the flow's first Initial.
    version: Option<Version>,
    dcid: [u8; MAX_CID_LEN],
    dcid_len: usize,
    filled: Filled,
}

impl Default for InitialSniffer {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a packet was not read.
enum Skip {
    /// Not an Initial this sniffer can read (or not authentic): the flow is not QUIC, or
    /// this datagram is another packet of it.
    NotInitial,
    /// An authentic Initial that breaks the rules: the flow is done.
    Malformed,
}

impl InitialSniffer {
    /// A sniffer that has seen nothing.
    pub const fn new() -> Self {
        Self {
            version: None,
            dcid: [0; MAX_CID_LEN],
            dcid_len: 0,
            filled: Filled::EMPTY,
        }
    }

    /// Reads one datagram of the flow (decrypting its first packet **in place**) and
    /// collects its CRYPTO data into `crypto`, which must be the same buffer, unchanged,
    /// on every call for the flow (at most its first [`CRYPTO_LIMIT`] bytes are useful).
    pub fn sniff<'b>(&mut self, datagram: &mut [u8], crypto: &'b mut [u8]) -> QuicSniffed<'b> {
        let first = self.version.is_none();
        match self.read_packet(datagram, crypto) {
            Ok(()) => {}
            Err(Skip::NotInitial) if !first => return QuicSniffed::NeedMore,
            Err(_) => return QuicSniffed::Nothing,
        }
        let crypto: &'b [u8] = crypto;
        let have = self.filled.contiguous().min(crypto.len());
        match tls::sniff_handshake(crypto.get(..have).unwrap_or_default()) {
            Sniffed::TlsServerName(name) => QuicSniffed::ServerName(name),
            Sniffed::NeedMore if have < crypto.len() => QuicSniffed::NeedMore,
            _ => QuicSniffed::Nothing,
        }
    }

    /// Decrypts the datagram's first packet if it is a client Initial of this flow, and
    /// copies its CRYPTO data into `crypto`. The state changes only when it is.
    fn read_packet(&mut self, datagram: &mut [u8], crypto: &mut [u8]) -> Result<(), Skip> {
        let header = parse_header(datagram).ok_or(Skip::NotInitial)?;
        let dcid = match self.version {
            None if header.dcid.len() < MIN_CLIENT_DCID_LEN => return Err(Skip::NotInitial),
            None => datagram.get(header.dcid.clone()),
            Some(version) if version != header.version => return Err(Skip::NotInitial),
            Some(_) => self.dcid.get(..self.dcid_len),
        };
        let keys = dcid
            .and_then(|dcid| Keys::client_initial(header.version, dcid))
            .ok_or(Skip::NotInitial)?;
        let payload = decrypt(datagram, &header, &keys).ok_or(Skip::NotInitial)?;
        // Authentic from here on: the flow is QUIC.
        if self.version.is_none() {
            let id = datagram.get(header.dcid.clone()).ok_or(Skip::NotInitial)?;
            self.dcid
                .get_mut(..id.len())
                .ok_or(Skip::NotInitial)?
                .copy_from_slice(id);
            self.dcid_len = id.len();
            self.version = Some(header.version);
        }
        let payload = datagram.get(payload).ok_or(Skip::Malformed)?;
        collect_crypto(payload, crypto, &mut self.filled).ok_or(Skip::Malformed)
    }
}

/// Where the fields of a long-header Initial lie in its datagram.
struct Header {
    version: Version,
    dcid: core::ops::Range<usize>,
    /// The protected packet number's offset.
    pn_offset: usize,
    /// The end of the packet (its Length field's end), within the datagram.
    end: usize,
}

//# RFC 9000 §17.2.2:
//# Initial Packet {
//#   Header Form (1) = 1,
//#   Fixed Bit (1) = 1,
//#   Long Packet Type (2) = 0,
//#   Reserved Bits (2),
//#   Packet Number Length (2),
//#   Version (32),
//#   Destination Connection ID Length (8),
//#   Destination Connection ID (0..160),
//#   Source Connection ID Length (8),
//#   Source Connection ID (0..160),
//#   Token Length (i),
//#   Token (..),
//#   Length (i),
//#   Packet Number (8..32),
//#   Packet Payload (8..),
//# }
fn parse_header(datagram: &[u8]) -> Option<Header> {
    let mut reader = Reader::new(datagram);
    let first = reader.u8().ok()?;
    if first & LONG_HEADER == 0 {
        return None;
    }
    let version = Version::from_wire(reader.u32().ok()?)?;
    if (first >> 4) & 0b11 != version.initial_type() {
        return None;
    }
    let dcid_len = usize::from(reader.u8().ok()?);
    if dcid_len > MAX_CID_LEN {
        return None;
    }
    let dcid_start = reader.position();
    reader.bytes(dcid_len).ok()?;
    let scid_len = usize::from(reader.u8().ok()?);
    if scid_len > MAX_CID_LEN {
        return None;
    }
    reader.bytes(scid_len).ok()?;
    let token_len = usize::try_from(reader.varint().ok()?.into_inner()).ok()?;
    reader.bytes(token_len).ok()?;
    let length = usize::try_from(reader.varint().ok()?.into_inner()).ok()?;
    let pn_offset = reader.position();
    // The packet must hold the sample and the tag: a datagram cut short is not read.
    if length < SAMPLE_OFFSET + SAMPLE_LEN || length > reader.remaining() {
        return None;
    }
    Some(Header {
        version,
        dcid: dcid_start..dcid_start + dcid_len,
        pn_offset,
        end: pn_offset + length,
    })
}

/// Removes header protection and decrypts the packet in place; the payload's place in the
/// datagram, or `None` when the tag does not verify (the header is garbled then).
fn decrypt(datagram: &mut [u8], header: &Header, keys: &Keys) -> Option<core::ops::Range<usize>> {
    //# RFC 9001 §5.4.2: "sample_offset = pn_offset + 4"
    let sample_at = header.pn_offset + SAMPLE_OFFSET;
    let sample = datagram.get(sample_at..sample_at + SAMPLE_LEN)?;
    //# RFC 9001 §5.4.3: "header_protection(hp_key, sample): mask = AES-ECB(hp_key, sample)"
    let mut mask = GenericArray::clone_from_slice(sample);
    Aes128::new(GenericArray::from_slice(&keys.hp)).encrypt_block(&mut mask);
    //# RFC 9001 §5.4.1:
    //# if (packet[0] & 0x80) == 0x80:
    //#    # Long header: 4 bits masked
    //#    packet[0] ^= mask[0] & 0x0f
    //# ...
    //# pn_length = (packet[0] & 0x03) + 1
    //# packet[pn_offset:pn_offset+pn_length] ^= mask[1:1+pn_length]
    let first = datagram.first_mut()?;
    *first ^= mask.first()? & 0x0f;
    let pn_len = usize::from(*first & 0x03) + 1;
    let mut pn: u64 = 0;
    for i in 0..pn_len {
        let byte = datagram.get_mut(header.pn_offset + i)?;
        *byte ^= mask.get(1 + i)?;
        pn = (pn << 8) | u64::from(*byte);
    }
    // A client's first packet numbers are small: the truncated number is the full one
    // (RFC 9000 §A.3 with no packet received yet).
    //# RFC 9001 §5.3: "The 62 bits of the reconstructed QUIC packet number in network byte
    //# order are left-padded with zeros to the size of the IV. The exclusive OR of the
    //# padded packet number and the IV forms the AEAD nonce."
    let mut nonce = keys.iv;
    for (n, p) in nonce.iter_mut().skip(4).zip(pn.to_be_bytes()) {
        *n ^= p;
    }
    //# RFC 9001 §5.3: "The associated data, A, for the AEAD is the contents of the QUIC
    //# header, starting from the first byte of either the short or long header, up to and
    //# including the unprotected packet number."
    let payload_at = header.pn_offset + pn_len;
    let packet = datagram.get_mut(..header.end)?;
    let (aad, body) = packet.split_at_mut_checked(payload_at)?;
    let tag_at = body.len().checked_sub(TAG_LEN)?;
    let (ciphertext, tag) = body.split_at_mut(tag_at);
    Aes128Gcm::new(GenericArray::from_slice(&keys.key))
        .decrypt_in_place_detached(
            Nonce::from_slice(&nonce),
            aad,
            ciphertext,
            Tag::from_slice(tag),
        )
        .ok()?;
    //# RFC 9000 §17.2: "The value included prior to protection MUST be set to 0. An
    //# endpoint MUST treat receipt of a packet that has a non-zero value for these bits
    //# after removing both packet and header protection as a connection error"
    if datagram.first()? & 0x0c != 0 {
        return None;
    }
    Some(payload_at..payload_at + tag_at)
}

/// Walks a decrypted Initial's frames and copies its CRYPTO data into `crypto`; `None`
/// for a frame an Initial from a client does not carry, or a malformed one.
fn collect_crypto(payload: &[u8], crypto: &mut [u8], filled: &mut Filled) -> Option<()> {
    let mut reader = Reader::new(payload);
    let varint = |reader: &mut Reader<'_>| reader.varint().ok().map(VarInt::into_inner);
    while !reader.is_empty() {
        match varint(&mut reader)? {
            //# RFC 9000 §19.1: "A PADDING frame (type=0x00) has no semantic value."
            //# RFC 9000 §19.2: "PING Frame { Type (i) = 0x01, }"
            0x00 | 0x01 => {}
            //# RFC 9000 §19.3:
            //# ACK Frame {
            //#   Type (i) = 0x02..0x03,
            //#   Largest Acknowledged (i),
            //#   ACK Delay (i),
            //#   ACK Range Count (i),
            //#   First ACK Range (i),
            //#   ACK Range (..) ...,
            //#   [ECN Counts (..)],
            //# }
            kind @ (0x02 | 0x03) => {
                varint(&mut reader)?;
                varint(&mut reader)?;
                let ranges = varint(&mut reader)?;
                varint(&mut reader)?;
                // Each range is two varints, at least two bytes: the payload bounds this.
                for _ in 0..ranges {
                    varint(&mut reader)?;
                    varint(&mut reader)?;
                }
                if kind == 0x03 {
                    for _ in 0..3 {
                        varint(&mut reader)?;
                    }
                }
            }
            //# RFC 9000 §19.6:
            //# CRYPTO Frame {
            //#   Type (i) = 0x06,
            //#   Offset (i),
            //#   Length (i),
            //#   Crypto Data (..),
            //# }
            0x06 => {
                let offset = usize::try_from(varint(&mut reader)?).ok()?;
                let len = usize::try_from(varint(&mut reader)?).ok()?;
                let data = reader.bytes(len).ok()?;
                store(offset, data, crypto, filled)?;
            }
            //# RFC 9000 §17.2.2: "The payload of an Initial packet includes a CRYPTO frame
            //# (or frames) containing a cryptographic handshake message, ACK frames, or
            //# both. PING, PADDING, and CONNECTION_CLOSE frames of type 0x1c are also
            //# permitted."
            // CONNECTION_CLOSE, with a ClientHello still to come, ends the flow too.
            _ => return None,
        }
    }
    Some(())
}

/// Copies CRYPTO data at `offset` into `crypto`, dropping what lies beyond its end.
fn store(offset: usize, data: &[u8], crypto: &mut [u8], filled: &mut Filled) -> Option<()> {
    let end = offset.checked_add(data.len())?.min(crypto.len());
    if data.is_empty() || offset >= end {
        return Some(());
    }
    let room = crypto.get_mut(offset..end)?;
    room.copy_from_slice(data.get(..end - offset)?);
    filled.insert(offset, end)
}

#[cfg(test)]
mod tests;
