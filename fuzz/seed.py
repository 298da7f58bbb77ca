#!/usr/bin/env python3
"""Writes the seed corpora: fuzz/corpus/<target>/seed-<name>.

The seeds are the RFC examples and the malformed cases the veil-proto tests name
(core/proto/src/**/tests, core/proto/tests/*.rs), in the input format of each target
(see fuzz/bodies/src/<target>.rs). Run it from anywhere; it is idempotent, and
fuzz/run.sh runs it again after minimising, so the named seeds always stay in the corpus
next to what libFuzzer found.

    python3 fuzz/seed.py
"""

import hashlib
import struct
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


def write(target, name, data):
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"seed-{name}").write_bytes(bytes(data))


def chunked(stream, flags=0, sizes=()):
    """The incremental targets' framing (fuzz/bodies/src/chunks.rs)."""
    assert len(sizes) < 16 and flags < 16
    return bytes([flags << 4 | len(sizes), *sizes]) + bytes(stream)


def varint(value, length=None):
    """A QUIC varint, shortest unless `length` is given (RFC 9000 §16)."""
    if length is None:
        length = 1 if value < 64 else 2 if value < 16384 else 4 if value < 2**30 else 8
    tag = {1: 0, 2: 1, 4: 2, 8: 3}[length]
    raw = bytearray(value.to_bytes(length, "big"))
    raw[0] |= tag << 6
    return bytes(raw)


def pseudo_random(seed, length):
    out = b""
    block = seed.encode()
    while len(out) < length:
        block = hashlib.sha256(block).digest()
        out += block
    return out[:length]


# --- varint -------------------------------------------------------------------------------

def varints():
    # RFC 9000 Appendix A.1.
    write("varint", "rfc9000-8byte", bytes.fromhex("c2197c5eff14e88c"))
    write("varint", "rfc9000-4byte", bytes.fromhex("9d7f3e7d"))
    write("varint", "rfc9000-2byte", bytes.fromhex("7bbd"))
    write("varint", "rfc9000-1byte", bytes.fromhex("25"))
    write("varint", "rfc9000-2byte-37", bytes.fromhex("4025"))
    write("varint", "max", b"\xff" * 8)
    write("varint", "truncated-2", b"\x40")
    write("varint", "truncated-8", bytes.fromhex("c2197c"))
    write("varint", "empty", b"")
    for i, length in enumerate([8, 16, 17, 25]):
        write("varint_roundtrip", f"random-{i}", pseudo_random(f"varint{i}", length))


# --- datagram -----------------------------------------------------------------------------

def datagrams():
    # Quarter Stream ID 1, Context ID 0, a UDP payload.
    write("datagram", "udp-payload", b"\x01\x00\xa1\xa2\xa3")
    # Non-minimal varints: Quarter Stream ID 2 on two bytes, Context ID 5 on four.
    write("datagram", "non-minimal", b"\x40\x02\x80\x00\x00\x05")
    write("datagram", "largest-quarter-id", bytes.fromhex("cfffffffffffffff2a"))
    write("datagram", "quarter-id-2pow60", bytes.fromhex("d000000000000000"))
    write("datagram", "quarter-id-max", b"\xff" * 9)
    write("datagram", "empty", b"")
    write("datagram", "truncated-quarter-id", b"\x80\x00\x00")
    write("datagram", "no-context-id", b"\x02")
    write("datagram", "truncated-context-id", b"\x02\x40")
    for i, length in enumerate([12, 24, 40, 80]):
        write("datagram_roundtrip", f"random-{i}", pseudo_random(f"datagram{i}", length))


# --- capsule ------------------------------------------------------------------------------

def capsule(capsule_type, value):
    return varint(capsule_type) + varint(len(value)) + bytes(value)


def capsules():
    udp, ip_small, ip_tiny, nothing = 0, 1, 2, 3
    datagram = capsule(0x00, b"\x00\xa1\xa2")  # Context ID 0 and a 2-byte UDP payload
    address_request = capsule(0x02, b"\x01\x04\xc0\x00\x02\x00\x18")
    write("capsule", "datagram-bytewise", chunked(datagram, udp))
    write("capsule", "datagram-one-piece", chunked(datagram, udp, [255]))
    write("capsule", "datagram-split-3-1", chunked(datagram, udp, [3, 1]))
    # A 2-byte type and a 4-byte length: headers split anywhere.
    write("capsule", "long-header", chunked(varint(0, 2) + varint(2, 4) + b"\x00\x42", ip_tiny, [1, 2]))
    write("capsule", "unknown-then-datagram", chunked(address_request + datagram, udp, [2]))
    write("capsule", "ip-capsules", chunked(address_request + capsule(0x01, b"") + datagram, ip_small, [5]))
    write("capsule", "everything-unknown", chunked(address_request + datagram, nothing, [4]))
    # An unknown capsule announcing 2^62-1 bytes is skipped, not buffered.
    write("capsule", "unknown-huge", chunked(b"\x17" + b"\xff" * 8 + b"\x00" * 20, udp, [7]))
    write("capsule", "datagram-65536-too-long", chunked(b"\x00\x80\x01\x00\x00", udp))
    write("capsule", "datagram-65535-ok-truncated", chunked(b"\x00\x80\x00\xff\xff" + b"\x00" * 30, udp, [9]))
    write("capsule", "too-long-for-tiny", chunked(capsule(0x00, bytes(17)), ip_tiny, [3]))
    write("capsule", "truncated-header-1", chunked(b"\x00", udp))
    write("capsule", "truncated-header-2", chunked(b"\x40", udp))
    write("capsule", "truncated-header-3", chunked(b"\x00\x80\x00", udp))
    write("capsule", "truncated-value", chunked(b"\x00\x05\x00\x01", udp))
    write("capsule", "zero-length", chunked(capsule(0x00, b"") + capsule(0x00, b"\x00"), udp))
    write("capsule", "empty-context", chunked(capsule(0x00, b"") , ip_small))
    for i, length in enumerate([30, 60, 120, 250]):
        write("capsule_roundtrip", f"random-{i}", pseudo_random(f"capsule{i}", length))


# --- masque_udp ---------------------------------------------------------------------------

def masque_udp():
    default_paths = [
        b"/.well-known/masque/udp/192.0.2.6/443/",
        b"/.well-known/masque/udp/2001%3Adb8%3A%3A42/443/",
        b"/.well-known/masque/udp/example.com/53/",
        b"/.well-known/masque/udp/Example.COM./8443/",
        b"/.well-known/masque/udp/example.com/0443/",
        b"/.well-known/masque/udp/example.com/65536/",
        b"/.well-known/masque/udp/2001:db8::42/443/",
        b"/.well-known/masque/udp/%5B2001%3Adb8%3A%3A42%5D/443/",
        b"/.well-known/masque/udp/fe80%3A%3A1%25eth0/443/",
        b"/.well-known/masque/udp/127.1/443/",
        b"/.well-known/masque/udp/0x7f.1/443/",
        b"/.well-known/masque/udp/a..b/443/",
        b"/.well-known/masque/udp/%zz/443/",
        b"/.well-known/masque/udp//443/",
        b"/.well-known/masque/udp/example.com/%34%34%33/",
        b"/.well-known/masque/udp/example.com/443/?x=1",
    ]
    for i, path in enumerate(default_paths):
        write("masque_udp", f"default-{i}", path)
    with_templates = [
        (b"/masque?h={target_host}&p={target_port}", b"/masque?h=example.com&p=53"),
        (b"/masque{?target_host,target_port}", b"/masque?target_host=192.0.2.6&target_port=443"),
        (b"/masque?v=1{&target_host,target_port}", b"/masque?v=1&target_host=example.com&target_port=1"),
        (b"/udp/{target_host,target_port}/", b"/udp/example.com,443/"),
        (b"/p/{target_port}/h/{target_host}", b"/p/443/h/2001%3Adb8%3A%3A1"),
        (b"https://proxy.example.org:4443/masque?h={target_host}&p={target_port}", b"/masque?h=a&p=1"),
        (b"https://example.org/.well-known/masque/udp/{target_host}/{target_port}/", b"/.well-known/masque/udp/a/1/"),
        (b"/{target_host}/{target_port}~", b"/a/1~"),
        (b"/{target_host}{target_port}/", b"/a1/"),
        (b"/{target_host,target_port,target_host}", b"/a,1,a"),
        (b"/{user}/{target_host}/{target_port}", b"/u/a/1"),
        (b"/{target_host*}/{target_port}", b"/a/1"),
        (b"/{target_host:3}/{target_port}", b"/a/1"),
        (b"/{.target_host}/{target_port}", b"/.a/1"),
        (b"/%zz/{target_host}/{target_port}", b"/%zz/a/1"),
        (b"/a#b/{target_host}/{target_port}", b"/a#b/a/1"),
        (b"https:///{target_host}/{target_port}", b"/a/1"),
    ]
    for i, (template, path) in enumerate(with_templates):
        write("masque_udp", f"template-{i}", template + b"\n" + path)
    for i, length in enumerate([10, 30, 60, 120]):
        write("masque_udp_roundtrip", f"random-{i}", pseudo_random(f"masque_udp{i}", length))


# --- masque_ip ----------------------------------------------------------------------------

def address_entry(request_id, version, address, prefix_len):
    return varint(request_id) + bytes([version]) + bytes(address) + bytes([prefix_len])


def route(version, start, end, protocol):
    return bytes([version]) + bytes(start) + bytes(end) + bytes([protocol])


