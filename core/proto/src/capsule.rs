//! The Capsule Protocol (RFC 9297 §3.2).
//!
//! ```text
//! Capsule {
//!   Capsule Type (i),
//!   Capsule Length (i),
//!   Capsule Value (..),
//! }
//! ```
//!
//! Three layers, pick the one that fits:
//!
//! - [`Decoder`] turns stream bytes, in any chunking, into [`Event`]s that borrow the input:
//!   a header, value chunks, an end. It never copies a value byte and never allocates, so a
//!   value of any length streams through. Capsules of a type the configuration does not
//!   know are skipped without a trace.
//! - [`CapsuleAssembler`] (fixed capacity, no alloc) and `VecCapsuleAssembler` (with
//!   `alloc`) yield whole known [`Capsule`]s. When a capsule arrives in one piece they hand
//!   out a slice of the input; only capsules split across reads are copied.
//! - Encoders: [`encode_header`] for any capsule, [`encode_datagram`] and
//!   [`encode_datagram_header`] for DATAGRAM capsules (RFC 9297 §3.5).
//!
//! Every decoding error means the data stream is malformed (RFC 9297 §3.3): the engine
//! aborts the stream.

use core::fmt;

use crate::cursor::{Reader, Writer};
use crate::datagram::{self, ContextDatagram, PayloadError};
use crate::error::{BufferTooSmall, Truncated};
use crate::varint::VarInt;

/// Capsule types veil knows, and the sets each protocol understands.
pub mod types {
    use crate::varint::VarInt;

    /// DATAGRAM (RFC 9297 §3.5).
    pub const DATAGRAM: VarInt = VarInt::from_u32(0x00);
    /// `ADDRESS_ASSIGN` (RFC 9484 §4.7.1).
    pub const ADDRESS_ASSIGN: VarInt = VarInt::from_u32(0x01);
    /// `ADDRESS_REQUEST` (RFC 9484 §4.7.2).
    pub const ADDRESS_REQUEST: VarInt = VarInt::from_u32(0x02);
    /// `ROUTE_ADVERTISEMENT` (RFC 9484 §4.7.3).
    pub const ROUTE_ADVERTISEMENT: VarInt = VarInt::from_u32(0x03);

    /// The types a CONNECT-UDP stream understands (RFC 9298 defines none of its own).
    pub const CONNECT_UDP: &[VarInt] = &[DATAGRAM];
    /// The types a CONNECT-IP stream understands (RFC 9484 §4.7).
    pub const CONNECT_IP: &[VarInt] = &[
        DATAGRAM,
        ADDRESS_ASSIGN,
        ADDRESS_REQUEST,
        ROUTE_ADVERTISEMENT,
    ];
}

/// The longest DATAGRAM capsule value CONNECT-UDP can use: a Context ID (at most 8 bytes)
/// and a UDP payload of at most [`datagram::MAX_UDP_PAYLOAD_LEN`] bytes.
pub const MAX_UDP_DATAGRAM_VALUE_LEN: u64 =
    datagram::MAX_UDP_PAYLOAD_LEN as u64 + VarInt::MAX_LEN as u64;

/// The longest capsule header: an 8-byte type and an 8-byte length.
const MAX_HEADER_LEN: usize = 2 * VarInt::MAX_LEN;

/// What a [`Decoder`] treats as known, and how long a known capsule may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Capsule types reported as events; every other type is skipped.
    pub known_types: &'static [VarInt],
    /// The longest value a known capsule may declare; longer is [`CapsuleError::TooLong`].
    /// Unknown capsules are skipped whatever their length.
    pub max_value_len: u64,
}

impl DecoderConfig {
    /// CONNECT-UDP: DATAGRAM capsules only, as long as a maximal UDP payload needs.
    //# RFC 9297 §3.5: "If an incoming DATAGRAM Capsule has a length that is known to be so
    //# large as to not be usable, the implementation SHOULD discard the Capsule without
    //# buffering its contents into memory."
    pub const CONNECT_UDP: Self = Self::new(types::CONNECT_UDP, MAX_UDP_DATAGRAM_VALUE_LEN);

    /// Knows `known_types`, whose values may be up to `max_value_len` bytes.
    pub const fn new(known_types: &'static [VarInt], max_value_len: u64) -> Self {
        Self {
            known_types,
            max_value_len,
        }
    }

    fn is_known(&self, capsule_type: VarInt) -> bool {
        self.known_types.contains(&capsule_type)
    }
}

/// One step of a capsule stream, as reported by [`Decoder::decode`].
///
/// A known capsule is always `Header`, then zero or more `Value` chunks whose lengths add
/// up to `value_len`, then `End`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A known capsule begins.
    Header {
        /// Its type, one of [`DecoderConfig::known_types`].
        capsule_type: VarInt,
        /// Its value length, at most [`DecoderConfig::max_value_len`].
        value_len: u64,
    },
    /// The next bytes of the current capsule's value, borrowed from the input; never empty.
    Value(&'a [u8]),
    /// The current capsule's value is complete.
    End,
}

