//! The server-side handshake state machine: greeting, method selection, RFC 1929
//! subnegotiation, request.

use core::fmt;

use super::addr::{DomainError, Target, TargetError};
use super::reply::{ReplyCode, failure_reply_bytes};
use super::{AUTH_VERSION, VERSION};
use crate::cursor::Reader;
use crate::error::Truncated;

/// `METHOD` X'00' NO AUTHENTICATION REQUIRED.
const METHOD_NO_AUTH: u8 = 0x00;
/// `METHOD` X'02' USERNAME/PASSWORD.
const METHOD_USERNAME_PASSWORD: u8 = 0x02;
/// `METHOD` X'FF' NO ACCEPTABLE METHODS.
const METHOD_NONE_ACCEPTABLE: u8 = 0xff;

/// `CMD` X'01' CONNECT.
const CMD_CONNECT: u8 = 0x01;
/// `CMD` X'03' UDP ASSOCIATE.
const CMD_UDP_ASSOCIATE: u8 = 0x03;

/// RFC 1929 `STATUS` for success; any other value is a failure.
const AUTH_SUCCESS: u8 = 0x00;
/// The failure `STATUS` veil sends.
const AUTH_FAILURE: u8 = 0x01;

/// The longest client message: an RFC 1929 request with a 255-octet username and a
/// 255-octet password (`VER ULEN UNAME PLEN PASSWD`). A greeting is at most 257 bytes and a
/// request at most 262.
const MAX_MESSAGE_LEN: usize = 1 + 1 + 255 + 1 + 255;

/// Which authentication methods the server offers.
///
/// When the client offers both and both are enabled, the server picks username/password:
/// a client that has credentials to give gets to give them, and the engine can attribute
/// the flows to a user. With neither enabled every client is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Config {
    /// Accept X'00' NO AUTHENTICATION REQUIRED.
    pub no_auth: bool,
    /// Accept X'02' USERNAME/PASSWORD (RFC 1929); the caller checks the credentials.
    pub username_password: bool,
}

impl Config {
    /// Only X'00' NO AUTHENTICATION REQUIRED, for a proxy on a trusted interface.
    pub const NO_AUTH: Self = Self {
        no_auth: true,
        username_password: false,
    };

    /// Only X'02' USERNAME/PASSWORD: every client must authenticate.
    pub const USERNAME_PASSWORD: Self = Self {
        no_auth: false,
        username_password: true,
    };
}

/// What the client asked the server to do. BIND is refused by the state machine itself,
/// so it never reaches the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// X'01' CONNECT: open a TCP connection to the target and relay.
    Connect,
    /// X'03' UDP ASSOCIATE: relay UDP datagrams. The target is where the client expects to
    /// send from (all zeros if it does not know yet); the server MAY restrict the
    /// association to it.
    UdpAssociate,
}

impl Command {
    /// The `CMD` octet.
    pub const fn code(self) -> u8 {
        match self {
            Self::Connect => CMD_CONNECT,
            Self::UdpAssociate => CMD_UDP_ASSOCIATE,
        }
    }

    fn from_code(cmd: u8) -> Option<Self> {
        match cmd {
            CMD_CONNECT => Some(Self::Connect),
            CMD_UDP_ASSOCIATE => Some(Self::UdpAssociate),
            _ => None,
        }
    }
}

/// A client request for the caller to carry out and answer with
/// [`encode_reply`](super::encode_reply).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Request {
    /// CONNECT or UDP ASSOCIATE.
    pub command: Command,
    /// `DST.ADDR` and `DST.PORT`.
    pub target: Target,
}

/// A username and password from an RFC 1929 request, borrowed from the state machine.
///
/// Both are raw octets (RFC 1929 gives them no encoding) and either may be empty. `Debug`
/// shows the username and hides the password; compare passwords in constant time.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    username: &'a [u8],
    password: &'a [u8],
}

impl<'a> Credentials<'a> {
    /// `UNAME`, 0 to 255 octets.
    pub const fn username(&self) -> &'a [u8] {
        self.username
    }

    /// `PASSWD`, 0 to 255 octets. Never log it.
    pub const fn password(&self) -> &'a [u8] {
        self.password
    }
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "username",
                &format_args!("\"{}\"", self.username.escape_ascii()),
            )
            .field("password", &format_args!("<redacted>"))
            .finish()
    }
}

