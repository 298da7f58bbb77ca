#!/usr/bin/env python3
"""Interop: HTTP/3 CONNECT (RFC 9114 §4.4) against `veil server` from aioquic, a QUIC and
HTTP/3 implementation nobody on this project wrote.

Every check runs on one QUIC connection, one request stream each, and prints one line:
`ok <check> <authority> ...` or `FAIL <check> <authority>: <why>`. The exit status is 0
only when every check passed; examples/veil/tests/e2e_interop.rs drives this script.

  --echo AUTHORITY            CONNECT (plain, not extended: `:method CONNECT` and
                              `:authority` only), expect 2xx, send random bytes to the TCP
                              echo target behind it, expect the same bytes back, then
                              finish the stream and expect the target's FIN in return.
  --refuse AUTHORITY=STATUS[:ERROR][|STATUS[:ERROR]...]
                              CONNECT, expect that status (or one of those listed); with
                              ERROR, expect a `proxy-status` field whose error parameter
                              is ERROR (RFC 9209); a 407 must also carry
                              `proxy-authenticate: Bearer`.

The edge's self-signed certificate is checked against --pin (SHA-256 of its DER), before
any request carries the token.
"""

import argparse
import asyncio
import hashlib
import os
import ssl
import sys

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamReset
from cryptography.hazmat.primitives.serialization import Encoding


class StreamEnd(Exception):
    """The peer reset a request stream."""


class ConnectClient(QuicConnectionProtocol):
    """An HTTP/3 client that hands each request stream's events to its own queue."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.queues = {}

    def quic_event_received(self, event):
        if isinstance(event, StreamReset):
            queue = self.queues.get(event.stream_id)
            if queue is not None:
                queue.put_nowait(event)
            return
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, (HeadersReceived, DataReceived)):
                queue = self.queues.get(h3_event.stream_id)
                if queue is not None:
                    queue.put_nowait(h3_event)

    def open_connect(self, authority, token):
        """Sends a CONNECT request's headers; returns the stream id and its event queue."""
        stream_id = self._quic.get_next_available_stream_id()
        queue = asyncio.Queue()
        self.queues[stream_id] = queue
        headers = [(b":method", b"CONNECT"), (b":authority", authority.encode())]
        if token is not None:
            headers.append((b"proxy-authorization", b"Bearer " + token.encode()))
        self.h3.send_headers(stream_id, headers, end_stream=False)
        self.transmit()
        return stream_id, queue

    def send(self, stream_id, data, end_stream=False):
        self.h3.send_data(stream_id, data, end_stream=end_stream)
        self.transmit()


async def next_event(queue, timeout):
    event = await asyncio.wait_for(queue.get(), timeout)
    if isinstance(event, StreamReset):
        raise StreamEnd(f"stream reset by the edge (code {event.error_code:#x})")
    return event


async def response_headers(queue, timeout):
    """The response's header fields as a dict of lowercase str; and whether it ended."""
    event = await next_event(queue, timeout)
    if not isinstance(event, HeadersReceived):
        raise AssertionError(f"expected response headers first, got {event!r}")
    fields = {}
    for name, value in event.headers:
        fields[name.decode().lower()] = value.decode()
    return fields, event.stream_ended


def proxy_status_error(field):
    """The `error` parameter of the first Proxy-Status member (RFC 9209 §2)."""
    member = field.split(",")[0]
    for parameter in member.split(";")[1:]:
        key, _, value = parameter.strip().partition("=")
        if key == "error":
            return value.strip('"')
    return None


async def check_echo(client, authority, token, size, timeout):
    stream_id, queue = client.open_connect(authority, token)
    fields, ended = await response_headers(queue, timeout)
    status = fields.get(":status", "")
    if not status.startswith("2") or ended:
        raise AssertionError(
            f"expected 2xx and an open stream, got {status} (ended={ended}, "
            f"proxy-status={fields.get('proxy-status')!r})"
        )
    payload = os.urandom(size)
    client.send(stream_id, payload)
    echoed = bytearray()
    while len(echoed) < len(payload):
        event = await next_event(queue, timeout)
        if isinstance(event, DataReceived):
            echoed += event.data
            if event.stream_ended and len(echoed) < len(payload):
                raise AssertionError(f"stream ended after {len(echoed)} of {size} bytes")
    if bytes(echoed) != payload:
        raise AssertionError("the echoed bytes differ from the bytes sent")
    # Our FIN becomes the target's read EOF; the echo target then closes, and its FIN must
    # come back as the end of the response stream.
    client.send(stream_id, b"", end_stream=True)
    while True:
        event = await next_event(queue, timeout)
        if isinstance(event, DataReceived):
            if event.data:
                raise AssertionError(f"{len(event.data)} unexpected bytes after the echo")
            if event.stream_ended:
                break
        elif isinstance(event, HeadersReceived) and event.stream_ended:
            break
    return f"{size} bytes echoed, FIN both ways, status {status}"


