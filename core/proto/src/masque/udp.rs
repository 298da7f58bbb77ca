//! CONNECT-UDP targets carried by a URI template (RFC 9298 §2, §3).
//!
//! A CONNECT-UDP client is configured with a URI template holding the variables
//! `target_host` and `target_port`. It expands the template for the target it wants and
//! sends the result as the request's `:path`; the proxy matches that `:path` against its
//! own template to learn the target.
//!
//! ```
//! use core::num::NonZeroU16;
//! use veil_proto::masque::udp::{Host, PathTemplate, Target};
//!
//! // Client: RFC 9298's default template, target 2001:db8::42 port 443.
//! let template = PathTemplate::DEFAULT;
//! let host: Host = "2001:db8::42".parse()?;
//! let target = Target::new(host, NonZeroU16::new(443).ok_or("port 0")?);
//! let mut path = [0; 128];
//! let len = template.expand(&target, &mut path)?;
//! assert_eq!(&path[..len], b"/.well-known/masque/udp/2001%3Adb8%3A%3A42/443/");
//!
//! // Proxy: any template the operator configured, validated once at start-up.
//! let template = PathTemplate::new("/masque?h={target_host}&p={target_port}")?;
//! let target = template.match_path(b"/masque?h=example.com&p=53")?;
//! assert_eq!(target.to_string(), "example.com:53");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | type | what |
//! |---|---|
//! | [`UriTemplate`] | a full template (`https://proxy/…{target_host}…`): scheme, authority, path |
//! | [`PathTemplate`] | its path and query: [`expand`](PathTemplate::expand), [`match_path`](PathTemplate::match_path) |
//! | [`Target`] | a [`Host`] (IP address or [`Name`]) and a non-zero port |
//!
//! Nothing here allocates: templates borrow their text, names live in a fixed 253-byte
//! string. Every error maps to 400 (Bad Request) on the proxy and to a configuration error
//! on the client, and says why in its `Display`.
//!
//! # Decisions
//!
//! - IPv6 addresses travel without brackets, colons written `%3A`; a raw `:`, a bracket
//!   (raw or `%5B`/`%5D`) and a zone identifier (`%25…`) are refused.
//! - DNS names are lowercased, a trailing dot is dropped, and a name whose last label is
//!   numeric is refused: see [`Name`].
//! - Ports are decimal 1–65535 with no leading zero: see [`decode_port`].
//! - A request's query is ignored when the template has none: see [`PathTemplate`].

mod expand;
mod matching;
mod target;
mod template;

pub use matching::PathError;
pub use target::{Host, HostError, MAX_NAME_LEN, Name, PortError, Target, decode_port};
pub use template::{DEFAULT_PATH_TEMPLATE, PathTemplate, TemplateError, UriTemplate, Variable};
