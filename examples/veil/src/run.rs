//! Starting and stopping an edge and a client: what `veil server` and `veil client` run,
//! also used in-process by `veil demo` and the tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use veil_engine::rules::ClientRules;
use veil_engine::{CidLayout, ClientConfig, Config, EdgeConfig, Pem, RoleConfig, Verify};
use veil_tokio::{Node, Opener, Options, StatsProbe};

use crate::config::{ClientSettings, ServerSettings, Trust, format_pin};
use crate::metrics::{self, StatsSource};
use crate::route::{Front, Router};
use crate::upgrade::{self, Inheritance};
use crate::{http_proxy, socks, udp_forward};

/// `println!` for a service's status lines, which must not stop the service: its stdout
/// may be gone (a supervisor's log pipe closed, `veil server | head -1`), and `println!`
/// panics when the write fails — after "shutting down", in the middle of the drain. The
/// line is lost instead.
macro_rules! status {
    ($($line:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($line)*);
    }};
}

/// [`status!`] for stderr.
macro_rules! status_err {
    ($($line:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($line)*);
    }};
}

/// A running edge.
#[derive(Debug)]
pub struct RunningEdge {
    /// Its drivers (`--drivers`), the first also serving the TCP on-ramp; never empty.
    nodes: Vec<Node>,
    drain: Duration,
    upgrade_drain: Duration,
    self_signed: bool,
    /// The metrics listener's address and task, when asked for.
    metrics: Option<(SocketAddr, JoinHandle<()>)>,
    /// CONNECT-IP: the banner line saying where packets leave.
    ip_egress_line: Option<String>,
    /// The TCP on-ramp's address (`--listen-tcp`), when it listens.
    tcp_addr: Option<SocketAddr>,
    /// What an upgrade in place hands a successor.
    handing: upgrade::Handing,
    /// Whether the process this one replaced has exited: until then the socket group's
    /// indices are not ours to count, and no upgrade starts.
    predecessor_gone: Arc<AtomicBool>,
    /// A tenant's audit records, for the process's writer.
    audit_records: Option<tokio::sync::mpsc::Receiver<veil_engine::AuditRecord>>,
}

impl RunningEdge {
    /// Binds and starts an edge.
    pub fn start(settings: &ServerSettings) -> anyhow::Result<Self> {
        Self::start_inherited(settings, None)
    }

