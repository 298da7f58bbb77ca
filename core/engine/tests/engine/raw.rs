//! A bare quiche HTTP/3 client, to send what the engine's client never would: malformed
//! requests, crafted HTTP/3 datagrams, broken capsule streams.

use std::time::{Duration, Instant};

use quiche::h3::NameValue as _;
use veil_engine::{Endpoint, Event, RecvMeta};

use crate::BUDGET;
use crate::harness::{CLIENT_ADDR, EDGE_ADDR};

/// A quiche client talking to an edge `Endpoint` in memory.
pub(crate) struct RawClient {
    pub(crate) quic: quiche::Connection,
    pub(crate) h3: Option<quiche::h3::Connection>,
    /// While set, HTTP/3 is not started: no SETTINGS, no control streams.
    pub(crate) defer_h3: bool,
    datagrams: bool,
}

impl RawClient {
    /// A client; `datagrams` turns QUIC DATAGRAM frames and `SETTINGS_H3_DATAGRAM` on.
    pub(crate) fn new(datagrams: bool) -> Self {
        let mut config = quiche::Config::new(quiche::PROTOCOL_VERSION).expect("config");
        config
            .set_application_protos(quiche::h3::APPLICATION_PROTOCOL)
            .expect("alpn");
        config.verify_peer(false);
        config.set_initial_max_data(1 << 20);
        config.set_initial_max_stream_data_bidi_local(1 << 20);
        config.set_initial_max_stream_data_bidi_remote(1 << 20);
        config.set_initial_max_stream_data_uni(1 << 20);
        config.set_initial_max_streams_bidi(10);
        config.set_initial_max_streams_uni(10);
        config.set_max_idle_timeout(5_000);
        if datagrams {
            config.enable_dgram(true, 64, 64);
        }
        let scid = quiche::ConnectionId::from_ref(&[7; 16]);
        let quic = quiche::connect(
            Some("localhost"),
            &scid,
            CLIENT_ADDR.parse().expect("address"),
            EDGE_ADDR.parse().expect("address"),
            &mut config,
        )
        .expect("connect");
        Self {
            quic,
            h3: None,
            defer_h3: false,
            datagrams,
        }
    }

    /// Exchanges datagrams with `edge` until `until` returns a value; the edge's events go
    /// to `on_edge`.
    pub(crate) fn drive<T>(
        &mut self,
        edge: &mut Endpoint,
        on_edge: &mut dyn FnMut(&mut Endpoint, Event),
        mut until: impl FnMut(&mut Self) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        let mut buf = vec![0; 65536];
        let edge_meta = RecvMeta {
            from: CLIENT_ADDR.parse().expect("address"),
            to: EDGE_ADDR.parse().expect("address"),
        };
        let client_info = quiche::RecvInfo {
            from: edge_meta.to,
            to: edge_meta.from,
        };
        loop {
            assert!(start.elapsed() < BUDGET, "raw client timed out");
            while let Ok((len, _)) = self.quic.send(&mut buf) {
                edge.handle_datagram(Instant::now(), edge_meta, &mut buf[..len]);
            }
            while let Some(transmit) = edge.poll_transmit(Instant::now(), &mut buf) {
                let size = transmit.segment_size.unwrap_or(transmit.len);
                for segment in buf[..transmit.len].chunks_mut(size) {
                    let _ = self.quic.recv(segment, client_info);
                }
            }
            while let Some(event) = edge.poll_event() {
                on_edge(edge, event);
            }
            if self.quic.is_established() && self.h3.is_none() && !self.defer_h3 {
                let mut config = quiche::h3::Config::new().expect("h3 config");
                config.enable_extended_connect(true);
                self.h3 = Some(
                    quiche::h3::Connection::with_transport(&mut self.quic, &config).expect("h3"),
                );
            }
            if let Some(value) = until(self) {
                return value;
            }
            if edge.poll_timeout().is_some_and(|at| at <= Instant::now()) {
                edge.handle_timeout(Instant::now());
            }
            if self.quic.timeout().is_some_and(|t| t.is_zero()) {
                self.quic.on_timeout();
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Sends `headers` once HTTP/3 is up (and, with datagrams on, the edge's SETTINGS have
    /// arrived) and returns the stream and the response's `:status` and `proxy-status`.
    pub(crate) fn send_request(
        &mut self,
        edge: &mut Endpoint,
        on_edge: &mut dyn FnMut(&mut Endpoint, Event),
        headers: &[(&str, &str)],
    ) -> (u64, String, Option<String>) {
        let headers: Vec<quiche::h3::Header> = headers
            .iter()
            .map(|(name, value)| quiche::h3::Header::new(name.as_bytes(), value.as_bytes()))
            .collect();
        let mut stream = None;
        let datagrams = self.datagrams;
        self.drive(edge, on_edge, |raw| {
            let h3 = raw.h3.as_mut()?;
            if stream.is_none() {
                // Reading first processes the edge's SETTINGS.
                let _ = h3.poll(&mut raw.quic);
                if datagrams && !h3.dgram_enabled_by_peer(&raw.quic) {
                    return None;
                }
                stream = Some(
                    h3.send_request(&mut raw.quic, &headers, false)
                        .expect("request"),
                );
            }
            match h3.poll(&mut raw.quic) {
                Ok((id, quiche::h3::Event::Headers { list, .. })) if Some(id) == stream => {
                    let field = |name: &[u8]| {
                        list.iter()
                            .find(|h| h.name() == name)
                            .map(|h| String::from_utf8_lossy(h.value()).into_owned())
                    };
                    Some((
                        id,
                        field(b":status").expect("status"),
                        field(b"proxy-status"),
                    ))
                }
                _ => None,
            }
        })
    }

    /// Like `send_request`, for a test that only wants the answer and ignores the edge's
    /// events.
    pub(crate) fn request(
        &mut self,
        edge: &mut Endpoint,
        headers: &[(&str, &str)],
    ) -> (String, Option<String>) {
        let (_, status, proxy_status) = self.send_request(edge, &mut |_, _| {}, headers);
        (status, proxy_status)
    }

    /// Drives until the edge resets `stream` and returns the error code.
    pub(crate) fn wait_reset(
        &mut self,
        edge: &mut Endpoint,
        on_edge: &mut dyn FnMut(&mut Endpoint, Event),
        stream: u64,
    ) -> u64 {
        self.drive(edge, on_edge, |raw| {
            let h3 = raw.h3.as_mut()?;
            loop {
                match h3.poll(&mut raw.quic) {
                    Ok((id, quiche::h3::Event::Reset(code))) if id == stream => return Some(code),
                    Ok((id, quiche::h3::Event::Data)) => {
                        let mut sink = [0; 4096];
                        while h3.recv_body(&mut raw.quic, id, &mut sink).is_ok() {}
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            // A reset stream may also show as a stopped one when nothing was left to read.
            match raw.quic.stream_writable(stream, 1) {
                Err(quiche::Error::StreamStopped(code)) => Some(code),
                _ => None,
            }
        })
    }
}
