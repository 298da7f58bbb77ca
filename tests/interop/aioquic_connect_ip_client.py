#!/usr/bin/env python3
"""Interop: CONNECT-IP (RFC 9484) against `veil server` from aioquic, a QUIC and HTTP/3
implementation nobody on this project wrote.

Run in the edge's network namespace, where `--target` (default 10.200.0.2) is an address
of a local interface that the edge's `--allow-target` names: the edge's TUN egress hands
the client's packets to that kernel, which answers them. One QUIC connection, one
CONNECT-IP request stream, then these checks in order:

  request   Extended CONNECT (RFC 9220) with `:protocol connect-ip` on the default
            template's `/.well-known/masque/ip/*/*/`; a 2xx with `capsule-protocol: ?1`.
  assign    the ADDRESS_ASSIGN capsule (RFC 9484 §4.7.1): one IPv4 address, as
            --expect-address says (10.89.0.2/32), under request id 0 (unsolicited).
  routes    the ROUTE_ADVERTISEMENT capsule (§4.7.3): exactly the IPv4 ranges of
            --expect-route (0.0.0.0-255.255.255.255, protocol 0, i.e. every protocol).
  address_request
            an ADDRESS_REQUEST capsule (§4.7.2) for any IPv4 address (request 1) and for
            an IPv6 one (request 2), which this IPv4-only edge cannot give: an
            ADDRESS_ASSIGN with the IPv4 address under request id 1 and the all-zero
            IPv6 address under request id 2 (§4.7.1), then the same routes again.
  echo      an ICMP echo request from the assigned address to --target; the echo reply
            from --target with the same identifier, sequence and payload, valid
            checksums, and TTL 63: the target's kernel sends 64, the edge decrements it
            once, toward the client (§7.2: "upon encapsulation").
  udp       a UDP datagram from the assigned address to a socket this script holds on
            --target (it runs in that namespace): the socket receives it from the
            assigned address, answers, and the answer comes back through the tunnel
            as a UDP packet with a valid checksum.
  forbidden an ICMP echo request to --forbidden (192.168.77.1, private and not allowed):
            an ICMP Destination Unreachable, code 13 ("communication administratively
            prohibited"), from the edge's gateway address --gateway (10.89.0.1), quoting
            our packet's IP header and first 8 bytes unchanged.
  spoofed   an ICMP echo request and a UDP datagram (to the socket above) from an address
            the tunnel was not assigned (--spoofed, 10.89.0.99): the socket must receive
            nothing and nothing may come back through the tunnel within --quiet seconds.

--mode datagrams announces SETTINGS_H3_DATAGRAM and the QUIC max_datagram_frame_size, so
packets ride QUIC DATAGRAM frames; --mode capsules announces neither, so both directions
must use DATAGRAM capsules on the request stream (RFC 9297 §3.5). In datagrams mode a
packet that the edge sends in a capsule instead (or the other way round) fails the run.

Prints one line of JSON, {"ok": bool, "mode": ..., "checks": {name: "ok" | "FAIL: why"},
...details}, and exits 0 only when every check passed. Driven by
examples/veil/tests/e2e_interop_ip.rs.
"""

import argparse
import asyncio
import ipaddress
import json
import os
import socket
import ssl
import struct
import sys

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.buffer import Buffer, BufferReadError, encode_uint_var
from aioquic.h3.connection import H3_ALPN
from aioquic.h3.events import DataReceived, DatagramReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamReset

from masque_common import (
    CAPSULE_DATAGRAM,
    MAX_DATAGRAM_FRAME,
    CapsuleDecoder,
    DatagramH3Connection,
    certificate_pin,
    header_dict,
)

# RFC 9484 §4.7.1-§4.7.3: capsule types.
CAPSULE_ADDRESS_ASSIGN = 0x01
CAPSULE_ADDRESS_REQUEST = 0x02
CAPSULE_ROUTE_ADVERTISEMENT = 0x03
# RFC 9484 §6: "Context ID 0 ... the payload is a full IP packet".
CONTEXT_IP = 0
# RFC 9484 §3: the default template with both variables as wildcards.
DEFAULT_PATH = "/.well-known/masque/ip/*/*/"

