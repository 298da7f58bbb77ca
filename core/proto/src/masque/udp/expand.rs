//! Client side: writing a request's `:path` for a target (RFC 9298 §3).

use super::target::{Host, Target};
use super::template::{PathTemplate, Variable};
use crate::error::BufferTooSmall;
use crate::masque::percent::put_encoded;
use crate::masque::template::{Sink, measure, write_measured};

impl PathTemplate<'_> {
    /// The length of the path [`expand`](Self::expand) writes for `target`.
    pub fn expanded_len(&self, target: &Target) -> usize {
        // Counting cannot fail.
        measure(|sink| self.emit(target, sink)).unwrap_or_default()
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
        write_measured(out, |sink| self.emit(target, sink))
    }

    fn emit(&self, target: &Target, sink: &mut dyn Sink) -> Result<(), BufferTooSmall> {
        self.layout
            .emit(sink, |variable, sink| match (variable, &target.host) {
                (Variable::TargetHost, Host::Name(name)) => sink.put(name.as_str().as_bytes()),
                //# RFC 9298 §3: "For example, if the target host is "2001:db8::42", it will
                //# be encoded in the URI as "2001%3Adb8%3A%3A42"."
                (Variable::TargetHost, Host::Ip(ip)) => put_encoded(sink, ip),
                (Variable::TargetPort, _) => put_encoded(sink, target.port),
            })
    }
}
