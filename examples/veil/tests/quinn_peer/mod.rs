//! A second independent HTTP/3 peer: quinn (QUIC) with hyperium's h3, both from crates.io,
//! on another QUIC stack than veil's quiche. quinn acknowledges fast, which is what
//! exposed FINs that quiche 0.30 could lose (see `core/engine/src/endpoint/fin.rs`).
//!
//! - [`Server`]: an HTTP/3 server (quinn + h3) that accepts every plain CONNECT and plays
//!   the target itself: an echo that finishes after the client's FIN, or, for
//!   [`SPEAKS_FIRST`], a target that answers and finishes first and then reads the client's
//!   bytes to their FIN. `veil client` reaches it as its edge.
//! - [`connect_client`] / [`Tunnel`]: an HTTP/3 client on quinn that sends plain CONNECT
//!   requests to `veil server`. h3 0.0.8's client always writes `:scheme` and `:path`,
//!   which RFC 9114 §4.4 forbids in a plain CONNECT (veil answers 400), so this client
//!   frames its own requests: a control stream with an empty SETTINGS frame, HEADERS
//!   encoded with QPACK's static table and literals only (no dynamic table, no Huffman),
//!   DATA frames. QUIC, TLS, flow control and acknowledgements are all quinn's.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail, ensure};
use bytes::{Buf, Bytes};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The ALPN of HTTP/3.
const H3: &[u8] = b"h3";

/// ring's provider: deprecated for its lack of post-quantum key exchange, which a test peer
/// on loopback does not need (aws-lc-rs, which has it, would add another C build).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `sha256:HEX` of a DER certificate, as `veil --pin` takes it.
pub(crate) fn pin_of(der: &[u8]) -> String {
    format!("sha256:{}", veil_cli::body::hex(&boring::sha::sha256(der)))
}

/// What the server's tunnels have seen.
#[derive(Debug, Default)]
struct Seen {
    /// Echo tunnels it finished after reading the client's FIN.
    echoed: AtomicUsize,
    /// Speak-first tunnels: how many bytes each read before the client's FIN.
    heard: Mutex<Vec<usize>>,
}

/// The quinn + h3 server: accepts plain CONNECT on every request stream and plays the
/// target by the authority's host: [`SPEAKS_FIRST`] sends [`GREETING`] and its FIN at once
/// and then reads the client's bytes to their FIN; any other host is an echo.
pub(crate) struct Server {
    endpoint: quinn::Endpoint,
    pin: String,
    seen: Arc<Seen>,
}

/// The target host for which the server answers first.
pub(crate) const SPEAKS_FIRST: &str = "speaks-first.test";
/// What it answers.
pub(crate) const GREETING: &[u8] = b"hello from the quinn server";

impl Server {
    /// Starts on an ephemeral loopback port with the certificate and key in `cert`/`key`
    /// (PEM); must run inside a tokio runtime.
    pub(crate) fn start(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .context("reading the certificate")?
            .collect::<Result<_, _>>()
            .context("parsing the certificate")?;
        let key = PrivateKeyDer::from_pem_file(key).context("reading the key")?;
        let pin = pin_of(chain.first().context("an empty certificate file")?);
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        tls.alpn_protocols = vec![H3.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
        let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint = quinn::Endpoint::server(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let seen = Arc::new(Seen::default());
        let accepting = endpoint.clone();
        let shared = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                let seen = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Err(error) = serve_connection(incoming, seen).await {
                        eprintln!("quinn server: connection ended: {error:#}");
                    }
                });
            }
        });
        Ok(Self {
            endpoint,
            pin,
            seen,
        })
    }

    pub(crate) fn addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    /// `sha256:HEX` of its certificate.
    pub(crate) fn pin(&self) -> &str {
        &self.pin
    }

    /// Echo tunnels it finished after reading the client's FIN.
    pub(crate) fn echoed(&self) -> usize {
        self.seen.echoed.load(Ordering::Relaxed)
    }

    /// Speak-first tunnels that read the client's FIN: the bytes each read before it.
    pub(crate) fn heard(&self) -> Vec<usize> {
        self.seen
            .heard
            .lock()
            .map(|heard| heard.clone())
            .unwrap_or_default()
    }
}

async fn serve_connection(incoming: quinn::Incoming, seen: Arc<Seen>) -> anyhow::Result<()> {
    let connection = incoming.await?;
    let mut h3 = h3::server::builder()
        .build::<_, Bytes>(h3_quinn::Connection::new(connection))
        .await?;
    while let Some(resolver) = h3.accept().await? {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            if let Err(error) = serve_tunnel(resolver, seen).await {
                eprintln!("quinn server: tunnel failed: {error:#}");
            }
        });
    }
    Ok(())
}

