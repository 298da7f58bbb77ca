//! A raw HTTP/3 client made of quiche itself, for what the engine's own client never
//! sends: arbitrary request heads, body bytes and frames written straight onto request
//! streams, garbage on unidirectional streams, arbitrary QUIC DATAGRAM frames.
//!
//! It reads everything the edge sends it at once and checks nothing itself: the point is
//! what the edge does with its input.

use std::net::SocketAddr;

use quiche::h3;

/// Client-initiated unidirectional stream quiche's HTTP/3 opens first: the control stream.
const CONTROL_STREAM: u64 = 2;

/// Request streams the raw peer may write on directly (`4 * n`, n below this).
const RAW_STREAMS: u8 = 64;

pub(crate) struct RawPeer {
    pub(crate) quic: quiche::Connection,
    h3: Option<h3::Connection>,
    /// Streams `send_request` opened, oldest first.
    pub(crate) requests: Vec<u64>,
    /// Unidirectional streams opened with garbage so far.
    uni_streams: u64,
    scratch: Vec<u8>,
}

impl RawPeer {
    pub(crate) fn new(local: SocketAddr, edge: SocketAddr) -> Option<Self> {
        // Not `Config::new`: that loads the system's CA bundle into the context
        // (`X509_STORE_set_default_paths`), about a quarter of a run's time, for a peer that
        // verifies nothing.
        let tls = boring::ssl::SslContextBuilder::new(boring::ssl::SslMethod::tls()).ok()?;
        let mut config =
            quiche::Config::with_boring_ssl_ctx_builder(quiche::PROTOCOL_VERSION, tls).ok()?;
        config
            .set_application_protos(h3::APPLICATION_PROTOCOL)
            .ok()?;
        config.verify_peer(false);
        config.set_max_idle_timeout(30_000);
        config.set_initial_max_data(1 << 20);
        config.set_initial_max_stream_data_bidi_local(1 << 18);
        config.set_initial_max_stream_data_bidi_remote(1 << 18);
        config.set_initial_max_stream_data_uni(1 << 18);
        config.set_initial_max_streams_bidi(128);
        config.set_initial_max_streams_uni(16);
        config.enable_dgram(true, 16, 16);
        let scid = [0x5a; quiche::MAX_CONN_ID_LEN];
        let scid = quiche::ConnectionId::from_ref(&scid);
        let quic = quiche::connect(Some("localhost"), &scid, local, edge, &mut config).ok()?;
        Some(Self {
            quic,
            h3: None,
            requests: Vec::new(),
            uni_streams: 0,
            scratch: vec![0; 16 * 1024],
        })
    }

    /// Whether HTTP/3 is up (the handshake completed and our SETTINGS are queued).
    pub(crate) fn ready(&mut self) -> bool {
        if self.h3.is_none() && self.quic.is_established() {
            let Ok(mut config) = h3::Config::new() else {
                return false;
            };
            config.enable_extended_connect(true);
            self.h3 = h3::Connection::with_transport(&mut self.quic, &config).ok();
        }
        self.h3.is_some() && !self.quic.is_closed()
    }

    /// Reads whatever HTTP/3 has for us, bodies included, and drops it.
    pub(crate) fn poll(&mut self) {
        let Some(h3) = self.h3.as_mut() else {
            return;
        };
        // Bounded: a connection has finitely many events, but a bug should not hang us.
        for _ in 0..10_000 {
            match h3.poll(&mut self.quic) {
                Ok((stream, h3::Event::Data)) => {
                    while let Ok(len) = h3.recv_body(&mut self.quic, stream, &mut self.scratch) {
                        if len == 0 {
                            break;
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        while self.quic.dgram_recv(&mut self.scratch).is_ok() {}
    }

    pub(crate) fn request(&mut self, headers: &[h3::Header], fin: bool) {
        if !self.ready() {
            return;
        }
        let Some(h3) = self.h3.as_mut() else {
            return;
        };
        if let Ok(stream) = h3.send_request(&mut self.quic, headers, fin) {
            self.requests.push(stream);
        }
    }

    pub(crate) fn body(&mut self, pick: u8, fin: bool, bytes: &[u8]) {
        let Some(&stream) = pick_from(&self.requests, pick) else {
            return;
        };
        if let Some(h3) = self.h3.as_mut() {
            let _ = h3.send_body(&mut self.quic, stream, bytes, fin);
        }
    }

    /// Bytes written on a request stream under HTTP/3's feet: any frames, any framing.
    pub(crate) fn stream(&mut self, stream: u8, fin: bool, bytes: &[u8]) {
        if self.ready() {
            let id = 4 * u64::from(stream % RAW_STREAMS);
            let _ = self.quic.stream_send(id, bytes, fin);
        }
    }

    /// Garbage after our control stream's SETTINGS (odd kind), or a new unidirectional
    /// stream of any type with any content (even kind).
    pub(crate) fn uni(&mut self, kind: u8, bytes: &[u8]) {
        if !self.ready() {
            return;
        }
        let id = if kind & 1 == 1 {
            CONTROL_STREAM
        } else {
            // quiche's HTTP/3 opened 2, 6 and 10 (control, QPACK encoder and decoder).
            self.uni_streams += 1;
            10 + 4 * self.uni_streams
        };
        let _ = self.quic.stream_send(id, bytes, false);
    }

    /// An HTTP Datagram (RFC 9297 §2.1) for a request stream: Quarter Stream ID and
    /// Context ID prefixed to `payload`.
    pub(crate) fn http_datagram(&mut self, pick: u8, context: u8, payload: &[u8]) {
        let Some(&stream) = pick_from(&self.requests, pick) else {
            return;
        };
        let mut frame = Vec::with_capacity(payload.len() + 16);
        push_varint(&mut frame, stream / 4);
        push_varint(&mut frame, u64::from(context));
        frame.extend_from_slice(payload);
        let _ = self.quic.dgram_send(&frame);
    }

    pub(crate) fn datagram(&mut self, bytes: &[u8]) {
        let _ = self.quic.dgram_send(bytes);
    }

    /// Resets (odd direction) or stops (even) a request stream.
    pub(crate) fn reset(&mut self, pick: u8, direction: u8, code: u16) {
        let Some(&stream) = pick_from(&self.requests, pick) else {
            return;
        };
        let how = if direction & 1 == 1 {
            quiche::Shutdown::Write
        } else {
            quiche::Shutdown::Read
        };
        let _ = self.quic.stream_shutdown(stream, how, u64::from(code));
    }

    pub(crate) fn close(&mut self, code: u16) {
        let _ = self.quic.close(true, u64::from(code), b"raw peer");
    }
}

fn pick_from<T>(items: &[T], pick: u8) -> Option<&T> {
    if items.is_empty() {
        return None;
    }
    items.get(usize::from(pick) % items.len())
}

/// A QUIC variable-length integer (RFC 9000 §16), shortest form.
pub(crate) fn push_varint(out: &mut Vec<u8>, value: u64) {
    match value {
        0..0x40 => out.push(value.to_be_bytes()[7]),
        0x40..0x4000 => out.extend_from_slice(&(0x4000 | value).to_be_bytes()[6..]),
        0x4000..0x4000_0000 => out.extend_from_slice(&(0x8000_0000 | value).to_be_bytes()[4..]),
        _ => out.extend_from_slice(&(0xc000_0000_0000_0000 | value).to_be_bytes()),
    }
}
