//! The bench's floor of a proxy on quiche (`veil bench floor`, started by `veil bench tcp
//! --paths floor`): a figure built on it is only worth something if it carries bytes
//! faithfully. curl → floor local (SOCKS5) → raw quiche stream → floor far → nginx, 32 MiB
//! each way, checked by SHA-256; and a target the floor does not dial ends its tunnel
//! instead of hanging it.

mod support;

use std::process::Command;
use std::time::Duration;

use anyhow::ensure;
use support::{Origin, Proc, TempDir, curl, sha256_file, veil_bin, write_random_file};

/// 32 MiB each way: many flow-control windows of the floor's streams, and many times the
/// bytes a tunnel holds before it stops reading (a stall there showed in 1 of 20 runs at 8).
const SIZE: usize = 32 << 20;
/// Bound of one transfer in a debug build on a busy machine.
const TRANSFER: Duration = Duration::from_secs(60);
const STARTUP: Duration = Duration::from_secs(20);

/// The floor's two processes. Dropped (killed) before the directory goes.
struct Floor {
    local: Proc,
    far: Proc,
    socks: String,
}

impl Floor {
    fn start(dir: &std::path::Path) -> anyhow::Result<Self> {
        let mut command = Command::new(veil_bin());
        command.args(["bench", "floor", "--side", "far"]);
        let far = Proc::spawn("floor-far", command, dir)?;
        let far_addr = far.wait_for_line("floor far listening on ", STARTUP)?;
        let mut command = Command::new(veil_bin());
        command.args(["bench", "floor", "--side", "local", "--far", &far_addr]);
        let local = Proc::spawn("floor-local", command, dir)?;
        let socks = local.wait_for_line("floor local socks on ", STARTUP)?;
        Ok(Self { local, far, socks })
    }

    fn diagnostics(&self) -> String {
        format!("{}\n{}", self.local.diagnostics(), self.far.diagnostics())
    }

    fn proxy(&self) -> String {
        format!("socks5://{}", self.socks)
    }

    /// curl through the floor with `args`; the answer must have status `status`.
    fn fetch(&self, args: &[&str], status: &str) -> anyhow::Result<()> {
        let proxy = self.proxy();
        let output = curl(
            &[&["--proxy", &proxy, "--write-out", "%{http_code}"], args].concat(),
            TRANSFER,
        )?;
        ensure!(
            output.status.success() && output.stdout == status,
            "curl {args:?}: exit {}, {:?}: {}\n{}",
            output.code(),
            output.stdout,
            output.stderr,
            self.diagnostics()
        );
        Ok(())
    }
}

#[test]
fn the_floor_carries_bytes_both_ways_and_ends_a_tunnel_it_does_not_dial() -> anyhow::Result<()> {
    let dir = TempDir::new("floor")?;
    let origin = Origin::start(dir.path())?;
    let floor = Floor::start(dir.path())?;

    let served_sum = write_random_file(&origin.root().join("big.bin"), SIZE, 0xf100_0001)?;
    let downloaded = dir.join("downloaded.bin");
    let downloaded_str = downloaded.to_string_lossy().into_owned();
    let url = origin.url("big.bin");
    floor.fetch(&["--output", &downloaded_str, &url], "200")?;
    ensure!(
        sha256_file(&downloaded)? == served_sum,
        "the downloaded file differs"
    );

    let sent = dir.join("upload.bin");
    let sent_sum = write_random_file(&sent, SIZE, 0xf100_0002)?;
    let sent_str = sent.to_string_lossy().into_owned();
    let url = origin.url("upload/received.bin");
    floor.fetch(&["--upload-file", &sent_str, &url], "201")?;
    ensure!(
        sha256_file(&origin.root().join("upload/received.bin"))? == sent_sum,
        "the uploaded file differs"
    );

    // Off loopback: the far side refuses to dial, and curl hears the tunnel end long
    // before its own bound (a documentation address, never reached).
    let started = std::time::Instant::now();
    let output = curl(
        &["--proxy", &floor.proxy(), "http://192.0.2.1:80/"],
        Duration::from_secs(20),
    )?;
    ensure!(
        !output.status.success() && started.elapsed() < Duration::from_secs(10),
        "a tunnel to a target off loopback: curl exit {} after {:?}: {}\n{}",
        output.code(),
        started.elapsed(),
        output.stderr,
        floor.diagnostics()
    );
    Ok(())
}
