"""Run `async def` tests without a plugin: each in a fresh asyncio.Runner, on both loops.

Every coroutine test is parametrized over `loop_impl` (ids `asyncio` and `uvloop`). A test
also fails if the loop's exception handler was called or if it left tasks pending. A test can
take `loop_impl` as an argument, or pin one loop with its own parametrize("loop_impl", [...]).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Final

import pytest
import uvloop

LOOP_IMPLS: Final = ("asyncio", "uvloop")
LOOP_FACTORIES: Final[dict[str, Callable[[], asyncio.AbstractEventLoop]]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
ASYNC_TEST_TIMEOUT: Final = 120.0  # a hung test fails here rather than hanging CI

AsyncTest = Callable[..., Coroutine[Any, Any, object]]


@pytest.fixture(autouse=True)
def loop_impl(request: pytest.FixtureRequest) -> str | None:
    """The loop a coroutine test runs on; None for plain tests."""
    return getattr(request, "param", None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not inspect.iscoroutinefunction(metafunc.function):
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if "loop_impl" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return
    metafunc.parametrize("loop_impl", LOOP_IMPLS, ids=LOOP_IMPLS)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    funcargs = pyfuncitem.funcargs
    kwargs = {name: funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    run_async_test(pyfuncitem.obj, kwargs, str(funcargs["loop_impl"]))
    return True


def run_async_test(test: AsyncTest, kwargs: dict[str, Any], loop_impl: str) -> None:
    """Run test(**kwargs) in a fresh Runner; pytest.fail on handler calls or leaked tasks."""
    handler_calls: list[dict[str, Any]] = []
    leaked: list[str] = []

    async def guarded() -> None:
        async with asyncio.timeout(ASYNC_TEST_TIMEOUT):
            await test(**kwargs)
        leaked.extend(await _cancel_other_tasks())

    with asyncio.Runner(loop_factory=LOOP_FACTORIES[loop_impl]) as runner:
        runner.get_loop().set_exception_handler(lambda _loop, ctx: handler_calls.append(ctx))
        runner.run(guarded())
    gc.collect()  # "Task exception was never retrieved" is reported when the task is freed
    problems = [f"task left pending (cancelled): {task}" for task in leaked]
    problems += [f"loop exception handler called: {_describe(ctx)}" for ctx in handler_calls]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


async def _cancel_other_tasks() -> list[str]:
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    described = [repr(t) for t in pending]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return described


def _describe(context: dict[str, Any]) -> str:
    exc = context.get("exception")
    return f"{context.get('message')!r}" + (f" ({exc!r})" if exc is not None else "")


@pytest.fixture
def async_runner() -> Callable[[AsyncTest, dict[str, Any], str], None]:
    """run_async_test itself, for tests of the runner (conftest is not importable)."""
    return run_async_test
