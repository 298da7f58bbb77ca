//! An endpoint's counters in the Prometheus text format (`OpenMetrics`), encoded once here
//! for every host: `veil server|client --metrics`, the glommio edge (its cores' counters
//! summed), and C (`veil_endpoint_metrics_text`).
//!
//! Names follow Prometheus's naming guide: a `veil_` prefix, base units, `_total` on
//! counters (added by the encoder), one name per meaning with a label for the cause where
//! one quantity splits (`veil_udp_payloads_dropped_total{cause="queue_full"}`). Nothing in
//! them comes from a peer, so no secret and no unbounded label can appear.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::types::EndpointStats;

/// The text an HTTP `GET /metrics` answers with, for `stats` (several cores: their sum,
/// see [`EndpointStats::merge`]).
pub fn encode_text(stats: &EndpointStats) -> String {
    encode(Snapshot(vec![(None, *stats)]))
}

/// The text for several endpoints in one process (an edge's tenants, each its own
/// listener): every sample carries a `tenant` label with its endpoint's name, and each
/// metric is described once.
pub fn encode_text_by_tenant(tenants: &[(&str, EndpointStats)]) -> String {
    encode(Snapshot(
        tenants
            .iter()
            .map(|(name, stats)| (Some((*name).to_owned()), *stats))
            .collect(),
    ))
}

fn encode(snapshot: Snapshot) -> String {
    let mut registry = Registry::with_prefix("veil");
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// The media type of [`encode_text`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl EndpointStats {
    /// Adds `other`'s counters to these (the cores of a thread-per-core edge).
    pub fn merge(&mut self, other: &Self) {
        let Self {
            connections,
            connections_total,
            tcp_connections_total,
            http2_bounds,
            http3_rapid_reset_floods,
            connections_lost,
            tunnels,
            tunnels_total,
            tunnels_refused,
            auth_failures,
            datagrams_dropped,
            version_negotiations,
            stateless_resets,
            retries,
            retry_tokens_invalid,
            dns_cache_hits,
            dns_cache_misses,
            datagrams_received,
            datagrams_sent,
            udp_datagrams_sent,
            udp_datagrams_received,
            udp_dropped_oversize,
            udp_dropped_queue_full,
            udp_dropped_unknown_context,
            udp_dropped_unknown_tunnel,
            udp_dropped_malformed,
            udp_capsule_datagrams,
            audit_dropped,
            tunnel_bytes_received,
            tunnel_bytes_sent,
            tunnel_setup,
            tunnel_first_byte,
            refusals,
            quic_packets_sent,
            quic_packets_lost,
            quic_rtt,
            ip_packets_forwarded,
            ip_icmp_answers,
            ip_dropped,
            ip_flows,
            ip_flows_evicted,
            ip_addresses_assigned,
            ip_decap_flows_opened,
            ip_decap_flows,
        } = other;
        self.connections += connections;
        self.connections_total += connections_total;
        self.tcp_connections_total += tcp_connections_total;
        self.http2_bounds.merge(http2_bounds);
        self.http3_rapid_reset_floods += http3_rapid_reset_floods;
        self.connections_lost += connections_lost;
        self.tunnels += tunnels;
        self.tunnels_total += tunnels_total;
        self.tunnels_refused += tunnels_refused;
        self.auth_failures += auth_failures;
        self.datagrams_dropped += datagrams_dropped;
        self.version_negotiations += version_negotiations;
        self.stateless_resets += stateless_resets;
        self.retries += retries;
        self.dns_cache_hits += dns_cache_hits;
        self.dns_cache_misses += dns_cache_misses;
        self.retry_tokens_invalid += retry_tokens_invalid;
        self.datagrams_received += datagrams_received;
        self.datagrams_sent += datagrams_sent;
        self.udp_datagrams_sent += udp_datagrams_sent;
        self.udp_datagrams_received += udp_datagrams_received;
        self.udp_dropped_oversize += udp_dropped_oversize;
        self.udp_dropped_queue_full += udp_dropped_queue_full;
        self.udp_dropped_unknown_context += udp_dropped_unknown_context;
        self.udp_dropped_unknown_tunnel += udp_dropped_unknown_tunnel;
        self.udp_dropped_malformed += udp_dropped_malformed;
        self.udp_capsule_datagrams += udp_capsule_datagrams;
        self.audit_dropped += audit_dropped;
        self.tunnel_bytes_received += tunnel_bytes_received;
        self.tunnel_bytes_sent += tunnel_bytes_sent;
        self.tunnel_setup.merge(tunnel_setup);
        self.tunnel_first_byte.merge(tunnel_first_byte);
        self.refusals.merge(refusals);
        self.quic_packets_sent += quic_packets_sent;
        self.quic_packets_lost += quic_packets_lost;
        self.quic_rtt.merge(quic_rtt);
        self.ip_packets_forwarded += ip_packets_forwarded;
        self.ip_icmp_answers += ip_icmp_answers;
        self.ip_dropped.merge(*ip_dropped);
        self.ip_flows += ip_flows;
        self.ip_flows_evicted += ip_flows_evicted;
        self.ip_addresses_assigned += ip_addresses_assigned;
        self.ip_decap_flows_opened += ip_decap_flows_opened;
        self.ip_decap_flows += ip_decap_flows;
    }
}

