//! veil's wire layer.
//!
//! Every decoder here takes untrusted bytes, never panics, never allocates without a bound
//! and returns a typed error. Every encoder writes into a caller-provided buffer and reports
//! how many bytes it wrote, or [`BufferTooSmall`].
//!
//! The crate is `#![no_std]`. Without the `alloc` feature nothing allocates; fixed capacity
//! comes from `heapless`. No module reads a clock or touches a socket.
//!
//! | module | what it speaks |
//! |---|---|
//! | [`varint`] | QUIC variable-length integers (RFC 9000 §16) |
//! | [`datagram`] | HTTP Datagram payloads (RFC 9297 §2.1, RFC 9298 §5) |
//! | [`capsule`] | the Capsule Protocol (RFC 9297 §3.2) |
//! | [`masque::udp`] | CONNECT-UDP targets (RFC 9298 §2) |
//! | [`masque::ip`] | CONNECT-IP scope and capsules (RFC 9484) |
//! | [`socks5`] | SOCKS5 server side (RFC 1928, RFC 1929) |
//! | [`http1`] | HTTP/1.1 proxy requests and responses (RFC 9110, 9112, 9209) |
//! | [`h2`] | HTTP/2 frames (RFC 9113 §4, §6, §7; RFC 8441's setting) |
//! | [`proxy_protocol`] | PROXY protocol v1 and v2 |
//! | [`ip`] | IPv4/IPv6 packet views and ICMP/UDP builders |
//! | [`sniff`] | the server name in a tunnel's first bytes: a TLS ClientHello's SNI (RFC 8446, RFC 6066) or an HTTP/1.x request's host; with `quic`, a QUIC client's Initial packets (RFC 9000, 9001, 9369) |
//! | [`rules`] | first-match routing rules (addresses, names, ports, protocols, identities, SNI), compiled for lookups that never allocate (`alloc`) |
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

mod cursor;
mod error;

pub mod capsule;
pub mod datagram;
pub mod h2;
pub mod http1;
pub mod ip;
pub mod masque;
pub mod proxy_protocol;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod rules;
pub mod sniff;
pub mod socks5;
pub mod varint;

pub use cursor::{Reader, Writer};
pub use error::{BufferTooSmall, Truncated};