IPPROTO_ICMP = 1
IPPROTO_UDP = 17
ICMP_ECHO_REPLY = 0
ICMP_UNREACHABLE = 3
ICMP_ECHO_REQUEST = 8
ICMP_ADMIN_PROHIBITED = 13  # RFC 1812 §5.2.7.1
INITIAL_TTL = 64


class CheckFailed(Exception):
    """One check did not hold."""


# --- IPv4, ICMP and UDP by hand (RFC 791, RFC 792, RFC 768) -------------------------


def inet_checksum(data):
    """The Internet checksum (RFC 1071): one's complement of the one's complement sum."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_packet(source, destination, protocol, payload, ttl=INITIAL_TTL, ident=0):
    """An IPv4 packet with a 20-byte header, Don't Fragment set, checksum filled in."""
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,  # version 4, IHL 5
        0,  # DSCP/ECN
        20 + len(payload),
        ident,
        0x4000,  # DF, fragment offset 0
        ttl,
        protocol,
        0,
        ipaddress.IPv4Address(source).packed,
        ipaddress.IPv4Address(destination).packed,
    )
    checksum = inet_checksum(header)
    return header[:10] + struct.pack("!H", checksum) + header[12:] + payload


def icmp_echo(ident, sequence, data, kind=ICMP_ECHO_REQUEST):
    message = struct.pack("!BBHHH", kind, 0, 0, ident, sequence) + data
    return message[:2] + struct.pack("!H", inet_checksum(message)) + message[4:]


def udp_datagram(source, destination, source_port, destination_port, data):
    length = 8 + len(data)
    header = struct.pack("!HHHH", source_port, destination_port, length, 0)
    pseudo = (
        ipaddress.IPv4Address(source).packed
        + ipaddress.IPv4Address(destination).packed
        + struct.pack("!BBH", 0, IPPROTO_UDP, length)
    )
    checksum = inet_checksum(pseudo + header + data) or 0xFFFF
    return header[:6] + struct.pack("!H", checksum) + data


class Ipv4:
    """A received IPv4 packet, checked for shape and header checksum."""

    def __init__(self, packet):
        if len(packet) < 20 or packet[0] >> 4 != 4:
            raise CheckFailed(f"not an IPv4 packet: {packet[:24].hex()}")
        ihl = (packet[0] & 0x0F) * 4
        total = struct.unpack("!H", packet[2:4])[0]
        if ihl < 20 or total < ihl or total != len(packet):
            raise CheckFailed(
                f"IPv4 header length {ihl}, total length {total}, datagram of {len(packet)}"
            )
        if inet_checksum(packet[:ihl]) != 0:
            raise CheckFailed(f"bad IPv4 header checksum: {packet[:ihl].hex()}")
        self.raw = packet
        self.ttl = packet[8]
        self.protocol = packet[9]
        self.source = str(ipaddress.IPv4Address(packet[12:16]))
        self.destination = str(ipaddress.IPv4Address(packet[16:20]))
        self.payload = packet[ihl:total]

    def icmp(self):
        """(type, code, rest after the checksum) of an ICMP message with a valid checksum."""
        if self.protocol != IPPROTO_ICMP or len(self.payload) < 8:
            raise CheckFailed(f"not ICMP: protocol {self.protocol}, {len(self.payload)} bytes")
        if inet_checksum(self.payload) != 0:
            raise CheckFailed("bad ICMP checksum")
        return self.payload[0], self.payload[1], self.payload[4:]

    def udp(self):
        """(source port, destination port, data) of a UDP datagram with a valid checksum."""
        if self.protocol != IPPROTO_UDP or len(self.payload) < 8:
            raise CheckFailed(f"not UDP: protocol {self.protocol}, {len(self.payload)} bytes")
        sport, dport, length, checksum = struct.unpack("!HHHH", self.payload[:8])
        if length != len(self.payload):
            raise CheckFailed(f"UDP length {length}, datagram of {len(self.payload)}")
        if checksum != 0:
            pseudo = self.raw[12:20] + struct.pack("!BBH", 0, IPPROTO_UDP, length)
            if inet_checksum(pseudo + self.payload) != 0:
                raise CheckFailed("bad UDP checksum")
        return sport, dport, self.payload[8:]

    def describe(self):
        return f"{self.source} -> {self.destination} proto {self.protocol} ttl {self.ttl}"


