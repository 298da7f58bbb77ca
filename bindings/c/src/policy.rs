//! The engine's hooks (`veil_engine::Policy`) as C callbacks: a function pointer and the
//! caller's `user` pointer per hook. A hook is called synchronously, on the calling thread,
//! from inside the `veil_endpoint_*` call that processes the input concerned (feeding a
//! datagram, a timeout, a poll): it must answer at once and must not call into the same
//! endpoint. Its answer is checked: an answer the engine cannot read refuses the request
//! (`VEIL_REFUSAL_INTERNAL`) or closes the connection, never crashes.
//!
//! A hook that needs to wait (a database, an RPC) answers "ask" (`VEIL_TUNNEL_ASK`,
//! `VEIL_INGRESS_ASK`): the engine reports `VEIL_EVENT_TUNNEL_DECISION` or
//! `VEIL_EVENT_INGRESS_DECISION` and the host answers later with
//! `veil_endpoint_decide_tunnel` / `veil_endpoint_decide_ingress`.

use std::ffi::{c_char, c_int, c_void};
use std::net::{IpAddr, SocketAddr};

use veil_engine::{
    ConnectionHandle, Egress, EgressQuery, EgressVerdict, Host, IngressQuery, IngressVerdict, Name,
    Policy, Refusal, Tags, TunnelId, TunnelQuery, TunnelTarget, TunnelVerdict,
};

use crate::addr::{self, veil_sockaddr};
use crate::endpoint::{veil_endpoint, with_endpoint};
use crate::event::{VEIL_EVENT_TEXT_LEN, c_token_index, c_tunnel_kind, copy_host, copy_text};
use crate::ptr;
use crate::result::veil_result::{
    self, VEIL_ERR_INVALID_ARGUMENT, VEIL_ERR_NULL, VEIL_ERR_PROHIBITED, VEIL_ERR_UNKNOWN_TUNNEL,
    VEIL_OK,
};
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
    /// The identity of the client's certificate (mutual TLS); empty without one.
    pub certificate_identity: [c_char; VEIL_EVENT_TEXT_LEN],
    /// The server name the tunnel's first bytes asked for (TLS SNI, HTTP Host) when the
    /// edge sniffed them (a rule matches on `sni`); empty otherwise.
    pub sni: [c_char; VEIL_EVENT_TEXT_LEN],
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
    /// Ask the host: the engine reports `VEIL_EVENT_TUNNEL_DECISION` and waits for
    /// `veil_endpoint_decide_tunnel` (hook only; not an answer to a decision).
    VEIL_TUNNEL_ASK = 3,
    /// Pass, and show every HTTP/1.1 request the client sends inside the tunnel to the
    /// HTTP hook (`veil_endpoint_set_http_hook`) first.
    VEIL_TUNNEL_INSPECT = 4,
}

/// The tunnel hook's answer (and the host's, to `veil_endpoint_decide_tunnel`); the
/// engine sets it to `VEIL_TUNNEL_PASS` with no tags before the hook's call.
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
    /// Labels for the tunnel, comma-separated (NUL-terminated; empty for none): at most 8,
    /// each 1–64 bytes of ASCII letters, digits and `_ - . : = /`. Logs carry them;
    /// `veil_endpoint_tunnel_tags` reads them back.
    pub tags: [c_char; VEIL_EVENT_TEXT_LEN],
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

/// What the ingress hook (and `veil_endpoint_decide_ingress`) decides.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum veil_ingress_action {
    /// Serve the connection.
    VEIL_INGRESS_ACCEPT = 0,
    /// Close it with the error code given.
    VEIL_INGRESS_CLOSE = 1,
    /// Ask the host: `VEIL_EVENT_INGRESS_DECISION`, answered with
    /// `veil_endpoint_decide_ingress` (hook only).
    VEIL_INGRESS_ASK = 2,
}

/// The ingress hook: returns a `veil_ingress_action`. With `VEIL_INGRESS_CLOSE` (or any
/// value that is not an action) the connection closes at once with the application error
/// code written to `error_code` (the engine sets it to 0x0100, `H3_NO_ERROR`, before the
/// call).
pub type veil_ingress_hook = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        query: *const veil_ingress_query,
        error_code: *mut u64,
    ) -> c_int,
>;