def masque_ip():
    paths = [
        b"/.well-known/masque/ip/*/*/",
        b"/.well-known/masque/ip/192.0.2.0%2F24/17/",
        b"/.well-known/masque/ip/2001%3Adb8%3A%3A%2F32/6/",
        b"/.well-known/masque/ip/target.example.com/*/",
        b"/.well-known/masque/ip/192.0.2.1%2F16/*/",
        b"/.well-known/masque/ip/fe80%3A%3A1%25eth0/*/",
        b"/.well-known/masque/ip/2001:db8::1/*/",
        b"/.well-known/masque/ip/example.com%2F24/*/",
        b"/.well-known/masque/ip/*/256/",
        b"/.well-known/masque/ip/*/%2A/",
        b"/.well-known/masque/ip/%253A/*/",
        b"/.well-known/masque/ip/192.0.2.1%2F33/*/",
    ]
    for i, path in enumerate(paths):
        write("masque_ip", f"scope-{i}", b"\x00" + path)
    templates = [
        (b"/masque/ip?t={target}&i={ipproto}", b"/masque/ip?t=192.0.2.0%2F24&i=17"),
        (b"https://proxy.example.org:4443/ip/{ipproto}/x/{target}", b"/ip/6/x/2001%3Adb8%3A%3A1"),
        (b"/t={target};", b"/t=*;"),
        (b"/{target}{ipproto}", b"/a1"),
    ]
    for i, (template, path) in enumerate(templates):
        write("masque_ip", f"template-{i}", b"\x00" + template + b"\n" + path)

    v4 = address_entry(1, 4, [192, 0, 2, 0], 24)
    v6 = address_entry(2, 6, bytes.fromhex("20010db8000000000000000000000000"), 32)
    write("masque_ip", "assign-two", b"\x01" + v4 + v6)
    write("masque_ip", "assign-empty", b"\x01")
    write("masque_ip", "assign-unsolicited", b"\x01" + address_entry(0, 4, [10, 0, 0, 1], 32))
    write("masque_ip", "assign-host-bits", b"\x01" + address_entry(0, 4, [10, 0, 0, 1], 8))
    write("masque_ip", "assign-prefix-too-long", b"\x01" + address_entry(0, 4, [10, 0, 0, 0], 33))
    write("masque_ip", "assign-version-5", b"\x01" + address_entry(0, 5, [10, 0, 0, 0], 8))
    write("masque_ip", "assign-truncated", b"\x01" + v4[:-1])
    write("masque_ip", "request-two", b"\x02" + v4 + v6)
    write("masque_ip", "request-any-v6", b"\x02" + address_entry(7, 6, bytes(16), 64))
    write("masque_ip", "request-empty", b"\x02")
    write("masque_ip", "request-zero-id", b"\x02" + address_entry(0, 4, [0, 0, 0, 0], 32))
    write("masque_ip", "request-duplicate-id", b"\x02" + v4 + v4)
    write("masque_ip", "request-long-id", b"\x02" + varint(5, 8) + v4[1:])

    r4 = route(4, [192, 0, 2, 0], [192, 0, 2, 255], 0)
    r4_udp = route(4, [198, 51, 100, 0], [198, 51, 100, 255], 17)
    r6 = route(6, bytes.fromhex("20010db8" + "00" * 12), bytes.fromhex("20010db8" + "ff" * 12), 6)
    write("masque_ip", "routes-sorted", b"\x03" + r4 + r4_udp + r6)
    write("masque_ip", "routes-empty", b"\x03")
    write("masque_ip", "routes-v6-before-v4", b"\x03" + r6 + r4)
    write("masque_ip", "routes-protocols-unsorted", b"\x03" + r4_udp + r4)
    write("masque_ip", "routes-overlap", b"\x03" + r4 + r4)
    write("masque_ip", "routes-overlap-all-protocols", b"\x03" + r4 + route(4, [192, 0, 2, 7], [192, 0, 2, 9], 17))
    write("masque_ip", "routes-start-after-end", b"\x03" + route(4, [10, 0, 0, 2], [10, 0, 0, 1], 0))
    write("masque_ip", "routes-version-7", b"\x03" + route(7, [0] * 4, [0] * 4, 0))
    write("masque_ip", "routes-truncated", b"\x03" + r6[:-3])
    for i, length in enumerate([40, 120, 250, 500]):
        write("masque_ip_roundtrip", f"random-{i}", pseudo_random(f"masque_ip{i}", length))


# --- socks5 -------------------------------------------------------------------------------