/// An incremental, allocation-free capsule stream decoder.
///
/// Feed it the stream's bytes as they arrive, in any chunking:
///
/// ```
/// # use veil_proto::capsule::{Decoder, DecoderConfig, Event};
/// let mut decoder = Decoder::new(DecoderConfig::CONNECT_UDP);
/// let mut events = 0;
/// for mut input in [&[0x00, 0x03, 0x00][..], &[0xa1, 0xa2]] {
///     loop {
///         let (used, event) = decoder.decode(input)?;
///         input = &input[used..];
///         let Some(event) = event else { break };
///         events += 1; // handle `event`
///     }
/// }
/// decoder.finish()?; // at end of stream
/// assert_eq!(events, 4); // Header, Value([0x00, 0xa1]), Value([0xa2]), End
/// # Ok::<(), veil_proto::capsule::CapsuleError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    config: DecoderConfig,
    state: State,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Between capsules (`have == 0`) or inside a header split across inputs, whose first
    /// `have` bytes are kept in `partial`.
    Header {
        partial: [u8; MAX_HEADER_LEN],
        have: usize,
    },
    /// Inside the value of a known capsule.
    Value {
        capsule_type: VarInt,
        remaining: u64,
    },
    /// Inside the value of an unknown capsule, being dropped.
    Skip {
        capsule_type: VarInt,
        remaining: u64,
    },
    /// A known capsule's value is complete; `End` not yet reported.
    End,
    /// An error was reported; it is reported again on every call.
    Failed(CapsuleError),
}

impl State {
    const IDLE: Self = Self::Header {
        partial: [0; MAX_HEADER_LEN],
        have: 0,
    };
}

impl Decoder {
    /// A decoder at the start of a capsule stream.
    pub const fn new(config: DecoderConfig) -> Self {
        Self {
            config,
            state: State::IDLE,
        }
    }

