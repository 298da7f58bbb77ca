//! The server name in the first bytes of a TCP tunnel: a TLS `ClientHello`'s SNI, or an
//! HTTP/1.x request's host. No allocation, no `alloc` needed.
//!
//! An edge that routes on names (rules like `snis = ["*.example.com"]`) reads what the
//! client sends first and calls [`sniff`] on all the bytes so far, again each time more
//! arrive, until the answer is not [`Sniffed::NeedMore`] or it has [`SNIFF_LIMIT`] bytes.
//!
//! The answer only ever depends on the bytes it has read: for any input, every prefix of it
//! sniffs to [`Sniffed::NeedMore`] or to the same answer as the whole (the `sniff` fuzz
//! target checks this). Nothing past [`SNIFF_LIMIT`] is read.
//!
//! - **TLS** ([`Sniffed::TlsServerName`]): a handshake record (content type 22, record
//!   version `0x03xx`), a `ClientHello`, walked field by field to its `server_name`
//!   extension's first `host_name`. A `ClientHello` fragmented over several handshake
//!   records is followed across them (some clients split it on purpose); only a host name
//!   that is itself split across two records cannot be returned as one borrowed slice, and
//!   gives [`Sniffed::Nothing`].
//! - **HTTP/1.x** ([`Sniffed::HttpHost`]): a complete request head (httparse, at most
//!   [`MAX_HEADERS`] fields). The host is the request-target's authority for `CONNECT` and
//!   for an absolute-form target (`GET http://host/ HTTP/1.1`; RFC 9112 §3.2.2: a server
//!   ignores `Host` then), otherwise the one `Host` field (none, or more than one, gives
//!   [`Sniffed::Nothing`], as RFC 9112 §3.2 has a server refuse both). The port is
//!   dropped; an IPv6 literal is returned **without** its brackets, so that it parses as an
//!   [`core::net::Ipv6Addr`]; an IPv4 literal is returned as written.
//!
//! - **QUIC** ([`quic`], feature `quic`): the same `ClientHello` walk over the CRYPTO
//!   frames of a QUIC client's Initial packets, decrypted with the keys their Destination
//!   Connection ID gives (RFC 9001 §5.2), for UDP that a router sees raw.
//!
//! Every name returned is a borrowed slice of the input and a syntactically valid DNS name
//! (or, for HTTP, an IP literal): 1 to 253 bytes (one trailing dot allowed beyond), labels
//! of 1 to 63 ASCII letters, digits, `-` or `_`. Case is kept as sent; name rules compare
//! case-insensitively. A name that fails this check gives [`Sniffed::Nothing`]: the peer
//! sent something no rule should route on.

mod http;
mod name;
#[cfg(feature = "quic")]
#[cfg_attr(docsrs, doc(cfg(feature = "quic")))]
pub mod quic;
#[cfg(test)]
mod tests;
mod tls;

pub use http::MAX_HEADERS;

/// What the first bytes of a TCP tunnel say about its destination's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed<'a> {
    /// The `host_name` of a TLS `ClientHello`'s `server_name` extension (RFC 6066 §3).
    TlsServerName(&'a str),
    /// The host of an HTTP/1.x request, without port or IPv6 brackets.
    HttpHost(&'a str),
    /// A prefix of a `ClientHello` or of an HTTP request: call again with more bytes (up to
    /// [`SNIFF_LIMIT`]).
    NeedMore,
    /// Not a TLS `ClientHello` with a server name nor an HTTP request with a host, or
    /// malformed, or no answer within [`SNIFF_LIMIT`] bytes: stop looking.
    Nothing,
}

/// The most bytes worth waiting for: one TLS record of the largest size (a 5-byte header
/// and 2^14 bytes, RFC 8446 §5.1), which holds any `ClientHello` a browser sends, and far
/// more than an HTTP request head needs. [`sniff`] reads no further: when the first
/// `SNIFF_LIMIT` bytes do not give an answer, the answer is [`Sniffed::Nothing`].
pub const SNIFF_LIMIT: usize = 5 + 16_384;

/// Reads what it can of `first_bytes`, the bytes a client sent first on a TCP tunnel.
pub fn sniff(first_bytes: &[u8]) -> Sniffed<'_> {
    let limited = first_bytes.len() > SNIFF_LIMIT;
    let input = &first_bytes[..first_bytes.len().min(SNIFF_LIMIT)];
    let answer = match input.first() {
        None => Sniffed::NeedMore,
        Some(&tls::CONTENT_TYPE_HANDSHAKE) => tls::sniff(input),
        Some(_) => http::sniff(input),
    };
    match answer {
        Sniffed::NeedMore if limited => Sniffed::Nothing,
        answer => answer,
    }
}
