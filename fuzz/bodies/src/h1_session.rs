//! `veil_engine::h1::Session` (the edge's HTTP/1.1 on-ramp) driven by arbitrary peer bytes
//! and arbitrary calls from the application.
//!
//! ```text
//! byte 0        bit 0: feed a valid CONNECT head first; bit 1: a connect-udp upgrade
//!               instead; bit 2: the host reads only while the session wants input
//! then, op by op:
//!   0x00-0x3f   feed the next op + 1 bytes (cut short at the end of the input)
//!   0x40        poll every event
//!   0x41 k      respond with status k % 6 of [200, 101, 100, 403, 407, 502]
//!   0x42 n      send_body(n * 16 bytes, fin if n & 0x80)
//!   0x43 n      recv_body(into n * 16 bytes)
//!   0x44 c      reset_stream(code c)
//!   0x45 n      consume_output(n * 64 bytes)
//!   0x46        send_goaway
//!   0x47        stream_capacity, and send_body of exactly that much takes it all
//!   0x48        close
//!   0x49        peer_closed (the peer's close_notify)
//!   others      writable_next
//! ```
//!
//! Checks: nothing panics; one request head per connection, and no body event before it;
//! `Finished` at most once; the output stays within `MAX_OUTPUT` plus the response heads
//! the application wrote; when the host reads only while the session wants input, the
//! unread tunnel bytes stay within `BODY_HIGH_WATER` plus one read; an aborted session
//! has nothing left to send; `has_stream` and `open_streams` agree.

use veil_engine::h1::{BODY_HIGH_WATER, Error, Event, MAX_OUTPUT, STREAM, Session};

const CONNECT: &[u8] = b"CONNECT origin.example:443 HTTP/1.1\r\nHost: origin.example:443\r\n\r\n";
const UPGRADE: &[u8] = b"GET /.well-known/masque/udp/192.0.2.1/53/ HTTP/1.1\r\nHost: edge\r\n\
Connection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\r\n";
const STATUSES: [&[u8]; 6] = [b"200", b"101", b"100", b"403", b"407", b"502"];

struct Driver {
    session: Session,
    /// The host reads only while the session wants input (bit 2).
    polite: bool,
    /// Response heads the application wrote (beyond `MAX_OUTPUT`).
    allowance: usize,
    /// Tunnel bytes fed and not read back, counted here.
    unread: usize,
    /// The most one feed brought.
    largest_feed: usize,
    heads: usize,
    finished: usize,
}

impl Driver {
    fn feed(&mut self, bytes: &[u8]) {
        if self.polite && !self.session.wants_input() {
            return;
        }
        let before_head = self.heads;
        let _ = self.session.recv(bytes);
        self.largest_feed = self.largest_feed.max(bytes.len());
        // Bytes after the head are the tunnel's; the head's own are not counted (a
        // conservative bound: everything fed once a head was seen).
        if before_head > 0 || self.session.open_streams() > 0 {
            self.unread += bytes.len();
        }
    }

    fn poll(&mut self) {
        while let Some((stream, event)) = self.session.poll_event() {
            assert_eq!(stream, STREAM, "one stream per connection");
            match event {
                Event::Headers { .. } => {
                    self.heads += 1;
                    assert_eq!(self.heads, 1, "one request head per connection");
                }
                Event::Data => assert_eq!(self.heads, 1, "a body before its head"),
                Event::Finished => {
                    self.finished += 1;
                    assert_eq!(self.finished, 1, "Finished twice");
                }
                Event::Reset(_) | Event::GoAway(_) => panic!("HTTP/1.1 has no {event:?}"),
            }
        }
    }

    fn check(&self) {
        let pending = self.session.pending_output().len();
        assert!(
            pending <= MAX_OUTPUT + self.allowance,
            "{pending} bytes of output pending"
        );
        assert_eq!(
            self.session.open_streams(),
            usize::from(self.session.has_stream(STREAM))
        );
        if self.session.is_closed() && !self.session.clean_end() {
            assert!(
                self.session.pending_output().is_empty(),
                "an aborted session still sends"
            );
        }
        if self.polite {
            assert!(
                self.unread <= BODY_HIGH_WATER + self.largest_feed.max(CONNECT.len()) * 2,
                "{} tunnel bytes held though the host stopped reading",
                self.unread
            );
        }
    }
}

/// Runs one input.
///
/// # Panics
///
/// When an invariant in the module documentation breaks.
pub fn run(data: &[u8]) {
    let Some((&flags, mut ops)) = data.split_first() else {
        return;
    };
    let mut driver = Driver {
        session: Session::new(),
        polite: flags & 0b100 != 0,
        allowance: 0,
        unread: 0,
        largest_feed: 0,
        heads: 0,
        finished: 0,
    };
    if flags & 0b11 != 0 {
        let head = if flags & 0b10 != 0 { UPGRADE } else { CONNECT };
        driver.feed(head);
        driver.unread = 0;
    }
    let mut buf = vec![0u8; 256 * 16];
    let body = vec![0x5a; 256 * 16];
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        let mut arg = || {
            let (&a, rest) = ops.split_first().unwrap_or((&0, &[]));
            ops = rest;
            a
        };
        match op {
            0x00..=0x3f => {
                let len = (usize::from(op) + 1).min(ops.len());
                let (bytes, rest) = ops.split_at(len);
                ops = rest;
                driver.feed(bytes);
            }
            0x40 => driver.poll(),
            0x41 => {
                let status = STATUSES[usize::from(arg()) % STATUSES.len()];
                let before = driver.session.pending_output().len();
                let fields: [(&[u8], &[u8]); 2] =
                    [(b":status", status), (b"capsule-protocol", b"?1")];
                let _ = driver
                    .session
                    .send_response(STREAM, &fields, status != b"200");
                let after = driver.session.pending_output().len();
                driver.allowance += after.saturating_sub(before);
            }
            0x42 => {
                let n = arg();
                let len = usize::from(n & 0x7f) * 16;
                match driver
                    .session
                    .send_body(STREAM, &body[..len], n & 0x80 != 0)
                {
                    Ok(taken) => assert!(taken <= len),
                    Err(Error::StreamBlocked | Error::StreamClosed | Error::UnknownStream) => {}
                    Err(error) => panic!("send_body: {error:?}"),
                }
            }
            0x43 => {
                let len = usize::from(arg()) * 16;
                if let Ok(read) = driver.session.recv_body(STREAM, &mut buf[..len]) {
                    assert!(read <= len);
                    driver.unread = driver.unread.saturating_sub(read);
                }
            }
            0x44 => driver.session.reset_stream(STREAM, u64::from(arg())),
            0x45 => driver.session.consume_output(usize::from(arg()) * 64),
            0x46 => driver.session.send_goaway(),
            0x47 => {
                if let Ok(room) = driver.session.stream_capacity(STREAM) {
                    let room = room.min(body.len());
                    assert_eq!(
                        driver.session.send_body(STREAM, &body[..room], false),
                        Ok(room)
                    );
                }
            }
            0x48 => driver.session.close(),
            0x49 => driver.session.peer_closed(),
            _ => {
                let _ = driver.session.writable_next();
            }
        }
        driver.check();
    }
    driver.poll();
    driver.check();
}
