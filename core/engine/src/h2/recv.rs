//! Incoming bytes: the preface, frame reassembly, and what each frame does to the
//! connection and its streams (RFC 9113 §3.4, §5, §6, §8.1).

use std::time::Instant;

use veil_proto::h2::{self, ErrorCode, Frame, FrameError, PREFACE, SettingId, Settings};

use super::block::{Flood, HeaderBlock};
use super::fields::malformed;
use super::hpack::Decoded;
use super::stream::Stream;
use super::{ConnectionError, Event, Phase, Role, Session};

type Result<T = ()> = std::result::Result<T, ConnectionError>;

fn protocol(reason: &'static str) -> ConnectionError {
    ConnectionError::new(ErrorCode::PROTOCOL_ERROR, reason)
}

fn calm(reason: &'static str) -> ConnectionError {
    ConnectionError::new(ErrorCode::ENHANCE_YOUR_CALM, reason)
}

/// A stream identifier's state as far as the identifier alone tells (RFC 9113 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// In the map: open or half-closed.
    Open,
    /// Never used, and above every identifier its initiator used.
    Idle,
    /// Used (or skipped) before, and no longer in the map.
    Closed,
}

impl Session {
    /// [`Session::recv`] without the closing on error.
    pub(super) fn recv_bytes(&mut self, now: Instant, mut input: &[u8]) -> Result {
        if let Phase::Preface(matched) = self.phase {
            let take = (PREFACE.len() - matched).min(input.len());
            //# RFC 9113 §3.4: "Clients and servers MUST treat an invalid connection preface
            //# as a connection error (Section 5.4.1) of type PROTOCOL_ERROR."
            if input[..take] != PREFACE[matched..matched + take] {
                return Err(protocol("invalid connection preface"));
            }
            input = &input[take..];
            if matched + take < PREFACE.len() {
                self.phase = Phase::Preface(matched + take);
                return Ok(());
            }
            self.phase = Phase::FirstSettings;
        }
        if !self.inbuf.is_empty() {
            // Complete the buffered frame with as few bytes as it needs.
            while let Err(FrameError::Truncated { needed }) =
                h2::decode(&self.inbuf, self.limits.max_frame_size)
            {
                let take = needed.saturating_sub(self.inbuf.len()).min(input.len());
                if take == 0 {
                    return Ok(());
                }
                self.inbuf.extend_from_slice(&input[..take]);
                input = &input[take..];
            }
            let buffered = std::mem::take(&mut self.inbuf);
            let result = self.process(now, &buffered);
            self.inbuf = buffered;
            self.inbuf.clear();
            result?;
        }
        while !input.is_empty() && self.error.is_none() {
            let Some(used) = self.process(now, input)? else {
                self.inbuf.extend_from_slice(input);
                break;
            };
            input = &input[used..];
        }
        Ok(())
    }

    /// Decodes and handles the frame at the front of `buf`; its length, or `None` when
    /// it is incomplete.
    fn process(&mut self, now: Instant, buf: &[u8]) -> Result<Option<usize>> {
        let decoded = h2::decode(buf, self.limits.max_frame_size);
        if matches!(decoded, Err(FrameError::Truncated { .. })) {
            return Ok(None);
        }
        self.stats.frames_received += 1;
        //# RFC 9113 §3.4: "The server connection preface consists of a potentially empty
        //# SETTINGS frame (Section 6.5) that MUST be the first frame the server sends in
        //# the HTTP/2 connection." (and the client's SETTINGS follow its preface)
        if self.phase == Phase::FirstSettings {
            if !matches!(decoded, Ok((_, Frame::Settings { ack: false, .. }))) {
                return Err(protocol("first frame is not SETTINGS"));
            }
            self.phase = Phase::Ready;
        }
        match decoded {
            Ok((used, frame)) => {
                self.check_block_continues(&frame)?;
                self.frame(now, frame)?;
                Ok(Some(used))
            }
            Err(FrameError::Stream {
                stream_id,
                code,
                reason,
                frame_len,
            }) => {
                if self.block.is_some() {
                    return Err(protocol("frame interleaved in a header block"));
                }
                match self.known(stream_id) {
                    Known::Idle => return Err(ConnectionError::new(code, reason)),
                    Known::Closed => {}
                    Known::Open => self.stream_error(stream_id, code)?,
                }
                Ok(Some(frame_len))
            }
            Err(FrameError::Connection { code, reason }) => Err(ConnectionError::new(code, reason)),
            Err(FrameError::Truncated { .. }) => Ok(None),
        }
    }

