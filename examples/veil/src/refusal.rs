//! What a local client is told when its tunnel does not open: a SOCKS5 reply code, or an
//! HTTP status with a Proxy-Status field (RFC 9209).

use veil_engine::{OpenError, ProxyErrorType, RefusedReason};
use veil_proto::http1::{ProxyName, ProxyStatus, Response, StatusCode};
use veil_proto::socks5::ReplyCode;
use veil_tokio::OpenFailure;

/// The name of the local proxy in the Proxy-Status members it generates itself.
pub const LOCAL_PROXY_NAME: &str = "veil-client";

/// The SOCKS5 `REP` for a tunnel that did not open.
pub fn socks_reply(failure: &OpenFailure) -> ReplyCode {
    match failure {
        OpenFailure::Refused(RefusedReason::Status {
            status,
            proxy_error,
            ..
        }) => match proxy_error {
            Some(error) => socks_reply_for_error(*error),
            None => socks_reply_for_status(*status),
        },
        // The edge itself could not be reached, or the local node is stopping.
        _ => ReplyCode::GeneralFailure,
    }
}

fn socks_reply_for_error(error: ProxyErrorType) -> ReplyCode {
    match error {
        ProxyErrorType::DestinationIpProhibited | ProxyErrorType::HttpRequestDenied => {
            ReplyCode::ConnectionNotAllowed
        }
        ProxyErrorType::DnsError | ProxyErrorType::DnsTimeout => ReplyCode::HostUnreachable,
        ProxyErrorType::DestinationIpUnroutable => ReplyCode::NetworkUnreachable,
        ProxyErrorType::ConnectionRefused => ReplyCode::ConnectionRefused,
        // RFC 1928 has no timeout code; X'06' "TTL expired" is the usual stand-in.
        ProxyErrorType::ConnectionTimeout => ReplyCode::TtlExpired,
        _ => ReplyCode::GeneralFailure,
    }
}

fn socks_reply_for_status(status: u16) -> ReplyCode {
    match status {
        // Forbidden target, or the edge refused our token: policy says no either way.
        401 | 403 | 407 => ReplyCode::ConnectionNotAllowed,
        504 => ReplyCode::TtlExpired,
        _ => ReplyCode::GeneralFailure,
    }
}

/// The status and Proxy-Status member of the HTTP response for a tunnel that did not
/// open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRefusal {
    /// The status code to answer with.
    pub status: StatusCode,
    /// Who reports the error: the edge's name when the edge refused, else ours.
    pub proxy: String,
    /// The error type, if known.
    pub error: Option<ProxyErrorType>,
}

impl HttpRefusal {
    /// Maps a failure. The edge's status is passed on, but for 401/407 (the edge did not
    /// take our token: nothing the local client could fix by authenticating) which become
    /// 502; its Proxy-Status member (name and error) is passed on too.
    pub fn of(failure: &OpenFailure) -> Self {
        match failure {
            OpenFailure::Refused(RefusedReason::Status {
                status,
                proxy_error,
                proxy_status,
            }) => {
                let status = match *status {
                    401 | 407 => StatusCode::BAD_GATEWAY,
                    code if code >= 400 => StatusCode::new(code).unwrap_or(StatusCode::BAD_GATEWAY),
                    _ => StatusCode::BAD_GATEWAY,
                };
                let proxy = proxy_status
                    .as_deref()
                    .and_then(member_name)
                    .unwrap_or(LOCAL_PROXY_NAME)
                    .to_owned();
                Self {
                    status,
                    proxy,
                    error: *proxy_error,
                }
            }
            OpenFailure::Refused(RefusedReason::EdgeUnavailable) => Self::local(
                StatusCode::BAD_GATEWAY,
                ProxyErrorType::DestinationUnavailable,
            ),
            OpenFailure::Refused(RefusedReason::ConnectionLost) => Self::local(
                StatusCode::BAD_GATEWAY,
                ProxyErrorType::ConnectionTerminated,
            ),
            OpenFailure::Refused(_) => {
                Self::local(StatusCode::BAD_GATEWAY, ProxyErrorType::HttpProtocolError)
            }
            OpenFailure::Rejected(OpenError::QueueFull) => Self::local(
                StatusCode::SERVICE_UNAVAILABLE,
                ProxyErrorType::ConnectionLimitReached,
            ),
            OpenFailure::Rejected(_) | OpenFailure::Stopped | _ => Self::local(
                StatusCode::SERVICE_UNAVAILABLE,
                ProxyErrorType::ProxyInternalError,
            ),
        }
    }

    fn local(status: StatusCode, error: ProxyErrorType) -> Self {
        Self {
            status,
            proxy: LOCAL_PROXY_NAME.to_owned(),
            error: Some(error),
        }
    }

    /// The response head: status, Proxy-Status, `Connection: close`.
    pub fn response_head(&self) -> Vec<u8> {
        let name = ProxyName::new(&self.proxy)
            .or_else(|_| ProxyName::new(LOCAL_PROXY_NAME))
            .ok();
        let mut response = Response::new(self.status).with_connection_close();
        if let Some(name) = name {
            let mut member = ProxyStatus::new(name);
            if let Some(error) = self.error {
                member = member.error(error);
            }
            response = response.with_proxy_status(member);
        }
        let mut head = vec![0; response.encoded_len()];
        match response.encode(&mut head) {
            Ok(len) => head.truncate(len),
            Err(_) => head.clear(),
        }
        head
    }
}

