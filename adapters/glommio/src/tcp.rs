//! The edge's TCP on-ramp on one core: its listening socket (one of the edge's
//! `SO_REUSEPORT` group, so the kernel spreads connections over the cores) and, per
//! accepted connection, a reader and a writer task that move bytes between the socket and
//! the core's engine. Everything else (TLS, HTTP/2, the requests and their tunnels) is the
//! engine's (`Endpoint::accept_tcp` and the calls after it). A connection stays on the core
//! that accepted it: nothing is forwarded.
//!
//! Bounds: a reader holds one [`CHUNK`] buffer and hands each read to the engine before
//! reading again, and waits while the engine wants no input (`Endpoint::tcp_wants_input`,
//! HTTP/1.1's backpressure) until a flush finds it wants more; a writer's queue holds [`WRITE_QUEUE`] chunks, and bytes it has no room
//! for stay in the engine, whose own bound then holds tunnels back (the socket is the
//! backpressure). After the engine lost a connection, its writer has
//! [`TCP_LAST_WRITES`] to write what it holds, then the socket is closed regardless.

use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use glommio::{GlommioError, Task};
use veil_engine::{ConnectionHandle, Endpoint, TCP_LAST_WRITES};

use crate::signal::Signal;

/// Bytes read from a socket at once, and the most `Endpoint::tcp_transmit` gives at once.
const CHUNK: usize = 64 * 1024;
/// Chunks waiting for a writer, at most.
const WRITE_QUEUE: usize = 8;
/// Pause after a failed accept (out of descriptors, say) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// What the TCP tasks of a core may do with its engine. Every call that feeds the engine
/// also wakes the core's driver, which flushes.
pub(crate) trait TcpPort {
    /// `Endpoint::accept_tcp`: the connection's handle, or `None` if the engine turned it
    /// away (the socket is then closed).
    fn accept(&self, peer: SocketAddr, local: SocketAddr) -> Option<ConnectionHandle>;

    /// Takes the tasks of a connection the engine accepted into the core's table.
    fn adopt(&self, connection: ConnectionHandle, conn: TcpConnection);

    /// `Endpoint::tcp_input`: bytes read from the socket. Returns
    /// `Endpoint::tcp_wants_input`: whether the reader may read on now.
    fn input(&self, connection: ConnectionHandle, bytes: &[u8]) -> bool;

    /// `Endpoint::tcp_closed`: the socket ended (EOF, or a read or write failed).
    fn closed(&self, connection: ConnectionHandle);

    /// The writer of a connection that was full wrote a chunk: pull more from the engine.
    fn drained(&self, connection: ConnectionHandle);
}

/// The engine's side of the on-ramp's output, as a flush sees it: the core's endpoint (a
/// stand-in in tests).
pub(crate) trait TcpSource {
    /// `Endpoint::poll_tcp_ready`.
    fn poll_tcp_ready(&mut self) -> Option<ConnectionHandle>;
    /// `Endpoint::tcp_transmit`.
    fn tcp_transmit(&mut self, connection: ConnectionHandle, out: &mut [u8]) -> usize;
    /// `Endpoint::tcp_wants_input`.
    fn tcp_wants_input(&self, connection: ConnectionHandle) -> bool;
}

impl TcpSource for Endpoint {
    fn poll_tcp_ready(&mut self) -> Option<ConnectionHandle> {
        Endpoint::poll_tcp_ready(self)
    }

    fn tcp_transmit(&mut self, connection: ConnectionHandle, out: &mut [u8]) -> usize {
        Endpoint::tcp_transmit(self, Instant::now(), connection, out)
    }

    fn tcp_wants_input(&self, connection: ConnectionHandle) -> bool {
        Endpoint::tcp_wants_input(self, connection)
    }
}

