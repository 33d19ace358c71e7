# elastik_micro: a small CoAP (RFC 7252) client for Elastik Edge, MicroPython first.
#
# Layout: a sans-IO codec (put_header, put_option, put_uint_option, get_option, get_uint,
# encode, decode: bytes in, numbers out, no sockets) and a thin UDP shell (Client) that owns
# one socket, one transmit buffer and the retransmission schedule. It also imports on
# CPython, where the host tests and tools/sensor_sim.py use it.
import errno
import random
import socket
import struct

try:
    from micropython import const
    from time import ticks_add, ticks_diff, ticks_ms
except ImportError:  # CPython: host tests and tools/sensor_sim.py
    from time import monotonic

    def const(x):
        return x

    def ticks_ms():
        return int(monotonic() * 1000)

    ticks_add = int.__add__
    ticks_diff = int.__sub__

import select

# Message types and codes (code byte = class << 5 | detail).
_CON = const(0)
_NON = const(1)
_ACK = const(2)
_RST = const(3)
_GET = const(1)
_POST = const(2)
_PUT = const(3)
_DELETE = const(4)
# Option numbers this client writes or reads.
_ETAG = const(4)
_URI_PATH = const(11)
_CF = const(12)
_MAX_AGE = const(14)
_BLOCK2 = const(23)
_AUTH_OPTION = const(65001)  # Elastik's token option (PROTOCOL section 18.3)

# The gateway (and the reference) refuse datagrams longer than 1152 bytes: RFC 7252 section
# 4.6's limit for an unfragmented IPv6 path. Requests are built in a buffer of exactly this
# size, so anything that does not fit is refused before it is sent.
MAX_DATAGRAM = const(1152)
# recv() size: larger than any legal datagram so an oversized reply is seen whole (and
# dropped by length) rather than silently truncated into something that parses.
_RX_MAX = const(1280)
# Uri-Path options are 0..255 bytes (RFC 7252 section 5.10).
_SEG_MAX = const(255)
_TKL = const(4)  # our token length: 32 random bits per request
# Largest option delta or length the 4-bit nibble plus 2 extension bytes can express.
_EXT_MAX = const(65804)


class CoapError(Exception):
    """A 4.xx or 5.xx answer. ``code`` is class*100+detail (404 for 4.04), ``message`` the
    server's payload as text, ``max_age`` the Max-Age option in seconds or None."""

    def __init__(self, code, message="", max_age=None):
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.max_age = max_age


# ---------------------------------------------------------------- codec (sans-IO)


def _ext_len(v):
    return 0 if v < 13 else (1 if v < 269 else 2)


def _put_ext(buf, off, v):
    if v >= 269:
        struct.pack_into(">H", buf, off, v - 269)
        return off + 2
    if v >= 13:
        buf[off] = v - 13
        return off + 1
    return off


def _nib(v):
    return v if v < 13 else (13 if v < 269 else 14)


def _opt_head(buf, off, delta, n):
    # The option header (delta and length nibbles, then their extensions). Returns the
    # offset of the value; ValueError when the header plus n value bytes do not fit buf.
    if delta < 0 or delta > _EXT_MAX or n > _EXT_MAX:
        raise ValueError("option out of range")
    end = off + 1 + _ext_len(delta) + _ext_len(n) + n
    if end > len(buf):
        raise ValueError("exceeds 1152 bytes")
    buf[off] = _nib(delta) << 4 | _nib(n)
    return _put_ext(buf, _put_ext(buf, off + 1, delta), n)


def put_option(buf, off, delta, value):
    """Write an option with bytes ``value`` whose number is the previous option's plus
    ``delta``. Returns the offset after it."""
    n = len(value)
    off = _opt_head(buf, off, delta, n)
    buf[off : off + n] = value
    return off + n


