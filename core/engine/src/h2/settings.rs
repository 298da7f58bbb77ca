//! The SETTINGS we announce, and the peer's as they apply to what we send.

use veil_proto::h2::{DEFAULT_MAX_FRAME_SIZE, DEFAULT_WINDOW_SIZE, SettingId};

use super::Role;
use super::hpack::TABLE_SIZE;
use super::limits::Limits;

/// Our SETTINGS frame's parameters.
pub(super) fn ours(role: Role, limits: &Limits) -> Vec<(SettingId, u32)> {
    let mut settings = vec![
        (
            SettingId::HEADER_TABLE_SIZE,
            u32::try_from(TABLE_SIZE).unwrap_or(u32::MAX),
        ),
        //# RFC 9113 §6.5.2: "A server MAY choose to omit this setting when it sends a
        //# SETTINGS frame, but if a server does include a value, it MUST be 0."
        (SettingId::ENABLE_PUSH, 0),
        (
            SettingId::MAX_CONCURRENT_STREAMS,
            limits.max_concurrent_streams,
        ),
        (SettingId::INITIAL_WINDOW_SIZE, limits.stream_window),
        (SettingId::MAX_FRAME_SIZE, limits.max_frame_size),
        (SettingId::MAX_HEADER_LIST_SIZE, limits.max_header_list_size),
    ];
    if role == Role::Server && limits.enable_connect_protocol {
        settings.push((SettingId::ENABLE_CONNECT_PROTOCOL, 1));
    }
    settings
}

/// The peer's settings, as far as they bound what we send.
#[derive(Debug, Clone, Copy)]
pub(super) struct PeerSettings {
    /// Streams we may have open at once (unlimited until the peer says).
    pub(super) max_concurrent_streams: u32,
    /// The send window of every new stream.
    pub(super) initial_window: u32,
    /// The longest frame payload we may send.
    pub(super) max_frame_size: u32,
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1` was received.
    pub(super) connect_protocol: bool,
    /// The peer's first SETTINGS frame arrived.
    pub(super) received: bool,
}

impl Default for PeerSettings {
    //# RFC 9113 §6.5.2: "Initially, there is no limit to this value." (MAX_CONCURRENT_STREAMS)
    fn default() -> Self {
        Self {
            max_concurrent_streams: u32::MAX,
            initial_window: DEFAULT_WINDOW_SIZE,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            connect_protocol: false,
            received: false,
        }
    }
}
