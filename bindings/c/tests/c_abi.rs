//! The ABI from C: `tests/c/abi_errors.c` (NULLs, short buffers, bad configuration,
//! unknown tunnel ids, wrong roles, and a refused and an accepted tunnel between a client
//! and an edge in memory) compiled by the system's `cc` against the installed libveil.a
//! and run under valgrind: any memory error or leak (definite or indirect) fails.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Installed, TempDir, crate_dir, require_tool, run_bounded};

#[test]
fn error_paths_hold_under_valgrind_without_leaks() {
    let valgrind = require_tool("valgrind", "valgrind");
    let installed = Installed::new();
    let dir = TempDir::new("abi");
    let program = dir.path().join("abi_errors");
    installed.compile(&crate_dir().join("tests/c/abi_errors.c"), &program, &[]);

    let mut command = Command::new(valgrind);
    command
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            // "Possibly lost" blocks are process-wide caches that live until exit
            // (boring's ex-data index map, a hash table whose pointer points inside its
            // allocation); they are shown but do not fail. Definite and indirect leaks
            // fail.
            "--show-leak-kinds=definite,indirect,possible",
            "--errors-for-leak-kinds=definite,indirect",
            "--track-origins=yes",
            "--quiet",
        ])
        .arg(&program);
    let out = run_bounded(command, Duration::from_secs(600));
    assert!(
        out.status.success() && out.stdout.contains("all checks passed"),
        "abi_errors under valgrind: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
}
