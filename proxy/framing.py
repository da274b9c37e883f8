"""RequestReader: client bytes in, argument lists out, Redis's framing rules enforced.

The fast path is `routing.resp.scan_requests` (compiled; see routing/accel.py) for the
plainly framed RESP arrays that client libraries send, then hiredis (C) for the rest of a
read that the scan leaves (a request split over reads, odd framing). Redis's own parser
(`routing.resp.parse_requests`) takes over for inline commands, validates the header of any
request that arrives split over reads (so a 2 GB bulk length is refused at once, as Redis
does), and words every protocol error exactly as Redis does.
"""

from __future__ import annotations

import re

import hiredis

from routing import accel, replies
from routing.resp import Args, RequestLimits, RequestParser, parse_requests, scan_requests

# A request still unfinished past this many bytes is handed to Redis's (incremental) parser:
# re-checking a growing partial request on every read would cost quadratic time (a client
# trickling the elements of "*1000000000"), and without a copy of its bytes a large count
# later in the same read could no longer be kept away from hiredis.
_RETAIN_MAX = 4 * 1024

# hiredis allocates a whole list the moment it reads an array header: `*3000000000`
# would cost 24 GB of address space and seconds of freeing it, blocking every client.
# Bytes that may hold a count of 100000 or more go to Redis's (incremental) parser.
_BIG_COUNT = re.compile(rb"\*[0-9]{6}")
_TLS_HANDSHAKE = b"\x16\x03"  # a TLS record header: content type handshake, version 3.x

# scan_requests pays only compiled: as Python, its byte loop costs more than hiredis
# (callgrind, GET -P 16: 37,400 instructions per request against 23,700), so the pure
# build reads with hiredis alone. The outcome is the same either way (tests/unit/proxy/
# test_framing.py runs both; test_equivalence.py compares the two builds of the scan).
_SCAN = accel.HOT_PATH == "compiled"


