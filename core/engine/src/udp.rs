//! CONNECT-UDP (RFC 9298) pieces that need no connection: the request and response
//! messages ([`request`], with [`numeric`] spellings of addresses) and one tunnel's
//! datagram state ([`flow`]). The endpoint glue
//! lives in `endpoint/udp.rs`.

pub(crate) mod flow;
pub(crate) mod numeric;
pub(crate) mod request;
