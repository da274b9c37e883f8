"""Script bodies slotless has seen, so that no client sees NOSCRIPT for a script it gave us.

Bodies come from SCRIPT LOAD and EVAL/EVAL_RO through slotless (sha1 -> body, the least
recently used dropped beyond a byte budget); SCRIPT FLUSH through slotless forgets them.
slotless also notes which node has run or loaded which script. An EVALSHA to a node not
known to have the script (a promoted replica, a new node, a reconnected one) goes right
behind a SCRIPT LOAD on the same connection, so no NOSCRIPT and no reordering; a node that
still answers NOSCRIPT (flushed behind slotless's back) gets SCRIPT LOAD and the retry, once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from proxy.dispatch import Dispatcher, ReplySink, Request
from proxy.upstream import UpstreamConnection
from routing.redirect import CLUSTER_ERROR_PREFIXES
from routing.resp import is_error, pack_command

MAX_LOADED_PER_NODE = 10_000


class ScriptCache:
    __slots__ = ("_bodies", "_loaded", "_size")

    def __init__(self) -> None:
        self._bodies: OrderedDict[bytes, bytes] = OrderedDict()
        self._loaded: dict[str, set[bytes]] = {}  # node -> SHAs it has run or loaded
        self._size = 0

    def remember(self, body: bytes, max_bytes: int) -> bytes:
        """Keep `body` within `max_bytes` of bodies (limits.script_cache_size, read at each
        call so a reload applies); returns its SHA1 as Redis names it (lowercase hex)."""
        sha = hashlib.sha1(body).hexdigest().encode()
        if sha in self._bodies:
            self._bodies.move_to_end(sha)
            return sha
        if len(body) > max_bytes:
            return sha
        self._bodies[sha] = body
        self._size += len(body)
        while self._size > max_bytes:
            _, dropped = self._bodies.popitem(last=False)
            self._size -= len(dropped)
        return sha

    def body(self, sha: bytes) -> bytes | None:
        body = self._bodies.get(sha)
        if body is not None:
            self._bodies.move_to_end(sha)
        return body

    def loaded_on(self, node: str, sha: bytes) -> bool:
        loaded = self._loaded.get(node)
        return loaded is not None and sha in loaded

    def mark_loaded(self, node: str, sha: bytes) -> None:
        loaded = self._loaded.setdefault(node, set())
        if len(loaded) >= MAX_LOADED_PER_NODE:
            loaded.clear()  # at worst some scripts are loaded once more
        loaded.add(sha)

    def mark_missing(self, node: str, sha: bytes) -> None:
        self._loaded.get(node, set()).discard(sha)

    def forget_node(self, node: str) -> None:
        """The node's connection went away: it may come back empty (a restart)."""
        self._loaded.pop(node, None)

    def clear(self) -> None:
        self._bodies.clear()
        self._loaded.clear()
        self._size = 0

    def __len__(self) -> int:
        return len(self._bodies)


class ScriptLoaded:
    """Waiter for a SCRIPT LOAD slotless sent itself: notes the node has the script."""

    __slots__ = ("_cache", "_sha")

    def __init__(self, cache: ScriptCache, sha: bytes) -> None:
        self._cache = cache
        self._sha = sha

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        if not is_error(raw):
            self._cache.mark_loaded(conn.addr, self._sha)


def load_request(body: bytes) -> bytes:
    return pack_command((b"SCRIPT", b"LOAD", body))


class ScriptRequest(Request):
    """EVAL*/EVALSHA*: notes where the script ran; NOSCRIPT is answered by loading the body."""

    __slots__ = ("_cache", "_retried", "_sha")

    def __init__(
        self,
        dispatcher: Dispatcher,
        session: ReplySink,
        raw: bytes,
        slot: int,
        cache: ScriptCache,
        sha: bytes,
    ) -> None:
        super().__init__(dispatcher, session, raw, slot)
        self._cache = cache
        self._sha = sha
        self._retried = False

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        if raw.startswith(b"-NOSCRIPT"):
            self._cache.mark_missing(conn.addr, self._sha)
            body = self._cache.body(self._sha)
            if body is not None and not self._retried:
                self._retried = True
                # Same connection, pipelined: the node has the body before the retry runs.
                conn.send(load_request(body), ScriptLoaded(self._cache, self._sha))
                conn.send(self.raw, self)
                return
        elif not raw.startswith(CLUSTER_ERROR_PREFIXES):
            self._cache.mark_loaded(conn.addr, self._sha)
        super().on_reply(raw, conn)