    /// The configuration this decoder was made with.
    pub const fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Consumes bytes from the front of `input` up to the next event.
    ///
    /// - `Ok((used, Some(event)))`: handle `event`, then call again with `&input[used..]`
    ///   (even if that is empty: an `End` may still be due).
    /// - `Ok((used, None))`: all of `input` was used (`used == input.len()`); call again
    ///   when more bytes arrive.
    /// - `Err(e)`: the stream is malformed; every later call returns `e` again.
    ///
    /// Unknown capsules are consumed silently within the same call. `Value` chunks are
    /// slices of `input`, so no value byte is copied.
    pub fn decode<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<Event<'a>>), CapsuleError> {
        let mut used = 0;
        loop {
            let rest = input.get(used..).unwrap_or_default();
            match &mut self.state {
                State::Failed(e) => return Err(*e),
                State::End => {
                    self.state = State::IDLE;
                    return Ok((used, Some(Event::End)));
                }
                _ if rest.is_empty() => return Ok((used, None)),
                State::Value {
                    capsule_type,
                    remaining,
                } => {
                    let (chunk, left) = take(rest, *remaining);
                    self.state = if left == 0 {
                        State::End
                    } else {
                        State::Value {
                            capsule_type: *capsule_type,
                            remaining: left,
                        }
                    };
                    return Ok((used + chunk.len(), Some(Event::Value(chunk))));
                }
                State::Skip { remaining, .. } => {
                    let (skipped, left) = take(rest, *remaining);
                    used += skipped.len();
                    if left == 0 {
                        self.state = State::IDLE;
                    } else {
                        *remaining = left;
                    }
                }
                State::Header { partial, have } => {
                    let Some((taken, capsule_type, value_len)) = read_header(partial, have, rest)
                    else {
                        return Ok((input.len(), None));
                    };
                    used += taken;
                    match self.start_capsule(capsule_type, value_len) {
                        Ok(Some(event)) => return Ok((used, Some(event))),
                        Ok(None) => {}
                        Err(e) => {
                            self.state = State::Failed(e);
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    /// Checks, at the end of the stream, that no capsule was cut short.
    ///
    /// Call it once the stream has ended cleanly and [`Decoder::decode`] has returned
    /// `None`.
    //# RFC 9297 §3.3: "If the receive side of a stream carrying Capsules is terminated
    //# cleanly (for example, in HTTP/3 this is defined as receiving a QUIC STREAM frame with
    //# the FIN bit set) and the last Capsule on the stream was truncated, this MUST be
    //# treated as if it were a malformed or incomplete message."
    pub fn finish(&self) -> Result<(), CapsuleError> {
        match self.state {
            State::Header { have: 0, .. } | State::End => Ok(()),
            State::Header { .. } => Err(CapsuleError::TruncatedHeader),
            State::Value {
                capsule_type,
                remaining,
            }
            | State::Skip {
                capsule_type,
                remaining,
            } => Err(CapsuleError::TruncatedValue {
                capsule_type,
                missing: remaining,
            }),
            State::Failed(e) => Err(e),
        }
    }

    /// Enters the capsule whose header was just read; returns the event to report, if any.
    fn start_capsule(
        &mut self,
        capsule_type: VarInt,
        value_len: u64,
    ) -> Result<Option<Event<'static>>, CapsuleError> {
        //# RFC 9297 §3.2: "Endpoints that receive a Capsule with an unknown Capsule Type MUST
        //# silently drop that Capsule and skip over it to parse the next Capsule."
        if !self.config.is_known(capsule_type) {
            self.state = if value_len == 0 {
                State::IDLE
            } else {
                State::Skip {
                    capsule_type,
                    remaining: value_len,
                }
            };
            return Ok(None);
        }
        if value_len > self.config.max_value_len {
            return Err(CapsuleError::TooLong {
                capsule_type,
                value_len,
                max: self.config.max_value_len,
            });
        }
        self.state = if value_len == 0 {
            State::End
        } else {
            State::Value {
                capsule_type,
                remaining: value_len,
            }
        };
        Ok(Some(Event::Header {
            capsule_type,
            value_len,
        }))
    }
}

/// Splits off up to `remaining` bytes of `input`; returns them and how many stay to come.
fn take(input: &[u8], remaining: u64) -> (&[u8], u64) {
    let n = usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
    let (chunk, _) = input.split_at(n);
    (chunk, remaining - n as u64)
}

/// Reads a capsule header made of the `have` bytes kept in `partial` followed by `input`.
///
/// Returns the bytes taken from `input`, the type and the length (the caller then replaces
/// the state, which forgets `partial`); or `None` when `input` ran out first, in which case
/// all of it was kept in `partial`.
fn read_header(
    partial: &mut [u8; MAX_HEADER_LEN],
    have: &mut usize,
    input: &[u8],
) -> Option<(usize, VarInt, u64)> {
    if *have == 0 {
        if let Ok(header) = parse_header(input) {
            return Some(header);
        }
    }
    let mut reader = Reader::new(input);
    loop {
        let kept = partial.get(..*have).unwrap_or_default();
        let needed = header_len_so_far(kept);
        if *have == needed {
            let (_, capsule_type, value_len) = parse_header(kept).ok()?;
            return Some((reader.position(), capsule_type, value_len));
        }
        let n = (needed - *have).min(reader.remaining());
        if n == 0 {
            return None;
        }
        let dst = partial.get_mut(*have..*have + n)?;
        dst.copy_from_slice(reader.bytes(n).ok()?);
        *have += n;
    }
}

/// Parses a whole header from the front of `buf`: its length, the type and the value length.
fn parse_header(buf: &[u8]) -> Result<(usize, VarInt, u64), Truncated> {
    let mut reader = Reader::new(buf);
    let capsule_type = reader.varint()?;
    let value_len = reader.varint()?;
    Ok((reader.position(), capsule_type, value_len.into_inner()))
}

/// How long the header starting with `kept` is, as far as `kept` tells: exact once the first
/// byte of each varint is known, otherwise the length needed to learn more.
fn header_len_so_far(kept: &[u8]) -> usize {
    let Some(&first) = kept.first() else {
        return 1;
    };
    let type_len = VarInt::len_from_first_byte(first);
    match kept.get(type_len) {
        Some(&len_first) => type_len + VarInt::len_from_first_byte(len_first),
        None => type_len + 1,
    }
}

/// Why a capsule stream is malformed. The engine aborts the stream (RFC 9297 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CapsuleError {
    /// A known capsule declares a value longer than the configured maximum.
    TooLong {
        /// The capsule's type.
        capsule_type: VarInt,
        /// The length it declared.
        value_len: u64,
        /// The longest allowed.
        max: u64,
    },
    /// The stream ended inside a capsule header.
    TruncatedHeader,
    /// The stream ended inside a capsule value.
    TruncatedValue {
        /// The capsule's type (known or not).
        capsule_type: VarInt,
        /// Value bytes that never came.
        missing: u64,
    },
}

impl fmt::Display for CapsuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong {
                capsule_type,
                value_len,
                max,
            } => write!(
                f,
                "capsule type {:#x} declares {value_len} bytes, more than the {max} allowed",
                capsule_type.into_inner()
            ),
            Self::TruncatedHeader => f.write_str("stream ended inside a capsule header"),
            Self::TruncatedValue {
                capsule_type,
                missing,
            } => write!(
                f,
                "stream ended {missing} bytes short of the end of a capsule of type {:#x}",
                capsule_type.into_inner()
            ),
        }
    }
}

impl core::error::Error for CapsuleError {}

/// A whole known capsule, from [`CapsuleAssembler`] or `VecCapsuleAssembler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capsule<'a> {
    /// Its type, one of the configured known types.
    pub capsule_type: VarInt,
    /// Its complete value.
    pub value: &'a [u8],
}

impl<'a> Capsule<'a> {
    /// For a DATAGRAM capsule on a CONNECT-UDP stream, its Context ID and payload; `None`
    /// for any other capsule type.
    ///
    /// An error means: abort the stream (RFC 9298 §5).
    pub fn udp_datagram(&self) -> Option<Result<ContextDatagram<'a>, PayloadError>> {
        (self.capsule_type == types::DATAGRAM).then(|| ContextDatagram::decode_udp(self.value))
    }
}

