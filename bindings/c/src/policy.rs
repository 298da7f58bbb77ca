//! The engine's hooks (`veil_engine::Policy`) as C callbacks: a function pointer and the
//! caller's `user` pointer per hook. A hook is called synchronously, on the calling thread,
//! from inside the `veil_endpoint_*` call that processes the input concerned (feeding a
//! datagram, a timeout, a poll): it must answer at once and must not call into the same
//! endpoint. Its answer is checked: an answer the engine cannot read refuses the request
//! (`VEIL_REFUSAL_INTERNAL`) or keeps the connection, never crashes.

use std::ffi::{c_char, c_int, c_void};
use std::net::IpAddr;

use veil_engine::{
    Host, IngressQuery, IngressVerdict, Name, Policy, Refusal, Tags, TunnelQuery, TunnelTarget,
    TunnelVerdict,
};

use crate::addr::veil_sockaddr;
use crate::endpoint::{veil_endpoint, with_endpoint};
use crate::event::{VEIL_EVENT_TEXT_LEN, c_token_index, c_tunnel_kind, copy_host, copy_text};
use crate::result::veil_result::{self, VEIL_OK};
use crate::tunnel::{self, veil_tunnel_kind};

/// What the tunnel hook sees of a request that passed the engine's own checks.
#[repr(C)]
pub struct veil_tunnel_query {
    /// The QUIC connection it arrived on.
    pub connection: u64,
    /// The client's address as the edge sees it.
    pub peer: veil_sockaddr,
    /// What the tunnel would carry.
    pub tunnel_kind: veil_tunnel_kind,
    /// The target host: a lowercased DNS name or an IP address (IPv6 without brackets).
    pub host: [c_char; VEIL_EVENT_TEXT_LEN],
    /// The target port.
    pub port: u16,
    /// Index of the client's token in the order of `veil_config_add_token`; -1 without
    /// tokens.
    pub token_index: i64,
    /// That token's name (never its secret); empty without tokens.
    pub token_name: [c_char; VEIL_EVENT_TEXT_LEN],
}

/// What the tunnel hook decides (`veil_tunnel_verdict.action`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum veil_tunnel_action {
    /// Hand the request to the host as it is (a `VEIL_EVENT_TUNNEL_REQUEST`).
    VEIL_TUNNEL_PASS = 0,
    /// Refuse it with `refusal` (a `veil_refusal`).
    VEIL_TUNNEL_REFUSE = 1,
    /// Hand it to the host with `host`:`port` instead; checked against egress policy
    /// again.
    VEIL_TUNNEL_REDIRECT = 2,
}

/// The tunnel hook's answer; the engine sets it to `VEIL_TUNNEL_PASS` before the call.
#[repr(C)]
pub struct veil_tunnel_verdict {
    /// A `veil_tunnel_action`.
    pub action: c_int,
    /// With `VEIL_TUNNEL_REFUSE`: a `veil_refusal`.
    pub refusal: c_int,
    /// With `VEIL_TUNNEL_REDIRECT`: the new host (NUL-terminated; IPv6 without brackets).
    pub host: [c_char; VEIL_EVENT_TEXT_LEN],
    /// With `VEIL_TUNNEL_REDIRECT`: the new port (1–65535).
    pub port: u16,
}

/// The tunnel hook: reads `query`, writes `verdict`.
pub type veil_tunnel_hook = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        query: *const veil_tunnel_query,
        verdict: *mut veil_tunnel_verdict,
    ),
>;

/// What the ingress hook sees of a connection that completed its handshake.
#[repr(C)]
pub struct veil_ingress_query {
    /// The client's address as the edge sees it.
    pub peer: veil_sockaddr,
    /// The TLS server name (SNI) the client sent; empty when none.
    pub server_name: [c_char; VEIL_EVENT_TEXT_LEN],
}

/// The ingress hook: returns 0 to accept the connection, or anything else to close it at
/// once with the application error code written to `error_code` (the engine sets it to
/// 0x0100, `H3_NO_ERROR`, before the call).
pub type veil_ingress_hook = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        query: *const veil_ingress_query,
        error_code: *mut u64,
    ) -> c_int,
>;

/// The C hooks behind the engine's `Policy`.
struct CPolicy {
    tunnel: Option<(
        unsafe extern "C" fn(*mut c_void, *const veil_tunnel_query, *mut veil_tunnel_verdict),
        *mut c_void,
    )>,
    ingress: Option<(
        unsafe extern "C" fn(*mut c_void, *const veil_ingress_query, *mut u64) -> c_int,
        *mut c_void,
    )>,
}

// SAFETY: the C ABI's contract (veil.h) is that an endpoint is used from one thread at a
// time; the hooks run inside those calls, so the `user` pointers never cross threads
// concurrently. What they point to is the caller's to keep valid until the hook is
// replaced or the endpoint freed.
unsafe impl Send for CPolicy {}

