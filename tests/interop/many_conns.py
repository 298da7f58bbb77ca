#!/usr/bin/env python3
"""Many idle HTTP/3 clients for `veil server`, from aioquic: opens --connections QUIC
connections (--batch at a time), one CONNECT tunnel to --target on each, waits for every
200, then holds them all open for --hold seconds and prints one line
`many: N connections, M tunnels open, S s to open` so that whoever runs it can read the
edge's memory meanwhile (docs/RELIABILITY.md "A thousand connections"). It checks nothing
itself.
"""

import argparse
import asyncio
import ssl
import sys
import time

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration


class Holder(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.status = asyncio.get_running_loop().create_future()

    def quic_event_received(self, event):
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived) and not self.status.done():
                status = dict(h3_event.headers).get(b":status", b"?").decode()
                self.status.set_result(status)


async def one(args, host, port, opened, stop):
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        server_name=args.server_name,
        verify_mode=ssl.CERT_NONE,  # loopback, an edge the caller started
        idle_timeout=args.hold + 60,
    )
    async with connect(host, port, configuration=configuration, create_protocol=Holder) as client:
        headers = [(b":method", b"CONNECT"), (b":authority", args.target.encode())]
        if args.token:
            headers.append((b"proxy-authorization", b"Bearer " + args.token.encode()))
        stream = client._quic.get_next_available_stream_id()
        client.h3.send_headers(stream, headers, end_stream=False)
        client.transmit()
        status = await asyncio.wait_for(client.status, 30)
        opened.append(status)
        await stop.wait()


async def run(args):
    host, _, port = args.edge.rpartition(":")
    opened, stop, tasks = [], asyncio.Event(), []
    started = time.monotonic()
    for _ in range(args.connections):
        tasks.append(asyncio.ensure_future(one(args, host, int(port), opened, stop)))
        while len(tasks) - len(opened) >= args.batch:
            await asyncio.sleep(0.01)
            if any(t.done() and t.exception() for t in tasks):
                break
    while len(opened) < args.connections and not any(t.done() for t in tasks):
        await asyncio.sleep(0.05)
    took = time.monotonic() - started
    ok = sum(1 for s in opened if s == "200")
    print(
        f"many: {args.connections} connections, {ok} tunnels open, {took:.1f} s to open",
        flush=True,
    )
    await asyncio.sleep(args.hold)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edge", required=True, help="HOST:PORT of veil server (UDP)")
    parser.add_argument("--target", required=True, help="HOST:PORT each tunnel reaches")
    parser.add_argument("--token")
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--hold", type=float, default=20.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
