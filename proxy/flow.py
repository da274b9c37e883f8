"""Backpressure for one client connection (uvicorn's flow_control.py, aiohttp's pause/resume).

Reading stops while the client is owed `limit` replies or its socket buffer is above the
transport's high-water mark; it resumes once half of them are written. Requests that one
read delivered beyond the bound wait here, parsed (their size is bounded by one read).
"""

from __future__ import annotations

import asyncio

from routing.resp import Args


class FlowControl:
    __slots__ = ("_backlog", "_transport", "holding", "limit", "reading_paused", "writing_paused")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reading_paused = False
        self.writing_paused = False
        self._transport: asyncio.Transport | None = None
        self._backlog: list[Args] | None = None  # read but not yet served
        # Requests wait for room (a backlog is held): new reads queue behind them. A plain
        # attribute, not a property: the session reads it once per read.
        self.holding = False

    def attach(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def hold(self, requests: list[Args]) -> None:
        assert self._backlog is not None
        self._backlog += requests

    def admit(self, requests: list[Args], owed: int) -> list[Args]:
        """The requests that fit while `owed` replies are owed; the rest wait here."""
        room = max(self.limit - owed, 0)
        if len(requests) <= room:
            return requests
        self._backlog = requests[room:]
        self.holding = True
        self.pause_reading()
        return requests[:room]

    def take_backlog(self) -> list[Args] | None:
        backlog, self._backlog = self._backlog, None
        self.holding = False
        return backlog

    def resumable(self, owed: int) -> bool:
        return self.reading_paused and not self.writing_paused and owed <= self.limit // 2

    def pause_reading(self) -> None:
        if not self.reading_paused and self._transport is not None:
            self.reading_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self._transport is not None:
            self.reading_paused = False
            self._transport.resume_reading()