/// Writes one duration histogram's samples, their bucket bounds in seconds.
fn encode_histogram(
    metric: &mut MetricEncoder<'_>,
    tenant: Option<&str>,
    histogram: &crate::types::DurationHistogram,
) -> Result<(), fmt::Error> {
    let buckets: Vec<(f64, u64)> = crate::types::DURATION_BUCKETS_MS
        .iter()
        .map(|&ms| std::time::Duration::from_millis(ms).as_secs_f64())
        .chain([f64::INFINITY])
        .zip(histogram.counts)
        .collect();
    let sum = std::time::Duration::from_micros(histogram.sum_micros).as_secs_f64();
    match tenant {
        Some(tenant) => metric
            .encode_family(&[("tenant", tenant)])?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            sum,
            histogram.count(),
            &buckets,
            None,
        ),
        None => metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            sum,
            histogram.count(),
            &buckets,
            None,
        ),
    }
}

/// One sample, with the tenant's label (if any) and the family's own (if any).
fn encode_sample(
    metric: &mut MetricEncoder<'_>,
    tenant: Option<&str>,
    label: Option<(&str, &str)>,
    sample: Sample,
) -> Result<(), fmt::Error> {
    let labels: Vec<(&str, &str)> = tenant
        .map(|tenant| ("tenant", tenant))
        .into_iter()
        .chain(label)
        .collect();
    let encode = |encoder: MetricEncoder<'_>| match sample {
        Sample::Gauge(value) => {
            ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(encoder)
        }
        Sample::Counter(value) => ConstCounter::new(value).encode(encoder),
    };
    // No labels at all: the sample is written bare (`veil_tunnels 2`).
    encode(metric.encode_family(&labels)?)
}

/// One scrape's counters: one endpoint's, or several named ones'.
#[derive(Debug)]
struct Snapshot(Vec<(Option<String>, EndpointStats)>);

/// A sample: a gauge (a level now) or a counter (a total so far).
#[derive(Clone, Copy)]
enum Sample {
    Gauge(usize),
    Counter(u64),
}

