"""The plugin-free async runner in tests/conftest.py: both loops, and what makes it fail."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import uvloop

Runner = Callable[..., None]


async def test_runs_on_the_parametrized_loop(loop_impl: str) -> None:
    loop = asyncio.get_running_loop()
    if loop_impl == "uvloop":
        assert type(loop) is uvloop.Loop
    else:
        assert loop_impl == "asyncio"
        assert not isinstance(loop, uvloop.Loop)
        assert isinstance(loop, asyncio.BaseEventLoop)


@pytest.mark.parametrize("loop_impl", ["uvloop"])
async def test_a_test_can_pin_one_loop(loop_impl: str) -> None:
    assert type(asyncio.get_running_loop()) is uvloop.Loop


def test_coroutine_tests_get_both_loops(request: pytest.FixtureRequest) -> None:
    module = request.node.parent
    assert isinstance(module, pytest.Module)
    names = {item.name for item in module.collect()}
    assert "test_runs_on_the_parametrized_loop[asyncio]" in names
    assert "test_runs_on_the_parametrized_loop[uvloop]" in names
    assert "test_a_test_can_pin_one_loop[uvloop]" in names


def test_plain_tests_get_no_loop(loop_impl: str | None) -> None:
    assert loop_impl is None


@pytest.mark.parametrize("impl", ["asyncio", "uvloop"])
def test_clean_test_passes(async_runner: Runner, impl: str) -> None:
    async def clean(delay: float) -> None:
        await asyncio.sleep(delay)
        task = asyncio.create_task(asyncio.sleep(0))
        await task

    async_runner(clean, {"delay": 0.001}, impl)


@pytest.mark.parametrize("impl", ["asyncio", "uvloop"])
def test_leaked_task_is_cancelled_and_fails(async_runner: Runner, impl: str) -> None:
    cancelled = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def leaky() -> None:
        asyncio.get_running_loop().create_task(forever(), name="the-leak")
        await asyncio.sleep(0)

    with pytest.raises(pytest.fail.Exception, match=r"task left pending.*the-leak"):
        async_runner(leaky, {}, impl)
    assert cancelled == [True]


@pytest.mark.parametrize("impl", ["asyncio", "uvloop"])
def test_exception_handler_call_fails(async_runner: Runner, impl: str) -> None:
    async def noisy() -> None:
        asyncio.get_running_loop().call_exception_handler({"message": "boom"})

    with pytest.raises(pytest.fail.Exception, match="exception handler called: 'boom'"):
        async_runner(noisy, {}, impl)


@pytest.mark.parametrize("impl", ["asyncio", "uvloop"])
def test_unretrieved_task_exception_fails(async_runner: Runner, impl: str) -> None:
    async def fail() -> None:
        raise ValueError("lost")

    async def drops_a_failed_task() -> None:
        task: Any = asyncio.get_running_loop().create_task(fail())
        await asyncio.sleep(0.01)
        assert task.done()
        del task

    with pytest.raises(pytest.fail.Exception, match=r"never retrieved.*ValueError\('lost'\)"):
        async_runner(drops_a_failed_task, {}, impl)


@pytest.mark.parametrize("impl", ["asyncio", "uvloop"])
def test_test_errors_propagate(async_runner: Runner, impl: str) -> None:
    async def broken() -> None:
        raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        async_runner(broken, {}, impl)
