#!/usr/bin/env python3
"""Interop: a minimal CONNECT-UDP proxy (RFC 9298) on aioquic, for `veil client` to talk to.

It is a test fixture, not a product: one process, loopback only, a self-signed certificate
made at start (its SHA-256 pin is printed), an optional bearer token, and targets limited
to IP literals inside `--allow CIDR`. For each accepted request it connects a UDP socket
to the target and relays UDP payloads both ways, as QUIC DATAGRAM frames when both sides
announced SETTINGS_H3_DATAGRAM and as DATAGRAM capsules on the request stream otherwise.

Lines on stdout (examples/veil/tests/e2e_interop_udp.rs reads them):
  masque: certificate fingerprint sha256:HEX
  masque: listening on HOST:PORT
  masque: tunnel STREAM to HOST:PORT open (datagrams|capsules)
  masque: tunnel STREAM refused STATUS ERROR
  masque: tunnel STREAM closed (WHY), N payloads to the target, M back, K too large dropped
It runs until SIGTERM or SIGINT.
"""

import argparse
import asyncio
import datetime
import ipaddress
import signal
import sys

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.h3.connection import H3_ALPN
from aioquic.h3.events import DataReceived, DatagramReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, ProtocolNegotiated, StreamReset
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from masque_common import (
    CAPSULE_DATAGRAM,
    CONTEXT_UDP,
    DEFAULT_TEMPLATE,
    MAX_DATAGRAM_FRAME,
    CapsuleDecoder,
    CapsuleError,
    DatagramH3Connection,
    certificate_pin,
    datagram_capsule,
    header_dict,
    http_datagram_payload,
    parse_target_path,
    udp_http_datagram,
)

# HTTP/3 error codes (RFC 9114 §8.1, RFC 9297 §5.2).
H3_MESSAGE_ERROR = 0x10E
H3_DATAGRAM_ERROR = 0x33
# Datagrams that may wait for a tunnel's socket to be connected.
PENDING_LIMIT = 64
# Bytes of the QUIC packets this proxy sends: veil's own default, so that a 1200-byte UDP
# payload fits in one DATAGRAM frame (aioquic's default, 1200, would not hold it).
PACKET_SIZE = 1350
# Largest HTTP datagram sent as a QUIC DATAGRAM frame: the packet less its short header
# (1 + connection id 8 + packet number 4), AEAD tag 16 and frame header (1 + 2). A larger
# one is dropped and counted: aioquic would keep it at the head of its DATAGRAM queue,
# unsendable, and everything behind it would wait forever.
MAX_HTTP_DATAGRAM = PACKET_SIZE - 32


def log(line):
    print(f"masque: {line}", flush=True)


class TargetSocket(asyncio.DatagramProtocol):
    """The UDP socket towards one target; hands what the target sends to the tunnel."""

    def __init__(self, tunnel):
        self.tunnel = tunnel

    def datagram_received(self, data, addr):
        self.tunnel.from_target(data)

    def error_received(self, exc):
        # ICMP errors (port unreachable...) mean loss to a UDP proxy: nothing to relay.
        pass


class Tunnel:
    """One CONNECT-UDP request stream and its connected UDP socket."""

    def __init__(self, server, stream_id, target, use_datagrams):
        self.server = server
        self.stream_id = stream_id
        self.target = target
        self.use_datagrams = use_datagrams
        self.transport = None
        self.pending = []
        self.capsules = CapsuleDecoder()
        self.to_target = 0
        self.from_target_count = 0
        self.too_large = 0
        self.closed = False

    def to_target_payload(self, payload):
        if self.closed:
            return
        if self.transport is None:
            if len(self.pending) < PENDING_LIMIT:
                self.pending.append(payload)
            return
        self.transport.sendto(payload)
        self.to_target += 1

    def connected(self, transport):
        self.transport = transport
        for payload in self.pending:
            self.transport.sendto(payload)
            self.to_target += 1
        self.pending = []

    def from_target(self, payload):
        if self.closed:
            return
        http_payload = udp_http_datagram(payload)
        if self.use_datagrams:
            if len(http_payload) + 8 > MAX_HTTP_DATAGRAM:  # + quarter stream id
                self.too_large += 1
                return
            self.server.h3.send_datagram(self.stream_id, http_payload)
        else:
            self.server.h3.send_data(
                self.stream_id, datagram_capsule(http_payload), end_stream=False
            )
        self.from_target_count += 1
        self.server.transmit()

    def close(self, why):
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        log(
            f"tunnel {self.stream_id} closed ({why}), {self.to_target} payloads to the "
            f"target, {self.from_target_count} back, {self.too_large} too large dropped"
        )