    /// Binds and starts an edge; a successor started by an upgrade joins its
    /// predecessor's UDP socket group and takes over the listeners it inherited.
    pub fn start_inherited(
        settings: &ServerSettings,
        mut inherited: Option<&mut Inheritance>,
    ) -> anyhow::Result<Self> {
        let generation = inherited.as_ref().map_or(0, |i| i.generation);
        let mut config = edge_config(settings);
        let self_signed_pem = self_signed_for(settings, inherited.as_deref_mut(), &mut config)?;
        let (ip_egress, ip_egress_line) = ip_egress_of(settings)?;
        let (listen, shared) = listen_of(settings, inherited.as_deref());
        let sockets = bind_drivers(settings, listen, shared, inherited.is_some())?;
        let udp_kept = sockets
            .first()
            .context("an edge has a driver")?
            .try_clone()?;
        let drivers = u16::try_from(sockets.len()).context("too many drivers")?;
        let mut nodes = Vec::with_capacity(sockets.len());
        for (index, udp) in (0..drivers).zip(sockets) {
            let options = Options {
                connect_timeout: settings.connect_timeout,
                // Each driver issues IDs naming it: the steering program reads them.
                cid_layout: Some(
                    CidLayout::new(index, drivers)
                        .context("a driver's number")?
                        .with_server(settings.edge_id, generation),
                ),
                udp_buffer: settings.udp_buffer.fixed,
                udp_buffer_long_path: settings.udp_buffer.long_path,
                busy_poll: settings.busy_poll,
                // Drivers exist so that one connection's packets do not wait behind
                // another's: each runs on a thread the OS schedules apart.
                own_thread: drivers > 1,
                ..Options::default()
            };
            nodes.push(Node::start_on(
                config.clone(),
                udp,
                options,
                veil_engine::DefaultPolicy,
                ip_egress.as_ref(),
            )?);
        }
        let node = nodes.first_mut().context("an edge has a driver")?;
        let mut tcp_kept = None;
        let tcp_addr = match settings.listen_tcp {
            Some(addr) => {
                let listener = match inherited.as_mut().and_then(|i| i.tcp.take()) {
                    Some(listener) => listener,
                    None => std::net::TcpListener::bind(addr)
                        .with_context(|| format!("cannot listen on TCP {addr} (--listen-tcp)"))?,
                };
                tcp_kept = Some(listener.try_clone()?);
                Some(node.listen_tcp(listener)?)
            }
            None => None,
        };
        // A tenant's records go to the process's one writer (`server_tenants`).
        let mut audit_records = None;
        if let (Some(target), Some(records)) = (
            &settings.audit_log,
            merge_audit(nodes.iter_mut().filter_map(Node::audit_records).collect()),
        ) {
            if settings.tenant.is_some() {
                audit_records = Some(records);
            } else {
                let out = crate::audit_log::open(target)?;
                tokio::spawn(crate::audit_log::write(records, out));
            }
        }
        let metrics_listener = match (settings.metrics, inherited.as_mut()) {
            (None, _) => None,
            (Some(_), Some(inherited)) if inherited.metrics.is_some() => inherited.metrics.take(),
            (Some(addr), _) => Some(metrics::bind_std(addr)?),
        };
        let metrics_kept = metrics_listener
            .as_ref()
            .map(std::net::TcpListener::try_clone)
            .transpose()?;
        let metrics = start_metrics(
            metrics_listener,
            StatsSource::Tokio(StatsProbe::across(&nodes)),
        )?;
        tracing::info!(
            addr = %udp_kept.local_addr()?,
            tokens = settings.tokens.len(),
            allow_targets = ?settings.allow_targets,
            generation,
            drivers,
            "edge started"
        );
        Ok(Self {
            nodes,
            drain: settings.drain,
            upgrade_drain: settings.upgrade_drain,
            self_signed: settings.cert_key.is_none(),
            metrics,
            tcp_addr,
            ip_egress_line,
            handing: upgrade::Handing {
                generation: generation.wrapping_add(1),
                udp: udp_kept,
                tcp: tcp_kept,
                metrics: metrics_kept,
                self_signed: self_signed_pem,
            },
            predecessor_gone: Arc::new(AtomicBool::new(inherited.is_none())),
            audit_records,
        })
    }

    /// Watches for the exit of the process this one replaced (`predecessor` reaches its
    /// end then), and detaches the upgrade's steering program once it has gone.
    pub fn watch_predecessor(&self, predecessor: std::fs::File) -> anyhow::Result<()> {
        let udp = self.handing.udp.try_clone()?;
        let gone = Arc::clone(&self.predecessor_gone);
        tokio::task::spawn_blocking(move || {
            upgrade::after_predecessor(predecessor, &udp);
            gone.store(true, Ordering::Release);
        });
        Ok(())
    }

    /// Starts a successor (see [`upgrade`]) and waits until it serves; the caller then
    /// drains this edge with [`shutdown_after_upgrade`](Self::shutdown_after_upgrade).
    pub async fn upgrade(&self) -> anyhow::Result<upgrade::Successor> {
        if self.nodes.len() > 1 {
            anyhow::bail!("upgrades in place serve one driver (--drivers 1); restart instead");
        }
        if !self.predecessor_gone.load(Ordering::Acquire) {
            anyhow::bail!("the process this one replaced is still draining");
        }
        let handing = self.handing.duplicate()?;
        tokio::task::spawn_blocking(move || upgrade::spawn_successor(&handing)).await?
    }

