//! `veil_config`: a builder for the engine's configuration, one setter per knob.
//!
//! A setter that does not apply to the configuration's role returns `VEIL_ERR_WRONG_ROLE`;
//! a malformed value returns `VEIL_ERR_INVALID_ARGUMENT`. Either way the configuration is
//! unchanged and `veil_config_last_error` says what was wrong. Values the engine checks
//! itself (ranges, PEM contents, files) are checked by `veil_endpoint_new`.

use std::ffi::{CStr, CString, c_char, c_int};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use veil_engine::egress::IpNet;
use veil_engine::{
    ClientConfig, Config, CongestionControl, EdgeConfig, Pem, QuicConfig, RoleConfig, Secret,
    Token, TunnelKind, TunnelKinds, Verify,
};

use crate::addr::{self, veil_sockaddr};
use crate::panic::{Outcome, boundary};
use crate::ptr;
use crate::result::veil_result::{self, VEIL_ERR_INVALID_ARGUMENT, VEIL_ERR_WRONG_ROLE, VEIL_OK};
use crate::tunnel::veil_tunnel_kind;

/// Which side an endpoint plays (the `role` argument of `veil_config_new`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum veil_role {
    /// Opens tunnels to an edge over one QUIC connection.
    VEIL_ROLE_CLIENT = 0,
    /// Accepts QUIC connections and answers tunnel requests.
    VEIL_ROLE_EDGE = 1,
}

/// Congestion controller (the argument of `veil_config_set_congestion_control`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum veil_congestion_control {
    /// CUBIC (RFC 9438), the default.
    VEIL_CC_CUBIC = 0,
    /// `BBRv2`.
    VEIL_CC_BBR2 = 1,
    /// `NewReno` (RFC 9002 §7).
    VEIL_CC_RENO = 2,
}

/// A configuration being built. Opaque: create it with `veil_config_new`, set what differs
/// from the defaults, pass it to `veil_endpoint_new` (as often as wanted), free it with
/// `veil_config_free`.
pub struct veil_config {
    role: veil_role,
    quic: QuicConfig,
    edge: EdgeConfig,
    /// The self-signed names are still the engine's defaults (the first added name
    /// replaces them).
    default_names: bool,
    client: ClientDraft,
    /// What every connection ID the endpoint issues says about it (its number among the
    /// endpoints on one port: `veil_config_set_endpoint_number`).
    cid_layout: Option<veil_engine::CidLayout>,
    /// The edge and process generation every issued connection ID names
    /// (`veil_config_set_server_id`).
    server_id: Option<(u8, u8)>,
    /// The message of the last failed call on this configuration ("" if none).
    error: CString,
}

/// The client settings collected so far; the engine's `ClientConfig` needs the edge and
/// the verification up front.
#[derive(Default)]
struct ClientDraft {
    edge_addr: Option<SocketAddr>,
    server_name: Option<String>,
    local_addr: Option<SocketAddr>,
    verify: Option<Verify>,
    token: Option<Secret>,
    certificate: Option<(Pem, Pem)>,
    reconnect: Option<(Duration, Duration)>,
    pending: Option<(usize, Duration)>,
    udp_path_template: Option<String>,
    transport: Option<veil_engine::Transport>,
    optimistic: bool,
}

impl veil_config {
    /// The connection ID layout the endpoint issues by: its number among the endpoints on
    /// one port and the server ID, as set; `None` (random IDs) when neither was.
    pub(crate) fn cid_layout(&self) -> Option<veil_engine::CidLayout> {
        let Some((edge, generation)) = self.server_id else {
            return self.cid_layout;
        };
        self.cid_layout
            .or_else(|| veil_engine::CidLayout::new(0, 1))
            .map(|layout| layout.with_server(edge, generation))
    }

    fn new(role: veil_role) -> Self {
        Self {
            role,
            quic: QuicConfig::default(),
            edge: EdgeConfig::default(),
            default_names: true,
            client: ClientDraft::default(),
            cid_layout: None,
            server_id: None,
            error: CString::default(),
        }
    }

    /// Records `message` as the last error and returns `code`.
    pub(crate) fn fail(&mut self, code: veil_result, message: &str) -> veil_result {
        // An interior NUL cannot come from our messages; drop anything after one anyway.
        let message = message.split('\0').next().unwrap_or_default();
        self.error = CString::new(message).unwrap_or_default();
        code
    }

    fn edge_mut(&mut self, setter: &str) -> Result<&mut EdgeConfig, veil_result> {
        match self.role {
            veil_role::VEIL_ROLE_EDGE => Ok(&mut self.edge),
            veil_role::VEIL_ROLE_CLIENT => Err(self.fail(
                VEIL_ERR_WRONG_ROLE,
                &format!("{setter}: an edge setting, this configuration is a client's"),
            )),
        }
    }

    fn client_mut(&mut self, setter: &str) -> Result<&mut ClientDraft, veil_result> {
        match self.role {
            veil_role::VEIL_ROLE_CLIENT => Ok(&mut self.client),
            veil_role::VEIL_ROLE_EDGE => Err(self.fail(
                VEIL_ERR_WRONG_ROLE,
                &format!("{setter}: a client setting, this configuration is an edge's"),
            )),
        }
    }

    /// The engine's configuration, or what is missing.
    pub(crate) fn build(&self) -> Result<Config, String> {
        let role = match self.role {
            veil_role::VEIL_ROLE_EDGE => RoleConfig::Edge(self.edge.clone()),
            veil_role::VEIL_ROLE_CLIENT => RoleConfig::Client(self.client.build()?),
        };
        Ok(Config {
            role,
            quic: self.quic.clone(),
        })
    }
}

