#!/usr/bin/env python3
"""Interop: CONNECT-UDP (RFC 9298) against `veil server` from aioquic, a QUIC and HTTP/3
implementation nobody on this project wrote.

Every check runs on one QUIC connection, one request stream each, and prints one line:
`ok <check> <what> ...` or `FAIL <check> <what>: <why>`. The exit status is 0 only when
every check passed; examples/veil/tests/e2e_interop_udp.rs drives this script.

  --echo HOST:PORT      Extended CONNECT (`:protocol connect-udp`, RFC 9220) to the UDP echo
                        target HOST:PORT; expect 2xx with `capsule-protocol: ?1`; send
                        --count UDP payloads of several sizes as HTTP datagrams (quarter
                        stream id, context id 0) and expect each one back, byte for byte;
                        a payload under an unknown context id must not come back (RFC 9298
                        §4: dropped); then finish the stream and expect the proxy's FIN.
                        Several --echo checks run at once, on their own streams.
  --refuse HOST:PORT=STATUS[:ERROR]
                        Expect that status (and, with ERROR, a `proxy-status` whose error
                        parameter is ERROR; RFC 9209); a 407 must carry
                        `proxy-authenticate: Bearer`.
  --refuse-path PATH=STATUS[:ERROR]
                        The same with a raw `:path` instead of the template's expansion.

--mode datagrams announces SETTINGS_H3_DATAGRAM and QUIC DATAGRAM support, so payloads ride
QUIC DATAGRAM frames; --mode capsules announces neither, so both sides must fall back to
DATAGRAM capsules on the request stream (RFC 9297 §3.5).
"""

import argparse
import asyncio
import os
import ssl
import sys

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.h3.connection import H3_ALPN
from aioquic.h3.events import DataReceived, DatagramReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamReset

from masque_common import (
    CAPSULE_DATAGRAM,
    CONTEXT_UDP,
    DEFAULT_TEMPLATE,
    MAX_DATAGRAM_FRAME,
    CapsuleDecoder,
    DatagramH3Connection,
    certificate_pin,
    datagram_capsule,
    expand_template,
    header_dict,
    http_datagram_payload,
    proxy_status_error,
    udp_http_datagram,
)

# Payload sizes the echo check cycles through: from one byte to what fits in one QUIC
# DATAGRAM frame of aioquic's default 1200-byte packets.
SIZES = (1, 8, 64, 512, 1024, 1100)
# Rounds of resending payloads whose echo has not come back (UDP may lose some).
SEND_ROUNDS = 5
# A context id nobody registered on these tunnels: its datagrams must be dropped.
UNKNOWN_CONTEXT = 7


class StreamEnd(Exception):
    """The peer reset a request stream."""


class UdpClient(QuicConnectionProtocol):
    """An HTTP/3 client that hands each request stream's events to its own queue."""

    def __init__(self, *args, datagrams, **kwargs):
        super().__init__(*args, **kwargs)
        # Before the handshake, so that the proxy's SETTINGS are never missed.
        self.h3 = DatagramH3Connection(self._quic, datagrams=datagrams)
        self.streams = {}

    def quic_event_received(self, event):
        if isinstance(event, StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.events.put_nowait(event)
            return
        for h3_event in self.h3.handle_event(event):
            stream = self.streams.get(h3_event.stream_id)
            if stream is None:
                continue
            if isinstance(h3_event, DatagramReceived):
                stream.datagram(h3_event.data)
            elif isinstance(h3_event, DataReceived):
                stream.data(h3_event)
            elif isinstance(h3_event, HeadersReceived):
                stream.events.put_nowait(h3_event)

    def open_udp(self, path, authority, token):
        """Sends a CONNECT-UDP request's headers; returns its stream."""
        stream_id = self._quic.get_next_available_stream_id()
        stream = UdpStream(self, stream_id)
        self.streams[stream_id] = stream
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", b"connect-udp"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            (b"capsule-protocol", b"?1"),
        ]
        if token is not None:
            headers.append((b"proxy-authorization", b"Bearer " + token.encode()))
        self.h3.send_headers(stream_id, headers, end_stream=False)
        self.transmit()
        return stream


