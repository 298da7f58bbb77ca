//! Refusals end to end: what curl (and a raw SOCKS5 or HTTP client, for spellings curl
//! would normalise) is told when the edge will not or cannot open a tunnel, and that a
//! refused destination is never reached.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, ensure};
use support::{Canary, Client, Edge, Origin, TOKEN, TempDir, closed_port, curl, require_tool};

/// Bound of one refused request.
const REFUSAL: Duration = Duration::from_secs(30);

/// What curl reported for one request through a proxy: its exit code, its error line,
/// the proxy's response head (for HTTP) and the final status.
struct Attempt {
    exit: i32,
    stderr: String,
    head: String,
    http_code: String,
    connect_code: String,
}

impl Attempt {
    fn run(proxy: &[&str], url: &str) -> anyhow::Result<Self> {
        let output = curl(
            &[
                proxy,
                &[
                    "--dump-header",
                    "-",
                    "--output",
                    "/dev/null",
                    "--write-out",
                    "\n%{http_code} %{http_connect}",
                    url,
                ],
            ]
            .concat(),
            REFUSAL,
        )?;
        let (head, codes) = output
            .stdout
            .rsplit_once('\n')
            .context("curl printed no --write-out line")?;
        let (http_code, connect_code) = codes.split_once(' ').context("two codes")?;
        Ok(Self {
            exit: output.code(),
            stderr: output.stderr.trim().to_owned(),
            head: head.replace("\r\n", "\n"),
            http_code: http_code.to_owned(),
            connect_code: connect_code.to_owned(),
        })
    }

    /// The head has this status line and a `Proxy-Status` field with exactly `proxy_status`.
    fn has_refusal(&self, status_line: &str, proxy_status: &str) -> bool {
        let mut lines = self.head.lines();
        lines.next() == Some(status_line)
            && lines.any(|line| {
                line.split_once(':').is_some_and(|(name, value)| {
                    name.eq_ignore_ascii_case("proxy-status") && value.trim() == proxy_status
                })
            })
    }
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}, http_code {}, http_connect {}, stderr {:?}, head:\n{}",
            self.exit, self.http_code, self.connect_code, self.stderr, self.head
        )
    }
}

/// curl's error for a SOCKS5 reply code: exit 97 (`CURLE_PROXY`) and the code in its message,
/// e.g. `Can't complete SOCKS5 connection to 127.0.0.1. (5)`.
fn socks_refused_with(attempt: &Attempt, code: u8) -> bool {
    attempt.exit == 97
        && attempt.stderr.contains("SOCKS5")
        && attempt.stderr.ends_with(&format!("({code})"))
}

/// A SOCKS5 CONNECT to `host` (sent as a domain name, byte for byte) and `port`; returns
/// the REP byte of the server's reply (RFC 1928 §6).
fn raw_socks5_connect(proxy: SocketAddr, host: &str, port: u16) -> anyhow::Result<u8> {
    let mut stream = TcpStream::connect_timeout(&proxy, REFUSAL)?;
    stream.set_read_timeout(Some(REFUSAL))?;
    stream.set_write_timeout(Some(REFUSAL))?;
    // VER 5, one method: 0 (no authentication).
    stream.write_all(&[5, 1, 0])?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice)?;
    ensure!(choice == [5, 0], "the SOCKS5 server chose {choice:?}");
    // VER 5, CMD 1 (CONNECT), RSV, ATYP 3 (domain name), length, name, port.
    let mut request = vec![5, 1, 0, 3, u8::try_from(host.len())?];
    request.extend_from_slice(host.as_bytes());
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request)?;
    let mut reply = [0u8; 2];
    stream.read_exact(&mut reply)?;
    ensure!(reply[0] == 5, "not a SOCKS5 reply: {reply:?}");
    Ok(reply[1])
}

