//! Proxy side: reading the target back out of a request's `:path` (RFC 9298 §3.1).

use core::fmt;

use super::target::{Host, HostError, PortError, Target, decode_port};
use super::template::PathTemplate;

impl PathTemplate<'_> {
    /// Reads the target out of a request's `:path`, matching it against this template.
    ///
    /// See [the type's documentation](PathTemplate#how-a-path-is-matched) for how literal
    /// text, values and a query are matched. The layout is checked first, then
    /// `target_host` ([`Host::decode`]), then `target_port` ([`decode_port`]).
    ///
    /// Every error means the request is malformed; the proxy answers 400 (Bad Request).
    //# RFC 9298 §3.1: "It extracts the "target_host" and "target_port" variables from the
    //# URI it has reconstructed from the request headers, decodes their
    //# percent-encoding, and establishes a tunnel by directly opening a UDP socket to the
    //# requested target."
    pub fn match_path(&self, path: &[u8]) -> Result<Target, PathError> {
        let input = if self.has_query() {
            path
        } else {
            path.split(|&b| b == b'?').next().unwrap_or_default()
        };
        let [host, port] = self
            .layout
            .split(input)
            .map_err(|offset| PathError::Mismatch { offset })?;
        // A validated template holds both variables.
        Ok(Target {
            host: Host::decode(host.unwrap_or_default())?,
            port: decode_port(port.unwrap_or_default())?,
        })
    }
}

/// Why a request's `:path` names no valid target under a template.
///
/// Every variant means a malformed request: the proxy answers 400 (Bad Request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// The path's literal text differs from the template's.
    Mismatch {
        /// The first byte of the path that does not match.
        offset: usize,
    },
    /// The `target_host` value is not a valid host.
    Host(HostError),
    /// The `target_port` value is not a valid port.
    Port(PortError),
}

impl From<HostError> for PathError {
    fn from(e: HostError) -> Self {
        Self::Host(e)
    }
}

impl From<PortError> for PathError {
    fn from(e: PortError) -> Self {
        Self::Port(e)
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mismatch { offset } => {
                write!(
                    f,
                    "request path does not match the URI template at byte {offset}"
                )
            }
            Self::Host(e) => e.fmt(f),
            Self::Port(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for PathError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Mismatch { .. } => None,
            Self::Host(e) => Some(e),
            Self::Port(e) => Some(e),
        }
    }
}