impl Policy for CPolicy {
    fn ingress(&mut self, query: &IngressQuery<'_>) -> IngressVerdict {
        let Some((hook, user)) = self.ingress else {
            return IngressVerdict::Accept;
        };
        let mut c_query = veil_ingress_query {
            peer: query.peer.into(),
            server_name: [0; VEIL_EVENT_TEXT_LEN],
        };
        copy_text(&mut c_query.server_name, query.server_name.unwrap_or(""));
        let mut error_code: u64 = 0x100;
        // SAFETY: the hook and `user` are what the caller registered; the query and the
        // out-pointer live through the call.
        let close = unsafe { hook(user, &raw const c_query, &raw mut error_code) };
        if close == 0 {
            IngressVerdict::Accept
        } else {
            IngressVerdict::Close { error_code }
        }
    }

    fn tunnel(&mut self, query: &TunnelQuery<'_>, _tags: &mut Tags) -> TunnelVerdict {
        let Some((hook, user)) = self.tunnel else {
            return TunnelVerdict::Pass;
        };
        // A kind C cannot name is never reported to this host: nothing to ask.
        let Some(tunnel_kind) = c_tunnel_kind(query.kind) else {
            return TunnelVerdict::Pass;
        };
        let mut c_query = veil_tunnel_query {
            connection: query.client.connection.0,
            peer: query.client.peer.into(),
            tunnel_kind,
            host: [0; VEIL_EVENT_TEXT_LEN],
            port: query.target.port,
            token_index: c_token_index(query.client.token_index),
            token_name: [0; VEIL_EVENT_TEXT_LEN],
        };
        copy_host(&mut c_query.host, query.target);
        copy_text(&mut c_query.token_name, query.token_name.unwrap_or(""));
        let mut verdict = veil_tunnel_verdict {
            action: veil_tunnel_action::VEIL_TUNNEL_PASS as c_int,
            refusal: 0,
            host: [0; VEIL_EVENT_TEXT_LEN],
            port: 0,
        };
        // SAFETY: the hook and `user` are what the caller registered; the query and the
        // verdict live through the call.
        unsafe { hook(user, &raw const c_query, &raw mut verdict) };
        // An answer that cannot be read refuses: the hook meant something other than pass.
        read_verdict(&verdict).unwrap_or(TunnelVerdict::Refuse(Refusal::Internal))
    }
}

/// The engine's form of a C verdict; `None` when it cannot be read.
fn read_verdict(verdict: &veil_tunnel_verdict) -> Option<TunnelVerdict> {
    match verdict.action {
        0 => Some(TunnelVerdict::Pass),
        1 => tunnel::refusal(verdict.refusal).map(TunnelVerdict::Refuse),
        2 => {
            let bytes: Vec<u8> = verdict
                .host
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c.to_ne_bytes()[0])
                .collect();
            let text = std::str::from_utf8(&bytes).ok()?;
            let host = match text.parse::<IpAddr>() {
                Ok(ip) => Host::Ip(ip),
                Err(_) => Host::Name(Name::new(text).ok()?),
            };
            (verdict.port != 0)
                .then(|| TunnelVerdict::Redirect(TunnelTarget::new(host, verdict.port)))
        }
        _ => None,
    }
}

/// Edge: the hooks the engine consults from now on (`NULL` for a hook: the default, which
/// accepts every connection and passes every request to the host). `user` is handed back to
/// each call; it must stay valid until the hooks are replaced or the endpoint freed. See
/// `veil_tunnel_hook` and `veil_ingress_hook` for when they run and what they answer.
///
/// # Safety
/// `endpoint` must be NULL or live; each hook NULL or a function of its type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_set_hooks(
    endpoint: *mut veil_endpoint,
    ingress: veil_ingress_hook,
    tunnel: veil_tunnel_hook,
    user: *mut c_void,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        endpoint.engine().set_policy(CPolicy {
            tunnel: tunnel.map(|hook| (hook, user)),
            ingress: ingress.map(|hook| (hook, user)),
        });
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(action: c_int, refusal: c_int, host: &str, port: u16) -> veil_tunnel_verdict {
        let mut out = veil_tunnel_verdict {
            action,
            refusal,
            host: [0; VEIL_EVENT_TEXT_LEN],
            port,
        };
        copy_text(&mut out.host, host);
        out
    }

    #[test]
    fn verdicts_are_read_or_refused() {
        assert_eq!(
            read_verdict(&verdict(0, 0, "", 0)),
            Some(TunnelVerdict::Pass)
        );
        assert_eq!(
            read_verdict(&verdict(1, 1, "", 0)),
            Some(TunnelVerdict::Refuse(Refusal::Denied))
        );
        let redirect = read_verdict(&verdict(2, 0, "example.com", 443));
        assert_eq!(
            redirect,
            Some(TunnelVerdict::Redirect(TunnelTarget::new(
                Name::new("example.com").expect("name"),
                443
            )))
        );
        let v6 = read_verdict(&verdict(2, 0, "2001:db8::1", 80));
        assert!(matches!(v6, Some(TunnelVerdict::Redirect(t)) if matches!(t.host, Host::Ip(_))));
        for bad in [
            verdict(1, 99, "", 0),
            verdict(2, 0, "not a host", 80),
            verdict(2, 0, "example.com", 0),
            verdict(7, 0, "", 0),
        ] {
            assert_eq!(read_verdict(&bad), None);
        }
    }
}