    /// The UDP address it listens on.
    pub fn addr(&self) -> SocketAddr {
        // Every driver's socket is bound to the same address.
        self.nodes
            .first()
            .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), Node::local_addr)
    }

    /// Each driver's counters, in driver order (`--drivers`); `None` once one has stopped.
    pub async fn driver_stats(&self) -> Option<Vec<veil_engine::EndpointStats>> {
        stats_of_each(&self.nodes).await
    }

    /// SHA-256 of its certificate.
    pub fn fingerprint(&self) -> Option<[u8; 32]> {
        self.nodes.first().and_then(Node::certificate_fingerprint)
    }

    /// The lines `veil server` prints at start.
    pub fn banner(&self) -> Vec<String> {
        let mut lines = vec![format!("veil: edge listening on {}", self.addr())];
        if let (true, Some(fingerprint)) = (self.self_signed, self.fingerprint()) {
            lines.push(format!(
                "veil: self-signed certificate fingerprint {}",
                format_pin(&fingerprint)
            ));
        }
        // After the fingerprint: readers of the first two lines keep working.
        if let Some(addr) = self.tcp_addr {
            lines.push(format!("veil: edge listening on tcp {addr}"));
        }
        if let Some((addr, _)) = &self.metrics {
            lines.push(format!("veil: metrics listening on {addr}"));
        }
        lines.extend(self.ip_egress_line.clone());
        lines
    }

    /// Stops accepting tunnels, drains open ones, closes QUIC.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let drain = self.drain;
        self.shutdown_within(drain).await
    }

    /// After an upgrade: stops accepting (the successor accepts), sends GOAWAY, lets open
    /// tunnels run for the upgrade drain, closes QUIC.
    pub async fn shutdown_after_upgrade(self) -> anyhow::Result<()> {
        let drain = self.upgrade_drain;
        self.shutdown_within(drain).await
    }

    async fn shutdown_within(self, drain: Duration) -> anyhow::Result<()> {
        if let Some((_, task)) = &self.metrics {
            task.abort();
        }
        let drains: Vec<_> = self
            .nodes
            .into_iter()
            .map(|node| tokio::spawn(node.shutdown(drain)))
            .collect();
        for (driver, drained) in drains.into_iter().enumerate() {
            let stats = drained.await??;
            tracing::info!(driver, ?stats, "edge stopped");
        }
        Ok(())
    }
}

/// The UDP sockets of an edge's drivers, bound to `listen` in one `SO_REUSEPORT` group in
/// the order of their numbers, with the engine's steering program attached when there are
/// several (`veil_engine::driver_steering`).
fn bind_drivers(
    settings: &ServerSettings,
    listen: SocketAddr,
    shared: bool,
    inherited: bool,
) -> anyhow::Result<Vec<std::net::UdpSocket>> {
    let drivers = settings.drivers.get();
    let first = upgrade::bind_udp(listen, shared)?;
    if drivers == 1 {
        return Ok(vec![first]);
    }
    // An upgrade's steering program reads one socket per process.
    anyhow::ensure!(
        !inherited,
        "an upgrade in place serves one driver: restart the edge to run --drivers {drivers}"
    );
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..drivers {
        sockets.push(upgrade::bind_udp(addr, true)?);
    }
    let count = u16::try_from(drivers).context("too many drivers")?;
    let program = veil_engine::driver_steering(count).context("the drivers' steering program")?;
    upgrade::attach_steering(&sockets[0], &program)
        .context("attaching the drivers' steering program")?;
    Ok(sockets)
}

/// Audit records from several sources (an edge's drivers, a process's tenants) in one
/// channel for one writer; `None` without a source.
fn merge_audit(
    mut each: Vec<tokio::sync::mpsc::Receiver<veil_engine::AuditRecord>>,
) -> Option<tokio::sync::mpsc::Receiver<veil_engine::AuditRecord>> {
    if each.len() <= 1 {
        return each.pop();
    }
    let (tx, rx) = tokio::sync::mpsc::channel(veil_tokio::AUDIT_CHANNEL);
    for mut records in each {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(record) = records.recv().await {
                // Waiting here fills the source's own channel, whose driver drops and
                // counts: the data path never waits for the writer.
                if tx.send(record).await.is_err() {
                    return;
                }
            }
        });
    }
    Some(rx)
}

/// Each node's counters, in order; `None` once one has stopped.
async fn stats_of_each(nodes: &[Node]) -> Option<Vec<veil_engine::EndpointStats>> {
    let mut each = Vec::with_capacity(nodes.len());
    for node in nodes {
        each.push(node.stats_probe().stats().await?);
    }
    Some(each)
}

/// Serves metrics on `listener`, if there is one.
fn start_metrics(
    listener: Option<std::net::TcpListener>,
    source: StatsSource,
) -> anyhow::Result<Option<(SocketAddr, JoinHandle<()>)>> {
    let Some(listener) = listener else {
        return Ok(None);
    };
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let bound = listener.local_addr()?;
    Ok(Some((
        bound,
        tokio::spawn(metrics::serve(listener, source)),
    )))
}