# --- RFC 9484 capsules -----------------------------------------------------------------


def read_ip(buf, version):
    if version == 4:
        return ipaddress.IPv4Address(buf.pull_bytes(4))
    if version == 6:
        return ipaddress.IPv6Address(buf.pull_bytes(16))
    raise CheckFailed(f"IP version {version} in a capsule")


def parse_address_assign(value):
    """RFC 9484 §4.7.1: Assigned Address {Request ID (i), IP Version (8),
    IP Address (32..128), IP Prefix Length (8)} ..."""
    buf, entries = Buffer(data=value), []
    try:
        while not buf.eof():
            request_id = buf.pull_uint_var()
            version = buf.pull_uint8()
            address = read_ip(buf, version)
            prefix = buf.pull_uint8()
            entries.append((request_id, version, str(address), prefix))
    except BufferReadError:
        raise CheckFailed(f"truncated ADDRESS_ASSIGN: {value.hex()}") from None
    return entries


def parse_route_advertisement(value):
    """RFC 9484 §4.7.3: IP Address Range {IP Version (8), Start IP Address (32..128),
    End IP Address (32..128), IP Protocol (8)} ..."""
    buf, ranges = Buffer(data=value), []
    try:
        while not buf.eof():
            version = buf.pull_uint8()
            start = read_ip(buf, version)
            end = read_ip(buf, version)
            proto = buf.pull_uint8()
            ranges.append((version, str(start), str(end), proto))
    except BufferReadError:
        raise CheckFailed(f"truncated ROUTE_ADVERTISEMENT: {value.hex()}") from None
    return ranges


def address_request_capsule(requests):
    """RFC 9484 §4.7.2 ADDRESS_REQUEST capsule {Type (i) = 0x02, Length (i),
    Requested Address {Request ID (i), IP Version (8), IP Address (32..128),
    IP Prefix Length (8)} ...} from (request id, address, prefix length) triples; a
    Request ID is never 0 there ("MUST NOT be 0")."""
    value = b""
    for request_id, address, prefix in requests:
        ip = ipaddress.ip_address(address)
        value += encode_uint_var(request_id) + bytes([ip.version]) + ip.packed + bytes([prefix])
    return encode_uint_var(CAPSULE_ADDRESS_REQUEST) + encode_uint_var(len(value)) + value


def ip_http_datagram(packet):
    """RFC 9484 §6: an HTTP datagram payload (RFC 9297 §2.1) of Context ID 0 and a full
    IP packet. The Quarter Stream ID in front of it is aioquic's to add (datagram frames)
    or implied by the stream (capsules)."""
    return encode_uint_var(CONTEXT_IP) + packet


def datagram_capsule(http_payload):
    """RFC 9297 §3.5 DATAGRAM capsule {Type (i) = 0x00, Length (i), HTTP Datagram Payload},
    which RFC 9484 §6 uses for IP packets when HTTP/3 datagrams are not available."""
    return encode_uint_var(CAPSULE_DATAGRAM) + encode_uint_var(len(http_payload)) + http_payload


# --- the client ------------------------------------------------------------------------


