//! The bodies of veil's fuzz targets.
//!
//! Each module is one target: `run(data)` takes libFuzzer's bytes and panics when an
//! invariant breaks. `fuzz/fuzz_targets/<name>.rs` calls it under libFuzzer (nightly,
//! `cargo fuzz`), and `tests/replay.rs` calls it on every committed corpus file and past
//! crash input under the ordinary stable `cargo test`, so a fixed bug stays fixed.
//!
//! Two kinds of targets:
//! - decoders (`varint`, `datagram`, `capsule`, …) take raw wire bytes, sometimes behind a
//!   small prefix that picks a configuration or a chunking (see [`chunks`]). Beyond "no
//!   panic" they check that consumed counts stay within the input, that every chunking of
//!   the input gives the one-shot result, and that what decodes re-encodes to an equal value;
//! - round trips (`*_roundtrip`) build a structured value with `arbitrary`, encode it, and
//!   check that decoding gives it back exactly;
//! - models (`rules`) build inputs with `arbitrary` and compare a result with a naive
//!   reference written in the target.
//!
//! [`TARGETS`] lists them all, by the name of their corpus directory.

pub mod chunks;

pub mod capsule;
pub mod capsule_roundtrip;
pub mod datagram;
pub mod datagram_roundtrip;
pub mod engine;
pub mod h1_session;
pub mod h2_frame;
pub mod h2_session;
pub mod http1;
pub mod http1_stream;
pub mod ip;
pub mod ip_roundtrip;
pub mod masque_ip;
pub mod masque_ip_roundtrip;
pub mod masque_udp;
pub mod masque_udp_roundtrip;
pub mod proxy_protocol;
pub mod proxy_protocol_roundtrip;
pub mod rules;
pub mod sniff;
pub mod sniff_quic;
pub mod socks5;
pub mod socks5_roundtrip;
pub mod varint;
pub mod varint_roundtrip;

/// A fuzz target's body.
pub type Body = fn(&[u8]);

/// Every target: its name (the `fuzz/fuzz_targets/<name>.rs` binary and the
/// `fuzz/corpus/<name>/` directory) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("varint", varint::run),
    ("varint_roundtrip", varint_roundtrip::run),
    ("datagram", datagram::run),
    ("datagram_roundtrip", datagram_roundtrip::run),
    ("capsule", capsule::run),
    ("capsule_roundtrip", capsule_roundtrip::run),
    ("masque_udp", masque_udp::run),
    ("masque_udp_roundtrip", masque_udp_roundtrip::run),
    ("masque_ip", masque_ip::run),
    ("masque_ip_roundtrip", masque_ip_roundtrip::run),
    ("socks5", socks5::run),
    ("socks5_roundtrip", socks5_roundtrip::run),
    ("http1", http1::run),
    ("http1_stream", http1_stream::run),
    ("proxy_protocol", proxy_protocol::run),
    ("proxy_protocol_roundtrip", proxy_protocol_roundtrip::run),
    ("ip", ip::run),
    ("ip_roundtrip", ip_roundtrip::run),
    ("engine", engine::run),
    ("rules", rules::run),
    ("sniff", sniff::run),
    ("sniff_quic", sniff_quic::run),
    ("h2_frame", h2_frame::run),
    ("h2_session", h2_session::run),
    ("h1_session", h1_session::run),
];
