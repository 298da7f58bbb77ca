//! One UDP tunnel's datagrams: how it sends (fixed when it opens), the bounded queue of
//! payloads received for the host, and the capsule stream read from its request stream.
//!
//! Pure: no quiche, no clock; the endpoint feeds bytes and counts what comes out.

use std::collections::VecDeque;
use std::time::Instant;

use quiche::h3;
use veil_proto::capsule::{CapsuleError, DecoderConfig, VecCapsuleAssembler, types};
use veil_proto::datagram::{
    ContextDatagram, H3_DATAGRAM_ERROR, PayloadError, UDP_PAYLOAD_CONTEXT_ID,
};
use veil_proto::varint::VarInt;

/// HTTP/3 `H3_MESSAGE_ERROR` (RFC 9114 §8.1): a malformed capsule stream.
pub(crate) const H3_MESSAGE_ERROR: u64 = h3::WireErrorCode::MessageError as u64;

/// What a datagram tunnel's payloads are. Both ride HTTP Datagrams with Context ID 0 and
/// DATAGRAM capsules alike; they differ in the payloads' largest size and in the capsules
/// their stream knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carries {
    /// CONNECT-UDP (RFC 9298): UDP payloads.
    Udp,
    /// CONNECT-IP (RFC 9484): whole IP packets; the stream also carries the address and
    /// route capsules (§4.7), handed to the endpoint as [`Control`] capsules.
    Ip,
}

/// The largest IP packet a CONNECT-IP tunnel carries: IPv4's Total Length and IPv6's
/// Payload Length are 16 bits (jumbograms are not supported; `veil_proto::ip`).
pub(crate) const MAX_IP_PACKET_LEN: usize = 65_535 + 40;

impl Carries {
    fn decoder(self) -> DecoderConfig {
        match self {
            Self::Udp => DecoderConfig::CONNECT_UDP,
            // A DATAGRAM capsule's value: a Context ID and an IP packet. The address and
            // route capsules are far shorter.
            Self::Ip => DecoderConfig::new(
                types::CONNECT_IP,
                (MAX_IP_PACKET_LEN + VarInt::MAX_LEN) as u64,
            ),
        }
    }

    /// The largest payload a datagram of this tunnel may carry.
    pub(crate) fn max_payload(self) -> usize {
        match self {
            Self::Udp => veil_proto::datagram::MAX_UDP_PAYLOAD_LEN,
            Self::Ip => MAX_IP_PACKET_LEN,
        }
    }
}

/// A capsule of a CONNECT-IP stream other than DATAGRAM, for the endpoint to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Control {
    pub(crate) capsule_type: VarInt,
    pub(crate) value: Vec<u8>,
}

/// Control capsules that may wait for the endpoint between two reads of the stream; more
/// is a flood, and the stream is aborted.
const MAX_PENDING_CONTROLS: usize = 32;

/// HTTP/3 `H3_EXCESSIVE_LOAD` (RFC 9114 §8.1): the peer sends more than can be handled.
pub(crate) const H3_EXCESSIVE_LOAD: u64 = h3::WireErrorCode::ExcessiveLoad as u64;

/// How a tunnel sends its UDP payloads. Chosen once, when the tunnel opens, and never
/// changed: switching would turn an unreliable path into a reliable one midway.
//# RFC 9298 §7.1: "If a UDP proxy is using QUIC DATAGRAM frames and it receives a UDP
//# payload from the target that will not fit inside a QUIC DATAGRAM frame, the UDP proxy
//# SHOULD NOT send the UDP payload in a DATAGRAM capsule, as that defeats the end-to-end
//# unreliability characteristic that methods such as Datagram Packetization Layer Path
//# MTU Discovery (DPLPMTUD) depend on"
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// QUIC DATAGRAM frames: both sides sent `SETTINGS_H3_DATAGRAM = 1`.
    Frames,
    /// DATAGRAM capsules on the request stream: the fallback otherwise.
    Capsules,
}

