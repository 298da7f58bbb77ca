#!/usr/bin/env bash
# Figures, not a test: the tokio edge against the glommio edge on 1 and 2 cores, on loopback.
#
#   scripts/bench-glommio.sh [path/to/veil]      (default: target/release/veil)
#
# For each edge: CLIENTS `veil client` processes (one QUIC connection each) download a
# SIZE_MIB file from nginx through the edge at once, PER_CLIENT curls per client:
# aggregate goodput = all bytes / wall time. Then NEW_CONNS fresh `veil client` processes
# each make one request at once: new connections/s = NEW_CONNS / wall time (client start-up
# included, the same for every edge).
#
# The machine's cores are shared by the edge, the clients, curl and nginx: the figures say
# how the edges compare under one load, not what a dedicated core does.
set -euo pipefail

VEIL=${1:-${CARGO_TARGET_DIR:-target}/release/veil}
CLIENTS=${CLIENTS:-4}
PER_CLIENT=${PER_CLIENT:-2}
SIZE_MIB=${SIZE_MIB:-64}
NEW_CONNS=${NEW_CONNS:-24}
TOKEN=bench-token

for tool in curl nginx python3; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
        echo "bench-glommio: $tool is missing (apt-get install $tool)" >&2
        exit 1
    }
done
[ -x "$VEIL" ] || { echo "bench-glommio: build veil first (cargo build --release -p veil-cli)" >&2; exit 1; }

DIR=$(mktemp -d /tmp/veil-bench-glommio.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

# nginx origin with one file.
mkdir -p "$DIR/www" "$DIR/tmp"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$DIR/www/file.bin"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$DIR/nginx.conf" <<EOF
daemon off; master_process off; user root; pid $DIR/nginx.pid; error_log $DIR/nginx-error.log;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $DIR/tmp;
  server { listen 127.0.0.1:$PORT; root $DIR/www; } }
EOF
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
"$NGINX" -p "$DIR" -c "$DIR/nginx.conf" &
PIDS+=($!)
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
URL="http://127.0.0.1:$PORT/file.bin"

# Waits for "PREFIX" in FILE; prints the rest of the line.
wait_line() {
    local file=$1 prefix=$2
    for _ in $(seq 200); do
        if line=$(grep -m1 "^$prefix" "$file" 2>/dev/null); then
            echo "${line#"$prefix"}"
            return
        fi
        sleep 0.05
    done
    echo "bench-glommio: no '$prefix' in $file" >&2
    cat "$file" >&2
    exit 1
}

# Starts a client of EDGE with PIN; prints "SOCKS-ADDRESS PID".
start_client() {
    local edge=$1 pin=$2 log
    log=$(mktemp "$DIR/client.XXXXXX")
    "$VEIL" client --edge "$edge" --pin "$pin" --token "$TOKEN" \
        --socks 127.0.0.1:0 --http 127.0.0.1:0 >"$log" 2>/dev/null &
    local pid=$!
    echo "$(wait_line "$log" "veil: socks5 listening on ") $pid"
}

now() { date +%s.%N; }

run_edge() {
    local label=$1
    shift
    local log="$DIR/edge-$label.out"
    "$VEIL" server --listen 127.0.0.1:0 --token "$TOKEN" --allow-target 127.0.0.0/8 "$@" \
        >"$log" 2>"$DIR/edge-$label.err" &
    local edge_pid=$!
    local edge pin
    edge=$(wait_line "$log" "veil: edge listening on ")
    pin=$(wait_line "$log" "veil: self-signed certificate fingerprint ")

    # Goodput: CLIENTS connections, PER_CLIENT downloads each, all at once.
    local socks=() client_pids=()
    local started
    for _ in $(seq "$CLIENTS"); do
        started=$(start_client "$edge" "$pin")
        socks+=("${started% *}")
        client_pids+=("${started#* }")
    done
    local start end
    start=$(now)
    local jobs=()
    for s in "${socks[@]}"; do
        for _ in $(seq "$PER_CLIENT"); do
            curl -s --noproxy '' --max-time 300 --socks5-hostname "$s" -o /dev/null "$URL" &
            jobs+=($!)
        done
    done
    local failed=0 conn_failed=0
    for job in "${jobs[@]}"; do wait "$job" || failed=$((failed + 1)); done
    end=$(now)
    kill "${client_pids[@]}" 2>/dev/null || true
    local goodput
    goodput=$(python3 -c "print(f'{$CLIENTS*$PER_CLIENT*$SIZE_MIB*8*1.048576/($end-$start):.0f}')")

    # New connections: NEW_CONNS fresh clients, one small request each, at once.
    start=$(now)
    local conn_jobs=()
    for _ in $(seq "$NEW_CONNS"); do
        (
            started=$(start_client "$edge" "$pin")
            s=${started% *}
            pid=${started#* }
            rc=0
            curl -s --noproxy '' --max-time 60 --socks5-hostname "$s" -o /dev/null "http://127.0.0.1:$PORT/" || rc=$?
            kill "$pid" 2>/dev/null || true
            exit "$rc"
        ) &
        conn_jobs+=($!)
    done
    for job in "${conn_jobs[@]}"; do wait "$job" || conn_failed=$((conn_failed + 1)); done
    end=$(now)
    local rate
    rate=$(python3 -c "print(f'{$NEW_CONNS/($end-$start):.1f}')")

    kill -TERM "$edge_pid"
    wait "$edge_pid" || true
    local forwarded
    forwarded=$( (grep -o 'forwarded out [0-9]*' "$log" || true) | awk '{s+=$3} END {print s+0}')
    printf '%-16s goodput %6s Mbit/s (failed %d)   new connections %6s /s (failed %d)   forwarded %s\n' \
        "$label" "$goodput" "$failed" "$rate" "$conn_failed" "$forwarded"
}

echo "veil bench-glommio: $CLIENTS clients x $PER_CLIENT downloads of $SIZE_MIB MiB; $NEW_CONNS new connections; $(nproc) CPUs shared with the load"
run_edge tokio
run_edge glommio-1core --runtime glommio --cores 1
run_edge glommio-2cores --runtime glommio --cores 2
