"""Wait for a condition under a deadline, never for a fixed time (issue 12).

`wait_until` polls a predicate and fails with the name of what it waited for. A test that
sleeps "long enough" instead passes or fails with the machine's load; this does neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, TypeVar

T = TypeVar("T")

POLL_INTERVAL: Final = 0.02


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    what: str | Callable[[], str] = "the condition",
    *,
    interval: float = POLL_INTERVAL,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Call predicate until it returns a truthy value and return that value.

    An exception of a type in `ignoring` counts as "not yet". After `timeout` seconds the
    test fails naming `what` (a callable is asked at that moment, to describe the state),
    the last falsy value and the last ignored exception.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except ignoring as exc:
            error = exc
        else:
            if result:
                return result
            last, error = result, None
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            detail = f"last error {error!r}" if error is not None else f"last value {last!r}"
            raise AssertionError(f"timed out after {timeout}s waiting for {described} ({detail})")
        time.sleep(interval)