/// The edge's CONNECT-IP egress, and the banner line that says where packets leave.
fn ip_egress_of(
    settings: &ServerSettings,
) -> anyhow::Result<(Option<veil_tokio::IpEgress>, Option<String>)> {
    let ip_egress = match &settings.ip_egress {
        Some(crate::config::IpEgressSpec::Decap) => Some(veil_tokio::IpEgress::decap()),
        Some(crate::config::IpEgressSpec::Tun(name)) => {
            let pools = settings
                .ip_pools
                .iter()
                .map(|pool| crate::config::parse_prefix(pool))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let egress = veil_tokio::IpEgress::open(name, &pools, settings.tun_offload)
                .with_context(|| format!("--ip-egress tun:{name}"))?;
            Some(egress)
        }
        None => None,
    };
    let ip_egress_line = ip_egress.as_ref().map(|egress| {
        if egress.is_decap() {
            "veil: ip egress by decapsulation".to_owned()
        } else {
            format!("veil: ip egress through tun {}", egress.name())
        }
    });
    Ok((ip_egress, ip_egress_line))
}

/// The self-signed certificate an edge without `--cert` serves, set in `config`: its
/// predecessor's, or a fresh one. Generated here, not inside the engine, so that a
/// successor serves the same certificate: clients pinned its fingerprint.
fn self_signed_for(
    settings: &ServerSettings,
    inherited: Option<&mut Inheritance>,
    config: &mut Config,
) -> anyhow::Result<Option<(String, String)>> {
    if settings.cert_key.is_some() {
        return Ok(None);
    }
    let (cert, key) = match inherited.and_then(|i| i.self_signed.take()) {
        Some(pem) => pem,
        None => self_signed_certificate()?,
    };
    if let RoleConfig::Edge(edge) = &mut config.role {
        edge.cert = Some(Pem::Text(cert.clone()));
        edge.key = Some(Pem::Text(key.clone()));
    }
    Ok(Some((cert, key)))
}

/// Where an edge binds its UDP socket(s), and whether it joins a predecessor's group
/// there: a successor listens where its predecessor does (the port it was given, if the
/// configuration says "any port").
fn listen_of(settings: &ServerSettings, inherited: Option<&Inheritance>) -> (SocketAddr, bool) {
    match inherited {
        Some(inherited) if settings.listen.port() == 0 => (inherited.udp, true),
        Some(inherited) => (settings.listen, settings.listen == inherited.udp),
        None => (settings.listen, false),
    }
}

/// A fresh self-signed certificate and its key, PEM.
fn self_signed_certificate() -> anyhow::Result<(String, String)> {
    match EdgeConfig::default().with_shared_self_signed()? {
        EdgeConfig {
            cert: Some(Pem::Text(cert)),
            key: Some(Pem::Text(key)),
            ..
        } => Ok((cert, key)),
        _ => anyhow::bail!("the self-signed certificate is not PEM text"),
    }
}

/// The engine configuration of an edge, the same for every runtime.
fn edge_config(settings: &ServerSettings) -> Config {
    let (cert, key) = match &settings.cert_key {
        Some((cert, key)) => (Some(Pem::Path(cert.clone())), Some(Pem::Path(key.clone()))),
        None => (None, None),
    };
    let mut edge = EdgeConfig {
        cert,
        key,
        tokens: settings.tokens.clone(),
        egress_allow: settings.allow_targets.clone(),
        rules: settings.rules.clone(),
        client_ca: settings.client_ca.clone().map(Pem::Path),
        audit: settings.audit_log.is_some(),
        tenant: settings.tenant.clone(),
        ip_pools: settings.ip_pools.clone(),
        retry: settings.retry,
        proxy_protocol: settings.proxy_protocol,
        egress_proxy_protocol: settings.proxy_protocol_egress,
        ..EdgeConfig::default()
    };
    if let Some(template) = &settings.udp_template {
        edge.udp_path_template.clone_from(template);
    }
    edge.request_timeout = settings.request_timeout;
    Config {
        role: RoleConfig::Edge(edge),
        quic: settings.quic.clone(),
    }
}

