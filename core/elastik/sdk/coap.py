"""A tiny synchronous CoAP client for the core's CoAP/UDP surface: GET and PUT.

One datagram out, one datagram in (RFC 7252 framing, CON, 1-byte token). The path goes
in Uri-Path options, the token in private option 65001 (raw bytes, like a UDP-shaped
``Authorization: Bearer``), a PUT's type in Content-Format (0 text/plain, 42
octet-stream). A request larger than one 1152-byte datagram raises ``ValueError``
before anything is sent: large bodies belong on HTTP. The encoder is our own, small and
pure (``encode_request`` / ``decode_response``); the socket is a thin shell around it.
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass

from elastik.sdk import paths
from elastik.sdk.errors import error_class

AUTH_OPTION = 65001
URI_PATH = 11
CONTENT_FORMAT = 12
# The core answers anything bigger with a bare RST (PROTOCOL §18.1); refusing locally
# gives a clear error instead of a confusing reset.
MAX_DATAGRAM = 1152
CONTENT_FORMATS = {"text/plain": 0, "application/octet-stream": 42}
GET, POST, PUT, DELETE = 1, 2, 3, 4

_CODE_NAMES = {
    0x41: "Created",
    0x42: "Deleted",
    0x43: "Valid",
    0x44: "Changed",
    0x45: "Content",
    0x80: "Bad Request",
    0x81: "Unauthorized",
    0x83: "Forbidden",
    0x84: "Not Found",
    0x85: "Method Not Allowed",
    0x8C: "Precondition Failed",
    0x8D: "Request Entity Too Large",
    0x8F: "Unsupported Content-Format",
    0xA0: "Internal Server Error",
    0xA3: "Service Unavailable",
    0xA7: "Insufficient Storage",
}


def coap_code_text(code: int) -> str:
    """``0x45`` -> ``2.05 Content``."""
    dotted = f"{code >> 5}.{code & 0x1F:02d}"
    name = _CODE_NAMES.get(code)
    return f"{dotted} {name}" if name else dotted


@dataclass(frozen=True)
class CoapResponse:
    code: int
    payload: bytes
    content_format: int | None
    raw: bytes

    @property
    def ok(self) -> bool:
        return self.code >> 5 == 2

    @property
    def status(self) -> str:
        return coap_code_text(self.code)

    @property
    def http_status(self) -> int:
        return (self.code >> 5) * 100 + (self.code & 0x1F)

    def raise_for_status(self, *, method: str = "COAP", path: str = "") -> None:
        """Raise the ``ElastikError`` subclass of the HTTP twin of a non-2.xx code."""
        if not self.ok:
            status = self.http_status
            raise error_class(status)(status, self.payload, method=method, path=path)


def _ext(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    if value < 65805:
        return 14, (value - 269).to_bytes(2, "big")
    raise ValueError(f"CoAP option delta/length too large: {value}")


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""


def encode_request(
    code: int,
    segments: list[bytes],
    *,
    message_id: int,
    token: bytes,
    payload: bytes = b"",
    content_format: int | None = None,
    auth: bytes | None = None,
) -> bytes:
    """A CON request datagram. Options are written in ascending number order."""
    if len(token) > 8:
        raise ValueError("CoAP token is at most 8 bytes")
    out = bytearray([0x40 | len(token), code, *message_id.to_bytes(2, "big"), *token])
    options: list[tuple[int, bytes]] = [(URI_PATH, s) for s in segments]
    if content_format is not None:
        options.append((CONTENT_FORMAT, _uint(content_format)))
    if auth:
        options.append((AUTH_OPTION, auth))
    last = 0
    for number, value in options:
        dn, dx = _ext(number - last)
        ln, lx = _ext(len(value))
        out.append(dn << 4 | ln)
        out += dx + lx + value
        last = number
    if payload:
        out.append(0xFF)
        out += payload
    return bytes(out)


def decode_response(data: bytes) -> tuple[int, int, bytes, int | None, bytes]:
    """(code, message id, token, content_format, payload); ``ValueError`` if malformed."""
    if len(data) < 4:
        raise ValueError("CoAP response shorter than 4 bytes")
    if data[0] >> 6 != 1:
        raise ValueError("CoAP response with unsupported version")
    tkl = data[0] & 0x0F
    if tkl > 8 or len(data) < 4 + tkl:
        raise ValueError("CoAP response with an invalid token length")
    code = data[1]
    mid = int.from_bytes(data[2:4], "big")
    token = data[4 : 4 + tkl]
    i, number, content_format = 4 + tkl, 0, None
    while i < len(data):
        if data[i] == 0xFF:
            if i + 1 == len(data):
                raise ValueError("CoAP payload marker without payload")
            return code, mid, token, content_format, data[i + 1 :]
        delta, length = data[i] >> 4, data[i] & 0x0F
        i += 1
        values = []
        for nibble in (delta, length):
            if nibble == 13:
                if i >= len(data):
                    raise ValueError("truncated CoAP option")
                values.append(data[i] + 13)
                i += 1
            elif nibble == 14:
                if i + 2 > len(data):
                    raise ValueError("truncated CoAP option")
                values.append(int.from_bytes(data[i : i + 2], "big") + 269)
                i += 2
            elif nibble == 15:
                raise ValueError("reserved CoAP option nibble 15")
            else:
                values.append(nibble)
        number += values[0]
        if i + values[1] > len(data):
            raise ValueError("truncated CoAP option value")
        value = data[i : i + values[1]]
        i += values[1]
        if number == CONTENT_FORMAT:
            content_format = int.from_bytes(value, "big") if value else 0
    return code, mid, token, content_format, b""


def _segments(path: str) -> list[bytes]:
    return [s.encode("utf-8") for s in paths.world_name(path).split("/")]


def _auth_bytes(token: str | bytes | None) -> bytes | None:
    if token is None or token == "" or token == b"":
        return None
    return token.encode("utf-8") if isinstance(token, str) else bytes(token)


def _content_format(content_type: str) -> int:
    base = content_type.split(";", 1)[0].strip().lower()
    if base not in CONTENT_FORMATS:
        raise ValueError(
            f"unsupported CoAP content_type {content_type!r}; supported: "
            + ", ".join(sorted(CONTENT_FORMATS))
        )
    return CONTENT_FORMATS[base]


def _exchange(host: str, port: int, packet: bytes, timeout: float) -> CoapResponse:
    if len(packet) > MAX_DATAGRAM:
        raise ValueError(
            f"CoAP request is {len(packet)} bytes, above the {MAX_DATAGRAM}-byte datagram "
            "limit; use HTTP for large bodies"
        )
    mid = int.from_bytes(packet[2:4], "big")
    token = packet[4 : 4 + (packet[0] & 0x0F)]
    errors: list[str] = []
    for family, kind, proto, _name, addr in socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM):
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(addr)  # connected UDP: ICMP unreachable surfaces as an error
                if sock.getsockname()[:2] == addr[:2]:
                    # The kernel gave us the very port we are sending to (UDP self-connect):
                    # we would read back our own request. Nothing listens there.
                    errors.append(
                        f"CoAP port {host}:{port} refused the datagram (nothing listening)"
                    )
                    continue
                sock.send(packet)
                while True:
                    data = sock.recv(65535)
                    code, rmid, rtoken, cf, payload = decode_response(data)
                    if code >> 5 == 0 and code != 0:
                        continue  # a request (class 0.xx), not an answer
                    # An RST or a reply to someone else's request is not our answer.
                    if rmid == mid and (rtoken == token or data[0] >> 4 & 3 == 3):
                        if data[0] >> 4 & 3 == 3:
                            raise ValueError(
                                f"CoAP peer {host}:{port} reset the request (RST); is it too "
                                "large or malformed?"
                            )
                        return CoapResponse(code, payload, cf, data)
            except TimeoutError:
                errors.append(f"no CoAP answer from {host}:{port} within {timeout:g}s")
            except ConnectionRefusedError:
                errors.append(f"CoAP port {host}:{port} refused the datagram (nothing listening)")
    raise TimeoutError("; ".join(errors) or f"no UDP address for {host}:{port}")


def get(
    host: str,
    port: int | str,
    path: str,
    *,
    token: str | bytes | None = None,
    timeout: float = 2.0,
    raise_errors: bool = False,
) -> CoapResponse:
    """One CoAP GET; returns the response (``raise_errors=True`` raises on 4.xx/5.xx)."""
    packet = encode_request(
        GET,
        _segments(path),
        message_id=secrets.randbelow(1 << 16),
        token=secrets.token_bytes(1),
        auth=_auth_bytes(token),
    )
    response = _exchange(host, int(port), packet, timeout)
    if raise_errors:
        response.raise_for_status(method="COAP GET", path=path)
    return response


def put(
    host: str,
    port: int | str,
    path: str,
    payload: bytes | str,
    *,
    token: str | bytes | None = None,
    content_type: str | None = None,
    timeout: float = 2.0,
    raise_errors: bool = False,
) -> CoapResponse:
    """One CoAP PUT. ``str`` payloads are UTF-8 text/plain, ``bytes`` octet-stream."""
    body = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    if content_type is None:
        content_type = "text/plain" if isinstance(payload, str) else "application/octet-stream"
    packet = encode_request(
        PUT,
        _segments(path),
        message_id=secrets.randbelow(1 << 16),
        token=secrets.token_bytes(1),
        payload=body,
        content_format=_content_format(content_type),
        auth=_auth_bytes(token),
    )
    response = _exchange(host, int(port), packet, timeout)
    if raise_errors:
        response.raise_for_status(method="COAP PUT", path=path)
    return response


class CoapClient:
    """Keeps host, port and token: ``CoapClient("127.0.0.1", 5683, token="w").get(path)``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | str = 5683,
        *,
        token: str | bytes | None = None,
        timeout: float = 2.0,
        raise_errors: bool = False,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.token = token
        self.timeout = float(timeout)
        self.raise_errors = raise_errors

    def __repr__(self) -> str:
        return f"<CoapClient coap://{self.host}:{self.port}/>"

    def get(
        self,
        path: str,
        *,
        token: str | bytes | None = None,
        timeout: float | None = None,
        raise_errors: bool | None = None,
    ) -> CoapResponse:
        return get(
            self.host,
            self.port,
            path,
            token=self.token if token is None else token,
            timeout=self.timeout if timeout is None else timeout,
            raise_errors=self.raise_errors if raise_errors is None else raise_errors,
        )

    def put(
        self,
        path: str,
        payload: bytes | str,
        *,
        token: str | bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
        raise_errors: bool | None = None,
    ) -> CoapResponse:
        return put(
            self.host,
            self.port,
            path,
            payload,
            token=self.token if token is None else token,
            content_type=content_type,
            timeout=self.timeout if timeout is None else timeout,
            raise_errors=self.raise_errors if raise_errors is None else raise_errors,
        )
