#!/usr/bin/env python3
"""Interop: HTTP/2 CONNECT (RFC 9113 §8.5) and extended CONNECT for connect-udp (RFC 8441,
RFC 9298 over HTTP/2) against `veil server --listen-tcp`, from Python's `h2` (the HTTP/2
state machine of the python-hyper project), an implementation nobody on this project wrote.

Every check runs on one TLS connection (ALPN h2), one stream each, and prints one line:
`ok <check> <target> ...` or `FAIL <check> <target>: <why>`. The exit status is 0 only
when every check passed; examples/veil/tests/e2e_h2.rs drives this script.

  --echo AUTHORITY        CONNECT, expect 2xx, send --size random bytes to the TCP echo
                          target (respecting HTTP/2 flow control both ways), expect the same
                          bytes back, end the stream and expect the target's end in return.
  --udp-echo HOST:PORT    extended CONNECT (`:protocol connect-udp`), expect 2xx with
                          `capsule-protocol: ?1`, send --datagrams UDP payloads as DATAGRAM
                          capsules (RFC 9297 §3.5) to the UDP echo target, expect each back.
  --refuse AUTHORITY=STATUS[:ERROR]
                          CONNECT, expect that status (and Proxy-Status error).

With --proxy-v2 SRC_IP:PORT the connection starts with a PROXY protocol v2 header (as a
load balancer in front of the edge sends it, built here from the specification) naming that
client, before TLS.

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

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from masque_common import (
    CAPSULE_DATAGRAM,
    CapsuleDecoder,
    datagram_capsule,
    expand_template,
    http_datagram_payload,
    proxy_status_error,
    udp_http_datagram,
    DEFAULT_TEMPLATE,
)


class Client:
    """One HTTP/2 connection over TLS, pumped by hand: events are kept per stream."""

    def __init__(self, edge, server_name, timeout, proxy_v2=None):
        host, _, port = edge.rpartition(":")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # checked by pin below
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        if proxy_v2 is not None:
            raw.sendall(proxy_v2_header(proxy_v2, raw.getpeername()))
        self.sock = context.wrap_socket(raw, server_hostname=server_name)
        if self.sock.selected_alpn_protocol() != "h2":
            raise AssertionError(f"ALPN chose {self.sock.selected_alpn_protocol()!r}, not h2")
        self.timeout = timeout
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.conn.initiate_connection()
        self.flush()
        self.events = {}
        self.settings_seen = False

    def certificate_pin(self):
        der = self.sock.getpeercert(binary_form=True)
        return "sha256:" + hashlib.sha256(der).hexdigest()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, wait):
        """Reads what arrived (waiting up to `wait` seconds), feeds h2, files its events."""
        ready, _, _ = select.select([self.sock], [], [], wait)
        if not ready and not self.sock.pending():
            return
        data = self.sock.recv(65536)
        if not data:
            raise AssertionError("the edge closed the connection")
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                self.settings_seen = True
            stream = getattr(event, "stream_id", None)
            if stream:
                self.events.setdefault(stream, []).append(event)
            if isinstance(event, h2.events.DataReceived):
                # Consumed at once: credit goes back so that the edge can keep sending.
                self.conn.acknowledge_received_data(event.flow_controlled_length, stream)
            if isinstance(event, h2.events.ConnectionTerminated):
                raise AssertionError(f"GOAWAY from the edge: {event.error_code!r}")
        self.flush()

    def next_event(self, stream):
        deadline = time.monotonic() + self.timeout
        while not self.events.get(stream):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no event on stream {stream} for {self.timeout} s")
            self.pump(left)
        return self.events[stream].pop(0)

    def wait_settings(self):
        deadline = time.monotonic() + self.timeout
        while not self.settings_seen:
            if time.monotonic() > deadline:
                raise AssertionError("no SETTINGS from the edge")
            self.pump(0.5)

    def request(self, headers):
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, headers, end_stream=False)
        self.flush()
        return stream

    def response(self, stream):
        """The response's fields as a dict of str, and whether the stream ended with them."""
        event = self.next_event(stream)
        if isinstance(event, h2.events.StreamReset):
            raise AssertionError(f"stream reset by the edge ({event.error_code!r})")
        if not isinstance(event, h2.events.ResponseReceived):
            raise AssertionError(f"expected a response first, got {event!r}")
        fields = {n.decode().lower(): v.decode() for n, v in event.headers}
        ended = bool(event.stream_ended)
        if not ended and self.events.get(stream):
            ended = isinstance(self.events[stream][0], h2.events.StreamEnded)
        return fields, ended

    def send(self, stream, data, end_stream=False):
        """Sends all of `data`, as flow control allows, reading meanwhile."""
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        while view:
            room = min(
                self.conn.local_flow_control_window(stream),
                self.conn.max_outbound_frame_size,
                len(view),
            )
            if room <= 0:
                if time.monotonic() > deadline:
                    raise AssertionError("no flow-control credit from the edge")
                self.pump(0.05)
                continue
            self.conn.send_data(stream, bytes(view[:room]))
            view = view[room:]
            self.flush()
            self.pump(0)
        if end_stream:
            self.conn.end_stream(stream)
            self.flush()