/// The engine's configuration of a client of the edge at `edge_addr`.
fn client_config(settings: &ClientSettings, edge_addr: SocketAddr) -> Config {
    let server_name = settings
        .server_name
        .clone()
        .unwrap_or_else(|| host_of(&settings.edge).to_owned());
    let verify = match &settings.trust {
        Trust::Pin(pin) => Verify::Pin(*pin),
        Trust::Ca(path) => Verify::Ca(Pem::Path(path.clone())),
        Trust::Insecure => {
            tracing::warn!("--insecure: the edge's certificate is not checked");
            Verify::Insecure
        }
    };
    let mut client = ClientConfig::new(edge_addr, server_name, verify);
    client.token.clone_from(&settings.token);
    client.transport = settings.transport;
    if let Some(retry) = settings.h3_retry {
        client.h3_retry = retry;
    }
    client.optimistic = settings.optimistic;
    client.certificate = settings
        .certificate
        .clone()
        .map(|(cert, key)| (Pem::Path(cert), Pem::Path(key)));
    if let Some(template) = &settings.udp_template {
        client.udp_path_template.clone_from(template);
    }
    Config {
        role: RoleConfig::Client(client),
        quic: settings.quic.clone(),
    }
}

/// A running client: its endpoints (one per lane), its two listeners and its UDP
/// forwards.
#[derive(Debug)]
pub struct RunningClient {
    /// One per lane (`--lanes`), at least one.
    nodes: Vec<Node>,
    socks: Option<SocketAddr>,
    http: Option<SocketAddr>,
    /// Each UDP forward's bound address and target.
    udp_forwards: Vec<(SocketAddr, String)>,
    listeners: Vec<JoinHandle<()>>,
    drain: Duration,
    /// The metrics listener's address, when asked for (its task is in `listeners`).
    metrics: Option<SocketAddr>,
}

impl RunningClient {
    /// Resolves the edge, starts the endpoint and binds the listeners.
    pub async fn start(settings: &ClientSettings) -> anyhow::Result<Self> {
        let edge_addr = tokio::net::lookup_host(&settings.edge)
            .await
            .with_context(|| format!("cannot resolve the edge {}", settings.edge))?
            .next()
            .with_context(|| format!("the edge {} has no address", settings.edge))?;
        let lanes = u16::try_from(settings.lanes.get()).context("too many lanes")?;
        let mut nodes = Vec::with_capacity(settings.lanes.get());
        for lane in 0..lanes {
            nodes.push(Node::start(
                client_config(settings, edge_addr),
                veil_tokio::client_bind_addr(edge_addr),
                Options {
                    udp_buffer: settings.udp_buffer.fixed,
                    udp_buffer_long_path: settings.udp_buffer.long_path,
                    busy_poll: settings.busy_poll,
                    // Lanes exist so that one lane's bulk does not hold another's round
                    // trips: each drives on a thread the OS schedules apart.
                    own_thread: lanes > 1,
                    // The lane in the connection's source IDs: an edge with several
                    // drivers puts lane i on driver i mod n (`veil_engine::driver_steering`),
                    // so that lanes stay apart at the edge too.
                    cid_layout: if lanes > 1 {
                        CidLayout::new(lane, lanes)
                    } else {
                        None
                    },
                    ..Options::default()
                },
            )?);
        }
        let rules = ClientRules::new(&settings.rules).context("in [[client.rule]]")?;
        let router = Arc::new(Router::new(
            rules,
            settings.direct_source,
            settings.connect_timeout,
            settings.optimistic,
        ));
        let front = Front::new(Opener::across(&nodes), router);
        let mut listeners = Vec::new();
        let mut socks = None;
        if let Some(addr) = settings.socks {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (SOCKS5)"))?;
            socks = Some(listener.local_addr()?);
            listeners.push(tokio::spawn(socks::serve(
                listener,
                front.clone(),
                settings.socks_user.clone(),
                settings.quic.udp_idle_timeout,
            )));
        }
        let mut http = None;
        if let Some(addr) = settings.http {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (HTTP)"))?;
            http = Some(listener.local_addr()?);
            listeners.push(tokio::spawn(http_proxy::serve(listener, front.clone())));
        }
        let mut udp_forwards = Vec::with_capacity(settings.udp_forwards.len());
        for forward in &settings.udp_forwards {
            let socket = veil_tokio::udp::UdpIo::bind(forward.local).with_context(|| {
                format!("cannot listen on UDP {} (--udp-forward)", forward.local)
            })?;
            udp_forwards.push((socket.local_addr(), forward.target.to_string()));
            listeners.push(tokio::spawn(udp_forward::serve(
                socket,
                forward.target.clone(),
                front.clone(),
                settings.quic.udp_idle_timeout,
            )));
        }
        let mut metrics = None;
        if let Some((addr, task)) = start_metrics(
            settings.metrics.map(metrics::bind_std).transpose()?,
            StatsSource::Tokio(StatsProbe::across(&nodes)),
        )? {
            metrics = Some(addr);
            listeners.push(task);
        }
        if let (Some(name), Some(first)) = (&settings.tun, nodes.first()) {
            // One long-lived CONNECT-IP tunnel: the first lane carries it.
            listeners.push(start_tun(name, settings, first)?);
        }
        tracing::info!(edge = %edge_addr, ?socks, ?http, ?udp_forwards, lanes = nodes.len(), "client started");
        Ok(Self {
            nodes,
            socks,
            http,
            udp_forwards,
            listeners,
            drain: settings.drain,
            metrics,
        })
    }