impl ClientDraft {
    fn build(&self) -> Result<ClientConfig, String> {
        let (Some(edge_addr), Some(server_name)) = (self.edge_addr, &self.server_name) else {
            return Err("client: no edge address and server name (veil_config_set_edge)".into());
        };
        let Some(verify) = self.verify.clone() else {
            return Err("client: no certificate verification chosen \
                        (veil_config_verify_pin, _verify_ca_pem, _verify_ca_file or \
                        _verify_insecure)"
                .into());
        };
        let mut client = ClientConfig::new(edge_addr, server_name.clone(), verify);
        // HTTP/3 unless the embedder said it can dial TCP (`veil_config_set_transport`).
        client.transport = self.transport.unwrap_or(veil_engine::Transport::H3);
        client.local_addr = self.local_addr;
        client.token.clone_from(&self.token);
        client.certificate.clone_from(&self.certificate);
        if let Some((initial, max)) = self.reconnect {
            client.reconnect_initial = initial;
            client.reconnect_max = max;
        }
        if let Some((max, deadline)) = self.pending {
            client.max_pending_tunnels = max;
            client.pending_deadline = deadline;
        }
        client.optimistic = self.optimistic;
        if let Some(template) = &self.udp_path_template {
            client.udp_path_template.clone_from(template);
        }
        Ok(client)
    }
}

/// Runs a setter's body on a live configuration, behind the panic boundary. A failure
/// leaves its message in the configuration (the body's own, or the code's description).
///
/// # Safety
/// `config` must be NULL or a live configuration from `veil_config_new`, used by no other
/// thread during the call.
unsafe fn with_config(
    config: *mut veil_config,
    body: impl FnOnce(&mut veil_config) -> Outcome,
) -> veil_result {
    boundary(|| {
        if config.is_null() {
            return Err(veil_result::VEIL_ERR_NULL);
        }
        // SAFETY: non-NULL, and the caller promises a live configuration nobody else uses
        // during the call (Box-allocated by veil_config_new, so aligned).
        let config = unsafe { &mut *config };
        config.error = CString::default();
        let outcome = body(config);
        if let Err(code) = outcome {
            if config.error.is_empty() {
                let text = code.description().to_string_lossy().into_owned();
                config.fail(code, &text);
            }
        }
        outcome
    })
}

/// Reads a C string argument of a setter, recording what was wrong with it.
///
/// # Safety
/// As [`ptr::text`].
unsafe fn text_arg<'a>(
    config: &mut veil_config,
    setter: &str,
    text: *const c_char,
) -> Result<&'a str, veil_result> {
    // SAFETY: forwarded from the caller.
    unsafe { ptr::text(text) }
        .map_err(|code| config.fail(code, &format!("{setter}: NULL or not UTF-8 text")))
}

/// A PEM argument given as bytes: must be UTF-8 text.
///
/// # Safety
/// As [`ptr::bytes`].
unsafe fn pem_arg(
    config: &mut veil_config,
    setter: &str,
    data: *const u8,
    len: usize,
) -> Result<Pem, veil_result> {
    // SAFETY: forwarded from the caller.
    let bytes = unsafe { ptr::bytes(data, len) }?;
    if bytes.is_empty() {
        return Err(config.fail(VEIL_ERR_INVALID_ARGUMENT, &format!("{setter}: empty PEM")));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(Pem::Text(text.to_owned())),
        Err(_) => Err(config.fail(
            VEIL_ERR_INVALID_ARGUMENT,
            &format!("{setter}: PEM is not text"),
        )),
    }
}

/// A path argument (any bytes but NUL, as Unix paths are).
///
/// # Safety
/// A non-NULL `path` must point to a NUL-terminated string.
unsafe fn path_arg(path: *const c_char) -> Result<Pem, veil_result> {
    if path.is_null() {
        return Err(veil_result::VEIL_ERR_NULL);
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller promises.
    let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
    if bytes.is_empty() {
        return Err(VEIL_ERR_INVALID_ARGUMENT);
    }
    Ok(Pem::Path(PathBuf::from(std::ffi::OsStr::from_bytes(bytes))))
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Creates a configuration for `role` (a `veil_role`) with the engine's defaults, and
/// writes it to `*out`. The caller owns it: free it with `veil_config_free`.
///
/// Edge defaults: a self-signed P-256 certificate generated when the endpoint starts
/// (names `localhost`, `veil.invalid`), no tokens (no authentication), no egress
/// exceptions, 10000 connections. Client: nothing usable until `veil_config_set_edge` and
/// one `veil_config_verify_*` are called. QUIC: CUBIC, 16 MiB connection window, 2 MiB
/// stream windows, 1000 streams, 30 s idle timeout, 10 s keep-alive (client), no pacing.
///
/// Results: `VEIL_OK`; `VEIL_ERR_NULL` (`out` NULL); `VEIL_ERR_INVALID_ARGUMENT` (unknown role).
///
/// # Safety
/// `out` must be NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_new(role: c_int, out: *mut *mut veil_config) -> veil_result {
    boundary(|| {
        let out = ptr::out(out)?;
        let role = match role {
            0 => veil_role::VEIL_ROLE_CLIENT,
            1 => veil_role::VEIL_ROLE_EDGE,
            _ => return Err(VEIL_ERR_INVALID_ARGUMENT),
        };
        let config = Box::into_raw(Box::new(veil_config::new(role)));
        // SAFETY: `out` is checked non-NULL and aligned; the caller promises it is writable.
        unsafe { ptr::put(out, config) };
        Ok(VEIL_OK)
    })
}

/// Frees a configuration. NULL is ignored. Endpoints created from it are not affected.
///
/// # Safety
/// `config` must be NULL or a configuration from `veil_config_new` not freed before; it
/// must not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_free(config: *mut veil_config) {
    if config.is_null() {
        return;
    }
    // Dropping plain Rust data cannot unwind in practice; the boundary holds the rule.
    let _ = boundary(|| {
        // SAFETY: non-NULL and, as the caller promises, from Box::into_raw in
        // veil_config_new and not freed before.
        drop(unsafe { Box::from_raw(config) });
        Ok(VEIL_OK)
    });
}

/// The message of the last failed call on `config` (a setter or `veil_endpoint_new`), or
/// "" if the last call succeeded. Never NULL. The string belongs to `config`: it is valid
/// until the next call that takes `config`, or `veil_config_free`. A NULL `config` gets a
/// static message.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_last_error(config: *const veil_config) -> *const c_char {
    if config.is_null() {
        return c"veil_config_last_error: config is NULL".as_ptr();
    }
    // SAFETY: non-NULL and live, as the caller promises; only read here.
    unsafe { &*config }.error.as_ptr()
}

