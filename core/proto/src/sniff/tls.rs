//! A TLS `ClientHello`, walked to its `server_name` extension.
//!
//! The walk reads each field once, in order, and decides from what it has read: the first
//! malformed field gives [`Sniffed::Nothing`], the end of the input before a decision
//! [`Sniffed::NeedMore`], the first `host_name` the answer. Fields after it are not read.
//! So the prefix property holds for both entry points: every prefix of an input sniffs to
//! [`Sniffed::NeedMore`] or to the same answer as the whole.
//!
//! Two framings share the walk ([`Framing`]): TLS over TCP carries the handshake message
//! in records ([`sniff`]); QUIC carries it bare, in CRYPTO frames that the caller has put
//! back in order ([`sniff_handshake`]).

use super::Sniffed;
use super::name::dns_name;

//# RFC 8446 §5.1: "enum { invalid(0), change_cipher_spec(20), alert(21), handshake(22),
//# application_data(23), (255) } ContentType;"
pub(super) const CONTENT_TYPE_HANDSHAKE: u8 = 22;
//# RFC 8446 §4: "enum { client_hello(1), server_hello(2), ... (255) } HandshakeType;"
const CLIENT_HELLO: u8 = 1;
//# RFC 8446 §4.2: "enum { server_name(0), /* RFC 6066 */ ... } ExtensionType;"
const SERVER_NAME: u16 = 0;
//# RFC 6066 §3: "enum { host_name(0), (255) } NameType;"
const HOST_NAME: u8 = 0;
//# RFC 8446 §5.1: "length: The length (in bytes) of the following TLSPlaintext.fragment.
//# The length MUST NOT exceed 2^14 bytes."
const MAX_FRAGMENT_LEN: usize = 1 << 14;
//# RFC 8446 §4.1.2: "opaque legacy_session_id<0..32>;"
const MAX_SESSION_ID_LEN: usize = 32;
const RANDOM_LEN: usize = 32;

/// Why the walk stopped without a name.
enum Stop {
    NeedMore,
    Nothing,
}

type Step<T> = Result<T, Stop>;

/// How the handshake message lies in the input.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// In TLS records (TLS over TCP).
    Records,
    /// Bare: the input is the handshake stream itself (QUIC's CRYPTO frames, RFC 9001 §4).
    Bare,
}

/// Sniffs input that starts with a handshake record.
pub(super) fn sniff(input: &[u8]) -> Sniffed<'_> {
    walk(input, Framing::Records)
}

/// Sniffs input that starts with the handshake message itself, without a record layer:
/// the handshake stream that QUIC's CRYPTO frames carry.
//# RFC 9001 §4: "QUIC carries TLS handshake data in CRYPTO frames [...]. Unlike TLS over
//# TCP, QUIC applications that want to send data do not send it using TLS Application
//# Data records."
#[cfg(feature = "quic")]
pub(super) fn sniff_handshake(input: &[u8]) -> Sniffed<'_> {
    walk(input, Framing::Bare)
}

fn walk(input: &[u8], framing: Framing) -> Sniffed<'_> {
    let mut message = Message {
        input,
        at: 0,
        // Bare input is one fragment as long as the input: `record_left` never runs out
        // before the input does, and a read past the input is `NeedMore` as in a record.
        record_left: match framing {
            Framing::Records => 0,
            Framing::Bare => usize::MAX,
        },
        framing,
    };
    match client_hello_server_name(&mut message) {
        Ok(name) => dns_name(name).map_or(Sniffed::Nothing, Sniffed::TlsServerName),
        Err(Stop::NeedMore) => Sniffed::NeedMore,
        Err(Stop::Nothing) => Sniffed::Nothing,
    }
}

/// The bytes of one handshake message, read across the records that carry it.
//# RFC 8446 §5.1: "Handshake messages MAY be coalesced into a single TLSPlaintext record
//# or fragmented across several records"
struct Message<'a> {
    input: &'a [u8],
    /// The next byte to read in `input`.
    at: usize,
    /// Bytes of the current record's fragment not read yet (bare input: `usize::MAX`).
    record_left: usize,
    framing: Framing,
}

