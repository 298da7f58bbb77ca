//! `veil bench floor` (hidden; started by `veil bench tcp --paths floor`): the floor of a
//! TCP proxy built on quiche, to weigh veil's round trips against.
//!
//! Two processes, as every proxy in the bench has: a local side that speaks just enough
//! SOCKS5 to take a tunnel's target, and a far side that dials it. Between them one QUIC
//! connection (quiche, veil's QUIC settings and UDP I/O, see [`super::raw`]) carries each
//! tunnel on a stream of its own, its first bytes the target, then the tunnel's bytes,
//! as shadowsocks-rust carries its target at the head of each TCP connection. The local
//! side answers the SOCKS5 request at once, as shadowsocks-rust's `sslocal` does and veil's
//! `--optimistic` client.
//!
//! Everything a side does runs in one loop on one thread: UDP, the tunnels' TCP sockets,
//! quiche's timer. No HTTP/3, no engine, no channel, no task hands anything to another,
//! no policy, no refusal, no metrics. What veil takes beyond this floor is what its own
//! design costs; what this floor takes beyond shadowsocks-rust is what a proxy on quiche
//! pays for QUIC on this machine, however it is built.
//!
//! A bench fixture, not a proxy: the far side dials loopback targets only, and a tunnel
//! that fails is dropped without a word.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, bail, ensure};
use clap::{Args, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use veil_engine::QuicConfig;
use veil_tokio::udp::{MAX_GSO_PAYLOAD, RecvBufs, UdpIo};

use super::raw::{Side, accept, connect, feed, quiche_config, send_all, sleep_until};

/// One read from a TCP leg or from a stream.
const READ_LEN: usize = 64 * 1024;
/// Bytes a tunnel holds for the far end before it stops reading (quiche's flow control,
/// or TCP's, then holds the sender).
const HELD_MAX: usize = 256 * 1024;
/// The longest target header (`[length][address as text]`).
const HEADER_MAX: usize = 1 + u8::MAX as usize;

/// Which side of the floor a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FloorSide {
    /// The SOCKS5 listener and QUIC client.
    Local,
    /// The QUIC server that dials the targets.
    Far,
}

/// Flags of `veil bench floor`.
#[derive(Debug, Clone, Args)]
pub struct FloorArgs {
    /// Which side to run.
    #[arg(long)]
    pub side: FloorSide,
    /// The far side's UDP address (the local side's QUIC peer).
    #[arg(long, required_if_eq("side", "local"))]
    pub far: Option<SocketAddr>,
}

/// Runs one side until the process is killed. The far side prints `floor far listening on
/// ADDR` once its socket is bound; the local side `floor local socks on ADDR` once its
/// connection is established.
pub(super) fn run(args: &FloorArgs, quic: &QuicConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.side {
        FloorSide::Far => {
            let side = Side::server(quic, quiche_config)?;
            println!("floor far listening on {}", side.local_addr()?);
            runtime.block_on(async move {
                let (udp, mut config) = side.open()?;
                far(&udp, &mut config).await
            })
        }
        FloorSide::Local => {
            let far_addr = args.far.context("--far is required with --side local")?;
            let side = Side::client(quic, quiche_config)?;
            runtime.block_on(async move {
                let (udp, mut config) = side.open()?;
                let conn = connect(&udp, far_addr, &mut config)?;
                Box::pin(local(conn, &udp)).await
            })
        }
    }
}

/// The local side: accepts SOCKS5 tunnels once the connection is up, each on a new stream.
async fn local(mut conn: quiche::Connection, udp: &UdpIo) -> anyhow::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let mut announced = false;
    let mut io = Io::new();
    let mut tunnels: Vec<Tunnel> = Vec::new();
    let mut next_stream = 0;
    loop {
        io.flush(&mut conn, &mut tunnels);
        send_all(&mut conn, udp, &mut io.out).await?;
        ensure!(!conn.is_closed(), "the floor's connection closed");
        if conn.is_established() && !announced {
            println!("floor local socks on {}", listener.local_addr()?);
            announced = true;
        }
        let timeout = conn.timeout_instant();
        tokio::select! {
            count = udp.recv(&mut io.bufs) => feed(&mut conn, &mut io.bufs, count?, udp.local_addr()),
            () = sleep_until(timeout) => conn.on_timeout(),
            accepted = listener.accept(), if announced => {
                let (mut tcp, _) = accepted?;
                // A client that fails its handshake costs only its own tunnel.
                if let Ok(target) = socks5_accept(&mut tcp).await {
                    let _ = tcp.set_nodelay(true);
                    let mut tunnel = Tunnel::open(next_stream, tcp);
                    tunnel.up.bytes.extend_from_slice(&header(target)?);
                    tunnel.up.header_held = true;
                    tunnels.push(tunnel);
                    next_stream += 4;
                }
            }
            (at, ready) = ready(&mut tunnels) => io.on_ready(&mut tunnels, at, ready),
        }
    }
}

