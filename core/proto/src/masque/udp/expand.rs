//! Client side: writing a request's `:path` for a target (RFC 9298 §3).

use core::fmt::{self, Write as _};
use core::net::IpAddr;

use super::target::{Host, Target};
use super::template::{Lead, PathTemplate, Slot, Variable};
use crate::cursor::Writer;
use crate::error::BufferTooSmall;

impl PathTemplate<'_> {
    /// The length of the path [`expand`](Self::expand) writes for `target`.
    pub fn expanded_len(&self, target: &Target) -> usize {
        let mut counter = Counter(0);
        // Counting cannot fail.
        let _ = self.emit(target, &mut counter);
        counter.0
    }

    /// Writes the request's `:path` for `target` to the front of `out`, returning its length.
    ///
    /// Values are percent-encoded as RFC 6570 simple and form-style expansion do: every
    /// character outside the unreserved set is escaped. A [`Target`] is valid by
    /// construction, so the only character that needs it is the IPv6 colon, written `%3A`;
    /// names, IPv4 addresses and ports are written as they are. On
    /// [`BufferTooSmall`] nothing has been written.
    //# RFC 9298 §3: "When sending its UDP proxying request, the client SHALL perform URI
    //# Template expansion to determine the path and query of its request."
    pub fn expand(&self, target: &Target, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut writer = Writer::new(out);
        writer.reserve(self.expanded_len(target))?;
        self.emit(target, &mut writer)?;
        Ok(writer.finish())
    }

    fn emit<S: Sink>(&self, target: &Target, sink: &mut S) -> Result<(), BufferTooSmall> {
        sink.put(self.prefix.as_bytes())?;
        emit_slot(self.first, target, sink)?;
        sink.put(self.infix.as_bytes())?;
        emit_slot(self.second, target, sink)?;
        sink.put(self.suffix.as_bytes())
    }
}

fn emit_slot<S: Sink>(slot: Slot, target: &Target, sink: &mut S) -> Result<(), BufferTooSmall> {
    match slot.lead {
        Lead::Nothing => {}
        Lead::Comma => sink.put(b",")?,
        Lead::Named(byte) => {
            sink.put(&[byte])?;
            sink.put(slot.variable.name().as_bytes())?;
            sink.put(b"=")?;
        }
    }
    let mut encoder = ColonEncoder {
        sink,
        result: Ok(()),
    };
    // A failed write leaves its reason in `encoder.result`.
    let _ = match (slot.variable, &target.host) {
        (Variable::TargetHost, Host::Name(name)) => encoder.write_str(name.as_str()),
        (Variable::TargetHost, Host::Ip(IpAddr::V4(ip))) => write!(encoder, "{ip}"),
        //# RFC 9298 §3: "For example, if the target host is "2001:db8::42", it will be
        //# encoded in the URI as "2001%3Adb8%3A%3A42"."
        (Variable::TargetHost, Host::Ip(IpAddr::V6(ip))) => write!(encoder, "{ip}"),
        (Variable::TargetPort, _) => write!(encoder, "{}", target.port),
    };
    encoder.result
}

/// Where expansion writes: a buffer, or a counter that only measures.
trait Sink {
    fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall>;
}

impl Sink for Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        self.bytes(bytes)
    }
}

/// Counts the bytes an expansion would write.
struct Counter(usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        self.0 += bytes.len();
        Ok(())
    }
}

/// Formats a value into a sink, percent-encoding `:` as `%3A`.
//# RFC 3986 §2.1: "For consistency, URI producers and normalizers should use uppercase
//# hexadecimal digits for all percent-encodings."
struct ColonEncoder<'s, S> {
    sink: &'s mut S,
    result: Result<(), BufferTooSmall>,
}

impl<S: Sink> fmt::Write for ColonEncoder<'_, S> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut pieces = text.split(':');
        let mut put = |bytes: &[u8]| {
            self.result = self.sink.put(bytes);
            self.result.map_err(|_| fmt::Error)
        };
        if let Some(first) = pieces.next() {
            put(first.as_bytes())?;
        }
        for piece in pieces {
            put(b"%3A")?;
            put(piece.as_bytes())?;
        }
        Ok(())
    }
}