class RequestReader:
    __slots__ = ("_limits", "_partial", "_reader", "_retained", "_since_clean", "_slow", "error")

    def __init__(self, limits: RequestLimits) -> None:
        self._limits = limits
        self._reader = hiredis.Reader()
        self._partial = False  # hiredis holds part of a request
        self._retained = bytearray()  # the unfinished request's bytes, while _partial
        self._since_clean = 0  # requests hiredis returned from _retained
        self._slow: RequestParser | None = None  # inline, a large count, or after an anomaly
        self.error: str | None = None  # set once; the connection must close after replying

    def feed(self, data: bytes) -> list[Args]:
        """All complete requests in what has arrived so far; sets `error` on a framing error."""
        if self.error is not None or not data:
            return []
        if self._slow is not None:
            return self._parse_slow(data)
        if not self._partial:
            if data[0] == 42 and _SCAN:  # '*': what client libraries send, taken whole
                out: list[Args] = []
                limits = self._limits
                stop = scan_requests(data, out, limits.proto_max_bulk_len, limits.max_multibulk_len)
                if stop == len(data):
                    return out
                if stop:
                    return out + self._feed_fresh(data[stop:])
            return self._feed_fresh(data)
        if _BIG_COUNT.search(self._retained[-7:] + data):
            # A header that began in the last read and ends in this one counts too.
            # Hand the unfinished request to Redis's parser; hiredis has not seen the count.
            return self._to_slow(bytes(self._retained) + data)
        return self._parse_fast(data)

    def _feed_fresh(self, data: bytes) -> list[Args]:
        """A read that starts at a request boundary, past what scan_requests took."""
        if data[0] != 42:  # inline
            if data.startswith(_TLS_HANDSHAKE):
                # A TLS client on a plain listener: its ClientHello holds no newline, so
                # the inline parser would wait for more while the client waits for us.
                self.error = replies.TLS_ON_PLAIN_PORT
                return []
            return self._parse_slow(data)
        # A count of 100000 or more anywhere, or a first header not complete yet (its
        # digits may go on in the next read): Redis's parser. One request with a short
        # header and no other '*' (a plain GET or SET) skips the regex.
        newline = data.find(b"\r\n")
        if not 0 < newline < 7 or (data.find(b"*", 1) >= 0 and _BIG_COUNT.search(data) is not None):
            return self._parse_slow(data)
        return self._parse_fast(data)

    def _parse_fast(self, data: bytes) -> list[Args]:
        # A read that starts at a request boundary (the usual case) is kept for exact
        # checks only if it ends inside a request or in an error: no copy otherwise.
        fresh = not self._partial
        if not fresh:
            retained = self._retained
            if len(retained) + len(data) > _RETAIN_MAX:
                return self._to_slow(bytes(retained) + data)  # a long request: see _RETAIN_MAX
            retained += data
        reader = self._reader
        reader.feed(data)
        out: list[Args] = []
        gets = reader.gets
        while True:
            try:
                request = gets()
            except hiredis.ProtocolError:
                if fresh:
                    self._retain(data)
                self._since_clean += len(out)
                return out + self._exact_error()
            if type(request) is list and request:
                for arg in request:
                    if type(arg) is not bytes:
                        break
                else:
                    out.append(request)
                    # Only right after a whole request does "no data left" mean a boundary.
                    if not reader.has_data():
                        if not fresh:
                            self._clean()
                        return out
                    continue
            elif request is False:
                if fresh:
                    self._retain(data)
                self._partial = True
                self._since_clean += len(out)
                return out + self._check_partial()
            elif request is None or request == []:  # "*-1" / "*0": empty, ignored
                if not reader.has_data():
                    self._clean()
                    return out
                continue
            if fresh:
                self._retain(data)
            self._since_clean += len(out)
            return out + self._exact_error()

    def _retain(self, data: bytes) -> None:
        """Keep a read that began at a boundary (see _parse_fast) for Redis's parser."""
        self._retained = bytearray(data)

    def _clean(self) -> None:
        self._partial = False
        self._since_clean = 0
        if self._retained:
            self._retained.clear()

    def _check_partial(self) -> list[Args]:
        """Validate the headers of the incomplete request now, as Redis would."""
        retained = self._retained
        parsed = parse_requests(retained, self._limits)
        if parsed.error is not None:
            return self._fail_slow(retained, parsed.requests, parsed.error)
        if len(parsed.requests) != self._since_clean:
            # Our parser and hiredis disagree on what is complete: trust Redis's rules.
            return self._fail_slow(retained, parsed.requests, None)
        del retained[: parsed.consumed]
        self._since_clean = 0
        if len(retained) > _RETAIN_MAX:
            return self._to_slow(bytes(retained))  # a long request: see _RETAIN_MAX
        return []

    def _exact_error(self) -> list[Args]:
        """hiredis rejected the stream: re-read it with Redis's rules for the exact outcome."""
        retained = self._retained
        parsed = parse_requests(retained, self._limits)
        return self._fail_slow(retained, parsed.requests, parsed.error)

    def _fail_slow(
        self, retained: bytearray, requests: list[Args], error: str | None
    ) -> list[Args]:
        """Go on with Redis's parser from the last boundary; skip what hiredis returned."""
        fresh = requests[self._since_clean :]
        if error is not None:
            self.error = error
            return fresh
        # Redis's rules accept what hiredis refused (e.g. "*-10" is an empty request).
        consumed = parse_requests(retained, self._limits).consumed
        return fresh + self._to_slow(bytes(retained[consumed:]))

    def _to_slow(self, rest: bytes) -> list[Args]:
        """Drop hiredis's state and go on with Redis's parser from a request boundary."""
        self._reader = hiredis.Reader()
        self._clean()
        return self._parse_slow(rest)

    def _parse_slow(self, data: bytes | bytearray) -> list[Args]:
        slow = self._slow
        if slow is None:
            slow = self._slow = RequestParser(self._limits)
        requests = slow.feed(data)
        if slow.error is not None:
            self.error = slow.error
        elif slow.idle:
            self._slow = None  # a boundary: the next read may take the fast path again
        return requests
