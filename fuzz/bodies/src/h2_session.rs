//! `veil_engine::h2::Session` (server role) driven by arbitrary peer bytes and arbitrary
//! calls from the application.
//!
//! ```text
//! byte 0        bit 0: feed a valid client preface and empty SETTINGS first
//!               bits 1-2: the limits (0 and 3: defaults; 1: tiny, so every flood bound
//!               trips; 2: no extended CONNECT, a larger max frame size)
//! then, op by op:
//!   0x00-0x3f   feed the next op + 1 bytes (cut short at the end of the input)
//!   0x40        poll every event
//!   0x41        respond 200 to the oldest stream without a response
//!   0x42 s n    send_body(stream s, n * 16 bytes, fin if s & 0x80)
//!   0x43 s n    recv_body(stream s, into n * 16 bytes)
//!   0x44 s c    reset_stream(stream s, code c)
//!   0x45 n      consume_output(n * 64 bytes)
//!   0x46        send_goaway
//!   0x47 s      stream_capacity(s), and send_body of exactly that much takes it all
//!   0x48 c      close(c)
//!   0x49 t      the clock moves t seconds on
//!   others      writable_next until none
//! ```
//!
//! Streams `s` are picked among those the events named. Checks: nothing panics; output
//! stays within `max_send_buffer` plus the control frames the bound allows plus what the
//! application's own calls wrote; the peer never has more than `max_concurrent_streams`
//! open; byte counts stay within their buffers; a closed session stays closed.

use std::time::{Duration, Instant};

use veil_engine::h2::{Error, Event, Limits, Role, Session};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

fn limits(pick: u8) -> Limits {
    match pick & 0b11 {
        1 => Limits {
            max_concurrent_streams: 2,
            stream_window: 100,
            connection_window: 65_535,
            max_header_list_size: 200,
            max_send_buffer: 1000,
            max_resets_per_10s: 3,
            max_control_frames_queued: 5,
            max_continuation_frames: 2,
            ..Limits::default()
        },
        2 => Limits {
            enable_connect_protocol: false,
            max_frame_size: 20_000,
            ..Limits::default()
        },
        _ => Limits::default(),
    }
}

/// The driver's state: the session and what the checks need.
struct Driver {
    session: Session,
    limits: Limits,
    now: Instant,
    streams: Vec<u64>,
    unanswered: Vec<u64>,
    /// Bytes the application's own calls may have added to the output beyond the bounds.
    allowance: usize,
}

impl Driver {
    fn stream(&self, pick: u8) -> u64 {
        if self.streams.is_empty() {
            return u64::from(pick) | 1;
        }
        self.streams[usize::from(pick & 0x7f) % self.streams.len()]
    }

    fn feed(&mut self, bytes: &[u8]) {
        let closed = self.session.is_closed();
        let result = self.session.recv(self.now, bytes);
        if closed {
            assert!(result.is_err(), "a closed session stays closed");
        }
        if result.is_err() {
            assert!(self.session.is_closed());
            // The GOAWAY carries a reason of at most a few dozen bytes.
            self.allowance += 128;
        }
    }

    fn poll(&mut self) {
        while let Some((id, event)) = self.session.poll_event() {
            match event {
                Event::Headers { .. } => {
                    if !self.streams.contains(&id) {
                        self.streams.push(id);
                        self.unanswered.push(id);
                    }
                }
                Event::Reset(_) => self.unanswered.retain(|&s| s != id),
                Event::Data | Event::Finished | Event::GoAway(_) => {}
            }
        }
    }

    fn send_body(&mut self, id: u64, len: usize, fin: bool) {
        let data = vec![0x5a; len];
        match self.session.send_body(id, &data, fin) {
            Ok(n) => {
                assert!(n <= len, "took {n} of {len}");
                // DATA frame headers: one per max-size frame, plus one.
                self.allowance += 9 * (n / 16_384 + 2);
            }
            Err(Error::StreamBlocked) => assert!(len > 0),
            Err(_) => {}
        }
    }

    fn check(&self) {
        let control = 17 * (self.limits.max_control_frames_queued as usize + 1);
        let bound = self.limits.max_send_buffer + control + 256 + self.allowance;
        let pending = self.session.pending_output().len();
        assert!(pending <= bound, "{pending} bytes of output, bound {bound}");
        assert!(
            self.session.open_streams() <= self.limits.max_concurrent_streams as usize,
            "{} streams open",
            self.session.open_streams()
        );
    }
}

/// Runs the operations in `data`.
///
/// # Panics
///
/// When an invariant in the module documentation breaks.
pub fn run(data: &[u8]) {
    let Some((&flags, mut ops)) = data.split_first() else {
        return;
    };
    let limits = limits(flags >> 1);
    let mut driver = Driver {
        session: Session::new(Role::Server, limits.clone()),
        limits,
        now: Instant::now(),
        streams: Vec::new(),
        unanswered: Vec::new(),
        allowance: 0,
    };
    if flags & 1 == 1 {
        driver.feed(&[PREFACE, EMPTY_SETTINGS].concat());
    }
    let arg = |ops: &mut &[u8]| -> u8 {
        let Some((&byte, rest)) = ops.split_first() else {
            return 0;
        };
        *ops = rest;
        byte
    };
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        match op {
            0x00..=0x3f => {
                let n = (usize::from(op) + 1).min(ops.len());
                let (chunk, rest) = ops.split_at(n);
                ops = rest;
                driver.feed(chunk);
            }
            0x40 => driver.poll(),
            0x41 => {
                if !driver.unanswered.is_empty() {
                    let id = driver.unanswered.remove(0);
                    let _ = driver
                        .session
                        .send_response(id, &[(b":status", b"200")], false);
                    driver.allowance += 64;
                }
            }
            0x42 => {
                let (s, n) = (arg(&mut ops), arg(&mut ops));
                let id = driver.stream(s);
                driver.send_body(id, usize::from(n) * 16, s & 0x80 != 0);
            }
            0x43 => {
                let (s, n) = (arg(&mut ops), arg(&mut ops));
                let id = driver.stream(s);
                let mut buf = vec![0; usize::from(n) * 16];
                if let Ok(read) = driver.session.recv_body(id, &mut buf) {
                    assert!(read <= buf.len());
                }
                // Up to two WINDOW_UPDATEs.
                driver.allowance += 26;
            }
            0x44 => {
                let (s, c) = (arg(&mut ops), arg(&mut ops));
                let id = driver.stream(s);
                driver.session.reset_stream(id, u64::from(c));
                driver.allowance += 13;
            }
            0x45 => {
                let n = usize::from(arg(&mut ops)) * 64;
                driver.session.consume_output(n);
            }
            0x46 => {
                driver.session.send_goaway();
                driver.allowance += 17;
            }
            0x47 => {
                let id = driver.stream(arg(&mut ops));
                if let Ok(capacity) = driver.session.stream_capacity(id) {
                    if capacity > 0 && capacity <= 1 << 16 {
                        let data = vec![0xa5; capacity];
                        assert_eq!(driver.session.send_body(id, &data, false), Ok(capacity));
                        driver.allowance += 9 * (capacity / 16_384 + 2);
                    }
                }
            }
            0x48 => {
                driver.session.close(u64::from(arg(&mut ops)));
                assert!(driver.session.is_closed());
                driver.allowance += 128;
            }
            0x49 => driver.now += Duration::from_secs(u64::from(arg(&mut ops))),
            _ => while driver.session.writable_next().is_some() {},
        }
        driver.check();
    }
    driver.poll();
    driver.check();
}