/// What the egress hook sees: a tunnel whose target the host resolved.
#[repr(C)]
pub struct veil_egress_query {
    /// The tunnel.
    pub tunnel: u64,
    /// The QUIC connection it arrived on.
    pub connection: u64,
    /// The client's address as the edge sees it.
    pub peer: veil_sockaddr,
    /// What the tunnel carries.
    pub tunnel_kind: veil_tunnel_kind,
    /// The target host (after any redirect).
    pub host: [c_char; VEIL_EVENT_TEXT_LEN],
    /// The target port.
    pub port: u16,
    /// Index of the client's token; -1 without tokens.
    pub token_index: i64,
    /// Every address the host resolved, in the resolver's order (`candidate_count` of
    /// them; valid during the call only).
    pub candidates: *const veil_sockaddr,
    /// How many candidates.
    pub candidate_count: usize,
    /// For each candidate, 1 when the edge's rules and egress policy permit it, else 0.
    pub permitted: *const u8,
    /// The index of the candidate the default would dial (the first permitted); -1 when
    /// none is permitted.
    pub default_index: i64,
}

/// What the egress hook decides (`veil_egress_verdict.action`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum veil_egress_action {
    /// Dial candidate `index`, from `from` when its length is not 0.
    VEIL_EGRESS_DIAL = 0,
    /// Refuse the tunnel with `refusal`.
    VEIL_EGRESS_REFUSE = 1,
}

/// The egress hook's answer; the engine fills it with the default before the call
/// (dial `default_index` from anywhere, or refuse with `VEIL_REFUSAL_PROHIBITED`).
#[repr(C)]
pub struct veil_egress_verdict {
    /// A `veil_egress_action`.
    pub action: c_int,
    /// With `VEIL_EGRESS_DIAL`: the index of the candidate to dial.
    pub index: usize,
    /// With `VEIL_EGRESS_DIAL`: the local address to bind first (port 0 for any); length 0
    /// for none.
    pub from: veil_sockaddr,
    /// With `VEIL_EGRESS_REFUSE`: a `veil_refusal`.
    pub refusal: c_int,
}

/// The egress hook: reads `query`, writes `verdict`.
pub type veil_egress_hook = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        query: *const veil_egress_query,
        verdict: *mut veil_egress_verdict,
    ),
>;

type TunnelFn =
    unsafe extern "C" fn(*mut c_void, *const veil_tunnel_query, *mut veil_tunnel_verdict);
type IngressFn = unsafe extern "C" fn(*mut c_void, *const veil_ingress_query, *mut u64) -> c_int;
type EgressFn =
    unsafe extern "C" fn(*mut c_void, *const veil_egress_query, *mut veil_egress_verdict);

/// The C hooks behind the engine's `Policy`, each with its `user` pointer. The C endpoint
/// keeps a copy, so that setting one hook keeps the others.
#[derive(Clone, Copy, Default)]
pub(crate) struct CHooks {
    tunnel: Option<(TunnelFn, *mut c_void)>,
    ingress: Option<(IngressFn, *mut c_void)>,
    egress: Option<(EgressFn, *mut c_void)>,
    pub(crate) http: Option<(crate::http_hook::HttpFn, *mut c_void)>,
}

/// The engine's `Policy` made of [`CHooks`].
pub(crate) struct CPolicy(pub(crate) CHooks);

// SAFETY: the C ABI's contract (veil.h) is that an endpoint is used from one thread at a
// time; the hooks run inside those calls, so the `user` pointers never cross threads
// concurrently. What they point to is the caller's to keep valid until the hook is
// replaced or the endpoint freed.
unsafe impl Send for CPolicy {}

impl Policy for CPolicy {
    fn http_request(
        &mut self,
        query: &veil_engine::HttpRequestQuery<'_>,
    ) -> veil_engine::HttpVerdict {
        match self.0.http {
            Some((hook, user)) => crate::http_hook::ask(hook, user, query),
            None => veil_engine::HttpVerdict::Allow,
        }
    }

