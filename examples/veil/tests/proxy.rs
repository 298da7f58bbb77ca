//! An edge and a client in one runtime on loopback, driven through the client's SOCKS5 and
//! HTTP listeners with raw TCP clients: bytes both ways, half-close and reset propagation,
//! and the mapping of the edge's refusals.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use veil_cli::body::{hex, pattern_digest};
use veil_cli::config::{ClientSettings, LocalCredentials, ServerSettings, Trust};
use veil_cli::fetch::{self, SocksOutcome};
use veil_cli::origin::Origin;
use veil_cli::run::{RunningClient, RunningEdge};
use veil_engine::{QuicConfig, Secret, Token};

/// Every test ends well within this.
const DEADLINE: Duration = Duration::from_secs(30);
const TOKEN: &str = "test-token";
/// Forbidden by the edge's egress policy; the edge refuses it without dialing.
const FORBIDDEN: &str = "10.0.0.1";

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

struct Rig {
    origin: Origin,
    echo: SocketAddr,
    edge: RunningEdge,
    client: RunningClient,
}

impl Rig {
    async fn start(client_token: &str, socks_user: Option<&str>) -> Self {
        Self::start_with_lanes(client_token, socks_user, 1).await
    }

    /// A rig whose client runs `lanes` endpoints (`--lanes`).
    async fn start_with_lanes(client_token: &str, socks_user: Option<&str>, lanes: usize) -> Self {
        Self::start_with_drivers(client_token, socks_user, lanes, 1).await
    }

    /// A rig whose client runs `lanes` lanes and whose edge runs `drivers` drivers.
    async fn start_with_drivers(
        client_token: &str,
        socks_user: Option<&str>,
        lanes: usize,
        drivers: usize,
    ) -> Self {
        // `RUST_LOG=debug cargo test ... -- --nocapture` shows what the nodes do.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let origin = Origin::start(loopback()).await.expect("origin starts");
        let echo = start_echo().await;
        let edge = RunningEdge::start(&ServerSettings {
            listen: loopback(),
            listen_tcp: None,
            proxy_protocol: false,
            proxy_protocol_egress: None,
            cert_key: None,
            client_ca: None,
            tokens: vec![Token::parse(TOKEN, 1).expect("token")],
            allow_targets: vec!["127.0.0.0/8".to_owned()],
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            drain: Duration::from_millis(200),
            upgrade_drain: Duration::from_secs(60),
            edge_id: 0,
            udp_template: None,
            quic: QuicConfig::default(),
            rules: Vec::new(),
            metrics: None,
            audit_log: None,
            ip_pools: Vec::new(),
            ip_egress: None,
            tun_offload: true,
            retry: veil_engine::EdgeConfig::default().retry,
            tenant: None,
            udp_buffer: veil_cli::config::UdpBuffers::KERNEL,
            busy_poll: None,
            drivers: std::num::NonZeroUsize::new(drivers).expect("a driver at least"),
        })
        .expect("edge starts");
        let fingerprint = edge.fingerprint().expect("self-signed fingerprint");
        let client = RunningClient::start(&ClientSettings {
            edge: edge.addr().to_string(),
            transport: veil_engine::Transport::H3,
            h3_retry: None,
            optimistic: false,
            lanes: std::num::NonZeroUsize::new(lanes).expect("at least one lane"),
            server_name: Some("localhost".to_owned()),
            trust: Trust::Pin(fingerprint),
            token: Some(Secret::new(client_token)),
            certificate: None,
            socks: Some(loopback()),
            http: Some(loopback()),
            socks_user: socks_user.map(|text| LocalCredentials::parse(text).expect("valid")),
            drain: Duration::from_millis(200),
            udp_forwards: Vec::new(),
            udp_template: None,
            quic: QuicConfig::default(),
            rules: Vec::new(),
            metrics: None,
            direct_source: None,
            udp_buffer: veil_cli::config::UdpBuffers::KERNEL,
            busy_poll: None,
            connect_timeout: Duration::from_secs(5),
            tun: None,
            tun_routes: Vec::new(),
            tun_offload: true,
        })
        .await
        .expect("client starts");
        Self {
            origin,
            echo,
            edge,
            client,
        }
    }

    /// A SOCKS5 connection through the client to `host:port`, past the handshake.
    async fn connect(&self, host: &str, port: u16) -> TcpStream {
        let outcome = fetch::socks5_connect(
            self.client.socks_addr().expect("a SOCKS5 listener"),
            host,
            port,
            None,
        )
        .await
        .expect("handshake");
        let SocksOutcome::Connected(stream) = outcome else {
            panic!("refused: {outcome:?}");
        };
        stream
    }

