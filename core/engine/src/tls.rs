//! TLS contexts through `BoringSSL` (the `boring` crate), handed to quiche.
//!
//! - Edge: a PEM certificate chain and key, or a self-signed P-256 certificate made at start.
//!   Either way the SHA-256 of the leaf's DER is kept for printing and pinning.
//! - Client: verification by CA certificates (chain + server name, `BoringSSL`'s own checks),
//!   by a pinned leaf fingerprint (a custom verify callback replaces chain checks), or not
//!   at all when the configuration says `Insecure`.

use boring::asn1::Asn1Time;
use boring::bn::{BigNum, MsbOption};
use boring::ec::{EcGroup, EcKey};
use boring::error::ErrorStack;
use boring::hash::MessageDigest;
use boring::nid::Nid;
use boring::pkey::{PKey, Private};
use boring::ssl::{
    SslAlert, SslContext, SslContextBuilder, SslMethod, SslVerifyError, SslVerifyMode,
};
use boring::x509::extension::{BasicConstraints, ExtendedKeyUsage, SubjectAlternativeName};
use boring::x509::{X509, X509NameBuilder};

use crate::config::{EdgeConfig, Pem, Verify};
use crate::error::ConfigError;

/// Days the self-signed certificate is valid for.
const SELF_SIGNED_DAYS: u32 = 365;

/// The edge's TLS contexts and the fingerprint of the certificate they serve.
pub(crate) struct EdgeTls {
    /// For QUIC (quiche sets its own ALPN and TLS 1.3 on it).
    pub(crate) builder: SslContextBuilder,
    /// For the TCP on-ramp: the same certificate, key and client verification, ALPN `h2`
    /// or `http/1.1`.
    pub(crate) tcp: SslContext,
    pub(crate) fingerprint: [u8; 32],
    /// DER of a configured private key (secret material a stateless reset key can be
    /// derived from); `None` for a self-signed certificate made at start.
    pub(crate) configured_key_der: Option<Vec<u8>>,
}

/// Builds the edge's contexts from the configured certificate or a fresh self-signed one
/// (made once: both on-ramps serve it).
pub(crate) fn edge_context(config: &EdgeConfig) -> Result<EdgeTls, ConfigError> {
    let (chain, key, configured) = match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => (load_chain(cert)?, load_key(key)?, true),
        (None, None) => {
            let (chain, key) = self_signed(&config.self_signed_names)?;
            (chain, key, false)
        }
        _ => return Err(ConfigError::CertWithoutKey),
    };
    let configured_key_der = if configured {
        Some(key.private_key_to_der().map_err(tls_error("private key"))?)
    } else {
        None
    };
    let builder = serving(&chain, &key, config)?;
    let mut tcp = serving(&chain, &key, config)?;
    tcp.set_alpn_select_callback(|_, offered| {
        //# RFC 9113 §3.2: "The "h2" string identifies HTTP/2 when used over TLS"
        // HTTP/2 first; HTTP/1.1 for clients of an HTTPS proxy that speak only it (those
        // that offer nothing get it too: `crate::tcp::TcpConn::start_session`).
        //# RFC 7301 §3.2: "In the event that the server supports no protocols that the
        //# client advertises, then the server SHALL respond with a fatal
        //# "no_application_protocol" alert."
        boring::ssl::select_next_proto(b"\x02h2\x08http/1.1", offered)
            .ok_or(boring::ssl::AlpnError::ALERT_FATAL)
    });
    //# RFC 9113 §9.2: "Implementations of HTTP/2 MUST use TLS version 1.2 [TLS12] or
    //# higher for HTTP/2 over TLS."
    tcp.set_min_proto_version(Some(boring::ssl::SslVersion::TLS1_2))
        .map_err(tls_error("TLS version"))?;
    let leaf = chain
        .first()
        .ok_or(ConfigError::InvalidPem { what: "cert" })?;
    let der = leaf.to_der().map_err(tls_error("certificate DER"))?;
    Ok(EdgeTls {
        builder,
        tcp: tcp.build(),
        fingerprint: boring::sha::sha256(&der),
        configured_key_der,
    })
}