impl<'a> Message<'a> {
    /// Reads the header of the next record, which must continue the handshake.
    //# RFC 8446 §5.1:
    //# struct {
    //#     ContentType type;
    //#     ProtocolVersion legacy_record_version;
    //#     uint16 length;
    //#     opaque fragment[TLSPlaintext.length];
    //# } TLSPlaintext;
    fn next_record(&mut self) -> Step<()> {
        let header = self.input.get(self.at..).unwrap_or(&[]);
        let byte = |i: usize| header.get(i).copied().ok_or(Stop::NeedMore);
        if byte(0)? != CONTENT_TYPE_HANDSHAKE {
            return Err(Stop::Nothing);
        }
        // legacy_record_version: 0x0301 in many first records, 0x0303 otherwise; any
        // 0x03xx, as SSL 3.0 and every TLS version spell it.
        if byte(1)? != 0x03 {
            return Err(Stop::Nothing);
        }
        byte(2)?;
        let len = usize::from(u16::from_be_bytes([byte(3)?, byte(4)?]));
        //# RFC 8446 §5.1: "Implementations MUST NOT send zero-length fragments of Handshake
        //# types, even if those fragments contain padding."
        if len == 0 || len > MAX_FRAGMENT_LEN {
            return Err(Stop::Nothing);
        }
        self.at += 5;
        self.record_left = len;
        Ok(())
    }

    /// Makes sure the current record has a byte left, opening the next one if not.
    fn ensure_record(&mut self) -> Step<()> {
        if self.record_left == 0 {
            if self.framing == Framing::Bare {
                return Err(Stop::Nothing); // not reached: 2^64 bytes read
            }
            self.next_record()?;
        }
        Ok(())
    }

    fn u8(&mut self) -> Step<u8> {
        self.ensure_record()?;
        let byte = *self.input.get(self.at).ok_or(Stop::NeedMore)?;
        self.at += 1;
        self.record_left -= 1;
        Ok(byte)
    }

    fn u16(&mut self) -> Step<usize> {
        Ok(usize::from(u16::from_be_bytes([self.u8()?, self.u8()?])))
    }

    fn u24(&mut self) -> Step<usize> {
        let bytes = [0, self.u8()?, self.u8()?, self.u8()?];
        usize::try_from(u32::from_be_bytes(bytes)).map_err(|_| Stop::Nothing)
    }

    /// Skips `n` bytes of the message, across records.
    fn skip(&mut self, mut n: usize) -> Step<()> {
        while n > 0 {
            self.ensure_record()?;
            let take = n.min(self.record_left);
            if self.input.len() - self.at < take {
                return Err(Stop::NeedMore);
            }
            self.at += take;
            self.record_left -= take;
            n -= take;
        }
        Ok(())
    }

    /// The next `n` (at least 1) bytes as one slice of the input: they must lie in one
    /// record, since the message is not copied anywhere.
    fn contiguous(&mut self, n: usize) -> Step<&'a [u8]> {
        self.ensure_record()?;
        if n > self.record_left {
            return Err(Stop::Nothing);
        }
        let bytes = self.input.get(self.at..self.at + n).ok_or(Stop::NeedMore)?;
        self.at += n;
        self.record_left -= n;
        Ok(bytes)
    }
}

/// What is left of a length-prefixed structure: every read is charged to it, and a field
/// that would run past its end makes the input malformed.
struct Budget(usize);

impl Budget {
    fn charge(&mut self, n: usize) -> Step<()> {
        self.0 = self.0.checked_sub(n).ok_or(Stop::Nothing)?;
        Ok(())
    }
}

