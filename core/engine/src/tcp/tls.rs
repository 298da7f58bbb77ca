//! TLS over a byte stream, sans-IO: `BoringSSL` (through `boring`, the TLS library quiche
//! already links) working on memory buffers instead of a socket.
//!
//! The host hands over the ciphertext it read ([`TlsStream::feed`]) and writes out what
//! [`TlsStream::ciphertext`] holds; nothing here blocks or touches a file descriptor.
//! `BoringSSL`'s `SslStream` asks its transport to read and write through `std::io`: the
//! transport here is [`Memory`], whose reads fail with `WouldBlock` when nothing is
//! buffered, which `BoringSSL` reports as `WANT_READ`: "come back with more bytes".

use std::io::{self, Read, Write};

use boring::ssl::{ErrorCode, Ssl, SslContext, SslRef, SslStream};

/// The transport `BoringSSL` reads from and writes to: two byte queues.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    /// Ciphertext from the peer, not yet read by `BoringSSL`; `read_at` is where it goes on.
    incoming: Vec<u8>,
    read_at: usize,
    /// Ciphertext for the peer; the host took it up to `taken` (the buffer empties when it
    /// took all, and sheds what was taken once that is half of it: a part taken moves
    /// nothing most of the time).
    outgoing: Vec<u8>,
    taken: usize,
}

impl Read for Memory {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = &self.incoming[self.read_at..];
        if available.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let len = available.len().min(buf.len());
        buf[..len].copy_from_slice(&available[..len]);
        self.read_at += len;
        if self.read_at == self.incoming.len() {
            self.incoming.clear();
            self.read_at = 0;
        }
        Ok(len)
    }
}

impl Write for Memory {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Ciphertext a peer may send before its handshake completes, at most: a `ClientHello`
/// with every extension, a certificate chain and its proofs fit many times over.
const MAX_HANDSHAKE_BUFFER: usize = 256 * 1024;

/// Where a [`TlsStream`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The handshake needs more bytes from the peer.
    Handshaking,
    /// The handshake is complete: application bytes flow.
    Established,
    /// The session failed (the handshake, or a record): nothing more comes or goes.
    Ended,
}

/// One TLS session over a byte stream, either role.
pub(crate) struct TlsStream {
    stream: SslStream<Memory>,
    progress: Progress,
    server: bool,
    /// Why the handshake failed, for logs (never secrets: `BoringSSL`'s reason strings).
    failure: Option<String>,
    /// The peer's `close_notify` arrived: nothing more comes, but we may still write (TLS
    /// half-close; an HTTP/1.1 tunnel's peer ends its side with it).
    peer_closed: bool,
    /// Our `close_notify` was queued: nothing more goes.
    close_sent: bool,
}

impl TlsStream {
    /// A server session on `context` (its certificate, ALPN choice and client
    /// verification).
    pub(crate) fn server(context: &SslContext) -> Result<Self, boring::error::ErrorStack> {
        let ssl = Ssl::new(context)?;
        Ok(Self {
            stream: SslStream::new(ssl, Memory::default())?,
            progress: Progress::Handshaking,
            server: true,
            failure: None,
            peer_closed: false,
            close_sent: false,
        })
    }

    /// A client session: `ssl` already carries the server name and verification.
    pub(crate) fn client(ssl: Ssl) -> Result<Self, boring::error::ErrorStack> {
        Ok(Self {
            stream: SslStream::new(ssl, Memory::default())?,
            progress: Progress::Handshaking,
            server: false,
            failure: None,
            peer_closed: false,
            close_sent: false,
        })
    }

    /// Queues ciphertext from the peer and moves the handshake on.
    pub(crate) fn feed(&mut self, ciphertext: &[u8]) -> Progress {
        let memory = self.stream.get_mut();
        // A handshake needs a few records; a peer that piles up more than this before it
        // is done is not doing TLS (and would otherwise hold the edge's memory).
        if self.progress == Progress::Handshaking
            && memory.incoming.len() - memory.read_at + ciphertext.len() > MAX_HANDSHAKE_BUFFER
        {
            self.failure = Some("too many bytes before the handshake completed".to_owned());
            self.progress = Progress::Ended;
            return self.progress;
        }
        memory.incoming.extend_from_slice(ciphertext);
        self.advance()
    }