    /// The SOCKS5 listener's address, when it was asked for.
    pub fn socks_addr(&self) -> Option<SocketAddr> {
        self.socks
    }

    /// Each lane's counters, in lane order; `None` once a lane has stopped.
    pub async fn lane_stats(&self) -> Option<Vec<veil_engine::EndpointStats>> {
        stats_of_each(&self.nodes).await
    }

    /// The HTTP proxy listener's address, when it was asked for.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The bound address of each `--udp-forward`, in the order given.
    pub fn udp_forward_addrs(&self) -> Vec<SocketAddr> {
        self.udp_forwards.iter().map(|(addr, _)| *addr).collect()
    }

    /// The lines `veil client` prints at start.
    pub fn banner(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(addr) = self.socks {
            lines.push(format!("veil: socks5 listening on {addr}"));
        }
        if let Some(addr) = self.http {
            lines.push(format!("veil: http listening on {addr}"));
        }
        for (addr, target) in &self.udp_forwards {
            lines.push(format!("veil: udp forward listening on {addr} to {target}"));
        }
        if let Some(addr) = self.metrics {
            lines.push(format!("veil: metrics listening on {addr}"));
        }
        lines
    }

    /// Stops accepting, drains open tunnels, closes QUIC.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        for listener in &self.listeners {
            listener.abort();
        }
        // Every lane drains at once: the drain bounds the whole shutdown, not each lane.
        let drain = self.drain;
        let lanes: Vec<_> = self
            .nodes
            .into_iter()
            .map(|node| tokio::spawn(node.shutdown(drain)))
            .collect();
        let mut stats = veil_engine::EndpointStats::default();
        for lane in lanes {
            stats.merge(&lane.await??);
        }
        tracing::info!(?stats, "client stopped");
        Ok(())
    }
}