/// Makes a glommio listener of one core's socket of the edge's group (bound and listening:
/// [`bind_all`]). Runs on the core's executor, whose reactor the listener uses.
#[allow(unsafe_code)]
pub(crate) fn listener(socket: socket2::Socket) -> TcpListener {
    let fd = socket.into_raw_fd();
    // SAFETY: `into_raw_fd` gave up the socket's ownership of `fd`, an open TCP socket that
    // `bind_all` bound and made listen; the listener is its only owner from here on and
    // closes it when dropped. glommio has no safe conversion for listeners.
    unsafe { TcpListener::from_raw_fd(fd) }
}

/// Accepts connections on `listener` and hands each to the engine, for as long as the core
/// runs; `writers` counts the writers it starts.
pub(crate) async fn accept_loop(
    port: Rc<dyn TcpPort>,
    listener: TcpListener,
    writers: Rc<Writers>,
) {
    let fallback = listener.local_addr().ok();
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                // Out of descriptors, or the peer gave up before we took it: the next
                // accept may work.
                tracing::warn!(%error, "TCP accept failed");
                glommio::timer::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let (Ok(peer), Some(local)) = (stream.peer_addr(), stream.local_addr().ok().or(fallback))
        else {
            // Reset before we could ask: nothing to serve.
            continue;
        };
        // Small writes (handshakes, HTTP/2 control frames) should leave at once.
        let _ = stream.set_nodelay(true);
        let Some(connection) = port.accept(peer, local) else {
            continue;
        };
        tracing::debug!(?connection, %peer, "TCP connection accepted");
        let conn = TcpConnection::spawn(&port, connection, stream, &writers);
        port.adopt(connection, conn);
    }
}

/// What a connection's slot and its writer share.
#[derive(Debug, Default)]
struct Shared {
    /// The queue was full when the engine had more: the writer reports when it drains.
    blocked: Cell<bool>,
    /// When the engine lost the connection: the writer's time is counted from here.
    lost: Cell<Option<Instant>>,
    /// Wakes the writer when `lost` is set.
    news: Signal,
    /// The engine wanted no more input: the reader waits for `resume`.
    paused: Cell<bool>,
    /// Wakes the reader when a flush finds the engine wants input again.
    resume: Signal,
}

impl Shared {
    /// Returns [`TCP_LAST_WRITES`] after the engine lost the connection.
    async fn out_of_time(&self) {
        let lost = loop {
            if let Some(lost) = self.lost.get() {
                break lost;
            }
            self.news.notified().await;
        };
        let left = (lost + TCP_LAST_WRITES).saturating_duration_since(Instant::now());
        glommio::timer::sleep(left).await;
    }
}

/// The core's side of one TCP connection: the sender of its writer's queue and its reader.
/// Dropping it cancels the reader and lets the writer finish what it holds, then shut the
/// socket down.
pub(crate) struct TcpConnection {
    writer: LocalSender<Vec<u8>>,
    shared: Rc<Shared>,
    /// Cancelled with the connection.
    _reader: Task<()>,
}

impl TcpConnection {
    /// Starts the reader and the writer of a connection the engine named `connection`.
    fn spawn(
        port: &Rc<dyn TcpPort>,
        connection: ConnectionHandle,
        stream: TcpStream,
        writers: &Rc<Writers>,
    ) -> Self {
        let (reader, writer) = futures_lite::io::split(stream);
        let shared = Rc::new(Shared::default());
        let (sender, queue) = local_channel::new_bounded(WRITE_QUEUE);
        let reader = glommio::spawn_local(read(port.clone(), connection, reader, shared.clone()));
        glommio::spawn_local(write(
            port.clone(),
            connection,
            writer,
            queue,
            shared.clone(),
            Writers::enter(writers),
        ))
        .detach();
        Self {
            writer: sender,
            shared,
            _reader: reader,
        }
    }
}

impl Drop for TcpConnection {
    fn drop(&mut self) {
        self.shared.lost.set(Some(Instant::now()));
        self.shared.news.notify();
    }
}