    /// Moves the handshake on with what is buffered (a client starts its `ClientHello` here).
    pub(crate) fn advance(&mut self) -> Progress {
        if self.progress != Progress::Handshaking {
            return self.progress;
        }
        let result = if self.server {
            self.stream.accept()
        } else {
            self.stream.connect()
        };
        match result {
            Ok(()) => self.progress = Progress::Established,
            Err(error) if error.code() == ErrorCode::WANT_READ => {}
            Err(error) => {
                self.failure = Some(error.to_string());
                self.progress = Progress::Ended;
            }
        }
        self.progress
    }

    /// Decrypts what has arrived into `out` (appended). Returns false once the peer has
    /// ended its side (`close_notify`: [`peer_closed`](Self::peer_closed)) or the session
    /// failed ([`failure`](Self::failure)): nothing more will come.
    pub(crate) fn read_plaintext(&mut self, out: &mut Vec<u8>, limit: usize) -> bool {
        if self.progress != Progress::Established || self.peer_closed {
            return self.progress == Progress::Handshaking;
        }
        let mut chunk = [0u8; 16 * 1024];
        while out.len() < limit {
            match self.stream.ssl_read(&mut chunk) {
                Ok(0) => {
                    self.peer_closed = true;
                    return false;
                }
                Ok(len) => out.extend_from_slice(&chunk[..len]),
                Err(error) if error.code() == ErrorCode::WANT_READ => return true,
                Err(error) if error.code() == ErrorCode::ZERO_RETURN => {
                    self.peer_closed = true;
                    return false;
                }
                Err(error) => {
                    self.failure = Some(error.to_string());
                    self.progress = Progress::Ended;
                    return false;
                }
            }
        }
        true
    }

    /// The peer sent `close_notify`.
    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Encrypts `plaintext` into records for the peer; returns how much was taken (all of
    /// it while established, none otherwise).
    pub(crate) fn write_plaintext(&mut self, plaintext: &[u8]) -> usize {
        if self.progress != Progress::Established || self.close_sent || plaintext.is_empty() {
            return 0;
        }
        match self.stream.ssl_write(plaintext) {
            Ok(len) => len,
            Err(error) => {
                self.failure = Some(error.to_string());
                self.progress = Progress::Ended;
                0
            }
        }
    }

    /// Sends `close_notify`: our end of the session (once; reading goes on).
    pub(crate) fn close(&mut self) {
        if self.can_close() {
            self.close_sent = true;
            let _ = self.stream.shutdown();
        }
    }

    /// Whether [`close`](Self::close) would still send `close_notify`.
    pub(crate) fn can_close(&self) -> bool {
        self.progress == Progress::Established && !self.close_sent
    }

    /// Ciphertext waiting for the host to write.
    pub(crate) fn ciphertext(&self) -> &[u8] {
        let memory = self.stream.get_ref();
        &memory.outgoing[memory.taken..]
    }

    /// The host wrote `len` bytes of [`ciphertext`](Self::ciphertext).
    pub(crate) fn consume_ciphertext(&mut self, len: usize) {
        let memory = self.stream.get_mut();
        memory.taken = (memory.taken + len).min(memory.outgoing.len());
        if memory.taken == memory.outgoing.len() {
            memory.outgoing.clear();
            memory.taken = 0;
        } else if memory.taken >= memory.outgoing.len() / 2 {
            // A host that never takes everything: drop the taken half now and then, so
            // that the buffer stays within twice what is waiting (amortised, one move).
            memory.outgoing.drain(..memory.taken);
            memory.taken = 0;
        }
    }

    /// Why the session failed, if it did.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    pub(crate) fn ssl(&self) -> &SslRef {
        self.stream.ssl()
    }
}
