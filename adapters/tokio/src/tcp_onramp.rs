//! The edge's TCP on-ramp on tokio: a listener, and per connection a reader and a writer
//! task that move bytes between the socket and the driver. Everything else (TLS, HTTP/2,
//! the requests and their tunnels) is the engine's (`Endpoint::accept_tcp` and the calls
//! after it).
//!
//! Bounds: a reader has [`READ_CREDIT`] chunks in flight to the driver at most (the driver
//! returns a credit once the engine took a chunk, and holds it back while the engine wants
//! no input: `Endpoint::tcp_wants_input`, HTTP/1.1's backpressure), and a writer's queue holds
//! [`WRITE_QUEUE`] chunks; bytes the writer has no room for stay in the engine, whose own
//! bound then holds tunnels back. Once the engine lost a connection, its writer has
//! `veil_engine::TCP_LAST_WRITES` to write what it holds, then the socket is closed.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use veil_engine::ConnectionHandle;

use crate::command::Command;

/// Chunks a reader may have handed to the driver that the engine has not taken yet.
const READ_CREDIT: usize = 4;
/// Bytes read from a socket at once.
const READ_CHUNK: usize = 64 * 1024;
/// Chunks waiting for a writer, at most.
pub(crate) const WRITE_QUEUE: usize = 8;

/// Accepts connections on `listener` and hands each to the driver, until the driver is
/// gone.
pub(crate) fn spawn_listener(
    listener: TcpListener,
    commands: mpsc::UnboundedSender<Command>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, say: the next accept may work.
                    tracing::warn!(%error, "TCP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            if commands
                .send(Command::TcpAccepted { stream, peer })
                .is_err()
            {
                return;
            }
        }
    })
}

/// Client: connects to the edge's TCP listener for `connection`, within `timeout`, and
/// tells the driver how it went.
pub(crate) fn spawn_dial(
    connection: ConnectionHandle,
    to: SocketAddr,
    timeout: std::time::Duration,
    commands: mpsc::UnboundedSender<Command>,
) {
    tokio::spawn(async move {
        let result = match tokio::time::timeout(timeout, TcpStream::connect(to)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        };
        let _ = commands.send(Command::TcpDialed { connection, result });
    });
}

/// The driver's side of one TCP connection.
pub(crate) struct TcpSlot {
    writer: mpsc::Sender<Bytes>,
    /// The writer task: aborted (the socket closed) if its last writes take too long.
    write_task: Option<JoinHandle<()>>,
    reader: JoinHandle<()>,
    credit: Arc<Semaphore>,
    /// Credits held back while the engine wanted no input.
    owed_credit: usize,
    /// The writer's queue was full when the engine had more: pull again when it drains.
    pub(crate) blocked: bool,
}

impl TcpSlot {
    /// Starts the reader and writer of a connection the engine named `connection`.
    pub(crate) fn spawn(
        connection: ConnectionHandle,
        stream: TcpStream,
        commands: &mpsc::UnboundedSender<Command>,
    ) -> Self {
        let (mut read, mut write) = stream.into_split();
        let credit = Arc::new(Semaphore::new(READ_CREDIT));
        let reader = {
            let commands = commands.clone();
            let credit = credit.clone();
            tokio::spawn(async move {
                loop {
                    let Ok(permit) = credit.acquire().await else {
                        return;
                    };
                    permit.forget();
                    let mut buf = BytesMut::with_capacity(READ_CHUNK);
                    let command = match read.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => Command::TcpClosed { connection },
                        Ok(_) => Command::TcpInput {
                            connection,
                            bytes: buf.freeze(),
                        },
                    };
                    let end = matches!(command, Command::TcpClosed { .. });
                    if commands.send(command).is_err() || end {
                        return;
                    }
                }
            })
        };
        let (writer, mut queue) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        let commands = commands.clone();
        let write_task = tokio::spawn(async move {
            while let Some(bytes) = queue.recv().await {
                if write.write_all(&bytes).await.is_err() {
                    let _ = commands.send(Command::TcpClosed { connection });
                    return;
                }
                let _ = commands.send(Command::TcpDrained { connection });
            }
            // The engine said everything: the end of our direction, then the socket's.
            let _ = write.shutdown().await;
        });
        Self {
            writer,
            write_task: Some(write_task),
            reader,
            credit,
            owed_credit: 0,
            blocked: false,
        }
    }

    /// Queues bytes for the writer; `false` (nothing taken) when its queue is full.
    pub(crate) fn try_write(&mut self, bytes: &[u8]) -> bool {
        let Ok(permit) = self.writer.try_reserve() else {
            self.blocked = true;
            return false;
        };
        permit.send(Bytes::copy_from_slice(bytes));
        true
    }

    /// Whether the writer can take a chunk now.
    pub(crate) fn has_room(&self) -> bool {
        self.writer.capacity() > 0
    }

    /// The engine took a chunk the reader handed over: the reader may read another if the
    /// engine `wants_input`; otherwise the credit waits for [`resume`](Self::resume).
    pub(crate) fn return_credit(&mut self, wants_input: bool) {
        self.owed_credit += 1;
        self.resume(wants_input);
    }

    /// The engine may want input again (it named the connection ready): the credits held
    /// back go to the reader if it does.
    pub(crate) fn resume(&mut self, wants_input: bool) {
        if wants_input && self.owed_credit > 0 {
            self.credit
                .add_permits(std::mem::take(&mut self.owed_credit));
        }
    }
}

impl Drop for TcpSlot {
    fn drop(&mut self) {
        // The writer ends by itself once its queue is drained (its sender goes with us), or
        // is cut off after the engine's bound if the peer does not read.
        self.reader.abort();
        let Some(mut write_task) = self.write_task.take() else {
            return;
        };
        // Outside a runtime (it is going away) there is nothing to wait with.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            write_task.abort();
            return;
        };
        runtime.spawn(async move {
            let last_writes = tokio::time::timeout(veil_engine::TCP_LAST_WRITES, &mut write_task);
            if last_writes.await.is_err() {
                write_task.abort();
                tracing::debug!("a lost TCP connection's last writes timed out: socket closed");
            }
        });
    }
}

/// The local address of an accepted socket, or `fallback`.
pub(crate) fn local_of(stream: &TcpStream, fallback: SocketAddr) -> SocketAddr {
    stream.local_addr().unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A lost connection whose peer does not read: its writer is cut off after
    /// `TCP_LAST_WRITES` (the socket closes with chunks still queued) instead of waiting
    /// for the peer for ever.
    #[tokio::test]
    async fn a_lost_connection_s_writer_is_cut_off_when_the_peer_does_not_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut peer = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let (commands, _events) = mpsc::unbounded_channel();
        let mut slot = TcpSlot::spawn(ConnectionHandle(1), server, &commands);
        // Fill the socket and then the writer's queue: the peer reads nothing.
        let chunk = vec![7u8; READ_CHUNK];
        let mut queued = 0usize;
        let mut full_for = 0;
        while full_for < 50 {
            if slot.try_write(&chunk) {
                queued += chunk.len();
                full_for = 0;
            } else {
                full_for += 1;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        drop(slot);
        tokio::time::sleep(veil_engine::TCP_LAST_WRITES + std::time::Duration::from_secs(1)).await;
        // Now read: what the kernel held, then the end; never all that was queued.
        let mut received = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), peer.read(&mut buf))
                .await
                .expect("the socket was left open");
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
        assert!(
            received < queued,
            "{received} of {queued} bytes: the writer was never cut off"
        );
    }
}