/// A context that serves `chain` with `key`, verifying clients as `config` says.
fn serving(
    chain: &[X509],
    key: &PKey<Private>,
    config: &EdgeConfig,
) -> Result<SslContextBuilder, ConfigError> {
    let mut builder = new_builder()?;
    let mut certs = chain.iter();
    let leaf = certs
        .next()
        .ok_or(ConfigError::InvalidPem { what: "cert" })?;
    builder
        .set_certificate(leaf)
        .map_err(tls_error("certificate"))?;
    for intermediate in certs {
        builder
            .add_extra_chain_cert(intermediate.clone())
            .map_err(tls_error("certificate chain"))?;
    }
    builder
        .set_private_key(key)
        .map_err(tls_error("private key"))?;
    builder
        .check_private_key()
        .map_err(|_| ConfigError::InvalidPem { what: "key" })?;
    if let Some(ca) = &config.client_ca {
        require_client_certificates(&mut builder, ca)?;
    }
    Ok(builder)
}

impl EdgeConfig {
    /// Fills a missing certificate and key with a fresh self-signed certificate, as PEM
    /// text, so that several endpoints built from this configuration (one per core of a
    /// thread-per-core edge) serve one certificate and one fingerprint. A configuration
    /// with a certificate is returned as it is.
    pub fn with_shared_self_signed(mut self) -> Result<Self, ConfigError> {
        if self.cert.is_none() && self.key.is_none() {
            let failed = tls_error("self-signed certificate PEM");
            let (chain, key) = self_signed(&self.self_signed_names)?;
            let mut cert = Vec::new();
            for x509 in &chain {
                cert.extend(x509.to_pem().map_err(&failed)?);
            }
            let key = key.private_key_to_pem_pkcs8().map_err(&failed)?;
            let text = |pem: Vec<u8>| {
                String::from_utf8(pem).map_err(|_| ConfigError::InvalidPem { what: "cert" })
            };
            self.cert = Some(Pem::Text(text(cert)?));
            self.key = Some(Pem::Text(text(key)?));
        }
        Ok(self)
    }
}

/// Mutual TLS at the edge: clients must present a certificate that chains to one of the
/// CAs in `ca`; the handshake fails otherwise.
//# RFC 8446 §4.3.2: "A server which is authenticating with a certificate MAY optionally
//# request a certificate from the client."
fn require_client_certificates(
    builder: &mut SslContextBuilder,
    ca: &Pem,
) -> Result<(), ConfigError> {
    let cas = X509::stack_from_pem(&read_pem(ca)?)
        .map_err(|_| ConfigError::InvalidPem { what: "client_ca" })?;
    if cas.is_empty() {
        return Err(ConfigError::InvalidPem { what: "client_ca" });
    }
    for ca in cas {
        // Named in the CertificateRequest, so that a client with several certificates can
        // pick the right one.
        builder
            .add_client_ca(&ca)
            .map_err(tls_error("client CA name"))?;
        builder
            .cert_store_mut()
            .add_cert(ca)
            .map_err(tls_error("client CA"))?;
    }
    builder.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    Ok(())
}

/// The identity a client certificate (DER of the leaf) gives: its first URI name (a
/// SPIFFE ID, say), else its first DNS name, else its subject's common name. `None` when
/// it has none, or when the name holds anything but printable ASCII (it goes into logs and
/// rule matches as it is) or is longer than 255 bytes.
pub(crate) fn certificate_identity(der: &[u8]) -> Option<String> {
    let cert = X509::from_der(der).ok()?;
    let from_san = cert.subject_alt_names().and_then(|names| {
        let uri = names.iter().find_map(|name| name.uri().map(str::to_owned));
        uri.or_else(|| {
            names
                .iter()
                .find_map(|name| name.dnsname().map(str::to_owned))
        })
    });
    let identity = from_san.or_else(|| {
        let entry = cert.subject_name().entries_by_nid(Nid::COMMONNAME).next()?;
        entry.data().as_utf8().ok().map(|text| text.to_string())
    })?;
    let printable = identity.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    (printable && !identity.is_empty() && identity.len() <= 255).then_some(identity)
}

