"""yololoss.aio.AsyncYoloLossClient: the same answers as the blocking client (bit for bit)
and the reference, the same exceptions, retry policy and per-call timeout, concurrent
computes on one client. Each test runs its own event loop (asyncio.run)."""

import asyncio
import pickle

import numpy as np
import pytest

aiohttp = pytest.importorskip(
    "aiohttp", reason="aiohttp is not installed (Debian: apt-get install python3-aiohttp); "
    "the yololoss.aio tests need it")

import make_golden as mg  # noqa: E402
import yololoss.aio as aio_mod  # noqa: E402
from fake_server import FakeServer  # noqa: E402
from test_client import assert_matches, case_args, model_of, same_bits  # noqa: E402
from test_errors_retry import BOXES, FAST, OUTS, free_port  # noqa: E402
from yololoss import (Retry, YoloLossClient, YoloLossConnectionError,  # noqa: E402
                      YoloLossHTTPError, YoloLossTimeoutError)
from yololoss.aio import AsyncYoloLossClient  # noqa: E402


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def waits(monkeypatch):
    got = []
    real = aio_mod._sleep

    async def record(s):
        got.append(s)
        await real(min(s, 0.01))
    monkeypatch.setattr(aio_mod, "_sleep", record)
    return got


@pytest.mark.parametrize("seed", [7100, 7101, 7102, 7103])
def test_answers_match_the_reference_and_the_blocking_client(url, seed):
    case = mg.random_case(seed)
    outs, kw = case_args(case)

    async def go():
        async with AsyncYoloLossClient(url, model=model_of(case)) as c:
            return (await c.compute(outs, grads=True, **kw),
                    await c.compute(outs, grads=True, compress="gzip", **kw))
    res, gz = run(go())
    assert_matches(res, case["expect"], case["L"])
    same_bits(res, gz)
    same_bits(res, YoloLossClient(url, model=model_of(case)).compute(outs, grads=True, **kw))
    g = res.grads[0]
    assert g.flags.writeable and g.flags.aligned


def test_concurrent_computes_on_one_client(url):
    cases = [mg.random_case(s) for s in (7110, 7111, 7112, 7113, 7114, 7115)]

    async def go():
        c = AsyncYoloLossClient(url)
        try:
            return await asyncio.gather(*[
                c.compute(*[case_args(k)[0]], grads=True, **case_args(k)[1])
                if model_of(k) == "yolov3" else
                AsyncYoloLossClient(url, model="yolov3-tiny").compute(
                    case_args(k)[0], grads=True, **case_args(k)[1])
                for k in cases])
        finally:
            await c.close()
    for res, case in zip(run(go()), cases):
        assert_matches(res, case["expect"], case["L"])


def test_metadata_and_errors(url):
    async def go():
        async with AsyncYoloLossClient(url, model="yolov3-tiny") as c:
            assert await c.live() and await c.ready() and await c.model_ready()
            assert not await c.model_ready("no-such-model")
            assert (await c.server_metadata())["name"] == "yololossd"
            assert (await c.model_metadata())["name"] == "yolov3-tiny"
            assert "parameters" in await c.model_config()
            assert (await c.statistics())["model_stats"]
            with pytest.raises(YoloLossHTTPError) as e:
                await c.compute([np.zeros((1, 2, 2, 18)), np.zeros((1, 4, 4, 18))],
                                boxes=np.array([[[10, 10, 20, 20, 7]]], np.float32))
            assert e.value.status == 400 and "boxes[0][0]" in e.value.message
            with pytest.raises(YoloLossHTTPError) as e:
                await c.model_metadata("yolov9")
            assert e.value.status == 404
    run(go())


def test_refused_is_a_connection_error():
    async def go():
        c = AsyncYoloLossClient("http://127.0.0.1:%d" % free_port(), retry=False,
                                compact=False)
        try:
            await c.compute(OUTS, boxes=BOXES)
        finally:
            await c.close()
    with pytest.raises(ConnectionError) as e:
        run(go())
    assert isinstance(e.value, YoloLossConnectionError) and e.value.status is None


def test_per_call_timeout():
    with FakeServer(["hang"]) as srv:
        async def go():
            async with AsyncYoloLossClient(srv.url, compact=False, timeout=60) as c:
                with pytest.raises(TimeoutError) as e:
                    await c.compute(OUTS, boxes=BOXES, timeout=0.3)
                assert isinstance(e.value, YoloLossTimeoutError)
                srv.release.set()
                return (await c.compute(OUTS, boxes=BOXES)).loss
        assert run(go()) == 2.5


@pytest.mark.parametrize("status", [502, 503, 504])
def test_statuses_are_retried(status, waits):
    with FakeServer([status] * 3) as srv:
        async def go():
            async with AsyncYoloLossClient(srv.url, compact=False, retry=FAST) as c:
                return (await c.compute(OUTS, boxes=BOXES)).loss, c.retries
        assert run(go()) == (2.5, 3)
        assert srv.attempts == 4 and len(waits) == 3


def test_resets_are_retried(waits):
    with FakeServer(["reset", "reset"]) as srv:
        async def go():
            async with AsyncYoloLossClient(srv.url, compact=False, retry=FAST) as c:
                return (await c.compute(OUTS, boxes=BOXES)).loss
        assert run(go()) == 2.5
        assert srv.attempts == 3


def test_retry_after_deadline_and_off(waits):
    with FakeServer([503, 503], retry_after=0.05) as srv:
        async def go():
            async with AsyncYoloLossClient(srv.url, compact=False, retry=FAST) as c:
                return (await c.compute(OUTS, boxes=BOXES)).loss
        assert run(go()) == 2.5 and waits == [0.05, 0.05]
    with FakeServer([503] * 5, retry_after=100) as srv:
        async def go2():
            async with AsyncYoloLossClient(srv.url, compact=False, timeout=5) as c:
                await c.compute(OUTS, boxes=BOXES)
        with pytest.raises(YoloLossHTTPError) as e:
            run(go2())
        assert e.value.status == 503 and srv.attempts == 1
    for policy, n in ((False, 1), (Retry(max_attempts=3, backoff_base=0.001), 3)):
        with FakeServer([503] * 10) as srv:
            async def go3():
                async with AsyncYoloLossClient(srv.url, compact=False, retry=policy) as c:
                    await c.compute(OUTS, boxes=BOXES)
            with pytest.raises(YoloLossHTTPError):
                run(go3())
            assert srv.attempts == n


def test_pickles_without_its_session(url):
    async def go():
        c = AsyncYoloLossClient(url, model="yolov3-tiny")
        a = await c.compute([np.zeros((1, 1, 1, 18)), np.zeros((1, 2, 2, 18))],
                            boxes=np.zeros((1, 1, 5)))
        c2 = pickle.loads(pickle.dumps(c))
        assert c2._session is None and c2.url == c.url
        b = await c2.compute([np.zeros((1, 1, 1, 18)), np.zeros((1, 2, 2, 18))],
                             boxes=np.zeros((1, 1, 5)))
        await c.close()
        await c2.close()
        return a.loss, b.loss
    a, b = run(go())
    assert a == b