def proxy_v2_header(source, destination):
    """A PROXY protocol v2 header (proxy-protocol.txt §2.2): PROXY command, TCP over IPv4."""
    src_ip, _, src_port = source.rpartition(":")
    dst_ip, dst_port = destination[0], destination[1]
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    addresses = (
        socket.inet_aton(src_ip)
        + socket.inet_aton(dst_ip)
        + int(src_port).to_bytes(2, "big")
        + int(dst_port).to_bytes(2, "big")
    )
    # Version 2, command PROXY (0x21); AF_INET, STREAM (0x11); then the length.
    return signature + bytes([0x21, 0x11]) + len(addresses).to_bytes(2, "big") + addresses


def token_header(token):
    return [(b"proxy-authorization", b"Bearer " + token.encode())] if token else []


def check_echo(client, authority, token, size):
    stream = client.request([(b":method", b"CONNECT"), (b":authority", authority.encode())]
                            + token_header(token))
    fields, ended = client.response(stream)
    status = fields.get(":status", "")
    if not status.startswith("2") or ended:
        raise AssertionError(f"expected 2xx and an open stream, got {status} (ended={ended})")
    payload = os.urandom(size)
    client.send(stream, payload)
    echoed = bytearray()
    while len(echoed) < size:
        event = client.next_event(stream)
        if isinstance(event, h2.events.DataReceived):
            echoed += event.data
        elif isinstance(event, h2.events.StreamEnded):
            raise AssertionError(f"stream ended after {len(echoed)} of {size} bytes")
        elif isinstance(event, h2.events.StreamReset):
            raise AssertionError(f"stream reset after {len(echoed)} of {size} bytes")
    if bytes(echoed) != payload:
        raise AssertionError("the echoed bytes differ from the bytes sent")
    client.send(stream, b"", end_stream=True)
    while True:
        event = client.next_event(stream)
        if isinstance(event, h2.events.DataReceived) and event.data:
            raise AssertionError(f"{len(event.data)} unexpected bytes after the echo")
        if isinstance(event, h2.events.StreamEnded):
            break
        if isinstance(event, h2.events.StreamReset):
            raise AssertionError(f"reset instead of the target's end ({event.error_code!r})")
    return f"{size} bytes echoed, END_STREAM both ways, status {status}"