/// Why the state machine ended the session by itself, after a reply that tells the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The client offered no method the server accepts (reply `METHOD` X'FF').
    NoAcceptableMethod,
    /// `CMD` is BIND (X'02') or unknown (reply `REP` X'07'). Carries `CMD`.
    CommandNotSupported(u8),
    /// `ATYP` is unknown (reply `REP` X'08'). Carries `ATYP`.
    AddressTypeNotSupported(u8),
    /// The domain name is one veil will not resolve (reply `REP` X'04' host unreachable,
    /// what resolving it would have given).
    InvalidDomain(DomainError),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAcceptableMethod => f.write_str("no acceptable authentication method"),
            Self::CommandNotSupported(cmd) => write!(f, "command {cmd:#04x} not supported"),
            Self::AddressTypeNotSupported(atyp) => {
                write!(f, "address type {atyp:#04x} not supported")
            }
            Self::InvalidDomain(e) => e.fmt(f),
        }
    }
}

/// What the caller must do next. Returned by [`Server::feed`].
// A request carries its target inline: without alloc there is nothing to box it in.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'a> {
    /// Write these bytes to the client, then keep feeding.
    Send(&'static [u8]),
    /// Write `reply` to the client, then close the connection: the session is over.
    Close {
        /// The bytes to write before closing.
        reply: &'static [u8],
        /// Why, for logs and counters.
        reason: Refusal,
    },
    /// Check these credentials, then call [`Server::accept_auth`] before feeding again.
    Authenticate(Credentials<'a>),
    /// The handshake is done. Carry out the request, write a reply built with
    /// [`encode_reply`](super::encode_reply), and on success relay: bytes after the ones
    /// `feed` reported consumed are the client's first payload bytes.
    Request(Request),
}

/// The client broke the protocol, or the caller fed input at the wrong time. The caller
/// closes the connection; no reply is owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Socks5Error {
    /// A version octet is wrong: `expected` is 5 for the greeting and the request, 1 for
    /// the RFC 1929 subnegotiation.
    BadVersion {
        /// The version the protocol requires here.
        expected: u8,
        /// The version the client sent.
        found: u8,
    },
    /// [`Server::feed`] was called while credentials wait for [`Server::accept_auth`].
    AuthPending,
    /// [`Server::feed`] was called after the handshake ended: after a request, a refusal,
    /// a rejected authentication or an error.
    Finished,
}

impl fmt::Display for Socks5Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadVersion { expected, found } => {
                write!(f, "SOCKS version {found:#04x}, expected {expected:#04x}")
            }
            Self::AuthPending => f.write_str("credentials await accept_auth before more input"),
            Self::Finished => f.write_str("the SOCKS5 handshake has already ended"),
        }
    }
}

impl core::error::Error for Socks5Error {}

/// [`Server::accept_auth`] was called with no credentials waiting for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAwaitingAuth;

impl fmt::Display for NotAwaitingAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no credentials are waiting for an answer")
    }
}

impl core::error::Error for NotAwaitingAuth {}

/// Where the handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a client message.
    Reading(Message),
    /// Credentials handed out; waiting for [`Server::accept_auth`].
    AuthPending,
    /// Over: request handed out, refused, rejected or failed.
    Finished,
}

/// The client message the server expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    /// `VER NMETHODS METHODS`.
    Greeting,
    /// `VER ULEN UNAME PLEN PASSWD`.
    Auth,
    /// `VER CMD RSV ATYP DST.ADDR DST.PORT`.
    Request,
}

/// A complete client message, decoded.
struct Step<'a> {
    /// What the caller must do.
    action: Action<'a>,
    /// The state after the action.
    next: State,
    /// The message's length.
    len: usize,
}

/// Why a message could not be decoded from the bytes buffered so far.
enum Stop {
    /// The message goes on past them.
    Incomplete,
    /// They break the protocol.
    Failed(Socks5Error),
}

impl From<Truncated> for Stop {
    fn from(Truncated: Truncated) -> Self {
        Self::Incomplete
    }
}

impl From<Socks5Error> for Stop {
    fn from(e: Socks5Error) -> Self {
        Self::Failed(e)
    }
}

/// The server side of one SOCKS5 connection, fed the client's bytes as they arrive.
///
/// It holds at most one client message (513 bytes) and never allocates. Input may be cut
/// anywhere, down to one byte per call: a message is buffered until complete, and bytes
/// past the message that completed are left for the next call, so data the client
/// pipelines after its request is never lost. `Debug` shows the state, never the buffer.
pub struct Server {
    config: Config,
    state: State,
    /// The start of the message being read, or the credentials being judged.
    buf: [u8; MAX_MESSAGE_LEN],
    /// Bytes of the message being read held in `buf`.
    len: usize,
}