/// Reads the socket into the engine until it ends, pausing while the engine wants no
/// input.
async fn read(
    port: Rc<dyn TcpPort>,
    connection: ConnectionHandle,
    mut socket: ReadHalf<TcpStream>,
    shared: Rc<Shared>,
) {
    let mut buf = vec![0; CHUNK].into_boxed_slice();
    loop {
        match socket.read(&mut buf).await {
            Ok(len) if len > 0 => {
                if !port.input(connection, buf.get(..len).unwrap_or_default()) {
                    shared.paused.set(true);
                    while shared.paused.get() {
                        shared.resume.notified().await;
                    }
                }
            }
            Ok(_) => {
                port.closed(connection);
                return;
            }
            Err(error) => {
                tracing::debug!(?connection, %error, "TCP read failed");
                port.closed(connection);
                return;
            }
        }
        // A read that finds bytes waiting does not yield: let the driver flush what the
        // engine made of them before reading more.
        future::yield_now().await;
    }
}

/// Writes each queued chunk whole; once the queue is closed and empty (the engine lost the
/// connection and said everything), shuts the socket's sending side down.
async fn write(
    port: Rc<dyn TcpPort>,
    connection: ConnectionHandle,
    mut socket: WriteHalf<TcpStream>,
    queue: LocalReceiver<Vec<u8>>,
    shared: Rc<Shared>,
    _live: Live,
) {
    while let Some(chunk) = queue.recv().await {
        let give_up = async {
            shared.out_of_time().await;
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer did not take the last bytes in time",
            ))
        };
        if let Err(error) = future::or(socket.write_all(&chunk), give_up).await {
            tracing::debug!(?connection, %error, "TCP write failed");
            port.closed(connection);
            return;
        }
        if shared.blocked.replace(false) {
            port.drained(connection);
        }
    }
    let _ = socket.close().await;
}

/// Counts a core's live writers, so that a stopping core can let them write the engine's
/// last bytes before its executor ends.
#[derive(Debug, Default)]
pub(crate) struct Writers {
    live: Cell<usize>,
    /// Notified when the last writer ends.
    idle: Signal,
}

impl Writers {
    fn enter(writers: &Rc<Self>) -> Live {
        writers.live.set(writers.live.get() + 1);
        Live(writers.clone())
    }

    /// Returns once no writer is left.
    pub(crate) async fn finished(&self) {
        while self.live.get() > 0 {
            self.idle.notified().await;
        }
    }
}

/// One live writer, counted in [`Writers`] until it drops.
struct Live(Rc<Writers>);

impl Drop for Live {
    fn drop(&mut self) {
        let live = self.0.live.get().saturating_sub(1);
        self.0.live.set(live);
        if live == 0 {
            self.0.idle.notify();
        }
    }
}

/// A core's TCP connections, and what moves the engine's bytes to their writers.
#[derive(Default)]
pub(crate) struct Connections {
    conns: HashMap<ConnectionHandle, TcpConnection>,
    writers: Rc<Writers>,
    /// Connections whose writer drained after being full: pumped at the next flush.
    drained: Vec<ConnectionHandle>,
    /// Where `Endpoint::tcp_transmit` writes (allocated with the first connection).
    buf: Vec<u8>,
}

impl Connections {
    /// Takes a connection the engine accepted.
    pub(crate) fn insert(&mut self, connection: ConnectionHandle, conn: TcpConnection) {
        self.conns.insert(connection, conn);
    }

    /// The engine lost `connection`: returns it if it was one of ours (dropping it lets its
    /// writer finish and stops its reader).
    pub(crate) fn remove(&mut self, connection: ConnectionHandle) -> Option<TcpConnection> {
        self.conns.remove(&connection)
    }

    /// Forgets every connection (the core is stopping).
    pub(crate) fn clear(&mut self) {
        self.drained.clear();
        self.conns.clear();
    }

    /// The count of this core's writers, for its accept loop to add to.
    pub(crate) fn writers(&self) -> Rc<Writers> {
        self.writers.clone()
    }

    /// A writer that was full drained.
    pub(crate) fn note_drained(&mut self, connection: ConnectionHandle) {
        self.drained.push(connection);
    }

