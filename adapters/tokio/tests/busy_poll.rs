//! `Options::busy_poll`: drivers that poll for a while after each message before they
//! sleep still carry every byte, and sleep once the window has passed.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use veil_engine::{ClientConfig, Config, EdgeConfig, TunnelTarget, Verify};
use veil_tokio::{Node, Options, client_bind_addr};

/// CPU time this process has used (user and system), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command's closing parenthesis: utime and stime are the 12th and
    // 13th of them, in clock ticks (100 per second on Linux).
    let after = stat.rsplit_once(')').expect("a command").1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .map(|&i| fields[i].parse::<u64>().expect("ticks"))
        .sum();
    Duration::from_millis(ticks * 10)
}

#[tokio::test(flavor = "current_thread")]
async fn polling_drivers_carry_round_trips_and_sleep_after_the_window() {
    let polling = Options {
        busy_poll: Some(Duration::from_millis(2)),
        ..Options::default()
    };
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let edge_config = EdgeConfig {
        egress_allow: vec!["127.0.0.0/8".to_owned()],
        ..EdgeConfig::default()
    };
    let edge = Node::start(Config::edge(edge_config), loopback, polling).expect("edge");
    let pin = edge.certificate_fingerprint().expect("fingerprint");
    let client_config = ClientConfig::new(edge.local_addr(), "localhost", Verify::Pin(pin));
    let client = Node::start(
        Config::client(client_config),
        client_bind_addr(edge.local_addr()),
        polling,
    )
    .expect("client");

    let echo = tokio::net::TcpListener::bind(loopback).await.expect("echo");
    let port = echo.local_addr().expect("port").port();
    tokio::spawn(async move {
        let (mut stream, _) = echo.accept().await.expect("accept");
        let mut buf = [0; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => stream.write_all(&buf[..n]).await.expect("echo"),
            }
        }
    });

    let target = TunnelTarget::new(std::net::IpAddr::from([127, 0, 0, 1]), port);
    let tunnel = tokio::time::timeout(Duration::from_secs(20), client.opener().open(target))
        .await
        .expect("in time")
        .expect("open");
    let (mut writer, mut reader) = tunnel.split();
    tokio::time::timeout(Duration::from_secs(20), async {
        for round in 0..200u32 {
            let message = Bytes::from(round.to_be_bytes().repeat(16));
            writer.send(message.clone()).await.expect("send");
            let mut answer = Vec::new();
            while answer.len() < message.len() {
                let bytes = reader.recv().await.expect("recv").expect("not the end");
                answer.extend_from_slice(&bytes);
            }
            assert_eq!(answer, message, "round {round}");
        }
    })
    .await
    .expect("200 round trips in time");

    // Past the window both drivers sleep: an idle second costs next to no CPU (polling
    // through it would cost about a second per driver).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = cpu_time();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = cpu_time().saturating_sub(before);
    assert!(
        idle < Duration::from_millis(300),
        "{idle:?} of CPU in an idle second"
    );
    drop((writer, reader, client, edge));
}