impl Server {
    /// A server waiting for the client's greeting.
    pub const fn new(config: Config) -> Self {
        Self {
            config,
            state: State::Reading(Message::Greeting),
            buf: [0; MAX_MESSAGE_LEN],
            len: 0,
        }
    }

    /// Feeds client bytes; returns how many it consumed and what to do next, if anything.
    ///
    /// With `None`, all of `input` was consumed and the server needs more. With an action,
    /// bytes past `consumed` were not used: feed them again after handling the action (or,
    /// after [`Action::Request`], relay them). After an error the session is over.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Action<'_>>), Socks5Error> {
        let expected = match self.state {
            State::Reading(message) => message,
            State::AuthPending => return Err(Socks5Error::AuthPending),
            State::Finished => return Err(Socks5Error::Finished),
        };
        let before = self.len;
        let copied = self.buffer(input);
        let mut message = Reader::new(self.buf.get(..self.len).unwrap_or_default());
        let decoded = match expected {
            Message::Greeting => decode_greeting(self.config, &mut message),
            Message::Auth => decode_auth(&mut message),
            Message::Request => decode_request(&mut message),
        };
        match decoded {
            Ok(step) => {
                self.len = 0;
                self.state = step.next;
                // The message began with the `before` bytes buffered by earlier calls.
                Ok((step.len.saturating_sub(before), Some(step.action)))
            }
            // Every message fits the buffer, so an incomplete one took all of `input`.
            Err(Stop::Incomplete) => Ok((copied, None)),
            Err(Stop::Failed(e)) => {
                self.len = 0;
                self.state = State::Finished;
                Err(e)
            }
        }
    }

    /// Answers the credentials of [`Action::Authenticate`] and returns the RFC 1929 reply
    /// to write to the client.
    ///
    /// After an acceptance, keep feeding: the request comes next. After a rejection the
    /// session is over: write the reply, then close the connection.
    pub fn accept_auth(&mut self, accepted: bool) -> Result<&'static [u8], NotAwaitingAuth> {
        if self.state != State::AuthPending {
            return Err(NotAwaitingAuth);
        }
        // Forget the password once it has been judged.
        self.buf.fill(0);
        if accepted {
            self.state = State::Reading(Message::Request);
            Ok(&[AUTH_VERSION, AUTH_SUCCESS])
        } else {
            //# RFC 1929 §2: "If the server returns a `failure' (STATUS value other than
            //# X'00') status, it MUST close the connection."
            self.state = State::Finished;
            Ok(&[AUTH_VERSION, AUTH_FAILURE])
        }
    }

    /// Appends as much of `input` as fits to the message buffer; returns how much.
    fn buffer(&mut self, input: &[u8]) -> usize {
        let room = self.buf.get_mut(self.len..).unwrap_or_default();
        let copied = room.len().min(input.len());
        for (slot, byte) in room.iter_mut().zip(input) {
            *slot = *byte;
        }
        self.len += copied;
        copied
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("state", &self.state)
            .field("buffered", &self.len)
            .finish_non_exhaustive()
    }
}

fn expect_version(expected: u8, found: u8) -> Result<(), Socks5Error> {
    if found == expected {
        Ok(())
    } else {
        Err(Socks5Error::BadVersion { expected, found })
    }
}