def check_udp_echo(client, target, args):
    client.wait_settings()
    if client.conn.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) != 1:
        raise AssertionError("the edge did not send SETTINGS_ENABLE_CONNECT_PROTOCOL = 1")
    host, _, port = target.rpartition(":")
    path = expand_template(DEFAULT_TEMPLATE, host.strip("[]"), int(port))
    stream = client.request(
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"connect-udp"),
            (b":scheme", b"https"),
            (b":path", path.encode()),
            (b":authority", args.server_name.encode()),
            (b"capsule-protocol", b"?1"),
        ]
        + token_header(args.token)
    )
    fields, ended = client.response(stream)
    status = fields.get(":status", "")
    if not status.startswith("2") or ended:
        raise AssertionError(f"expected 2xx and an open stream, got {status}")
    if fields.get("capsule-protocol") != "?1":
        raise AssertionError(f"no capsule-protocol: ?1 ({fields.get('capsule-protocol')!r})")
    sent = [os.urandom(64 + i * 37 % 1100) for i in range(args.datagrams)]
    for payload in sent:
        client.send(stream, datagram_capsule(udp_http_datagram(payload)))
    decoder = CapsuleDecoder()
    received = []
    while len(received) < len(sent):
        event = client.next_event(stream)
        if isinstance(event, h2.events.DataReceived):
            for capsule_type, value in decoder.feed(event.data):
                if capsule_type != CAPSULE_DATAGRAM:
                    continue
                parsed = http_datagram_payload(value)
                if parsed is None or parsed[0] != 0:
                    raise AssertionError(f"a malformed or unknown-context datagram: {value!r}")
                received.append(parsed[1])
        elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
            raise AssertionError(f"stream over after {len(received)} of {len(sent)} datagrams")
    if sorted(received) != sorted(sent):
        raise AssertionError("the echoed datagrams differ from the ones sent")
    client.conn.end_stream(stream)
    client.flush()
    return f"{len(sent)} datagrams echoed in capsules, status {status}"


def check_refuse(client, authority, token, expected):
    stream = client.request([(b":method", b"CONNECT"), (b":authority", authority.encode())]
                            + token_header(token))
    fields, _ = client.response(stream)
    got = fields.get(":status")
    proxy_status = fields.get("proxy-status")
    error = proxy_status_error(proxy_status) if proxy_status is not None else None
    if not any(got == status and want in (None, error) for status, want in expected):
        raise AssertionError(f"expected {expected}, got {got} proxy-status: {proxy_status}")
    return f"status {got} proxy-status: {proxy_status}"


def parse_refusal(text):
    authority, sep, expected = text.rpartition("=")
    if not sep or not expected:
        raise argparse.ArgumentTypeError(f"{text!r}: want AUTHORITY=STATUS[:ERROR]")
    outcomes = []
    for outcome in expected.split("|"):
        status, _, error = outcome.partition(":")
        outcomes.append((status, error or None))
    return authority, outcomes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edge", required=True, help="HOST:PORT of veil server's TCP listener")
    parser.add_argument("--pin", required=True, help="sha256:HEX the edge printed")
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--token", help="bearer token; none: no proxy-authorization")
    parser.add_argument("--echo", action="append", default=[], metavar="AUTHORITY")
    parser.add_argument("--udp-echo", action="append", default=[], metavar="HOST:PORT")
    parser.add_argument(
        "--refuse", action="append", default=[], type=parse_refusal, metavar="AUTH=STATUS[:ERROR]"
    )
    parser.add_argument("--size", type=int, default=1 << 20, help="bytes per echo check")
    parser.add_argument("--datagrams", type=int, default=50, help="datagrams per UDP check")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per step")
    parser.add_argument("--proxy-v2", metavar="SRC_IP:PORT", help="send a PROXY v2 header first")
    args = parser.parse_args()
    total = len(args.echo) + len(args.udp_echo) + len(args.refuse)
    if not total:
        parser.error("nothing to check")
    client = Client(args.edge, args.server_name, args.timeout, args.proxy_v2)
    pin = client.certificate_pin()
    if pin != args.pin:
        print(f"FAIL pin {args.edge}: the edge's certificate is {pin}, not {args.pin}")
        sys.exit(1)
    checks = (
        [("echo", a, lambda a=a: check_echo(client, a, args.token, args.size)) for a in args.echo]
        + [("udp-echo", t, lambda t=t: check_udp_echo(client, t, args)) for t in args.udp_echo]
        + [
            ("refuse", a, lambda a=a, e=e: check_refuse(client, a, args.token, e))
            for a, e in args.refuse
        ]
    )
    failures = 0
    for name, target, check in checks:
        try:
            print(f"ok {name} {target}: {check()}", flush=True)
        except (AssertionError, OSError, h2.exceptions.ProtocolError) as e:
            failures += 1
            print(f"FAIL {name} {target}: {e or type(e).__name__}", flush=True)
    print(f"h2: {total - failures} of {total} checks passed", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
