//! The `Proxy-Status` response field (RFC 9209): who handled the request and what went
//! wrong.
//!
//! Serialized as a structured-field List member (RFC 8941): the proxy's name as a Token,
//! then `;key=value` parameters with no spaces.

use crate::error::BufferTooSmall;

use super::response::StatusCode;
use super::syntax::{Sink, encode_measured, measure, put_decimal};
use super::text::{ProxyName, QuotedText};

/// The proxy error types of the IANA registry RFC 9209 §2.3 created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyErrorType {
    /// `dns_timeout`: resolving the next hop timed out.
    DnsTimeout,
    /// `dns_error`: resolving the next hop failed; see [`ProxyStatus::dns_error`].
    DnsError,
    /// `destination_not_found`: no next hop is configured (gateways).
    DestinationNotFound,
    /// `destination_unavailable`: the next hop is considered down.
    DestinationUnavailable,
    /// `destination_ip_prohibited`: policy forbids connecting to the next hop's address.
    DestinationIpProhibited,
    /// `destination_ip_unroutable`: no route to the next hop's address.
    DestinationIpUnroutable,
    /// `connection_refused`: the next hop refused the connection.
    ConnectionRefused,
    /// `connection_terminated`: the next hop closed before a complete response.
    ConnectionTerminated,
    /// `connection_timeout`: opening the connection timed out.
    ConnectionTimeout,
    /// `connection_read_timeout`: no data from the next hop within the limit.
    ConnectionReadTimeout,
    /// `connection_write_timeout`: could not write to the next hop within the limit.
    ConnectionWriteTimeout,
    /// `connection_limit_reached`: the configured connection limit was passed.
    ConnectionLimitReached,
    /// `tls_protocol_error`: TLS failed with the next hop.
    TlsProtocolError,
    /// `tls_certificate_error`: the next hop's certificate did not verify.
    TlsCertificateError,
    /// `tls_alert_received`: the next hop sent a TLS alert.
    TlsAlertReceived,
    /// `http_request_error`: the proxy generates a 4xx on the origin's behalf.
    HttpRequestError,
    /// `http_request_denied`: policy refused the request; it was not forwarded.
    HttpRequestDenied,
    /// `http_response_incomplete`: the next hop's response was incomplete.
    HttpResponseIncomplete,
    /// `http_response_header_section_size`: the response head was too large.
    HttpResponseHeaderSectionSize,
    /// `http_response_header_size`: one response header line was too large.
    HttpResponseHeaderSize,
    /// `http_response_body_size`: the response body was too large.
    HttpResponseBodySize,
    /// `http_response_trailer_section_size`: the response trailers were too large.
    HttpResponseTrailerSectionSize,
    /// `http_response_trailer_size`: one response trailer line was too large.
    HttpResponseTrailerSize,
    /// `http_response_transfer_coding`: decoding the response transfer-coding failed.
    HttpResponseTransferCoding,
    /// `http_response_content_coding`: decoding the response content-coding failed.
    HttpResponseContentCoding,
    /// `http_response_timeout`: the complete response did not arrive in time.
    HttpResponseTimeout,
    /// `http_upgrade_failed`: an HTTP Upgrade with the next hop failed.
    HttpUpgradeFailed,
    /// `http_protocol_error`: a generic HTTP error with the next hop.
    HttpProtocolError,
    /// `proxy_internal_response`: the proxy answered locally without contacting a next hop.
    ProxyInternalResponse,
    /// `proxy_internal_error`: an internal error unrelated to the origin.
    ProxyInternalError,
    /// `proxy_configuration_error`: the proxy's configuration is at fault.
    ProxyConfigurationError,
    /// `proxy_loop_detected`: the request would have been forwarded to this proxy again.
    ProxyLoopDetected,
}

impl ProxyErrorType {
    /// Every type, in registry order.
    pub const ALL: [Self; 32] = [
        Self::DnsTimeout,
        Self::DnsError,
        Self::DestinationNotFound,
        Self::DestinationUnavailable,
        Self::DestinationIpProhibited,
        Self::DestinationIpUnroutable,
        Self::ConnectionRefused,
        Self::ConnectionTerminated,
        Self::ConnectionTimeout,
        Self::ConnectionReadTimeout,
        Self::ConnectionWriteTimeout,
        Self::ConnectionLimitReached,
        Self::TlsProtocolError,
        Self::TlsCertificateError,
        Self::TlsAlertReceived,
        Self::HttpRequestError,
        Self::HttpRequestDenied,
        Self::HttpResponseIncomplete,
        Self::HttpResponseHeaderSectionSize,
        Self::HttpResponseHeaderSize,
        Self::HttpResponseBodySize,
        Self::HttpResponseTrailerSectionSize,
        Self::HttpResponseTrailerSize,
        Self::HttpResponseTransferCoding,
        Self::HttpResponseContentCoding,
        Self::HttpResponseTimeout,
        Self::HttpUpgradeFailed,
        Self::HttpProtocolError,
        Self::ProxyInternalResponse,
        Self::ProxyInternalError,
        Self::ProxyConfigurationError,
        Self::ProxyLoopDetected,
    ];