/// `VER NMETHODS METHODS` (RFC 1928 §3): picks a method, or refuses.
fn decode_greeting(config: Config, message: &mut Reader<'_>) -> Result<Step<'static>, Stop> {
    expect_version(VERSION, message.u8()?)?;
    let count = message.u8()?;
    let methods = message.bytes(usize::from(count))?;
    let (action, next) = match select_method(config, methods) {
        Some(METHOD_USERNAME_PASSWORD) => (
            Action::Send(&[VERSION, METHOD_USERNAME_PASSWORD]),
            State::Reading(Message::Auth),
        ),
        Some(_) => (
            Action::Send(&[VERSION, METHOD_NO_AUTH]),
            State::Reading(Message::Request),
        ),
        //# RFC 1928 §3: "If the selected METHOD is X'FF', none of the methods listed by the
        //# client are acceptable, and the client MUST close the connection."
        None => (
            Action::Close {
                reply: &[VERSION, METHOD_NONE_ACCEPTABLE],
                reason: Refusal::NoAcceptableMethod,
            },
            State::Finished,
        ),
    };
    Ok(Step {
        action,
        next,
        len: message.position(),
    })
}

/// The method to use among those the client offered, username/password first.
///
/// A greeting with no methods (NMETHODS 0, which RFC 1928 does not allow) offers nothing
/// acceptable, so it gets X'FF' rather than an abrupt close.
fn select_method(config: Config, offered: &[u8]) -> Option<u8> {
    let offers = |method| offered.contains(&method);
    if config.username_password && offers(METHOD_USERNAME_PASSWORD) {
        Some(METHOD_USERNAME_PASSWORD)
    } else if config.no_auth && offers(METHOD_NO_AUTH) {
        Some(METHOD_NO_AUTH)
    } else {
        None
    }
}

/// `VER ULEN UNAME PLEN PASSWD` (RFC 1929 §2): hands the credentials out.
///
/// ULEN and PLEN of zero are accepted although RFC 1929 gives both fields "1 to 255"
/// octets: some clients send an empty password, and a clean STATUS failure from the
/// caller's verdict serves a client better than a dropped connection.
fn decode_auth<'a>(message: &mut Reader<'a>) -> Result<Step<'a>, Stop> {
    expect_version(AUTH_VERSION, message.u8()?)?;
    let username_len = message.u8()?;
    let username = message.bytes(usize::from(username_len))?;
    let password_len = message.u8()?;
    let password = message.bytes(usize::from(password_len))?;
    Ok(Step {
        action: Action::Authenticate(Credentials { username, password }),
        next: State::AuthPending,
        len: message.position(),
    })
}

/// `VER CMD RSV ATYP DST.ADDR DST.PORT` (RFC 1928 §4): hands the request out, or refuses.
///
/// A bad command is reported before a bad address. A refusal comes once the whole request
/// has been read, except after an unknown ATYP, which leaves the length unknown.
fn decode_request(message: &mut Reader<'_>) -> Result<Step<'static>, Stop> {
    expect_version(VERSION, message.u8()?)?;
    let cmd = message.u8()?;
    //# RFC 1928 §3: "Where a given octet must take on a specific value, the syntax X'hh'
    //# is used to denote the value of the single octet in that field."
    // RSV is drawn as X'00', so clients must send zero; veil does not enforce it on
    // receipt, and ignores the octet as receivers usually do with reserved fields.
    let _reserved = message.u8()?;
    let target = Target::decode(message);
    let refusal = match (Command::from_code(cmd), target) {
        (_, Err(TargetError::Truncated)) => return Err(Stop::Incomplete),
        (Some(command), Ok(target)) => {
            return Ok(Step {
                action: Action::Request(Request { command, target }),
                next: State::Finished,
                len: message.position(),
            });
        }
        (None, _) => Refusal::CommandNotSupported(cmd),
        (Some(_), Err(TargetError::UnsupportedType(atyp))) => {
            Refusal::AddressTypeNotSupported(atyp)
        }
        (Some(_), Err(TargetError::InvalidDomain(e))) => Refusal::InvalidDomain(e),
    };
    Ok(Step {
        action: Action::Close {
            reply: refusal_reply(refusal),
            reason: refusal,
        },
        next: State::Finished,
        len: message.position(),
    })
}

/// The fixed reply for a refused request: the REP code, and `0.0.0.0:0`.
fn refusal_reply(refusal: Refusal) -> &'static [u8] {
    const COMMAND_NOT_SUPPORTED: [u8; 10] = failure_reply_bytes(ReplyCode::CommandNotSupported);
    const ADDRESS_TYPE_NOT_SUPPORTED: [u8; 10] =
        failure_reply_bytes(ReplyCode::AddressTypeNotSupported);
    const HOST_UNREACHABLE: [u8; 10] = failure_reply_bytes(ReplyCode::HostUnreachable);
    match refusal {
        Refusal::CommandNotSupported(_) => &COMMAND_NOT_SUPPORTED,
        Refusal::AddressTypeNotSupported(_) => &ADDRESS_TYPE_NOT_SUPPORTED,
        Refusal::InvalidDomain(_) => &HOST_UNREACHABLE,
        Refusal::NoAcceptableMethod => &[VERSION, METHOD_NONE_ACCEPTABLE],
    }
}
