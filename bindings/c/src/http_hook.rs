//! The engine's `http_request` hook as a C callback: for tunnels the tunnel hook passed
//! with `VEIL_TUNNEL_INSPECT`, every HTTP/1.1 request the client sends inside them, before
//! it goes on to the origin. Same rules as the other hooks (`policy.rs`): called
//! synchronously, must answer at once, must not call into the endpoint; an answer that
//! cannot be read denies the request (500).

use std::ffi::{c_char, c_int, c_void};

use veil_engine::{HttpRequestQuery, HttpVerdict};

use crate::addr::veil_sockaddr;
use crate::endpoint::{veil_endpoint, with_endpoint};
use crate::event::{VEIL_EVENT_TEXT_LEN, copy_host};
use crate::policy::CPolicy;
use crate::result::veil_result::{self, VEIL_OK};

/// Bytes of `veil_http_verdict.add`, NUL included.
pub const VEIL_HTTP_ADD_LEN: usize = 1024;

/// What the HTTP hook sees of one request. The pointers are valid during the call only
/// and are not NUL-terminated: use their lengths.
#[repr(C)]
pub struct veil_http_query {
    /// The tunnel it travels in.
    pub tunnel: u64,
    /// The QUIC connection of the tunnel.
    pub connection: u64,
    /// The client's address as the edge sees it.
    pub peer: veil_sockaddr,
    /// The tunnel's target host (NUL-terminated) and port.
    pub host: [c_char; VEIL_EVENT_TEXT_LEN],
    /// The tunnel's target port.
    pub port: u16,
    /// The whole head as the client sent it, up to and including its empty line.
    pub head: *const u8,
    /// Its length.
    pub head_len: usize,
    /// The method, as sent.
    pub method: *const c_char,
    /// Its length.
    pub method_len: usize,
    /// The request-target, as sent (`/path?query`, `*`, or an absolute URI).
    pub target: *const c_char,
    /// Its length.
    pub target_len: usize,
}

/// What the HTTP hook decides (`veil_http_verdict.action`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum veil_http_action {
    /// On to the origin as it is.
    VEIL_HTTP_ALLOW = 0,
    /// Not to the origin: the client gets a response with `status` (400–599) after the
    /// answers to its earlier requests, and the tunnel ends.
    VEIL_HTTP_DENY = 1,
    /// On to the origin without the fields named in `remove` and with those in `add`.
    VEIL_HTTP_EDIT = 2,
}

/// The HTTP hook's answer; the engine sets it to `VEIL_HTTP_ALLOW` before the call.
#[repr(C)]
pub struct veil_http_verdict {
    /// A `veil_http_action`.
    pub action: c_int,
    /// With `VEIL_HTTP_DENY`: the response's status.
    pub status: u16,
    /// With `VEIL_HTTP_EDIT`: field names to remove, comma-separated (NUL-terminated).
    pub remove: [c_char; VEIL_EVENT_TEXT_LEN],
    /// With `VEIL_HTTP_EDIT`: fields to add, one `Name: value` per line, lines separated
    /// by `\n` (NUL-terminated). Framing fields and `Host` cannot be edited.
    pub add: [c_char; VEIL_HTTP_ADD_LEN],
}

/// The HTTP hook: reads `query`, writes `verdict`.
pub type veil_http_hook = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        query: *const veil_http_query,
        verdict: *mut veil_http_verdict,
    ),
>;

pub(crate) type HttpFn =
    unsafe extern "C" fn(*mut c_void, *const veil_http_query, *mut veil_http_verdict);

