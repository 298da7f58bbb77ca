#!/usr/bin/env python3
"""A hostile HTTP/3 client for `veil server`, from aioquic: floods one connection for
--seconds, as fast as aioquic and the edge's stream limits let it, and prints one line
`flood MODE: N sent in S s (R/s), ...` with what came back. It checks nothing itself:
examples/veil/tests/e2e_floods.rs measures a well-behaved client beside it and reads the
edge's counters.

  --mode connect     CONNECT requests the edge refuses itself (a forbidden target): the
                     cost of a request that never reaches the host.
  --mode reset       CONNECT requests to --target, each reset right after it is sent
                     (HTTP/3's rapid reset: the host starts a dial for nothing). The edge
                     should close the connection past its bound: the line says with which
                     code.
  --mode datagram    QUIC DATAGRAM frames for request streams that do not exist (closed or
                     never opened tunnels).
  --mode capsule     one connect-udp tunnel to --target, then DATAGRAM capsules on its
                     stream as fast as they go (what the edge must forward or drop).
"""

import argparse
import asyncio
import os
import ssl
import sys
import time

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import H3_ALPN
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated

from masque_common import (
    DEFAULT_TEMPLATE,
    MAX_DATAGRAM_FRAME,
    DatagramH3Connection,
    datagram_capsule,
    expand_template,
    udp_http_datagram,
)


class Flooder(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = DatagramH3Connection(self._quic, datagrams=True)
        self.statuses = {}
        self.closed = None

    def quic_event_received(self, event):
        if isinstance(event, ConnectionTerminated):
            self.closed = event.error_code
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                for name, value in h3_event.headers:
                    if name == b":status":
                        status = value.decode()
                        self.statuses[status] = self.statuses.get(status, 0) + 1

    def request(self, headers):
        stream_id = self._quic.get_next_available_stream_id()
        self.h3.send_headers(stream_id, headers, end_stream=False)
        return stream_id


def token_headers(token):
    return [(b"proxy-authorization", b"Bearer " + token.encode())] if token else []


async def flood(client, args):
    end = time.monotonic() + args.seconds
    sent = 0
    headers_refused = [(b":method", b"CONNECT"), (b":authority", b"169.254.169.254:80")]
    headers_target = [(b":method", b"CONNECT"), (b":authority", args.target.encode())]
    payload = os.urandom(1200)
    capsule_stream = None
    if args.mode == "capsule":
        host, _, port = args.target.rpartition(":")
        path = expand_template(DEFAULT_TEMPLATE, host.strip("[]"), int(port))
        capsule_stream = client.request(
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"connect-udp"),
                (b":scheme", b"https"),
                (b":path", path.encode()),
                (b":authority", args.server_name.encode()),
                (b"capsule-protocol", b"?1"),
            ]
            + token_headers(args.token)
        )
        client.transmit()
        await asyncio.sleep(0.2)
    capsule = datagram_capsule(udp_http_datagram(payload))
    # reset: the requests of the round before, which have reached the edge by now.
    to_reset = []
    while time.monotonic() < end and client.closed is None:
        for stream in to_reset:
            client._quic.reset_stream(stream, 0x10C)
            client._quic.stop_stream(stream, 0x10C)
        to_reset = []
        for _ in range(32):
            try:
                if args.mode == "connect":
                    client.request(headers_refused + token_headers(args.token))
                elif args.mode == "reset":
                    to_reset.append(client.request(headers_target + token_headers(args.token)))
                elif args.mode == "datagram":
                    # Quarter stream ids far above any request stream opened.
                    quarter = 1_000_000 + sent % 1000
                    client._quic.send_datagram_frame(encode_uint_var(quarter) + payload[:1000])
                elif args.mode == "capsule":
                    client.h3.send_data(capsule_stream, capsule, end_stream=False)
                sent += 1
            except Exception:  # stream limits reached, or the tunnel ended: wait
                break
        client.transmit()
        await asyncio.sleep(0.001 if args.mode != "capsule" else 0.0005)
    return sent


async def run(args):
    host, _, port = args.edge.rpartition(":")
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        server_name=args.server_name,
        verify_mode=ssl.CERT_NONE,  # a flooder does not care whom it floods
        idle_timeout=args.seconds + 10,
        max_datagram_frame_size=MAX_DATAGRAM_FRAME,
    )
    started = time.monotonic()
    async with connect(
        host, int(port), configuration=configuration, create_protocol=Flooder
    ) as client:
        await asyncio.sleep(0.1)  # SETTINGS
        sent = await flood(client, args)
        elapsed = time.monotonic() - started
        closed = f"closed by the edge with {client.closed:#x}" if client.closed is not None else "open"
        print(
            f"flood {args.mode}: {sent} sent in {elapsed:.1f} s ({sent / elapsed:.0f}/s), "
            f"statuses {dict(sorted(client.statuses.items()))}, connection {closed}",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edge", required=True, help="HOST:PORT of veil server (UDP)")
    parser.add_argument("--mode", required=True, choices=["connect", "reset", "datagram", "capsule"])
    parser.add_argument("--target", default="127.0.0.1:9", help="HOST:PORT for reset and capsule")
    parser.add_argument("--token")
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--seconds", type=float, default=5.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