/// The far side: accepts one connection; each new stream names its target, which it dials.
async fn far(udp: &UdpIo, config: &mut quiche::Config) -> anyhow::Result<()> {
    let mut conn: Option<quiche::Connection> = None;
    let mut io = Io::new();
    let mut tunnels: Vec<Tunnel> = Vec::new();
    loop {
        if let Some(conn) = conn.as_mut() {
            for stream in conn.readable() {
                if !tunnels.iter().any(|tunnel| tunnel.stream == stream) {
                    tunnels.push(Tunnel::awaiting_header(stream));
                }
            }
            io.flush(conn, &mut tunnels);
            send_all(conn, udp, &mut io.out).await?;
        }
        let timeout = conn.as_ref().and_then(quiche::Connection::timeout_instant);
        tokio::select! {
            count = udp.recv(&mut io.bufs) => {
                let count = count?;
                if conn.is_none() {
                    conn = accept(udp, config, &mut io.bufs, count)?;
                }
                if let Some(conn) = conn.as_mut() {
                    feed(conn, &mut io.bufs, count, udp.local_addr());
                }
            }
            () = sleep_until(timeout) => {
                if let Some(conn) = conn.as_mut() {
                    conn.on_timeout();
                }
            }
            (at, ready) = ready(&mut tunnels) => io.on_ready(&mut tunnels, at, ready),
        }
        if conn.as_ref().is_some_and(quiche::Connection::is_closed) {
            // The local side went away: wait for the next one.
            conn = None;
            tunnels.clear();
        }
    }
}

/// The buffers a side's loop reuses.
struct Io {
    out: Vec<u8>,
    bufs: RecvBufs,
    read: Vec<u8>,
}

impl Io {
    fn new() -> Self {
        Self {
            out: vec![0; MAX_GSO_PAYLOAD],
            bufs: RecvBufs::new(),
            read: vec![0; READ_LEN],
        }
    }

    /// Moves what can move between each tunnel's stream and its TCP leg, and drops the
    /// tunnels that are done.
    fn flush(&mut self, conn: &mut quiche::Connection, tunnels: &mut Vec<Tunnel>) {
        for tunnel in tunnels.iter_mut() {
            tunnel.write_stream(conn);
            // A read that stopped for room goes on once TCP took the bytes: nothing else
            // would wake this side for them (the peer waits for the window they free).
            while tunnel.read_stream(conn, &mut self.read) {
                tunnel.write_tcp();
                if !tunnel.down.bytes.is_empty() {
                    break;
                }
            }
            tunnel.write_tcp();
        }
        // A failed tunnel's stream is reset and stopped, so that the other side ends it too.
        for tunnel in tunnels
            .iter()
            .filter(|tunnel| matches!(tunnel.leg, Leg::Gone))
        {
            let _ = conn.stream_shutdown(tunnel.stream, quiche::Shutdown::Read, 0);
            let _ = conn.stream_shutdown(tunnel.stream, quiche::Shutdown::Write, 0);
        }
        tunnels.retain(|tunnel| !tunnel.done());
    }

    /// What a ready TCP leg (or a finished dial) brings.
    fn on_ready(&mut self, tunnels: &mut [Tunnel], at: usize, ready: Ready) {
        let Some(tunnel) = tunnels.get_mut(at) else {
            return;
        };
        match ready {
            Ready::Dialled(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                tunnel.leg = Leg::Open(tcp);
            }
            Ready::Dialled(Err(_)) => tunnel.fail("dial failed"),
            Ready::Failed => tunnel.fail("TCP leg failed"),
            Ready::Readable => tunnel.read_tcp(&mut self.read),
            Ready::Writable => tunnel.write_tcp(),
        }
    }
}

/// A tunnel's TCP leg.
enum Leg {
    /// The far side has not read the target yet.
    AwaitingHeader,
    /// The far side is dialling the target.
    Dialling(Pin<Box<dyn Future<Output = std::io::Result<TcpStream>>>>),
    Open(TcpStream),
    /// Failed or reset: the tunnel is being dropped.
    Gone,
}

/// One tunnel: a stream and a TCP connection, and the bytes on their way between them.
struct Tunnel {
    stream: u64,
    leg: Leg,
    up: Up,
    down: Down,
}

/// From TCP to the stream.
#[derive(Default)]
struct Up {
    /// Bytes read from TCP, not yet taken by quiche.
    bytes: Vec<u8>,
    /// TCP's read side ended: a FIN is owed on the stream.
    eof: bool,
    fin_sent: bool,
    /// The local side holds the target header until the first bytes (or the end) come from
    /// TCP, so that both leave in one packet, as shadowsocks-rust sends them.
    header_held: bool,
}

