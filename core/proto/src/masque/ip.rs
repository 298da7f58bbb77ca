//! CONNECT-IP (RFC 9484): request scope and the address and route capsules.
//!
//! - [`Template`] validates a URI template once (RFC 9484 §3), then parses a request's
//!   `:path` into a [`Scope`] on the proxy, or expands a [`Scope`] into a path on the
//!   client ([`DEFAULT_TEMPLATE`] when only a host and port are configured).
//! - [`AddressAssign`], [`AddressRequest`] and [`RouteAdvertisement`] are checked views
//!   over capsule values (§4.7): `decode` validates the whole value once against every
//!   rule of the RFC and the view then iterates its entries without allocating. Their
//!   `encode` functions write whole capsules and refuse what `decode` would refuse.
//! - Every decoding error means "malformed capsule": RFC 9484 §4.7 sends the receiver to
//!   RFC 9297 §3.3, which aborts the stream.
//!
//! Nothing here allocates; host names live in a `heapless::String<253>`.
//!
//! ```
//! use veil_proto::masque::ip::{IpProto, Scope, Target, Template};
//!
//! let scope = Template::DEFAULT.parse(b"/.well-known/masque/ip/192.0.2.0%2F24/17/")?;
//! assert!(matches!(scope.target, Target::Prefix(p) if p.prefix_len() == 24));
//! assert_eq!(scope.ipproto, IpProto::Number(17));
//!
//! let mut path = [0; 64];
//! let len = Template::DEFAULT.expand(&Scope::ANY, &mut path)?;
//! assert_eq!(&path[..len], b"/.well-known/masque/ip/*/*/");
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

mod address;
mod prefix;
mod route;
mod scope;
mod template;

pub use address::{
    AddressAssign, AddressDecodeError, AddressEncodeError, AddressRequest, AssignedAddress,
    AssignedAddresses, RequestedAddress, RequestedAddresses,
};
pub use prefix::{IpPrefix, PrefixError};
pub use route::{
    IpAddressRange, IpAddressRanges, RouteAdvertisement, RouteDecodeError, RouteEncodeError,
};
pub use scope::{Hostname, IpProto, IpProtoError, Scope, Target, TargetError};
pub use template::{DEFAULT_TEMPLATE, ExpandError, ScopeError, Template, TemplateError};

use crate::varint::VarInt;

/// Bytes of a whole capsule (type, length, value) whose value is `value_len` bytes.
fn capsule_len(capsule_type: VarInt, value_len: usize) -> usize {
    let length_len = VarInt::try_from(value_len).map_or(VarInt::MAX_LEN, VarInt::encoded_len);
    capsule_type.encoded_len() + length_len + value_len
}