/// `CONNECT authority HTTP/1.1` written byte for byte; returns the response's status line.
fn raw_http_connect(proxy: SocketAddr, authority: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&proxy, REFUSAL)?;
    stream.set_read_timeout(Some(REFUSAL))?;
    stream.set_write_timeout(Some(REFUSAL))?;
    write!(
        stream,
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    )?;
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n") {
        stream.read_exact(&mut byte)?;
        response.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&response).trim_end().to_owned())
}

#[test]
fn a_closed_target_port_is_socks_reply_5_and_http_502_connection_refused() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("refused")?;
    let edge = Edge::start(
        dir.path(),
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let client = Client::of(dir.path(), &edge, TOKEN)?;
    let target = closed_port()?;
    let url = format!("http://{target}/");
    let socks = client.socks().to_string();
    let proxy = client.http_proxy();

    let attempt = Attempt::run(&["--socks5-hostname", &socks], &url)?;
    // X'05' connection refused.
    ensure!(socks_refused_with(&attempt, 5), "SOCKS5: {attempt}");
    ensure!(raw_socks5_connect(client.socks(), "127.0.0.1", target.port())? == 5);

    let refusal = ("HTTP/1.1 502 Bad Gateway", "veil;error=connection_refused");
    let attempt = Attempt::run(&["--proxy", &proxy, "--proxytunnel"], &url)?;
    ensure!(
        attempt.exit == 56
            && attempt.connect_code == "502"
            && attempt.has_refusal(refusal.0, refusal.1),
        "CONNECT: {attempt}"
    );
    let attempt = Attempt::run(&["--proxy", &proxy], &url)?;
    ensure!(
        attempt.exit == 0
            && attempt.http_code == "502"
            && attempt.has_refusal(refusal.0, refusal.1),
        "absolute form: {attempt}"
    );
    Ok(())
}

#[test]
fn a_wrong_token_is_http_403_and_socks_reply_2_and_no_token_is_a_local_502() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("token")?;
    let origin = Origin::start(dir.path())?;
    std::fs::write(origin.root().join("index.html"), "hello")?;
    let edge = Edge::start(
        dir.path(),
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let url = origin.url("index.html");

    let wrong = Client::of(dir.path(), &edge, "not-the-token")?;
    let socks = wrong.socks().to_string();
    let proxy = wrong.http_proxy();
    let attempt = Attempt::run(&["--socks5-hostname", &socks], &url)?;
    // X'02' connection not allowed by ruleset.
    ensure!(
        socks_refused_with(&attempt, 2),
        "SOCKS5, wrong token: {attempt}"
    );
    let denied = ("HTTP/1.1 403 Forbidden", "veil;error=http_request_denied");
    let attempt = Attempt::run(&["--proxy", &proxy, "--proxytunnel"], &url)?;
    ensure!(
        attempt.exit == 56
            && attempt.connect_code == "403"
            && attempt.has_refusal(denied.0, denied.1),
        "CONNECT, wrong token: {attempt}"
    );
    let attempt = Attempt::run(&["--proxy", &proxy], &url)?;
    ensure!(
        attempt.http_code == "403" && attempt.has_refusal(denied.0, denied.1),
        "absolute form, wrong token: {attempt}"
    );

    // No token: the edge answers 407 with its Proxy-Status, which the local client cannot
    // fix by authenticating to the local proxy: 502, passing the edge's member on.
    let missing = Client::start(dir.path(), edge.addr(), &["--pin", edge.pin()?])?;
    let proxy = missing.http_proxy();
    let attempt = Attempt::run(&["--proxy", &proxy, "--proxytunnel"], &url)?;
    ensure!(
        attempt.connect_code == "502"
            && attempt.has_refusal("HTTP/1.1 502 Bad Gateway", "veil;error=http_request_denied"),
        "CONNECT, no token: {attempt}"
    );
    ensure!(
        origin.access_log().is_empty(),
        "a request reached the origin without a valid token:\n{}",
        origin.access_log()
    );

    // The right token gets through the same edge.
    let right = Client::of(dir.path(), &edge, TOKEN)?;
    let proxy = right.http_proxy();
    let attempt = Attempt::run(&["--proxy", &proxy, "--proxytunnel"], &url)?;
    ensure!(
        attempt.exit == 0 && attempt.http_code == "200",
        "right token: {attempt}"
    );
    Ok(())
}

