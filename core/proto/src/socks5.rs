//! SOCKS5, server side (RFC 1928), with username/password authentication (RFC 1929).
//!
//! [`Server`] is a sans-IO state machine for one client connection. The caller feeds it
//! the bytes the client sends, in any chunks, and acts on what it returns:
//!
//! ```text
//! client                                server                 caller
//! VER=5 NMETHODS METHODS        ──▶     Action::Send([5, M])   write it
//!                                       or Action::Close       write, close
//! (M = 2) VER=1 ULEN UNAME PLEN PASSWD  Action::Authenticate   check, accept_auth(ok),
//!                                                              write its reply
//! VER=5 CMD RSV ATYP DST.ADDR DST.PORT  Action::Request        dial, encode_reply, relay
//!                                       or Action::Close       write, close
//! ```
//!
//! Nothing allocates: the server buffers at most one message (an RFC 1929 request, at most
//! 513 bytes, is the longest) and domain names live in a fixed 255-byte [`Domain`].
//!
//! # Choices where the RFCs leave room
//!
//! - **Method choice**: username/password wins over no authentication when the client
//!   offers both and [`Config`] enables both. NMETHODS of 0 is answered X'FF'.
//! - **Empty username or password** (ULEN or PLEN 0, which RFC 1929 does not allow) reach
//!   the caller like any other credentials, to be accepted or refused by its verdict.
//! - **RSV** in requests and UDP headers is written as zero and ignored on receipt: RFC
//!   1928 draws it as X'00', a value clients must send, but a server gains nothing by
//!   refusing a client over it.
//! - **Domain names** must be 1 to 255 visible ASCII characters: veil resolves them, and
//!   anything else is refused with X'04' host unreachable, what resolving would give.
//! - **BIND** and unknown commands get X'07' command not supported; an unknown ATYP gets
//!   X'08' address type not supported. Each refusal is written, then the session ends.
//! - **Bad version octets** are protocol errors ([`Socks5Error::BadVersion`]): the caller
//!   closes without a reply, since the peer does not speak the protocol.
//! - **UDP fragments** (FRAG ≠ 0) are refused by [`decode_udp`] for the relay to drop.
//!
//! # Caller loop
//!
//! ```
//! use veil_proto::socks5::{Action, Command, Config, Reply, Server, encode_reply, MAX_REPLY_LEN};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut server = Server::new(Config::USERNAME_PASSWORD);
//! // What a client sends in one go: a greeting, credentials, a CONNECT to
//! // 192.0.2.1:80, and its first payload bytes.
//! let received: &[u8] = &[
//!     5, 1, 2, // greeting: offers username/password
//!     1, 5, b'a', b'l', b'i', b'c', b'e', 2, b'p', b'w', // "alice" / "pw"
//!     5, 1, 0, 1, 192, 0, 2, 1, 0, 80, // CONNECT 192.0.2.1:80
//!     b'G', b'E', b'T', // pipelined data
//! ];
//! let mut to_client = Vec::new();
//! let mut input = received;
//! let request = loop {
//!     let (consumed, action) = server.feed(input)?;
//!     input = &input[consumed..];
//!     match action {
//!         None => unreachable!("a real caller reads more from the socket here"),
//!         Some(Action::Send(bytes)) => to_client.extend_from_slice(bytes),
//!         Some(Action::Close { reply, reason }) => {
//!             to_client.extend_from_slice(reply);
//!             return Err(reason.to_string().into()); // then close the connection
//!         }
//!         Some(Action::Authenticate(credentials)) => {
//!             let ok = credentials.username() == b"alice" && credentials.password() == b"pw";
//!             to_client.extend_from_slice(server.accept_auth(ok)?);
//!             if !ok {
//!                 return Err("authentication failed".into()); // then close
//!             }
//!         }
//!         Some(Action::Request(request)) => break request,
//!     }
//! };
//! assert_eq!(request.command, Command::Connect);
//! assert_eq!(request.target.to_string(), "192.0.2.1:80");
//!
//! // Dial the target, then tell the client where we are bound.
//! let mut reply = [0; MAX_REPLY_LEN];
//! let len = encode_reply(&Reply::success("198.51.100.7:40000".parse()?), &mut reply)?;
//! to_client.extend_from_slice(&reply[..len]);
//!
//! assert_eq!(input, b"GET"); // the client's data, untouched: relay it to the target
//! assert_eq!(to_client[..4], [5, 2, 1, 0]); // method 2 chosen, then STATUS success
//! # Ok(())
//! # }
//! ```

mod addr;
mod reply;
mod server;
mod udp;

pub use addr::{Domain, DomainError, MAX_DOMAIN_LEN, Target};
pub use reply::{MAX_REPLY_LEN, Reply, ReplyCode, encode_reply};
pub use server::{
    Action, Command, Config, Credentials, NotAwaitingAuth, Refusal, Request, Server, Socks5Error,
};
pub use udp::{
    MAX_UDP_HEADER_LEN, UdpDatagram, UdpError, decode_udp, encode_udp_header, prepend_udp_header,
    udp_header_len,
};

/// `VER` of every RFC 1928 message.
const VERSION: u8 = 0x05;
/// `VER` of the RFC 1929 subnegotiation.
const AUTH_VERSION: u8 = 0x01;