/// The host of `HOST:PORT` (brackets of an IPv6 literal removed).
fn host_of(edge: &str) -> &str {
    let host = edge.rsplit_once(':').map_or(edge, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// `veil server`: run until SIGINT or SIGTERM; upgrade in place on SIGHUP (see
/// [`upgrade`]).
pub async fn server(settings: ServerSettings) -> anyhow::Result<()> {
    let mut inherited = Inheritance::from_env()?;
    let edge = RunningEdge::start_inherited(&settings, inherited.as_mut())?;
    // Before anyone hears the edge is ready: a SIGTERM from then on drains it.
    let mut stop = veil_tokio::ShutdownSignals::new()?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    for line in edge.banner() {
        status!("{line}");
    }
    crate::notify::notify("READY=1");
    if let Some(predecessor) = inherited.as_mut().and_then(Inheritance::announce_ready) {
        edge.watch_predecessor(predecessor)?;
    }
    loop {
        tokio::select! {
            stopped = stop.recv() => {
                stopped?;
                crate::notify::notify("STOPPING=1");
                status!("veil: shutting down");
                return edge.shutdown().await;
            }
            _ = hangup.recv() => match edge.upgrade().await {
                Ok(successor) => {
                    let pid = successor.child.id();
                    // The successor is the service now; systemd follows it.
                    crate::notify::notify(&format!("MAINPID={pid}"));
                    status!("veil: upgraded: successor pid {pid} serves; draining");
                    edge.shutdown_after_upgrade().await?;
                    status!("veil: drained; exiting");
                    // `successor.alive` closes as this process exits.
                    drop(successor);
                    return Ok(());
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "upgrade failed");
                    status_err!("veil: upgrade failed, still serving: {e:#}");
                }
            },
        }
    }
}

/// `veil server` with `[[listener]]` tables: one edge per tenant in this process, one
/// metrics listener labelling each tenant's samples, one audit log naming the tenant of
/// each record; runs until SIGINT or SIGTERM, then drains every tenant at once.
pub async fn server_tenants(
    shared: ServerSettings,
    tenants: Vec<ServerSettings>,
) -> anyhow::Result<()> {
    let mut edges = Vec::with_capacity(tenants.len());
    for settings in &tenants {
        let name = settings.tenant.clone().unwrap_or_default();
        let edge = RunningEdge::start(settings).with_context(|| format!("listener {name:?}"))?;
        edges.push((name, edge));
    }
    if let Some(target) = &shared.audit_log {
        let out = crate::audit_log::open(target)?;
        let each = edges
            .iter_mut()
            .filter_map(|(_, edge)| edge.audit_records.take())
            .collect();
        if let Some(records) = merge_audit(each) {
            tokio::spawn(crate::audit_log::write(records, out));
        }
    }
    let source = StatsSource::Tenants(
        edges
            .iter()
            .map(|(name, edge)| (name.clone(), StatsProbe::across(&edge.nodes)))
            .collect(),
    );
    let metrics = start_metrics(shared.metrics.map(metrics::bind_std).transpose()?, source)?;
    let mut stop = veil_tokio::ShutdownSignals::new()?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    for (name, edge) in &edges {
        for line in edge.banner() {
            let rest = line.strip_prefix("veil: ").unwrap_or(&line);
            status!("veil: listener {name}: {rest}");
        }
    }
    if let Some((addr, _)) = &metrics {
        status!("veil: metrics listening on {addr}");
    }
    crate::notify::notify("READY=1");
    loop {
        tokio::select! {
            stopped = stop.recv() => { stopped?; break; }
            _ = hangup.recv() => {
                status_err!("veil: upgrades in place serve a single listener; with [[listener]] tables, restart instead");
            }
        }
    }
    crate::notify::notify("STOPPING=1");
    status!("veil: shutting down");
    if let Some((_, task)) = metrics {
        task.abort();
    }
    let mut drains = tokio::task::JoinSet::new();
    for (_, edge) in edges {
        drains.spawn(edge.shutdown());
    }
    while let Some(result) = drains.join_next().await {
        result??;
    }
    Ok(())
}

/// `veil client`: run until SIGINT or SIGTERM.
pub async fn client(settings: ClientSettings) -> anyhow::Result<()> {
    let client = RunningClient::start(&settings).await?;
    let mut stop = veil_tokio::ShutdownSignals::new()?;
    for line in client.banner() {
        status!("{line}");
    }
    crate::notify::notify("READY=1");
    stop.recv().await?;
    crate::notify::notify("STOPPING=1");
    status!("veil: shutting down");
    client.shutdown().await
}

/// `veil server --runtime glommio`: a thread-per-core edge (veil-glommio) on `cores` cores
/// (all available if `None`). Blocks until SIGINT or SIGTERM, drains, then prints one
/// `veil: core N: ...` line of counters per core. SIGHUP is answered with a message:
/// upgrades in place run on the tokio runtime (see [`upgrade`]).
#[cfg(target_os = "linux")]
pub fn server_glommio(settings: &ServerSettings, cores: Option<usize>) -> anyhow::Result<()> {
    if matches!(
        settings.ip_egress,
        Some(crate::config::IpEgressSpec::Tun(_))
    ) {
        anyhow::bail!(
            "--runtime glommio carries CONNECT-IP through the decap off-ramp only (--ip-egress decap, the default with --ip-pool); a TUN device is for the tokio runtime"
        );
    }
    anyhow::ensure!(
        std::env::var_os(upgrade::ENV).is_none(),
        "an upgrade in place to the glommio runtime is not supported: restart instead"
    );
    anyhow::ensure!(
        settings.busy_poll.is_none(),
        "--busy-poll-us polls in the tokio runtime's drivers; glommio's cores do not poll"
    );
    let options = veil_glommio::Options {
        connect_timeout: settings.connect_timeout,
        cores: cores.unwrap_or_else(veil_glommio::available_cores),
        listen_tcp: settings.listen_tcp,
        edge_id: settings.edge_id,
        udp_buffer: settings.udp_buffer.fixed,
        udp_buffer_long_path: settings.udp_buffer.long_path,
        ..veil_glommio::Options::default()
    };
    let mut edge = veil_glommio::Edge::start(edge_config(settings), settings.listen, options)?;
    // The cores run on their own threads; this thread only waits for the signal (and
    // answers scrapes, when asked to). Its handlers go in before the banner, which is
    // what a supervisor (or a test) waits for before it may stop the edge.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut stop, mut hangup) = {
        let _entered = runtime.enter();
        (
            veil_tokio::ShutdownSignals::new()?,
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?,
        )
    };
    if let (Some(target), Some(records)) = (&settings.audit_log, edge.audit_records()) {
        let out = crate::audit_log::open(target)?;
        std::thread::Builder::new()
            .name("veil-audit".to_owned())
            .spawn(move || crate::audit_log::write_blocking(&records, out))?;
    }
    status!("veil: edge listening on {}", edge.local_addr());
    if let (None, Some(fingerprint)) = (&settings.cert_key, edge.certificate_fingerprint()) {
        status!(
            "veil: self-signed certificate fingerprint {}",
            format_pin(&fingerprint)
        );
    }
    // After the fingerprint, as on tokio (`RunningEdge::banner`).
    if let Some(addr) = edge.tcp_addr() {
        status!("veil: edge listening on tcp {addr}");
    }
    // Last: the lines before are the same as the tokio runtime's, for their readers.
    status!("veil: glommio on {} cores", edge.cores());
    let stats = StatsSource::Glommio(edge.stats_handle());
    runtime.block_on(async {
        let listener = settings.metrics.map(metrics::bind_std).transpose()?;
        if let Some((addr, _task)) = start_metrics(listener, stats)? {
            status!("veil: metrics listening on {addr}");
        }
        crate::notify::notify("READY=1");
        loop {
            tokio::select! {
                stopped = stop.recv() => { stopped?; break; }
                _ = hangup.recv() => status_err!(
                    "veil: upgrades in place run on the tokio runtime for now; restart the glommio edge instead"
                ),
            }
        }
        crate::notify::notify("STOPPING=1");
        anyhow::Ok(())
    })?;
    status!("veil: shutting down");
    let stats = edge.shutdown(settings.drain)?;
    for core in &stats {
        status!("{}", core_line(core));
    }
    Ok(())
}