/// Asks the C hook about one request.
pub(crate) fn ask(hook: HttpFn, user: *mut c_void, query: &HttpRequestQuery<'_>) -> HttpVerdict {
    let request = query.request;
    let mut c_query = veil_http_query {
        tunnel: query.tunnel.0,
        connection: query.client.connection.0,
        peer: query.client.peer.into(),
        host: [0; VEIL_EVENT_TEXT_LEN],
        port: query.target.port,
        head: query.head.as_ptr(),
        head_len: query.head.len(),
        method: request.method().as_ptr().cast(),
        method_len: request.method().len(),
        target: request.target().as_ptr().cast(),
        target_len: request.target().len(),
    };
    copy_host(&mut c_query.host, query.target);
    let mut verdict = veil_http_verdict {
        action: veil_http_action::VEIL_HTTP_ALLOW as c_int,
        status: 0,
        remove: [0; VEIL_EVENT_TEXT_LEN],
        add: [0; VEIL_HTTP_ADD_LEN],
    };
    // SAFETY: the hook and `user` are what the caller registered; the query, the bytes it
    // points to and the verdict live through the call.
    unsafe { hook(user, &raw const c_query, &raw mut verdict) };
    read(&verdict).unwrap_or(HttpVerdict::Deny { status: 500 })
}

/// The engine's form of a C verdict; `None` when it cannot be read.
fn read(verdict: &veil_http_verdict) -> Option<HttpVerdict> {
    match verdict.action {
        0 => Some(HttpVerdict::Allow),
        1 => Some(HttpVerdict::Deny {
            status: verdict.status,
        }),
        2 => {
            let remove = text(&verdict.remove)?
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect();
            let add = text(&verdict.add)?
                .split('\n')
                .filter(|line| !line.trim().is_empty())
                .map(|line| {
                    let (name, value) = line.split_once(':')?;
                    Some((name.trim().to_owned(), value.trim().to_owned()))
                })
                .collect::<Option<Vec<_>>>()?;
            Some(HttpVerdict::Edit { remove, add })
        }
        _ => None,
    }
}

/// The NUL-terminated UTF-8 text of a fixed field.
fn text(field: &[c_char]) -> Option<String> {
    let bytes: Vec<u8> = field
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c.to_ne_bytes()[0])
        .collect();
    String::from_utf8(bytes).ok()
}

/// Edge: the HTTP hook the engine consults from now on (`NULL`: every request allowed);
/// the other hooks stay. It runs inside `veil_endpoint_tunnel_recv` of a tunnel the
/// tunnel hook passed with `VEIL_TUNNEL_INSPECT`. `user` as for `veil_endpoint_set_hooks`.
///
/// # Safety
/// `endpoint` must be NULL or live; `hook` NULL or a function of its type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_set_http_hook(
    endpoint: *mut veil_endpoint,
    hook: veil_http_hook,
    user: *mut c_void,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let hooks = endpoint.hooks_mut();
        hooks.http = hook.map(|hook| (hook, user));
        let hooks = *hooks;
        endpoint.engine().set_policy(CPolicy(hooks));
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::copy_text;

    #[test]
    fn verdicts_are_read_or_deny() {
        let mut verdict = veil_http_verdict {
            action: 2,
            status: 0,
            remove: [0; VEIL_EVENT_TEXT_LEN],
            add: [0; VEIL_HTTP_ADD_LEN],
        };
        copy_text(&mut verdict.remove, "cookie, x-a");
        let mut add = [0; VEIL_HTTP_ADD_LEN];
        for (i, b) in b"X-Veil: 1\nX-Two: a b\n".iter().enumerate() {
            add[i] = c_char::from_ne_bytes([*b]);
        }
        verdict.add = add;
        assert_eq!(
            read(&verdict),
            Some(HttpVerdict::Edit {
                remove: vec!["cookie".into(), "x-a".into()],
                add: vec![
                    ("X-Veil".into(), "1".into()),
                    ("X-Two".into(), "a b".into())
                ],
            })
        );
        verdict.add = [0; VEIL_HTTP_ADD_LEN];
        verdict.add[0] = c_char::from_ne_bytes([b'x']); // a line without a colon
        assert_eq!(read(&verdict), None);
        verdict.action = 9;
        assert_eq!(read(&verdict), None);
    }
}