/// Assembles whole known capsules in a fixed buffer of `N` bytes, without allocating.
///
/// Capsules longer than `N` (or than the configured maximum, whichever is smaller) are
/// [`CapsuleError::TooLong`]. A capsule that arrives within one input is returned as a slice
/// of that input; one split across inputs is gathered in the buffer.
#[derive(Debug, Clone)]
pub struct CapsuleAssembler<const N: usize> {
    assembly: Assembly<heapless::Vec<u8, N>>,
}

impl<const N: usize> CapsuleAssembler<N> {
    /// An assembler at the start of a capsule stream.
    pub fn new(config: DecoderConfig) -> Self {
        let max_value_len =
            u64::try_from(N).map_or(config.max_value_len, |n| n.min(config.max_value_len));
        Self {
            assembly: Assembly::new(
                DecoderConfig::new(config.known_types, max_value_len),
                heapless::Vec::new(),
            ),
        }
    }

    /// Consumes bytes from the front of `input` up to the end of the next known capsule.
    ///
    /// Same contract as [`Decoder::decode`]: `Some` means call again with
    /// `&input[used..]`; `None` means all of `input` was used; errors are sticky.
    pub fn decode<'a>(
        &'a mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<Capsule<'a>>), CapsuleError> {
        self.assembly.decode(input)
    }

    /// Checks, at the end of the stream, that no capsule was cut short.
    pub fn finish(&self) -> Result<(), CapsuleError> {
        self.assembly.decoder.finish()
    }
}

/// Assembles whole known capsules in a growable buffer, bounded by the configured maximum.
///
/// The buffer grows with the bytes actually received, never ahead of them, and is kept
/// between capsules. Like [`CapsuleAssembler`], it hands out input slices for capsules that
/// arrive in one piece.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone)]
pub struct VecCapsuleAssembler {
    assembly: Assembly<alloc::vec::Vec<u8>>,
}

#[cfg(feature = "alloc")]
impl VecCapsuleAssembler {
    /// An assembler at the start of a capsule stream.
    pub fn new(config: DecoderConfig) -> Self {
        Self {
            assembly: Assembly::new(config, alloc::vec::Vec::new()),
        }
    }

    /// Same as [`CapsuleAssembler::decode`].
    pub fn decode<'a>(
        &'a mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<Capsule<'a>>), CapsuleError> {
        self.assembly.decode(input)
    }

    /// Checks, at the end of the stream, that no capsule was cut short.
    pub fn finish(&self) -> Result<(), CapsuleError> {
        self.assembly.decoder.finish()
    }
}

/// Where an assembler gathers a value split across inputs.
trait ValueBuffer {
    fn clear(&mut self);
    /// Appends `chunk`; `false` if it does not fit.
    fn push(&mut self, chunk: &[u8]) -> bool;
    fn as_slice(&self) -> &[u8];
}

impl<const N: usize> ValueBuffer for heapless::Vec<u8, N> {
    fn clear(&mut self) {
        heapless::Vec::clear(self);
    }

    fn push(&mut self, chunk: &[u8]) -> bool {
        self.extend_from_slice(chunk).is_ok()
    }

    fn as_slice(&self) -> &[u8] {
        heapless::Vec::as_slice(self)
    }
}

#[cfg(feature = "alloc")]
impl ValueBuffer for alloc::vec::Vec<u8> {
    fn clear(&mut self) {
        alloc::vec::Vec::clear(self);
    }

    fn push(&mut self, chunk: &[u8]) -> bool {
        self.extend_from_slice(chunk);
        true
    }

    fn as_slice(&self) -> &[u8] {
        alloc::vec::Vec::as_slice(self)
    }
}

/// The assembling logic both assemblers share.
#[derive(Debug, Clone)]
struct Assembly<B> {
    decoder: Decoder,
    capsule_type: VarInt,
    value_len: u64,
    buf: B,
}

impl<B: ValueBuffer> Assembly<B> {
    const fn new(config: DecoderConfig, buf: B) -> Self {
        Self {
            decoder: Decoder::new(config),
            capsule_type: VarInt::ZERO,
            value_len: 0,
            buf,
        }
    }

    fn decode<'a>(
        &'a mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<Capsule<'a>>), CapsuleError> {
        let mut used = 0;
        let mut whole_value = None;
        loop {
            let (n, event) = self.decoder.decode(input.get(used..).unwrap_or_default())?;
            used += n;
            match event {
                None => return Ok((used, None)),
                Some(Event::Header {
                    capsule_type,
                    value_len,
                }) => {
                    self.capsule_type = capsule_type;
                    self.value_len = value_len;
                    self.buf.clear();
                }
                // The whole value in one chunk: hand out the input, copy nothing.
                Some(Event::Value(chunk)) if chunk.len() as u64 == self.value_len => {
                    whole_value = Some(chunk);
                }
                Some(Event::Value(chunk)) => {
                    if !self.buf.push(chunk) {
                        return Err(CapsuleError::TooLong {
                            capsule_type: self.capsule_type,
                            value_len: self.value_len,
                            max: self.decoder.config().max_value_len,
                        });
                    }
                }
                Some(Event::End) => {
                    let value = whole_value.unwrap_or_else(|| self.buf.as_slice());
                    return Ok((
                        used,
                        Some(Capsule {
                            capsule_type: self.capsule_type,
                            value,
                        }),
                    ));
                }
            }
        }
    }
}