/// An edge with the default egress policy must refuse loopback and cloud-metadata targets
/// in every spelling, through every path, without ever connecting to them.
#[test]
fn ssrf_spellings_of_loopback_and_metadata_are_refused_and_never_reached() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("ssrf")?;
    let mut canary = Canary::start()?;
    let port = canary.port()?;
    let edge = Edge::start(dir.path(), &["--token", TOKEN])?;
    let client = Client::of(dir.path(), &edge, TOKEN)?;
    let socks = client.socks().to_string();
    let proxy = client.http_proxy();
    let prohibited = (
        "HTTP/1.1 403 Forbidden",
        "veil;error=destination_ip_prohibited",
    );
    // Each spelling, with what a raw SOCKS5 client (sending it as a domain name) and a raw
    // HTTP CONNECT get: 2 / 403 when the edge refuses the address; 4 / 400 when the local
    // client already refuses a numeric name that is not an address in standard form.
    let cases = [
        ("127.0.0.1", port, 2, "403 Forbidden"),
        ("2130706433", port, 4, "400 Bad Request"),
        ("0x7f.1", port, 4, "400 Bad Request"),
        ("[::ffff:127.0.0.1]", port, 2, "403 Forbidden"),
        ("localhost", port, 2, "403 Forbidden"),
        // Connecting to the unspecified address reaches the host's own listeners.
        ("0.0.0.0", port, 2, "403 Forbidden"),
        ("169.254.169.254", 80, 2, "403 Forbidden"),
    ];
    for (host, port, raw_socks_reply, raw_connect_status) in cases {
        let url = format!("http://{host}:{port}/");
        // curl turns 2130706433 and 0x7f.1 into 127.0.0.1 itself; the raw clients below
        // send them as written.
        let attempt = Attempt::run(&["--socks5-hostname", &socks], &url)?;
        ensure!(socks_refused_with(&attempt, 2), "SOCKS5 {host}: {attempt}");
        let attempt = Attempt::run(&["--proxy", &proxy, "--proxytunnel"], &url)?;
        ensure!(
            attempt.connect_code == "403" && attempt.has_refusal(prohibited.0, prohibited.1),
            "CONNECT {host}: {attempt}"
        );
        let attempt = Attempt::run(&["--proxy", &proxy], &url)?;
        ensure!(
            attempt.http_code == "403" && attempt.has_refusal(prohibited.0, prohibited.1),
            "absolute form {host}: {attempt}"
        );

        let unbracketed = host.trim_start_matches('[').trim_end_matches(']');
        let reply = raw_socks5_connect(client.socks(), unbracketed, port)?;
        ensure!(
            reply == raw_socks_reply,
            "raw SOCKS5 {host}: reply {reply}, not {raw_socks_reply}"
        );
        let status = raw_http_connect(client.http(), &format!("{host}:{port}"))?;
        ensure!(
            status == format!("HTTP/1.1 {raw_connect_status}"),
            "raw CONNECT {host}: {status}"
        );
    }
    ensure!(
        canary.reached()? == 0,
        "a refused spelling reached the loopback listener"
    );
    Ok(())
}

