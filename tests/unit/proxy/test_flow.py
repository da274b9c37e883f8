"""FlowControl: what one read may serve, when reading stops and when it resumes."""

from __future__ import annotations

from proxy.flow import FlowControl
from tests.unit.proxy.test_session import FakeTransport


def flow(limit: int = 8) -> tuple[FlowControl, FakeTransport]:
    control, transport = FlowControl(limit), FakeTransport()
    control.attach(transport)
    return control, transport


def test_a_read_within_the_bound_is_served_whole() -> None:
    control, transport = flow()
    requests = [[b"GET", b"%d" % i] for i in range(5)]
    assert control.admit(requests, owed=3) == requests
    assert not control.holding and not transport.paused


def test_the_rest_of_a_read_waits_and_reading_stops() -> None:
    control, transport = flow()
    requests = [[b"GET", b"%d" % i] for i in range(12)]
    assert control.admit(requests, owed=2) == requests[:6]
    assert control.holding and transport.paused
    control.hold([[b"PING"]])  # later reads queue behind
    assert control.take_backlog() == [*requests[6:], [b"PING"]]
    assert not control.holding


def test_resumes_at_half_the_bound_unless_the_socket_is_full() -> None:
    control, transport = flow()
    control.pause_reading()  # the session: 9 owed, more than the limit
    assert transport.paused
    assert not control.resumable(owed=5)
    assert control.resumable(owed=4)
    control.writing_paused = True
    assert not control.resumable(owed=0)
    control.writing_paused = False
    control.resume_reading()
    assert not transport.paused and not control.reading_paused