/// The raw `host_name` of the first `ServerName` of the `ClientHello`'s `server_name`.
//# RFC 8446 §4:
//# struct {
//#     HandshakeType msg_type;    /* handshake type */
//#     uint24 length;             /* remaining bytes in message */
//#     select (Handshake.msg_type) {
//#         case client_hello:          ClientHello;
//#         ...
//#     };
//# } Handshake;
//#
//# RFC 8446 §4.1.2:
//# struct {
//#     ProtocolVersion legacy_version = 0x0303;    /* TLS v1.2 */
//#     Random random;
//#     opaque legacy_session_id<0..32>;
//#     CipherSuite cipher_suites<2..2^16-2>;
//#     opaque legacy_compression_methods<1..2^8-1>;
//#     Extension extensions<8..2^16-1>;
//# } ClientHello;
fn client_hello_server_name<'a>(message: &mut Message<'a>) -> Step<&'a [u8]> {
    if message.u8()? != CLIENT_HELLO {
        return Err(Stop::Nothing);
    }
    let mut body = Budget(message.u24()?);

    body.charge(2 + RANDOM_LEN)?;
    if message.u8()? != 0x03 {
        return Err(Stop::Nothing); // legacy_version: 0x0300 to 0x0303
    }
    message.skip(1 + RANDOM_LEN)?;

    body.charge(1)?;
    let session_id_len = usize::from(message.u8()?);
    if session_id_len > MAX_SESSION_ID_LEN {
        return Err(Stop::Nothing);
    }
    body.charge(session_id_len)?;
    message.skip(session_id_len)?;

    body.charge(2)?;
    let cipher_suites_len = message.u16()?;
    if cipher_suites_len < 2 || cipher_suites_len % 2 != 0 {
        return Err(Stop::Nothing);
    }
    body.charge(cipher_suites_len)?;
    message.skip(cipher_suites_len)?;

    body.charge(1)?;
    let compression_len = usize::from(message.u8()?);
    if compression_len < 1 {
        return Err(Stop::Nothing);
    }
    body.charge(compression_len)?;
    message.skip(compression_len)?;

    // A ClientHello without extensions (SSL 3.0, TLS 1.0 era) has no server name.
    body.charge(2)?;
    let block_len = message.u16()?;
    if block_len != body.0 {
        return Err(Stop::Nothing);
    }
    let mut extensions = Budget(block_len);
    //# RFC 8446 §4.2:
    //# struct {
    //#     ExtensionType extension_type;
    //#     opaque extension_data<0..2^16-1>;
    //# } Extension;
    while extensions.0 > 0 {
        extensions.charge(4)?;
        let extension_type = message.u16()?;
        let extension_len = message.u16()?;
        extensions.charge(extension_len)?;
        if extension_type == usize::from(SERVER_NAME) {
            return host_name(message, extension_len);
        }
        message.skip(extension_len)?;
    }
    Err(Stop::Nothing)
}

/// The first `host_name` of a `server_name` extension's data.
//# RFC 6066 §3:
//# struct {
//#     NameType name_type;
//#     select (name_type) {
//#         case host_name: HostName;
//#     } name;
//# } ServerName;
//#
//# enum {
//#     host_name(0), (255)
//# } NameType;
//#
//# opaque HostName<1..2^16-1>;
//#
//# struct {
//#     ServerName server_name_list<1..2^16-1>
//# } ServerNameList;
fn host_name<'a>(message: &mut Message<'a>, extension_len: usize) -> Step<&'a [u8]> {
    let mut extension = Budget(extension_len);
    extension.charge(2)?;
    let list_len = message.u16()?;
    if list_len != extension.0 {
        return Err(Stop::Nothing);
    }
    // Only host_name is defined, and a ServerName of another type has no length to skip
    // it by: the first entry must be the host name.
    extension.charge(3)?;
    if message.u8()? != HOST_NAME {
        return Err(Stop::Nothing);
    }
    let name_len = message.u16()?;
    if name_len == 0 {
        return Err(Stop::Nothing);
    }
    extension.charge(name_len)?;
    //# RFC 6066 §3: "The ServerNameList MUST NOT contain more than one name of the same
    //# name_type."
    // So the first host_name is the only one; what follows it is not read.
    message.contiguous(name_len)
}
