//! MASQUE request shapes: CONNECT-UDP (RFC 9298) and CONNECT-IP (RFC 9484).

pub mod ip;
mod percent;
mod template;
pub mod udp;