    //# RFC 9113 §4.3: "Field blocks MUST be transmitted as a contiguous sequence of frames,
    //# with no interleaved frames of any other type or from any other stream."
    fn check_block_continues(&self, frame: &Frame<'_>) -> Result {
        match (&self.block, frame) {
            (Some(block), Frame::Continuation { stream_id, .. })
                if *stream_id == block.stream_id =>
            {
                Ok(())
            }
            (Some(_), _) => Err(protocol("frame interleaved in a header block")),
            (None, Frame::Continuation { .. }) => {
                //# RFC 9113 §6.10: "A CONTINUATION frame MUST be preceded by a HEADERS,
                //# PUSH_PROMISE or CONTINUATION frame without the END_HEADERS flag set. A
                //# recipient that observes violation of this rule MUST respond with a
                //# connection error (Section 5.4.1) of type PROTOCOL_ERROR."
                Err(protocol("CONTINUATION without a header block"))
            }
            (None, _) => Ok(()),
        }
    }

    fn frame(&mut self, now: Instant, frame: Frame<'_>) -> Result {
        match frame {
            Frame::Data { .. } => self.on_data(&frame),
            Frame::Headers {
                stream_id,
                fragment,
                end_stream,
                end_headers,
                priority,
                ..
            } => {
                let self_dependent = priority.is_some_and(|p| p.depends_on(stream_id));
                let block = HeaderBlock::new(
                    stream_id,
                    fragment,
                    end_stream,
                    self_dependent,
                    self.limits.max_header_block(),
                )
                .map_err(|flood| self.flood(flood))?;
                if end_headers {
                    self.on_header_block(now, &block)
                } else {
                    self.block = Some(block);
                    Ok(())
                }
            }
            Frame::Continuation {
                fragment,
                end_headers,
                ..
            } => {
                let max_len = self.limits.max_header_block();
                let max_frames = self.limits.max_continuation_frames;
                let Some(block) = self.block.as_mut() else {
                    return Err(protocol("CONTINUATION without a header block"));
                };
                if let Err(flood) = block.append(fragment, max_len, max_frames) {
                    return Err(self.flood(flood));
                }
                match (end_headers, self.block.take()) {
                    (true, Some(block)) => self.on_header_block(now, &block),
                    (_, block) => {
                        self.block = block;
                        Ok(())
                    }
                }
            }
            // PRIORITY is deprecated: checked when decoded, then ignored (RFC 9113 §5.3.2).
            Frame::Priority { .. }
            | Frame::Unknown { .. }
            | Frame::Settings { ack: true, .. }
            | Frame::Ping { ack: true, .. } => Ok(()),
            Frame::RstStream {
                stream_id,
                error_code,
            } => self.on_rst_stream(now, stream_id, error_code),
            Frame::Settings {
                ack: false,
                settings,
            } => self.on_settings(settings),
            //# RFC 9113 §8.4: "A client cannot push. Thus, servers MUST treat the receipt of
            //# a PUSH_PROMISE frame as a connection error (Section 5.4.1) of type
            //# PROTOCOL_ERROR."
            //# RFC 9113 §6.6: "PUSH_PROMISE MUST NOT be sent if the SETTINGS_ENABLE_PUSH
            //# setting of the peer endpoint is set to 0."
            Frame::PushPromise { .. } => Err(protocol("PUSH_PROMISE, and push is disabled")),
            //# RFC 9113 §6.7: "Receivers of a PING frame that does not include an ACK flag
            //# MUST send a PING frame with the ACK flag set in response, with an identical
            //# frame payload."
            Frame::Ping { ack: false, data } => self.control(&Frame::Ping { ack: true, data }),
            Frame::GoAway { last_stream_id, .. } => {
                self.on_goaway(last_stream_id);
                Ok(())
            }
            Frame::WindowUpdate {
                stream_id,
                increment,
            } => self.on_window_update(stream_id, increment),
        }
    }