class UdpStream:
    """One request stream: its headers and stream events in a queue, its UDP payloads
    (from QUIC DATAGRAMs or from DATAGRAM capsules) in another."""

    def __init__(self, client, stream_id):
        self.client = client
        self.stream_id = stream_id
        self.events = asyncio.Queue()
        self.payloads = asyncio.Queue()
        self.capsules = CapsuleDecoder()
        self.foreign_contexts = 0

    def datagram(self, data):
        parsed = http_datagram_payload(data)
        if parsed is None:
            return
        context, payload = parsed
        if context == CONTEXT_UDP:
            self.payloads.put_nowait(payload)
        else:
            self.foreign_contexts += 1

    def data(self, event):
        for capsule_type, value in self.capsules.feed(event.data):
            if capsule_type == CAPSULE_DATAGRAM:
                self.datagram(value)
        if event.stream_ended:
            self.events.put_nowait(event)

    def send_payload(self, payload, context=CONTEXT_UDP, capsules=False):
        http_payload = udp_http_datagram(payload, context)
        if capsules:
            self.client.h3.send_data(self.stream_id, datagram_capsule(http_payload), False)
        else:
            self.client.h3.send_datagram(self.stream_id, http_payload)
        self.client.transmit()

    def finish(self):
        self.client.h3.send_data(self.stream_id, b"", end_stream=True)
        self.client.transmit()


async def next_event(queue, timeout):
    event = await asyncio.wait_for(queue.get(), timeout)
    if isinstance(event, StreamReset):
        raise StreamEnd(f"stream reset by the proxy (code {event.error_code:#x})")
    return event


async def response(stream, timeout):
    """The response's header fields and whether the response ended the stream."""
    event = await next_event(stream.events, timeout)
    if not isinstance(event, HeadersReceived):
        raise AssertionError(f"expected response headers first, got {event!r}")
    return header_dict(event.headers), event.stream_ended


async def check_echo(client, args, target):
    host, _, port = target.rpartition(":")
    path = expand_template(args.template, host.strip("[]"), int(port))
    stream = client.open_udp(path, args.authority, args.token)
    fields, ended = await response(stream, args.timeout)
    status = fields.get(":status", "")
    if not status.startswith("2") or ended:
        raise AssertionError(
            f"expected 2xx and an open stream, got {status} (ended={ended}, "
            f"proxy-status={fields.get('proxy-status')!r})"
        )
    if fields.get("capsule-protocol") != "?1":
        raise AssertionError(
            f"a 2xx without capsule-protocol: ?1 ({fields.get('capsule-protocol')!r})"
        )
    capsules = args.mode == "capsules"
    # An unknown context id first: if the proxy forwarded it, its echo would come back.
    stray = b"stray-context-" + os.urandom(16)
    stream.send_payload(stray, context=UNKNOWN_CONTEXT, capsules=capsules)

    sent = {}
    for index in range(args.count):
        size = max(SIZES[index % len(SIZES)], 4)
        sent[index] = index.to_bytes(4, "big") + os.urandom(size - 4)
    missing = set(sent)
    resent = 0
    for round_ in range(SEND_ROUNDS):
        for index in sorted(missing):
            stream.send_payload(sent[index], capsules=capsules)
            if round_ > 0:
                resent += 1
            if index % 32 == 31:
                await asyncio.sleep(0)  # let the loop send and receive in between
        deadline = asyncio.get_running_loop().time() + args.round_timeout
        while missing:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                payload = await asyncio.wait_for(stream.payloads.get(), left)
            except asyncio.TimeoutError:
                break
            if payload == stray:
                raise AssertionError("a payload sent under an unknown context id came back")
            index = int.from_bytes(payload[:4], "big") if len(payload) >= 4 else -1
            if sent.get(index) != payload:
                raise AssertionError(f"an echo matching no payload sent ({len(payload)} bytes)")
            missing.discard(index)
        if not missing:
            break
    if missing:
        raise AssertionError(
            f"{len(missing)} of {args.count} payloads never came back in {SEND_ROUNDS} rounds"
        )
    # Echoes still in flight (duplicates from resends, or the stray) are read now.
    await asyncio.sleep(0.2)
    while not stream.payloads.empty():
        if stream.payloads.get_nowait() == stray:
            raise AssertionError("a payload sent under an unknown context id came back")
    if stream.foreign_contexts:
        raise AssertionError(f"{stream.foreign_contexts} datagrams with a context id not 0")
    # RFC 9298 §3: the tunnel lives as long as the request stream; ending ours must end
    # the proxy's side as well.
    stream.finish()
    while True:
        event = await next_event(stream.events, args.timeout)
        if getattr(event, "stream_ended", False):
            break
    return (
        f"{args.count} payloads of {min(SIZES)}–{max(SIZES)} bytes echoed via {args.mode} "
        f"({resent} resent), unknown context dropped, FIN both ways, status {status}"
    )