def put_uint_option(buf, off, delta, v):
    """Write an unsigned-integer option in its shortest form (0 is the empty value)."""
    if v < 0 or v > 0xFFFFFFFF:
        raise ValueError("option out of range")
    n = 0
    while v >> (8 * n):
        n += 1
    off = _opt_head(buf, off, delta, n)
    while n:
        n -= 1
        buf[off] = (v >> (8 * n)) & 255
        off += 1
    return off


def _get_ext(buf, off, end, st, i):
    # Extend nibble st[i] (13: one byte, 14: two bytes, 15: reserved) in place.
    v = st[i]
    if v == 13:
        if off >= end:
            raise ValueError("bad option")
        st[i] = buf[off] + 13
        return off + 1
    if v == 14:
        if off + 1 >= end:
            raise ValueError("bad option")
        st[i] = (buf[off] << 8 | buf[off + 1]) + 269
        return off + 2
    if v == 15:
        raise ValueError("bad option")
    return off


def get_option(buf, off, end, st):
    """Decode the option at buf[off] (not the payload marker). ``st`` is a 4-item list:
    st[0] (the running option number) grows by the delta, st[1] and st[2] become the
    value's offset and length (st[3] is scratch). Returns the offset after the option;
    ValueError when it is malformed."""
    b = buf[off]
    st[3] = b >> 4
    st[2] = b & 15
    off = _get_ext(buf, off + 1, end, st, 3)
    off = _get_ext(buf, off, end, st, 2)
    if off + st[2] > end:
        raise ValueError("bad option")
    st[0] += st[3]
    if st[0] > 0xFFFF:
        raise ValueError("bad option")
    st[1] = off
    return off + st[2]


def get_uint(buf, off, n):
    """The value of a uint option of n bytes at buf[off]."""
    if n > 4:
        raise ValueError("bad option")
    v = 0
    for i in range(n):
        v = v << 8 | buf[off + i]
    return v


def encode(mtype, code, mid, token=b"", options=(), payload=b""):
    """A whole message as bytes. ``options``: (number, value) pairs, value bytes or int
    (uint); they are sorted by number, keeping the order of repeated numbers."""
    # (number, position) keys: MicroPython's sort is not stable, repeated numbers keep order
    opts = sorted([(o[0], i, o[1]) for i, o in enumerate(options)])
    size = 4 + len(token) + len(payload) + 1
    for _, _, v in opts:
        size += 5 + (4 if isinstance(v, int) else len(v))
    buf = bytearray(size)
    tkl = len(token)
    if tkl > 8:
        raise ValueError("bad token")
    struct.pack_into(">BBH", buf, 0, 0x40 | mtype << 4 | tkl, code, mid)
    buf[4 : 4 + tkl] = token
    off = 4 + tkl
    last = 0
    for num, _, v in opts:
        if isinstance(v, int):
            off = put_uint_option(buf, off, num - last, v)
        else:
            off = put_option(buf, off, num - last, v)
        last = num
    if payload:
        buf[off] = 0xFF
        buf[off + 1 : off + 1 + len(payload)] = payload
        off += 1 + len(payload)
    return bytes(buf[:off])


def decode(data):
    """(mtype, code, mid, token, [(number, value bytes)], payload) of one datagram, or
    ValueError when it is not a well-formed CoAP message."""
    end = len(data)
    if end < 4:
        raise ValueError("bad header")
    b = data[0]
    if b >> 6 != 1:
        raise ValueError("bad header")
    tkl = b & 15
    if tkl > 8 or 4 + tkl > end:
        raise ValueError("bad token")
    code = data[1]
    if code == 0 and end > 4 + tkl:
        raise ValueError("bad header")
    opts = []
    st = [0, 0, 0, 0]
    off = 4 + tkl
    while off < end and data[off] != 0xFF:
        off = get_option(data, off, end, st)
        opts.append((st[0], bytes(data[st[1] : st[1] + st[2]])))
    if off < end:
        off += 1
        if off == end:
            raise ValueError("bad payload")
    return (
        (b >> 4) & 3,
        code,
        data[2] << 8 | data[3],
        bytes(data[4 : 4 + tkl]),
        opts,
        bytes(data[off:]),
    )