/// Builds the client's context for the configured verification, with the client's own
/// certificate when it has one.
pub(crate) fn client_context(
    verify: &Verify,
    certificate: Option<&(Pem, Pem)>,
) -> Result<SslContextBuilder, ConfigError> {
    let mut builder = new_builder()?;
    if let Some((cert, key)) = certificate {
        let chain = load_chain(cert)?;
        let key = load_key(key)?;
        let mut certs = chain.into_iter();
        if let Some(leaf) = certs.next() {
            builder
                .set_certificate(&leaf)
                .map_err(tls_error("client certificate"))?;
        }
        for intermediate in certs {
            builder
                .add_extra_chain_cert(intermediate)
                .map_err(tls_error("client certificate chain"))?;
        }
        builder
            .set_private_key(&key)
            .map_err(tls_error("client private key"))?;
        builder
            .check_private_key()
            .map_err(|_| ConfigError::InvalidPem { what: "key" })?;
    }
    match verify {
        Verify::Ca(pem) => {
            let text = read_pem(pem)?;
            let cas = X509::stack_from_pem(&text)
                .map_err(|_| ConfigError::InvalidPem { what: "verify.ca" })?;
            if cas.is_empty() {
                return Err(ConfigError::InvalidPem { what: "verify.ca" });
            }
            for ca in cas {
                builder
                    .cert_store_mut()
                    .add_cert(ca)
                    .map_err(tls_error("CA certificate"))?;
            }
            // quiche sets the server name as the expected host (X509_VERIFY_PARAM_set1_host).
            builder.set_verify(SslVerifyMode::PEER);
        }
        Verify::Pin(pin) => {
            let pin = *pin;
            builder.set_custom_verify_callback(SslVerifyMode::PEER, move |ssl| {
                let leaf = ssl
                    .peer_certificate()
                    .ok_or(SslVerifyError::Invalid(SslAlert::CERTIFICATE_REQUIRED))?;
                let der = leaf
                    .to_der()
                    .map_err(|_| SslVerifyError::Invalid(SslAlert::BAD_CERTIFICATE))?;
                if pin_matches(&pin, &der) {
                    Ok(())
                } else {
                    Err(SslVerifyError::Invalid(SslAlert::BAD_CERTIFICATE))
                }
            });
        }
        Verify::Insecure => builder.set_verify(SslVerifyMode::NONE),
    }
    Ok(builder)
}

/// The client's context for the TCP on-ramp: the QUIC context's verification and client
/// certificate, ALPN `h2`, TLS 1.2 at least (RFC 9113 §9.2).
pub(crate) fn client_tcp_context(
    verify: &Verify,
    certificate: Option<&(Pem, Pem)>,
) -> Result<SslContext, ConfigError> {
    let mut builder = client_context(verify, certificate)?;
    builder
        .set_alpn_protos(b"\x02h2")
        .map_err(tls_error("ALPN"))?;
    builder
        .set_min_proto_version(Some(boring::ssl::SslVersion::TLS1_2))
        .map_err(tls_error("TLS version"))?;
    Ok(builder.build())
}

/// A client session to an edge known as `server_name` over TCP: SNI and the expected name
/// (or address) as [`connect`] sets them for QUIC.
pub(crate) fn tcp_client_ssl(
    context: &SslContext,
    server_name: &str,
) -> Result<boring::ssl::Ssl, ErrorStack> {
    let mut ssl = boring::ssl::Ssl::new(context)?;
    let address = server_name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .ok();
    if let Some(address) = address {
        ssl.param_mut().set_ip(address)?;
    } else {
        ssl.set_hostname(server_name)?;
        ssl.param_mut().set_host(server_name)?;
    }
    Ok(ssl)
}

