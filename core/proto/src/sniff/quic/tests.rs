use std::vec::Vec;

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes128Gcm, Nonce};

use super::{CRYPTO_LIMIT, InitialSniffer, Keys, MAX_GAPS, QuicSniffed, Version};

/// RFC 9001 Appendix A.2: the client's first Initial, 1200 bytes, protected with the keys
/// of DCID 0x8394c8f03e515708; its `ClientHello` asks for `example.com`.
const RFC9001_A2: &[u8] = include_bytes!("../testdata/rfc9001-a2-client-initial.bin");

/// curl's `ClientHello` for `api.example.org` (512 bytes), without its TLS record header.
fn curl_hello() -> &'static [u8] {
    include_bytes!("../testdata/curl-client-hello.bin")
        .get(5..)
        .unwrap_or_default()
}

const DCID: &[u8] = &[0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

fn sniff_once(datagram: &[u8]) -> QuicSniffed<'static> {
    let crypto = std::boxed::Box::leak(std::vec![0; CRYPTO_LIMIT].into_boxed_slice());
    InitialSniffer::new().sniff(&mut datagram.to_vec(), crypto)
}

/// One CRYPTO frame.
fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
    let mut frame = std::vec![0x06];
    for value in [offset, data.len()] {
        // Two-byte varints are enough for these tests.
        let value = u16::try_from(value).expect("small") | 0x4000;
        frame.extend_from_slice(&value.to_be_bytes());
    }
    frame.extend_from_slice(data);
    frame
}

/// A client Initial with these frames, padded to 1200 bytes, protected as RFC 9001 §5
/// says (the inverse of what the sniffer does), with a 2-byte packet number.
fn seal(version: Version, dcid: &[u8], pn: u16, frames: &[u8]) -> Vec<u8> {
    seal_as(version, dcid, dcid, pn, frames)
}

/// [`seal`] with the keys of `key_dcid` and `dcid` in the header.
fn seal_as(version: Version, key_dcid: &[u8], dcid: &[u8], pn: u16, frames: &[u8]) -> Vec<u8> {
    let keys = Keys::client_initial(version, key_dcid).expect("keys");
    let wire_version: u32 = match version {
        Version::V1 => 1,
        Version::V2 => 0x6b33_43cf,
    };
    let mut payload = frames.to_vec();
    payload.resize(1150, 0); // PADDING
    let length = 2 + payload.len() + 16;
    let mut packet = std::vec![0xc0 | (version.initial_type() << 4) | 0x01];
    packet.extend_from_slice(&wire_version.to_be_bytes());
    packet.push(u8::try_from(dcid.len()).expect("short"));
    packet.extend_from_slice(dcid);
    packet.extend_from_slice(&[0, 0]); // no source connection ID, no token
    packet.extend_from_slice(&(u16::try_from(length).expect("fits") | 0x4000).to_be_bytes());
    let pn_offset = packet.len();
    packet.extend_from_slice(&pn.to_be_bytes());
    let mut nonce = keys.iv;
    for (n, p) in nonce.iter_mut().skip(4).zip(u64::from(pn).to_be_bytes()) {
        *n ^= p;
    }
    let tag = Aes128Gcm::new(GenericArray::from_slice(&keys.key))
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), &packet, &mut payload)
        .expect("seal");
    packet.extend_from_slice(&payload);
    packet.extend_from_slice(&tag);
    let mut mask = GenericArray::clone_from_slice(&packet[pn_offset + 4..pn_offset + 20]);
    Aes128::new(GenericArray::from_slice(&keys.hp)).encrypt_block(&mut mask);
    packet[0] ^= mask[0] & 0x0f;
    packet[pn_offset] ^= mask[1];
    packet[pn_offset + 1] ^= mask[2];
    packet
}

#[test]
fn rfc9001_client_initial_gives_its_server_name() {
    assert_eq!(
        sniff_once(RFC9001_A2),
        QuicSniffed::ServerName("example.com")
    );
}