/// From the stream to TCP.
#[derive(Default)]
struct Down {
    /// Bytes read from the stream, not yet written to TCP.
    bytes: Vec<u8>,
    /// The stream's FIN was read: TCP's write side shuts once `bytes` are written.
    fin: bool,
    shut: bool,
}

impl Tunnel {
    fn open(stream: u64, tcp: TcpStream) -> Self {
        Self::with_leg(stream, Leg::Open(tcp))
    }

    fn awaiting_header(stream: u64) -> Self {
        Self::with_leg(stream, Leg::AwaitingHeader)
    }

    fn with_leg(stream: u64, leg: Leg) -> Self {
        Self {
            stream,
            leg,
            up: Up::default(),
            down: Down::default(),
        }
    }

    fn done(&self) -> bool {
        matches!(self.leg, Leg::Gone) || (self.up.fin_sent && self.down.shut)
    }

    fn fail(&mut self, why: &str) {
        tracing::debug!(stream = self.stream, why, "floor: tunnel dropped");
        self.leg = Leg::Gone;
    }

    /// Reads the stream while the tunnel has room; on the far side, takes the target
    /// from its head and starts the dial. Returns whether it stopped for lack of room on
    /// an open leg, with more perhaps to read.
    fn read_stream(&mut self, conn: &mut quiche::Connection, read: &mut [u8]) -> bool {
        if matches!(self.leg, Leg::Gone) {
            return false;
        }
        let mut stopped_for_room = false;
        loop {
            if self.down.fin {
                break;
            }
            if self.down.bytes.len() >= HELD_MAX {
                stopped_for_room = true;
                break;
            }
            match conn.stream_recv(self.stream, read) {
                Ok((len, fin)) => {
                    self.down
                        .bytes
                        .extend_from_slice(read.get(..len).unwrap_or_default());
                    self.down.fin = fin;
                }
                Err(quiche::Error::Done) => break,
                // The local side's stream exists once its first bytes went to quiche; after
                // that, a stream quiche no longer knows was reset and stopped by the far side.
                Err(quiche::Error::InvalidStreamState(_)) if self.up.header_held => break,
                Err(_) => {
                    self.fail("stream read failed");
                    return false;
                }
            }
        }
        if matches!(self.leg, Leg::AwaitingHeader) {
            match parse_header(&self.down.bytes) {
                Ok(Some((target, used))) => {
                    self.down.bytes.drain(..used);
                    self.leg = Leg::Dialling(Box::pin(TcpStream::connect(target)));
                }
                Ok(None) if self.down.fin || self.down.bytes.len() >= HEADER_MAX => {
                    self.fail("no target header");
                }
                Ok(None) => {}
                // This tunnel's, not the process's: the others go on.
                Err(e) => {
                    tracing::warn!(error = %e, "floor: tunnel refused");
                    self.fail("target refused");
                }
            }
        }
        stopped_for_room && matches!(self.leg, Leg::Open(_))
    }

    /// Writes what the stream brought to TCP, then shuts TCP's write side after the
    /// stream's FIN.
    fn write_tcp(&mut self) {
        let Leg::Open(tcp) = &self.leg else { return };
        while !self.down.bytes.is_empty() {
            match tcp.try_write(&self.down.bytes) {
                Ok(written) => drop(self.down.bytes.drain(..written)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.fail("TCP write failed");
                    return;
                }
            }
        }
        if self.down.fin && !self.down.shut {
            let _ = socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Write);
            self.down.shut = true;
        }
    }

    /// Hands what TCP brought to quiche, with the FIN once TCP's read side has ended.
    fn write_stream(&mut self, conn: &mut quiche::Connection) {
        if self.up.fin_sent || self.up.header_held || matches!(self.leg, Leg::Gone) {
            return;
        }
        match conn.stream_send(self.stream, &self.up.bytes, self.up.eof) {
            Ok(taken) => {
                self.up.bytes.drain(..taken);
                self.up.fin_sent = self.up.eof && self.up.bytes.is_empty();
            }
            Err(quiche::Error::Done) => {}
            Err(_) => self.fail("stream write failed"),
        }
    }

    /// One read from TCP (only when quiche has taken the last).
    fn read_tcp(&mut self, read: &mut [u8]) {
        let Leg::Open(tcp) = &self.leg else { return };
        self.up.header_held = false;
        match tcp.try_read(read) {
            Ok(0) => self.up.eof = true,
            Ok(len) => self
                .up
                .bytes
                .extend_from_slice(read.get(..len).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => self.fail("TCP read failed"),
        }
    }
}

/// What woke a tunnel.
enum Ready {
    Dialled(std::io::Result<TcpStream>),
    Readable,
    Writable,
    Failed,
}

