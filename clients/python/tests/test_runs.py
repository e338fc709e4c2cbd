"""The run-history API of both clients (GET /v1/runs, steps, DELETE) against a daemon with
a history file of its own: what compute(run=, step=) recorded comes back, page by page."""

import asyncio

import numpy as np
import pytest

from conftest import Daemon
from yololoss import YoloLossClient, YoloLossHTTPError


@pytest.fixture(scope="module")
def hist(tmp_path_factory):
    tok = tmp_path_factory.mktemp("tok") / "token"
    tok.write_text("runs-token\n")
    d = Daemon("--threads", "1", "--token-file", str(tok), "--history",
               str(tmp_path_factory.mktemp("hist") / "h.sqlite"))
    yield d
    d.stop()


def batch(k):
    rng = np.random.default_rng(k)
    return [rng.normal(size=(1, 1, 1, 18)), rng.normal(size=(1, 2, 2, 18))]


def test_runs_steps_and_delete(hist):
    c = YoloLossClient(hist.url, model="yolov3-tiny", token="runs-token")
    losses = [c.compute(batch(k), boxes=np.zeros((1, 1, 5)), run="rs", step=k).loss
              for k in range(5)]
    c.compute(batch(9), boxes=np.zeros((1, 1, 5)), run="rs", step=2)     # replaces step 2
    losses[2] = c.compute(batch(9), boxes=np.zeros((1, 1, 5))).loss
    runs = {r["run"]: r for r in c.runs()}
    assert runs["rs"]["points"] == 5 and runs["rs"]["last_step"] == 4
    pts = c.steps("rs")
    assert [p["step"] for p in pts] == [0, 1, 2, 3, 4]
    assert [p["total"] for p in pts] == pytest.approx(losses, rel=1e-6)
    assert [p["step"] for p in c.steps("rs", after=1, limit=2)] == [2, 3]
    assert [p["step"] for p in c.steps("rs", after=3)] == [4]
    anon = YoloLossClient(hist.url)
    with pytest.raises(YoloLossHTTPError) as e:
        anon.delete_run("rs")
    assert e.value.status == 401
    assert c.delete_run("rs") == 5
    assert "rs" not in {r["run"] for r in c.runs()} and c.steps("rs") == []


def test_async_runs_api(hist):
    aio = pytest.importorskip("yololoss.aio", reason="aiohttp is not installed")
    YoloLossClient(hist.url, model="yolov3-tiny", token="runs-token").compute(
        batch(1), boxes=np.zeros((1, 1, 5)), run="a/b", step=7)

    async def go():
        async with aio.AsyncYoloLossClient(hist.url, token="runs-token") as c:
            names = [r["run"] for r in await c.runs()]
            pts = await c.steps("a/b")
            return names, pts, await c.delete_run("a/b")
    names, pts, deleted = asyncio.run(go())
    assert "a/b" in names and [p["step"] for p in pts] == [7] and deleted == 1


def test_config_scalars_and_image_ranking(hist):
    c = YoloLossClient(hist.url, model="yolov3-tiny", token="runs-token")
    assert c.config("cfg") is None
    c.set_config("cfg", {"lr": 0.001, "batch": 2, "note": "x"})
    # image 5 has a box its outputs miss badly: it ranks first
    good, bad = np.zeros((1, 2, 2, 18)), np.zeros((1, 2, 2, 18))
    for step in range(3):
        outs = [np.zeros((2, 1, 1, 18)), np.concatenate([good, bad])]
        boxes = np.array([[[0, 0, 0, 0, 0]], [[4, 6, 20, 26, 0]]], np.float32)
        c.compute(outs, boxes=boxes, run="cfg", step=step, image_ids=np.array([9, 5]))
        c.log_scalars("cfg", step, {"lr": 0.1 / (step + 1)})
    assert c.config("cfg") == {"lr": 0.001, "batch": 2, "note": "x"}
    sc = c.scalars("cfg")
    assert sc["lr"]["steps"] == [0, 1, 2]
    assert sc["lr"]["values"] == pytest.approx([0.1, 0.05, 0.1 / 3])
    ranked = c.images("cfg", limit=10)
    assert [i["image"] for i in ranked["images"]] == [5, 9]
    assert ranked["per"] == "box" and ranked["images"][0]["last_truths"] == 1
    per_image = c.images("cfg", limit=10, per="image")
    assert per_image["per"] == "image" and [i["image"] for i in per_image["images"]] == [5, 9]
    assert [h["step"] for h in c.image_history("cfg", 5)["history"]] == [0, 1, 2]
    with pytest.raises(ValueError):
        c.log_scalars("cfg", 3, {"step": 1})
    with pytest.raises(ValueError):
        c.log_scalars("cfg", 3, {"lr": float("nan")})
    assert c.delete_run("cfg") == 3