#[test]
fn rfc9001_keys_match_appendix_a1() {
    //# RFC 9001 §A.1: key = 1f369613dd76d5467730efcbe3b1a22d, iv = fa044b2f42a3fd3b46fb255c,
    //# hp = 9f50449e04a0e810283a1e9933adedd2
    let keys = Keys::client_initial(Version::V1, DCID).expect("keys");
    assert_eq!(
        keys.key,
        0x1f36_9613_dd76_d546_7730_efcb_e3b1_a22d_u128.to_be_bytes()
    );
    assert_eq!(
        keys.hp,
        0x9f50_449e_04a0_e810_283a_1e99_33ad_edd2_u128.to_be_bytes()
    );
    assert_eq!(
        keys.iv[..],
        0xfa04_4b2f_42a3_fd3b_46fb_255c_u128.to_be_bytes()[4..]
    );
}

#[test]
fn a_damaged_or_cut_initial_gives_nothing() {
    for len in [0, 1, 5, 6, 14, 17, 22, 40, 600, 1199] {
        assert_eq!(
            sniff_once(&RFC9001_A2[..len]),
            QuicSniffed::Nothing,
            "{len} bytes"
        );
    }
    for at in [0, 1, 5, 6, 18, 19, 30, 500, 1199] {
        let mut damaged = RFC9001_A2.to_vec();
        damaged[at] ^= 0x40;
        assert_eq!(
            sniff_once(&damaged),
            QuicSniffed::Nothing,
            "byte {at} flipped"
        );
    }
}

#[test]
fn other_packets_and_versions_give_nothing() {
    // A short header, another version, a version negotiation, another long type.
    let mut short = RFC9001_A2.to_vec();
    short[0] = 0x40;
    let mut draft29 = RFC9001_A2.to_vec();
    draft29[1..5].copy_from_slice(&0xff00_001d_u32.to_be_bytes());
    let mut negotiation = RFC9001_A2.to_vec();
    negotiation[1..5].copy_from_slice(&[0; 4]);
    let mut handshake = RFC9001_A2.to_vec();
    handshake[0] = 0xe0;
    for datagram in [short, draft29, negotiation, handshake] {
        assert_eq!(sniff_once(&datagram), QuicSniffed::Nothing);
    }
    // A DNS query, a TLS record, random bytes.
    assert_eq!(
        sniff_once(b"\x12\x34\x01\x00\x00\x01\x00\x00"),
        QuicSniffed::Nothing
    );
    assert_eq!(
        sniff_once(include_bytes!("../testdata/curl-client-hello.bin")),
        QuicSniffed::Nothing
    );
    // A client's DCID is at least 8 bytes.
    let frames = crypto_frame(0, curl_hello());
    assert_eq!(
        sniff_once(&seal(Version::V1, &DCID[..7], 0, &frames)),
        QuicSniffed::Nothing
    );
}

#[test]
fn quic_v2_initials_are_read_too() {
    let frames = crypto_frame(0, curl_hello());
    let packet = seal(Version::V2, DCID, 0, &frames);
    assert_eq!(
        sniff_once(&packet),
        QuicSniffed::ServerName("api.example.org")
    );
    // v1 keys, v2 header: the tag does not verify.
    let mut mixed = seal(Version::V1, DCID, 0, &frames);
    mixed[0] = (mixed[0] & 0xcf) | 0x10;
    mixed[1..5].copy_from_slice(&0x6b33_43cf_u32.to_be_bytes());
    assert_eq!(sniff_once(&mixed), QuicSniffed::Nothing);
}

