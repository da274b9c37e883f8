"""RequestReader: client bytes in, argument lists out, Redis's framing rules enforced.

The fast path is hiredis (C) for RESP arrays. Redis's own parser (`routing.resp.
parse_requests`) takes over for inline commands, validates the header of any request that
arrives split over reads (so a 2 GB bulk length is refused at once, as Redis does), and
words every protocol error exactly as Redis does.
"""

from __future__ import annotations

import re

import hiredis

from routing.resp import Args, RequestLimits, RequestParser, parse_requests

# Past this many bytes without a request boundary, stop keeping a copy for exact checks:
# re-checking a growing partial request on every read would cost quadratic time (a client
# trickling the elements of "*1000000000"). The header was checked when the request began;
# beyond that window, hiredis's buffer is bounded by proto_max_bulk_len instead.
_RETAIN_MAX = 4 * 1024

# hiredis allocates a whole list the moment it reads an array header: `*3000000000`
# would cost 24 GB of address space and seconds of freeing it, blocking every client.
# Bytes that may hold a count of 100000 or more go to Redis's (incremental) parser.
_BIG_COUNT = re.compile(rb"\*[0-9]{6}")


class RequestReader:
    __slots__ = ("_limits", "_partial", "_reader", "_retained", "_since_clean", "_slow", "error")

    def __init__(self, limits: RequestLimits) -> None:
        self._limits = limits
        self._reader = hiredis.Reader()
        self._partial = False  # hiredis holds part of a request
        self._retained: bytearray | None = bytearray()  # bytes fed since the last boundary
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
            if data[0] != 42:  # inline
                return self._parse_slow(data)
            # A count of 100000 or more anywhere, or a first header not complete yet (its
            # digits may go on in the next read): Redis's parser. One request with a short
            # header and no other '*' (a plain GET or SET) skips the regex.
            newline = data.find(b"\r\n")
            if not 0 < newline < 7 or (
                data.find(b"*", 1) >= 0 and _BIG_COUNT.search(data) is not None
            ):
                return self._parse_slow(data)
        elif self._retained is not None and _BIG_COUNT.search(self._retained[-7:] + data):
            # A header that began in the last read and ends in this one counts too.
            # Hand the unfinished request to Redis's parser; hiredis has not seen the count.
            retained = bytes(self._retained)
            self._reader = hiredis.Reader()
            self._clean()
            return self._parse_slow(retained + data)
        # else: a request past the retained window is under way; hiredis's buffer for it
        # is bounded by proto_max_bulk_len, and its header was checked when it began.
        return self._parse_fast(data)

    def _parse_fast(self, data: bytes) -> list[Args]:
        reader = self._reader
        reader.feed(data)
        # A read that starts at a request boundary (the usual case) is kept for exact
        # checks only if it ends inside a request or in an error: no copy otherwise.
        fresh = not self._partial
        if not fresh:
            retained = self._retained
            if retained is not None:
                if len(retained) + len(data) > _RETAIN_MAX:
                    self._retained = None
                else:
                    retained += data
        out: list[Args] = []
        gets = reader.gets
        while True:
            try:
                request = gets()
            except hiredis.ProtocolError as exc:
                if fresh:
                    self._retain(data)
                return out + self._exact_error(_redis_wording(str(exc)))
            if request is False:
                if fresh:
                    self._retain(data)
                self._partial = True
                return out + self._check_partial()
            if type(request) is list and request:
                for arg in request:
                    if type(arg) is not bytes:
                        break
                else:
                    out.append(request)
                    self._since_clean += 1
                    if not reader.has_data():
                        self._clean()
                        return out
                    continue
            if request is None or request == []:  # "*-1" / "*0": empty, ignored
                if not reader.has_data():
                    self._clean()
                    return out
                continue
            if fresh:
                self._retain(data)
            return out + self._exact_error("Protocol error: invalid multibulk request")

    def _retain(self, data: bytes) -> None:
        """Keep a read that began at a boundary (see _parse_fast) for Redis's parser."""
        self._retained = bytearray(data) if len(data) <= _RETAIN_MAX else None

    def _clean(self) -> None:
        self._partial = False
        self._since_clean = 0
        retained = self._retained
        if retained is None:
            self._retained = bytearray()
        elif retained:
            retained.clear()

    def _check_partial(self) -> list[Args]:
        """Validate the headers of the incomplete request now, as Redis would."""
        retained = self._retained
        if retained is None:
            if self._reader.len() > self._limits.proto_max_bulk_len + _RETAIN_MAX:
                self.error = "Protocol error: invalid bulk length"
            return []
        parsed = parse_requests(retained, self._limits)
        if parsed.error is not None:
            return self._fail_slow(retained, parsed.requests, parsed.error)
        if len(parsed.requests) != self._since_clean:
            # Our parser and hiredis disagree on what is complete: trust Redis's rules.
            return self._fail_slow(retained, parsed.requests, None)
        del retained[: parsed.consumed]
        self._since_clean = 0
        return []

    def _exact_error(self, fallback: str) -> list[Args]:
        """hiredis rejected the stream: re-read it with Redis's rules for the exact outcome."""
        retained = self._retained
        if retained is None:
            self.error = fallback
            return []
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
        rest = retained[consumed:]
        self._reader = hiredis.Reader()
        self._clean()
        return fresh + self._parse_slow(rest)

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


def _redis_wording(hiredis_message: str) -> str:
    """hiredis's complaint in Redis's words, for when the bytes are no longer at hand."""
    match = re.search(r'got "(.)" as reply type byte', hiredis_message)
    if match:
        return f"Protocol error: expected '$', got '{match.group(1)}'"
    if "ulti-bulk" in hiredis_message:
        return "Protocol error: invalid multibulk length"
    return "Protocol error: invalid bulk length"