/// The counters of one glommio core, as `veil server --runtime glommio` prints them.
#[cfg(target_os = "linux")]
pub fn core_line(core: &veil_glommio::CoreStats) -> String {
    format!(
        "veil: core {}: connections {}, tunnels {}, forwarded out {}, forwarded in {}, forward dropped {}",
        core.core,
        core.endpoint.connections_total,
        core.endpoint.tunnels_total,
        core.forwarded_out,
        core.forwarded_in,
        core.forward_dropped
    )
}

/// `veil server --runtime glommio` off Linux: glommio needs `io_uring`.
#[cfg(not(target_os = "linux"))]
pub fn server_glommio(_settings: &ServerSettings, _cores: Option<usize>) -> anyhow::Result<()> {
    anyhow::bail!("--runtime glommio needs Linux (io_uring)")
}

/// `--tun NAME`: opens the device and runs a CONNECT-IP tunnel through it (veil-tokio's
/// `run_tun_client`); prints `tun NAME ready: ADDRESSES` each time the edge's addresses
/// and routes are applied.
fn start_tun(name: &str, settings: &ClientSettings, node: &Node) -> anyhow::Result<JoinHandle<()>> {
    let device = veil_tokio::open_tun(name, settings.tun_offload)
        .with_context(|| format!("--tun {name}"))?;
    let name = device.name().to_owned();
    let options = veil_tokio::TunClientOptions {
        routes: settings.tun_routes.clone(),
    };
    let (ready, mut configs) = tokio::sync::mpsc::unbounded_channel::<veil_tokio::IpTunnelConfig>();
    let opener = node.opener();
    let device = Arc::new(device);
    Ok(tokio::spawn(async move {
        let printer = tokio::spawn(async move {
            while let Some(config) = configs.recv().await {
                let addresses: Vec<String> =
                    config.addresses.iter().map(ToString::to_string).collect();
                status!("tun {name} ready: {}", addresses.join(" "));
            }
        });
        if let Err(error) = veil_tokio::run_tun_client(opener, device, options, ready).await {
            tracing::info!(%error, "the IP tunnel stopped");
        }
        printer.abort();
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_defaults_to_the_edge_host() {
        assert_eq!(host_of("edge.example:4433"), "edge.example");
        assert_eq!(host_of("127.0.0.1:4433"), "127.0.0.1");
        assert_eq!(host_of("[::1]:4433"), "::1");
        assert_eq!(host_of("noport"), "noport");
    }
}
