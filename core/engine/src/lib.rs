//! veil's sans-IO engine.
//!
//! Drives quiche and quiche's HTTP/3 for both roles (client and edge). No sockets, no
//! runtime, no threads: the caller feeds datagrams and time in, and drains datagrams,
//! timeouts and events out.

pub mod egress;