/// What reading capsules produced, for the endpoint's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Payloads queued for the host.
    pub(crate) queued: u64,
    /// Payloads dropped because the queue was full.
    pub(crate) queue_full: u64,
    /// Datagrams dropped for a Context ID other than 0.
    pub(crate) unknown_context: u64,
}

/// Why a tunnel's stream must be aborted, with the HTTP/3 error code to reset it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Abort {
    pub(crate) code: u64,
}

/// Whether a payload was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// The queue was full: the payload was dropped.
    Full,
}

/// A received UDP payload: `bytes[start..]`. Keeping the frame it came in, prefix and
/// all, spares a copy.
struct Payload {
    bytes: Vec<u8>,
    start: usize,
}

impl Payload {
    fn as_slice(&self) -> &[u8] {
        self.bytes.get(self.start..).unwrap_or_default()
    }
}

/// One UDP tunnel's datagram state.
pub(crate) struct UdpFlow {
    /// How this side sends; `None` until the tunnel opens.
    pub(crate) encoding: Option<Encoding>,
    /// Client: the `:path` of its request, expanded once at open.
    pub(crate) path: String,
    /// The last time a datagram went either way (or the tunnel opened).
    pub(crate) last_activity: Instant,
    /// A `TunnelDatagrams` event is outstanding: the host has not emptied the queue since.
    pub(crate) notified: bool,
    /// Encoded DATAGRAM capsules the stream had no room for yet (the first perhaps in
    /// part), in order, bounded (`endpoint::udp::CAPSULE_BACKLOG`); sent before anything
    /// else on the stream.
    pub(crate) capsule_backlog: Vec<u8>,
    /// What its payloads are.
    pub(crate) carries: Carries,
    /// CONNECT-IP: address and route capsules read and not yet acted on.
    pub(crate) controls: Vec<Control>,
    queue: VecDeque<Payload>,
    limit: usize,
    capsules: VecCapsuleAssembler,
}

impl UdpFlow {
    /// A flow whose receive queue holds at most `limit` payloads.
    pub(crate) fn new(limit: usize, path: String, now: Instant) -> Self {
        Self {
            encoding: None,
            path,
            last_activity: now,
            notified: false,
            capsule_backlog: Vec::new(),
            carries: Carries::Udp,
            controls: Vec::new(),
            queue: VecDeque::new(),
            limit,
            capsules: VecCapsuleAssembler::new(DecoderConfig::CONNECT_UDP),
        }
    }

    /// The same flow carrying `carries`.
    pub(crate) fn carrying(mut self, carries: Carries) -> Self {
        self.carries = carries;
        self.capsules = VecCapsuleAssembler::new(carries.decoder());
        self
    }

    /// Forgets what was received (a client request that goes to a new connection).
    pub(crate) fn reset(&mut self) {
        self.encoding = None;
        self.notified = false;
        self.capsule_backlog = Vec::new();
        self.queue.clear();
        self.controls.clear();
        self.capsules = VecCapsuleAssembler::new(self.carries.decoder());
    }

    /// Queues the payload `bytes[start..]` for the host, unless the queue is full.
    pub(crate) fn push(&mut self, bytes: Vec<u8>, start: usize) -> Pushed {
        if self.queue.len() >= self.limit {
            return Pushed::Full;
        }
        self.queue.push_back(Payload { bytes, start });
        Pushed::Queued
    }

    /// Whether payloads wait for the host.
    pub(crate) fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Moves the next payload into `out`: `Ok(Some(len))`, `Ok(None)` when the queue is
    /// empty, `Err(needed)` when `out` is too short (the payload stays queued).
    pub(crate) fn pop_into(&mut self, out: &mut [u8]) -> Result<Option<usize>, usize> {
        let Some(payload) = self.queue.front() else {
            return Ok(None);
        };
        let bytes = payload.as_slice();
        let len = bytes.len();
        out.get_mut(..len).ok_or(len)?.copy_from_slice(bytes);
        self.queue.pop_front();
        Ok(Some(len))
    }