/// Writes a capsule header (type and length) for a value of `value_len` bytes.
///
/// The caller writes the value right after. Returns the header's length. A `value_len`
/// above 2^62 − 1 cannot be encoded and is reported as needing `usize::MAX` bytes.
pub fn encode_header(
    capsule_type: VarInt,
    value_len: usize,
    out: &mut Writer<'_>,
) -> Result<usize, BufferTooSmall> {
    let len = VarInt::try_from(value_len).map_err(|_| BufferTooSmall {
        needed: usize::MAX,
        available: out.remaining(),
    })?;
    let header_len = capsule_type.encoded_len() + len.encoded_len();
    out.reserve(header_len)?;
    out.varint(capsule_type)?;
    out.varint(len)?;
    Ok(header_len)
}

/// Bytes [`encode_datagram_header`] writes: DATAGRAM type, length and Context ID.
pub fn datagram_header_len(context_id: VarInt, payload_len: usize) -> usize {
    let value_len = context_id.encoded_len().saturating_add(payload_len);
    let len_len = VarInt::try_from(value_len).map_or(VarInt::MAX_LEN, VarInt::encoded_len);
    types::DATAGRAM.encoded_len() + len_len + context_id.encoded_len()
}

/// Writes the front of a DATAGRAM capsule (RFC 9297 §3.5) carrying `payload_len` bytes
/// under `context_id`: type, length and Context ID. The caller writes the payload right
/// after. Returns the bytes written.
///
/// A Context ID 0 payload longer than [`datagram::MAX_UDP_PAYLOAD_LEN`] is refused.
pub fn encode_datagram_header(
    context_id: VarInt,
    payload_len: usize,
    out: &mut [u8],
) -> Result<usize, DatagramEncodeError> {
    let mut writer = Writer::new(out);
    write_datagram_header(&mut writer, context_id, payload_len, 0)?;
    Ok(writer.finish())
}

/// Writes a whole DATAGRAM capsule carrying `payload` under `context_id` into `out` and
/// returns its length. For CONNECT-UDP, `payload` is a UDP payload and `context_id` is
/// [`datagram::UDP_PAYLOAD_CONTEXT_ID`].
pub fn encode_datagram(
    context_id: VarInt,
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, DatagramEncodeError> {
    let mut writer = Writer::new(out);
    write_datagram_header(&mut writer, context_id, payload.len(), payload.len())?;
    writer.bytes(payload)?;
    Ok(writer.finish())
}

/// Writes type, length and Context ID, after checking that they and `then` more bytes fit.
fn write_datagram_header(
    writer: &mut Writer<'_>,
    context_id: VarInt,
    payload_len: usize,
    then: usize,
) -> Result<(), DatagramEncodeError> {
    if datagram::exceeds_udp_limit(context_id, payload_len) {
        return Err(DatagramEncodeError::UdpPayloadTooLong(payload_len));
    }
    let header_len = datagram_header_len(context_id, payload_len);
    writer.reserve(header_len.saturating_add(then))?;
    let value_len = context_id.encoded_len().saturating_add(payload_len);
    encode_header(types::DATAGRAM, value_len, writer)?;
    writer.varint(context_id)?;
    Ok(())
}

/// Why a DATAGRAM capsule could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatagramEncodeError {
    /// A Context ID 0 payload longer than [`datagram::MAX_UDP_PAYLOAD_LEN`]; holds its
    /// length.
    UdpPayloadTooLong(usize),
    /// The output is too small.
    BufferTooSmall(BufferTooSmall),
}

impl From<BufferTooSmall> for DatagramEncodeError {
    fn from(e: BufferTooSmall) -> Self {
        Self::BufferTooSmall(e)
    }
}