    /// Moves bytes from the engine to every connection it says is ready and to every
    /// writer that drained, while their queues have room. Whether anything was ready.
    pub(crate) fn flush(&mut self, endpoint: &mut impl TcpSource) -> bool {
        let mut any = false;
        while let Some(connection) = self.drained.pop() {
            any = true;
            self.pump(endpoint, connection);
        }
        while let Some(connection) = endpoint.poll_tcp_ready() {
            any = true;
            self.pump(endpoint, connection);
        }
        any
    }

    /// Moves a connection's bytes from the engine to its writer while the queue has room;
    /// a full queue marks it blocked, and its writer reports when it drains.
    fn pump(&mut self, endpoint: &mut impl TcpSource, connection: ConnectionHandle) {
        if self.buf.is_empty() {
            self.buf = vec![0; CHUNK];
        }
        // Named ready: a paused reader may go on (an HTTP/1.1 tunnel's bytes were taken).
        if let Some(conn) = self.conns.get(&connection) {
            if conn.shared.paused.get() && endpoint.tcp_wants_input(connection) {
                conn.shared.paused.set(false);
                conn.shared.resume.notify();
            }
        }
        loop {
            let Some(conn) = self.conns.get(&connection) else {
                return;
            };
            if conn.writer.is_full() {
                conn.shared.blocked.set(true);
                return;
            }
            let len = endpoint.tcp_transmit(connection, &mut self.buf);
            if len == 0 {
                return;
            }
            let chunk = self.buf.get(..len).unwrap_or_default().to_vec();
            match conn.writer.try_send(chunk) {
                Ok(()) => {}
                // The writer failed and reported it (`ConnectionLost` follows): these bytes
                // have nowhere to go.
                Err(GlommioError::Closed(_)) => return,
                Err(error) => {
                    tracing::debug!(?connection, %error, "TCP write queue refused a chunk");
                    return;
                }
            }
        }
    }
}

/// Binds `cores` TCP listening sockets with `SO_REUSEPORT` on `listen`, all before any
/// core accepts, so that the kernel's group is complete from the first connection.
/// Returns them and the bound address (the port the OS chose for port 0).
pub(crate) fn bind_all(
    listen: SocketAddr,
    cores: usize,
) -> io::Result<(Vec<socket2::Socket>, SocketAddr)> {
    // First without SO_REUSEPORT: fails if anyone listens there, and for port 0 picks a
    // port nobody holds (as `bind_all` does for UDP).
    let mut addr = std::net::TcpListener::bind(listen)?.local_addr()?;
    let mut sockets = Vec::with_capacity(cores);
    for _ in 0..cores {
        let socket = reuseport_listener(addr)?;
        addr = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket"))?;
        sockets.push(socket);
    }
    Ok((sockets, addr))
}