    /// Reads capsule stream bytes, in any chunking, queueing the UDP payloads of DATAGRAM
    /// capsules; unknown capsule types are skipped by the decoder.
    //# RFC 9297 §3.2: "Endpoints that receive a Capsule with an unknown Capsule Type MUST
    //# silently drop that Capsule and skip over it to parse the next Capsule."
    pub(crate) fn read_capsules(
        &mut self,
        mut input: &[u8],
        tally: &mut Tally,
    ) -> Result<(), Abort> {
        loop {
            let (used, capsule) = self.capsules.decode(input).map_err(abort_for)?;
            let Some(capsule) = capsule else {
                return Ok(());
            };
            if capsule.capsule_type != types::DATAGRAM {
                // Only a CONNECT-IP decoder knows other types.
                if self.controls.len() >= MAX_PENDING_CONTROLS {
                    return Err(Abort {
                        code: H3_EXCESSIVE_LOAD,
                    });
                }
                self.controls.push(Control {
                    capsule_type: capsule.capsule_type,
                    value: capsule.value.to_vec(),
                });
                input = input.get(used..).unwrap_or_default();
                continue;
            }
            let decoded = match self.carries {
                Carries::Udp => capsule.udp_datagram(),
                Carries::Ip => Some(ContextDatagram::decode(capsule.value)),
            };
            let datagram = match decoded {
                None => None,
                Some(Ok(datagram)) => Some(datagram),
                //# RFC 9298 §5: "An endpoint that receives a DATAGRAM capsule using Context
                //# ID zero whose Payload field is longer than 65527 MUST abort the stream."
                Some(Err(PayloadError::UdpPayloadTooLong(_))) => {
                    return Err(Abort {
                        code: H3_DATAGRAM_ERROR,
                    });
                }
                // A DATAGRAM capsule too short for its Context ID: its value ends before
                // its fields do, a malformed message (RFC 9297 §3.3).
                Some(Err(_)) => {
                    return Err(Abort {
                        code: H3_MESSAGE_ERROR,
                    });
                }
            };
            if let Some(datagram) = datagram {
                if datagram.context_id != UDP_PAYLOAD_CONTEXT_ID {
                    tally.unknown_context += 1;
                } else if self.queue.len() >= self.limit {
                    tally.queue_full += 1;
                } else {
                    self.queue.push_back(Payload {
                        bytes: datagram.payload.to_vec(),
                        start: 0,
                    });
                    tally.queued += 1;
                }
            }
            input = input.get(used..).unwrap_or_default();
        }
    }

    /// Checks, when the peer finished the stream, that no capsule was cut short.
    //# RFC 9297 §3.3: "If the receive side of a stream carrying Capsules is terminated
    //# cleanly (for example, in HTTP/3 this is defined as receiving a QUIC STREAM frame
    //# with the FIN bit set) and the last Capsule on the stream was truncated, this MUST be
    //# treated as if it were a malformed or incomplete message."
    pub(crate) fn finish_capsules(&self) -> Result<(), Abort> {
        self.capsules.finish().map_err(abort_for)
    }
}