async def check_refuse(client, authority, token, expected, timeout):
    _, queue = client.open_connect(authority, token)
    fields, _ = await response_headers(queue, timeout)
    got = fields.get(":status")
    proxy_status = fields.get("proxy-status")
    error = proxy_status_error(proxy_status) if proxy_status is not None else None
    if not any(got == status and want in (None, error) for status, want in expected):
        wanted = " or ".join(f"{s}" + (f" error={e}" if e else "") for s, e in expected)
        raise AssertionError(f"expected {wanted}, got {got} proxy-status: {proxy_status}")
    if got == "407" and fields.get("proxy-authenticate", "").split(" ")[0] != "Bearer":
        raise AssertionError(
            f"a 407 without proxy-authenticate: Bearer ({fields.get('proxy-authenticate')!r})"
        )
    return f"status {got} proxy-status: {proxy_status}"


def check_pin(client, pin):
    certificate = client._quic.tls._peer_certificate
    if certificate is None:
        raise AssertionError("the edge sent no certificate")
    fingerprint = "sha256:" + hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()
    if fingerprint != pin:
        raise AssertionError(f"the edge's certificate is {fingerprint}, not the pinned {pin}")


def parse_refusal(text):
    authority, sep, expected = text.rpartition("=")
    if not sep or not expected:
        raise argparse.ArgumentTypeError(f"{text!r}: want AUTHORITY=STATUS[:ERROR]")
    outcomes = []
    for outcome in expected.split("|"):
        status, _, error = outcome.partition(":")
        outcomes.append((status, error or None))
    return authority, outcomes


async def run(args):
    host, _, port = args.edge.rpartition(":")
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        server_name=args.server_name,
        verify_mode=ssl.CERT_NONE,  # checked by pin below, before the token is sent
        idle_timeout=args.timeout,
    )
    failures = 0
    async with connect(
        host, int(port), configuration=configuration, create_protocol=ConnectClient
    ) as client:
        try:
            check_pin(client, args.pin)
        except AssertionError as e:
            print(f"FAIL pin {args.edge}: {e}", flush=True)
            return len(args.echo) + len(args.refuse)
        checks = [
            ("echo", authority, check_echo(client, authority, args.token, args.size, args.timeout))
            for authority in args.echo
        ] + [
            (
                "refuse",
                authority,
                check_refuse(client, authority, args.token, expected, args.timeout),
            )
            for authority, expected in args.refuse
        ]
        for name, authority, check in checks:
            try:
                print(f"ok {name} {authority}: {await check}", flush=True)
            except (AssertionError, StreamEnd, asyncio.TimeoutError) as e:
                failures += 1
                print(f"FAIL {name} {authority}: {e or type(e).__name__}", flush=True)
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edge", required=True, help="HOST:PORT of veil server (UDP)")
    parser.add_argument("--pin", required=True, help="sha256:HEX the edge printed")
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--token", help="bearer token; none: no proxy-authorization")
    parser.add_argument("--echo", action="append", default=[], metavar="AUTHORITY")
    parser.add_argument(
        "--refuse", action="append", default=[], type=parse_refusal, metavar="AUTH=STATUS[:ERROR]"
    )
    parser.add_argument("--size", type=int, default=1 << 20, help="bytes per echo check")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per step")
    args = parser.parse_args()
    if not args.echo and not args.refuse:
        parser.error("nothing to check: give --echo and/or --refuse")
    failures = asyncio.run(run(args))
    total = len(args.echo) + len(args.refuse)
    print(f"aioquic: {total - failures} of {total} checks passed", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