fn reuseport_listener(addr: SocketAddr) -> io::Result<socket2::Socket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    // A restarted edge binds again while its old connections wait in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Records what the TCP tasks tell the core.
    #[derive(Default)]
    struct Recorder {
        input: RefCell<Vec<u8>>,
        closed: Cell<bool>,
        drained: RefCell<Vec<ConnectionHandle>>,
        news: Signal,
    }

    impl TcpPort for Recorder {
        fn accept(&self, _: SocketAddr, _: SocketAddr) -> Option<ConnectionHandle> {
            None
        }
        fn adopt(&self, _: ConnectionHandle, _: TcpConnection) {}
        fn input(&self, _: ConnectionHandle, bytes: &[u8]) -> bool {
            self.input.borrow_mut().extend_from_slice(bytes);
            self.news.notify();
            true
        }
        fn closed(&self, _: ConnectionHandle) {
            self.closed.set(true);
            self.news.notify();
        }
        fn drained(&self, connection: ConnectionHandle) {
            self.drained.borrow_mut().push(connection);
            self.news.notify();
        }
    }

    /// An engine with `left` bytes (a counting pattern) for one connection.
    struct Pile {
        connection: ConnectionHandle,
        ready: bool,
        sent: usize,
        left: usize,
    }

    impl TcpSource for Pile {
        fn poll_tcp_ready(&mut self) -> Option<ConnectionHandle> {
            std::mem::take(&mut self.ready).then_some(self.connection)
        }
        fn tcp_transmit(&mut self, connection: ConnectionHandle, out: &mut [u8]) -> usize {
            assert_eq!(connection, self.connection);
            let len = out.len().min(self.left);
            for (i, byte) in out.iter_mut().take(len).enumerate() {
                *byte = pattern(self.sent + i);
            }
            self.sent += len;
            self.left -= len;
            len
        }
        fn tcp_wants_input(&self, _: ConnectionHandle) -> bool {
            true
        }
    }

    #[allow(clippy::cast_possible_truncation)]
    fn pattern(at: usize) -> u8 {
        (at % 251) as u8
    }

    /// A connected pair on loopback: the edge's side (glommio) and the peer's.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let peer = glommio::spawn_local(async move { TcpStream::connect(addr).await });
        let ours = listener.accept().await.expect("accept");
        (ours, peer.await.expect("connect"))
    }

    #[test]
    fn a_full_writer_holds_the_engine_back_until_it_drains_then_closes_after_the_rest() {
        crate::test_executor().run(async {
            let (ours, mut peer) = pair().await;
            let recorder = Rc::new(Recorder::default());
            let port: Rc<dyn TcpPort> = recorder.clone();
            let writers = Rc::new(Writers::default());
            let connection = ConnectionHandle(7);
            let mut conns = Connections::default();
            conns.insert(
                connection,
                TcpConnection::spawn(&port, connection, ours, &writers),
            );
            let total = 4 << 20;
            let mut engine = Pile {
                connection,
                ready: true,
                sent: 0,
                left: total,
            };
            // The peer reads nothing yet: the queue fills, the rest stays in the engine.
            assert!(conns.flush(&mut engine));
            assert_eq!(
                engine.sent,
                WRITE_QUEUE * CHUNK,
                "exactly a full queue taken"
            );
            let reading = glommio::spawn_local(async move {
                let mut got = Vec::new();
                peer.read_to_end(&mut got).await.expect("read");
                got
            });
            // Each time the writer reports room, the core pulls more.
            while engine.left > 0 {
                recorder.news.notified().await;
                let drained: Vec<_> = recorder.drained.borrow_mut().drain(..).collect();
                for connection in drained {
                    conns.note_drained(connection);
                }
                conns.flush(&mut engine);
            }
            // The engine lost the connection: the writer finishes, then shuts down.
            drop(conns.remove(connection));
            let got = reading.await;
            assert_eq!(got.len(), total);
            assert!(
                got.iter()
                    .enumerate()
                    .all(|(at, &byte)| byte == pattern(at))
            );
            writers.finished().await;
            assert!(!recorder.closed.get(), "no failure to report");
        });
    }

    #[test]
    fn the_reader_hands_over_every_byte_then_the_end() {
        crate::test_executor().run(async {
            let (ours, mut peer) = pair().await;
            let recorder = Rc::new(Recorder::default());
            let port: Rc<dyn TcpPort> = recorder.clone();
            let writers = Rc::new(Writers::default());
            let conn = TcpConnection::spawn(&port, ConnectionHandle(1), ours, &writers);
            let sent: Vec<u8> = (0..300_000).map(pattern).collect();
            peer.write_all(&sent).await.expect("write");
            peer.close().await.expect("shutdown");
            while !recorder.closed.get() {
                recorder.news.notified().await;
            }
            assert_eq!(*recorder.input.borrow(), sent);
            drop(conn);
            writers.finished().await;
        });
    }

    #[test]
    fn every_core_gets_a_listener_on_one_port() {
        let (sockets, addr) = bind_all("127.0.0.1:0".parse().expect("addr"), 3).expect("bind");
        assert_eq!(sockets.len(), 3);
        assert_ne!(addr.port(), 0);
        for socket in &sockets {
            let bound = socket.local_addr().expect("addr").as_socket().expect("ip");
            assert_eq!(bound, addr);
        }
        // Connections reach the group.
        std::net::TcpStream::connect(addr).expect("connect");
    }
}
