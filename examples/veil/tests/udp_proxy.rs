//! CONNECT-UDP in one runtime on loopback: an edge and a client, driven through the
//! client's `--udp-forward` socket and its SOCKS5 UDP ASSOCIATE relay with raw UDP and TCP
//! sockets — answers reach the right local peer, the relay accepts only its client's
//! datagrams, drops fragments, and ends with its control connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use veil_cli::config::{ClientSettings, ServerSettings, Trust, UdpForward};
use veil_cli::run::{RunningClient, RunningEdge};
use veil_engine::{QuicConfig, Secret, Token, TunnelTarget};
use veil_proto::socks5::{Target, decode_udp, encode_udp_header};

/// Every test ends well within this.
const DEADLINE: Duration = Duration::from_secs(30);
/// How long a datagram that must not come back is waited for.
const SILENCE: Duration = Duration::from_millis(700);
const TOKEN: &str = "test-token";

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A UDP echo server: answers every datagram to its sender, prefixed with `echo:`.
struct Echo {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
}

impl Echo {
    async fn start() -> Self {
        let socket = UdpSocket::bind(loopback()).await.expect("bind echo");
        let addr = socket.local_addr().expect("echo address");
        let received = Arc::new(AtomicUsize::new(0));
        let count = received.clone();
        tokio::spawn(async move {
            let mut buf = vec![0; 65_536];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                count.fetch_add(1, Ordering::Relaxed);
                let mut answer = b"echo:".to_vec();
                answer.extend_from_slice(buf.get(..len).unwrap_or_default());
                let _ = socket.send_to(&answer, from).await;
            }
        });
        Self { addr, received }
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }
}

struct Rig {
    echo: Echo,
    edge: RunningEdge,
    client: RunningClient,
}

impl Rig {
    async fn start() -> Self {
        Self::with_templates(None, None).await
    }

    /// A rig whose edge and client use these CONNECT-UDP path templates.
    async fn with_templates(edge_template: Option<&str>, client_template: Option<&str>) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let echo = Echo::start().await;
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
            udp_template: edge_template.map(str::to_owned),
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
            drivers: std::num::NonZeroUsize::MIN,
        })
        .expect("edge starts");
        let client = RunningClient::start(&ClientSettings {
            edge: edge.addr().to_string(),
            transport: veil_engine::Transport::H3,
            h3_retry: None,
            optimistic: false,
            lanes: std::num::NonZeroUsize::MIN,
            server_name: Some("localhost".to_owned()),
            trust: Trust::Pin(edge.fingerprint().expect("fingerprint")),
            token: Some(Secret::new(TOKEN)),
            certificate: None,
            socks: Some(loopback()),
            http: Some(loopback()),
            socks_user: None,
            udp_forwards: vec![UdpForward {
                local: loopback(),
                target: TunnelTarget::new(echo.addr.ip(), echo.addr.port()),
            }],
            udp_template: client_template.map(str::to_owned),
            drain: Duration::from_millis(200),
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
        Self { echo, edge, client }
    }

    async fn stop(self) {
        self.client.shutdown().await.expect("client stops cleanly");
        self.edge.shutdown().await.expect("edge stops cleanly");
    }
}

/// Sends `payload` until an answer comes (UDP may drop; the first datagram also waits for
/// the tunnel to open) and returns the answer.
async fn ask(socket: &UdpSocket, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0; 65_536];
    for _ in 0..5 {
        socket.send_to(payload, to).await.expect("send");
        if let Ok(received) =
            tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf)).await
        {
            let (len, _) = received.expect("recv");
            return buf.get(..len).unwrap_or_default().to_vec();
        }
    }
    panic!("no answer from {to}");
}

