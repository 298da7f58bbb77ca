#!/usr/bin/env python3
"""SOCKS5 UDP ASSOCIATE through `veil client`, driven by PySocks (a SOCKS client nobody
here wrote).

One PySocks UDP socket (one association) sends datagrams to every --target in turn and
expects each back from a UDP echo server that prefixes its tag: the payload must come
back whole, from the address it was sent to. Prints `ok TARGET N` per target; exits 1 on
the first failure. Every wait is bounded.
"""

import argparse
import socket
import sys

import socks

TIMEOUT_S = 3.0
TRIES = 3


def host_port(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy", required=True, type=host_port)
    parser.add_argument("--target", action="append", required=True, type=host_port)
    parser.add_argument("--tag", required=True, help="prefix the echo server adds")
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    tag = args.tag.encode()

    sock = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.set_proxy(socks.SOCKS5, args.proxy[0], args.proxy[1], rdns=True)
    sock.settimeout(TIMEOUT_S)
    try:
        for target in args.target:
            for i in range(args.count):
                # Sizes from 1 byte to about 1 KiB: what fits in a QUIC datagram.
                payload = (b"%s#%d:" % (target[0].encode(), i)) * (1 + i * 7)
                payload = payload[: 1 + (i * 53) % 1100]
                echo(sock, target, payload, tag)
            print("ok %s:%d %d" % (target[0], target[1], args.count), flush=True)
    finally:
        sock.close()


def echo(sock, target, payload, tag):
    """Sends `payload` to `target` until its echo comes back (UDP may drop)."""
    for _ in range(TRIES):
        sock.sendto(payload, target)
        try:
            while True:
                data, source = sock.recvfrom(70000)
                if data == tag + payload:
                    # PySocks gives a domain-name source as bytes.
                    host, port = source
                    if isinstance(host, bytes):
                        host = host.decode()
                    if (host, port) != target:
                        fail("answer from %r, expected %r" % (source, target))
                    return
                # An earlier try's late echo: read on.
        except socket.timeout:
            continue
    fail("no echo from %s:%d for a %d-byte datagram" % (target[0], target[1], len(payload)))


def fail(message):
    print("FAIL " + message, flush=True)
    sys.exit(1)


if __name__ == "__main__":
    main()