/// The proxy name of the first member of a Proxy-Status field value, when it is a valid
/// token (`veil; error=...` gives `veil`).
fn member_name(field: &str) -> Option<&str> {
    let name = field.split([';', ',']).next()?.trim();
    ProxyName::new(name).ok().map(|name| name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, error: Option<ProxyErrorType>, raw: Option<&str>) -> OpenFailure {
        OpenFailure::Refused(RefusedReason::Status {
            status,
            proxy_error: error,
            proxy_status: raw.map(str::to_owned),
        })
    }

    #[test]
    fn edge_errors_map_to_socks_codes() {
        let cases = [
            (403, ProxyErrorType::DestinationIpProhibited, 0x02),
            (403, ProxyErrorType::HttpRequestDenied, 0x02),
            (502, ProxyErrorType::DnsError, 0x04),
            (504, ProxyErrorType::DnsTimeout, 0x04),
            (502, ProxyErrorType::DestinationIpUnroutable, 0x03),
            (502, ProxyErrorType::ConnectionRefused, 0x05),
            (504, ProxyErrorType::ConnectionTimeout, 0x06),
            (503, ProxyErrorType::ConnectionLimitReached, 0x01),
            (500, ProxyErrorType::ProxyInternalError, 0x01),
        ];
        for (status, error, code) in cases {
            let reply = socks_reply(&refused(status, Some(error), None));
            assert_eq!(reply.code(), code, "{error:?}");
        }
    }

    #[test]
    fn statuses_without_an_error_type_map_to_socks_codes() {
        assert_eq!(socks_reply(&refused(403, None, None)).code(), 0x02);
        assert_eq!(socks_reply(&refused(407, None, None)).code(), 0x02);
        assert_eq!(socks_reply(&refused(504, None, None)).code(), 0x06);
        assert_eq!(socks_reply(&refused(502, None, None)).code(), 0x01);
        let unavailable = OpenFailure::Refused(RefusedReason::EdgeUnavailable);
        assert_eq!(socks_reply(&unavailable).code(), 0x01);
        assert_eq!(socks_reply(&OpenFailure::Stopped).code(), 0x01);
    }

    #[test]
    fn the_edge_status_and_proxy_status_are_passed_on() {
        let failure = refused(
            403,
            Some(ProxyErrorType::DestinationIpProhibited),
            Some("veil; error=destination_ip_prohibited"),
        );
        let refusal = HttpRefusal::of(&failure);
        assert_eq!(refusal.status, StatusCode::FORBIDDEN);
        assert_eq!(refusal.proxy, "veil");
        assert_eq!(
            refusal.response_head(),
            b"HTTP/1.1 403 Forbidden\r\n\
              Proxy-Status: veil;error=destination_ip_prohibited\r\n\
              Content-Length: 0\r\n\
              Connection: close\r\n\r\n"
        );
        let timeout = HttpRefusal::of(&refused(504, Some(ProxyErrorType::ConnectionTimeout), None));
        assert_eq!(timeout.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(timeout.proxy, LOCAL_PROXY_NAME);
        let dns = HttpRefusal::of(&refused(
            502,
            Some(ProxyErrorType::DnsError),
            Some("edge-1"),
        ));
        assert_eq!(dns.status, StatusCode::BAD_GATEWAY);
        assert_eq!(dns.proxy, "edge-1");
    }

    #[test]
    fn an_edge_auth_failure_is_a_bad_gateway_locally() {
        let refusal = HttpRefusal::of(&refused(407, None, None));
        assert_eq!(refusal.status, StatusCode::BAD_GATEWAY);
        assert_eq!(refusal.error, None);
        let head = refusal.response_head();
        assert!(head.starts_with(b"HTTP/1.1 502 Bad Gateway\r\nProxy-Status: veil-client\r\n"));
    }

    #[test]
    fn local_failures_get_our_own_member() {
        let refusal = HttpRefusal::of(&OpenFailure::Refused(RefusedReason::EdgeUnavailable));
        assert_eq!(refusal.status, StatusCode::BAD_GATEWAY);
        assert_eq!(refusal.error, Some(ProxyErrorType::DestinationUnavailable));
        let refusal = HttpRefusal::of(&OpenFailure::Rejected(OpenError::QueueFull));
        assert_eq!(refusal.status, StatusCode::SERVICE_UNAVAILABLE);
        let head = String::from_utf8(HttpRefusal::of(&OpenFailure::Stopped).response_head())
            .expect("ASCII head");
        assert!(head.contains("Proxy-Status: veil-client;error=proxy_internal_error\r\n"));
    }

    #[test]
    fn member_names_must_be_tokens() {
        assert_eq!(member_name("veil;error=dns_error"), Some("veil"));
        assert_eq!(member_name(" edge , other"), Some("edge"));
        assert_eq!(member_name("\"quoted\""), None);
        assert_eq!(member_name(""), None);
    }
}
