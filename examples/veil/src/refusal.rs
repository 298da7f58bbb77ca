//! What a local client is told when its tunnel does not open: a SOCKS5 reply code, or an
//! HTTP status with a Proxy-Status field (RFC 9209).

use veil_engine::{OpenError, ProxyErrorType, RefusedReason};
use veil_proto::http1::{ProxyName, ProxyStatus, Response, StatusCode};
use veil_proto::socks5::ReplyCode;
use veil_tokio::OpenFailure;

/// The name of the local proxy in the Proxy-Status members it generates itself.
pub const LOCAL_PROXY_NAME: &str = "veil-client";

/// The SOCKS5 `REP` for a tunnel that did not open: veil-proto's mapping of the edge's
/// status and Proxy-Status error, the same for every on-ramp.
pub fn socks_reply(failure: &OpenFailure) -> ReplyCode {
    match failure {
        OpenFailure::Refused(RefusedReason::Status {
            status,
            proxy_error,
            ..
        }) => ReplyCode::for_refusal(*status, *proxy_error),
        // The edge itself could not be reached, or the local node is stopping.
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
    /// Maps a failure. The edge's status is passed on as veil-proto's
    /// `StatusCode::relayed_refusal` says (401/407 become 502), and its Proxy-Status
    /// member (name and error) too.
    pub fn of(failure: &OpenFailure) -> Self {
        match failure {
            OpenFailure::Refused(RefusedReason::Status {
                status,
                proxy_error,
                proxy_status,
            }) => {
                let status = StatusCode::relayed_refusal(*status);
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
            OpenFailure::NotSent(OpenError::QueueFull) => Self::local(
                StatusCode::SERVICE_UNAVAILABLE,
                ProxyErrorType::ConnectionLimitReached,
            ),
            OpenFailure::NotSent(_) | OpenFailure::Stopped | _ => Self::local(
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
    fn socks_replies_follow_the_edges_refusal_and_local_failures_are_general() {
        let prohibited = refused(403, Some(ProxyErrorType::DestinationIpProhibited), None);
        assert_eq!(socks_reply(&prohibited).code(), 0x02);
        assert_eq!(socks_reply(&refused(504, None, None)).code(), 0x06);
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
        let refusal = HttpRefusal::of(&OpenFailure::NotSent(OpenError::QueueFull));
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