// ---------------------------------------------------------------------------------------
// Edge settings.

/// Edge: serve this certificate chain (leaf first) and private key, both PEM text
/// (`cert_len`/`key_len` bytes, no NUL needed). Copied; checked by `veil_endpoint_new`.
///
/// # Safety
/// `cert` and `key` must be valid for reads of `cert_len` and `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_certificate_pem(
    config: *mut veil_config,
    cert: *const u8,
    cert_len: usize,
    key: *const u8,
    key_len: usize,
) -> veil_result {
    const SETTER: &str = "veil_config_set_certificate_pem";
    let body = |config: &mut veil_config| {
        // SAFETY: the caller promises cert_len readable bytes at cert.
        let cert = unsafe { pem_arg(config, SETTER, cert, cert_len) }?;
        // SAFETY: the caller promises key_len readable bytes at key.
        let key = unsafe { pem_arg(config, SETTER, key, key_len) }?;
        let edge = config.edge_mut(SETTER)?;
        edge.cert = Some(cert);
        edge.key = Some(key);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Edge: serve the certificate chain and key in these PEM files (read by
/// `veil_endpoint_new`).
///
/// # Safety
/// `cert_path` and `key_path` must be NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_certificate_files(
    config: *mut veil_config,
    cert_path: *const c_char,
    key_path: *const c_char,
) -> veil_result {
    let body = |config: &mut veil_config| {
        // SAFETY: the caller promises NUL-terminated strings.
        let (cert, key) = unsafe { (path_arg(cert_path)?, path_arg(key_path)?) };
        let edge = config.edge_mut("veil_config_set_certificate_files")?;
        edge.cert = Some(cert);
        edge.key = Some(key);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Edge: mutual TLS. Clients must present a certificate that chains to a CA in this PEM
/// file, or their handshake fails; the certificate's first URI or DNS name (else its
/// common name) is the client's identity for rules and hooks (`certificate_identity`).
///
/// # Safety
/// `ca_path` must be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_require_client_certificates(
    config: *mut veil_config,
    ca_path: *const c_char,
) -> veil_result {
    let body = |config: &mut veil_config| {
        // SAFETY: the caller promises a NUL-terminated string.
        let ca = unsafe { path_arg(ca_path)? };
        config
            .edge_mut("veil_config_require_client_certificates")?
            .client_ca = Some(ca);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Client: present this certificate chain and key (PEM files, read by
/// `veil_endpoint_new`) to an edge that asks for one.
///
/// # Safety
/// `cert_path` and `key_path` must be NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_client_certificate_files(
    config: *mut veil_config,
    cert_path: *const c_char,
    key_path: *const c_char,
) -> veil_result {
    let body = |config: &mut veil_config| {
        // SAFETY: the caller promises NUL-terminated strings.
        let (cert, key) = unsafe { (path_arg(cert_path)?, path_arg(key_path)?) };
        config
            .client_mut("veil_config_set_client_certificate_files")?
            .certificate = Some((cert, key));
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Edge: a DNS name for the self-signed certificate (used when no certificate is set). The
/// first call replaces the default names (`localhost`, `veil.invalid`).
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_add_self_signed_name(
    config: *mut veil_config,
    name: *const c_char,
) -> veil_result {
    const SETTER: &str = "veil_config_add_self_signed_name";
    let body = |config: &mut veil_config| {
        // SAFETY: the caller promises a NUL-terminated string.
        let name = unsafe { text_arg(config, SETTER, name) }?.to_owned();
        if name.is_empty() {
            return Err(config.fail(VEIL_ERR_INVALID_ARGUMENT, "empty name"));
        }
        let replace = config.default_names;
        let edge = config.edge_mut(SETTER)?;
        if replace {
            edge.self_signed_names.clear();
        }
        edge.self_signed_names.push(name);
        config.default_names = false;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Edge: accept this bearer token (`Proxy-Authorization: Bearer <secret>`), given as
/// `NAME:SECRET` (the name is what logs and identities show: 1–64 letters, digits, `_`,
/// `-`, `.`) or as a bare secret, named `token-N` by its place in the list. With no token
/// added the edge asks for no authentication. Copied; the secret is never logged.
///
/// # Safety
/// `token` must be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_add_token(
    config: *mut veil_config,
    token: *const c_char,
) -> veil_result {
    const SETTER: &str = "veil_config_add_token";
    let body = |config: &mut veil_config| {
        // SAFETY: the caller promises a NUL-terminated string.
        let text = unsafe { text_arg(config, SETTER, token) }?;
        let position = config.edge.tokens.len() + 1;
        let Some(token) = Token::parse(text, position) else {
            return Err(config.fail(VEIL_ERR_INVALID_ARGUMENT, "empty token"));
        };
        config.edge_mut(SETTER)?.tokens.push(token);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Edge: let tunnels reach this CIDR prefix (`"127.0.0.0/8"`, `"fd00::/8"`) although the
/// egress policy forbids it by default (loopback, private, link-local, metadata, …).
///
/// # Safety
/// `prefix` must be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_allow_egress(
    config: *mut veil_config,
    prefix: *const c_char,
) -> veil_result {
    const SETTER: &str = "veil_config_allow_egress";
    let body = |config: &mut veil_config| {
        // SAFETY: the caller promises a NUL-terminated string.
        let prefix = unsafe { text_arg(config, SETTER, prefix) }?.to_owned();
        if prefix.parse::<IpNet>().is_err() {
            return Err(config.fail(
                VEIL_ERR_INVALID_ARGUMENT,
                &format!("{SETTER}: {prefix:?} is not a CIDR prefix"),
            ));
        }
        config.edge_mut(SETTER)?.egress_allow.push(prefix);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Edge: connections beyond this many are dropped at their first packet.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_max_connections(
    config: *mut veil_config,
    max: usize,
) -> veil_result {
    let body = |config: &mut veil_config| {
        config
            .edge_mut("veil_config_set_max_connections")?
            .max_connections = max;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Edge: the kinds of tunnel this host serves, as a mask of `1 << veil_tunnel_kind`
/// (`1 << VEIL_TUNNEL_STREAM | 1 << VEIL_TUNNEL_UDP`; by default every kind, CONNECT-IP
/// included, which stays unserved (501) as long as no IP pool is configured, and the C
/// ABI configures none yet). The engine answers
/// requests of other kinds itself (501) and never reports them. A mask with bits for kinds
/// this library does not know is refused.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_tunnel_kinds(
    config: *mut veil_config,
    kinds: u32,
) -> veil_result {
    const SETTER: &str = "veil_config_set_tunnel_kinds";
    let body = |config: &mut veil_config| {
        let known = [
            (veil_tunnel_kind::VEIL_TUNNEL_STREAM, TunnelKind::Stream),
            (veil_tunnel_kind::VEIL_TUNNEL_UDP, TunnelKind::Udp),
        ];
        let mut serves = TunnelKinds::NONE;
        let mut left = kinds;
        for (bit, kind) in known {
            let mask = 1u32 << bit as u32;
            if kinds & mask != 0 {
                serves = serves.with(kind);
                left &= !mask;
            }
        }
        if left != 0 {
            let message = format!("{SETTER}: unknown kinds in the mask {kinds:#x}");
            return Err(config.fail(VEIL_ERR_INVALID_ARGUMENT, &message));
        }
        config.edge_mut(SETTER)?.serves = serves;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Edge: how long the host may take to answer a `VEIL_EVENT_TUNNEL_REQUEST` (resolving and
/// dialling included) before the engine refuses it itself (504, `connection_timeout`);
/// a later answer gets `VEIL_ERR_UNKNOWN_TUNNEL`. Default 30000; 0 is refused.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_request_timeout(
    config: *mut veil_config,
    timeout_ms: u64,
) -> veil_result {
    const SETTER: &str = "veil_config_set_request_timeout";
    let body = |config: &mut veil_config| {
        if timeout_ms == 0 {
            return Err(config.fail(VEIL_ERR_INVALID_ARGUMENT, &format!("{SETTER}: 0 ms")));
        }
        config.edge_mut(SETTER)?.request_timeout = millis(timeout_ms);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

// ---------------------------------------------------------------------------------------
// Client settings.

/// Client: the edge's UDP address and its TLS server name (SNI; with
/// `veil_config_verify_ca_*` also the name its certificate must carry). Required.
///
/// # Safety
/// `edge` must be NULL or a `veil_sockaddr`; `server_name` NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_edge(
    config: *mut veil_config,
    edge: *const veil_sockaddr,
    server_name: *const c_char,
) -> veil_result {
    const SETTER: &str = "veil_config_set_edge";
    let body = |config: &mut veil_config| {
        // SAFETY: the caller promises a veil_sockaddr.
        let edge = unsafe { addr::read(edge) }?;
        // SAFETY: the caller promises a NUL-terminated string.
        let name = unsafe { text_arg(config, SETTER, server_name) }?.to_owned();
        if name.is_empty() {
            return Err(config.fail(VEIL_ERR_INVALID_ARGUMENT, "empty server name"));
        }
        let client = config.client_mut(SETTER)?;
        client.edge_addr = Some(edge);
        client.server_name = Some(name);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Client: the local address datagrams are sent from (the address the caller's socket is
/// bound to). Default: the unspecified address of the edge's family, port 0.
///
/// # Safety
/// `local` must be NULL or a `veil_sockaddr`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_local_addr(
    config: *mut veil_config,
    local: *const veil_sockaddr,
) -> veil_result {
    let body = |config: &mut veil_config| {
        // SAFETY: the caller promises a veil_sockaddr.
        let local = unsafe { addr::read(local) }?;
        config.client_mut("veil_config_set_local_addr")?.local_addr = Some(local);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Client: trust the edge whose leaf certificate's DER has this SHA-256 (`len` must be
/// 32). Chain and name are not checked: the pin is the whole trust decision.
///
/// # Safety
/// `sha256` must be valid for reads of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_verify_pin(
    config: *mut veil_config,
    sha256: *const u8,
    len: usize,
) -> veil_result {
    let body = |config: &mut veil_config| {
        // SAFETY: the caller promises `len` readable bytes.
        let bytes = unsafe { ptr::bytes(sha256, len) }?;
        let Ok(pin) = <[u8; 32]>::try_from(bytes) else {
            return Err(config.fail(
                VEIL_ERR_INVALID_ARGUMENT,
                "veil_config_verify_pin: a SHA-256 is 32 bytes",
            ));
        };
        config.client_mut("veil_config_verify_pin")?.verify = Some(Verify::Pin(pin));
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Client: trust edges whose chain ends at one of these CA certificates (PEM text,
/// `len` bytes) and whose certificate carries the server name.
///
/// # Safety
/// `pem` must be valid for reads of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_verify_ca_pem(
    config: *mut veil_config,
    pem: *const u8,
    len: usize,
) -> veil_result {
    const SETTER: &str = "veil_config_verify_ca_pem";
    let body = |config: &mut veil_config| {
        // SAFETY: the caller promises `len` readable bytes.
        let pem = unsafe { pem_arg(config, SETTER, pem, len) }?;
        config.client_mut(SETTER)?.verify = Some(Verify::Ca(pem));
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Client: as `veil_config_verify_ca_pem`, with the CA certificates in a PEM file (read
/// by `veil_endpoint_new`).
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_verify_ca_file(
    config: *mut veil_config,
    path: *const c_char,
) -> veil_result {
    let body = |config: &mut veil_config| {
        // SAFETY: the caller promises a NUL-terminated string.
        let pem = unsafe { path_arg(path) }?;
        config.client_mut("veil_config_verify_ca_file")?.verify = Some(Verify::Ca(pem));
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Client: accept any certificate. Only for tests and labs: anyone on the path can read
/// and change the traffic.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_verify_insecure(config: *mut veil_config) -> veil_result {
    let body = |config: &mut veil_config| {
        config.client_mut("veil_config_verify_insecure")?.verify = Some(Verify::Insecure);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Client: present this bearer token to the edge. Copied; never logged.
///
/// # Safety
/// `token` must be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_token(
    config: *mut veil_config,
    token: *const c_char,
) -> veil_result {
    const SETTER: &str = "veil_config_set_token";
    let body = |config: &mut veil_config| {
        // SAFETY: the caller promises a NUL-terminated string.
        let token = Secret::new(unsafe { text_arg(config, SETTER, token) }?);
        if token.expose().is_empty() {
            return Err(config.fail(VEIL_ERR_INVALID_ARGUMENT, "empty token"));
        }
        config.client_mut(SETTER)?.token = Some(token);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Client: reconnect backoff after the connection to the edge is lost: first delay and
/// longest delay, in milliseconds (defaults 100 and 5000; `initial_ms <= max_ms`).
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_reconnect(
    config: *mut veil_config,
    initial_ms: u64,
    max_ms: u64,
) -> veil_result {
    let body = |config: &mut veil_config| {
        if initial_ms == 0 || initial_ms > max_ms {
            return Err(config.fail(
                VEIL_ERR_INVALID_ARGUMENT,
                "veil_config_set_reconnect: need 0 < initial_ms <= max_ms",
            ));
        }
        config.client_mut("veil_config_set_reconnect")?.reconnect =
            Some((millis(initial_ms), millis(max_ms)));
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Client: how many tunnels may wait for the connection to the edge (default 1024), and
/// how long each waits before it is refused with `VEIL_REFUSED_EDGE_UNAVAILABLE`
/// (default 10000 ms).
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_pending(
    config: *mut veil_config,
    max_tunnels: usize,
    deadline_ms: u64,
) -> veil_result {
    let body = |config: &mut veil_config| {
        config.client_mut("veil_config_set_pending")?.pending =
            Some((max_tunnels, millis(deadline_ms)));
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Makes the endpoint number `index` of `count` on one UDP port (0-based): every
/// connection ID it issues carries the number (`veil_engine::CidLayout`, QUIC-LB's
/// plaintext layout), so that the kernel program of `veil_driver_steering` sends each
/// datagram to its socket. An edge running one endpoint per thread (its drivers) numbers
/// them in the order their sockets joined the `SO_REUSEPORT` group; a client with lanes
/// numbers its lanes, and an edge with drivers puts lane `i` on driver `i mod drivers`.
///
/// Results: `VEIL_OK`; `VEIL_ERR_NULL`; `VEIL_ERR_INVALID_ARGUMENT` (`index` not below
/// `count`).
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_endpoint_number(
    config: *mut veil_config,
    index: u16,
    count: u16,
) -> veil_result {
    let body = |config: &mut veil_config| {
        let layout = veil_engine::CidLayout::new(index, count).ok_or_else(|| {
            config.fail(
                VEIL_ERR_INVALID_ARGUMENT,
                "veil_config_set_endpoint_number: the index must be below the count",
            )
        })?;
        config.cid_layout = Some(layout);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Edge: names this edge `edge_id` (its QUIC-LB server ID byte, `--edge-id` in veil's
/// CLI) and its process `generation` in every connection ID it issues, beside its endpoint
/// number (`veil_config_set_endpoint_number`; endpoint 0 of 1 if that was not set). A
/// QUIC-aware load balancer in front of several edges routes by the edge byte; a host that
/// upgrades in place (a new process beside the old, on the same port) gives the new one
/// the next generation, so that a kernel program can tell their connections apart. The
/// byte positions are `veil_engine::CidLayout`'s.
///
/// Results: `VEIL_OK`; `VEIL_ERR_NULL`.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_server_id(
    config: *mut veil_config,
    edge_id: u8,
    generation: u8,
) -> veil_result {
    let body = |config: &mut veil_config| {
        config.server_id = Some((edge_id, generation));
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Client: optimistic TCP tunnels when `on` is non-zero (default off).
/// `VEIL_EVENT_TUNNEL_OPENED` then comes as soon as the request leaves, not at the edge's
/// 2xx, and bytes sent at once follow the request: a new tunnel's first byte saves a
/// round trip to the edge. A refusal then comes as `VEIL_EVENT_TUNNEL_CLOSED` with
/// `VEIL_CLOSE_REFUSED` and the edge's `status`, on a tunnel the local application may
/// already write to (close it with RST). UDP and IP tunnels always wait for the 2xx.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_optimistic(
    config: *mut veil_config,
    on: c_int,
) -> veil_result {
    let body = |config: &mut veil_config| {
        config.client_mut("veil_config_set_optimistic")?.optimistic = on != 0;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// How a client reaches its edge (`veil_transport`): HTTP/3 (the default in this ABI),
/// HTTP/2 over TLS over TCP, or both raced (`VEIL_TRANSPORT_AUTO`: HTTP/2 when HTTP/3 is
/// not established within 300 ms). With HTTP/2 the embedder dials: it gets
/// `VEIL_EVENT_TCP_DIAL` and answers with `veil_endpoint_tcp_connected` or
/// `veil_endpoint_tcp_closed`, then moves the connection's bytes as an edge's TCP on-ramp
/// does.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_transport(
    config: *mut veil_config,
    transport: c_int,
) -> veil_result {
    let body = |config: &mut veil_config| {
        let transport = match transport {
            x if x == veil_transport::VEIL_TRANSPORT_H3 as c_int => veil_engine::Transport::H3,
            x if x == veil_transport::VEIL_TRANSPORT_H2 as c_int => veil_engine::Transport::H2,
            x if x == veil_transport::VEIL_TRANSPORT_AUTO as c_int => veil_engine::Transport::Auto,
            _ => {
                return Err(config.fail(
                    VEIL_ERR_INVALID_ARGUMENT,
                    "veil_config_set_transport: not a veil_transport",
                ));
            }
        };
        config.client_mut("veil_config_set_transport")?.transport = Some(transport);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// How a client reaches its edge (`veil_config_set_transport`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum veil_transport {
    /// HTTP/3 over QUIC.
    VEIL_TRANSPORT_H3 = 0,
    /// HTTP/2 over TLS over TCP (the edge's TCP on-ramp).
    VEIL_TRANSPORT_H2 = 1,
    /// HTTP/3 first, HTTP/2 when it is not established within 300 ms or fails.
    VEIL_TRANSPORT_AUTO = 2,
}

// ---------------------------------------------------------------------------------------
// QUIC settings (both roles).

/// Congestion controller: a `veil_congestion_control`.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_congestion_control(
    config: *mut veil_config,
    algorithm: c_int,
) -> veil_result {
    let body = |config: &mut veil_config| {
        config.quic.congestion_control = match algorithm {
            0 => CongestionControl::Cubic,
            1 => CongestionControl::Bbr2,
            2 => CongestionControl::Reno,
            _ => return Err(VEIL_ERR_INVALID_ARGUMENT),
        };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Initial congestion window, in packets (default 10).
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_initial_congestion_window(
    config: *mut veil_config,
    packets: usize,
) -> veil_result {
    let body = |config: &mut veil_config| {
        config.quic.initial_congestion_window_packets = packets;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Flow control advertised at start: the connection window (`initial_max_data`), the
/// window of each stream this endpoint opens and of each stream the peer opens, and how
/// many bidirectional streams (tunnels) the peer may open at once.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_flow_control(
    config: *mut veil_config,
    max_data: u64,
    max_stream_data_local: u64,
    max_stream_data_remote: u64,
    max_streams_bidi: u64,
) -> veil_result {
    let body = |config: &mut veil_config| {
        let quic = &mut config.quic;
        quic.initial_max_data = max_data;
        quic.initial_max_stream_data_bidi_local = max_stream_data_local;
        quic.initial_max_stream_data_bidi_remote = max_stream_data_remote;
        quic.initial_max_streams_bidi = max_streams_bidi;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Upper bounds of quiche's window auto-tuning: connection and per-stream (defaults
/// 24 MiB and 16 MiB).
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_window_limits(
    config: *mut veil_config,
    max_connection_window: u64,
    max_stream_window: u64,
) -> veil_result {
    let body = |config: &mut veil_config| {
        config.quic.max_connection_window = max_connection_window;
        config.quic.max_stream_window = max_stream_window;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Idle timeout in milliseconds: a connection without traffic for this long closes.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_idle_timeout(
    config: *mut veil_config,
    timeout_ms: u64,
) -> veil_result {
    let body = |config: &mut veil_config| {
        config.quic.max_idle_timeout = millis(timeout_ms);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Client: send a PING when nothing was sent for `interval_ms`; 0 turns keep-alive off.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_keep_alive(
    config: *mut veil_config,
    interval_ms: u64,
) -> veil_result {
    let body = |config: &mut veil_config| {
        config.quic.keep_alive_interval = (interval_ms > 0).then(|| millis(interval_ms));
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Pace packets (hold those due later until a later `veil_endpoint_handle_timeout`).
/// Off by default; wants timers finer than a millisecond.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_pacing(config: *mut veil_config, on: bool) -> veil_result {
    let body = |config: &mut veil_config| {
        config.quic.pacing = on;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// How long, in milliseconds, the acknowledgement owed for a lone packet may wait for
/// the bytes the host writes next (an answer) to carry it; 0 acknowledges at once. Default
/// 1; at most 24 (under the 25 ms `max_ack_delay` quiche advertises), more is
/// `VEIL_ERR_INVALID_ARGUMENT`. The wait asks nothing new of the host: its end is among
/// the deadlines `veil_endpoint_poll_timeout` gives.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_ack_delay(
    config: *mut veil_config,
    delay_ms: u64,
) -> veil_result {
    let body = |config: &mut veil_config| {
        if delay_ms >= 25 {
            return Err(VEIL_ERR_INVALID_ARGUMENT);
        }
        config.quic.ack_delay = millis(delay_ms);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Whether the acknowledgement's wait (`veil_config_set_ack_delay`) applies on short paths
/// too: a LAN's, a host's own, any connection whose smallest round trip is under 5 ms.
/// On by default. Off, the acknowledgement goes at once there, which makes a small
/// exchange's round trip shorter for one more datagram each way (docs/PERFORMANCE.md,
/// "Acknowledgements at once on short paths", which also says why it is not the
/// default).
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_ack_delay_short_paths(
    config: *mut veil_config,
    on: bool,
) -> veil_result {
    let body = |config: &mut veil_config| {
        config.quic.ack_delay_paths = if on {
            veil_engine::AckDelayPaths::All
        } else {
            veil_engine::AckDelayPaths::Long
        };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Path MTU discovery (RFC 8899): probes for the largest packet, up to the send size of
/// `veil_config_set_udp_payload_sizes`, that crosses the path. Off by default. The host's
/// UDP socket must set Don't Fragment (Linux: `IP_MTU_DISCOVER` = `IP_PMTUDISC_PROBE`, and
/// `IPV6_MTU_DISCOVER` likewise) and count a send refused with `EMSGSIZE` as lost; else a
/// probe too large leaves as IP fragments and the connection's packets follow it.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_pmtu_discovery(
    config: *mut veil_config,
    on: bool,
) -> veil_result {
    let body = |config: &mut veil_config| {
        config.quic.pmtu_discovery = on;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Largest UDP payload accepted and sent (defaults 65527 and 1350). The send size is also
/// the smallest buffer `veil_endpoint_poll_transmit` takes.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_udp_payload_sizes(
    config: *mut veil_config,
    max_recv: usize,
    max_send: usize,
) -> veil_result {
    let body = |config: &mut veil_config| {
        config.quic.max_recv_udp_payload_size = max_recv;
        config.quic.max_send_udp_payload_size = max_send;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// QUIC DATAGRAM frames and HTTP/3 datagrams (RFC 9221, RFC 9297): on or off (default
/// on; off makes UDP tunnels fall back to DATAGRAM capsules on their streams), and the
/// bound of each datagram queue in datagrams (default 1024).
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_datagrams(
    config: *mut veil_config,
    enable: bool,
    queue_len: usize,
) -> veil_result {
    let body = |config: &mut veil_config| {
        config.quic.enable_datagrams = enable;
        config.quic.datagram_queue_len = queue_len;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Both roles: the URI template of CONNECT-UDP requests (RFC 9298 §2), with the variables
/// `target_host` and `target_port`; default `/.well-known/masque/udp/{target_host}/{target_port}/`.
/// The client expands it, the edge matches requests against it; checked by
/// `veil_endpoint_new`.
///
/// # Safety
/// `template` must be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_udp_path_template(
    config: *mut veil_config,
    template: *const c_char,
) -> veil_result {
    let body = |config: &mut veil_config| {
        // SAFETY: the caller promises a NUL-terminated string.
        let template = unsafe { text_arg(config, "veil_config_set_udp_path_template", template) }?;
        let template = template.to_owned();
        match config.role {
            veil_role::VEIL_ROLE_EDGE => config.edge.udp_path_template = template,
            veil_role::VEIL_ROLE_CLIENT => config.client.udp_path_template = Some(template),
        }
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// UDP tunnels: close one that carried no datagram either way for `idle_timeout_ms`
/// (default 120000: RFC 9298 §3.3 says not less than 2 minutes), and keep at most
/// `queue_len` received datagrams per tunnel (default 256; more are dropped and counted).
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_udp_tunnels(
    config: *mut veil_config,
    idle_timeout_ms: u64,
    queue_len: usize,
) -> veil_result {
    let body = |config: &mut veil_config| {
        config.quic.udp_idle_timeout = millis(idle_timeout_ms);
        config.quic.udp_tunnel_queue_len = queue_len;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

/// Timeouts of every tunnel: reset a TCP tunnel that moved no byte either way for
/// `tcp_idle_timeout_ms`, and end any tunnel (TCP reset, UDP stream finished) that has
/// lived `max_duration_ms` (`VEIL_CLOSE_MAX_DURATION`); `0` for either: no limit (the
/// default).
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_config_set_tunnel_timeouts(
    config: *mut veil_config,
    tcp_idle_timeout_ms: u64,
    max_duration_ms: u64,
) -> veil_result {
    let body = |config: &mut veil_config| {
        let limit = |ms: u64| (ms > 0).then(|| millis(ms));
        config.quic.tcp_idle_timeout = limit(tcp_idle_timeout_ms);
        config.quic.tunnel_max_duration = limit(max_duration_ms);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises about `config` are forwarded.
    unsafe { with_config(config, body) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_config(role: veil_role) -> *mut veil_config {
        let mut config = std::ptr::null_mut();
        // SAFETY: `config` is a valid out-pointer.
        let result = unsafe { veil_config_new(role as c_int, &raw mut config) };
        assert_eq!(result, VEIL_OK);
        config
    }

    fn last_error(config: *const veil_config) -> String {
        // SAFETY: `config` is live; the string is read before the next call.
        unsafe { CStr::from_ptr(veil_config_last_error(config)) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn settings_of_the_other_role_are_refused_with_a_message() {
        let edge = new_config(veil_role::VEIL_ROLE_EDGE);
        // SAFETY: `edge` is live.
        let result = unsafe { veil_config_set_token(edge, c"t".as_ptr()) };
        assert_eq!(result, VEIL_ERR_WRONG_ROLE);
        assert!(
            last_error(edge).contains("client setting"),
            "{}",
            last_error(edge)
        );
        // SAFETY: `edge` is live.
        let result = unsafe { veil_config_add_token(edge, c"t".as_ptr()) };
        assert_eq!(result, VEIL_OK);
        assert_eq!(last_error(edge), "");
        // SAFETY: `edge` is live and freed once.
        unsafe { veil_config_free(edge) };
    }

    #[test]
    fn a_client_needs_an_edge_and_a_verification() {
        let client = new_config(veil_role::VEIL_ROLE_CLIENT);
        // SAFETY: `client` is live.
        let built = unsafe { &*client }.build();
        assert!(built.is_err_and(|e| e.contains("veil_config_set_edge")));
        let edge = veil_sockaddr::from(SocketAddr::from(([127, 0, 0, 1], 4433)));
        // SAFETY: `client` is live, `edge` initialised, the name NUL-terminated.
        let set = unsafe { veil_config_set_edge(client, &raw const edge, c"localhost".as_ptr()) };
        assert_eq!(set, VEIL_OK);
        // SAFETY: `client` is live.
        let built = unsafe { &*client }.build();
        assert!(built.is_err_and(|e| e.contains("verif")));
        // SAFETY: `client` is live.
        assert_eq!(unsafe { veil_config_verify_insecure(client) }, VEIL_OK);
        // SAFETY: `client` is live.
        let built = unsafe { &*client }.build().expect("complete");
        assert!(matches!(built.role, RoleConfig::Client(c) if c.verify == Verify::Insecure));
        // SAFETY: `client` is live and freed once.
        unsafe { veil_config_free(client) };
    }

    #[test]
    fn an_endpoint_numbered_among_several_issues_ids_that_name_it() {
        let edge = new_config(veil_role::VEIL_ROLE_EDGE);
        // SAFETY: `edge` is live.
        unsafe {
            assert_eq!(
                veil_config_set_endpoint_number(edge, 2, 2),
                VEIL_ERR_INVALID_ARGUMENT
            );
            assert!(last_error(edge).contains("below the count"));
            assert_eq!(veil_config_set_endpoint_number(edge, 1, 2), VEIL_OK);
        }
        let mut endpoint = std::ptr::null_mut();
        // SAFETY: `edge` is live, `endpoint` a valid out-pointer.
        let made = unsafe { crate::endpoint::veil_endpoint_new(edge, 1, &raw mut endpoint) };
        assert_eq!(made, VEIL_OK);
        // SAFETY: made just above, freed below.
        let layout = unsafe { &*endpoint }.engine.cid_layout();
        assert_eq!(layout, veil_engine::CidLayout::new(1, 2));
        // SAFETY: both live, each freed once.
        unsafe {
            crate::endpoint::veil_endpoint_free(endpoint);
        }
        // The server ID joins the number; set alone, it names endpoint 0 of 1.
        // SAFETY: `edge` is live.
        unsafe {
            assert_eq!(veil_config_set_server_id(edge, 7, 3), VEIL_OK);
            assert_eq!(
                veil_config_set_server_id(std::ptr::null_mut(), 7, 3),
                veil_result::VEIL_ERR_NULL
            );
        }
        // SAFETY: `edge` is live.
        let layout = unsafe { &*edge }.cid_layout();
        let expected = veil_engine::CidLayout::new(1, 2).map(|l| l.with_server(7, 3));
        assert_eq!(layout, expected);
        let issued = layout
            .and_then(veil_engine::CidLayout::issue)
            .expect("an ID");
        assert_eq!(veil_engine::CidLayout::server_of(&issued), Some((7, 3)));
        let alone = new_config(veil_role::VEIL_ROLE_EDGE);
        // SAFETY: `alone` is live.
        unsafe { veil_config_set_server_id(alone, 9, 1) };
        // SAFETY: `alone` is live.
        let layout = unsafe { &*alone }.cid_layout();
        assert_eq!(
            layout,
            veil_engine::CidLayout::new(0, 1).map(|l| l.with_server(9, 1))
        );
        // SAFETY: `alone` is live, `endpoint` a valid out-pointer.
        let made = unsafe { crate::endpoint::veil_endpoint_new(alone, 1, &raw mut endpoint) };
        assert_eq!(made, VEIL_OK);
        // SAFETY: made just above.
        assert_eq!(unsafe { &*endpoint }.engine.cid_layout(), layout);
        // SAFETY: each live, each freed once.
        unsafe {
            crate::endpoint::veil_endpoint_free(endpoint);
            veil_config_free(alone);
            veil_config_free(edge);
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        let edge = new_config(veil_role::VEIL_ROLE_EDGE);
        // SAFETY: `edge` is live; the strings are NUL-terminated.
        unsafe {
            assert_eq!(
                veil_config_allow_egress(edge, c"10.0.0.0/33".as_ptr()),
                VEIL_ERR_INVALID_ARGUMENT
            );
            assert!(last_error(edge).contains("not a CIDR prefix"));
            assert_eq!(
                veil_config_allow_egress(edge, c"10.0.0.0/8".as_ptr()),
                VEIL_OK
            );
            assert_eq!(
                veil_config_set_congestion_control(edge, 7),
                VEIL_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                veil_config_set_ack_delay(edge, 25),
                VEIL_ERR_INVALID_ARGUMENT
            );
            assert_eq!(veil_config_set_ack_delay(edge, 0), VEIL_OK);
            assert_eq!((*edge).quic.ack_delay, std::time::Duration::ZERO);
            assert_eq!(
                (*edge).quic.ack_delay_paths,
                veil_engine::AckDelayPaths::All,
                "every path by default"
            );
            assert_eq!(veil_config_set_ack_delay_short_paths(edge, false), VEIL_OK);
            assert_eq!(
                (*edge).quic.ack_delay_paths,
                veil_engine::AckDelayPaths::Long
            );
            assert_eq!(
                veil_config_add_token(edge, std::ptr::null()),
                veil_result::VEIL_ERR_NULL
            );
            assert_eq!(
                veil_config_set_certificate_pem(edge, b"\xff".as_ptr(), 1, b"k".as_ptr(), 1),
                VEIL_ERR_INVALID_ARGUMENT
            );
            veil_config_free(edge);
        }
        let mut out = std::ptr::null_mut();
        // SAFETY: `out` is a valid out-pointer.
        let result = unsafe { veil_config_new(2, &raw mut out) };
        assert_eq!(result, VEIL_ERR_INVALID_ARGUMENT);
        assert!(out.is_null());
    }

    #[test]
    fn tunnel_kinds_are_a_mask_of_known_kinds() {
        let edge = new_config(veil_role::VEIL_ROLE_EDGE);
        let stream = 1 << veil_tunnel_kind::VEIL_TUNNEL_STREAM as u32;
        let udp = 1 << veil_tunnel_kind::VEIL_TUNNEL_UDP as u32;
        // SAFETY: the closure is only given `edge`, live until it is freed below.
        let serves = |config: *mut veil_config| match unsafe { &*config }.build() {
            Ok(Config {
                role: RoleConfig::Edge(edge),
                ..
            }) => edge.serves,
            other => panic!("{other:?}"),
        };
        assert_eq!(serves(edge), TunnelKinds::ALL, "the default");
        // SAFETY: `edge` is live.
        unsafe {
            assert_eq!(veil_config_set_tunnel_kinds(edge, stream), VEIL_OK);
            assert_eq!(serves(edge), TunnelKinds::only(TunnelKind::Stream));
            assert_eq!(veil_config_set_tunnel_kinds(edge, 0), VEIL_OK);
            assert_eq!(serves(edge), TunnelKinds::NONE);
            assert_eq!(veil_config_set_tunnel_kinds(edge, stream | udp), VEIL_OK);
            let both = TunnelKinds::only(TunnelKind::Stream).with(TunnelKind::Udp);
            assert_eq!(serves(edge), both);
            assert_eq!(
                veil_config_set_tunnel_kinds(edge, stream | 1 << 7),
                VEIL_ERR_INVALID_ARGUMENT
            );
            assert!(last_error(edge).contains("unknown kinds"));
            assert_eq!(serves(edge), both, "a refused mask changes nothing");
            assert_eq!(
                veil_config_set_request_timeout(edge, 0),
                VEIL_ERR_INVALID_ARGUMENT
            );
            assert_eq!(veil_config_set_request_timeout(edge, 5000), VEIL_OK);
            veil_config_free(edge);
        }
        let client = new_config(veil_role::VEIL_ROLE_CLIENT);
        // SAFETY: `client` is live.
        unsafe {
            assert_eq!(
                veil_config_set_tunnel_kinds(client, stream),
                VEIL_ERR_WRONG_ROLE
            );
            veil_config_free(client);
        }
    }
}
