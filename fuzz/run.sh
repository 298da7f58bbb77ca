#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, one after the other, one
# libFuzzer process at a time; then minimises each working corpus and prints, per target,
# the executions and coverage of libFuzzer's final stats line (`#N DONE cov: X ft: Y`).
#
#   fuzz/run.sh [SECONDS] [TARGET...]      # SECONDS defaults to 60
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Builds with
# cargo-fuzz's defaults: release, debug assertions and overflow checks on, AddressSanitizer.
#
# Knobs, from the environment:
#   FUZZ_RUNS=N          also stop each target after N executions (libFuzzer's -runs),
#                        whichever comes first: `FUZZ_RUNS=10000000 fuzz/run.sh 7200 socks5`
#   FUZZ_SANITIZER=none  build without AddressSanitizer (cargo fuzz -s): two to three times
#                        the executions a second. The decoders are safe Rust (veil-proto
#                        and veil-engine have no `unsafe`); ASan only watches dependencies.
#   FUZZ_FAST=1          build with cargo fuzz -O --no-trace-compares: no debug assertions
#                        in dependencies (fuzz/Cargo.toml turns them and overflow checks
#                        back on for veil's own crates), no comparison tracing. The engine
#                        target then runs 3.5 times the inputs a CPU second (docs/FUZZING.md).
#                        libFuzzer no longer sees the operands of comparisons, which guide
#                        it to magic values in raw bytes: the decoder targets, whose input
#                        is raw bytes, are best fuzzed without this knob.
#   FUZZ_WORKERS=N       run N libFuzzer processes per target at once on its working corpus
#                        (they pick up each other's finds); with FUZZ_RUNS, each stops at
#                        FUZZ_RUNS/N. The engine target's runs wait on real time (quiche's
#                        timers), so a few more workers than cores keep the cores busy.
#
# Corpora: fuzz/corpus/<target>/ holds the committed seeds (fuzz/seed.py writes them) and is
# only read. What libFuzzer finds goes to fuzz/work/<target>/ (not committed), which grows
# from run to run and is minimised with `cargo fuzz cmin` after each one. An input that
# fails is copied to fuzz/regressions/<target>/, where `cargo test` replays it from then on
# (commit it with the fix); the script then exits non-zero.
set -uo pipefail

FUZZ="$(cd "$(dirname "$0")" && pwd)"
SECONDS_PER_TARGET="${1:-60}"
shift || true
if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(sed -n 's/^name = "\(.*\)"$/\1/p' "$FUZZ/Cargo.toml" | grep -v '^veil-fuzz-targets$')
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# cargo-fuzz runs from a scratch directory, where libFuzzer's -jobs mode leaves fuzz-0.log.
# Every subcommand gets the same build flags, or `run` and `cmin` would rebuild.
fuzz() { (cd "$WORK" && cargo +nightly fuzz "$1" --fuzz-dir "$FUZZ" "${BUILD_FLAGS[@]}" "${@:2}"); }
BUILD_FLAGS=()
[ -n "${FUZZ_SANITIZER:-}" ] && BUILD_FLAGS+=(--sanitizer "$FUZZ_SANITIZER")
[ -n "${FUZZ_FAST:-}" ] && BUILD_FLAGS+=(-O --no-trace-compares)
WORKERS="${FUZZ_WORKERS:-1}"
RUNS=()
[ -n "${FUZZ_RUNS:-}" ] && RUNS=(-runs="$((FUZZ_RUNS / WORKERS))")

python3 "$FUZZ/seed.py" >/dev/null
echo "==> building ${#TARGETS[@]} targets"
fuzz build >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }

failed=()
summary=()
for target in "${TARGETS[@]}"; do
    echo "==> $target: ${SECONDS_PER_TARGET}s"
    log="$WORK/$target.log"
    mkdir -p "$FUZZ/work/$target"
    if [ "$WORKERS" -gt 1 ]; then
        for worker in $(seq "$WORKERS"); do
            (fuzz run "$target" "$FUZZ/work/$target" "$FUZZ/corpus/$target" -- \
                -max_total_time="$SECONDS_PER_TARGET" "${RUNS[@]}" >"$log.$worker" 2>&1
             echo $? >"$log.$worker.status") &
        done
        wait
        status=0
        total=0
        for worker in $(seq "$WORKERS"); do
            cat "$log.$worker" >>"$log"
            [ "$(cat "$log.$worker.status")" = 0 ] || status=1
            # `#N` stats lines only: libFuzzer ends with a `###### ... dictionary` banner.
            runs="$(grep -a -oE '^#[0-9]+' "$log.$worker" | tail -n 1 | tr -d '#')"
            total=$((total + ${runs:-0}))
        done
        done_line=""
        [ "$status" = 0 ] && done_line="#$total DONE in all, $WORKERS workers (last: $(grep -a 'DONE' "$log" | tail -n 1))"
    else
        fuzz run "$target" "$FUZZ/work/$target" "$FUZZ/corpus/$target" -- \
            -max_total_time="$SECONDS_PER_TARGET" "${RUNS[@]}" -jobs=1 >"$log" 2>&1
        status=$?
        done_line="$(grep -a 'DONE' "$log" | tail -n 1)"
    fi
    if [ "$status" -ne 0 ] || [ -z "$done_line" ]; then
        failed+=("$target")
        grep -a -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -n 20
        mkdir -p "$FUZZ/regressions/$target"
        for artifact in "$FUZZ/artifacts/$target"/*; do
            [ -f "$artifact" ] && cp "$artifact" "$FUZZ/regressions/$target/"
        done
        done_line="FAILED (see fuzz/regressions/$target/)"
    fi
    fuzz cmin "$target" "$FUZZ/work/$target" >"$WORK/$target.cmin.log" 2>&1 ||
        echo "   cmin failed: $(tail -n 3 "$WORK/$target.cmin.log")"
    files=$(find "$FUZZ/work/$target" -type f | wc -l)
    summary+=("$(printf '%-26s %s  [work corpus after cmin: %d files]' "$target" "$done_line" "$files")")
done

echo
echo "==> results (${SECONDS_PER_TARGET}s per target)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