    fn ingress(&mut self, query: &IngressQuery<'_>) -> IngressVerdict {
        let Some((hook, user)) = self.0.ingress else {
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
        let action = unsafe { hook(user, &raw const c_query, &raw mut error_code) };
        ingress_verdict(action, error_code)
    }

    fn tunnel(&mut self, query: &TunnelQuery<'_>, tags: &mut Tags) -> TunnelVerdict {
        let Some((hook, user)) = self.0.tunnel else {
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
            certificate_identity: [0; VEIL_EVENT_TEXT_LEN],
            sni: [0; VEIL_EVENT_TEXT_LEN],
        };
        copy_host(&mut c_query.host, query.target);
        copy_text(&mut c_query.token_name, query.token_name.unwrap_or(""));
        copy_text(
            &mut c_query.certificate_identity,
            query.certificate_identity.unwrap_or(""),
        );
        copy_text(&mut c_query.sni, query.sni.unwrap_or(""));
        let mut verdict = veil_tunnel_verdict {
            action: veil_tunnel_action::VEIL_TUNNEL_PASS as c_int,
            refusal: 0,
            host: [0; VEIL_EVENT_TEXT_LEN],
            port: 0,
            tags: [0; VEIL_EVENT_TEXT_LEN],
        };
        // SAFETY: the hook and `user` are what the caller registered; the query and the
        // verdict live through the call.
        unsafe { hook(user, &raw const c_query, &raw mut verdict) };
        // An answer that cannot be read refuses: the hook meant something other than pass.
        match (read_verdict(&verdict), read_tags(&verdict.tags)) {
            (Some(read), Some(labels)) => {
                *tags = labels;
                read
            }
            _ => TunnelVerdict::Refuse(Refusal::Internal),
        }
    }

    fn egress(&mut self, query: &EgressQuery<'_>) -> EgressVerdict {
        let default = query.default_verdict();
        let Some((hook, user)) = self.0.egress else {
            return default;
        };
        let Some(tunnel_kind) = c_tunnel_kind(query.kind) else {
            return default;
        };
        let candidates: Vec<veil_sockaddr> = query.candidates.iter().map(|&a| a.into()).collect();
        let permitted: Vec<u8> = query
            .candidates
            .iter()
            .map(|a| u8::from(query.permitted.contains(a)))
            .collect();
        let default_index = query
            .permitted
            .first()
            .and_then(|first| query.candidates.iter().position(|a| a == first));
        let mut c_query = veil_egress_query {
            tunnel: query.tunnel.0,
            connection: query.client.connection.0,
            peer: query.client.peer.into(),
            tunnel_kind,
            host: [0; VEIL_EVENT_TEXT_LEN],
            port: query.target.port,
            token_index: c_token_index(query.client.token_index),
            candidates: candidates.as_ptr(),
            candidate_count: candidates.len(),
            permitted: permitted.as_ptr(),
            default_index: default_index.map_or(-1, |i| i64::try_from(i).unwrap_or(-1)),
        };
        copy_host(&mut c_query.host, query.target);
        let mut verdict = veil_egress_verdict {
            action: match default {
                EgressVerdict::Dial(_) => veil_egress_action::VEIL_EGRESS_DIAL as c_int,
                _ => veil_egress_action::VEIL_EGRESS_REFUSE as c_int,
            },
            index: default_index.unwrap_or(0),
            from: veil_sockaddr::unspecified(),
            refusal: tunnel::veil_refusal::VEIL_REFUSAL_PROHIBITED as c_int,
        };
        // SAFETY: the hook and `user` are what the caller registered; the query, the
        // arrays it points to and the verdict live through the call.
        unsafe { hook(user, &raw const c_query, &raw mut verdict) };
        read_egress(&verdict, query.candidates).unwrap_or(EgressVerdict::Refuse(Refusal::Internal))
    }
}

/// The engine's form of an ingress action; anything unknown closes.
fn ingress_verdict(action: c_int, error_code: u64) -> IngressVerdict {
    match action {
        0 => IngressVerdict::Accept,
        2 => IngressVerdict::Ask,
        _ => IngressVerdict::Close { error_code },
    }
}

/// The engine's form of an egress verdict; `None` when it cannot be read.
fn read_egress(verdict: &veil_egress_verdict, candidates: &[SocketAddr]) -> Option<EgressVerdict> {
    match verdict.action {
        0 => {
            let to = *candidates.get(verdict.index)?;
            let from = if verdict.from.len == 0 {
                None
            } else {
                // SAFETY: `verdict.from` is a field of a live struct.
                Some(unsafe { addr::read(&raw const verdict.from) }.ok()?)
            };
            Some(EgressVerdict::Dial(Egress { to, from }))
        }
        1 => tunnel::refusal(verdict.refusal).map(EgressVerdict::Refuse),
        _ => None,
    }
}

/// The labels of a verdict's `tags` field; `None` when one is not a valid tag.
fn read_tags(field: &[c_char; VEIL_EVENT_TEXT_LEN]) -> Option<Tags> {
    let bytes: Vec<u8> = field
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c.to_ne_bytes()[0])
        .collect();
    let text = std::str::from_utf8(&bytes).ok()?;
    let mut tags = Tags::new();
    for label in text.split(',').filter(|label| !label.is_empty()) {
        tags.push(label).ok()?;
    }
    Some(tags)
}