    /// Whether the peer initiates streams with this identifier's parity.
    //# RFC 9113 §5.1.1: "Streams initiated by a client MUST use odd-numbered stream
    //# identifiers; those initiated by the server MUST use even-numbered stream
    //# identifiers."
    fn peer_initiated(&self, id: u32) -> bool {
        (id % 2 == 1) == (self.role == Role::Server)
    }

    fn known(&self, id: u32) -> Known {
        if self.streams.contains_key(&id) {
            Known::Open
        } else if self.peer_initiated(id) {
            if id > self.highest_peer_stream {
                Known::Idle
            } else {
                Known::Closed
            }
        } else if id >= self.next_local_stream {
            Known::Idle
        } else {
            Known::Closed
        }
    }

    /// Queues a control frame the peer provoked; too many unread closes the connection.
    fn control(&mut self, frame: &Frame<'_>) -> Result {
        let unread = self.out.control(frame);
        if unread > usize::try_from(self.limits.max_control_frames_queued).unwrap_or(usize::MAX) {
            self.stats.control_frame_floods += 1;
            return Err(calm("too many unread acknowledgements and resets"));
        }
        Ok(())
    }

    /// A stream error (RFC 9113 §5.4.2): `RST_STREAM` with `code`. A stream the caller
    /// knows about is reported as reset, then forgotten.
    fn stream_error(&mut self, id: u32, code: ErrorCode) -> Result {
        if self.streams.contains_key(&id) {
            self.events
                .push_back((u64::from(id), Event::Reset(u64::from(code.0))));
        }
        self.refuse(id, code)
    }

    /// Resets a stream the caller was not told about (or that [`Self::stream_error`]
    /// already reported).
    fn refuse(&mut self, id: u32, code: ErrorCode) -> Result {
        self.stats.resets_sent += 1;
        self.drop_stream(id);
        self.control(&Frame::RstStream {
            stream_id: id,
            error_code: code,
        })
    }

    /// Counts a stream the peer opened and reset, or had refused.
    fn count_reset(&mut self, now: Instant) -> Result {
        if self.resets.hit(now, self.limits.max_resets_per_10s) {
            self.stats.rapid_reset_floods += 1;
            return Err(calm("too many streams reset or refused"));
        }
        Ok(())
    }

    fn flood(&mut self, flood: Flood) -> ConnectionError {
        self.stats.continuation_floods += 1;
        match flood {
            Flood::TooLong => calm("header block too long"),
            Flood::TooManyFrames => calm("too many CONTINUATION frames"),
        }
    }