class IpClient(QuicConnectionProtocol):
    def __init__(self, *args, datagrams, **kwargs):
        super().__init__(*args, **kwargs)
        # Before the handshake, so that the proxy's SETTINGS are never missed.
        self.h3 = DatagramH3Connection(self._quic, datagrams=datagrams)
        self.stream_id = None
        self.events = asyncio.Queue()
        self.capsules = asyncio.Queue()
        self.packets = asyncio.Queue()  # (how, IP packet)
        self.decoder = CapsuleDecoder()
        self.oddities = []

    def quic_event_received(self, event):
        if isinstance(event, (StreamReset, ConnectionTerminated)):
            self.events.put_nowait(event)
            self.capsules.put_nowait(event)
            return
        for h3_event in self.h3.handle_event(event):
            if getattr(h3_event, "stream_id", None) != self.stream_id:
                continue
            if isinstance(h3_event, DatagramReceived):
                self.http_datagram(h3_event.data, "datagram")
            elif isinstance(h3_event, HeadersReceived):
                self.events.put_nowait(h3_event)
            elif isinstance(h3_event, DataReceived):
                for capsule_type, value in self.decoder.feed(h3_event.data):
                    if capsule_type == CAPSULE_DATAGRAM:
                        self.http_datagram(value, "capsule")
                    else:
                        self.capsules.put_nowait((capsule_type, value))
                if h3_event.stream_ended:
                    self.events.put_nowait(h3_event)
                    self.capsules.put_nowait(h3_event)

    def http_datagram(self, data, how):
        buf = Buffer(data=data)
        try:
            context = buf.pull_uint_var()
        except BufferReadError:
            self.oddities.append(f"an empty HTTP datagram ({how})")
            return
        if context != CONTEXT_IP:
            self.oddities.append(f"an HTTP datagram with context id {context} ({how})")
            return
        self.packets.put_nowait((how, data[buf.tell() :]))

    def open_ip(self, authority, path, token):
        self.stream_id = self._quic.get_next_available_stream_id()
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", b"connect-ip"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            (b"capsule-protocol", b"?1"),
        ]
        if token is not None:
            headers.append((b"proxy-authorization", b"Bearer " + token.encode()))
        self.h3.send_headers(self.stream_id, headers, end_stream=False)
        self.transmit()

    def send_capsule(self, capsule):
        self.h3.send_data(self.stream_id, capsule, end_stream=False)
        self.transmit()

    def send_packet(self, packet, capsules):
        payload = ip_http_datagram(packet)
        if capsules:
            self.h3.send_data(self.stream_id, datagram_capsule(payload), end_stream=False)
        else:
            self.h3.send_datagram(self.stream_id, payload)
        self.transmit()


