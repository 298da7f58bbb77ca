#!/usr/bin/env python3
"""Interop: HTTP/1.1 CONNECT (RFC 9110 §9.3.6) and the HTTP/1.1 upgrade to connect-udp
(RFC 9298 §3.2, capsules per RFC 9297) against `veil server --listen-tcp`, from Python's
`ssl` module (OpenSSL) and HTTP/1.1 written by hand from the RFCs.

Each check opens its own TLS connection (ALPN http/1.1: HTTP/1.1 serves one request per
connection here) and prints one line: `ok <check> <target> ...` or `FAIL <check> <target>:
<why>`. The exit status is 0 only when every check passed; examples/veil/tests/e2e_h2.rs
drives this script.

  --echo AUTHORITY        CONNECT, expect 200, then write --size random bytes to the TCP
                          echo target without reading until the writes stall for a second
                          (HTTP/1.1 has no flow control: only the edge's backpressure on
                          its socket can stop them; that they stop is checked), then read
                          and write to the end, expect the same bytes back; close_notify
                          ends our side, and the target's end comes back as close_notify.
  --udp-echo HOST:PORT    GET with `Upgrade: connect-udp`, expect 101 with the upgrade
                          token, send --datagrams UDP payloads as DATAGRAM capsules, expect
                          each back.
  --refuse AUTHORITY=STATUS
                          CONNECT, expect that status and the connection closed after it.

The edge's certificate is checked against --pin (SHA-256 of its DER) before any request
carries the token.
"""

import argparse
import hashlib
import os
import select
import socket
import ssl
import sys
import time

from masque_common import (
    CAPSULE_DATAGRAM,
    CapsuleDecoder,
    datagram_capsule,
    expand_template,
    http_datagram_payload,
    udp_http_datagram,
    DEFAULT_TEMPLATE,
)

CHUNK = 64 * 1024


def connect(args):
    host, _, port = args.edge.rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # checked by pin below
    context.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection((host.strip("[]"), int(port)), timeout=args.timeout)
    sock = context.wrap_socket(raw, server_hostname=args.server_name)
    if sock.selected_alpn_protocol() != "http/1.1":
        raise AssertionError(f"ALPN chose {sock.selected_alpn_protocol()!r}, not http/1.1")
    pin = "sha256:" + hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest()
    if pin != args.pin:
        raise AssertionError(f"certificate {pin} is not the pinned {args.pin}")
    return sock


def token_line(token):
    return f"Proxy-Authorization: Bearer {token}\r\n" if token else ""


def read_head(sock, timeout):
    """Reads a response head; returns (status, fields, bytes after the head)."""
    data = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in data:
        if time.monotonic() > deadline:
            raise AssertionError(f"no complete response head in {timeout} s: {data!r}")
        chunk = sock.recv(CHUNK)
        if not chunk:
            raise AssertionError(f"the edge closed before a response head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = lines[0].split(" ", 2) + [""]
    if version != "HTTP/1.1":
        raise AssertionError(f"status line {lines[0]!r}")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    return status, fields, rest


def check_echo(args, authority):
    sock = connect(args)
    sock.sendall(
        f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{token_line(args.token)}\r\n".encode()
    )
    status, _, rest = read_head(sock, args.timeout)
    if status != "200":
        raise AssertionError(f"expected 200, got {status}")
    if rest:
        raise AssertionError(f"{len(rest)} bytes before anything was sent")
    payload = os.urandom(args.size)
    sock.setblocking(False)
    sent, echoed = 0, bytearray()

    def write_some():
        nonlocal sent
        try:
            sent += sock.send(payload[sent : sent + CHUNK])
            return True
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            return False

    # Phase 1: write without reading. The echo's answers back up to the edge, whose host
    # stops reading our socket once the tunnel holds its bound: the writes must stall.
    last_progress = time.monotonic()
    while sent < args.size and time.monotonic() - last_progress < 1.0:
        select.select([], [sock], [], 0.1)
        if write_some():
            last_progress = time.monotonic()
    stalled_at = sent
    if stalled_at >= args.size:
        raise AssertionError(f"all {args.size} bytes were taken without reading a byte back")
    # Phase 2: both ways to the end.
    deadline = time.monotonic() + args.timeout
    while len(echoed) < args.size:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(echoed)} of {args.size} bytes back in {args.timeout} s")
        readable, writable, _ = select.select([sock], [sock] if sent < args.size else [], [], 1.0)
        if writable and sent < args.size and write_some():
            deadline = time.monotonic() + args.timeout
        while True:
            try:
                chunk = sock.recv(4 * CHUNK)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                break
            if not chunk:
                raise AssertionError(f"the tunnel ended after {len(echoed)} of {args.size} bytes")
            echoed += chunk
            deadline = time.monotonic() + args.timeout
    if bytes(echoed) != payload:
        raise AssertionError("the echoed bytes differ from the bytes sent")
    # Our end: close_notify; the target's end comes back as the edge's close_notify.
    sock.setblocking(True)
    sock.settimeout(args.timeout)
    sock.unwrap()
    sock.close()
    return (
        f"{args.size} bytes echoed, writes stalled at {stalled_at >> 20} MiB until read, "
        "close_notify both ways"
    )