/// The stream error for a malformed capsule stream.
fn abort_for(error: CapsuleError) -> Abort {
    match error {
        // Only DATAGRAM capsules are known, so a known capsule too long to decode holds a
        // UDP payload over 65527 bytes: RFC 9298 §5's abort, with the datagram error.
        CapsuleError::TooLong { .. } => Abort {
            code: H3_DATAGRAM_ERROR,
        },
        //# RFC 9114 §4.1.2: "Malformed requests or responses that are detected MUST be
        //# treated as a stream error of type H3_MESSAGE_ERROR."
        _ => Abort {
            code: H3_MESSAGE_ERROR,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use veil_proto::capsule::encode_datagram;
    use veil_proto::varint::VarInt;

    fn flow(limit: usize) -> UdpFlow {
        UdpFlow::new(limit, String::new(), Instant::now())
    }

    fn capsule(context: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0; payload.len() + 32];
        let len = encode_datagram(VarInt::from_u32(context), payload, &mut out).expect("encode");
        out.truncate(len);
        out
    }

    fn drain(flow: &mut UdpFlow) -> Vec<Vec<u8>> {
        let mut out = vec![0; 65_527];
        let mut all = Vec::new();
        while let Some(len) = flow.pop_into(&mut out).expect("fits") {
            all.push(out[..len].to_vec());
        }
        all
    }

    #[test]
    fn capsules_in_any_chunking_become_payloads() {
        let mut stream = capsule(0, b"one");
        stream.extend([0x17, 0x02, 0xaa, 0xbb]); // an unknown capsule type, skipped
        stream.extend(capsule(0, b""));
        stream.extend(capsule(2, b"other context"));
        stream.extend(capsule(0, &[7; 300]));
        for chunk in [1, 2, 3, 7, stream.len()] {
            let mut flow = flow(8);
            let mut tally = Tally::default();
            for piece in stream.chunks(chunk) {
                flow.read_capsules(piece, &mut tally).expect("valid");
            }
            flow.finish_capsules().expect("complete");
            assert_eq!(
                drain(&mut flow),
                [b"one".to_vec(), Vec::new(), vec![7; 300]]
            );
            assert_eq!(
                tally,
                Tally {
                    queued: 3,
                    queue_full: 0,
                    unknown_context: 1
                }
            );
        }
    }

    #[test]
    fn the_queue_is_bounded_and_keeps_what_does_not_fit_out() {
        let mut flow = flow(2);
        let mut tally = Tally::default();
        let stream: Vec<u8> = [capsule(0, b"a"), capsule(0, b"bb"), capsule(0, b"c")].concat();
        flow.read_capsules(&stream, &mut tally).expect("valid");
        assert_eq!((tally.queued, tally.queue_full), (2, 1));
        assert_eq!(flow.push(vec![0, 1], 1), Pushed::Full);
        let mut small = [0; 1];
        assert_eq!(flow.pop_into(&mut small), Ok(Some(1)));
        assert_eq!(flow.pop_into(&mut small), Err(2), "bb stays queued");
        assert_eq!(flow.push(vec![9, 9, 5], 2), Pushed::Queued);
        assert_eq!(flow.push(vec![6], 0), Pushed::Full);
        assert_eq!(drain(&mut flow), [b"bb".to_vec(), vec![5]]);
        assert!(!flow.has_queued());
    }

    #[test]
    fn an_oversize_udp_payload_aborts_with_the_datagram_error() {
        // Context ID 0 and 65528 bytes: within the decoder's limit, over RFC 9298's.
        let mut flow = flow(4);
        let mut stream = vec![0x00, 0x80, 0x00, 0xff, 0xf9, 0x00];
        stream.extend(vec![0; 65_528]);
        let result = flow.read_capsules(&stream, &mut Tally::default());
        assert_eq!(
            result,
            Err(Abort {
                code: H3_DATAGRAM_ERROR
            })
        );
        // A length no UDP payload fits in is refused at the header, before any buffering.
        let mut flow = super::tests::flow(4);
        let result = flow.read_capsules(&[0x00, 0x80, 0x10, 0x00, 0x00], &mut Tally::default());
        assert_eq!(
            result,
            Err(Abort {
                code: H3_DATAGRAM_ERROR
            })
        );
    }

    #[test]
    fn malformed_and_truncated_streams_abort_with_the_message_error() {
        let mut flow = flow(4);
        // A DATAGRAM capsule with an empty value has no Context ID.
        let result = flow.read_capsules(&[0x00, 0x00], &mut Tally::default());
        assert_eq!(
            result,
            Err(Abort {
                code: H3_MESSAGE_ERROR
            })
        );
        let mut flow = super::tests::flow(4);
        let whole = capsule(0, b"cut short");
        flow.read_capsules(&whole[..whole.len() - 1], &mut Tally::default())
            .expect("so far valid");
        assert_eq!(
            flow.finish_capsules(),
            Err(Abort {
                code: H3_MESSAGE_ERROR
            })
        );
        let mut flow = super::tests::flow(4);
        flow.read_capsules(&[0x00], &mut Tally::default())
            .expect("so far valid");
        assert_eq!(
            flow.finish_capsules(),
            Err(Abort {
                code: H3_MESSAGE_ERROR
            })
        );
    }
}