/// The first tunnel with something to do: a dial that ended, a TCP leg with bytes to read
/// (while quiche has taken all it read before), or with room for bytes it owes.
fn ready(tunnels: &mut [Tunnel]) -> impl Future<Output = (usize, Ready)> + '_ {
    std::future::poll_fn(move |cx: &mut TaskContext<'_>| {
        for (at, tunnel) in tunnels.iter_mut().enumerate() {
            if let Some(ready) = poll_tunnel(tunnel, cx) {
                return Poll::Ready((at, ready));
            }
        }
        Poll::Pending
    })
}

fn poll_tunnel(tunnel: &mut Tunnel, cx: &mut TaskContext<'_>) -> Option<Ready> {
    match &mut tunnel.leg {
        Leg::Dialling(dial) => match dial.as_mut().poll(cx) {
            Poll::Ready(dialled) => Some(Ready::Dialled(dialled)),
            Poll::Pending => None,
        },
        Leg::Open(tcp) => {
            if (tunnel.up.bytes.is_empty() || tunnel.up.header_held) && !tunnel.up.eof {
                match tcp.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => return Some(Ready::Readable),
                    Poll::Ready(Err(_)) => return Some(Ready::Failed),
                    Poll::Pending => {}
                }
            }
            if !tunnel.down.bytes.is_empty() {
                match tcp.poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => return Some(Ready::Writable),
                    Poll::Ready(Err(_)) => return Some(Ready::Failed),
                    Poll::Pending => {}
                }
            }
            None
        }
        Leg::AwaitingHeader | Leg::Gone => None,
    }
}

/// A tunnel's first bytes on its stream: the target's length, then the target as text.
fn header(target: SocketAddr) -> anyhow::Result<Vec<u8>> {
    let text = target.to_string();
    let mut header = vec![u8::try_from(text.len())?];
    header.extend_from_slice(text.as_bytes());
    Ok(header)
}

/// The target at the head of `bytes` and the bytes it took, once all of it has come. A
/// target off loopback is an error: the floor is a bench fixture.
fn parse_header(bytes: &[u8]) -> anyhow::Result<Option<(SocketAddr, usize)>> {
    let Some(&len) = bytes.first() else {
        return Ok(None);
    };
    let end = 1 + usize::from(len);
    let Some(text) = bytes.get(1..end) else {
        return Ok(None);
    };
    let target: SocketAddr = std::str::from_utf8(text)?
        .parse()
        .context("the floor's target header")?;
    ensure!(
        target.ip().is_loopback(),
        "the floor dials loopback only, not {target}"
    );
    Ok(Some((target, end)))
}

/// The SOCKS5 server side of a handshake without authentication, for a CONNECT to an IP
/// address: answers success at once and returns the target.
//# The SOCKS request is formed as follows: VER | CMD | RSV | ATYP | DST.ADDR | DST.PORT
//# (RFC 1928, section 4)
async fn socks5_accept(tcp: &mut TcpStream) -> anyhow::Result<SocketAddr> {
    let mut greeting = [0u8; 2];
    tcp.read_exact(&mut greeting).await?;
    ensure!(greeting[0] == 5, "not SOCKS5");
    let mut methods = vec![0u8; usize::from(greeting[1])];
    tcp.read_exact(&mut methods).await?;
    ensure!(
        methods.contains(&0),
        "no method without authentication offered"
    );
    tcp.write_all(&[5, 0]).await?;
    let mut request = [0u8; 4];
    tcp.read_exact(&mut request).await?;
    ensure!(request[..3] == [5, 1, 0], "not a SOCKS5 CONNECT");
    let ip: std::net::IpAddr = match request[3] {
        1 => {
            let mut octets = [0u8; 4];
            tcp.read_exact(&mut octets).await?;
            octets.into()
        }
        4 => {
            let mut octets = [0u8; 16];
            tcp.read_exact(&mut octets).await?;
            octets.into()
        }
        other => bail!("the floor takes IP addresses only, not address type {other}"),
    };
    let port = tcp.read_u16().await?;
    tcp.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_header_reads_back_once_whole() {
        let target = SocketAddr::from(([127, 0, 0, 1], 4433));
        let mut bytes = header(target).unwrap();
        bytes.extend_from_slice(b"payload");
        let whole = bytes.len() - b"payload".len();
        assert_eq!(parse_header(&bytes).unwrap(), Some((target, whole)));
        assert_eq!(parse_header(&bytes[..whole - 1]).unwrap(), None);
        assert_eq!(parse_header(&[]).unwrap(), None);
    }

    #[test]
    fn a_target_off_loopback_or_garbled_is_refused() {
        let far = header(SocketAddr::from(([192, 0, 2, 1], 80))).unwrap();
        assert!(parse_header(&far).is_err());
        assert!(parse_header(&[3, b'x', b'y', b'z']).is_err());
    }
}