def check_udp_echo(args, target):
    sock = connect(args)
    host, _, port = target.rpartition(":")
    path = expand_template(DEFAULT_TEMPLATE, host.strip("[]"), int(port))
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {args.server_name}\r\nConnection: Upgrade\r\n"
            f"Upgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n{token_line(args.token)}\r\n"
        ).encode()
    )
    status, fields, rest = read_head(sock, args.timeout)
    if status != "101":
        raise AssertionError(f"expected 101, got {status}")
    if fields.get("upgrade") != ["connect-udp"]:
        raise AssertionError(f"upgrade: {fields.get('upgrade')!r}")
    sent = [os.urandom(64 + i * 37 % 1100) for i in range(args.datagrams)]
    for payload in sent:
        sock.sendall(datagram_capsule(udp_http_datagram(payload)))
    decoder = CapsuleDecoder()
    received = []
    pending = rest
    deadline = time.monotonic() + args.timeout
    while len(received) < len(sent):
        for capsule_type, value in decoder.feed(pending):
            if capsule_type != CAPSULE_DATAGRAM:
                continue
            parsed = http_datagram_payload(value)
            if parsed is None or parsed[0] != 0:
                raise AssertionError(f"a malformed or unknown-context datagram: {value!r}")
            received.append(parsed[1])
        if len(received) >= len(sent):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(received)} of {len(sent)} datagrams back")
        pending = sock.recv(CHUNK)
        if not pending:
            raise AssertionError(f"the tunnel ended after {len(received)} datagrams")
    if sorted(received) != sorted(sent):
        raise AssertionError("the echoed datagrams differ from the ones sent")
    sock.close()
    return f"{len(sent)} datagrams echoed in capsules, status 101"


def check_refuse(args, authority, expected):
    sock = connect(args)
    sock.sendall(
        f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{token_line(args.token)}\r\n".encode()
    )
    status, fields, _ = read_head(sock, args.timeout)
    if status != expected:
        raise AssertionError(f"expected {expected}, got {status}")
    if fields.get("connection") != ["close"]:
        raise AssertionError(f"connection: {fields.get('connection')!r}, not close")
    sock.settimeout(args.timeout)
    while sock.recv(CHUNK):
        pass
    return f"status {status}, proxy-status: {fields.get('proxy-status')}, then closed"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edge", required=True, help="HOST:PORT of veil server's TCP listener")
    parser.add_argument("--pin", required=True, help="sha256:HEX the edge printed")
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--token", help="bearer token; none: no Proxy-Authorization")
    parser.add_argument("--echo", action="append", default=[], metavar="AUTHORITY")
    parser.add_argument("--udp-echo", action="append", default=[], metavar="HOST:PORT")
    parser.add_argument("--refuse", action="append", default=[], metavar="AUTHORITY=STATUS")
    parser.add_argument("--size", type=int, default=64 << 20, help="bytes per echo check")
    parser.add_argument("--datagrams", type=int, default=50, help="datagrams per UDP check")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per step")
    args = parser.parse_args()

    checks = [("echo", target, lambda t=target: check_echo(args, t)) for target in args.echo]
    checks += [("udp-echo", t, lambda t=t: check_udp_echo(args, t)) for t in args.udp_echo]
    for spec in args.refuse:
        authority, _, status = spec.rpartition("=")
        checks.append(("refuse", authority, lambda a=authority, s=status: check_refuse(args, a, s)))
    failed = 0
    for name, target, run in checks:
        try:
            print(f"ok {name} {target} {run()}", flush=True)
        except Exception as error:  # one line per failed check, then the next check
            failed += 1
            print(f"FAIL {name} {target}: {type(error).__name__}: {error}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