class MasqueProxy(QuicConnectionProtocol):
    """One QUIC connection of the proxy: HTTP/3 requests in, UDP tunnels out."""

    options = None  # set from the command line before serving

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = None
        self.tunnels = {}

    def quic_event_received(self, event):
        if isinstance(event, ProtocolNegotiated):
            self.h3 = DatagramH3Connection(self._quic, datagrams=self.options.datagrams)
        elif isinstance(event, StreamReset):
            tunnel = self.tunnels.pop(event.stream_id, None)
            if tunnel is not None:
                tunnel.close(f"stream reset, code {event.error_code:#x}")
        elif isinstance(event, ConnectionTerminated):
            for tunnel in self.tunnels.values():
                tunnel.close("connection closed")
            self.tunnels.clear()
        if self.h3 is None:
            return
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                self.request(h3_event)
            elif isinstance(h3_event, DatagramReceived):
                self.datagram(h3_event.stream_id, h3_event.data)
            elif isinstance(h3_event, DataReceived):
                self.stream_data(h3_event)

    def respond(self, stream_id, status, error=None, extra=()):
        headers = [(b":status", str(status).encode())]
        if error is not None:
            # RFC 9209 §2: "Proxy-Status ... error" names what went wrong.
            headers.append((b"proxy-status", f"aioquic-masque; error={error}".encode()))
        headers.extend(extra)
        self.h3.send_headers(stream_id, headers, end_stream=error is not None)
        self.transmit()

    def refuse(self, stream_id, status, error, extra=()):
        log(f"tunnel {stream_id} refused {status} {error}")
        self.respond(stream_id, status, error, extra)

    def request(self, event):
        if event.stream_id in self.tunnels:
            return  # trailers: nothing to do
        fields = header_dict(event.headers)
        opts = self.options
        stream_id = event.stream_id
        if fields.get(":method") != "CONNECT" or fields.get(":protocol") != "connect-udp":
            self.refuse(stream_id, 501 if fields.get(":method") == "CONNECT" else 405,
                        "http_request_error")
            return
        if fields.get(":scheme") != "https" or not fields.get(":authority"):
            self.refuse(stream_id, 400, "http_request_error")
            return
        if opts.token is not None:
            authorization = fields.get("proxy-authorization")
            if authorization is None:
                self.refuse(stream_id, 407, "http_request_denied",
                            [(b"proxy-authenticate", b"Bearer")])
                return
            if authorization != f"Bearer {opts.token}":
                self.refuse(stream_id, 403, "http_request_denied")
                return
        target = parse_target_path(opts.template, fields.get(":path", ""))
        if target is None:
            self.refuse(stream_id, 400, "http_request_error")
            return
        host, port = target
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            # A fixture: names are not resolved, so no name can reach loopback either.
            self.refuse(stream_id, 403, "destination_ip_prohibited")
            return
        if not any(address in network for network in opts.allow):
            self.refuse(stream_id, 403, "destination_ip_prohibited")
            return
        use_datagrams = self.h3.peer_takes_datagrams()
        tunnel = Tunnel(self, stream_id, (str(address), port), use_datagrams)
        self.tunnels[stream_id] = tunnel
        asyncio.ensure_future(self.connect_target(tunnel))

    async def connect_target(self, tunnel):
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: TargetSocket(tunnel), remote_addr=tunnel.target
            )
        except OSError as e:
            self.tunnels.pop(tunnel.stream_id, None)
            self.refuse(tunnel.stream_id, 502, "destination_unavailable")
            log(f"tunnel {tunnel.stream_id}: {e}")
            return
        if tunnel.closed:
            transport.close()
            return
        tunnel.connected(transport)
        # RFC 9297 §3.4: the Capsule-Protocol header field signals capsules on the stream.
        self.respond(tunnel.stream_id, 200, extra=[(b"capsule-protocol", b"?1")])
        mode = "datagrams" if tunnel.use_datagrams else "capsules"
        log(f"tunnel {tunnel.stream_id} to {tunnel.target[0]}:{tunnel.target[1]} open ({mode})")

    def datagram(self, stream_id, data):
        tunnel = self.tunnels.get(stream_id)
        parsed = http_datagram_payload(data)
        if tunnel is None or parsed is None:
            return  # RFC 9297 §2.1: unknown or malformed datagrams are dropped
        context, payload = parsed
        if context == CONTEXT_UDP:
            tunnel.to_target_payload(payload)

    def stream_data(self, event):
        tunnel = self.tunnels.get(event.stream_id)
        if tunnel is None:
            return
        try:
            for capsule_type, value in tunnel.capsules.feed(event.data):
                if capsule_type != CAPSULE_DATAGRAM:
                    continue  # RFC 9297 §3.2: unknown capsule types are skipped
                parsed = http_datagram_payload(value)
                if parsed is None:
                    raise CapsuleError("DATAGRAM capsule without a context id")
                context, payload = parsed
                if context == CONTEXT_UDP:
                    tunnel.to_target_payload(payload)
        except CapsuleError as e:
            self.tunnels.pop(event.stream_id, None)
            tunnel.close(f"malformed capsules: {e}")
            self._quic.reset_stream(event.stream_id, H3_DATAGRAM_ERROR)
            self.transmit()
            return
        if event.stream_ended:
            # RFC 9298 §3: the tunnel ends with the stream; end ours as well.
            self.tunnels.pop(event.stream_id, None)
            if tunnel.capsules.pending():
                tunnel.close("stream ended inside a capsule")
                self._quic.reset_stream(event.stream_id, H3_MESSAGE_ERROR)
            else:
                tunnel.close("client finished")
                self.h3.send_data(event.stream_id, b"", end_stream=True)
            self.transmit()