/// An optimistic client answers before it asks for the tunnel, so what it cannot even send
/// (here: its edge never answers, and the request waits out the engine's 10 s pending
/// deadline) resets the application's connection after a SOCKS5 success and an HTTP 200,
/// as an edge's refusal does; a client that is not optimistic answers with the refusal.
#[test]
fn an_optimistic_client_resets_what_it_could_not_send() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("optimistic-unsent")?;
    // A UDP port that nobody answers on.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let pin = format!("sha256:{}", "00".repeat(32));
    let client = |extra: &[&str]| {
        let args = [&["--pin", pin.as_str(), "--transport", "h3"][..], extra].concat();
        Client::start(dir.path(), silent.local_addr()?, &args)
    };
    let (optimistic, plain) = (client(&["--optimistic"])?, client(&[])?);
    let target = format!("http://{}/", closed_port()?);
    let reset = |exit: i32| matches!(exit, 52 | 55 | 56);
    let socks = optimistic.socks().to_string();
    let proxy = optimistic.http_proxy();
    let plain_socks = plain.socks().to_string();
    // The three wait out the deadline side by side.
    let (by_socks, by_connect, by_plain) = std::thread::scope(|scope| {
        let by_socks = scope.spawn(|| Attempt::run(&["--socks5-hostname", &socks], &target));
        let by_connect =
            scope.spawn(|| Attempt::run(&["--proxy", &proxy, "--proxytunnel"], &target));
        let by_plain = scope.spawn(|| Attempt::run(&["--socks5-hostname", &plain_socks], &target));
        let join = |handle: std::thread::ScopedJoinHandle<'_, anyhow::Result<Attempt>>| {
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("curl thread panicked"))?
        };
        anyhow::Ok((join(by_socks)?, join(by_connect)?, join(by_plain)?))
    })?;
    ensure!(reset(by_socks.exit), "optimistic SOCKS5: {by_socks}");
    ensure!(
        reset(by_connect.exit) && by_connect.connect_code == "200",
        "optimistic CONNECT: {by_connect}"
    );
    // curl 97: the SOCKS5 proxy answered with a failure code.
    ensure!(by_plain.exit == 97, "SOCKS5: {by_plain}");
    Ok(())
}

/// `veil client --optimistic`: the local answer does not wait for the edge. What the edge
/// accepts arrives whole through both fronts; what it refuses (here a closed port) is
/// answered as opened and then reset, not with a SOCKS5 code or an HTTP status
/// (docs/CONFIG.md).
#[test]
fn an_optimistic_client_fetches_whole_and_resets_what_the_edge_refuses() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("optimistic")?;
    let origin = Origin::start(dir.path())?;
    let body = "optimistic ".repeat(20_000);
    std::fs::write(origin.root().join("index.html"), &body)?;
    let edge = Edge::start(
        dir.path(),
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let client = Client::start(
        dir.path(),
        edge.addr(),
        &["--pin", edge.pin()?, "--token", TOKEN, "--optimistic"],
    )?;
    let socks = client.socks().to_string();
    let proxy = client.http_proxy();
    let url = origin.url("index.html");
    let fronts: [&[&str]; 3] = [
        &["--socks5-hostname", &socks],
        &["--proxy", &proxy, "--proxytunnel"],
        &["--proxy", &proxy],
    ];
    for front in fronts {
        let output = curl(
            &[front, &["--silent", "--show-error", &url]].concat(),
            REFUSAL,
        )?;
        ensure!(
            output.code() == 0 && output.stdout == body,
            "{front:?}: exit {}, {} of {} bytes, {}",
            output.code(),
            output.stdout.len(),
            body.len(),
            output.stderr
        );
    }

    // curl: 52 empty reply, 55 send failure, 56 receive failure (reset).
    let reset = |exit: i32| matches!(exit, 52 | 55 | 56);
    let closed = format!("http://{}/", closed_port()?);
    let attempt = Attempt::run(&["--socks5-hostname", &socks], &closed)?;
    ensure!(reset(attempt.exit), "SOCKS5: {attempt}");
    let attempt = Attempt::run(&["--proxy", &proxy, "--proxytunnel"], &closed)?;
    ensure!(
        reset(attempt.exit) && attempt.connect_code == "200",
        "CONNECT: {attempt}"
    );
    Ok(())
}
