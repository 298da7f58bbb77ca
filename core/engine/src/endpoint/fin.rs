//! How our direction of a tunnel's stream ends: its FIN, and why it rides on a
//! zero-length HTTP/3 DATA frame.
//!
//! # The FIN that quiche 0.30 can lose
//!
//! `stream_send(stream, b"", true)` records the final size at the offset of the bytes
//! already written. quiche counts a sending side complete once the acknowledged ranges
//! reach the final size, without asking whether a frame carrying the FIN was ever sent; a
//! complete stream whose other direction has been read is forgotten on the next ACK. So
//! when the ACK of a tunnel's last bytes arrives after the host finished it but before the
//! next packet went out — a relay that sends what its target wrote and finishes on a later
//! turn of its loop, against a peer that acknowledges fast — the stream is collected and
//! the FIN is never sent: the peer has every byte and waits for an end that never comes
//! (cloudflare/quiche#2525, open when this was written; `stream_send` returned `Ok` all
//! the same).
//!
//! The cut: the FIN is written with two new bytes, the header of an empty DATA frame, which
//! HTTP/3 allows (a DATA frame's length may be zero). Those bytes cannot have been
//! acknowledged before they are sent, and the last of them goes out in the frame that
//! carries the FIN, so the sending side completes only when that frame is acknowledged,
//! and a lost one is sent again like any data. The price is two bytes of stream credit:
//! without it the FIN waits in [`Conn::fins_waiting`](super::Conn) and is written when
//! quiche reports the stream writable again, whether or not its tunnel is still in the
//! table (an aborted or finished UDP tunnel is forgotten at once; its FIN is still owed).
//!
//! Every other end of a stream carries its own new bytes or a final size of its own: a
//! refusal is a HEADERS frame written with the FIN, and an abort, a rejection after GOAWAY
//! or a cancelled request is a `RESET_STREAM`.

use quiche::h3;

use super::Endpoint;

impl Endpoint {
    /// Finishes our direction of `stream` on connection `handle` (see the module
    /// documentation). `Err` is what HTTP/3 said, `StreamStopped` among them; a FIN that
    /// waits for room is `Ok` too: it needs nothing more from the caller.
    pub(super) fn write_fin(&mut self, handle: u64, stream: u64) -> Result<(), h3::Error> {
        let conn = self.conns.get_mut(handle).ok_or(h3::Error::InternalError)?;
        let h3 = conn.http.as_mut().ok_or(h3::Error::InternalError)?;
        //# RFC 9114 §7.2.1: "DATA frames (type=0x00) convey arbitrary, variable-length
        //# sequences of bytes associated with HTTP request or response content."
        // quiche writes the frame's header and then the empty body with the FIN; without
        // room for the header it asks to be told when there is (`stream_writable`).
        match h3.send_body(&mut conn.wire, stream, b"", true) {
            Ok(_) => {
                conn.held.wrote();
                conn.fins_waiting.retain(|waiting| *waiting != stream);
            }
            Err(h3::Error::Done) => {
                if !conn.fins_waiting.contains(&stream) {
                    conn.fins_waiting.push(stream);
                }
            }
            Err(error) => return Err(error),
        }
        self.queue_send(handle);
        Ok(())
    }

    /// Writes the FINs that waited for room on `streams` (quiche reported them writable).
    /// One that fails (the peer stopped or reset the stream meanwhile) is forgotten: the
    /// tunnel, if it is still there, hears of the stop through its own checks.
    pub(super) fn retry_fins(&mut self, handle: u64, streams: Vec<u64>) {
        for stream in streams {
            if let Err(error) = self.write_fin(handle, stream) {
                tracing::debug!(connection = handle, stream, %error, "a waiting FIN failed");
                if let Some(conn) = self.conns.get_mut(handle) {
                    conn.fins_waiting.retain(|waiting| *waiting != stream);
                }
            }
        }
    }
}
