#!/usr/bin/env bash
# Figures, not a test: TCP through a TUN device and CONNECT-IP (L3: the kernel's TCP inside
# QUIC), with the devices' segmentation offloads and without (two client/edge pairs side by
# side), against TCP through the SOCKS5 listener (L4: one CONNECT stream per connection),
# in one run, paths alternated ROUNDS times.
#
#   scripts/bench-ip.sh [path/to/veil]      (default: target/release/veil; root)
#
# Three network namespaces joined by veth pairs (MTU 1500): the client's, the edge's (which
# forwards between its TUN devices and the target) and the target's, where nginx serves a
# SIZE_MIB file on two addresses: 10.200.0.2 through the offloading pair (`--tun-offload
# on`, the default), 10.200.0.3 through the plain one (`--tun-offload off`). Each round
# downloads it with curl through each TUN and through `--socks`, and prints goodput
# (Mbit/s) for each and the ratios.
set -euo pipefail

VEIL=${1:-${CARGO_TARGET_DIR:-target}/release/veil}
SIZE_MIB=${SIZE_MIB:-256}
ROUNDS=${ROUNDS:-3}
ID=$$
C=veil-bc-$ID
E=veil-be-$ID
T=veil-bt-$ID
DIR=$(mktemp -d /tmp/veil-bench-ip.XXXXXX)
chmod 755 "$DIR"   # nginx's workers read the file as another user

[ "$(id -u)" = 0 ] || { echo "bench-ip: run as root (namespaces, TUN devices)" >&2; exit 1; }
[ -x "$VEIL" ] || { echo "bench-ip: build veil first (cargo build --release -p veil-cli)" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "bench-ip: nginx is missing (apt-get install nginx)" >&2; exit 1; }

cleanup() {
    for ns in "$C" "$E" "$T"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
    done
    sleep 0.3
    for ns in "$C" "$E" "$T"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT

for ns in "$C" "$E" "$T"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip link add vc-$ID type veth peer name ve1-$ID
ip link set vc-$ID netns "$C"
ip link set ve1-$ID netns "$E"
ip link add ve2-$ID type veth peer name vt-$ID
ip link set ve2-$ID netns "$E"
ip link set vt-$ID netns "$T"
ip -n "$C" addr add 10.100.0.2/24 dev vc-$ID
ip -n "$C" link set vc-$ID up
ip -n "$E" addr add 10.100.0.1/24 dev ve1-$ID
ip -n "$E" link set ve1-$ID up
ip -n "$E" addr add 10.200.0.1/24 dev ve2-$ID
ip -n "$E" link set ve2-$ID up
ip -n "$T" addr add 10.200.0.2/24 dev vt-$ID
ip -n "$T" addr add 10.200.0.3/24 dev vt-$ID
ip -n "$T" link set vt-$ID up
ip -n "$T" route add 10.89.0.0/24 via 10.200.0.1
ip -n "$T" route add 10.90.0.0/24 via 10.200.0.1
ip netns exec "$E" sysctl -qw net.ipv4.ip_forward=1

mkdir -p "$DIR/www"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/zero | tr '\0' 'v' > "$DIR/www/file"
cat > "$DIR/nginx.conf" <<EOF
daemon off;
pid $DIR/nginx.pid;
error_log $DIR/nginx.err;
events {}
http {
    access_log off;
    sendfile on;
    server { listen 10.200.0.2:80; listen 10.200.0.3:80; root $DIR/www; }
}
EOF
ip netns exec "$T" "$NGINX" -c "$DIR/nginx.conf" &

# A client/edge pair: NAME PORT POOL TARGET OFFLOAD [client flags...]
pair() {
    local name=$1 port=$2 pool=$3 target=$4 offload=$5 pin
    shift 5
    ip netns exec "$E" "$VEIL" server --listen 10.100.0.1:"$port" --ip-pool "$pool" \
        --ip-egress tun:veil-$name --tun-offload "$offload" --allow-target 10.200.0.0/24 \
        > "$DIR/edge-$name.log" 2>&1 &
    for _ in $(seq 50); do grep -q "sha256:" "$DIR/edge-$name.log" && break; sleep 0.1; done
    pin=$(grep -o "sha256:[0-9a-f]*" "$DIR/edge-$name.log")
    ip netns exec "$C" "$VEIL" client --edge 10.100.0.1:"$port" --pin "$pin" --tun "$name" \
        --tun-route "$target"/32 --tun-offload "$offload" "$@" > "$DIR/client-$name.log" 2>&1 &
    for _ in $(seq 50); do grep -q "tun $name ready" "$DIR/client-$name.log" && break; sleep 0.1; done
    grep -q "tun $name ready" "$DIR/client-$name.log" || { cat "$DIR/client-$name.log" >&2; exit 1; }
}
pair off0 4433 10.89.0.0/24 10.200.0.2 on --socks 127.0.0.1:1080
pair plain0 4434 10.90.0.0/24 10.200.0.3 off

# One download, which must be the whole file: its goodput in Mbit/s.
fetch() {
    local out bytes seconds
    local url=$1
    shift
    out=$(ip netns exec "$C" curl -fsS -o /dev/null -w '%{size_download} %{time_total}' "$@" \
        "$url")
    read -r bytes seconds <<<"$out"
    [ "$bytes" = $((SIZE_MIB * 1024 * 1024)) ] || { echo "bench-ip: got $bytes bytes" >&2; exit 1; }
    python3 -c "print(f'{$bytes * 8 / 1e6 / $seconds:.0f}')"
}

echo "bench-ip: $SIZE_MIB MiB over veth, $ROUNDS rounds, $(nproc) cores"
printf '%-6s %18s %16s %16s %10s %14s\n' round "L3 offload Mbit/s" "L3 plain Mbit/s" \
    "L4 socks Mbit/s" "off/plain" "L4/L3 offload"
for round in $(seq "$ROUNDS"); do
    l3=$(fetch http://10.200.0.2/file)
    plain=$(fetch http://10.200.0.3/file)
    l4=$(fetch http://10.200.0.2/file --socks5-hostname 127.0.0.1:1080)
    gain=$(python3 -c "print(f'{$l3 / $plain:.2f}')")
    ratio=$(python3 -c "print(f'{$l4 / $l3:.2f}')")
    printf '%-6s %18s %16s %16s %10s %14s\n' "$round" "$l3" "$plain" "$l4" "$gain" "$ratio"
done