    /// The registered name, written as the `error` parameter's Token.
    pub const fn token(self) -> &'static str {
        match self {
            Self::DnsTimeout => "dns_timeout",
            Self::DnsError => "dns_error",
            Self::DestinationNotFound => "destination_not_found",
            Self::DestinationUnavailable => "destination_unavailable",
            Self::DestinationIpProhibited => "destination_ip_prohibited",
            Self::DestinationIpUnroutable => "destination_ip_unroutable",
            Self::ConnectionRefused => "connection_refused",
            Self::ConnectionTerminated => "connection_terminated",
            Self::ConnectionTimeout => "connection_timeout",
            Self::ConnectionReadTimeout => "connection_read_timeout",
            Self::ConnectionWriteTimeout => "connection_write_timeout",
            Self::ConnectionLimitReached => "connection_limit_reached",
            Self::TlsProtocolError => "tls_protocol_error",
            Self::TlsCertificateError => "tls_certificate_error",
            Self::TlsAlertReceived => "tls_alert_received",
            Self::HttpRequestError => "http_request_error",
            Self::HttpRequestDenied => "http_request_denied",
            Self::HttpResponseIncomplete => "http_response_incomplete",
            Self::HttpResponseHeaderSectionSize => "http_response_header_section_size",
            Self::HttpResponseHeaderSize => "http_response_header_size",
            Self::HttpResponseBodySize => "http_response_body_size",
            Self::HttpResponseTrailerSectionSize => "http_response_trailer_section_size",
            Self::HttpResponseTrailerSize => "http_response_trailer_size",
            Self::HttpResponseTransferCoding => "http_response_transfer_coding",
            Self::HttpResponseContentCoding => "http_response_content_coding",
            Self::HttpResponseTimeout => "http_response_timeout",
            Self::HttpUpgradeFailed => "http_upgrade_failed",
            Self::HttpProtocolError => "http_protocol_error",
            Self::ProxyInternalResponse => "proxy_internal_response",
            Self::ProxyInternalError => "proxy_internal_error",
            Self::ProxyConfigurationError => "proxy_configuration_error",
            Self::ProxyLoopDetected => "proxy_loop_detected",
        }
    }

    /// The status the registry recommends answering with, or `None` where it depends on
    /// the case (`http_request_error`: the applicable 4xx; `proxy_internal_response`: the
    /// most appropriate code).
    //# RFC 9209 §2.1.1: "Each Proxy Error Type has a Recommended HTTP Status Code. When
    //# generating a HTTP response containing "error", its HTTP status code SHOULD be set to
    //# the Recommended HTTP Status Code."
    pub const fn recommended_status(self) -> Option<StatusCode> {
        Some(match self {
            Self::HttpRequestError | Self::ProxyInternalResponse => return None,
            Self::DestinationNotFound
            | Self::ProxyInternalError
            | Self::ProxyConfigurationError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::DestinationUnavailable | Self::ConnectionLimitReached => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::DnsTimeout
            | Self::ConnectionTimeout
            | Self::ConnectionReadTimeout
            | Self::ConnectionWriteTimeout
            | Self::HttpResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::HttpRequestDenied => StatusCode::FORBIDDEN,
            Self::DnsError
            | Self::DestinationIpProhibited
            | Self::DestinationIpUnroutable
            | Self::ConnectionRefused
            | Self::ConnectionTerminated
            | Self::TlsProtocolError
            | Self::TlsCertificateError
            | Self::TlsAlertReceived
            | Self::HttpResponseIncomplete
            | Self::HttpResponseHeaderSectionSize
            | Self::HttpResponseHeaderSize
            | Self::HttpResponseBodySize
            | Self::HttpResponseTrailerSectionSize
            | Self::HttpResponseTrailerSize
            | Self::HttpResponseTransferCoding
            | Self::HttpResponseContentCoding
            | Self::HttpUpgradeFailed
            | Self::HttpProtocolError
            | Self::ProxyLoopDetected => StatusCode::BAD_GATEWAY,
        })
    }
}

/// One `Proxy-Status` member: veil's name and its parameters.
///
/// Parameters are written in the order `error`, `rcode`, `info-code`, `next-hop`,
/// `received-status`, `details`; absent ones are left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyStatus<'a> {
    proxy: ProxyName<'a>,
    error: Option<ProxyErrorType>,
    rcode: Option<QuotedText<'a>>,
    info_code: Option<u16>,
    next_hop: Option<QuotedText<'a>>,
    received_status: Option<StatusCode>,
    details: Option<QuotedText<'a>>,
}

impl<'a> ProxyStatus<'a> {
    /// A member naming `proxy`, without parameters.
    pub const fn new(proxy: ProxyName<'a>) -> Self {
        Self {
            proxy,
            error: None,
            rcode: None,
            info_code: None,
            next_hop: None,
            received_status: None,
            details: None,
        }
    }

