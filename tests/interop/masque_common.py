"""What the two CONNECT-UDP interop scripts share: HTTP/3 on aioquic with HTTP datagrams
(RFC 9297) switched on without WebTransport, the capsule codec, the URI template of
RFC 9298 and Proxy-Status parsing (RFC 9209).

Written for these tests from the RFCs; nothing here comes from veil's own code, so that
the interop checks veil against an independent reading of the same texts.
"""

import hashlib
from urllib.parse import quote, unquote

from aioquic.buffer import Buffer, BufferReadError, encode_uint_var
from aioquic.h3.connection import H3Connection, Setting
from cryptography.hazmat.primitives.serialization import Encoding

# RFC 9297 §3.5: "DATAGRAM Capsule ... Type (i) = 0x00".
CAPSULE_DATAGRAM = 0x00
# RFC 9298 §4: "Context ID 0 was allocated by this document ... UDP Payload".
CONTEXT_UDP = 0
# RFC 9298 §2: the default template of a proxy, as the .well-known URI it registers.
DEFAULT_TEMPLATE = "/.well-known/masque/udp/{target_host}/{target_port}/"
# RFC 9298 §5: "UDP Proxying Payload ... 65527 bytes": the largest UDP payload.
MAX_UDP_PAYLOAD = 65527
# QUIC DATAGRAM frames up to this size are accepted (RFC 9221 max_datagram_frame_size).
MAX_DATAGRAM_FRAME = 65536


class DatagramH3Connection(H3Connection):
    """aioquic's HTTP/3 connection, announcing SETTINGS_H3_DATAGRAM when asked to.

    aioquic 1.7 sends SETTINGS_H3_DATAGRAM only together with WebTransport; CONNECT-UDP
    needs the first without the second (RFC 9297 §2.1.1), hence this small override of
    its settings hook. With `datagrams=False` it announces none, which forces a peer to
    carry UDP payloads in DATAGRAM capsules on the request stream (RFC 9297 §3.5).
    """

    def __init__(self, quic, datagrams):
        self._announce_datagrams = datagrams
        super().__init__(quic)

    def _get_local_settings(self):
        settings = super()._get_local_settings()
        if self._announce_datagrams:
            settings[Setting.H3_DATAGRAM] = 1
        return settings

    def peer_takes_datagrams(self):
        """Both sides announced H3_DATAGRAM = 1: HTTP datagrams may ride QUIC DATAGRAMs."""
        received = self._received_settings or {}
        return self._announce_datagrams and received.get(Setting.H3_DATAGRAM) == 1

    def settings_received(self):
        return self._received_settings is not None


def http_datagram_payload(data):
    """(context id, UDP payload) of an HTTP datagram payload, or None when malformed."""
    buf = Buffer(data=data)
    try:
        context = buf.pull_uint_var()
    except BufferReadError:
        return None
    return context, data[buf.tell() :]


def udp_http_datagram(payload, context=CONTEXT_UDP):
    """The HTTP datagram payload carrying `payload` under `context` (RFC 9298 §5)."""
    return encode_uint_var(context) + payload


def datagram_capsule(http_payload):
    """A DATAGRAM capsule holding an HTTP datagram payload (RFC 9297 §3.5)."""
    return (
        encode_uint_var(CAPSULE_DATAGRAM) + encode_uint_var(len(http_payload)) + http_payload
    )


class CapsuleError(Exception):
    """The capsule stream is malformed."""


class CapsuleDecoder:
    """Splits the bytes of a request stream into capsules, whatever their chunking.

    Bounded: a capsule announcing more than `limit` bytes is an error rather than a buffer.
    """

    def __init__(self, limit=MAX_UDP_PAYLOAD + 16):
        self._buffer = b""
        self._limit = limit

    def feed(self, data):
        """Yields (type, value) for every capsule completed by `data`."""
        self._buffer += data
        while True:
            buf = Buffer(data=self._buffer)
            try:
                capsule_type = buf.pull_uint_var()
                length = buf.pull_uint_var()
            except BufferReadError:
                return
            if length > self._limit:
                raise CapsuleError(f"capsule of {length} bytes exceeds {self._limit}")
            start = buf.tell()
            if len(self._buffer) < start + length:
                return
            value = self._buffer[start : start + length]
            self._buffer = self._buffer[start + length :]
            yield capsule_type, value

    def pending(self):
        """Bytes of an incomplete capsule left at the end of the stream."""
        return len(self._buffer)


def expand_template(template, host, port):
    """RFC 9298 §2 with RFC 6570 simple expansion: every reserved character, including
    an IPv6 literal's colons, is percent-encoded."""
    return template.replace("{target_host}", quote(host, safe="")).replace(
        "{target_port}", quote(str(port), safe="")
    )


def parse_target_path(template, path):
    """(host, port) from a request path made from `template`, or None when it does not
    match (RFC 9298 §3: a proxy answers such requests with an error)."""
    head, sep, rest = template.partition("{target_host}")
    if not sep:
        return None
    middle, sep, tail = rest.partition("{target_port}")
    if not sep or not path.startswith(head) or not path.endswith(tail):
        return None
    inner = path[len(head) : len(path) - len(tail)]
    host_enc, sep, port_enc = inner.rpartition(middle) if middle else ("", "", "")
    if not sep or not host_enc or not port_enc:
        return None
    host, port = unquote(host_enc), unquote(port_enc)
    if "/" in host or not port.isdigit() or len(port) > 5:
        return None
    port = int(port)
    if not 0 < port < 65536:
        return None
    return host, port


def proxy_status_error(field):
    """The `error` parameter of the first Proxy-Status member (RFC 9209 §2)."""
    member = field.split(",")[0]
    for parameter in member.split(";")[1:]:
        key, _, value = parameter.strip().partition("=")
        if key == "error":
            return value.strip('"')
    return None


def certificate_pin(certificate):
    """`sha256:HEX` of a certificate's DER, as veil prints and pins it."""
    return "sha256:" + hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def header_dict(headers):
    """Header fields as a dict of lowercase str."""
    return {name.decode().lower(): value.decode() for name, value in headers}
