//! The edge's egress safety policy: which destinations it refuses to reach for a client.
//!
//! The edge refuses loopback, private (RFC 1918), shared (CGNAT), link-local, cloud
//! metadata, multicast, broadcast, unspecified, reserved, benchmarking, documentation and
//! unique-local addresses, and its own addresses, in every spelling, unless the
//! configuration allows a prefix. Pure: no I/O, no clock, no allocation per check.
//!
//! How the engine uses it, for a request to `host:port`:
//!
//! 1. [`classify_host`]: a malformed host is a 400. A host that is an address in any
//!    spelling (`127.1`, `2130706433`, `0x7f.0.0.1`, `[::ffff:127.0.0.1]`, `localhost`)
//!    becomes [`HostKind::Ip`]; anything else is a [`HostKind::Name`].
//! 2. An address goes to [`EgressPolicy::check`]; a name is resolved once and its answers
//!    go to [`EgressPolicy::check_resolved`]. A [`Forbidden`] is a 403 with Proxy-Status
//!    `destination_ip_prohibited`.
//! 3. The adapter dials an address that was checked, never the name again, so a DNS
//!    answer that changes between check and dial (rebinding) cannot reach a refused
//!    address.
//!
//! An IPv6 address that carries an IPv4 address (IPv4-mapped, NAT64, 6to4) is judged by
//! the IPv4 address it carries, and an allowlisted IPv4 prefix allows those forms too
//! (see [`Transition`]). Configuration reads [`IpNet`] and [`Nat64Prefix`] from strings.
//!
//! ```
//! use veil_engine::egress::{AddressClass, EgressPolicy, HostKind, classify_host};
//!
//! let policy = EgressPolicy::new(vec!["127.0.0.0/8".parse()?]);
//! let HostKind::Ip(addr) = classify_host("0x7f.1")? else { unreachable!() };
//! assert!(policy.check(addr).is_ok());
//!
//! let HostKind::Ip(metadata) = classify_host("[::ffff:169.254.169.254]")? else { unreachable!() };
//! assert_eq!(policy.check(metadata).unwrap_err().class, AddressClass::CloudMetadata);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod class;
mod host;
mod net;
mod policy;
mod transition;

pub use class::AddressClass;
pub use host::{HostError, HostKind, classify_host, parse_inet_aton};
pub use net::{IpNet, IpNetError};
pub use policy::{EgressPolicy, Forbidden};
pub use transition::{Nat64Prefix, Nat64PrefixError, Transition};
