//! quiche and quiche HTTP/3 settings built from [`QuicConfig`].

use std::time::Duration;

use boring::ssl::SslContextBuilder;
use quiche::h3;

use crate::config::{CongestionControl, QuicConfig};
use crate::error::ConfigError;

/// Streams the HTTP/3 layer itself needs from the peer: control, QPACK encoder and decoder,
/// and room for GREASE and future extensions.
const MAX_STREAMS_UNI: u64 = 16;

/// Receive window of each unidirectional (control, QPACK) stream.
const UNI_STREAM_WINDOW: u64 = 1024 * 1024;

/// Largest request or response head accepted, in bytes (`SETTINGS_MAX_FIELD_SECTION_SIZE`).
const MAX_FIELD_SECTION_SIZE: u64 = 16 * 1024;

/// The smallest UDP payload QUIC allows (RFC 9000 §14).
const MIN_UDP_PAYLOAD: usize = 1200;

/// quiche's transport configuration over `tls`, with ALPN `h3`.
pub(crate) fn quic_config(
    quic: &QuicConfig,
    tls: SslContextBuilder,
) -> Result<quiche::Config, ConfigError> {
    validate(quic)?;
    let failed = |what| move |source| ConfigError::Quic { what, source };
    let mut config = quiche::Config::with_boring_ssl_ctx_builder(quiche::PROTOCOL_VERSION, tls)
        .map_err(failed("TLS context"))?;
    config
        .set_application_protos(h3::APPLICATION_PROTOCOL)
        .map_err(failed("ALPN"))?;
    config.set_max_idle_timeout(millis(quic.max_idle_timeout));
    config.set_max_recv_udp_payload_size(quic.max_recv_udp_payload_size);
    config.set_max_send_udp_payload_size(quic.max_send_udp_payload_size);
    config.set_initial_max_data(quic.initial_max_data);
    config.set_initial_max_stream_data_bidi_local(quic.initial_max_stream_data_bidi_local);
    config.set_initial_max_stream_data_bidi_remote(quic.initial_max_stream_data_bidi_remote);
    config.set_initial_max_stream_data_uni(UNI_STREAM_WINDOW);
    config.set_initial_max_streams_bidi(quic.initial_max_streams_bidi);
    config.set_initial_max_streams_uni(MAX_STREAMS_UNI);
    config.set_max_connection_window(quic.max_connection_window);
    config.set_max_stream_window(quic.max_stream_window);
    config.set_cc_algorithm(match quic.congestion_control {
        CongestionControl::Cubic => quiche::CongestionControlAlgorithm::CUBIC,
        CongestionControl::Bbr2 => quiche::CongestionControlAlgorithm::Bbr2Gcongestion,
        CongestionControl::Reno => quiche::CongestionControlAlgorithm::Reno,
    });
    config.set_initial_congestion_window_packets(quic.initial_congestion_window_packets);
    config.enable_pacing(quic.pacing);
    config.discover_pmtu(quic.pmtu_discovery);
    if quic.enable_datagrams {
        config.enable_dgram(true, quic.datagram_queue_len, quic.datagram_queue_len);
    }
    Ok(config)
}

/// HTTP/3 settings: extended CONNECT on (RFC 9220); `H3_DATAGRAM` follows the QUIC datagram
/// setting (quiche announces it when the connection negotiated DATAGRAM frames).
pub(crate) fn h3_config() -> Result<h3::Config, ConfigError> {
    let mut config = h3::Config::new().map_err(|_| ConfigError::InvalidValue { field: "h3" })?;
    config.enable_extended_connect(true);
    config.set_max_field_section_size(MAX_FIELD_SECTION_SIZE);
    Ok(config)
}

/// The `max_ack_delay` quiche advertises (its default, left as it is).
const ADVERTISED_MAX_ACK_DELAY: Duration = Duration::from_millis(25);

fn validate(quic: &QuicConfig) -> Result<(), ConfigError> {
    let checks: [(&'static str, bool); 8] = [
        (
            "max_send_udp_payload_size",
            quic.max_send_udp_payload_size >= MIN_UDP_PAYLOAD,
        ),
        (
            "max_recv_udp_payload_size",
            quic.max_recv_udp_payload_size >= MIN_UDP_PAYLOAD,
        ),
        ("max_idle_timeout_ms", !quic.max_idle_timeout.is_zero()),
        (
            "initial_max_streams_bidi",
            quic.initial_max_streams_bidi > 0,
        ),
        ("udp_idle_timeout_ms", !quic.udp_idle_timeout.is_zero()),
        ("udp_tunnel_queue_len", quic.udp_tunnel_queue_len > 0),
        //# RFC 9000 §13.2.1: "An endpoint MUST acknowledge [...] all ack-eliciting 0-RTT
        //# and 1-RTT packets within its advertised max_ack_delay"
        ("ack_delay_ms", quic.ack_delay < ADVERTISED_MAX_ACK_DELAY),
        (
            "keep_alive_interval_ms",
            quic.keep_alive_interval
                .is_none_or(|every| !every.is_zero()),
        ),
    ];
    match checks.into_iter().find(|&(_, ok)| !ok) {
        Some((field, _)) => Err(ConfigError::InvalidValue { field }),
        None => Ok(()),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