    /// Sets the `error` parameter.
    #[must_use]
    pub const fn error(mut self, error: ProxyErrorType) -> Self {
        self.error = Some(error);
        self
    }

    /// Sets `error=dns_error` with its extra parameters: `rcode`, the DNS RCODE name (e.g.
    /// `NXDOMAIN`), and `info-code`, an Extended DNS Error code (RFC 8914).
    //# RFC 9209 §2.3.2: rcode: "conveying the DNS RCODE that indicates the error type";
    //# info-code: "conveying the Extended DNS Error Code info-code"
    #[must_use]
    pub const fn dns_error(
        mut self,
        rcode: Option<QuotedText<'a>>,
        info_code: Option<u16>,
    ) -> Self {
        self.error = Some(ProxyErrorType::DnsError);
        self.rcode = rcode;
        self.info_code = info_code;
        self
    }

    /// Sets `next-hop`: the host, address or alias veil chose for the request.
    #[must_use]
    pub const fn next_hop(mut self, next_hop: QuotedText<'a>) -> Self {
        self.next_hop = Some(next_hop);
        self
    }

    /// Sets `received-status`: the status the next hop answered with.
    #[must_use]
    pub const fn received_status(mut self, status: StatusCode) -> Self {
        self.received_status = Some(status);
        self
    }

    /// Sets `details`: free text for whoever debugs the failure. It is shown to the
    /// client, so keep internal addresses out of it.
    #[must_use]
    pub const fn details(mut self, details: QuotedText<'a>) -> Self {
        self.details = Some(details);
        self
    }

    /// Bytes of the field value [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        measure(|s| self.emit(s))
    }

    /// Writes the field value (without `Proxy-Status: `) into `out`.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        encode_measured(self.encoded_len(), out, |w| self.emit(w))
    }

    //# RFC 8941 §4.1.1.2: "Append ";" to output. Append the result of running Serializing a
    //# Key (Section 4.1.1.3) with param_name to output. If param_value is not Boolean true:
    //# Append "=" to output. Append the result of running Serializing a bare Item (Section
    //# 4.1.3.1) with param_value to output."
    pub(crate) fn emit<S: Sink>(&self, sink: &mut S) -> Result<(), S::Error> {
        sink.put(self.proxy.as_str().as_bytes())?;
        if let Some(error) = self.error {
            sink.put(b";error=")?;
            sink.put(error.token().as_bytes())?;
        }
        if let Some(rcode) = self.rcode {
            sink.put(b";rcode=")?;
            rcode.emit(sink)?;
        }
        if let Some(info_code) = self.info_code {
            sink.put(b";info-code=")?;
            put_decimal(sink, u64::from(info_code))?;
        }
        if let Some(next_hop) = self.next_hop {
            sink.put(b";next-hop=")?;
            next_hop.emit(sink)?;
        }
        if let Some(status) = self.received_status {
            sink.put(b";received-status=")?;
            put_decimal(sink, u64::from(status.as_u16()))?;
        }
        if let Some(details) = self.details {
            sink.put(b";details=")?;
            details.emit(sink)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An sf-token: ( ALPHA / "*" ) *( tchar / ":" / "/" ) (RFC 8941 §3.3.4).
    fn is_sf_token(s: &str) -> bool {
        let mut bytes = s.bytes();
        bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'*')
            && bytes.all(|b| crate::http1::syntax::is_tchar(b) || b == b':' || b == b'/')
    }

    #[test]
    fn every_type_has_a_distinct_sf_token() {
        let tokens: std::collections::BTreeSet<&str> =
            ProxyErrorType::ALL.iter().map(|t| t.token()).collect();
        assert_eq!(tokens.len(), ProxyErrorType::ALL.len());
        assert!(tokens.iter().all(|t| is_sf_token(t)));
    }

    #[test]
    fn recommended_statuses_follow_the_registry() {
        let status = |t: ProxyErrorType| t.recommended_status().map(StatusCode::as_u16);
        assert_eq!(status(ProxyErrorType::DnsTimeout), Some(504));
        assert_eq!(status(ProxyErrorType::DnsError), Some(502));
        assert_eq!(status(ProxyErrorType::DestinationNotFound), Some(500));
        assert_eq!(status(ProxyErrorType::DestinationUnavailable), Some(503));
        assert_eq!(status(ProxyErrorType::DestinationIpProhibited), Some(502));
        assert_eq!(status(ProxyErrorType::ConnectionTimeout), Some(504));
        assert_eq!(status(ProxyErrorType::ConnectionLimitReached), Some(503));
        assert_eq!(status(ProxyErrorType::HttpRequestDenied), Some(403));
        assert_eq!(status(ProxyErrorType::ProxyLoopDetected), Some(502));
        assert_eq!(status(ProxyErrorType::HttpRequestError), None);
    }
}