/// Answers one request: 200 to a plain CONNECT, then plays the target; 400 to anything
/// else.
async fn serve_tunnel<C>(
    resolver: h3::server::RequestResolver<C, Bytes>,
    seen: Arc<Seen>,
) -> anyhow::Result<()>
where
    C: h3::quic::Connection<Bytes>,
{
    let (request, mut stream) = resolver.resolve_request().await?;
    let connect = request.method() == http::Method::CONNECT;
    let status = if connect {
        http::StatusCode::OK
    } else {
        http::StatusCode::BAD_REQUEST
    };
    stream
        .send_response(http::Response::builder().status(status).body(())?)
        .await?;
    if !connect {
        stream.finish().await?;
        return Ok(());
    }
    if request.uri().host() == Some(SPEAKS_FIRST) {
        stream.send_data(Bytes::from_static(GREETING)).await?;
        stream.finish().await?;
        let mut heard = 0;
        while let Some(chunk) = stream.recv_data().await? {
            heard += chunk.remaining();
        }
        if let Ok(mut all) = seen.heard.lock() {
            all.push(heard);
        }
        return Ok(());
    }
    while let Some(mut chunk) = stream.recv_data().await? {
        let bytes = chunk.copy_to_bytes(chunk.remaining());
        stream.send_data(bytes).await?;
    }
    stream.finish().await?;
    seen.echoed.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Accepts exactly the certificate whose SHA-256 is the pin; signatures are still checked.
#[derive(Debug)]
struct Pinned {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if pin_of(end_entity) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "certificate does not match the pin".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not QUIC".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A quinn connection to `veil server` at `edge` (pinned), with HTTP/3's control stream
/// open; must run inside a tokio runtime.
pub(crate) async fn connect_client(edge: SocketAddr, pin: &str) -> anyhow::Result<Client> {
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            pin: pin.to_owned(),
            provider,
        }))
        .with_no_client_auth();
    tls.alpn_protocols = vec![H3.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connection = endpoint.connect(edge, "localhost")?.await?;
    //# RFC 9114 §6.2.1: "Each side MUST initiate a single control stream at the
    //# beginning of the connection and send its SETTINGS frame as the first frame on this
    //# stream."
    let mut control = connection.open_uni().await?;
    control.write_all(&[0x00, 0x04, 0x00]).await?;
    Ok(Client {
        _endpoint: endpoint,
        connection,
        _control: control,
    })
}

/// The client side of one quinn connection.
pub(crate) struct Client {
    _endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    /// Closing the control stream is a connection error (RFC 9114 §6.2.1): kept open.
    _control: quinn::SendStream,
}

impl Client {
    /// Sends a plain CONNECT to `authority` with `token`; returns the tunnel once the
    /// response is a 200.
    pub(crate) async fn connect(&self, authority: &str, token: &str) -> anyhow::Result<Tunnel> {
        let (mut send, recv) = self.connection.open_bi().await?;
        // The field section's prefix: Required Insert Count 0, Delta Base 0.
        let mut fields = vec![0x00, 0x00];
        fields.push(indexed_static(STATIC_METHOD_CONNECT));
        literal_with_static_name(&mut fields, STATIC_AUTHORITY, authority.as_bytes());
        literal_with_literal_name(
            &mut fields,
            b"proxy-authorization",
            format!("Bearer {token}").as_bytes(),
        );
        send.write_all(&frame(0x01, &fields)).await?;
        let mut tunnel = Tunnel {
            send,
            recv,
            pending: Vec::new(),
        };
        // Frames of unknown types (GREASE) may come first (RFC 9114 §9).
        let head = loop {
            let (kind, payload) = tunnel.next_frame().await?.context("no response")?;
            ensure!(kind != 0x00, "DATA before the response's HEADERS");
            if kind == 0x01 {
                break payload;
            }
        };
        // quiche writes `:status 200` as the static entry, first after the prefix.
        ensure!(
            head.get(2) == Some(&indexed_static(STATIC_STATUS_200)),
            "not a 200: field section {head:02x?}"
        );
        Ok(tunnel)
    }
}

/// One CONNECT tunnel from [`Client::connect`].
pub(crate) struct Tunnel {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// Bytes read from the stream that do not yet make a whole frame.
    pending: Vec<u8>,
}

