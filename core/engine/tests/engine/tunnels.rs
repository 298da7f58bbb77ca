//! Bytes through tunnels: round trips, many tunnels, loss and reordering, half-close,
//! resets, slow readers.

use crate::harness::Link;
use crate::hosts::{EdgeHost, Transfers};
use crate::{BUDGET, pair, target};

#[test]
fn one_tunnel_echo_round_trip() {
    let mut net = pair(&[], None);
    let mut client = Transfers::new(target("echo.test", 443), 1, 10_000);
    let mut edge = EdgeHost::default();
    assert!(
        net.run(&mut client, &mut edge, BUDGET),
        "echo did not complete"
    );
    assert_eq!(edge.requests.len(), 1);
    assert_eq!(edge.requests[0].0.to_string(), "echo.test:443");
    assert_eq!(edge.requests[0].1.token_index, None);
}