/// Whether anything arrives on `socket` within [`SILENCE`].
async fn hears_anything(socket: &UdpSocket) -> bool {
    let mut buf = [0; 2048];
    tokio::time::timeout(SILENCE, socket.recv_from(&mut buf))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_local_peer_of_a_forward_gets_its_own_answers() {
    tokio::time::timeout(DEADLINE, async {
        let rig = Rig::start().await;
        let forward = rig.client.udp_forward_addrs()[0];
        let alice = UdpSocket::bind(loopback()).await.expect("bind");
        let bob = UdpSocket::bind(loopback()).await.expect("bind");
        assert_eq!(ask(&alice, forward, b"alice 0").await, b"echo:alice 0");
        assert_eq!(ask(&bob, forward, b"bob 0").await, b"echo:bob 0");
        for i in 1..20 {
            let big = vec![u8::try_from(i).expect("small"); 50 * i];
            let mut expected = b"echo:".to_vec();
            expected.extend_from_slice(&big);
            assert_eq!(ask(&alice, forward, &big).await, expected);
            let line = format!("bob {i}");
            assert_eq!(
                ask(&bob, forward, line.as_bytes()).await,
                format!("echo:{line}").as_bytes()
            );
        }
        assert!(
            !hears_anything(&alice).await,
            "alice got someone else's answer"
        );
        rig.stop().await;
    })
    .await
    .expect("in time");
}

/// A SOCKS5 UDP association opened by hand: the control connection and the relay address.
async fn associate(socks: SocketAddr, from: SocketAddr) -> (TcpStream, SocketAddr) {
    let mut control = TcpStream::connect(socks).await.expect("connect");
    control.write_all(&[5, 1, 0]).await.expect("greeting");
    let mut choice = [0; 2];
    control.read_exact(&mut choice).await.expect("method");
    assert_eq!(choice, [5, 0]);
    // UDP ASSOCIATE, DST = the address the client will send from.
    let mut request = vec![5, 3, 0, 1];
    let std::net::IpAddr::V4(ip) = from.ip() else {
        panic!("IPv4 expected")
    };
    request.extend_from_slice(&ip.octets());
    request.extend_from_slice(&from.port().to_be_bytes());
    control.write_all(&request).await.expect("request");
    let mut reply = [0; 10];
    control.read_exact(&mut reply).await.expect("reply");
    assert_eq!(&reply[..4], &[5, 0, 0, 1], "success with an IPv4 BND");
    let relay = SocketAddr::from((
        [reply[4], reply[5], reply[6], reply[7]],
        u16::from_be_bytes([reply[8], reply[9]]),
    ));
    (control, relay)
}

/// A SOCKS5 UDP datagram to `target` (FRAG as given).
fn socks_datagram(target: SocketAddr, frag: u8, payload: &[u8]) -> Vec<u8> {
    let mut datagram = vec![0; 64];
    let len = encode_udp_header(&Target::Ip(target), &mut datagram).expect("header fits");
    datagram.truncate(len);
    datagram[2] = frag;
    datagram.extend_from_slice(payload);
    datagram
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socks5_udp_association_relays_for_its_client_only_and_ends_with_its_tcp() {
    tokio::time::timeout(DEADLINE, async {
        let rig = Rig::start().await;
        let echo = rig.echo.addr;
        let client = UdpSocket::bind(loopback()).await.expect("bind");
        let (control, relay) = associate(
            rig.client.socks_addr().expect("a SOCKS5 listener"),
            client.local_addr().expect("addr"),
        )
        .await;

        let answer = ask(&client, relay, &socks_datagram(echo, 0, b"hello")).await;
        let decoded = decode_udp(&answer).expect("a SOCKS5 UDP datagram");
        assert_eq!(
            decoded.target,
            Target::Ip(echo),
            "the answer names its source"
        );
        assert_eq!(decoded.payload, b"echo:hello");
        let before = rig.echo.received();

        // A fragment is dropped, never relayed.
        client
            .send_to(&socks_datagram(echo, 1, b"fragment"), relay)
            .await
            .expect("send");
        assert!(!hears_anything(&client).await, "a fragment was relayed");
        // Another sender on the same host is not the association's client.
        let stranger = UdpSocket::bind(loopback()).await.expect("bind");
        stranger
            .send_to(&socks_datagram(echo, 0, b"stranger"), relay)
            .await
            .expect("send");
        assert!(
            !hears_anything(&stranger).await,
            "a stranger's datagram was relayed"
        );
        assert_eq!(
            rig.echo.received(),
            before,
            "the echo server saw a dropped datagram"
        );

        // The association still works, then ends with its control connection.
        let answer = ask(&client, relay, &socks_datagram(echo, 0, b"again")).await;
        assert_eq!(
            decode_udp(&answer).expect("datagram").payload,
            b"echo:again"
        );
        drop(control);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let count = rig.echo.received();
        let _ = client
            .send_to(&socks_datagram(echo, 0, b"late"), relay)
            .await;
        assert!(
            !hears_anything(&client).await,
            "the relay outlived its association"
        );
        assert_eq!(rig.echo.received(), count);
        rig.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_udp_template_must_match_between_client_and_edge() {
    tokio::time::timeout(DEADLINE, async {
        const TEMPLATE: &str = "/udp/{target_host}/{target_port}/";
        let rig = Rig::with_templates(Some(TEMPLATE), Some(TEMPLATE)).await;
        let forward = rig.client.udp_forward_addrs()[0];
        let peer = UdpSocket::bind(loopback()).await.expect("bind");
        assert_eq!(ask(&peer, forward, b"custom").await, b"echo:custom");
        rig.stop().await;

        // A client on the default template asks for a path this edge does not serve.
        let rig = Rig::with_templates(Some(TEMPLATE), None).await;
        let forward = rig.client.udp_forward_addrs()[0];
        peer.send_to(b"default", forward).await.expect("send");
        // Long enough for the connection, the request and its refusal.
        let mut buf = [0; 64];
        let answer = tokio::time::timeout(Duration::from_secs(2), peer.recv_from(&mut buf)).await;
        assert!(answer.is_err(), "a mismatched template was served");
        assert_eq!(rig.echo.received(), 0);
        rig.stop().await;
    })
    .await
    .expect("in time");
}