def socks5():
    no_auth, password, both = 0b001, 0b010, 0b011
    accept = 0b100
    connect_v4 = bytes([5, 1, 0, 1, 192, 0, 2, 1, 0, 80])
    connect_v6 = bytes([5, 1, 0, 4]) + bytes.fromhex("20010db8000000000000000000000001") + b"\x01\xbb"
    connect_domain = bytes([5, 1, 0, 3, 11]) + b"example.com" + b"\x00\x50"
    udp_any = bytes([5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
    alice = bytes([1, 5]) + b"alice" + bytes([2]) + b"pw"
    sessions = [
        ("no-auth-connect-v4", no_auth, bytes([5, 1, 0]) + connect_v4 + b"GET", []),
        ("no-auth-connect-v6", no_auth, bytes([5, 1, 0]) + connect_v6, [3, 1]),
        ("no-auth-connect-domain", no_auth, bytes([5, 1, 0]) + connect_domain, [7]),
        ("no-auth-udp-associate", no_auth, bytes([5, 1, 0]) + udp_any, [255]),
        ("password-accepted", password | accept, bytes([5, 1, 2]) + alice + connect_v4 + b"data", [2]),
        ("password-rejected", password, bytes([5, 1, 2]) + alice + connect_v4, []),
        ("both-prefers-password", both | accept, bytes([5, 2, 0, 2]) + alice + connect_domain, [5]),
        ("empty-credentials", password | accept, bytes([5, 1, 2, 1, 0, 0]) + connect_v4, []),
        ("gssapi-only", both, bytes([5, 1, 1]), []),
        ("no-methods", no_auth, bytes([5, 0]), []),
        ("bind-refused", no_auth, bytes([5, 1, 0, 5, 2, 0, 1, 192, 0, 2, 1, 0, 21]), []),
        ("unknown-command", no_auth, bytes([5, 1, 0, 5, 9, 0, 1, 192, 0, 2, 1, 0, 80]), []),
        ("unknown-atyp", no_auth, bytes([5, 1, 0, 5, 1, 0, 5, 0xde, 0xad]), []),
        ("unknown-command-and-atyp", no_auth, bytes([5, 1, 0, 5, 9, 0, 5]), []),
        ("empty-domain", no_auth, bytes([5, 1, 0, 5, 1, 0, 3, 0, 0, 80]), []),
        ("domain-with-space", no_auth, bytes([5, 1, 0, 5, 1, 0, 3, 3]) + b"a b\x00\x50", []),
        ("rsv-set", no_auth, bytes([5, 1, 0, 5, 1, 0xff, 1, 192, 0, 2, 1, 0, 80]), []),
        ("longest-domain", no_auth, bytes([5, 1, 0, 5, 1, 0, 3, 255]) + b"a" * 255 + b"\x01\xbb", [100]),
        ("bad-greeting-version", no_auth, bytes([4, 1, 0]), []),
        ("bad-auth-version", password, bytes([5, 1, 2, 5, 1]) + b"a\x01b", []),
        ("bad-request-version", no_auth, bytes([5, 1, 0, 4, 1, 0, 1, 192, 0, 2, 1, 0, 80]), []),
        ("longest-credentials", password | accept, bytes([5, 1, 2, 1, 255]) + b"u" * 255 + b"\xff" + b"p" * 255 + connect_v4, [200]),
    ]
    for name, flags, stream, sizes in sessions:
        write("socks5", name, chunked(stream, flags, sizes))
    # UDP relay datagrams ride in the stream too (read by decode_udp).
    udp = [
        ("udp-v4", bytes([0, 0, 0, 1, 192, 0, 2, 1, 0, 53]) + b"payload"),
        ("udp-v6", bytes([0, 0, 0, 4]) + bytes(15) + b"\x01\x00\x35"),
        ("udp-domain", bytes([0, 0, 0, 3, 3]) + b"a.b\x00\x35x"),
        ("udp-fragment", bytes([0, 0, 1, 1, 192, 0, 2, 1, 0, 53])),
        ("udp-truncated", bytes([0, 0, 0, 1, 192, 0])),
    ]
    for name, datagram in udp:
        write("socks5", name, chunked(datagram, no_auth, [255]))
    for i, length in enumerate([40, 120, 300, 600]):
        write("socks5_roundtrip", f"random-{i}", pseudo_random(f"socks5{i}", length))


# --- http1 --------------------------------------------------------------------------------

def http1():
    default, tiny, small = 0, 1, 2
    close, via = 0b0100, 0b1000
    requests = [
        ("connect", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01"),
        ("connect-http10", b"CONNECT 192.0.2.7:22 HTTP/1.0\r\n\r\n"),
        ("connect-ipv6", b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]\r\n\r\n\x16\x03\x01"),
        ("connect-bearer", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\nProxy-Authorization: Bearer abc.def\r\n\r\n"),
        ("connect-content-length-0", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n"),
        ("connect-with-body", b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\n"),
        ("connect-no-port", b"CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        ("forward-get", b"GET http://www.example.org/pub/WWW/TheProject.html HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: x\r\n\r\n"),
        ("forward-options-asterisk", b"OPTIONS http://www.example.org:8001 HTTP/1.1\r\nHost: www.example.org:8001\r\n\r\n"),
        ("forward-options-query", b"OPTIONS http://www.example.org?x HTTP/1.1\r\nHost: www.example.org\r\n\r\n"),
        ("forward-query-only", b"GET http://EXAMPLE.com:8080?q=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"),
        ("forward-post", b"POST http://api.example:8080/v1/items?id=7 HTTP/1.1\r\nHost: api.example:8080\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"),
        ("forward-chunked", b"POST http://a.example/upload HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ("forward-gzip-chunked", b"PUT http://a.example/x HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ("forward-http10", b"GET http://old.example/ HTTP/1.0\r\n\r\n"),
        ("forward-connection-options", b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\n"),
        ("forward-basic", b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\nProxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"),
        ("forward-basic-unpadded", b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\nProxy-Authorization: basic YTpi\r\n\r\n"),
        ("forward-obs-text", b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\nX-Name: caf\xe9 \r\n\r\n"),
        ("leading-empty-lines-lf", b"\r\n\r\nGET http://a.example/ HTTP/1.1\nHost: a.example\n\n"),
        ("cl-and-te", b"POST http://a.example/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("two-content-lengths", b"POST http://a.example/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
        ("content-length-list", b"POST http://a.example/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc"),
        ("content-length-plus", b"POST http://a.example/ HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc"),
        ("te-not-chunked-last", b"POST http://a.example/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        ("te-in-http10", b"POST http://a.example/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("space-before-colon", b"GET http://a/ HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n"),
        ("obs-fold", b"GET http://a/ HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n"),
        ("leading-space-field", b"GET http://a/ HTTP/1.1\r\n Host: a\r\n\r\n"),
        ("bare-cr", b"GET http://a/ HTTP/1.1\rHost: a\r\r"),
        ("origin-form", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("asterisk-form", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("https-scheme", b"GET https://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        ("userinfo", b"GET http://user:pw@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        ("missing-host", b"GET http://a.example/ HTTP/1.1\r\n\r\n"),
        ("duplicate-host", b"GET http://a.example/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("invalid-host", b"GET http://a.example/ HTTP/1.1\r\nHost: a b\r\n\r\n"),
        ("duplicate-proxy-authorization", b"GET http://a/ HTTP/1.1\r\nHost: a\r\nProxy-Authorization: Basic a\r\nProxy-Authorization: Basic b\r\n\r\n"),
        ("invalid-proxy-authorization", b"GET http://a/ HTTP/1.1\r\nHost: a\r\nProxy-Authorization: B@sic x\r\n\r\n"),
        ("http2-version", b"GET http://a/ HTTP/2.0\r\nHost: a\r\n\r\n"),
        ("tls-client-hello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n"),
        ("ipv6-port", b"GET http://[2001:db8::1]:8080/p HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n"),
        ("bad-port", b"GET http://a.example:99999/ HTTP/1.1\r\nHost: a.example\r\n\r\n"),
    ]
    for i, (name, stream) in enumerate(requests):
        flags = [default, default | close | via, default | via, default | close][i % 4]
        sizes = [[], [7], [1, 13], [255]][i % 4]
        write("http1", name, chunked(stream, flags, sizes))
    long_line = b"GET http://a.example/" + b"x" * 80 + b" HTTP/1.1\r\nHost: a.example\r\n\r\n"
    write("http1", "request-line-too-long", chunked(long_line, tiny, [9]))
    big_head = b"GET http://a/ HTTP/1.1\r\nHost: a\r\n" + b"X-Pad: " + b"p" * 300 + b"\r\n\r\n"
    write("http1", "head-too-large", chunked(big_head, small, [50]))
    many = b"GET http://a/ HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(64)) + b"\r\n"
    write("http1", "too-many-headers", chunked(many, default, [255]))


# --- http1_stream -------------------------------------------------------------------------

def http1_stream():
    default, tiny, small = 0, 1, 2
    halves, head_in_two = 0b0100, 0b1000
    get = b"GET /a?b=c HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n\r\n"
    post = b"POST /up HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello"
    te_chunked = (b"PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
               b"5;name=\"q \\\" v\";flag\r\nhello\r\n00a\r\n0123456789\r\n0 ; last = yes\r\nX-Sum: abc\r\n\r\n")
    streams = [
        ("get", get),
        ("post", post),
        ("chunked", te_chunked),
        ("pipelined", get + post + te_chunked + b"\r\n" + get),
        ("options-asterisk", b"OPTIONS * HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
        ("absolute-form", b"GET http://a.example:8080/p?q HTTP/1.1\r\nHost: a.example:8080\r\n\r\n"),
        ("http10-lf", b"\r\n\nGET / HTTP/1.0\nUser-Agent: x\nX-Obs: caf\xe9 \n\n"),
        ("websocket", b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"),
        ("post-cut-short", post[:-2]),
        ("chunked-cut-short", te_chunked[:-9]),
        ("connect", b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n"),
        ("get-asterisk", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("fragment", b"GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("missing-host", b"GET / HTTP/1.1\r\n\r\n"),
        ("duplicate-host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        ("cl-and-te", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("two-content-lengths", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
        ("te-gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n"),
        ("chunk-bare-lf", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
        ("chunk-size-overflow", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n"),
        ("chunk-missing-crlf", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n"),
        ("chunk-bad-extension", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b\r\nhello\r\n"),
        ("trailer-obs-fold", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n X: 1\r\n\r\n"),
        ("huge-content-length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\nabc"),
    ]
    for i, (name, stream) in enumerate(streams):
        flags = [default, halves, head_in_two, default | halves | head_in_two][i % 4]
        sizes = [[], [7], [1, 13], [255]][i % 4]
        write("http1_stream", name, chunked(stream, flags, sizes))
    long_ext = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"e" * 1100 + b"\r\nx\r\n0\r\n\r\n"
    write("http1_stream", "chunk-line-too-long", chunked(long_ext, default, [200]))
    big_trailer = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + b"t" * 300 + b"\r\n\r\n"
    write("http1_stream", "trailers-too-large", chunked(big_trailer, small, [50]))
    long_line = b"GET /" + b"x" * 80 + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    write("http1_stream", "request-line-too-long", chunked(long_line, tiny, [9]))


# --- proxy_protocol -----------------------------------------------------------------------

def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command, family, transport, body, tlvs=b"", checksum=False):
    if checksum:
        tlvs += b"\x03\x00\x04\x00\x00\x00\x00"
    payload = body + tlvs
    header = V2_SIGNATURE + bytes([0x20 | command, family << 4 | transport]) + struct.pack(">H", len(payload)) + payload
    if checksum:
        header = header[:-4] + struct.pack(">I", crc32c(header))
    return header


def tlv(kind, value):
    return bytes([kind]) + struct.pack(">H", len(value)) + value


def proxy_protocol():
    lines = [
        ("v1-tcp4", b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"),
        ("v1-tcp4-max", b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"),
        ("v1-unknown", b"PROXY UNKNOWN\r\n"),
        ("v1-unknown-junk", b"PROXY UNKNOWN  not  an address\r\nxyz"),
        ("v1-tcp6", b"PROXY TCP6 ::1 2001:DB8::0001 0 1\r\n"),
        ("v1-tcp6-mapped", b"PROXY TCP6 ::ffff:10.0.0.1 :: 1 2\r\n"),
        ("v1-tcp6-max", b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
        ("v1-bad-octet", b"PROXY TCP4 999.1.1.1 1.1.1.1 1 2"),
        ("v1-no-space", b"PROXYX"),
        ("v1-tab", b"PROXY\tTCP4"),
        ("v1-bare-lf", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
        ("v1-cr-cr-lf", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"),
        ("v1-tcp5", b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"),
        ("v1-lowercase", b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"),
        ("v1-double-space", b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"),
        ("v1-trailing-space", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"),
        ("v1-missing-port", b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
        ("v1-extra-field", b"PROXY TCP6 ::1 ::2 1 2 3\r\n"),
        ("v1-family-mismatch", b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n"),
        ("v1-leading-zero-octet", b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"),
        ("v1-zone", b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"),
        ("v1-leading-zero-port", b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"),
        ("v1-port-65536", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"),
        ("v1-too-long", b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n"),
        ("v1-prefix", b"PROX"),
    ]
    for name, data in lines:
        write("proxy_protocol", name, data)
    inet = bytes([192, 168, 0, 1, 192, 168, 0, 11]) + struct.pack(">HH", 56324, 443)
    inet6 = bytes.fromhex("20010db8" + "00" * 11 + "01") + bytes.fromhex("20010db8" + "00" * 11 + "02") + struct.pack(">HH", 1, 2)
    unix = b"/tmp/client".ljust(108, b"\x00") + b"\x00@abstract".ljust(108, b"\x00")
    ssl = tlv(0x20, b"\x07\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"client.example"))
    headers = [
        ("v2-local", v2(0, 0, 0, b"")),
        ("v2-local-with-block", v2(0, 1, 1, inet)),
        ("v2-local-short-block", v2(0, 3, 1, b"ignored")),
        ("v2-tcp4", v2(1, 1, 1, inet) + b"GET /"),
        ("v2-udp6", v2(1, 2, 2, inet6)),
        ("v2-unix-stream", v2(1, 3, 1, unix)),
        ("v2-unspec-transport", v2(1, 1, 0, inet)),
        ("v2-tlvs", v2(1, 1, 1, inet, tlv(0x01, b"h2") + tlv(0x02, b"example.com") + tlv(0x04, b"\x00" * 3) + tlv(0x05, b"id-1") + ssl + tlv(0xe0, b"custom"))),
        ("v2-crc32c", v2(1, 1, 1, inet, tlv(0x01, b"h2"), checksum=True)),
        ("v2-crc32c-local", v2(0, 0, 0, b"", checksum=True)),
        ("v2-crc32c-mismatch", v2(1, 1, 1, inet, checksum=True)[:-1] + b"\x00"),
        ("v2-crc32c-short", v2(1, 1, 1, inet, tlv(0x03, b"\x00\x00"))),
        ("v2-two-crc32c", v2(1, 1, 1, inet, tlv(0x03, b"\x00" * 4) + tlv(0x03, b"\x00" * 4))),
        ("v2-ssl-too-short", v2(1, 1, 1, inet, tlv(0x20, b"\x01\x00"))),
        ("v2-ssl-sub-crosses-end", v2(1, 1, 1, inet, tlv(0x20, b"\x01\x00\x00\x00\x00\x21\x00\x09ab"))),
        ("v2-tlv-crosses-end", v2(1, 1, 1, inet, b"\x01\x00\x05ab")),
        ("v2-version-1", V2_SIGNATURE + b"\x11\x11\x00\x0c" + inet),
        ("v2-command-2", V2_SIGNATURE + b"\x22\x11\x00\x0c" + inet),
        ("v2-family-4", V2_SIGNATURE + b"\x21\x41\x00\x0c" + inet),
        ("v2-transport-3", V2_SIGNATURE + b"\x21\x13\x00\x0c" + inet),
        ("v2-addresses-truncated", V2_SIGNATURE + b"\x21\x21\x00\x0c" + inet),
        ("v2-too-long", V2_SIGNATURE + b"\x21\x11\xff\xff" + inet),
        ("v2-incomplete", v2(1, 1, 1, inet)[:20]),
        ("v2-signature-prefix", V2_SIGNATURE[:7]),
        ("not-proxy", b"GET / HTTP/1.1\r\n"),
    ]
    for name, data in headers:
        write("proxy_protocol", name, data)
    for i, length in enumerate([30, 90, 250, 600]):
        write("proxy_protocol_roundtrip", f"random-{i}", pseudo_random(f"proxy_protocol{i}", length))


# --- ip -----------------------------------------------------------------------------------

def ones_complement(data):
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum(data):
    return ~ones_complement(data) & 0xFFFF


def ipv4(protocol, payload, src=(192, 0, 2, 1), dst=(198, 51, 100, 2), ttl=64, flags_offset=0x4000, options=b"", ident=0):
    ihl = 5 + len(options) // 4
    header = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(payload), ident, flags_offset, ttl, protocol, 0, bytes(src), bytes(dst)) + options
    header = header[:10] + struct.pack(">H", checksum(header)) + header[12:]
    return header + payload


def ipv6(next_header, payload, src="20010db8000000000000000000000001", dst="20010db8000000000000000000000002", hop_limit=64):
    return struct.pack(">IHBB", 0x60000000, len(payload), next_header, hop_limit) + bytes.fromhex(src) + bytes.fromhex(dst) + payload


def with_v4_checksum(packet):
    """`packet` with its IPv4 header checksum recomputed after an edit."""
    header_len = (packet[0] & 0x0F) * 4
    header = packet[:10] + b"\x00\x00" + packet[12:header_len]
    return header[:10] + struct.pack(">H", checksum(header)) + packet[12:]


def pseudo_v4(src, dst, protocol, length):
    return bytes(src) + bytes(dst) + struct.pack(">BBH", 0, protocol, length)


def pseudo_v6(src, dst, protocol, length):
    return bytes.fromhex(src) + bytes.fromhex(dst) + struct.pack(">IxxxB", length, protocol)


def udp(sport, dport, payload, pseudo):
    header = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0)
    value = checksum(pseudo(17, 8 + len(payload)) + header + payload) or 0xFFFF
    return header[:6] + struct.pack(">H", value) + payload


def tcp(sport, dport, flags, pseudo, options=b"", payload=b""):
    offset = 5 + len(options) // 4
    header = struct.pack(">HHIIBBHHH", sport, dport, 1, 0, offset << 4, flags, 65535, 0, 0) + options
    segment = header + payload
    value = checksum(pseudo(6, len(segment)) + segment)
    return segment[:16] + struct.pack(">H", value) + segment[18:]


def icmp(icmp_type, code, rest, body, pseudo=None):
    message = bytes([icmp_type, code, 0, 0]) + rest + body
    summed = (pseudo(58, len(message)) if pseudo else b"") + message
    value = checksum(summed)
    return message[:2] + struct.pack(">H", value) + message[4:]


def ip_packets():
    s4, d4 = (192, 0, 2, 1), (198, 51, 100, 2)
    s6, d6 = "20010db8000000000000000000000001", "20010db8000000000000000000000002"
    p4 = lambda protocol, length: pseudo_v4(s4, d4, protocol, length)
    p6 = lambda protocol, length: pseudo_v6(s6, d6, protocol, length)
    udp4 = ipv4(17, udp(40000, 53, b"dns query", p4))
    tcp4 = ipv4(6, tcp(40000, 443, 0x02, p4, options=b"\x02\x04\x05\xb4"))
    echo4 = ipv4(1, icmp(8, 0, b"\x00\x01\x00\x01", b"ping"))
    packets = [
        ("v4-udp", udp4),
        ("v4-udp-padded", udp4 + b"\x00" * 6),
        ("v4-udp-no-checksum", ipv4(17, struct.pack(">HHHH", 1, 2, 10, 0) + b"hi")),
        ("v4-tcp-syn", tcp4),
        ("v4-icmp-echo", echo4),
        ("v4-icmp-error", ipv4(1, icmp(3, 3, b"\x00" * 4, udp4[:28]))),
        ("v4-options", ipv4(17, udp(1, 2, b"x", p4), options=b"\x01\x01\x01\x00")),
        ("v4-ttl-1", ipv4(17, udp(1, 2, b"x", p4), ttl=1)),
        ("v4-first-fragment", ipv4(17, udp(1, 2, b"12345678", p4)[:16], flags_offset=0x2000, ident=7)),
        ("v4-later-fragment", ipv4(17, b"later data", flags_offset=0x0002, ident=7)),
        ("v4-multicast-destination", ipv4(17, udp(1, 2, b"x", lambda p, n: pseudo_v4(s4, (224, 0, 0, 1), p, n)), dst=(224, 0, 0, 1))),
        ("v4-loopback-source", ipv4(17, udp(1, 2, b"x", lambda p, n: pseudo_v4((127, 0, 0, 1), d4, p, n)), src=(127, 0, 0, 1))),
        ("v4-other-protocol", ipv4(47, b"gre")),
        ("v4-bad-checksum", udp4[:10] + b"\x00\x00" + udp4[12:]),
        ("v4-ihl-4", b"\x44" + udp4[1:]),
        ("v4-total-length-short", with_v4_checksum(udp4[:2] + b"\x00\x10" + udp4[4:])),
        ("v4-truncated", udp4[:12]),
        ("v4-udp-length-long", ipv4(17, struct.pack(">HHHH", 1, 2, 40, 0) + b"hi")),
        ("v4-udp-length-short", ipv4(17, struct.pack(">HHHH", 1, 2, 4, 0) + b"hi")),
        ("v4-tcp-offset-4", ipv4(6, tcp(1, 2, 0x10, p4)[:12] + b"\x40" + tcp(1, 2, 0x10, p4)[13:])),
        ("v4-tcp-truncated", ipv4(6, b"\x00" * 12)),
        ("version-5", b"\x50" + bytes(39)),
        ("empty", b""),
    ]
    udp6 = ipv6(17, udp(40000, 53, b"dns query", p6))
    hop_by_hop = bytes([60, 0, 1, 4, 0, 0, 0, 0])  # next: Destination Options; PadN
    dest_opts = bytes([44, 0, 1, 4, 0, 0, 0, 0])  # next: Fragment
    packets += [
        ("v6-udp", udp6),
        ("v6-tcp", ipv6(6, tcp(40000, 443, 0x12, p6))),
        ("v6-icmp-echo", ipv6(58, icmp(128, 0, b"\x00\x01\x00\x01", b"ping", p6))),
        ("v6-icmp-error", ipv6(58, icmp(1, 4, b"\x00" * 4, udp6, p6))),
        ("v6-extension-chain", ipv6(0, hop_by_hop + dest_opts + bytes([17, 0, 0, 0, 0, 0, 0, 9]) + udp(1, 2, b"x", p6))),
        ("v6-later-fragment", ipv6(44, bytes([17, 0, 0x00, 0x11, 0, 0, 0, 9]) + b"fragment data")),
        ("v6-first-fragment", ipv6(44, bytes([17, 0, 0x00, 0x01, 0, 0, 0, 9]) + udp(1, 2, b"12345678", p6)[:16])),
        ("v6-two-fragment-headers", ipv6(44, bytes([44, 0, 0, 0, 0, 0, 0, 1]) + bytes([17, 0, 0, 0, 0, 0, 0, 2]) + udp(1, 2, b"x", p6))),
        ("v6-hop-by-hop-not-first", ipv6(60, bytes([0, 0, 1, 4, 0, 0, 0, 0]) + hop_by_hop)),
        ("v6-routing", ipv6(43, bytes([17, 0, 0, 0, 0, 0, 0, 0]) + udp(1, 2, b"x", p6))),
        ("v6-no-next-header", ipv6(59, b"")),
        ("v6-esp", ipv6(50, b"\x00\x00\x01\x00opaque")),
        ("v6-multicast-destination", ipv6(17, udp(1, 2, b"x", lambda p, n: pseudo_v6(s6, "ff020000000000000000000000000001", p, n)), dst="ff020000000000000000000000000001")),
        ("v6-unspecified-source", ipv6(17, udp(1, 2, b"x", lambda p, n: pseudo_v6("00" * 16, d6, p, n)), src="00" * 16)),
        ("v6-hop-limit-0", ipv6(17, udp(1, 2, b"x", p6), hop_limit=0)),
        ("v6-udp-zero-checksum", ipv6(17, struct.pack(">HHHH", 1, 2, 10, 0) + b"hi")),
        ("v6-payload-length-long", udp6[:4] + b"\x01\x00" + udp6[6:]),
        ("v6-truncated", udp6[:30]),
        ("v6-extension-truncated", ipv6(60, bytes([17, 5]))),
    ]
    for name, packet in packets:
        write("ip", name, packet)
    for i, length in enumerate([60, 90, 200, 600]):
        write("ip_roundtrip", f"random-{i}", pseudo_random(f"ip{i}", length))


# --- engine -------------------------------------------------------------------------------
# The action format of fuzz/bodies/src/engine/input.rs: two setup bytes, then actions, each
# a tag byte and its fields. Sides: 0 client, 1 edge. Directions: 0 to the edge, 1 to the
# client, 2 to the raw peer.

CLIENT, EDGE = 0, 1
TO_EDGE, TO_CLIENT, TO_RAW = 0, 1, 2


def le16(value):
    return [value & 0xFF, value >> 8]


def blob(data):
    data = bytes(data)
    assert len(data) < 256
    return [len(data), *data]


def open_name(index):
    return [0, 0, index]


def open_v4(*octets):
    return [0, 1, *octets]


def open_v6(text):
    import ipaddress
    return [0, 2, *ipaddress.IPv6Address(text).packed]


def open_bytes(data):
    return [0, 3, *blob(data)]


def accept(side, pick):
    return [1, side, pick]


def refuse(side, pick, refusal):
    return [2, side, pick, refusal]


def send(side, pick, length):
    return [3, side, pick, *le16(length)]


def recv(side, pick, length):
    return [4, side, pick, *le16(length)]


def finish(side, pick):
    return [5, side, pick]


def abort(side, pick):
    return [6, side, pick]


def deliver(direction, count):
    return [7, direction, count]


def drop(direction, pick):
    return [8, direction, pick]


def duplicate(direction, pick):
    return [9, direction, pick]


def reorder(direction, pick):
    return [10, direction, pick]


def corrupt(direction, pick, position, mask):
    return [11, direction, pick, *le16(position), mask]


def inject(direction, data):
    return [12, direction, *blob(data)]


def advance(millis):
    return [13, *le16(millis)]


def pump(rounds):
    return [14, rounds]


def read_all(side):
    return [15, side]


def close(side, code, reason):
    return [16, side, *le16(code), *blob(reason)]


def field(value):
    """A header name or value: a vocabulary index, or bytes."""
    if isinstance(value, int):
        assert value < 0xE0
        return [value]
    return [0xE0, *blob(value)]


def raw_request(headers, fin=False):
    out = [17, len(headers)]
    for name, value in headers:
        out += field(name) + field(value)
    return out + [int(fin)]


def raw_body(pick, fin, data):
    return [18, pick, int(fin), *blob(data)]


def raw_stream(stream, fin, data):
    return [19, stream, int(fin), *blob(data)]


def raw_uni(kind, data):
    return [20, kind, *blob(data)]


def raw_datagram(data):
    return [21, *blob(data)]


def raw_reset(pick, direction, code):
    return [22, pick, direction, *le16(code)]


def advance_secs(secs):
    return [23, secs]


def open_many(count):
    return [25, count]


def raw_close(code):
    return [26, *le16(code)]


def sleep(millis):
    return [27, millis]


def open_udp(index):
    return [28, 0, index]


def send_datagram(side, pick, length):
    return [29, side, pick, *le16(length)]


def recv_datagram(side, pick, length):
    return [30, side, pick, *le16(length)]


def raw_http_datagram(pick, context, payload):
    return [31, pick, context, *blob(payload)]


def read_datagrams(side):
    return [32, side]


# CONNECT-IP actions (tags 33 to 39).
def open_ip_any(proto=0):
    return [33, 0, proto]


def open_ip_listed(index, proto=0):
    return [33, 1, index, proto]


def open_ip_v4(octets, length, proto=0):
    return [33, 2, *octets, length, proto]


def open_ip_v6(text, length, proto=0):
    import ipaddress
    return [33, 3, *ipaddress.IPv6Address(text).packed, length, proto]


def assigned(index=0):
    return [0, index]


def listed(index):
    return [1, index]


def literal_v4(*octets):
    return [2, *octets]


def literal_v6(text):
    import ipaddress
    return [2, *ipaddress.IPv6Address(text).packed]


def udp_packet(src, dst, payload=b"", v6=False, hop=64, pad=0):
    return [0, int(v6), *src, *dst, hop, *blob(payload), *le16(pad)]


def icmp_packet(src, dst, payload=b"", v6=False, hop=64, pad=0):
    return [1, int(v6), *src, *dst, hop, *blob(payload), *le16(pad)]


def raw_packet(data, pad=0, bypass=False):
    return [3 if bypass else 2, *blob(data), *le16(pad)]


def send_packet(side, pick, packet):
    return [34, side, pick, *packet]


def recv_packet(side, pick, length):
    return [35, side, pick, *le16(length)]


def read_packets(side):
    return [36, side]


def ip_deliver(pick, packet, answer=0):
    return [37, pick, *packet, answer]


def raw_ip_request(path, flags=0):
    """path: an IP_PATHS index or bytes; flags: 1 token, 2 FIN, 4 no capsule-protocol,
    8 empty authority."""
    return [38, *field(path), flags]


def raw_capsule(pick, kind, mode, data):
    """kind: 0 DATAGRAM, 1 ADDRESS_ASSIGN, 2 ADDRESS_REQUEST, 3 ROUTE_ADVERTISEMENT (or a
    type from 0xc0); mode: 1 built from the bytes, 2 a DATAGRAM as a QUIC DATAGRAM frame."""
    return [39, pick, kind, mode, *blob(data)]


# Setup flags (first byte): auth in the low two bits, then small windows, no datagrams,
# small client queue, one edge connection, loopback allowed; the second byte picks the
# congestion controller.
AUTH_TOKEN, AUTH_WRONG, AUTH_NONE = 1, 2, 3
SMALL_WINDOWS, NO_DATAGRAMS, SMALL_QUEUE, ONE_CONNECTION, ALLOW_LOOPBACK = 4, 8, 16, 32, 64
# Second byte, bits 4 and 5: the edge's CONNECT-IP pools (10.89.0.0/30 holds one client
# address, fd00:89::/126 two).
POOLS_BOTH, POOLS_V4, POOLS_V6, POOLS_NONE = 0x00, 0x10, 0x20, 0x30
# V4_ADDRESSES and V6_ADDRESSES in engine/mod.rs: public, private, gateway, the pool's
# first address, broadcast (IPv4) or its second (IPv6), loopback, link-local, multicast.
PUBLIC, PRIVATE, GATEWAY, POOL_FIRST, POOL_LAST, LOOPBACK, LINK_LOCAL, MULTICAST = range(8)

# Raw request vocabulary indices (HEADER_NAMES and HEADER_VALUES in engine/mod.rs).
METHOD, AUTHORITY, PROTOCOL, SCHEME, PATH, PROXY_AUTH, CAPSULE_PROTOCOL = range(7)
CONNECT_, EXAMPLE_443, GET, LOOPBACK_22, V6_LOOPBACK = range(5)
TOKEN_RIGHT, TOKEN_WRONG = 15, 16
CONNECT_UDP, CONNECT_IP, HTTPS, CAPSULE_YES = 10, 11, 12, 18
IP_PATH_ANY = 33
UDP_PATH, UDP_PATH_LOOPBACK, UDP_PATH_V6, UDP_PATH_PORT_0, UDP_PATH_QUERY, PROXY_AUTHORITY = range(27, 33)


def udp_request(path):
    return raw_request([(METHOD, CONNECT_), (PROTOCOL, CONNECT_UDP), (SCHEME, HTTPS),
                        (AUTHORITY, PROXY_AUTHORITY), (PATH, path), (CAPSULE_PROTOCOL, CAPSULE_YES)])


def engine_seed(name, flags, more, *actions):
    data = bytes([flags, more])
    for action in actions:
        data += bytes(action)
    write("engine", name, data)


def engine():
    opened = [open_name(0), pump(8), accept(EDGE, 0), pump(8)]
    engine_seed("tunnel-both-ways", 0, 0, *opened,
                send(CLIENT, 0, 3000), send(EDGE, 0, 2000), pump(8),
                read_all(EDGE), read_all(CLIENT), finish(CLIENT, 0), finish(EDGE, 0),
                pump(8), read_all(EDGE), read_all(CLIENT), pump(4))
    engine_seed("token-small-windows", AUTH_TOKEN | SMALL_WINDOWS, 1, *opened,
                send(CLIENT, 0, 8000), send(CLIENT, 0, 8000), pump(4),
                recv(EDGE, 0, 1000), pump(4), send(CLIENT, 0, 8000), read_all(EDGE),
                send(EDGE, 0, 8000), pump(4), recv(CLIENT, 0, 5000), finish(EDGE, 0), pump(4))
    engine_seed("refusals", 0, 2,
                open_name(0), open_name(2), open_name(3), open_name(5), pump(8),
                refuse(EDGE, 0, 0), refuse(EDGE, 0, 2), refuse(EDGE, 0, 5),
                refuse(EDGE, 0, 8), accept(CLIENT, 0), refuse(CLIENT, 0, 1), pump(8))
    engine_seed("forbidden-addresses", 0, 0,
                open_v4(127, 0, 0, 1), open_v4(10, 1, 2, 3), open_v6("::1"),
                open_v6("::ffff:169.254.169.254"), open_name(1), open_v4(1, 1, 1, 1),
                pump(8), accept(EDGE, 0), pump(4))
    engine_seed("loopback-allowed", ALLOW_LOOPBACK, 0,
                open_v4(127, 0, 0, 1), open_name(1), pump(8), accept(EDGE, 0), accept(EDGE, 1),
                pump(4))
    engine_seed("wrong-token", AUTH_WRONG, 0, open_name(0), open_bytes(b"abc.def"), pump(8))
    engine_seed("no-token", AUTH_NONE, 0, open_name(0), pump(8))
    engine_seed("loss-recovery", 0, 0, *opened, send(CLIENT, 0, 5000), drop(TO_EDGE, 0),
                drop(TO_EDGE, 1), pump(8), sleep(40), pump(8), sleep(40), pump(8), read_all(EDGE))
    engine_seed("loss-and-reorder", 0, 0, *opened,
                send(CLIENT, 0, 6000), drop(TO_EDGE, 1), reorder(TO_EDGE, 0),
                duplicate(TO_EDGE, 2), corrupt(TO_EDGE, 0, 40, 0x55), pump(8),
                send(EDGE, 0, 4000), reorder(TO_CLIENT, 0), duplicate(TO_CLIENT, 1),
                deliver(TO_CLIENT, 1), pump(8), read_all(EDGE), read_all(CLIENT))
    engine_seed("pending-deadline", SMALL_QUEUE, 0,
                open_name(0), open_name(2), drop(TO_EDGE, 0), open_many(6),
                advance_secs(11), advance(200), pump(4), open_name(3), pump(8))
    engine_seed("aborts", 0, 0, *opened, open_name(2), pump(8), accept(EDGE, 1), pump(8),
                send(CLIENT, 0, 500), abort(CLIENT, 0), pump(4), send(EDGE, 0, 100),
                abort(EDGE, 0), abort(EDGE, 0xF8), send(CLIENT, 0xF9, 10), pump(4))
    engine_seed("close-and-reconnect", 0, 0, *opened, send(CLIENT, 0, 100),
                close(EDGE, 0, b"bye"), pump(8), sleep(63), pump(1), sleep(37), pump(1),
                advance(500), pump(8), open_name(0), pump(8), advance_secs(12), pump(2),
                close(CLIENT, 1, b"done"), pump(4), open_name(0))
    engine_seed("raw-requests", AUTH_TOKEN, 0,
                raw_request([(METHOD, CONNECT_), (AUTHORITY, EXAMPLE_443), (PROXY_AUTH, TOKEN_RIGHT)]),
                raw_request([(METHOD, CONNECT_), (AUTHORITY, EXAMPLE_443)]),
                raw_request([(METHOD, CONNECT_), (AUTHORITY, EXAMPLE_443), (PROXY_AUTH, TOKEN_WRONG)]),
                raw_request([(METHOD, GET), (AUTHORITY, EXAMPLE_443), (PROXY_AUTH, TOKEN_RIGHT)]),
                raw_request([(METHOD, CONNECT_), (PROTOCOL, 10), (SCHEME, 12), (PATH, 14),
                             (AUTHORITY, EXAMPLE_443), (PROXY_AUTH, TOKEN_RIGHT)]),
                raw_request([(METHOD, CONNECT_), (AUTHORITY, b"[::ffff:7f00:1]:22"),
                             (PROXY_AUTH, TOKEN_RIGHT)]),
                raw_request([(METHOD, CONNECT_), (AUTHORITY, b"exa mple:1"), (PROXY_AUTH, TOKEN_RIGHT)]),
                pump(8), accept(EDGE, 0), pump(4), raw_body(0, False, b"hello"), pump(4),
                send(EDGE, 0, 300), pump(4), read_all(EDGE), raw_reset(0, 1, 0x10F), pump(4))
    engine_seed("raw-garbage", 0, 0,
                raw_request([(METHOD, CONNECT_), (AUTHORITY, EXAMPLE_443)]), pump(4),
                raw_stream(0, False, bytes([0x00, 0x03]) + b"abc"),
                raw_stream(4, True, bytes([0x01, 0x02, 0xFF, 0xFF])),
                raw_stream(8, False, bytes([0x21, 0x00])),
                raw_datagram(bytes([0x00, 0x00]) + b"payload"), raw_datagram(b"\xff"),
                raw_uni(0, bytes([0x54]) + b"unknown stream type"), pump(8),
                raw_uni(1, bytes([0x04, 0x00])), pump(8), raw_close(0x100), pump(4))
    engine_seed("injected", ONE_CONNECTION, 0,
                inject(TO_EDGE, bytes([0xC0, 0x1A, 0x2A, 0x3A, 0x4A, 8]) + b"12345678"),
                inject(TO_EDGE, bytes([0xC3, 0, 0, 0, 1, 8]) + b"abcdefgh" + bytes([8]) + b"ijklmnop"),
                inject(TO_EDGE, bytes([0x40]) + b"short header"), inject(TO_CLIENT, b"\x00"),
                open_name(0), pump(8), accept(EDGE, 0), inject(TO_CLIENT, bytes([0x41]) * 30),
                pump(4), raw_request([(METHOD, CONNECT_), (AUTHORITY, EXAMPLE_443)]), pump(4))
    engine_seed("many-tunnels-small-windows", SMALL_WINDOWS | NO_DATAGRAMS, 2,
                open_many(12), pump(8), *[accept(EDGE, i) for i in range(12)], pump(8),
                *[send(CLIENT, i, 7000) for i in range(12)], pump(8),
                *[recv(EDGE, i, 3000) for i in range(12)], pump(8), read_all(EDGE), pump(8))
    udp_opened = [open_udp(0), pump(8), accept(EDGE, 0), pump(8)]
    udp_exchange = [send_datagram(CLIENT, 0, 100), send_datagram(CLIENT, 0, 1300),
                    send_datagram(CLIENT, 0, 3000), send_datagram(EDGE, 0, 50),
                    send_datagram(EDGE, 0, 1200), pump(8), recv_datagram(EDGE, 0, 10),
                    read_datagrams(EDGE), read_datagrams(CLIENT), send(CLIENT, 0, 10),
                    recv(EDGE, 0, 10)]
    engine_seed("udp-frames", 0, 0, *udp_opened, *udp_exchange, finish(CLIENT, 0), pump(8),
                send_datagram(CLIENT, 0, 10), pump(4))
    engine_seed("udp-capsules", NO_DATAGRAMS | SMALL_WINDOWS, 0, *udp_opened, *udp_exchange,
                *[send_datagram(CLIENT, 0, 2000) for _ in range(8)], pump(8),
                read_datagrams(EDGE), finish(EDGE, 0), pump(8))
    engine_seed("udp-idle-and-queue", SMALL_QUEUE, 0, *udp_opened,
                *[send_datagram(EDGE, 0, 60) for _ in range(8)], pump(8), read_datagrams(CLIENT),
                advance_secs(6), pump(4), open_udp(1), open_udp(2), pump(8))
    engine_seed("udp-raw", 0, 0, udp_request(UDP_PATH), udp_request(UDP_PATH_LOOPBACK),
                udp_request(UDP_PATH_V6), udp_request(UDP_PATH_PORT_0), udp_request(UDP_PATH_QUERY),
                pump(8), accept(EDGE, 0), pump(8),
                raw_http_datagram(0, 0, b"\x00\x00\x00\x00\x00\x00payload"),
                raw_http_datagram(0, 7, b"other context"), raw_http_datagram(3, 0, b"x"),
                raw_body(0, False, bytes([0x00, 0x05, 0x00]) + b"abcd"),
                raw_body(0, False, bytes([0x17, 0x02]) + b"xy"),
                pump(8), read_datagrams(EDGE), send_datagram(EDGE, 0, 40), pump(8),
                raw_body(0, False, bytes([0x00, 0x80, 0xFF, 0xFF, 0xFF, 0x00])), pump(8))
    engine_seed("udp-raw-capsules-fin", 0, 0, udp_request(UDP_PATH), pump(8), accept(EDGE, 0),
                raw_body(0, True, bytes([0x00, 0x03, 0x00]) + b"hi"), pump(8),
                read_datagrams(EDGE), raw_datagram(b""), pump(4))

    ip_opened = [open_ip_any(), pump(8), accept(EDGE, 0), pump(8)]
    v4_public = udp_packet(assigned(), listed(PUBLIC), b"query")
    ip_exchange = [
        send_packet(CLIENT, 0, v4_public),
        send_packet(CLIENT, 0, udp_packet(assigned(), listed(PRIVATE), b"private")),
        send_packet(CLIENT, 0, icmp_packet(assigned(), listed(PUBLIC), b"icmp")),
        send_packet(CLIENT, 0, udp_packet(assigned(), listed(PUBLIC), b"v6", v6=True)),
        send_packet(CLIENT, 0, udp_packet(assigned(), listed(PUBLIC), b"last hop", hop=1)),
        send_packet(CLIENT, 0, udp_packet(listed(PRIVATE), listed(PUBLIC), b"spoofed")),
        pump(8), read_packets(EDGE),
        ip_deliver(0, udp_packet(listed(PUBLIC), assigned(), b"answer")),
        ip_deliver(0, udp_packet(listed(PUBLIC), assigned(), b"v6 answer", v6=True)),
        ip_deliver(0, udp_packet(listed(PUBLIC), assigned(), b"big", pad=1500)),
        ip_deliver(0, udp_packet(listed(PUBLIC), assigned(), b"big v6", v6=True, pad=1500)),
        ip_deliver(0, udp_packet(listed(PUBLIC), assigned(), b"expires", hop=1)),
        ip_deliver(0, icmp_packet(listed(PUBLIC), assigned(), b"error")),
        ip_deliver(0, udp_packet(listed(PUBLIC), listed(POOL_LAST), b"nobody's")),
        ip_deliver(0, raw_packet(b"\x45\x00\x00")),
        send_packet(EDGE, 0, udp_packet(listed(PUBLIC), listed(PRIVATE), b"unchecked")),
        pump(8), recv_packet(CLIENT, 0, 10), read_packets(CLIENT),
    ]
    engine_seed("ip-frames", 0, POOLS_BOTH, *ip_opened, *ip_exchange, pump(4))
    engine_seed("ip-capsules", NO_DATAGRAMS, POOLS_BOTH, *ip_opened, *ip_exchange,
                finish(CLIENT, 0), pump(8))
    spoofed = ipv4(17, udp(5000, 53, b"spoof", lambda p, n: pseudo_v4((10, 89, 0, 9), (8, 8, 8, 8), p, n)),
                   src=(10, 89, 0, 9), dst=(8, 8, 8, 8))
    own = ipv4(17, udp(5000, 53, b"own", lambda p, n: pseudo_v4((10, 89, 0, 2), (10, 0, 0, 1), p, n)),
               src=(10, 89, 0, 2), dst=(10, 0, 0, 1), ttl=0)
    engine_seed("ip-bypass", 0, POOLS_V4, *ip_opened,
                send_packet(CLIENT, 0, raw_packet(spoofed, bypass=True)),
                send_packet(CLIENT, 0, raw_packet(own, bypass=True)),
                send_packet(CLIENT, 0, raw_packet(b"\x60garbage", bypass=True)),
                send_packet(CLIENT, 0, raw_packet(spoofed + b"\x00\x00")),
                send_datagram(CLIENT, 0, 80), pump(8), read_packets(EDGE), recv_datagram(EDGE, 0, 100),
                pump(8), read_packets(CLIENT), read_datagrams(CLIENT))
    engine_seed("ip-pool-exhaustion", 0, POOLS_V4,
                open_ip_any(), open_ip_any(), pump(8), accept(EDGE, 0), pump(8), open_ip_any(),
                pump(8), abort(CLIENT, 0), pump(8), open_ip_any(), pump(8), accept(EDGE, 0),
                pump(8), refuse(EDGE, 0, 0), pump(8),
                send_packet(CLIENT, 0, v4_public), pump(8), read_packets(EDGE))
    engine_seed("ip-pool-both-families", SMALL_QUEUE, POOLS_BOTH,
                open_ip_any(), open_ip_any(), open_ip_any(), open_ip_any(), pump(8),
                accept(EDGE, 0), accept(EDGE, 1), accept(EDGE, 2), pump(8),
                abort(EDGE, 1), pump(8), open_ip_any(), pump(8), accept(EDGE, 2), pump(8),
                ip_deliver(0, udp_packet(listed(PUBLIC), assigned(), b"x", v6=True)),
                ip_deliver(1, udp_packet(listed(PUBLIC), assigned(), b"y", v6=True)),
                pump(8), read_packets(CLIENT))
    engine_seed("ip-scopes", 0, POOLS_BOTH,
                open_ip_listed(0, 18), open_ip_listed(4, 2), open_ip_v4((1, 2, 3, 4), 40),
                open_ip_v6("2001:db8::", 48, 59), pump(8),
                *[accept(EDGE, i) for i in range(4)], pump(8),
                send_packet(CLIENT, 0, udp_packet(assigned(), literal_v4(8, 8, 8, 9), b"in scope")),
                send_packet(CLIENT, 0, udp_packet(assigned(), literal_v4(8, 8, 9, 1), b"out")),
                send_packet(CLIENT, 1, icmp_packet(assigned(), literal_v6("fd00:89::1"), b"v6", v6=True)),
                send_packet(CLIENT, 3, udp_packet(assigned(), literal_v6("2001:db8::5"), b"v6", v6=True)),
                pump(8), read_packets(EDGE), read_packets(CLIENT))
    engine_seed("ip-no-pool", 0, POOLS_NONE, open_ip_any(), raw_ip_request(0), pump(8),
                ip_deliver(0, udp_packet(listed(PUBLIC), listed(POOL_FIRST), b"x")), pump(4))
    engine_seed("ip-tokens", AUTH_TOKEN, POOLS_BOTH, *ip_opened, raw_ip_request(0, 1),
                raw_ip_request(0), pump(8), accept(EDGE, 1), pump(8),
                send_packet(CLIENT, 0, v4_public), pump(8), read_packets(EDGE))
    engine_seed("ip-wrong-token", AUTH_WRONG, POOLS_BOTH, open_ip_any(), pump(8))
    engine_seed("ip-idle-and-close", 0, POOLS_BOTH, *ip_opened, open_ip_any(), pump(8),
                send_packet(CLIENT, 0, v4_public), pump(8), advance_secs(6), pump(8),
                finish(EDGE, 0), pump(8), open_ip_any(), pump(8), accept(EDGE, 0), pump(8),
                close(EDGE, 0, b"bye"), pump(8), read_packets(CLIENT))
    engine_seed("ip-raw", 0, POOLS_BOTH,
                *[raw_ip_request(i) for i in range(14)], raw_ip_request(0, 4),
                raw_ip_request(0, 8), raw_ip_request(b"/.well-known/masque/ip/10.89.0.2/*/"),
                pump(8), accept(EDGE, 0), accept(EDGE, 1), pump(8),
                raw_capsule(0, 2, 1, bytes([5, 6, 32, 7, 1, 128])),
                raw_capsule(0, 2, 1, bytes([9, 0, 32])),
                raw_capsule(0, 1, 1, bytes([0, 6, 32])),
                raw_capsule(0, 3, 1, bytes([0, 0, 8, 17, 1, 0, 2, 0])),
                raw_capsule(0, 0, 1, bytes([6]) + b"from the pool"),
                raw_capsule(0, 0, 3, bytes([6]) + b"as a frame"),
                raw_capsule(0, 0, 1, bytes([0]) + b"spoofed"),
                pump(8), read_packets(EDGE),
                ip_deliver(0, udp_packet(listed(PUBLIC), assigned(), b"to raw")),
                raw_capsule(0, 0xC5, 0, b"unknown type"),
                raw_capsule(1, 1, 0, bytes([0x00, 0x04, 10, 0, 0, 1])),
                raw_capsule(0, 2, 0, b""), pump(8), read_packets(EDGE))
    engine_seed("ip-raw-on-other-streams", 0, POOLS_BOTH,
                udp_request(UDP_PATH), raw_request([(METHOD, CONNECT_), (AUTHORITY, EXAMPLE_443)]),
                pump(8), accept(EDGE, 0), accept(EDGE, 1), pump(8),
                raw_capsule(0, 2, 1, bytes([1, 0, 32])), raw_capsule(1, 3, 1, bytes([0, 0, 8, 0])),
                raw_request([(METHOD, CONNECT_), (PROTOCOL, CONNECT_IP), (SCHEME, HTTPS),
                             (AUTHORITY, PROXY_AUTHORITY), (PATH, IP_PATH_ANY), (CAPSULE_PROTOCOL, CAPSULE_YES)]),
                pump(8), accept(EDGE, 2), pump(8), raw_reset(2, 1, 0x10C), pump(8))


# --- sniff --------------------------------------------------------------------------------

SNIFF_TESTDATA = Path(__file__).resolve().parent.parent / "core/proto/src/sniff/testdata"


def client_hello(extensions, session_id=b"\x5a" * 32):
    """A ClientHello handshake message (RFC 8446 §4.1.2) with the given (type, data)."""
    block = b"".join(struct.pack(">HH", kind, len(data)) + data for kind, data in extensions)
    body = (b"\x03\x03" + b"\xa5" * 32 + bytes([len(session_id)]) + session_id
            + struct.pack(">H", 6) + bytes.fromhex("13011302c02f") + b"\x01\x00"
            + struct.pack(">H", len(block)) + block)
    return b"\x01" + len(body).to_bytes(3, "big") + body


def server_name(*names):
    """A server_name extension's data (RFC 6066 §3): a ServerNameList of (type, name)."""
    entries = b"".join(bytes([kind]) + struct.pack(">H", len(name)) + name for kind, name in names)
    return struct.pack(">H", len(entries)) + entries


def tls_records(message, fragment=16384):
    return b"".join(b"\x16\x03\x01" + struct.pack(">H", len(message[i:i + fragment]))
                    + message[i:i + fragment] for i in range(0, len(message), fragment))


def sniff():
    for capture in ["openssl-client-hello.bin", "curl-client-hello.bin"]:
        write("sniff", capture.removesuffix(".bin"), (SNIFF_TESTDATA / capture).read_bytes())
    hello = client_hello([(0xff01, b"\x00"), (0, server_name((0, b"www.example.com"))),
                          (43, b"\x02\x03\x04")])
    write("sniff", "client-hello", tls_records(hello))
    write("sniff", "client-hello-fragments-7", tls_records(hello, 7))
    write("sniff", "client-hello-fragments-100", tls_records(hello, 100))
    write("sniff", "client-hello-truncated", tls_records(hello)[:60])
    write("sniff", "client-hello-no-sni", tls_records(client_hello([(43, b"\x02\x03\x04")])))
    write("sniff", "client-hello-name-type-1",
          tls_records(client_hello([(0, server_name((1, b"example.com")))])))
    write("sniff", "client-hello-two-names",
          tls_records(client_hello([(0, server_name((0, b"a.example"), (0, b"b.example")))])))
    write("sniff", "client-hello-nul-in-name",
          tls_records(client_hello([(0, server_name((0, b"a\x00.example")))])))
    write("sniff", "client-hello-padding-first",
          tls_records(client_hello([(21, b"\x00" * 300), (0, server_name((0, b"late.example")))])))
    write("sniff", "server-hello", tls_records(b"\x02" + hello[1:]))
    for name, request in [
        ("http-host", b"GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"),
        ("http-host-port", b"GET /x HTTP/1.0\r\nhost: Example.com:8080\r\n\r\n"),
        ("http-host-ipv6", b"GET / HTTP/1.1\r\nHost: [2001:db8::7]:8443\r\n\r\n"),
        ("http-absolute", b"GET http://absolute.example/x HTTP/1.1\r\nHost: other.example\r\n\r\n"),
        ("http-connect", b"CONNECT tunnel.example:443 HTTP/1.1\r\n\r\n"),
        ("http-no-host", b"GET / HTTP/1.1\r\n\r\n"),
        ("http-two-hosts", b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"),
        ("http-partial", b"GET / HTTP/1.1\r\nHost: exa"),
        ("http-post-body", b"POST /p HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\n\r\nabc"),
        ("ssh", b"SSH-2.0-OpenSSH_9.6\r\n"),
        ("sslv2-hello", b"\x80\x2e\x01\x03\x01"),
        ("empty", b""),
    ]:
        write("sniff", name, request)


# --- sniff_quic ---------------------------------------------------------------------------

def sniff_quic():
    # Datagrams, each behind a 2-byte length (fuzz/bodies/src/sniff_quic.rs). RFC 9001's
    # client Initial is the one authentic packet: whole, twice, cut, damaged, unprotected.
    initial = (SNIFF_TESTDATA / "rfc9001-a2-client-initial.bin").read_bytes()
    datagram = lambda data: struct.pack(">H", len(data)) + data
    damaged = bytearray(initial)
    damaged[500] ^= 1
    write("sniff_quic", "rfc9001-a2", datagram(initial))
    write("sniff_quic", "rfc9001-a2-twice", datagram(initial) + datagram(initial))
    write("sniff_quic", "rfc9001-a2-cut", datagram(initial[:600]))
    write("sniff_quic", "rfc9001-a2-damaged", datagram(bytes(damaged)))
    write("sniff_quic", "short-header", datagram(b"\x40" + initial[1:]))


# --- h2_frame, h2_session -----------------------------------------------------------------

def h2(frame_type, flags, stream, payload=b""):
    """An HTTP/2 frame (RFC 9113 §4.1)."""
    return struct.pack(">I", len(payload))[1:] + bytes([frame_type, flags]) + struct.pack(">I", stream) + payload


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# HPACK (RFC 7541): :method CONNECT and :authority example.com:443, literals without
# indexing on static-table names; then the same as a GET with :scheme and :path.
H2_CONNECT = b"\x02\x07CONNECT\x01\x0fexample.com:443"
H2_GET = b"\x82\x87\x84\x01\x0bexample.com"


def h2_frames():
    settings = h2(0x4, 0, 0, struct.pack(">HI", 0x4, 1 << 20) + struct.pack(">HI", 0x8, 1))
    write("h2_frame", "settings-ack-ping", b"\x00" + settings + h2(0x4, 1, 0) + h2(0x6, 0, 0, b"12345678"))
    write("h2_frame", "headers-data-padded", b"\x00" + h2(0x1, 0x24, 1, b"\x00\x00\x00\x00\x0f" + H2_CONNECT)
          + h2(0x0, 0x09, 1, b"\x03hello\x00\x00\x00"))
    write("h2_frame", "continuation", b"\x00" + h2(0x1, 0x00, 3, H2_GET[:3]) + h2(0x9, 0x04, 3, H2_GET[3:]))
    write("h2_frame", "control", b"\x00" + h2(0x8, 0, 0, b"\x00\x01\x00\x00") + h2(0x3, 0, 1, b"\x00\x00\x00\x08")
          + h2(0x2, 0, 5, b"\x80\x00\x00\x01\x10") + h2(0x7, 0, 0, b"\x00\x00\x00\x05\x00\x00\x00\x00bye"))
    write("h2_frame", "unknown-and-push", b"\x01" + h2(0xfa, 0xff, 7, b"grease") + h2(0x5, 0x04, 1, b"\x00\x00\x00\x02\x82"))
    write("h2_frame", "too-long", b"\x00" + h2(0x0, 0, 1, bytes(16385)))
    write("h2_frame", "bad-padding", b"\x00" + h2(0x0, 0x08, 1, b"\x05abc"))


def feed(data):
    """Session targets' feed operations: 0x00-0x3f take the next (op + 1) bytes as input."""
    out = b""
    while data:
        chunk, data = data[:64], data[64:]
        out += bytes([len(chunk) - 1]) + chunk
    return out


def h2_sessions():
    # fuzz/bodies/src/h2_session.rs: a flags byte (bit 0: a valid client preface and
    # SETTINGS first), then operations; 0x00-0x3f feed the next (op + 1) bytes.
    headers = h2(0x1, 0x04, 1, H2_CONNECT)
    data = h2(0x0, 0x00, 1, b"ping over h2")
    poll, respond, echo, read = b"\x40", b"\x41", b"\x42\x00\x20", b"\x43\x00\x40"
    write("h2_session", "preface-connect", b"\x01" + feed(headers) + poll + respond + feed(data) + poll + read + echo)
    write("h2_session", "raw-preface", b"\x00" + feed(H2_PREFACE + h2(0x4, 0, 0) + headers + data) + poll + respond + read)
    write("h2_session", "reset-and-ping", b"\x01" + feed(headers + h2(0x3, 0, 1, b"\x00\x00\x00\x08")
          + h2(0x6, 0, 0, b"12345678")) + poll)
    write("h2_session", "continuation", b"\x01" + feed(h2(0x1, 0x01, 1, H2_GET[:2]) + h2(0x9, 0x04, 1, H2_GET[2:])) + poll + respond)


def h1_sessions():
    # fuzz/bodies/src/h1_session.rs: a flags byte (bit 0: a CONNECT head first, bit 1: a
    # connect-udp upgrade instead, bit 2: the host reads only while the session wants
    # input), then operations; 0x00-0x3f feed the next (op + 1) bytes.
    poll, ok, refuse, echo, read = b"\x40", b"\x41\x00", b"\x41\x04", b"\x42\x10", b"\x43\x40"
    connect = b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\nProxy-Authorization: Bearer t\r\n\r\n"
    write("h1_session", "connect-echo", b"\x04" + feed(connect + b"hello") + poll + ok + read + echo + b"\x45\xff")
    write("h1_session", "preset-flood", b"\x05" + feed(bytes(4096)) * 8 + poll + ok + read + b"\x49" + poll)
    write("h1_session", "upgrade", b"\x06" + poll + ok + feed(b"\x00\x05\x00abcd") + poll + read + echo + b"\x42\x81")
    write("h1_session", "refused", b"\x00" + feed(connect) + poll + refuse + feed(b"more") + b"\x45\xff")
    write("h1_session", "bad-head", b"\x00" + feed(b"CONNECT a:1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc") + poll)
    write("h1_session", "reset", b"\x01" + poll + ok + echo + b"\x44\x0c\x45\xff")


# --- rules --------------------------------------------------------------------------------

def rules():
    # The target builds rules and queries from `arbitrary` bytes: any bytes are an input.
    for i, length in enumerate([16, 64, 200, 600, 1500]):
        write("rules", f"random-{i}", pseudo_random(f"rules{i}", length))


def main():
    varints()
    datagrams()
    capsules()
    masque_udp()
    masque_ip()
    socks5()
    http1()
    http1_stream()
    proxy_protocol()
    ip_packets()
    engine()
    sniff()
    sniff_quic()
    h2_frames()
    h2_sessions()
    h1_sessions()
    rules()
    for directory in sorted(CORPUS.iterdir()):
        seeds = list(directory.glob("seed-*"))
        print(f"{directory.name:26} {len(seeds):3} seeds")


if __name__ == "__main__":
    main()