/// Starts a client connection to an edge known as `server_name`.
///
/// A DNS name is sent as SNI and checked against the certificate's DNS names (quiche sets
/// it as the expected host). An IP address is neither: TLS forbids it as SNI, and a host
/// check would compare it with DNS names only, so a CA-verified edge reached by address
/// could never pass. The address is checked against the certificate's IP addresses instead.
//# RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not permitted in "HostName"."
pub(crate) fn connect(
    server_name: &str,
    scid: &quiche::ConnectionId<'_>,
    local: std::net::SocketAddr,
    peer: std::net::SocketAddr,
    config: &mut quiche::Config,
) -> Result<quiche::Connection, ConnectError> {
    let address = server_name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .ok();
    let sni = if address.is_some() {
        None
    } else {
        Some(server_name)
    };
    let mut quic = quiche::connect(sni, scid, local, peer, config)?;
    if let Some(address) = address {
        let ssl: &mut boring::ssl::SslRef = quic.as_mut();
        ssl.verify_param_mut().set_ip(address)?;
    }
    Ok(quic)
}

/// Why [`connect`] could not start a connection.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// quiche refused the parameters.
    Quic(quiche::Error),
    /// `BoringSSL` refused the expected address.
    Tls(ErrorStack),
}

impl From<quiche::Error> for ConnectError {
    fn from(error: quiche::Error) -> Self {
        Self::Quic(error)
    }
}

impl From<ErrorStack> for ConnectError {
    fn from(error: ErrorStack) -> Self {
        Self::Tls(error)
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Quic(error) => write!(f, "quic: {error}"),
            Self::Tls(error) => write!(f, "tls: {error}"),
        }
    }
}

/// Whether the SHA-256 of `der` is `pin`, compared in constant time.
fn pin_matches(pin: &[u8; 32], der: &[u8]) -> bool {
    veil_proto::http1::constant_time_eq(&boring::sha::sha256(der), pin)
}

fn new_builder() -> Result<SslContextBuilder, ConfigError> {
    SslContextBuilder::new(SslMethod::tls()).map_err(tls_error("context"))
}

fn tls_error(what: &'static str) -> impl Fn(ErrorStack) -> ConfigError {
    move |source| ConfigError::Tls { what, source }
}

fn read_pem(pem: &Pem) -> Result<Vec<u8>, ConfigError> {
    match pem {
        Pem::Path(path) => std::fs::read(path).map_err(|source| ConfigError::ReadFile {
            path: path.clone(),
            source,
        }),
        Pem::Text(text) => Ok(text.as_bytes().to_vec()),
    }
}

fn load_chain(pem: &Pem) -> Result<Vec<X509>, ConfigError> {
    let chain = X509::stack_from_pem(&read_pem(pem)?)
        .map_err(|_| ConfigError::InvalidPem { what: "cert" })?;
    if chain.is_empty() {
        return Err(ConfigError::InvalidPem { what: "cert" });
    }
    Ok(chain)
}

fn load_key(pem: &Pem) -> Result<PKey<Private>, ConfigError> {
    PKey::private_key_from_pem(&read_pem(pem)?).map_err(|_| ConfigError::InvalidPem { what: "key" })
}