class Run:
    def __init__(self, args, client):
        self.args = args
        self.client = client
        self.capsules = args.mode == "capsules"
        self.address = None
        self.details = {}
        self.unexpected = []  # packets that no check asked for
        self.held = []  # capsules that came before a check asked for them
        self.loop = asyncio.get_running_loop()

    async def next_capsule(self, wanted):
        """The next capsule of type `wanted`, in whatever order the capsules came: others
        that arrive first are held for the checks that want them."""
        for index, (capsule_type, value) in enumerate(self.held):
            if capsule_type == wanted:
                del self.held[index]
                return value
        deadline = self.loop.time() + self.args.timeout
        while True:
            left = deadline - self.loop.time()
            if left <= 0:
                raise CheckFailed(f"no capsule of type {wanted:#x} within {self.args.timeout} s")
            try:
                item = await asyncio.wait_for(self.client.capsules.get(), left)
            except asyncio.TimeoutError:
                continue
            if not isinstance(item, tuple):
                raise CheckFailed(f"the request stream ended first: {item!r}")
            capsule_type, value = item
            if capsule_type == wanted:
                return value
            self.held.append(item)

    async def expect_packet(self, matches, what, seconds):
        """The first packet from the tunnel for which `matches(Ipv4)` is true; the others
        are kept in `unexpected`. Checks each packet came the way the mode says."""
        deadline = self.loop.time() + seconds
        while True:
            left = deadline - self.loop.time()
            if left <= 0:
                raise CheckFailed(f"no {what} within {seconds} s")
            try:
                how, raw = await asyncio.wait_for(self.client.packets.get(), left)
            except asyncio.TimeoutError:
                continue
            want = "capsule" if self.capsules else "datagram"
            if how != want:
                raise CheckFailed(f"a packet came in a {how}, not a {want}")
            packet = Ipv4(raw)
            if matches(packet):
                return packet
            self.unexpected.append(packet.describe())

    def send(self, packet):
        self.client.send_packet(packet, self.capsules)

    async def check_request(self):
        c = self.client
        c.open_ip(self.args.authority, self.args.path, self.args.token)
        event = await asyncio.wait_for(c.events.get(), self.args.timeout)
        if not isinstance(event, HeadersReceived):
            raise CheckFailed(f"expected response headers, got {event!r}")
        fields = header_dict(event.headers)
        status = fields.get(":status", "")
        self.details["status"] = status
        if not status.startswith("2") or event.stream_ended:
            raise CheckFailed(
                f"status {status} (ended={event.stream_ended}, "
                f"proxy-status={fields.get('proxy-status')!r})"
            )
        if fields.get("capsule-protocol") != "?1":
            raise CheckFailed(f"capsule-protocol {fields.get('capsule-protocol')!r}")
        return f"status {status}, capsule-protocol ?1"

    async def check_assign(self):
        entries = parse_address_assign(await self.next_capsule(CAPSULE_ADDRESS_ASSIGN))
        self.details["assigned"] = [f"{a}/{p} (request {r})" for r, _, a, p in entries]
        v4 = [(r, a, p) for r, v, a, p in entries if v == 4]
        if len(v4) != 1:
            raise CheckFailed(f"{len(v4)} IPv4 addresses assigned: {entries}")
        request_id, address, prefix = v4[0]
        self.address = address
        got = f"{address}/{prefix}"
        if got != self.args.expect_address:
            raise CheckFailed(f"assigned {got}, expected {self.args.expect_address}")
        # §4.7.1: an unsolicited assignment carries Request ID 0.
        if request_id != 0:
            raise CheckFailed(f"unsolicited assignment with request id {request_id}")
        return f"{got}"

    async def check_routes(self):
        ranges = parse_route_advertisement(await self.next_capsule(CAPSULE_ROUTE_ADVERTISEMENT))
        self.details["routes"] = [f"v{v} {s}-{e} proto {p}" for v, s, e, p in ranges]
        wanted = sorted(self.args.expect_route)
        got = sorted(f"{s}-{e}/{p}" for v, s, e, p in ranges)
        if got != wanted:
            raise CheckFailed(f"routes {got}, expected {wanted}")
        return ", ".join(got)

    async def check_address_request(self):
        """RFC 9484 §4.7.2: ADDRESS_REQUEST, one IPv4 request without a preference (the
        all-zero address) and one IPv6 request, which this IPv4-only edge cannot serve. The
        answer is an ADDRESS_ASSIGN with the full list of the tunnel's addresses (§4.7.1),
        each request's answer under its Request ID: an IPv4 address for request 1 and,
        for request 2, the all-zero IPv6 address ("If the IP proxy is not able to assign
        an address that is in the range of the request, it MUST respond with an Assigned
        Address containing an IP Address field of all zeroes"). Then a new
        ROUTE_ADVERTISEMENT, which must not have changed. Later checks use the address
        assigned here."""
        self.client.send_capsule(
            address_request_capsule([(1, "0.0.0.0", 32), (2, "::", 128)])
        )
        entries = parse_address_assign(await self.next_capsule(CAPSULE_ADDRESS_ASSIGN))
        self.details["assigned_on_request"] = [
            f"{a}/{p} (request {r})" for r, _, a, p in entries
        ]
        v4 = [(r, a, p) for r, v, a, p in entries if v == 4]
        v6 = [(r, a, p) for r, v, a, p in entries if v == 6]
        if len(v4) != 1 or v4[0][0] != 1 or v4[0][2] != 32:
            raise CheckFailed(f"IPv4 entries {v4}, expected one /32 under request id 1")
        if v6 != [(2, "::", 128)]:
            raise CheckFailed(f"IPv6 entries {v6}, expected [(2, '::', 128)]")
        if v4[0][1] != self.address:
            # Allowed (§4.7.1: an address left out is removed), but worth knowing.
            self.details["address_changed"] = f"{self.address} -> {v4[0][1]}"
            self.address = v4[0][1]
        ranges = parse_route_advertisement(await self.next_capsule(CAPSULE_ROUTE_ADVERTISEMENT))
        got = sorted(f"{s}-{e}/{p}" for v, s, e, p in ranges)
        if got != sorted(self.args.expect_route):
            raise CheckFailed(f"routes changed to {got}")
        return f"request 1: {self.address}/32, request 2: ::/128 (none), routes unchanged"

    async def check_echo(self):
        target, ident = self.args.target, os.getpid() & 0xFFFF
        for sequence in range(1, self.args.tries + 1):
            data = b"veil-ipx-echo-" + os.urandom(24)
            self.send(
                ipv4_packet(
                    self.address, target, IPPROTO_ICMP, icmp_echo(ident, sequence, data),
                    ident=sequence,
                )
            )

            def reply(p, sequence=sequence):
                if p.protocol != IPPROTO_ICMP or p.source != target:
                    return False
                kind, _, rest = p.icmp()
                return kind == ICMP_ECHO_REPLY and rest[:4] == struct.pack("!HH", ident, sequence)

            try:
                packet = await self.expect_packet(reply, "echo reply", self.args.round)
            except CheckFailed:
                continue  # lost on the way (QUIC DATAGRAM frames are unreliable): again
            _, code, rest = packet.icmp()
            if code != 0 or rest[4:] != data:
                raise CheckFailed(f"echo reply code {code}, payload {rest[4:]!r} != {data!r}")
            if packet.destination != self.address:
                raise CheckFailed(f"echo reply to {packet.destination}")
            self.details["echo_ttl"] = packet.ttl
            if packet.ttl != INITIAL_TTL - 1:
                raise CheckFailed(
                    f"echo reply TTL {packet.ttl}, expected {INITIAL_TTL - 1} "
                    "(the kernel's 64, decremented once by the edge)"
                )
            return f"reply from {target} ttl {packet.ttl}, {len(data)} bytes, try {sequence}"
        raise CheckFailed(f"no echo reply from {target} in {self.args.tries} tries")

    async def check_udp(self, sink):
        sink_port = sink.getsockname()[1]
        source_port = 40000 + os.getpid() % 20000
        for attempt in range(1, self.args.tries + 1):
            data = b"veil-ipx-udp-" + os.urandom(16)
            datagram = udp_datagram(self.address, self.args.target, source_port, sink_port, data)
            self.send(ipv4_packet(self.address, self.args.target, IPPROTO_UDP, datagram))
            try:
                got, sender = await asyncio.wait_for(
                    self.loop.sock_recvfrom(sink, 2048), self.args.round
                )
            except asyncio.TimeoutError:
                continue
            # Through a TUN off-ramp the target sees the client's own address and port;
            # through `decap` the edge's socket sends the payload, from its own address.
            expected = sender[0] != self.address if self.args.decap else sender == (self.address, source_port)
            if got != data or not expected:
                raise CheckFailed(f"the target socket got {got!r} from {sender}")
            self.details["udp_seen_from"] = f"{sender[0]}:{sender[1]}"
            answer = b"answer-" + data
            sink.sendto(answer, sender)

            def reply(p):
                return p.protocol == IPPROTO_UDP and p.source == self.args.target

            packet = await self.expect_packet(reply, "UDP answer", self.args.round)
            sport, dport, body = packet.udp()
            if (sport, dport, body) != (sink_port, source_port, answer):
                raise CheckFailed(f"UDP answer {sport}->{dport} {body!r}")
            return f"{self.address}:{source_port} <-> {self.args.target}:{sink_port}, try {attempt}"
        raise CheckFailed(f"the target socket received nothing in {self.args.tries} tries")

    async def check_forbidden(self):
        if self.args.forbidden_out_of_scope:
            return await self.check_out_of_scope()
        forbidden, ident = self.args.forbidden, (os.getpid() + 1) & 0xFFFF
        for sequence in range(1, self.args.tries + 1):
            sent = ipv4_packet(
                self.address, forbidden, IPPROTO_ICMP,
                icmp_echo(ident, sequence, b"veil-ipx-forbidden-" + os.urandom(8)),
                ident=0x1000 + sequence,
            )
            self.send(sent)

            def unreachable(p):
                if p.protocol != IPPROTO_ICMP:
                    return False
                kind, _, rest = p.icmp()
                # The quoted packet (RFC 792: IP header and 64 bits of data) is ours.
                return kind == ICMP_UNREACHABLE and rest[4:32] == sent[:28]

            def echo_reply(p):
                return p.protocol == IPPROTO_ICMP and p.source == forbidden

            try:
                packet = await self.expect_packet(
                    lambda p: unreachable(p) or echo_reply(p), "ICMP error", self.args.round
                )
            except CheckFailed:
                continue
            if echo_reply(packet):
                raise CheckFailed(f"{forbidden} was reached: {packet.describe()}")
            _, code, _ = packet.icmp()
            self.details["forbidden_answer"] = f"{packet.describe()} type 3 code {code}"
            if code != ICMP_ADMIN_PROHIBITED:
                raise CheckFailed(f"destination unreachable code {code}, expected 13")
            if packet.source != self.args.gateway or packet.destination != self.address:
                raise CheckFailed(
                    f"the error came from {packet.source} to {packet.destination}, expected "
                    f"{self.args.gateway} to {self.address}"
                )
            return f"type 3 code 13 from {packet.source}, quoting our packet, try {sequence}"
        raise CheckFailed(f"no answer about {forbidden} in {self.args.tries} tries")

    async def check_out_of_scope(self):
        """A destination outside the tunnel's scope (RFC 9484 §4.6: a scope by name reaches
        the addresses the name resolved to): dropped by the edge, never reached, and not
        answered (the client was told its routes)."""
        forbidden, ident = self.args.forbidden, (os.getpid() + 2) & 0xFFFF
        for sequence in range(1, self.args.tries + 1):
            self.send(
                ipv4_packet(
                    self.address, forbidden, IPPROTO_ICMP,
                    icmp_echo(ident, sequence, b"veil-ipx-out-of-scope"),
                    ident=0x2000 + sequence,
                )
            )
        try:
            packet = await self.expect_packet(
                lambda p: p.protocol == IPPROTO_ICMP, "nothing", self.args.quiet
            )
        except CheckFailed:
            return f"{self.args.tries} echoes to {forbidden} dropped in silence"
        raise CheckFailed(f"an answer about an out-of-scope address: {packet.describe()}")

    async def check_spoofed(self, sink):
        spoofed, target = self.args.spoofed, self.args.target
        sink_port = sink.getsockname()[1]
        ident = (os.getpid() + 2) & 0xFFFF
        for _ in range(3):
            self.send(
                ipv4_packet(spoofed, target, IPPROTO_ICMP, icmp_echo(ident, 1, b"spoofed"))
            )
            datagram = udp_datagram(spoofed, target, 40000, sink_port, b"spoofed")
            self.send(ipv4_packet(spoofed, target, IPPROTO_UDP, datagram))
        # Whatever arrives within the quiet period is a failure: a reply for the spoofed
        # address, or anything else (every earlier check has its answer already).
        try:
            packet = await self.expect_packet(lambda p: True, "packet", self.args.quiet)
        except CheckFailed as e:
            if not str(e).startswith("no packet within"):
                raise
        else:
            raise CheckFailed(f"a packet came back: {packet.describe()}")
        try:
            got, sender = await asyncio.wait_for(self.loop.sock_recvfrom(sink, 2048), 0.05)
        except asyncio.TimeoutError:
            pass
        else:
            raise CheckFailed(f"the target socket received {got!r} from {sender}")
        return f"from {spoofed}: nothing reached {target}:{sink_port}, nothing came back"