/// The engine's form of a C verdict; `None` when it cannot be read (`VEIL_TUNNEL_ASK`
/// reads as `TunnelVerdict::Ask`: the caller decides whether it may).
fn read_verdict(verdict: &veil_tunnel_verdict) -> Option<TunnelVerdict> {
    match verdict.action {
        0 => Some(TunnelVerdict::Pass),
        3 => Some(TunnelVerdict::Ask),
        4 => Some(TunnelVerdict::Inspect),
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
        let hooks = endpoint.hooks_mut();
        hooks.tunnel = tunnel.map(|hook| (hook, user));
        hooks.ingress = ingress.map(|hook| (hook, user));
        let hooks = *hooks;
        endpoint.engine().set_policy(CPolicy(hooks));
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Edge: the egress hook the engine consults from now on (`NULL`: the default, the first
/// address egress policy permits); the ingress and tunnel hooks stay. It runs inside
/// `veil_endpoint_egress_for`. `user` as for `veil_endpoint_set_hooks`.
///
/// # Safety
/// `endpoint` must be NULL or live; `hook` NULL or a function of its type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_set_egress_hook(
    endpoint: *mut veil_endpoint,
    hook: veil_egress_hook,
    user: *mut c_void,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let hooks = endpoint.hooks_mut();
        hooks.egress = hook.map(|hook| (hook, user));
        let hooks = *hooks;
        endpoint.engine().set_policy(CPolicy(hooks));
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Edge: answers a `VEIL_EVENT_TUNNEL_DECISION` with `verdict` (`VEIL_TUNNEL_PASS`,
/// `_REFUSE` or `_REDIRECT`, and its tags). A pass or redirect then becomes a
/// `VEIL_EVENT_TUNNEL_REQUEST`.
///
/// Results: `VEIL_OK`; `VEIL_ERR_UNKNOWN_TUNNEL` (gone: the decision came too late);
/// `VEIL_ERR_INVALID_STATE` (no decision pending, or `VEIL_TUNNEL_ASK` again);
/// `VEIL_ERR_INVALID_ARGUMENT` (a verdict that cannot be read: bad refusal, host, port or
/// tags).
///
/// # Safety
/// `endpoint` must be NULL or live; `verdict` NULL or valid for reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_decide_tunnel(
    endpoint: *mut veil_endpoint,
    tunnel: u64,
    verdict: *const veil_tunnel_verdict,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        if verdict.is_null() {
            return Err(VEIL_ERR_NULL);
        }
        if !verdict.is_aligned() {
            return Err(VEIL_ERR_INVALID_ARGUMENT);
        }
        // SAFETY: non-NULL and aligned (checked); the caller promises it is readable.
        let verdict = unsafe { &*verdict };
        let read = read_verdict(verdict).ok_or(VEIL_ERR_INVALID_ARGUMENT)?;
        let tags = read_tags(&verdict.tags).ok_or(VEIL_ERR_INVALID_ARGUMENT)?;
        endpoint
            .engine()
            .decide_tunnel(TunnelId(tunnel), read, tags)
            .map_err(veil_result::from)?;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Edge: answers a `VEIL_EVENT_INGRESS_DECISION`: `VEIL_INGRESS_ACCEPT` serves the
/// connection, `VEIL_INGRESS_CLOSE` closes it with `error_code`.
///
/// Results: `VEIL_OK`; `VEIL_ERR_UNKNOWN_TUNNEL` (the connection is gone);
/// `VEIL_ERR_INVALID_STATE` (no decision pending, or `VEIL_INGRESS_ASK` again);
/// `VEIL_ERR_INVALID_ARGUMENT` (not an action).
///
/// # Safety
/// `endpoint` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_decide_ingress(
    endpoint: *mut veil_endpoint,
    connection: u64,
    action: c_int,
    error_code: u64,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        if !(0..=2).contains(&action) {
            return Err(VEIL_ERR_INVALID_ARGUMENT);
        }
        endpoint
            .engine()
            .decide_ingress(
                ConnectionHandle(connection),
                ingress_verdict(action, error_code),
            )
            .map_err(veil_result::from)?;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Where a tunnel's egress goes (`veil_endpoint_egress_for`).
#[repr(C)]
pub struct veil_egress {
    /// The index in the candidates of the address to dial.
    pub index: usize,
    /// The local address to bind before dialling; length 0 for none.
    pub from: veil_sockaddr,
    /// When the result is `VEIL_ERR_PROHIBITED`: the `veil_refusal` to answer with.
    pub refusal: c_int,
}

/// Edge: where `tunnel` dials, among the addresses its target resolved to (in the
/// resolver's order): the egress hook's choice, by default the first one the edge's rules
/// and egress policy permit. Dial exactly that address (bound to `from` when it has a
/// length), so that no second lookup can swap in one that was not checked.
///
/// Results: `VEIL_OK`; `VEIL_ERR_PROHIBITED` (refuse the tunnel with `out->refusal`:
/// nothing permitted, nothing resolved, or the hook refused); `VEIL_ERR_NULL`;
/// `VEIL_ERR_INVALID_ARGUMENT` (a malformed address).
///
/// # Safety
/// `endpoint` must be NULL or live; `candidates` NULL or valid for reads of `count`
/// `veil_sockaddr`s (may be NULL when `count` is 0); `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_egress_for(
    endpoint: *mut veil_endpoint,
    tunnel: u64,
    candidates: *const veil_sockaddr,
    count: usize,
    out: *mut veil_egress,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let out = ptr::out(out)?;
        if candidates.is_null() && count > 0 {
            return Err(VEIL_ERR_NULL);
        }
        let addrs = (0..count)
            // SAFETY: the caller promises `count` veil_sockaddrs at `candidates` (non-NULL
            // when `count` > 0, checked above); `addr::read` checks each one.
            .map(|index| unsafe { addr::read(candidates.add(index)) })
            .collect::<Result<Vec<_>, _>>()?;
        let (answer, result) = match endpoint.engine().egress_for(TunnelId(tunnel), &addrs) {
            Ok(egress) => {
                let index = addrs.iter().position(|a| *a == egress.to).unwrap_or(0);
                let from = egress
                    .from
                    .map_or_else(veil_sockaddr::unspecified, Into::into);
                (
                    veil_egress {
                        index,
                        from,
                        refusal: 0,
                    },
                    VEIL_OK,
                )
            }
            Err(refusal) => (
                veil_egress {
                    index: 0,
                    from: veil_sockaddr::unspecified(),
                    refusal: tunnel::veil_refusal::from(refusal) as c_int,
                },
                VEIL_ERR_PROHIBITED,
            ),
        };
        // SAFETY: `out` was checked by `ptr::out`; the caller promises it is writable.
        unsafe { ptr::put(out, answer) };
        Ok(result)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Edge: writes `tunnel`'s tags, comma-separated and NUL-terminated, to `out` (`len`
/// bytes).
///
/// Results: `VEIL_OK`; `VEIL_ERR_UNKNOWN_TUNNEL`; `VEIL_ERR_BUFFER_TOO_SMALL` (`len` is
/// not larger than the text); `VEIL_ERR_NULL`.
///
/// # Safety
/// `endpoint` must be NULL or live; `out` NULL or writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_tunnel_tags(
    endpoint: *mut veil_endpoint,
    tunnel: u64,
    out: *mut c_char,
    len: usize,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        if out.is_null() {
            return Err(VEIL_ERR_NULL);
        }
        let text = endpoint
            .engine()
            .tunnel_tags(TunnelId(tunnel))
            .ok_or(VEIL_ERR_UNKNOWN_TUNNEL)?
            .to_string();
        if text.len() >= len {
            return Err(veil_result::VEIL_ERR_BUFFER_TOO_SMALL);
        }
        // SAFETY: `out` is non-NULL and the caller promises `len` writable bytes; the
        // text and its NUL fit (checked).
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr().cast::<c_char>(), out, text.len());
            out.add(text.len()).write(0);
        }
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
            tags: [0; VEIL_EVENT_TEXT_LEN],
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
        assert_eq!(
            read_verdict(&verdict(3, 0, "", 0)),
            Some(TunnelVerdict::Ask)
        );
    }

    #[test]
    fn tags_are_read_or_refused() {
        let mut field = [0; VEIL_EVENT_TEXT_LEN];
        copy_text(&mut field, "a,b:c,,d=1");
        let tags = read_tags(&field).expect("valid tags");
        assert_eq!(tags.to_string(), "a,b:c,d=1");
        copy_text(&mut field, "");
        assert_eq!(read_tags(&field), Some(Tags::new()));
        copy_text(&mut field, "ok,not ok");
        assert_eq!(read_tags(&field), None);
    }

    #[test]
    fn ingress_actions_and_unknown_values_close() {
        assert_eq!(ingress_verdict(0, 5), IngressVerdict::Accept);
        assert_eq!(ingress_verdict(2, 5), IngressVerdict::Ask);
        assert_eq!(
            ingress_verdict(1, 5),
            IngressVerdict::Close { error_code: 5 }
        );
        assert_eq!(
            ingress_verdict(-3, 9),
            IngressVerdict::Close { error_code: 9 }
        );
    }
}
