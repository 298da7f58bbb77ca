//! veil's engine through a stable C ABI.
//!
//! Everything a C program needs is declared in `include/veil.h`, which cbindgen generates
//! from this crate (`tests/header.rs` fails when the committed header is stale; run it with
//! `VEIL_BLESS_HEADER=1` to rewrite it). The header's opening comment is the contract:
//! ownership, lifetimes, the clock, threads and result codes.
//!
//! Shape of the ABI, in the engine's sans-IO style:
//!
//! - three opaque handles, [`veil_config`] (a builder), [`veil_endpoint`] and
//!   [`veil_relay`] (how one TCP relay ends), each with a constructor that returns a
//!   [`veil_result`] and writes the handle to an out-pointer, and a `_free` that accepts
//!   NULL;
//! - every other export returns a [`veil_result`]: `VEIL_OK` (0), `VEIL_DONE` (1: nothing
//!   to report now) or a negative `VEIL_ERR_*`;
//! - every export runs behind a panic boundary ([`panic`]): a panic becomes
//!   `VEIL_ERR_PANIC` and poisons the endpoint, it never unwinds into C;
//! - every pointer is checked for NULL (and alignment), every buffer for its length.

// An FFI crate is made of unsafe code: each block says why it is sound (`// SAFETY:`).
#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]
// The exported names are C names (`veil_endpoint`, `VEIL_OK`), so that the Rust source and
// the header read alike.
#![allow(non_camel_case_types)]

mod addr;
mod clock;
pub mod config;
pub mod endpoint;
pub mod event;
pub mod http_hook;
pub mod lanes;
pub mod panic;
pub mod policy;
mod ptr;
pub mod relay;
pub mod result;
pub mod steer;
pub mod tcp;
pub mod tunnel;

pub use addr::veil_sockaddr;
pub use config::{veil_config, veil_congestion_control, veil_role, veil_transport};
pub use endpoint::{veil_endpoint, veil_stats, veil_transmit};
pub use event::{veil_close_reason, veil_event, veil_event_kind, veil_refused_reason};
pub use lanes::veil_lanes;
pub use policy::{
    veil_ingress_hook, veil_ingress_query, veil_tunnel_action, veil_tunnel_hook, veil_tunnel_query,
    veil_tunnel_verdict,
};
pub use relay::{veil_relay, veil_relay_action, veil_relay_end, veil_relay_outcome};
pub use result::veil_result;
pub use steer::veil_sock_filter;
pub use tunnel::{veil_refusal, veil_tunnel_kind};