impl fmt::Display for DatagramEncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UdpPayloadTooLong(len) => write!(
                f,
                "UDP payload of {len} bytes exceeds the {}-byte limit",
                datagram::MAX_UDP_PAYLOAD_LEN
            ),
            Self::BufferTooSmall(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for DatagramEncodeError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::BufferTooSmall(e) => Some(e),
            Self::UdpPayloadTooLong(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn vi(v: u64) -> VarInt {
        VarInt::new(v).unwrap()
    }

    /// A DATAGRAM capsule carrying a CONNECT-UDP payload.
    const DATAGRAM_CAPSULE: &[u8] = &[
        0x00, // Capsule Type: DATAGRAM
        0x08, // Capsule Length: 8
        0x00, // Context ID 0: a UDP payload
        0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, // UDP payload
    ];

    /// A reserved capsule type (0x29 * N + 0x17, RFC 9297 §5.4, N = 0) with a 3-byte value.
    const GREASE_CAPSULE: &[u8] = &[0x17, 0x03, 0xee, 0xee, 0xee];

    /// Whether `a` and `b` are the same memory, not merely equal bytes.
    fn same_bytes(a: &[u8], b: &[u8]) -> bool {
        a.as_ptr() == b.as_ptr() && a.len() == b.len()
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Header(u64, u64),
        Value(Vec<u8>),
        End,
    }

    /// Feeds `chunks` in order, draining every event; returns them and `finish()`'s verdict.
    fn run(config: DecoderConfig, chunks: &[&[u8]]) -> (Vec<Owned>, Result<(), CapsuleError>) {
        let mut decoder = Decoder::new(config);
        let mut events = Vec::new();
        for &chunk in chunks {
            let mut input = chunk;
            loop {
                match decoder.decode(input) {
                    Err(e) => return (events, Err(e)),
                    Ok((used, event)) => {
                        input = &input[used..];
                        match event {
                            None => {
                                assert!(input.is_empty(), "None before all input was used");
                                break;
                            }
                            Some(Event::Header {
                                capsule_type,
                                value_len,
                            }) => events.push(Owned::Header(capsule_type.into_inner(), value_len)),
                            Some(Event::Value(v)) => events.push(Owned::Value(v.to_vec())),
                            Some(Event::End) => events.push(Owned::End),
                        }
                    }
                }
            }
        }
        (events, decoder.finish())
    }

    #[test]
    fn decodes_a_datagram_capsule_in_one_piece() {
        let (events, end) = run(DecoderConfig::CONNECT_UDP, &[DATAGRAM_CAPSULE]);
        assert_eq!(
            events,
            [
                Owned::Header(0, 8),
                Owned::Value(DATAGRAM_CAPSULE[2..].to_vec()),
                Owned::End
            ]
        );
        assert_eq!(end, Ok(()));
    }

    #[test]
    fn value_chunks_are_slices_of_the_input() {
        let mut decoder = Decoder::new(DecoderConfig::CONNECT_UDP);
        assert_eq!(
            decoder.decode(DATAGRAM_CAPSULE),
            Ok((
                2,
                Some(Event::Header {
                    capsule_type: types::DATAGRAM,
                    value_len: 8
                })
            ))
        );
        let (used, event) = decoder.decode(&DATAGRAM_CAPSULE[2..]).unwrap();
        let Some(Event::Value(chunk)) = event else {
            panic!("expected a value chunk, got {event:?}")
        };
        assert_eq!(used, 8);
        assert!(same_bytes(chunk, &DATAGRAM_CAPSULE[2..]));
        // The end is due even though no input is left.
        assert_eq!(decoder.decode(&[]), Ok((0, Some(Event::End))));
        assert_eq!(decoder.decode(&[]), Ok((0, None)));
    }

    #[test]
    fn one_byte_at_a_time_gives_one_byte_chunks() {
        let bytes: Vec<&[u8]> = DATAGRAM_CAPSULE.chunks(1).collect();
        let (events, end) = run(DecoderConfig::CONNECT_UDP, &bytes);
        let mut expected = std::vec![Owned::Header(0, 8)];
        expected.extend(
            DATAGRAM_CAPSULE[2..]
                .iter()
                .map(|&b| Owned::Value(std::vec![b])),
        );
        expected.push(Owned::End);
        assert_eq!(events, expected);
        assert_eq!(end, Ok(()));
    }

    #[test]
    fn headers_split_anywhere_are_reassembled() {
        let capsule = [
            0xc0, 0, 0, 0, 0, 0, 0, 0x01, // Capsule Type 1 on eight bytes
            0x80, 0, 0, 0x01, // Capsule Length 1 on four bytes
            0x42, // value
        ];
        for split in 1..capsule.len() {
            let (head, tail) = capsule.split_at(split);
            let (events, end) = run(DecoderConfig::new(types::CONNECT_IP, 16), &[head, tail]);
            assert_eq!(
                events,
                [
                    Owned::Header(1, 1),
                    Owned::Value(std::vec![0x42]),
                    Owned::End
                ],
                "split at {split}"
            );
            assert_eq!(end, Ok(()));
        }
    }

    #[test]
    fn unknown_capsules_are_dropped_silently() {
        let address_request = [0x02, 0x00]; // unknown to CONNECT-UDP
        let stream = [GREASE_CAPSULE, &address_request, DATAGRAM_CAPSULE].concat();
        let (events, end) = run(DecoderConfig::CONNECT_UDP, &[&stream]);
        assert_eq!(
            events,
            [
                Owned::Header(0, 8),
                Owned::Value(DATAGRAM_CAPSULE[2..].to_vec()),
                Owned::End
            ]
        );
        assert_eq!(end, Ok(()));
    }

    #[test]
    fn unknown_capsule_of_any_length_is_skipped_without_buffering() {
        let header = [0x17, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]; // 2^62-1 bytes
        let zeros = [0u8; 4096];
        let mut decoder = Decoder::new(DecoderConfig::CONNECT_UDP);
        let mut assembler = CapsuleAssembler::<16>::new(DecoderConfig::CONNECT_UDP);
        assert_eq!(decoder.decode(&header), Ok((9, None)));
        assert_eq!(assembler.decode(&header), Ok((9, None)));
        for _ in 0..256 {
            assert_eq!(decoder.decode(&zeros), Ok((4096, None)));
            assert_eq!(assembler.decode(&zeros), Ok((4096, None)));
        }
        let missing = VarInt::MAX.into_inner() - 256 * 4096;
        let truncated = Err(CapsuleError::TruncatedValue {
            capsule_type: vi(0x17),
            missing,
        });
        assert_eq!(decoder.finish(), truncated);
        assert_eq!(assembler.finish(), truncated);
    }

    #[test]
    fn zero_length_capsules() {
        let stream = [
            0x17, 0x00, // unknown, empty: nothing to report
            0x00, 0x00, // DATAGRAM, empty
        ];
        let (events, end) = run(DecoderConfig::CONNECT_UDP, &[&stream]);
        assert_eq!(events, [Owned::Header(0, 0), Owned::End]);
        assert_eq!(end, Ok(()));
    }

    #[test]
    fn known_capsule_longer_than_the_maximum_is_rejected_and_sticky() {
        let too_long = [0x00, 0x80, 0x01, 0x00, 0x00]; // DATAGRAM, 65536 bytes
        let error = CapsuleError::TooLong {
            capsule_type: types::DATAGRAM,
            value_len: 65_536,
            max: MAX_UDP_DATAGRAM_VALUE_LEN,
        };
        let mut decoder = Decoder::new(DecoderConfig::CONNECT_UDP);
        assert_eq!(decoder.decode(&too_long), Err(error));
        assert_eq!(decoder.decode(DATAGRAM_CAPSULE), Err(error));
        assert_eq!(decoder.finish(), Err(error));

        let longest = [0x00, 0x80, 0x00, 0xff, 0xff]; // DATAGRAM, 65535 bytes
        let mut decoder = Decoder::new(DecoderConfig::CONNECT_UDP);
        assert_eq!(
            decoder.decode(&longest),
            Ok((
                5,
                Some(Event::Header {
                    capsule_type: types::DATAGRAM,
                    value_len: 65_535
                })
            ))
        );
    }

    #[test]
    fn stream_ending_inside_a_capsule_is_truncated() {
        let cases: [(&[u8], CapsuleError); 4] = [
            (&[0x00], CapsuleError::TruncatedHeader),
            (&[0x40], CapsuleError::TruncatedHeader),
            (&[0x00, 0x80, 0x00], CapsuleError::TruncatedHeader),
            (
                &DATAGRAM_CAPSULE[..7],
                CapsuleError::TruncatedValue {
                    capsule_type: types::DATAGRAM,
                    missing: 3,
                },
            ),
        ];
        for (stream, error) in cases {
            let (_, end) = run(DecoderConfig::CONNECT_UDP, &[stream]);
            assert_eq!(end, Err(error), "{stream:02x?}");
        }
        assert_eq!(run(DecoderConfig::CONNECT_UDP, &[]).1, Ok(()));
    }

    #[test]
    fn finish_accepts_a_complete_capsule_whose_end_is_not_yet_drained() {
        let mut decoder = Decoder::new(DecoderConfig::CONNECT_UDP);
        decoder.decode(&[0x00, 0x00]).unwrap();
        assert_eq!(decoder.finish(), Ok(()));
    }

    #[test]
    fn assembler_borrows_whole_capsules_from_the_input() {
        let mut assembler = CapsuleAssembler::<8>::new(DecoderConfig::CONNECT_UDP);
        let (used, capsule) = assembler.decode(DATAGRAM_CAPSULE).unwrap();
        let capsule = capsule.unwrap();
        assert_eq!(used, DATAGRAM_CAPSULE.len());
        assert_eq!(capsule.capsule_type, types::DATAGRAM);
        assert!(
            same_bytes(capsule.value, &DATAGRAM_CAPSULE[2..]),
            "the value is the input itself, not a copy"
        );
    }

    #[test]
    fn assembler_gathers_split_capsules() {
        let mut assembler = CapsuleAssembler::<8>::new(DecoderConfig::CONNECT_UDP);
        assert_eq!(assembler.decode(&DATAGRAM_CAPSULE[..5]), Ok((5, None)));
        let (used, capsule) = assembler.decode(&DATAGRAM_CAPSULE[5..]).unwrap();
        assert_eq!(used, 5);
        assert_eq!(
            capsule,
            Some(Capsule {
                capsule_type: types::DATAGRAM,
                value: &DATAGRAM_CAPSULE[2..],
            })
        );
    }

    #[test]
    fn heapless_assembler_caps_length_at_its_capacity() {
        let mut assembler = CapsuleAssembler::<7>::new(DecoderConfig::CONNECT_UDP);
        assert_eq!(
            assembler.decode(DATAGRAM_CAPSULE),
            Err(CapsuleError::TooLong {
                capsule_type: types::DATAGRAM,
                value_len: 8,
                max: 7
            })
        );
    }

    #[test]
    fn assembler_skips_long_unknown_capsules_with_a_small_buffer() {
        let mut stream = std::vec![0x17, 0x80, 0x01, 0x86, 0xa0]; // unknown, 100000 bytes
        stream.resize(stream.len() + 100_000, 0xee);
        stream.extend_from_slice(DATAGRAM_CAPSULE);
        let mut assembler = CapsuleAssembler::<8>::new(DecoderConfig::CONNECT_UDP);
        let mut found = Vec::new();
        for chunk in stream.chunks(1000) {
            let mut input = chunk;
            loop {
                let (used, capsule) = assembler.decode(input).unwrap();
                input = &input[used..];
                let Some(capsule) = capsule else { break };
                found.push(capsule.value.to_vec());
            }
        }
        assert_eq!(found, [DATAGRAM_CAPSULE[2..].to_vec()]);
        assert_eq!(assembler.finish(), Ok(()));
    }

    #[test]
    fn datagram_capsule_value_splits_into_context_and_payload() {
        let capsule = Capsule {
            capsule_type: types::DATAGRAM,
            value: &DATAGRAM_CAPSULE[2..],
        };
        assert_eq!(
            capsule.udp_datagram(),
            Some(Ok(ContextDatagram {
                context_id: datagram::UDP_PAYLOAD_CONTEXT_ID,
                payload: &DATAGRAM_CAPSULE[3..],
            }))
        );
        let empty = Capsule {
            capsule_type: types::DATAGRAM,
            value: &[],
        };
        assert_eq!(
            empty.udp_datagram(),
            Some(Err(PayloadError::ContextIdTruncated))
        );
        let other = Capsule {
            capsule_type: types::ADDRESS_REQUEST,
            value: &[],
        };
        assert_eq!(other.udp_datagram(), None);
    }

    #[test]
    fn encodes_datagram_capsules() {
        let mut out = [0; 16];
        let len = encode_datagram(VarInt::ZERO, &DATAGRAM_CAPSULE[3..], &mut out).unwrap();
        assert_eq!(&out[..len], DATAGRAM_CAPSULE);
        let len = encode_datagram_header(VarInt::ZERO, 7, &mut out).unwrap();
        assert_eq!(&out[..len], &DATAGRAM_CAPSULE[..3]);
        assert_eq!(datagram_header_len(VarInt::ZERO, 7), 3);
    }

    #[test]
    fn datagram_header_grows_with_the_length_varint() {
        let mut out = [0; 8];
        // Value = Context ID 65 (two bytes) + 62 bytes = 64: a two-byte length.
        let len = encode_datagram_header(vi(65), 62, &mut out).unwrap();
        assert_eq!(&out[..len], &[0x00, 0x40, 0x40, 0x40, 0x41]);
        assert_eq!(datagram_header_len(vi(65), 62), 5);
    }

    #[test]
    fn datagram_encoders_refuse_what_cannot_be_sent() {
        let mut out = [0; 9];
        assert_eq!(
            encode_datagram(VarInt::ZERO, &[0xa1; 7], &mut out),
            Err(DatagramEncodeError::BufferTooSmall(BufferTooSmall {
                needed: 10,
                available: 9
            }))
        );
        assert_eq!(out, [0; 9], "nothing written on failure");
        assert_eq!(
            encode_datagram_header(VarInt::ZERO, datagram::MAX_UDP_PAYLOAD_LEN + 1, &mut out),
            Err(DatagramEncodeError::UdpPayloadTooLong(
                datagram::MAX_UDP_PAYLOAD_LEN + 1
            ))
        );
        // Only Context ID 0 carries UDP payloads; others have no such limit.
        assert_eq!(
            encode_datagram_header(vi(2), datagram::MAX_UDP_PAYLOAD_LEN + 1, &mut out),
            Ok(6)
        );
    }

    #[test]
    fn encode_header_writes_type_then_length() {
        let mut out = [0; 4];
        let mut writer = Writer::new(&mut out);
        assert_eq!(
            encode_header(types::ROUTE_ADVERTISEMENT, 300, &mut writer),
            Ok(3)
        );
        assert_eq!(writer.written(), &[0x03, 0x41, 0x2c]);
        assert_eq!(
            encode_header(types::DATAGRAM, 64, &mut writer),
            Err(BufferTooSmall {
                needed: 6,
                available: 4
            })
        );
    }

    #[test]
    fn udp_datagram_value_limit_matches_the_udp_payload_limit() {
        assert_eq!(MAX_UDP_DATAGRAM_VALUE_LEN, 65_535);
    }
}