def self_signed(name):
    """A P-256 key and a self-signed certificate for `name`, valid for two days."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


async def run(args):
    key, certificate = self_signed(args.server_name)
    configuration = QuicConfiguration(
        is_client=False,
        alpn_protocols=H3_ALPN,
        max_datagram_size=PACKET_SIZE,
        max_datagram_frame_size=MAX_DATAGRAM_FRAME if args.datagrams else None,
        idle_timeout=args.idle_timeout,
    )
    configuration.certificate = certificate
    configuration.private_key = key
    MasqueProxy.options = args
    host, _, port = args.listen.rpartition(":")
    server = await serve(
        host.strip("[]"), int(port), configuration=configuration, create_protocol=MasqueProxy
    )
    sockname = server._transport.get_extra_info("sockname")
    log(f"certificate fingerprint {certificate_pin(certificate)}")
    log(f"listening on {sockname[0]}:{sockname[1]}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()


def parse_network(text):
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (UDP)")
    parser.add_argument("--server-name", default="localhost", help="certificate name")
    parser.add_argument("--token", help="bearer token required; none: no authentication")
    parser.add_argument(
        "--allow", action="append", default=[], type=parse_network, metavar="CIDR",
        help="target addresses that may be reached (none by default)",
    )
    parser.add_argument("--template", default=DEFAULT_TEMPLATE, help="URI template path")
    parser.add_argument(
        "--no-datagrams", dest="datagrams", action="store_false",
        help="announce no H3_DATAGRAM: payloads travel in DATAGRAM capsules",
    )
    parser.add_argument("--idle-timeout", type=float, default=60.0)
    args = parser.parse_args()
    asyncio.run(run(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