impl Snapshot {
    /// Every unlabelled metric: name (after the `veil_` prefix, before `_total`), help,
    /// value. One table, so that a counter cannot be forgotten in one place.
    // A table, one row per metric: its length is the number of metrics, not logic.
    #[allow(clippy::too_many_lines)]
    fn table(s: &EndpointStats) -> [(&'static str, &'static str, Sample); 33] {
        use Sample::{Counter, Gauge};
        [
            (
                "connections",
                "Connections open now (QUIC, and TCP on the TCP on-ramp).",
                Gauge(s.connections),
            ),
            (
                "connections_opened",
                "Connections created (accepted by an edge, dialled by a client).",
                Counter(s.connections_total),
            ),
            (
                "tcp_connections_opened",
                "Connections accepted on the TCP on-ramp (TLS and HTTP/2).",
                Counter(s.tcp_connections_total),
            ),
            (
                "connections_closed",
                "Connections that ended, for any reason.",
                Counter(s.connections_lost),
            ),
            (
                "tunnels",
                "Tunnels alive now (requested, opening or open).",
                Gauge(s.tunnels),
            ),
            (
                "tunnels_opened",
                "Tunnels created.",
                Counter(s.tunnels_total),
            ),
            (
                "tunnels_refused",
                "Tunnels refused (edge: answered non-2xx or reset before opening; client: received non-2xx or gave up).",
                Counter(s.tunnels_refused),
            ),
            (
                "auth_failures",
                "Edge: requests refused for missing or wrong credentials.",
                Counter(s.auth_failures),
            ),
            (
                "http3_rapid_reset_floods",
                "Edge: HTTP/3 connections closed for resetting requests before their answer faster than the bound (rapid reset).",
                Counter(s.http3_rapid_reset_floods),
            ),
            (
                "datagrams_received",
                "UDP datagrams received.",
                Counter(s.datagrams_received),
            ),
            (
                "datagrams_sent",
                "UDP datagrams sent (GSO segments one by one).",
                Counter(s.datagrams_sent),
            ),
            (
                "datagrams_dropped",
                "UDP datagrams dropped: unparsable, unroutable, too-short Initials, over the connection limit.",
                Counter(s.datagrams_dropped),
            ),
            (
                "version_negotiations",
                "Version Negotiation packets sent.",
                Counter(s.version_negotiations),
            ),
            (
                "stateless_resets",
                "Stateless Resets sent for packets of unknown connections.",
                Counter(s.stateless_resets),
            ),
            (
                "quic_retries",
                "Retry packets sent to make new clients prove their address.",
                Counter(s.retries),
            ),
            (
                "dns_cache_hits",
                "Requests whose name the cache of resolved names answered.",
                Counter(s.dns_cache_hits),
            ),
            (
                "dns_cache_misses",
                "Requests whose name the host had to look up.",
                Counter(s.dns_cache_misses),
            ),
            (
                "quic_retry_tokens_invalid",
                "Initials dropped for a forged, expired or misaddressed Retry token.",
                Counter(s.retry_tokens_invalid),
            ),
            (
                "udp_payloads_sent",
                "CONNECT-UDP payloads handed to QUIC or to a stream (capsules) for sending.",
                Counter(s.udp_datagrams_sent),
            ),
            (
                "udp_payloads_received",
                "CONNECT-UDP payloads queued for the host.",
                Counter(s.udp_datagrams_received),
            ),
            (
                "udp_capsule_payloads",
                "CONNECT-UDP payloads carried as DATAGRAM capsules (also in sent and received).",
                Counter(s.udp_capsule_datagrams),
            ),
            (
                "tunnel_received_bytes",
                "Bytes the host read from tunnels (an edge: from its clients).",
                Counter(s.tunnel_bytes_received),
            ),
            (
                "tunnel_sent_bytes",
                "Bytes the host sent into tunnels (an edge: to its clients).",
                Counter(s.tunnel_bytes_sent),
            ),
            (
                "quic_packets_sent",
                "QUIC packets sent, on every connection.",
                Counter(s.quic_packets_sent),
            ),
            (
                "quic_packets_lost",
                "QUIC packets declared lost, on every connection.",
                Counter(s.quic_packets_lost),
            ),
            (
                "ip_addresses_assigned",
                "CONNECT-IP pool addresses held by open tunnels.",
                Gauge(s.ip_addresses_assigned),
            ),
            (
                "ip_packets_forwarded",
                "CONNECT-IP packets that passed the engine's checks, both ways.",
                Counter(s.ip_packets_forwarded),
            ),
            (
                "ip_icmp_answers",
                "CONNECT-IP packets answered with an ICMP error instead of forwarded.",
                Counter(s.ip_icmp_answers),
            ),
            (
                "ip_flows",
                "CONNECT-IP flows inside tunnels, each judged once by the ip_flow hook.",
                Counter(s.ip_flows),
            ),
            (
                "ip_flows_evicted",
                "CONNECT-IP flows forgotten to make room in a tunnel's full flow table.",
                Counter(s.ip_flows_evicted),
            ),
            (
                "ip_decap_flows_opened",
                "CONNECT-IP flows the edge took out of tunnels for the host (decap off-ramp).",
                Counter(s.ip_decap_flows_opened),
            ),
            (
                "ip_decap_flows",
                "CONNECT-IP flows open now at the edge's decap off-ramp.",
                Gauge(s.ip_decap_flows),
            ),
            (
                "audit_records_dropped",
                "Audit records dropped because the host did not take them in time.",
                Counter(s.audit_dropped),
            ),
        ]
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        self.encode_table(&mut encoder)?;
        self.encode_histograms(&mut encoder)?;
        self.encode_labelled(&mut encoder)
    }
}