/// A self-signed P-256 certificate for `names` (DNS SANs), valid from now for a year.
fn self_signed(names: &[String]) -> Result<(Vec<X509>, PKey<Private>), ConfigError> {
    let failed = tls_error("self-signed certificate");
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(&failed)?;
    let key = PKey::from_ec_key(EcKey::generate(&group).map_err(&failed)?).map_err(&failed)?;

    let mut name = X509NameBuilder::new().map_err(&failed)?;
    let common_name = names.first().map_or("veil", String::as_str);
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)
        .map_err(&failed)?;
    let name = name.build();

    let mut serial = BigNum::new().map_err(&failed)?;
    serial
        .rand(127, MsbOption::MAYBE_ZERO, false)
        .map_err(&failed)?;

    let mut cert = X509::builder().map_err(&failed)?;
    cert.set_version(2).map_err(&failed)?;
    let serial = serial.to_asn1_integer().map_err(&failed)?;
    cert.set_serial_number(&serial).map_err(&failed)?;
    cert.set_subject_name(&name).map_err(&failed)?;
    cert.set_issuer_name(&name).map_err(&failed)?;
    cert.set_pubkey(&key).map_err(&failed)?;
    let not_before = Asn1Time::days_from_now(0).map_err(&failed)?;
    cert.set_not_before(&not_before).map_err(&failed)?;
    let not_after = Asn1Time::days_from_now(SELF_SIGNED_DAYS).map_err(&failed)?;
    cert.set_not_after(&not_after).map_err(&failed)?;
    let constraints = BasicConstraints::new()
        .critical()
        .build()
        .map_err(&failed)?;
    cert.append_extension(&constraints).map_err(&failed)?;
    let usage = ExtendedKeyUsage::new()
        .server_auth()
        .build()
        .map_err(&failed)?;
    cert.append_extension(&usage).map_err(&failed)?;
    if !names.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for dns in names {
            san.dns(dns);
        }
        let san = san
            .build(&cert.x509v3_context(None, None))
            .map_err(&failed)?;
        cert.append_extension(&san).map_err(&failed)?;
    }
    cert.sign(&key, MessageDigest::sha256()).map_err(&failed)?;
    Ok((vec![cert.build()], key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_carries_the_names_and_its_fingerprint() {
        let config = EdgeConfig::default();
        let tls = edge_context(&config).expect("self-signed context");
        let (chain, _) = self_signed(&config.self_signed_names).expect("certificate");
        assert_eq!(chain.len(), 1);
        let sans: Vec<String> = chain[0]
            .subject_alt_names()
            .expect("SAN extension")
            .iter()
            .filter_map(|name| name.dnsname().map(str::to_owned))
            .collect();
        assert_eq!(sans, ["localhost", "veil.invalid"]);
        // Two generations are two different keys, hence two fingerprints.
        assert_ne!(
            tls.fingerprint,
            edge_context(&config).expect("again").fingerprint
        );
    }

    #[test]
    fn a_shared_self_signed_certificate_gives_every_endpoint_one_fingerprint() {
        let shared = EdgeConfig::default()
            .with_shared_self_signed()
            .expect("certificate");
        assert!(matches!(shared.cert, Some(Pem::Text(_))));
        let first = edge_context(&shared).expect("first core").fingerprint;
        let second = edge_context(&shared).expect("second core").fingerprint;
        assert_eq!(first, second);
        // A configured certificate is kept as it is.
        assert_eq!(
            shared.clone().with_shared_self_signed().expect("kept"),
            shared
        );
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let config = EdgeConfig {
            cert: Some(Pem::Text(String::new())),
            ..EdgeConfig::default()
        };
        assert!(matches!(
            edge_context(&config),
            Err(ConfigError::CertWithoutKey)
        ));
    }

    #[test]
    fn garbage_pem_is_refused_by_name() {
        let config = EdgeConfig {
            cert: Some(Pem::Text("not pem".to_owned())),
            key: Some(Pem::Text("not pem".to_owned())),
            ..EdgeConfig::default()
        };
        assert!(matches!(
            edge_context(&config),
            Err(ConfigError::InvalidPem { what: "cert" })
        ));
        assert!(matches!(
            client_context(&Verify::Ca(Pem::Text("nope".to_owned())), None),
            Err(ConfigError::InvalidPem { what: "verify.ca" })
        ));
    }

    #[test]
    fn pins_compare_the_leaf_digest() {
        let der = b"certificate bytes";
        let pin = boring::sha::sha256(der);
        assert!(pin_matches(&pin, der));
        assert!(!pin_matches(&pin, b"other bytes"));
    }
}