async def check_refuse(client, args, path, expected):
    stream = client.open_udp(path, args.authority, args.token)
    fields, _ = await response(stream, args.timeout)
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


def parse_expectation(text, what):
    subject, sep, expected = text.rpartition("=")
    if not sep or not subject or not expected:
        raise argparse.ArgumentTypeError(f"{text!r}: want {what}=STATUS[:ERROR]")
    outcomes = []
    for outcome in expected.split("|"):
        status, _, error = outcome.partition(":")
        outcomes.append((status, error or None))
    return subject, outcomes


async def guarded(name, subject, check):
    try:
        return True, f"ok {name} {subject}: {await check}"
    except (AssertionError, StreamEnd, asyncio.TimeoutError) as e:
        return False, f"FAIL {name} {subject}: {e or type(e).__name__}"


async def run(args):
    host, _, port = args.edge.rpartition(":")
    datagrams = args.mode == "datagrams"
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        server_name=args.server_name,
        verify_mode=ssl.CERT_NONE,  # checked by pin below, before the token is sent
        idle_timeout=args.timeout,
        max_datagram_frame_size=MAX_DATAGRAM_FRAME if datagrams else None,
    )
    total = len(args.echo) + len(args.refuse) + len(args.refuse_path)
    failures = 0
    async with connect(
        host,
        int(port),
        configuration=configuration,
        create_protocol=lambda *a, **kw: UdpClient(*a, datagrams=datagrams, **kw),
    ) as client:
        certificate = client._quic.tls._peer_certificate
        if args.pin is not None:
            got = certificate_pin(certificate) if certificate is not None else None
            if got != args.pin:
                print(f"FAIL pin {args.edge}: certificate {got}, pinned {args.pin}", flush=True)
                return total
        # The proxy's SETTINGS decide between datagrams and capsules: wait for them.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.timeout
        while not client.h3.settings_received() and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if datagrams and not client.h3.peer_takes_datagrams():
            print(f"FAIL settings {args.edge}: the proxy did not announce H3_DATAGRAM", flush=True)
            return total
        # Echo checks at once (each on its own stream, demultiplexed by quarter stream id),
        # refusals one by one after them.
        echoes = await asyncio.gather(
            *(guarded("echo", target, check_echo(client, args, target)) for target in args.echo)
        )
        results = list(echoes)
        for target, expected in args.refuse:
            target_host, _, target_port = target.rpartition(":")
            path = expand_template(args.template, target_host.strip("[]"), target_port)
            results.append(
                await guarded("refuse", target, check_refuse(client, args, path, expected))
            )
        for path, expected in args.refuse_path:
            results.append(
                await guarded("refuse-path", path, check_refuse(client, args, path, expected))
            )
        for ok, line in results:
            print(line, flush=True)
            failures += 0 if ok else 1
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edge", required=True, help="HOST:PORT of the proxy (UDP)")
    parser.add_argument("--pin", help="sha256:HEX of the proxy's certificate")
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--authority", default="localhost", help=":authority of requests")
    parser.add_argument("--token", help="bearer token; none: no proxy-authorization")
    parser.add_argument("--template", default=DEFAULT_TEMPLATE, help="URI template path")
    parser.add_argument("--mode", choices=("datagrams", "capsules"), default="datagrams")
    parser.add_argument("--echo", action="append", default=[], metavar="HOST:PORT")
    parser.add_argument(
        "--refuse", action="append", default=[], metavar="HOST:PORT=STATUS[:ERROR]",
        type=lambda t: parse_expectation(t, "HOST:PORT"),
    )
    parser.add_argument(
        "--refuse-path", action="append", default=[], metavar="PATH=STATUS[:ERROR]",
        type=lambda t: parse_expectation(t, "PATH"),
    )
    parser.add_argument("--count", type=int, default=300, help="payloads per echo check")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per step")
    parser.add_argument(
        "--round-timeout", type=float, default=2.0, help="seconds to wait for echoes per round"
    )
    args = parser.parse_args()
    if not args.echo and not args.refuse and not args.refuse_path:
        parser.error("nothing to check: give --echo, --refuse and/or --refuse-path")
    failures = asyncio.run(run(args))
    total = len(args.echo) + len(args.refuse) + len(args.refuse_path)
    print(f"aioquic: {total - failures} of {total} checks passed", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
