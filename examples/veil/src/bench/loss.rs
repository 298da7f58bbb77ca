//! `veil bench tcp --loss-percent`: random loss on the path between the clients and the
//! edge, from an nftables rule (this kernel has no netem), removed when the bench ends.
//!
//! The rule drops packets to and from the edge's UDP port (HTTP/3) and its TCP port
//! (HTTP/2) with `numgen random`, each packet on its own. On loopback the kernel hands
//! GSO and TSO batches to the hook whole, so a drop takes a batch of up to 64 KiB: the
//! loss is burstier than on a real link, for both transports alike.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{Context, ensure};

/// The table the rule lives in, deleted on drop.
const TABLE: &str = "veil_bench_loss";

/// An installed loss rule.
pub(crate) struct Loss;

impl Loss {
    /// Drops `percent` of the packets to and from `udp_port` and `tcp_port`, in a chain
    /// on each of `hooks`: `output` alone on loopback (every packet passes it once), `output`
    /// and `input` when the edge is across `--veth`'s link (what leaves, and what comes
    /// back).
    pub(crate) fn install(
        percent: f64,
        udp_port: u16,
        tcp_port: u16,
        hooks: &[&str],
    ) -> anyhow::Result<Self> {
        ensure!(
            (0.0..100.0).contains(&percent),
            "--loss-percent wants a share in [0, 100)"
        );
        // Per ten thousand: `numgen random mod 10000 < N`.
        let per_10k = format!("{:.0}", percent * 100.0);
        let mut rules = format!("table inet {TABLE} {{\n");
        for hook in hooks {
            let _ = writeln!(
                rules,
                " chain {hook} {{\n  type filter hook {hook} priority 0;"
            );
            for (protocol, port) in [("udp", udp_port), ("tcp", tcp_port)] {
                for side in ["dport", "sport"] {
                    let _ = writeln!(
                        rules,
                        "  {protocol} {side} {port} numgen random mod 10000 < {per_10k} drop"
                    );
                }
            }
            rules.push_str(" }\n");
        }
        rules.push_str("}\n");
        nft(&["-f", "-"], Some(&rules))
            .context("installing the loss rule (root and nft needed)")?;
        println!(
            "veil bench tcp: dropping {percent}% of the packets to and from the edge (nft table {TABLE})"
        );
        Ok(Self)
    }
}

impl Drop for Loss {
    fn drop(&mut self) {
        if let Err(error) = nft(&["delete", "table", "inet", TABLE], None) {
            eprintln!("veil bench tcp: could not remove nft table {TABLE}: {error:#}");
        }
    }
}

/// Runs `nft ARGS`, with `input` on its standard input.
fn nft(args: &[&str], input: Option<&str>) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft")?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    ensure!(
        output.status.success(),
        "nft {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}