# ---------------------------------------------------------------- UDP shell


class Client:
    """One CoAP endpoint, one socket. put/post/delete return the response code (201, 204,
    202...) or None in NON (fire-and-forget) mode; get returns the body; 4.xx/5.xx raise
    CoapError; no answer after all retransmissions raises OSError(ETIMEDOUT).

    timeout_ms is RFC 7252's ACK_TIMEOUT, retries its MAX_RETRANSMIT, random_factor its
    ACK_RANDOM_FACTOR. wait_ms bounds a whole exchange, including the wait for a separate
    response after an empty ACK; its default is MAX_TRANSMIT_WAIT."""

    def __init__(
        self,
        host,
        port=5683,
        token=None,
        timeout_ms=2000,
        retries=4,
        confirmable=True,
        random_factor=1.5,
        wait_ms=None,
    ):
        if timeout_ms <= 0 or retries < 0 or random_factor < 1:
            raise ValueError("bad timing")
        self._ack_ms = int(timeout_ms)
        self._span = int(timeout_ms * (random_factor - 1))
        self._retries = retries
        if wait_ms is None:
            wait_ms = int(timeout_ms * random_factor) * ((2 << retries) - 1)
        self._wait_ms = wait_ms
        self._con = confirmable
        if isinstance(token, str):
            token = token.encode()
        self._auth = token
        ai = socket.getaddrinfo(host, port)[0]  # resolved once, here
        self._sock = socket.socket(ai[0], socket.SOCK_DGRAM)
        self._sock.connect(ai[-1])
        self._w = getattr(self._sock, "write", None)
        self._poll = select.poll()
        self._poll.register(self._sock, select.POLLIN)
        self._ipoll = hasattr(self._poll, "ipoll")
        self._tx = bytearray(MAX_DATAGRAM)
        self._txv = memoryview(self._tx)
        self._eb = bytearray(4)  # empty ACK/RST
        self._st = [0, 0, 0, 0]
        self._mid = random.getrandbits(16)
        self._sep = -1  # MID of the last separate response we acknowledged
        self._pkey = None  # last path and its encoded Uri-Path options
        self._popt = b""

    def close(self):
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -------- public API

    def put(self, path, value, content_format=0):
        """Create or replace. content_format 0 stores text/plain, None or others binary."""
        return self._write(_PUT, path, value, content_format)

    def post(self, path, value):
        """Append to an existing world."""
        return self._write(_POST, path, value, None)

    def delete(self, path):
        return self._write(_DELETE, path, b"", None)

    def get(self, path, max_bytes=4096):
        """The world's body; follows Block2 up to max_bytes (ValueError beyond)."""
        self._gstart(path, max_bytes)
        while True:
            self._xfer(self._gnext())
            r = self._gfeed()
            if r is not None:
                return r

    # -------- request building

    def _write(self, code, path, value, cf):
        n = self._prep(code, path, value, cf)
        if not self._con:
            self._send(n)
            return None
        self._xfer(n)
        return self._done()

    def _prep(self, code, path, value, cf):
        if isinstance(value, str):
            value = value.encode()
        elif not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError("value must be bytes or str")
        return self._req(code, path, value, cf, -1)

    def _uri(self, path):
        if path == self._pkey:
            return self._popt
        p = path.encode() if isinstance(path, str) else bytes(path)
        i = 0
        while i < len(p) and p[i] == 47:  # leading "/" as in HTTP paths
            i += 1
        if i == len(p):
            raise ValueError("empty path")
        b = bytearray(3 * len(p) + 3)
        off = 0
        last = 0
        while True:
            j = p.find(b"/", i)
            if j < 0:
                j = len(p)
            if j - i > _SEG_MAX:
                raise ValueError("segment over 255 bytes")
            off = put_option(b, off, _URI_PATH - last, p[i:j])
            last = _URI_PATH
            if j == len(p):
                break
            i = j + 1
        self._popt = bytes(b[:off])
        self._pkey = path
        return self._popt

    def _req(self, code, path, value, cf, blk):
        # The request in self._tx; returns its length. Token lives in _tx[4:8].
        u = self._uri(path)
        b = self._tx
        self._mid = (self._mid + 1) & 0xFFFF
        b[0] = 0x40 | (_CON if self._con else _NON) << 4 | _TKL
        b[1] = code
        b[2] = self._mid >> 8
        b[3] = self._mid & 255
        struct.pack_into(">HH", b, 4, random.getrandbits(16), random.getrandbits(16))
        off = 4 + _TKL + len(u)
        if off > MAX_DATAGRAM:  # checked first: slice assignment would grow the buffer
            raise ValueError("exceeds 1152 bytes")
        b[4 + _TKL : off] = u
        last = _URI_PATH
        if cf is not None:
            off = put_uint_option(b, off, _CF - last, cf)
            last = _CF
        if blk >= 0:
            off = put_uint_option(b, off, _BLOCK2 - last, blk)
            last = _BLOCK2
        if self._auth:
            off = put_option(b, off, _AUTH_OPTION - last, self._auth)
        n = len(value)
        if n:
            if off + 1 + n > MAX_DATAGRAM:
                raise ValueError("exceeds 1152 bytes")
            b[off] = 0xFF
            b[off + 1 : off + 1 + n] = value
            off += 1 + n
        return off

    # -------- exchange: _begin, then _due/_feed until a response matches

    def _send(self, n):
        try:
            if self._w:
                self._w(self._tx, n)  # MicroPython: sends part of the buffer, copies nothing
            else:
                self._sock.send(self._txv[:n])
        except OSError:
            pass  # e.g. ICMP unreachable from an earlier datagram: same as a lost datagram

    def _empty(self, mtype, mid):
        b = self._eb
        b[0] = 0x40 | mtype << 4
        b[1] = 0
        b[2] = mid >> 8
        b[3] = mid & 255
        try:
            self._sock.send(b)
        except OSError:
            pass

    def _recv(self):
        try:
            return self._sock.recv(_RX_MAX)
        except OSError:
            return None  # refused (ICMP), or nothing there on a non-blocking socket

    def _begin(self, n):
        self._n = n
        self._acked = not self._con
        self._left = self._retries
        now = ticks_ms()
        self._tmo = self._ack_ms + ((random.getrandbits(8) * self._span) >> 8)
        self._next = ticks_add(now, self._tmo)
        self._end = ticks_add(now, self._wait_ms)
        self._send(n)

    def _due(self):
        # Milliseconds to wait for a datagram now; retransmits when due; raises on timeout.
        while True:
            now = ticks_ms()
            ms = ticks_diff(self._end, now)
            if not self._acked:
                r = ticks_diff(self._next, now)
                if r <= 0:
                    if not self._left:
                        break
                    self._left -= 1
                    self._tmo *= 2
                    self._next = ticks_add(now, self._tmo)
                    self._send(self._n)
                    continue
                ms = min(ms, r)
            if ms <= 0:
                break
            return ms
        raise OSError(errno.ETIMEDOUT, "timeout")

    def _feed(self, d):
        # True when d is the response to the request in self._tx.
        n = len(d)
        if n < 4 or d[0] >> 6 != 1:
            return False
        t = (d[0] >> 4) & 3
        tkl = d[0] & 15
        c = d[1]
        mid = d[2] << 8 | d[3]
        mine = mid == self._mid
        if t == _RST:
            if mine:
                raise OSError(errno.ECONNRESET, "reset")
            return False
        if c == 0:
            if t == _ACK and mine and tkl == 0:
                self._acked = True  # separate response follows: stop retransmitting
            elif t == _CON:
                self._empty(_RST, mid)  # ping
            return False
        tx = self._tx
        ok = c >= 64 and tkl == _TKL and n >= 4 + _TKL
        i = 0
        while ok and i < _TKL:
            ok = d[4 + i] == tx[4 + i]
            i += 1
        if not ok or (t == _ACK and not mine):
            if t == _CON:
                self._empty(_ACK if mid == self._sep else _RST, mid)
            return False
        st = self._st
        st[0] = 0
        o = 4 + tkl
        blk = age = -1
        eo = el = 0
        try:
            while o < n and d[o] != 0xFF:
                o = get_option(d, o, n, st)
                if st[0] == _BLOCK2:
                    blk = get_uint(d, st[1], st[2])
                elif st[0] == _MAX_AGE:
                    age = get_uint(d, st[1], st[2])
                elif st[0] == _ETAG:
                    eo = st[1]
                    el = st[2]
            if o < n:
                o += 1
                if o == n:
                    raise ValueError
        except ValueError:
            if t == _CON:
                self._empty(_RST, mid)
            return False
        if t == _CON:
            self._empty(_ACK, mid)
            self._sep = mid
        self._rx = d
        self._pl = o
        self._blk = blk
        self._age = age
        self._eo = eo
        self._el = el
        return True

    def _wait(self, ms):
        if self._ipoll:
            for _ in self._poll.ipoll(ms):
                return True
            return False
        return bool(self._poll.poll(ms))

    def _xfer(self, n):
        self._begin(n)
        while True:
            if self._wait(self._due()):
                d = self._recv()
                if d and self._feed(d):
                    return

    def _done(self):
        c = self._rx[1]
        code = (c >> 5) * 100 + (c & 31)
        if c >> 5 == 2:
            return code
        m = self._rx[self._pl :]
        try:
            m = m.decode()
        except UnicodeError:
            m = repr(m)
        raise CoapError(code, m, None if self._age < 0 else self._age)

    # -------- Block2 _GET (state in self so the async client drives the same steps)

    def _gstart(self, path, max_bytes):
        self._gpath = path
        self._gmax = max_bytes
        self._gbody = None
        self._gszx = -1
        self._getag = None

    def _gnext(self):
        blk = -1
        if self._gbody is not None:
            blk = (len(self._gbody) >> (self._gszx + 4)) << 4 | self._gszx
        return self._req(_GET, self._gpath, b"", None, blk)

    def _gfeed(self):
        # The body when complete, None when another block is needed.
        self._done()
        d = self._rx
        p = self._pl
        n = len(d) - p
        blk = self._blk
        body = self._gbody
        if blk < 0:
            if body is not None:
                raise ValueError("bad block")
            if n > self._gmax:
                raise ValueError("body over max_bytes")
            return bytes(d[p:])
        szx = blk & 7
        if szx == 7:
            raise ValueError("bad block")
        etag = bytes(d[self._eo : self._eo + self._el]) if self._el else None
        if body is None:
            body = self._gbody = bytearray()
            self._getag = etag
        elif etag != self._getag:
            raise ValueError("changed during transfer")
        if (blk >> 4) << (szx + 4) != len(body):
            raise ValueError("bad block")
        if len(body) + n > self._gmax:
            raise ValueError("body over max_bytes")
        more = blk & 8
        if more and n != 16 << szx:
            raise ValueError("bad block")
        body.extend(d[p:])
        self._gszx = szx
        if more:
            return None
        return bytes(body)


def wifi_connect(ssid, password, timeout_ms=20000):
    """Join a WLAN (ESP32, Pico W) and return the IP address. OSError(ETIMEDOUT) naming the
    last WLAN status when it is not connected within timeout_ms (wrong password included)."""
    import network  # only boards have it; imported here so the module loads anywhere
    from time import sleep_ms

    w = network.WLAN(network.STA_IF)
    w.active(True)
    if not w.isconnected():
        w.connect(ssid, password)
        t = ticks_ms()
        while not w.isconnected():
            if ticks_diff(ticks_ms(), t) > timeout_ms:
                s = w.status()
                w.active(False)
                raise OSError(errno.ETIMEDOUT, "wifi status %s" % s)
            sleep_ms(100)
    return w.ifconfig()[0]