impl Tunnel {
    /// Sends `bytes` as one DATA frame.
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.send.write_all(&frame(0x00, bytes)).await?;
        Ok(())
    }

    /// Finishes our direction (FIN).
    pub(crate) fn finish(&mut self) -> anyhow::Result<()> {
        self.send.finish()?;
        Ok(())
    }

    /// Appends DATA payloads to `content` until the edge's FIN; frames of other types are
    /// skipped (RFC 9114 §9: unknown types are ignored).
    pub(crate) async fn read_to_fin(&mut self, content: &mut Vec<u8>) -> anyhow::Result<()> {
        while let Some((kind, payload)) = self.next_frame().await? {
            if kind == 0x00 {
                content.extend_from_slice(&payload);
            }
        }
        Ok(())
    }

    /// The next whole frame (type, payload), or `None` at a FIN between frames.
    async fn next_frame(&mut self) -> anyhow::Result<Option<(u64, Vec<u8>)>> {
        loop {
            if let Some((kind, start, end)) = parse_frame(&self.pending) {
                let payload = self.pending.get(start..end).unwrap_or_default().to_vec();
                self.pending.drain(..end);
                return Ok(Some((kind, payload)));
            }
            match self.recv.read_chunk(64 * 1024, true).await? {
                Some(chunk) => self.pending.extend_from_slice(&chunk.bytes),
                None if self.pending.is_empty() => return Ok(None),
                None => bail!("the stream ended inside a frame"),
            }
        }
    }
}

/// A frame: type, length, payload (RFC 9114 §7.1).
fn frame(kind: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 16);
    put_varint(&mut out, kind);
    put_varint(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// (type, payload start, payload end) of the whole frame at the start of `bytes`.
fn parse_frame(bytes: &[u8]) -> Option<(u64, usize, usize)> {
    let (kind, a) = get_varint(bytes)?;
    let (len, b) = get_varint(bytes.get(a..)?)?;
    let start = a + b;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (bytes.len() >= end).then_some((kind, start, end))
}

/// A QUIC variable-length integer (RFC 9000 §16), in its shortest form.
fn put_varint(out: &mut Vec<u8>, value: u64) {
    let be = value.to_be_bytes();
    match value {
        0..=0x3f => out.push(be[7]),
        0x40..=0x3fff => out.extend_from_slice(&[be[6] | 0x40, be[7]]),
        0x4000..=0x3fff_ffff => out.extend_from_slice(&[be[4] | 0x80, be[5], be[6], be[7]]),
        _ => {
            out.push(be[0] | 0xc0);
            out.extend_from_slice(&be[1..]);
        }
    }
}

/// A QUIC variable-length integer and its length, if `bytes` holds a whole one.
fn get_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let first = *bytes.first()?;
    let len = 1usize << (first >> 6);
    let mut value = u64::from(first & 0x3f);
    for byte in bytes.get(1..len)? {
        value = (value << 8) | u64::from(*byte);
    }
    Some((value, len))
}

// RFC 9204 Appendix A, the static table's entries used here.
const STATIC_AUTHORITY: usize = 0;
const STATIC_METHOD_CONNECT: u8 = 15;
const STATIC_STATUS_200: u8 = 25;

/// RFC 9204 §4.5.2: an indexed field line of the static table: `11` then a 6-bit index
/// (every index used here fits).
fn indexed_static(index: u8) -> u8 {
    0b1100_0000 | index
}

/// An integer with an N-bit prefix (RFC 9204 §4.1.1, as HPACK's): `flags` holds the bits
/// above the prefix.
fn put_prefixed(out: &mut Vec<u8>, flags: u8, prefix_bits: u32, value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(flags | u8::try_from(value).unwrap_or(0));
        return;
    }
    out.push(flags | u8::try_from(max).unwrap_or(0));
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push(u8::try_from(rest & 0x7f).unwrap_or(0) | 0x80);
        rest >>= 7;
    }
    out.push(u8::try_from(rest).unwrap_or(0));
}

/// A string literal without Huffman coding: H = 0 and a 7-bit prefixed length.
fn put_string(out: &mut Vec<u8>, value: &[u8]) {
    put_prefixed(out, 0x00, 7, value.len());
    out.extend_from_slice(value);
}

/// RFC 9204 §4.5.4: literal field line with a name reference: `01NT` then a 4-bit index;
/// T = 1 for the static table.
fn literal_with_static_name(out: &mut Vec<u8>, index: usize, value: &[u8]) {
    put_prefixed(out, 0x50, 4, index);
    put_string(out, value);
}

/// RFC 9204 §4.5.6: literal field line with a literal name: `001NH` then a 3-bit length.
fn literal_with_literal_name(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    put_prefixed(out, 0x20, 3, name.len());
    out.extend_from_slice(name);
    put_string(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length() {
        for value in [0, 63, 64, 16_383, 16_384, 1 << 30, (1 << 62) - 1] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(get_varint(&out), Some((value, out.len())));
        }
    }

    #[test]
    fn prefixed_integers_match_rfc_7541_examples() {
        // RFC 7541 §C.1.2: 1337 with a 5-bit prefix is 1f 9a 0a.
        let mut out = Vec::new();
        put_prefixed(&mut out, 0, 5, 1337);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
        let mut out = Vec::new();
        put_prefixed(&mut out, 0x20, 3, 19);
        assert_eq!(out, [0x27, 0x0c]);
    }
}