#[test]
fn a_client_hello_over_two_packets_is_reassembled() {
    let hello = curl_hello();
    let name_end = hello
        .windows(15)
        .position(|w| w == b"api.example.org")
        .expect("name")
        + 15;
    let cut = name_end - 4; // the name itself is split
    let first = seal(Version::V1, DCID, 0, &crypto_frame(0, &hello[..cut]));
    // The second packet: ACK, PING, the rest in two frames out of order.
    let mut frames = std::vec![0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
    frames.extend(crypto_frame(cut + 2, &hello[cut + 2..]));
    frames.extend(crypto_frame(cut, &hello[cut..cut + 2]));
    let second = seal(Version::V1, DCID, 1, &frames);

    let mut crypto = [0; CRYPTO_LIMIT];
    let mut sniffer = InitialSniffer::new();
    assert_eq!(
        sniffer.sniff(&mut first.clone(), &mut crypto),
        QuicSniffed::NeedMore
    );
    // A later datagram that is not an Initial (0-RTT, or garbage) changes nothing.
    let mut other = second.clone();
    other[0] = 0xd0;
    assert_eq!(
        sniffer.sniff(&mut other, &mut crypto),
        QuicSniffed::NeedMore
    );
    assert_eq!(
        sniffer.sniff(&mut [0x40, 1, 2], &mut crypto),
        QuicSniffed::NeedMore
    );
    assert_eq!(
        sniffer.sniff(&mut second.clone(), &mut crypto),
        QuicSniffed::ServerName("api.example.org")
    );

    // The same, second packet first: the name comes once the start is in.
    let mut crypto = [0; CRYPTO_LIMIT];
    let mut sniffer = InitialSniffer::new();
    assert_eq!(
        sniffer.sniff(&mut second.clone(), &mut crypto),
        QuicSniffed::NeedMore
    );
    assert_eq!(
        sniffer.sniff(&mut first.clone(), &mut crypto),
        QuicSniffed::ServerName("api.example.org")
    );
}

#[test]
fn later_initials_use_the_first_connection_id() {
    // RFC 9001 §5.2: the keys stay those of the first DCID, even once the client has
    // switched to the server's connection ID.
    let hello = curl_hello();
    let first = seal(Version::V1, DCID, 0, &crypto_frame(0, &hello[..100]));
    let rest = crypto_frame(100, &hello[100..]);
    let mut crypto = [0; CRYPTO_LIMIT];
    let mut sniffer = InitialSniffer::new();
    assert_eq!(
        sniffer.sniff(&mut first.clone(), &mut crypto),
        QuicSniffed::NeedMore
    );
    // Keyed by its own DCID: not the flow's keys, not read.
    let mut own = seal(Version::V1, &[9; 8], 1, &rest);
    assert_eq!(sniffer.sniff(&mut own, &mut crypto), QuicSniffed::NeedMore);
    let mut switched = seal_as(Version::V1, DCID, &[9; 8], 1, &rest);
    assert_eq!(
        sniffer.sniff(&mut switched, &mut crypto),
        QuicSniffed::ServerName("api.example.org")
    );
}

#[test]
fn a_buffer_too_small_for_the_name_gives_nothing() {
    let packet = seal(Version::V1, DCID, 0, &crypto_frame(0, curl_hello()));
    let mut crypto = [0; 64];
    assert_eq!(
        InitialSniffer::new().sniff(&mut packet.clone(), &mut crypto),
        QuicSniffed::Nothing
    );
    // Data beyond the buffer's end is dropped, not a failure, when the name is before it.
    let mut crypto = [0; 300];
    assert_eq!(
        InitialSniffer::new().sniff(&mut packet.clone(), &mut crypto),
        QuicSniffed::ServerName("api.example.org")
    );
}

#[test]
fn frames_a_client_initial_does_not_carry_give_nothing() {
    let mut frames = crypto_frame(0, &curl_hello()[..100]);
    frames.extend_from_slice(&[0x08, 0x00]); // STREAM
    let packet = seal(Version::V1, DCID, 0, &frames);
    assert_eq!(sniff_once(&packet), QuicSniffed::Nothing);
    // A CRYPTO frame whose data runs past the payload.
    let mut frames = crypto_frame(0, &curl_hello()[..100]);
    frames[3..5].copy_from_slice(&0x7fff_u16.to_be_bytes());
    let packet = seal(Version::V1, DCID, 0, &frames);
    assert_eq!(sniff_once(&packet), QuicSniffed::Nothing);
    // Not a ClientHello.
    let packet = seal(
        Version::V1,
        DCID,
        0,
        &crypto_frame(0, &[2, 0, 0, 4, 3, 3, 0, 0]),
    );
    assert_eq!(sniff_once(&packet), QuicSniffed::Nothing);
}

#[test]
fn too_many_holes_give_nothing() {
    // Every other 8-byte piece, from offset 16 on: one range more than there is room for.
    let hello = curl_hello();
    let mut frames = Vec::new();
    for i in 0..=MAX_GAPS {
        let at = 16 + 16 * i;
        frames.extend(crypto_frame(at, &hello[at..at + 8]));
    }
    let packet = seal(Version::V1, DCID, 0, &frames);
    assert_eq!(sniff_once(&packet), QuicSniffed::NeedMore);
    let mut frames = Vec::new();
    for i in 0..=MAX_GAPS + 1 {
        let at = 16 + 16 * i;
        frames.extend(crypto_frame(at, &hello[at..at + 8]));
    }
    let packet = seal(Version::V1, DCID, 0, &frames);
    assert_eq!(sniff_once(&packet), QuicSniffed::Nothing);
}