async def run(args, result):
    datagrams = args.mode == "datagrams"
    host, _, port = args.edge.rpartition(":")
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        server_name=args.server_name,
        verify_mode=ssl.CERT_NONE,  # checked by pin below
        idle_timeout=args.timeout,
        max_datagram_frame_size=MAX_DATAGRAM_FRAME if datagrams else None,
    )
    checks = result["checks"]
    async with connect(
        host,
        int(port),
        configuration=configuration,
        create_protocol=lambda *a, **kw: IpClient(*a, datagrams=datagrams, **kw),
    ) as client:
        certificate = client._quic.tls._peer_certificate
        got = certificate_pin(certificate) if certificate is not None else None
        if args.pin is not None and got != args.pin:
            checks["pin"] = f"FAIL: certificate {got}, pinned {args.pin}"
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.timeout
        while not client.h3.settings_received() and loop.time() < deadline:
            await asyncio.sleep(0.01)
        negotiated = client.h3.peer_takes_datagrams()
        result["h3_datagrams"] = negotiated
        if negotiated != datagrams:
            checks["settings"] = f"FAIL: H3 datagrams negotiated: {negotiated}"
            return

        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setblocking(False)
        sink.bind((args.target, 0))
        r = Run(args, client)
        try:
            steps = [
                ("request", r.check_request),
                ("assign", r.check_assign),
                ("routes", r.check_routes),
                ("address_request", r.check_address_request),
                ("echo", r.check_echo),
                ("udp", lambda: r.check_udp(sink)),
                ("forbidden", r.check_forbidden),
                ("spoofed", lambda: r.check_spoofed(sink)),
            ]
            for name, step in steps:
                try:
                    checks[name] = "ok: " + await step()
                except (CheckFailed, asyncio.TimeoutError) as e:
                    checks[name] = f"FAIL: {e or type(e).__name__}"
                    # Without a tunnel or an address the rest cannot run.
                    if name in ("request", "assign"):
                        break
        finally:
            sink.close()
            result.update(r.details)
            if r.unexpected:
                result["unexpected_packets"] = r.unexpected
            if r.held:
                result["unclaimed_capsules"] = [f"{t:#x}: {v.hex()}" for t, v in r.held]
            if client.oddities:
                result["oddities"] = client.oddities


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edge", required=True, help="HOST:PORT of the proxy (UDP)")
    parser.add_argument("--pin", help="sha256:HEX of the proxy's certificate")
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--authority", default="localhost", help=":authority of the request")
    parser.add_argument("--token", help="bearer token; none: no proxy-authorization")
    parser.add_argument("--path", default=DEFAULT_PATH, help=":path of the request")
    parser.add_argument("--mode", choices=("datagrams", "capsules"), default="datagrams")
    parser.add_argument("--target", default="10.200.0.2", help="a local, allowed address")
    parser.add_argument("--forbidden", default="192.168.77.1")
    parser.add_argument(
        "--decap", action="store_true",
        help="the edge's decap off-ramp: the target sees the edge's address, not the client's",
    )
    parser.add_argument(
        "--forbidden-out-of-scope", action="store_true",
        help="--forbidden is outside the request's scope: expect silence, not an ICMP error",
    )
    parser.add_argument("--spoofed", default="10.89.0.99")
    parser.add_argument("--gateway", default="10.89.0.1", help="the edge's pool address")
    parser.add_argument(
        "--expect-address", default="10.89.0.2/32",
        help="the first assignment; a fresh edge's pool hands out its addresses in order",
    )
    parser.add_argument(
        "--expect-route", action="append", metavar="START-END/PROTO",
        help="an advertised range (repeatable); default 0.0.0.0-255.255.255.255/0",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per step")
    parser.add_argument("--round", type=float, default=1.0, help="seconds to wait per try")
    parser.add_argument("--tries", type=int, default=3, help="sends per check")
    parser.add_argument("--quiet", type=float, default=1.0, help="seconds of silence expected")
    args = parser.parse_args()
    args.expect_route = args.expect_route or ["0.0.0.0-255.255.255.255/0"]
    result = {"ok": False, "mode": args.mode, "checks": {}}
    try:
        asyncio.run(asyncio.wait_for(run(args, result), 4 * args.timeout))
    except Exception as e:  # noqa: BLE001 - reported in the JSON line, then a failure
        result["error"] = f"{type(e).__name__}: {e}"
    checks = result["checks"]
    expected = ("request", "assign", "routes", "address_request", "echo", "udp", "forbidden", "spoofed")
    result["ok"] = "error" not in result and all(
        checks.get(name, "").startswith("ok") for name in expected
    )
    print(json.dumps(result, sort_keys=True), flush=True)
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
