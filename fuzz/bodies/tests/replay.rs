//! Replays every committed corpus file (`fuzz/corpus/<target>/`) and every past crash input
//! (`fuzz/regressions/<target>/`) through its target's body, on stable, as part of
//! `cargo test`. One test per target; a panicking input fails it and is named.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use veil_fuzz::{Body, TARGETS};

/// This crate's directory, as cargo gives it when it runs the test.
///
/// Read at run time, not with `env!`: cargo reuses a test binary built from another checkout
/// of the same sources (a shared `CARGO_TARGET_DIR`), and a path baked in at build time would
/// then name that other checkout.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none if the directory does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = manifest_dir().join("..").join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let body: Body = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, body)| *body)
        .expect("a target of that name");
    let corpus = inputs("corpus", target);
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is empty or missing"
    );
    let regressions = inputs("regressions", target);
    // `VEIL_FUZZ_ONLY=<part of a file name>`: replay only the inputs whose path contains it
    // (with `VEIL_FUZZ_TRACE=1`, to read one input's trace).
    let only = std::env::var("VEIL_FUZZ_ONLY").ok();
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        if only
            .as_deref()
            .is_some_and(|only| !path.to_string_lossy().contains(only))
        {
            continue;
        }
        let data = std::fs::read(path).expect("a readable input");
        if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs panicked:\n  {}",
        failed.len(),
        corpus.len() + regressions.len(),
        failed.join("\n  ")
    );
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target));
            }
        )*

        /// Every target in `TARGETS` has a test above, so none is forgotten.
        #[test]
        fn every_target_is_replayed() {
            let tested = [$(stringify!($target)),*];
            for (name, _) in TARGETS {
                assert!(tested.contains(name), "no replay test for {name}");
            }
            assert_eq!(tested.len(), TARGETS.len());
        }
    };
}

replay_tests!(
    varint,
    varint_roundtrip,
    datagram,
    datagram_roundtrip,
    capsule,
    capsule_roundtrip,
    masque_udp,
    masque_udp_roundtrip,
    masque_ip,
    masque_ip_roundtrip,
    socks5,
    socks5_roundtrip,
    http1,
    http1_stream,
    proxy_protocol,
    proxy_protocol_roundtrip,
    ip,
    ip_roundtrip,
    engine,
    rules,
    sniff,
    sniff_quic,
    h2_frame,
    h2_session,
    h1_session,
);