    fn on_data(&mut self, frame: &Frame<'_>) -> Result {
        let Frame::Data {
            stream_id: id,
            data,
            end_stream,
            ..
        } = *frame
        else {
            return Ok(());
        };
        let flow_len = frame.flow_controlled_len();
        //# RFC 9113 §6.9: "A receiver that receives a flow-controlled frame MUST always
        //# account for its contribution against the connection flow-control window, unless
        //# the receiver treats this as a connection error (Section 5.4.1)."
        //# RFC 9113 §6.9.1: "A sender MUST NOT send a flow-controlled frame with a length
        //# that exceeds the space available in either of the flow-control windows
        //# advertised by the receiver."
        if self.conn_recv.receive(flow_len).is_err() {
            return Err(ConnectionError::new(
                ErrorCode::FLOW_CONTROL_ERROR,
                "DATA beyond the connection window",
            ));
        }
        self.stats.data_bytes_received += data.len() as u64;
        match self.known(id) {
            //# RFC 9113 §5.1: "Receiving any frame other than HEADERS or PRIORITY on a
            //# stream in this state MUST be treated as a connection error (Section 5.4.1)
            //# of type PROTOCOL_ERROR." (idle)
            Known::Idle => return Err(protocol("DATA on an idle stream")),
            Known::Closed => {
                self.release_connection(flow_len);
                //# RFC 9113 §5.1: "An endpoint MUST ignore frames that it receives on
                //# closed streams after it has sent a RST_STREAM frame."
                if self.reset_by_us.contains(id) {
                    return Ok(());
                }
                //# RFC 9113 §6.1: "If a DATA frame is received whose stream is not in the
                //# "open" or "half-closed (local)" state, the recipient MUST respond with a
                //# stream error (Section 5.4.2) of type STREAM_CLOSED."
                return self.refuse(id, ErrorCode::STREAM_CLOSED);
            }
            Known::Open => {}
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        let violation = if stream.recv_closed {
            Some(ErrorCode::STREAM_CLOSED)
        } else if !stream.head_received {
            // A message starts with its head (RFC 9113 §8.1).
            Some(ErrorCode::PROTOCOL_ERROR)
        } else if stream.recv.receive(flow_len).is_err() {
            Some(ErrorCode::FLOW_CONTROL_ERROR)
        } else {
            None
        };
        if let Some(code) = violation {
            self.release_connection(flow_len);
            return self.stream_error(id, code);
        }
        stream.buf.extend(data);
        let report = !data.is_empty() && !stream.data_reported;
        stream.data_reported |= report;
        if end_stream {
            stream.recv_closed = true;
        }
        if report {
            self.events.push_back((u64::from(id), Event::Data));
        }
        // Padding is never read: its credit goes back at once.
        let padding = flow_len - u32::try_from(data.len()).unwrap_or(flow_len);
        self.release(id, padding);
        if end_stream {
            self.report_finished(id);
        }
        Ok(())
    }

    /// A whole header block: decoded in every case (the HPACK context must see it), then
    /// a new stream, a response, trailers, or ignored.
    fn on_header_block(&mut self, now: Instant, block: &HeaderBlock) -> Result {
        let id = block.stream_id;
        let max_list = usize::try_from(self.limits.max_header_list_size).unwrap_or(usize::MAX);
        let decoded = self.codec.decode(&block.buf, max_list).map_err(|_| {
            ConnectionError::new(ErrorCode::COMPRESSION_ERROR, "invalid HPACK header block")
        })?;
        if matches!(decoded, Decoded::TooLarge) {
            self.stats.header_lists_too_large += 1;
        }
        match self.known(id) {
            Known::Idle if self.peer_initiated(id) && self.role == Role::Server => {
                self.highest_peer_stream = id;
                self.open_peer_stream(now, id, decoded, block)
            }
            Known::Idle => Err(protocol("HEADERS opening a stream the peer may not open")),
            Known::Closed if self.reset_by_us.contains(id) => Ok(()),
            //# RFC 9113 §5.1.1: "An endpoint that receives an unexpected stream identifier
            //# MUST respond with a connection error (Section 5.4.1) of type
            //# PROTOCOL_ERROR."
            Known::Closed if self.peer_initiated(id) => {
                Err(protocol("HEADERS on a closed or lower stream identifier"))
            }
            Known::Closed => Err(ConnectionError::new(
                ErrorCode::STREAM_CLOSED,
                "HEADERS on a closed stream",
            )),
            Known::Open => self.headers_on_open_stream(id, decoded, block),
        }
    }

    fn open_peer_stream(
        &mut self,
        now: Instant,
        id: u32,
        decoded: Decoded,
        block: &HeaderBlock,
    ) -> Result {
        //# RFC 9113 §6.5.2: "A server that receives a larger field block than it is
        //# willing to handle can send an HTTP 431 (Request Header Fields Too Large) status
        //# code [RFC6585]."
        // We reset instead, with ENHANCE_YOUR_CALM: not PROTOCOL_ERROR, since the setting
        // is advisory and the peer broke no rule; not REFUSED_STREAM, which invites the
        // same oversized request again. It counts toward the reset-rate bound.
        let Decoded::List(list) = decoded else {
            self.count_reset(now)?;
            return self.refuse(id, ErrorCode::ENHANCE_YOUR_CALM);
        };
        //# RFC 9113 §5.3.1: "A stream cannot depend on itself. An endpoint MUST treat this
        //# as a stream error (Section 5.4.2) of type PROTOCOL_ERROR."
        if block.self_dependent || malformed(&list, false).is_some() {
            return self.refuse(id, ErrorCode::PROTOCOL_ERROR);
        }
        if self.goaway_sent.is_some_and(|last| id > last) {
            return self.refuse(id, ErrorCode::REFUSED_STREAM);
        }
        //# RFC 9113 §5.1.2: "An endpoint that receives a HEADERS frame that causes its
        //# advertised concurrent stream limit to be exceeded MUST treat this as a stream
        //# error (Section 5.4.2) of type PROTOCOL_ERROR or REFUSED_STREAM."
        if self.streams.len()
            >= usize::try_from(self.limits.max_concurrent_streams).unwrap_or(usize::MAX)
        {
            self.stats.streams_refused += 1;
            self.count_reset(now)?;
            return self.refuse(id, ErrorCode::REFUSED_STREAM);
        }
        let mut stream = Stream::new(self.peer.initial_window, self.limits.stream_window);
        stream.head_received = true;
        stream.recv_closed = block.end_stream;
        self.streams.insert(id, stream);
        self.events.push_back((
            u64::from(id),
            Event::Headers {
                list,
                end_stream: block.end_stream,
            },
        ));
        if block.end_stream {
            self.report_finished(id);
        }
        Ok(())
    }

    fn headers_on_open_stream(&mut self, id: u32, decoded: Decoded, block: &HeaderBlock) -> Result {
        let Some(stream) = self.streams.get(&id) else {
            return Ok(());
        };
        //# RFC 9113 §5.1: "If an endpoint receives additional frames, other than
        //# WINDOW_UPDATE, PRIORITY, or RST_STREAM, for a stream that is in this state, it
        //# MUST respond with a stream error (Section 5.4.2) of type STREAM_CLOSED."
        //# (half-closed (remote))
        if stream.recv_closed {
            return self.stream_error(id, ErrorCode::STREAM_CLOSED);
        }
        let response = !stream.head_received;
        let Decoded::List(list) = decoded else {
            return self.stream_error(id, ErrorCode::ENHANCE_YOUR_CALM);
        };
        if block.self_dependent || malformed(&list, !response).is_some() {
            return self.stream_error(id, ErrorCode::PROTOCOL_ERROR);
        }
        if response {
            let informational = list
                .first()
                .is_some_and(|(name, value)| name == b":status" && value.first() == Some(&b'1'));
            //# RFC 9113 §8.1: "A HEADERS frame with the END_STREAM flag set that carries an
            //# informational status code is malformed (Section 8.1.1)."
            if informational && block.end_stream {
                return self.stream_error(id, ErrorCode::PROTOCOL_ERROR);
            }
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.head_received = !informational;
                stream.recv_closed = block.end_stream;
            }
            self.events.push_back((
                u64::from(id),
                Event::Headers {
                    list,
                    end_stream: block.end_stream,
                },
            ));
        } else {
            // Trailers: accepted, not reported; their END_STREAM ends the body.
            //# RFC 9113 §8.1: "An endpoint that receives a HEADERS frame without the
            //# END_STREAM flag set after receiving the HEADERS frame that opens a request
            //# or after receiving a final (non-informational) status code MUST treat the
            //# corresponding request or response as malformed (Section 8.1.1)."
            if !block.end_stream {
                return self.stream_error(id, ErrorCode::PROTOCOL_ERROR);
            }
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.recv_closed = true;
            }
        }
        if block.end_stream {
            self.report_finished(id);
        }
        Ok(())
    }

    fn on_rst_stream(&mut self, now: Instant, id: u32, code: ErrorCode) -> Result {
        match self.known(id) {
            Known::Idle => Err(protocol("RST_STREAM on an idle stream")),
            //# RFC 9113 §5.4.2: "To avoid looping, an endpoint MUST NOT send a RST_STREAM
            //# in response to a RST_STREAM frame."
            Known::Closed => Ok(()),
            Known::Open => {
                self.stats.resets_received += 1;
                self.events
                    .push_back((u64::from(id), Event::Reset(u64::from(code.0))));
                self.drop_stream(id);
                if self.peer_initiated(id) {
                    self.count_reset(now)?;
                }
                Ok(())
            }
        }
    }

    fn on_settings(&mut self, settings: Settings<'_>) -> Result {
        for (id, value) in settings {
            match id {
                SettingId::HEADER_TABLE_SIZE => self.codec.set_peer_table_size(value),
                //# RFC 9113 §6.5.2: "A client MUST treat receipt of a SETTINGS frame with
                //# SETTINGS_ENABLE_PUSH set to 1 as a connection error (Section 5.4.1) of
                //# type PROTOCOL_ERROR."
                SettingId::ENABLE_PUSH if value == 1 && self.role == Role::Client => {
                    return Err(protocol("server enabled push"));
                }
                SettingId::MAX_CONCURRENT_STREAMS => self.peer.max_concurrent_streams = value,
                SettingId::INITIAL_WINDOW_SIZE => self.set_initial_window(value)?,
                SettingId::MAX_FRAME_SIZE => self.peer.max_frame_size = value,
                SettingId::ENABLE_CONNECT_PROTOCOL if self.role == Role::Client => {
                    //# RFC 8441 §3: "A sender MUST NOT send a SETTINGS_ENABLE_CONNECT_PROTOCOL
                    //# parameter with the value of 0 after previously sending a value of 1."
                    if self.peer.connect_protocol && value == 0 {
                        return Err(protocol("SETTINGS_ENABLE_CONNECT_PROTOCOL went back to 0"));
                    }
                    self.peer.connect_protocol = value == 1;
                }
                // Unknown, advisory (MAX_HEADER_LIST_SIZE) or not ours to use.
                //# RFC 9113 §6.5.2: "An endpoint that receives a SETTINGS frame with any
                //# unknown or unsupported identifier MUST ignore that setting."
                _ => {}
            }
        }
        self.peer.received = true;
        //# RFC 9113 §6.5.3: "Once all values have been processed, the recipient MUST
        //# immediately emit a SETTINGS frame with the ACK flag set."
        self.control(&Frame::Settings {
            ack: true,
            settings: Settings::default(),
        })?;
        self.refresh_writable();
        Ok(())
    }

    //# RFC 9113 §6.9.2: "When the value of SETTINGS_INITIAL_WINDOW_SIZE changes, a receiver
    //# MUST adjust the size of all stream flow-control windows that it maintains by the
    //# difference between the new value and the old value."
    //# RFC 9113 §6.9.2: "An endpoint MUST treat a change to SETTINGS_INITIAL_WINDOW_SIZE
    //# that causes any flow-control window to exceed the maximum size as a connection error
    //# (Section 5.4.1) of type FLOW_CONTROL_ERROR."
    fn set_initial_window(&mut self, value: u32) -> Result {
        let delta = i64::from(value) - i64::from(self.peer.initial_window);
        self.peer.initial_window = value;
        for stream in self.streams.values_mut() {
            if stream.send.adjust(delta).is_err() {
                return Err(ConnectionError::new(
                    ErrorCode::FLOW_CONTROL_ERROR,
                    "SETTINGS_INITIAL_WINDOW_SIZE change overflows a stream window",
                ));
            }
        }
        Ok(())
    }

    //# RFC 9113 §6.8: "Receivers of a GOAWAY frame MUST NOT open additional streams on the
    //# connection"
    fn on_goaway(&mut self, last: u32) {
        let lower = self.goaway_received.is_none_or(|previous| last < previous);
        if !lower {
            return;
        }
        self.goaway_received = Some(last);
        self.events.push_back((0, Event::GoAway(u64::from(last))));
        // Our streams above `last` were never processed: they may be retried elsewhere.
        let mut unprocessed: Vec<u32> = self
            .streams
            .keys()
            .copied()
            .filter(|&id| id > last && !self.peer_initiated(id))
            .collect();
        unprocessed.sort_unstable();
        for id in unprocessed {
            self.events.push_back((
                u64::from(id),
                Event::Reset(u64::from(ErrorCode::REFUSED_STREAM.0)),
            ));
            self.drop_stream(id);
        }
    }

    fn on_window_update(&mut self, id: u32, increment: u32) -> Result {
        //# RFC 9113 §6.9.1: "If a sender receives a WINDOW_UPDATE that causes a flow-control
        //# window to exceed this maximum, it MUST terminate either the stream or the
        //# connection, as appropriate."
        if id == 0 {
            if self.conn_send.adjust(i64::from(increment)).is_err() {
                return Err(ConnectionError::new(
                    ErrorCode::FLOW_CONTROL_ERROR,
                    "connection window above 2^31-1",
                ));
            }
            self.refresh_writable();
            return Ok(());
        }
        match self.known(id) {
            Known::Idle => Err(protocol("WINDOW_UPDATE on an idle stream")),
            Known::Closed => Ok(()),
            Known::Open => {
                let overflow = self
                    .streams
                    .get_mut(&id)
                    .is_some_and(|s| s.send.adjust(i64::from(increment)).is_err());
                if overflow {
                    return self.stream_error(id, ErrorCode::FLOW_CONTROL_ERROR);
                }
                self.refresh_writable();
                Ok(())
            }
        }
    }
}
