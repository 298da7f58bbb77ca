//! What the C tests share: libveil installed by `install.sh` into a temporary prefix,
//! C programs compiled against it by the system's `cc` with the flags `pkg-config`
//! reads from the installed `veil.pc`, and bounded process runs.
//!
//! A missing tool (cc, pkg-config, valgrind, curl, python3) is a failure naming the tool,
//! never a skip: `.ci/run` installs them.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// This crate's directory (`bindings/c`), also from the crates that include this module
/// (examples/veil's conformance suite builds the C edge with it): every crate of the
/// workspace sits two levels under its root.
pub(crate) fn crate_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bindings/c")
}

/// The cargo output directory of this build (`target/debug`): the test binary lives in
/// its `deps/`, and cargo puts libveil.a beside it.
pub(crate) fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the test binary's directory");
    deps.parent()
        .expect("the cargo output directory")
        .to_path_buf()
}

/// The path of `tool` on PATH, or a failure saying how to install it.
pub(crate) fn require_tool(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]) {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "the tool `{tool}` is missing; install it (`apt-get install {package}`, as .ci/run \
         does) — these tests do not skip"
    )
}

/// A directory under the system temp directory, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(label: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "veil-ffi-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).expect("creating a temporary directory");
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What a bounded command did.
pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `command` to completion, killing it after `timeout` (a failure).
pub(crate) fn run_bounded(mut command: Command, timeout: Duration) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not finish within {timeout:?}; stderr:\n{}",
                stderr.join().unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// Builds libveil.a and the `veil` command with cargo (`cargo test` builds this crate's
/// library for the tests as an rlib only): a no-op when they are fresh. The whole
/// workspace is built, as `cargo test --workspace` builds it, so that this build shares
/// its feature resolution (and its `BoringSSL` build) instead of making another. Returns
/// the cargo output directory holding them.
pub(crate) fn build_artifacts() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--workspace"])
        .current_dir(crate_dir());
    let out = run_bounded(build, Duration::from_secs(1500));
    assert!(
        out.status.success(),
        "cargo build --workspace: {}",
        out.stderr
    );
    build_dir()
}

/// libveil, veil.h and veil.pc installed by `bindings/c/install.sh` under a temporary
/// prefix, from the libveil.a this `cargo test` built.
pub(crate) struct Installed {
    prefix: TempDir,
}

impl Installed {
    pub(crate) fn new() -> Self {
        let build = build_artifacts();
        assert!(
            build.join("libveil.a").is_file(),
            "{} has no libveil.a after cargo build",
            build.display()
        );
        let prefix = TempDir::new("prefix");
        let mut install = Command::new("sh");
        install
            .arg(crate_dir().join("install.sh"))
            .arg(prefix.path())
            .arg(&build);
        let out = run_bounded(install, Duration::from_secs(120));
        assert!(out.status.success(), "install.sh failed: {}", out.stderr);
        Self { prefix }
    }

    /// `pkg-config --cflags --libs --static veil` against the installed veil.pc.
    pub(crate) fn static_flags(&self) -> Vec<String> {
        let pkg_config = require_tool("pkg-config", "pkg-config");
        let mut command = Command::new(pkg_config);
        command
            .args(["--cflags", "--libs", "--static", "veil"])
            .env("PKG_CONFIG_PATH", self.prefix.path().join("lib/pkgconfig"));
        let out = run_bounded(command, Duration::from_secs(30));
        assert!(out.status.success(), "pkg-config: {}", out.stderr);
        // Force the static library even where libveil.so sits beside it.
        out.stdout
            .split_whitespace()
            .map(|flag| {
                if flag == "-lveil" {
                    "-l:libveil.a".to_owned()
                } else {
                    flag.to_owned()
                }
            })
            .collect()
    }

    /// Compiles C99 `source` into `output`, linked statically to libveil.
    pub(crate) fn compile(&self, source: &Path, output: &Path, extra: &[&str]) {
        let cc = require_tool("cc", "gcc");
        let mut command = Command::new(cc);
        command
            .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-g", "-O1"])
            .args(extra)
            .arg(source)
            .arg("-o")
            .arg(output)
            .args(self.static_flags());
        let out = run_bounded(command, Duration::from_secs(300));
        assert!(
            out.status.success(),
            "cc {} failed:\n{}{}",
            source.display(),
            out.stdout,
            out.stderr
        );
    }
}
