//! Turns: how a connection's send capacity is shared among the tunnels waiting for it.
//!
//! Every tunnel of a connection draws on one congestion window and one connection-level
//! flow-control window. When they are full, each `tunnel_send` takes what is left, and
//! tunnels that got nothing wait for `TunnelWritable`. A host writes in the order those
//! events come, and the first writers take the capacity that freed up. quiche reports
//! writable streams in the order they became so, which puts a tunnel that just wrote (and
//! is writable again at once) ahead of the ones it left without room: measured with 100
//! downloads on one connection, one tunnel took 92% of the bytes and half of them none.
//!
//! So the engine orders each round itself, round-robin by stream: the tunnels after the
//! last one whose bytes the connection took (`Conn::send_turn`) come first, then the rest
//! from the lowest stream. Each waiting tunnel gets its turn at the front once per cycle.
//! quiche then interleaves the streams that hold data in its packets, a frame at a time:
//! every tunnel's stream is sent at one urgency and incremental (`wire::TUNNEL_PRIORITY`;
//! RFC 9218's default is not incremental, which quiche sends in stream order).

/// Orders `(stream, tunnel)` pairs for one round of `TunnelWritable`: the streams after
/// `turn` in ascending order, then the others from the lowest.
pub(super) fn in_turn<T>(writable: &mut [(u64, T)], turn: u64) {
    writable.sort_unstable_by_key(|&(stream, _)| (stream <= turn, stream));
}

#[cfg(test)]
mod tests {
    use super::in_turn;

    #[test]
    fn a_round_starts_after_the_last_stream_served_and_wraps() {
        let mut round: Vec<(u64, ())> = [0, 4, 8, 12, 16].iter().map(|&s| (s, ())).collect();
        in_turn(&mut round, 8);
        let order: Vec<u64> = round.iter().map(|&(s, ())| s).collect();
        assert_eq!(order, [12, 16, 0, 4, 8]);
        in_turn(&mut round, 16);
        let order: Vec<u64> = round.iter().map(|&(s, ())| s).collect();
        assert_eq!(order, [0, 4, 8, 12, 16]);
    }
}