    async fn stop(self) {
        self.client.shutdown().await.expect("client stops cleanly");
        self.edge.shutdown().await.expect("edge stops cleanly");
        drop(self.origin);
    }
}

/// Echoes every connection's bytes until EOF, then half-closes.
async fn start_echo() -> SocketAddr {
    let listener = TcpListener::bind(loopback()).await.expect("bind echo");
    let addr = listener.local_addr().expect("echo address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = stream.split();
                if tokio::io::copy(&mut rd, &mut wr).await.is_ok() {
                    let _ = wr.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Writes `data`, half-closes, and reads everything back until EOF.
async fn echo_round_trip(mut stream: TcpStream, data: &[u8]) -> Vec<u8> {
    let (mut rd, mut wr) = stream.split();
    let write = async {
        wr.write_all(data).await.expect("write");
        wr.shutdown().await.expect("half-close");
    };
    let read = async {
        let mut back = Vec::new();
        rd.read_to_end(&mut back).await.expect("read to EOF");
        back
    };
    let ((), back) = tokio::join!(write, read);
    back
}

fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i * 7 % 251).expect("below 251"))
        .collect()
}

async fn within<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, test)
        .await
        .expect("the test finished in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_connect_carries_bytes_and_half_close_both_ways() {
    within(async {
        let rig = Rig::start(TOKEN, None).await;
        let data = payload(3 * 1024 * 1024 + 17);
        let stream = rig.connect("127.0.0.1", rig.echo.port()).await;
        let back = echo_round_trip(stream, &data).await;
        assert_eq!(back.len(), data.len());
        assert!(back == data, "echoed bytes differ");
        rig.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_names_resolve_on_the_edge() {
    within(async {
        let rig = Rig::start(TOKEN, None).await;
        // `localhost` may resolve to ::1 first; the edge skips addresses outside its
        // allowlist and dials the first allowed one.
        let stream = rig.connect("localhost", rig.echo.port()).await;
        assert_eq!(echo_round_trip(stream, b"by name").await, b"by name");
        rig.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_username_and_password_are_checked_locally() {
    within(async {
        let rig = Rig::start(TOKEN, Some("alice:secret")).await;
        let socks = rig.client.socks_addr().expect("a SOCKS5 listener");
        let port = rig.echo.port();
        let wrong = fetch::socks5_connect(socks, "127.0.0.1", port, Some(("alice", "guess"))).await;
        assert!(wrong.is_err(), "a wrong password is refused");
        let none = fetch::socks5_connect(socks, "127.0.0.1", port, None).await;
        assert!(none.is_err(), "no authentication is refused");
        let outcome = fetch::socks5_connect(socks, "127.0.0.1", port, Some(("alice", "secret")))
            .await
            .expect("handshake");
        let SocksOutcome::Connected(stream) = outcome else {
            panic!("refused: {outcome:?}");
        };
        assert_eq!(
            echo_round_trip(stream, b"authenticated").await,
            b"authenticated"
        );
        rig.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connect_carries_bytes() {
    within(async {
        let rig = Rig::start(TOKEN, None).await;
        let (head, stream) = fetch::http_connect(
            rig.client.http_addr().expect("an HTTP listener"),
            &rig.echo.to_string(),
        )
        .await
        .expect("CONNECT answered");
        assert_eq!(head.status, 200);
        let data = payload(200_000);
        let back = echo_round_trip(stream.expect("tunnel open"), &data).await;
        assert!(back == data, "echoed bytes differ");
        rig.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_forward_fetches_from_the_origin() {
    within(async {
        let rig = Rig::start(TOKEN, None).await;
        let host = rig.origin.addr().to_string();
        let size = 1024 * 1024 + 3;
        let mut stream = TcpStream::connect(rig.client.http_addr().expect("an HTTP listener"))
            .await
            .expect("connect");
        let received = fetch::get(&mut stream, &format!("http://{host}/bytes/{size}"), &host)
            .await
            .expect("response");
        assert_eq!(received.head.status, 200);
        assert_eq!(received.len, size);
        assert_eq!(hex(&received.digest), hex(&pattern_digest(size)));
        // One request per tunnel: the proxy closes after the response.
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.expect("EOF");
        assert!(rest.is_empty());
        rig.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_targets_are_refused_with_0x02_and_403() {
    within(async {
        let rig = Rig::start(TOKEN, None).await;
        let outcome = fetch::socks5_connect(
            rig.client.socks_addr().expect("a SOCKS5 listener"),
            FORBIDDEN,
            80,
            None,
        )
        .await
        .expect("handshake");
        assert!(
            matches!(outcome, SocksOutcome::Refused(0x02)),
            "{outcome:?}"
        );

        let (head, stream) = fetch::http_connect(
            rig.client.http_addr().expect("an HTTP listener"),
            &format!("{FORBIDDEN}:80"),
        )
        .await
        .expect("CONNECT answered");
        assert_eq!(head.status, 403);
        assert!(stream.is_none());
        let proxy_status = head.field("proxy-status").expect("Proxy-Status");
        assert!(
            proxy_status.contains("error=destination_ip_prohibited"),
            "{proxy_status}"
        );

        let mut stream = TcpStream::connect(rig.client.http_addr().expect("an HTTP listener"))
            .await
            .expect("connect");
        let received = fetch::get(&mut stream, &format!("http://{FORBIDDEN}/"), FORBIDDEN)
            .await
            .expect("response");
        assert_eq!(received.head.status, 403);
        rig.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_connection_refused() {
    within(async {
        let rig = Rig::start(TOKEN, None).await;
        let closed = {
            let listener = std::net::TcpListener::bind(loopback()).expect("bind");
            listener.local_addr().expect("address")
        };
        let outcome = fetch::socks5_connect(
            rig.client.socks_addr().expect("a SOCKS5 listener"),
            "127.0.0.1",
            closed.port(),
            None,
        )
        .await
        .expect("handshake");
        assert!(
            matches!(outcome, SocksOutcome::Refused(0x05)),
            "{outcome:?}"
        );
        let (head, _) = fetch::http_connect(
            rig.client.http_addr().expect("an HTTP listener"),
            &closed.to_string(),
        )
        .await
        .expect("CONNECT answered");
        assert_eq!(head.status, 502);
        let proxy_status = head.field("proxy-status").expect("Proxy-Status");
        assert!(
            proxy_status.contains("error=connection_refused"),
            "{proxy_status}"
        );
        rig.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_edge_token_is_not_allowed() {
    within(async {
        let rig = Rig::start("not-the-token", None).await;
        let outcome = fetch::socks5_connect(
            rig.client.socks_addr().expect("a SOCKS5 listener"),
            "127.0.0.1",
            rig.echo.port(),
            None,
        )
        .await
        .expect("handshake");
        assert!(
            matches!(outcome, SocksOutcome::Refused(0x02)),
            "{outcome:?}"
        );
        let (head, _) = fetch::http_connect(
            rig.client.http_addr().expect("an HTTP listener"),
            &rig.echo.to_string(),
        )
        .await
        .expect("CONNECT answered");
        // The edge's 403 is passed on; never a 407, which would make the local client
        // prompt for credentials it does not need.
        assert_eq!(head.status, 403);
        rig.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_reset_resets_the_client_connection() {
    within(async {
        let rig = Rig::start(TOKEN, None).await;
        // A target that reads a little, then resets the connection.
        let listener = TcpListener::bind(loopback()).await.expect("bind");
        let target = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut buf = [0; 5];
            stream.read_exact(&mut buf).await.expect("read");
            stream.set_zero_linger().expect("SO_LINGER 0");
            drop(stream);
        });
        let mut stream = rig.connect("127.0.0.1", target.port()).await;
        stream.write_all(b"hello").await.expect("write");
        let mut buf = Vec::new();
        let error = stream
            .read_to_end(&mut buf)
            .await
            .expect_err("the reset reaches the client");
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
        rig.stop().await;
    })
    .await;
}

/// A target like an HTTP server that answers before reading the whole request: it writes
/// its answer, half-closes, and closes with the rest of the request unread, which makes the
/// kernel reset the connection. The edge must not turn that reset into a loss of the answer
/// (it finishes the tunnel, then only stops the client's direction), and the client must
/// deliver the whole answer and EOF before it closes the application's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_a_reset_arrives_whole() {
    const ANSWER: usize = 1024 * 1024;
    within(async {
        let rig = Rig::start(TOKEN, None).await;
        let listener = TcpListener::bind(loopback()).await.expect("bind");
        let target = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut head = [0; 5];
            stream.read_exact(&mut head).await.expect("read the head");
            stream.write_all(&payload(ANSWER)).await.expect("answer");
            stream.shutdown().await.expect("half-close");
            // Long enough for the answer to leave this socket (it fits in the tunnel's
            // windows); then close with the upload unread: RST.
            tokio::time::sleep(Duration::from_millis(500)).await;
            drop(stream);
        });
        let stream = rig.connect("127.0.0.1", target.port()).await;
        let (mut rd, mut wr) = stream.into_split();
        // The application keeps uploading until it has read the answer; the target never
        // reads past the head.
        let upload = tokio::spawn(async move {
            wr.write_all(b"head:").await.expect("write the head");
            let body = payload(64 * 1024);
            while wr.write_all(&body).await.is_ok() {}
        });
        // Read only after the target's reset: the answer waits in the tunnel meanwhile.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut answer = Vec::new();
        rd.read_to_end(&mut answer)
            .await
            .expect("the answer ends with EOF, not a reset");
        upload.abort();
        assert_eq!(answer.len(), ANSWER, "the whole answer arrived");
        assert!(answer == payload(ANSWER), "the answer arrived intact");
        rig.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_resets_tunnels_still_open_after_the_drain() {
    within(async {
        let rig = Rig::start(TOKEN, None).await;
        let mut stream = rig.connect("127.0.0.1", rig.echo.port()).await;
        stream.write_all(b"ping").await.expect("write");
        let mut buf = [0; 4];
        stream.read_exact(&mut buf).await.expect("echo");
        // The tunnel stays open; the client's 200 ms drain runs out and resets it.
        let started = std::time::Instant::now();
        rig.client.shutdown().await.expect("client stops");
        assert!(started.elapsed() < Duration::from_secs(5));
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest).await;
        assert!(
            read.is_err(),
            "the open tunnel is reset at shutdown: {read:?}"
        );
        rig.edge.shutdown().await.expect("edge stops");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tunnel_does_not_hold_up_another() {
    within(async {
        let rig = Rig::start(TOKEN, None).await;
        let size = 8 * 1024 * 1024;
        let host = rig.origin.addr().to_string();
        let mut stalled = rig.connect("127.0.0.1", rig.origin.addr().port()).await;
        // Ask for 8 MiB and read none of it for now: the tunnel's buffers fill and flow
        // control stops the origin.
        stalled
            .write_all(format!("GET /bytes/{size} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .expect("request");
        tokio::time::sleep(Duration::from_millis(300)).await;

        let started = std::time::Instant::now();
        let stream = rig.connect("127.0.0.1", rig.echo.port()).await;
        let data = payload(256 * 1024);
        assert!(echo_round_trip(stream, &data).await == data);
        assert!(started.elapsed() < Duration::from_secs(5));

        // Nothing of the stalled transfer was lost meanwhile.
        let mut body = Vec::new();
        stalled.read_to_end(&mut body).await.expect("read the rest");
        let head_end = body
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("response head")
            + 4;
        assert_eq!(body.len() - head_end, size);
        rig.stop().await;
    })
    .await;
}

/// Each lane's count of tunnels opened so far.
async fn tunnels_per_lane(client: &RunningClient) -> Vec<u64> {
    client
        .lane_stats()
        .await
        .expect("the lanes run")
        .iter()
        .map(|stats| stats.tunnels_total)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_share_quiet_tunnels_and_carry_them_intact() {
    within(async {
        let rig = Rig::start_with_lanes(TOKEN, None, 2).await;
        for round in 0..4 {
            let data = payload(64 * 1024 + round);
            let stream = rig.connect("127.0.0.1", rig.echo.port()).await;
            assert!(
                echo_round_trip(stream, &data).await == data,
                "round {round}"
            );
        }
        let per_lane = tunnels_per_lane(&rig.client).await;
        assert_eq!(per_lane.iter().sum::<u64>(), 4, "{per_lane:?}");
        assert!(
            per_lane.iter().all(|&n| n >= 1),
            "a lane took none: {per_lane:?}"
        );
        rig.stop().await;
    })
    .await;
}

/// A small tunnel opened just after a download began keeps off the download's lane, even
/// though the other lane has just moved megabytes for exchanges that have ended: a lane
/// with no tunnel open forgets its bytes (`LanePicker::pick_counting`, fed by each lane
/// driver's count of open tunnels; docs/PERFORMANCE.md, "The lane picker counts open
/// tunnels"). Told only bytes, the picker put it beside the download however fast the
/// machine: the warm lane's megabytes outweigh the download's first kilobytes for about a
/// second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_tunnel_keeps_off_a_download_just_begun() {
    within(async {
        let rig = Rig::start_with_lanes(TOKEN, None, 2).await;
        // Exchanges on lane 0 (the first pick): 2 MiB echoed, then their tunnel ends.
        let data = payload(1024 * 1024);
        let stream = rig.connect("127.0.0.1", rig.echo.port()).await;
        assert!(
            echo_round_trip(stream, &data).await == data,
            "the exchanges"
        );
        loop {
            let stats = rig.client.lane_stats().await.expect("the lanes run");
            if stats.iter().all(|lane| lane.tunnels == 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A download begins (on lane 1: lane 0 was just picked), and at once a small tunnel.
        let mut download = rig.connect("127.0.0.1", rig.echo.port()).await;
        download
            .write_all(&payload(64 * 1024))
            .await
            .expect("the download's first bytes");
        let stream = rig.connect("127.0.0.1", rig.echo.port()).await;
        assert!(echo_round_trip(stream, b"small").await == b"small");
        assert_eq!(
            tunnels_per_lane(&rig.client).await,
            [2, 1],
            "the small tunnel went beside the download"
        );
        drop(download);
        rig.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lane_lands_on_the_edge_driver_its_number_names() {
    within(async {
        // Four lanes over three drivers: lanes 0 and 3 on driver 0, lane 1 on driver 1,
        // lane 2 on driver 2 (the kernel's 4-tuple hash alone would put them anywhere: it
        // gives this split one time in seven).
        let rig = Rig::start_with_drivers(TOKEN, None, 4, 3).await;
        for round in 0..8 {
            let data = payload(32 * 1024 + round);
            let stream = rig.connect("127.0.0.1", rig.echo.port()).await;
            assert!(
                echo_round_trip(stream, &data).await == data,
                "round {round}"
            );
        }
        let per_lane = tunnels_per_lane(&rig.client).await;
        assert!(
            per_lane.iter().all(|&n| n >= 1),
            "a lane took none: {per_lane:?}"
        );
        let drivers = rig.edge.driver_stats().await.expect("the drivers run");
        let connections: Vec<u64> = drivers.iter().map(|s| s.connections_total).collect();
        let tunnels: Vec<u64> = drivers.iter().map(|s| s.tunnels_total).collect();
        assert_eq!(
            connections,
            [2, 1, 1],
            "connections per driver (tunnels {tunnels:?})"
        );
        assert_eq!(tunnels.iter().sum::<u64>(), 8, "{tunnels:?}");
        // An upgrade in place serves one driver: refused, and the edge keeps serving.
        let refused = rig
            .edge
            .upgrade()
            .await
            .expect_err("one driver per upgrade");
        assert!(refused.to_string().contains("one driver"), "{refused}");
        let stream = rig.connect("127.0.0.1", rig.echo.port()).await;
        assert!(echo_round_trip(stream, b"after").await == b"after");
        rig.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_tunnels_avoid_the_lane_that_carries_a_bulk_transfer() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    within(async {
        let rig = Rig::start_with_lanes(TOKEN, None, 2).await;
        // A bulk tunnel: writes until told to stop, reads the echo back, counting it.
        let bulk = rig.connect("127.0.0.1", rig.echo.port()).await;
        let (echoed, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (mut rd, mut wr) = bulk.into_split();
        let writer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let chunk = payload(64 * 1024);
                while !stop.load(Ordering::Relaxed) {
                    wr.write_all(&chunk).await.expect("bulk write");
                }
                wr.shutdown().await.expect("bulk half-close");
            })
        };
        let reader = {
            let echoed = echoed.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                loop {
                    match rd.read(&mut buf).await.expect("bulk read") {
                        0 => return,
                        n => echoed.fetch_add(n as u64, Ordering::Relaxed),
                    };
                }
            })
        };
        // Each small tunnel opens right after the bulk moved another MiB: its lane is
        // busy then, whatever the machine's speed.
        for round in 0..3 {
            let mark = echoed.load(Ordering::Relaxed) + 1024 * 1024;
            while echoed.load(Ordering::Relaxed) < mark {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let stream = rig.connect("127.0.0.1", rig.echo.port()).await;
            let data = payload(1000 + round);
            assert!(
                echo_round_trip(stream, &data).await == data,
                "round {round}"
            );
        }
        let mut per_lane = tunnels_per_lane(&rig.client).await;
        per_lane.sort_unstable();
        assert_eq!(per_lane, [1, 3], "the small tunnels shared the bulk's lane");
        stop.store(true, Ordering::Relaxed);
        writer.await.expect("writer");
        reader.await.expect("reader");
        rig.stop().await;
    })
    .await;
}