impl Snapshot {
    /// The unlabelled counters and gauges of [`table`](Self::table).
    fn encode_table(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let tables: Vec<(Option<&str>, _)> = self
            .0
            .iter()
            .map(|(tenant, stats)| (tenant.as_deref(), Self::table(stats)))
            .collect();
        let Some((_, first)) = tables.first() else {
            return Ok(());
        };
        for (index, &(name, help, sample)) in first.iter().enumerate() {
            let metric_type = match sample {
                Sample::Gauge(_) => ConstGauge::new(0i64).metric_type(),
                Sample::Counter(_) => ConstCounter::new(0u64).metric_type(),
            };
            let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
            for (tenant, table) in &tables {
                encode_sample(&mut metric, *tenant, None, table[index].2)?;
            }
        }
        Ok(())
    }

    /// The duration histograms.
    fn encode_histograms(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let histograms: [(&str, &str, HistogramOf); 3] = [
            (
                "tunnel_setup_seconds",
                "How long tunnels took to open (edge: request to the host's accept; client: open to the edge's 2xx).",
                |s| &s.tunnel_setup,
            ),
            (
                "tunnel_first_byte_seconds",
                "How long after it was asked for a tunnel's first byte reached its host.",
                |s| &s.tunnel_first_byte,
            ),
            (
                "quic_rtt_seconds",
                "Smoothed round-trip times of QUIC connections, taken when they end.",
                |s| &s.quic_rtt,
            ),
        ];
        for (name, help, of) in histograms {
            let mut metric = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Histogram,
            )?;
            for (tenant, stats) in &self.0 {
                encode_histogram(&mut metric, tenant.as_deref(), of(stats))?;
            }
        }
        Ok(())
    }

    /// The counters split by a label of their own (cause, error, bound).
    fn encode_labelled(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let labelled: [(&str, &str, &str, LabelledOf); 4] = [
            (
                "refusals",
                "Edge: requests refused, by the Proxy-Status error type the client was given.",
                "error",
                |s| {
                    crate::types::REFUSAL_ERRORS
                        .iter()
                        .map(|error| error.token())
                        .chain(["other"])
                        .zip(s.refusals.counts)
                        .collect()
                },
            ),
            (
                "udp_payloads_dropped",
                "CONNECT-UDP payloads dropped, by cause.",
                "cause",
                |s| {
                    vec![
                        ("oversize", s.udp_dropped_oversize),
                        ("queue_full", s.udp_dropped_queue_full),
                        ("unknown_context", s.udp_dropped_unknown_context),
                        ("unknown_tunnel", s.udp_dropped_unknown_tunnel),
                        ("malformed", s.udp_dropped_malformed),
                    ]
                },
            ),
            (
                "http2_bounds_hit",
                "TCP on-ramp: how often each HTTP/2 bound against a known attack acted.",
                "bound",
                |s| s.http2_bounds.by_bound().into_iter().collect(),
            ),
            (
                "ip_packets_dropped",
                "CONNECT-IP packets dropped, by cause.",
                "cause",
                |s| s.ip_dropped.by_cause().collect(),
            ),
        ];
        for (name, help, label, of) in labelled {
            let mut metric = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for (tenant, stats) in &self.0 {
                for (value_label, value) in of(stats) {
                    encode_sample(
                        &mut metric,
                        tenant.as_deref(),
                        Some((label, value_label)),
                        Sample::Counter(value),
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// Where a histogram is in the counters.
type HistogramOf = fn(&EndpointStats) -> &crate::types::DurationHistogram;

/// The samples of a labelled family: label value, count.
type LabelledOf = fn(&EndpointStats) -> Vec<(&'static str, u64)>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_every_counter_with_its_type_and_unit_suffix() {
        let stats = EndpointStats {
            connections: 2,
            connections_total: 5,
            tunnels_total: 7,
            udp_dropped_queue_full: 3,
            ..EndpointStats::default()
        };
        let text = encode_text(&stats);
        for line in [
            "# TYPE veil_connections gauge",
            "veil_connections 2",
            "# TYPE veil_connections_opened counter",
            "veil_connections_opened_total 5",
            "veil_tunnels_opened_total 7",
            "veil_udp_payloads_dropped_total{cause=\"queue_full\"} 3",
            "veil_udp_payloads_dropped_total{cause=\"oversize\"} 0",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn tenants_share_each_description_and_label_their_samples() {
        let a = EndpointStats {
            tunnels_total: 3,
            ..EndpointStats::default()
        };
        let b = EndpointStats {
            tunnels_total: 4,
            udp_dropped_queue_full: 2,
            ..EndpointStats::default()
        };
        let text = encode_text_by_tenant(&[("blue", a), ("green", b)]);
        assert_eq!(
            text.matches("# TYPE veil_tunnels_opened counter").count(),
            1
        );
        assert!(
            text.contains("veil_tunnels_opened_total{tenant=\"blue\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("veil_tunnels_opened_total{tenant=\"green\"} 4"),
            "{text}"
        );
        assert!(
            text.contains(
                "veil_udp_payloads_dropped_total{tenant=\"green\",cause=\"queue_full\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("veil_quic_rtt_seconds_count{tenant=\"blue\"} 0"),
            "{text}"
        );
        // Without tenants, no braces where there is no label.
        let plain = encode_text(&a);
        assert!(plain.contains("\nveil_tunnels_opened_total 3\n"), "{plain}");
    }

    #[test]
    fn cores_add_up() {
        let one = EndpointStats {
            connections: 1,
            tunnels_total: 10,
            udp_dropped_malformed: 1,
            ..EndpointStats::default()
        };
        let mut sum = one;
        sum.merge(&one);
        assert_eq!(
            (
                sum.connections,
                sum.tunnels_total,
                sum.udp_dropped_malformed
            ),
            (2, 20, 2)
        );
    }

    #[test]
    fn set_up_times_fall_in_their_buckets_and_encode_as_a_histogram() {
        use std::time::Duration;
        let mut stats = EndpointStats::default();
        for ms in [0, 1, 3, 5, 7000] {
            stats.tunnel_setup.record(Duration::from_millis(ms));
        }
        assert_eq!(stats.tunnel_setup.count(), 5);
        let text = encode_text(&stats);
        for line in [
            "# TYPE veil_tunnel_setup_seconds histogram",
            "veil_tunnel_setup_seconds_bucket{le=\"0.001\"} 2",
            "veil_tunnel_setup_seconds_bucket{le=\"0.005\"} 4",
            "veil_tunnel_setup_seconds_bucket{le=\"5.0\"} 4",
            "veil_tunnel_setup_seconds_bucket{le=\"+Inf\"} 5",
            "veil_tunnel_setup_seconds_count 5",
            "veil_tunnel_setup_seconds_sum 7.009",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }
}
