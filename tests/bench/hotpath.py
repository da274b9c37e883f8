"""The proxy's per-request Python path in one process, with fake sockets on both sides.

No kernel, no event loop wake-ups, no Redis: one client session sends N requests (as
pipelines of `--pipeline`), three fake nodes answer them, and the replies reach the fake
client transport. Run it under callgrind to count instructions per request, a figure that
stays the same run to run on a shared machine (time does not):

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \\
        .venv/bin/python tests/bench/hotpath.py --workload get --pipeline 16
    callgrind_annotate /tmp/cg.out | head -40

Without valgrind it prints the wall time per request, which is only a rough guide.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import uvloop

import routing
from conf import Config
from proxy.dispatch import Dispatcher
from proxy.session import ClientSession
from proxy.upstream import UpstreamConnection
from routing.commands import parse_command_reply
from routing.plan import Router
from routing.resp import RequestLimits, pack_command, parse_reply
from routing.slotmap import SlotMap

DATA = Path(routing.__file__).parent / "data" / "command-7.0.resp"
NODES = ("127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003")
POOL = 800  # distinct requests (at least; a whole number of pipelines), sent round and round


class Sink(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.chunks: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += len(data)
        self.chunks.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Pool:
    def __init__(self, conns: dict[str, UpstreamConnection]) -> None:
        self.first = (conns, conns)

    def get(self, addr: str, resp3: bool = False) -> UpstreamConnection:
        return self.first[0][addr]

    def is_down(self, addr: str) -> bool:
        return False


class Topology:
    def __init__(self) -> None:
        self.table = parse_command_reply(parse_reply(DATA.read_bytes()))
        self.router = Router(self.table, "cluster")
        self.server_version = "7.0.15"
        owners = [NODES[slot * 3 // 16384] for slot in range(16384)]
        self.slotmap = SlotMap(owners, [])
        self.read_targets = None
        self.read_node = None
        self.redirects = 0

    def any_primary(self) -> str:
        return NODES[0]

    def remap(self, addr: str) -> str:
        return addr

    def request_refresh(self) -> None:
        pass


class State:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.config = Config()
        self.request_limits = RequestLimits()
        self.topology = Topology()
        self.sinks = {addr: Sink() for addr in NODES}
        self.conns = {addr: UpstreamConnection(addr, loop) for addr in NODES}
        for addr, conn in self.conns.items():
            conn.connection_made(self.sinks[addr])
        self.pool = Pool(self.conns)
        self.dispatcher = Dispatcher(self.topology, self.pool, self.config.upstream, loop)  # type: ignore[arg-type]
        self.sessions: set[ClientSession] = set()

    def next_client_id(self) -> int:
        return 1

    def on_session_open(self, session: ClientSession) -> bool:
        return True

    def on_session_closed(self, session: ClientSession) -> None:
        pass


def requests_for(workload: str, count: int) -> list[bytes]:
    value = b"v" * 64
    if workload == "get":
        return [pack_command([b"GET", b"key:%d" % (i % 100000)]) for i in range(count)]
    if workload == "set":
        return [pack_command([b"SET", b"key:%d" % (i % 100000), value]) for i in range(count)]
    if workload == "mget":
        return [
            pack_command([b"MGET", *(b"key:%d" % ((i * 10 + k) % 100000) for k in range(10))])
            for i in range(count)
        ]
    raise SystemExit(f"unknown workload {workload}")


def answer(requests: bytes, workload: str) -> bytes:
    """What a node answers to the requests it was sent (counted by their '*' headers)."""
    count = requests.count(b"\r\n*") + (1 if requests.startswith(b"*") else 0)
    if workload == "set":
        return b"+OK\r\n" * count
    return (b"$64\r\n" + b"v" * 64 + b"\r\n") * count


async def run(workload: str, pipeline: int, count: int) -> float:
    loop = asyncio.get_running_loop()
    state = State(loop)
    session = ClientSession(state)  # type: ignore[arg-type]
    client = Sink()
    session.connection_made(client)
    # Made once and sent round and round, so that making them is not a per-request cost
    # (the diff of two --count runs under callgrind then measures only the proxy's path).
    pool = pipeline * -(-POOL // pipeline)
    raws = requests_for(workload, pool)
    started = time.perf_counter()
    for start in range(0, count, pipeline):
        cycled = start % pool
        session.data_received(b"".join(raws[cycled : cycled + pipeline]))
        await asyncio.sleep(0)  # the upstream flush
        for addr, sink in state.sinks.items():
            if sink.chunks:
                sent = b"".join(sink.chunks)
                sink.chunks.clear()
                state.conns[addr].data_received(answer(sent, workload))
        await asyncio.sleep(0)  # the client flush
    elapsed = time.perf_counter() - started
    assert client.written > 0
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="get", choices=("get", "set", "mget"))
    parser.add_argument("--pipeline", type=int, default=16)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument(
        "--loop",
        default="uvloop",
        choices=("uvloop", "asyncio"),
        help="the event loop: uvloop (what slotless runs on) or asyncio's own (whose Python "
        "call_soon and time() add about 29,000 instructions per request at -P 1)",
    )
    args = parser.parse_args()
    runner = uvloop.run if args.loop == "uvloop" else asyncio.run
    elapsed = runner(run(args.workload, args.pipeline, args.count))
    print(f"{args.workload} -P{args.pipeline}: {elapsed / args.count * 1e6:.2f} us per request")


if __name__ == "__main__":
    main()
