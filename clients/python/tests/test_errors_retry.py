"""The exception hierarchy, the per-call timeout and the retry policy of YoloLossClient.

Failures on cue come from fake_server.FakeServer (a scripted stand-in counting attempts);
the server's own errors from a live yololossd. The waits between attempts are recorded
(yololoss._client._sleep), never timed: these tests assert counts and bounds."""

import copy
import pickle
import socket

import numpy as np
import pytest

import yololoss._client as client_mod
from fake_server import FakeServer
from yololoss import (Retry, YoloLossClient, YoloLossConnectionError, YoloLossError,
                      YoloLossHTTPError, YoloLossTimeoutError)

FAST = Retry(backoff_base=0.001, backoff_max=0.002)
OUTS = [np.zeros((1, 1, 1, 18), np.float32)]
BOXES = np.zeros((1, 1, 5), np.float32)


@pytest.fixture
def waits(monkeypatch):
    """The waits the client asked for, in order (the real sleep still happens)."""
    got = []
    real = client_mod._sleep

    def record(s):
        got.append(s)
        real(min(s, 0.01))
    monkeypatch.setattr(client_mod, "_sleep", record)
    return got


def fake_client(url, **kw):
    """A client for the scripted server: dense, on the wire (no GET /v2 before the infer,
    so the server's script counts infers only)."""
    return YoloLossClient(url, compact=False, shm="wire", **kw)


def free_port():
    """A port with nothing listening on it (connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- the hierarchy -----------------------------------------------------------------------

def test_http_errors_carry_status_and_the_servers_message(url):
    c = YoloLossClient(url, model="yolov3-tiny")
    with pytest.raises(YoloLossHTTPError) as e:
        c.compute([np.zeros((1, 2, 2, 18)), np.zeros((1, 4, 4, 18))],
                  boxes=np.array([[[10, 10, 20, 20, 7]]], np.float32))
    assert isinstance(e.value, YoloLossError)
    assert not isinstance(e.value, (ConnectionError, TimeoutError))
    assert e.value.status == 400 and "boxes[0][0]" in e.value.message
    assert str(e.value).startswith("HTTP 400: boxes[0][0]")


def test_refused_connection_is_a_connection_error():
    c = fake_client("http://127.0.0.1:%d" % free_port(), retry=False)
    with pytest.raises(ConnectionError) as e:
        c.compute(OUTS, boxes=BOXES)
    assert isinstance(e.value, YoloLossConnectionError) and isinstance(e.value, YoloLossError)
    assert isinstance(e.value, OSError)
    assert e.value.status is None and "1 attempt" in e.value.message
    assert c.retries == 0


def test_per_call_timeout_is_a_timeout_error():
    """The server answers after 10 s; the client's timeout is 60 s, the call's 0.3 s: the
    call must end with a TimeoutError, not the late answer."""
    with FakeServer(["hang"]) as srv:
        c = fake_client(srv.url, timeout=60)
        with pytest.raises(TimeoutError) as e:
            c.compute(OUTS, boxes=BOXES, timeout=0.3)
        assert isinstance(e.value, YoloLossTimeoutError) and e.value.status is None
        assert "0.3s" in e.value.message
        srv.release.set()
        assert c.compute(OUTS, boxes=BOXES).loss == 2.5      # and the client still works


def test_per_call_timeout_on_metadata_calls():
    with FakeServer(["hang"]) as srv:
        with pytest.raises(YoloLossTimeoutError):
            fake_client(srv.url, timeout=60).model_metadata(timeout=0.3)


@pytest.mark.parametrize("err", [
    YoloLossHTTPError(503, "busy", {"retry-after": "1"}),
    YoloLossConnectionError(None, "refused"),
    YoloLossTimeoutError(None, "slow")])
def test_errors_pickle_and_copy_with_their_fields(err):
    for back in (pickle.loads(pickle.dumps(err)), copy.deepcopy(err)):
        assert type(back) is type(err)
        assert (back.status, back.message, back.headers) == (err.status, err.message, err.headers)
        assert str(back) == str(err)


# ---- retries -----------------------------------------------------------------------------

@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_and_overload_answers_are_retried(status, waits):
    with FakeServer([status] * 3) as srv:
        c = fake_client(srv.url, retry=FAST)
        assert c.compute(OUTS, boxes=BOXES).loss == 2.5
        assert srv.attempts == 4 and c.retries == 3 and len(waits) == 3


def test_reset_connections_are_retried(waits):
    with FakeServer(["reset", "reset"]) as srv:
        c = fake_client(srv.url, retry=FAST)
        assert c.compute(OUTS, boxes=BOXES).loss == 2.5
        assert srv.attempts == 3 and c.retries == 2


def test_refused_connections_are_retried_until_the_server_is_up(monkeypatch):
    """Nothing listens at first; the second wait starts the listener: the third attempt
    gets through."""
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))          # bound, not listening: connections are refused
    port = lsock.getsockname()[1]
    calls = []

    def sleep_then_listen(s):
        calls.append(s)
        if len(calls) == 2:
            lsock.listen(1)
            t.start()

    monkeypatch.setattr(client_mod, "_sleep", sleep_then_listen)
    import threading

    def answer_once():
        conn, _ = lsock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, rest = data.split(b"\r\n\r\n", 1)
            n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0]
                    .split(b":")[1])
            while len(rest) < n:
                rest += conn.recv(65536)
            from fake_server import GOOD_BODY
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(GOOD_BODY)
                         + GOOD_BODY)

    t = threading.Thread(target=answer_once, daemon=True)
    try:
        c = fake_client("http://127.0.0.1:%d" % port, retry=FAST)
        assert c.compute(OUTS, boxes=BOXES).loss == 2.5
        assert len(calls) == 2 and c.retries == 2
    finally:
        if t.is_alive():
            t.join(5)
        lsock.close()


def test_backoff_is_full_jitter_doubling_to_the_cap(waits):
    policy = Retry(backoff_base=0.004, backoff_max=0.02)
    with FakeServer([502] * 8) as srv:
        c = fake_client(srv.url, retry=policy)
        assert c.compute(OUTS, boxes=BOXES).loss == 2.5
    assert len(waits) == 8
    caps = [min(0.02, 0.004 * 2 ** n) for n in range(8)]
    assert all(0 <= w <= cap for w, cap in zip(waits, caps)), (waits, caps)


def test_retry_after_is_honoured(waits):
    with FakeServer([503, 503], retry_after=0.05) as srv:
        c = fake_client(srv.url, retry=FAST)
        assert c.compute(OUTS, boxes=BOXES).loss == 2.5
    assert waits == [0.05, 0.05]


def test_a_retry_after_past_the_deadline_ends_the_call_at_once(waits):
    with FakeServer([503] * 5, retry_after=100) as srv:
        c = fake_client(srv.url, retry=FAST, timeout=5)
        with pytest.raises(YoloLossHTTPError) as e:
            c.compute(OUTS, boxes=BOXES)
        assert e.value.status == 503 and e.value.message == "scripted 503"
        assert e.value.headers["retry-after"] == "100"
        assert srv.attempts == 1 and waits == []


def test_max_attempts_and_off(waits):
    with FakeServer([503] * 10) as srv:
        c = fake_client(srv.url, retry=Retry(max_attempts=3, backoff_base=0.001))
        with pytest.raises(YoloLossHTTPError):
            c.compute(OUTS, boxes=BOXES)
        assert srv.attempts == 3 and c.retries == 2
    with FakeServer([503] * 10) as srv:
        c = fake_client(srv.url, retry=False)
        with pytest.raises(YoloLossHTTPError):
            c.compute(OUTS, boxes=BOXES)
        assert srv.attempts == 1 and c.retries == 0
    with FakeServer(["reset"] * 10) as srv:
        c = fake_client(srv.url, retry=Retry.off())
        with pytest.raises(YoloLossConnectionError):
            c.compute(OUTS, boxes=BOXES)
        assert srv.attempts == 1


@pytest.mark.parametrize("status", [400, 404, 500])
def test_other_statuses_are_not_retried(status, waits):
    with FakeServer([status] * 3) as srv:
        c = fake_client(srv.url, retry=FAST)
        with pytest.raises(YoloLossHTTPError) as e:
            c.compute(OUTS, boxes=BOXES)
        assert e.value.status == status and srv.attempts == 1 and waits == []


def test_retries_stop_at_the_deadline():
    """Always 503 with a 0.2 s Retry-After and a 1 s deadline: a handful of attempts, then
    the 503 (counted, not timed: at most 1 / 0.2 + 1 attempts fit)."""
    with FakeServer([503] * 100, retry_after=0.2) as srv:
        c = fake_client(srv.url, timeout=1)
        with pytest.raises(YoloLossHTTPError) as e:
            c.compute(OUTS, boxes=BOXES)
        assert e.value.status == 503
        assert 2 <= srv.attempts <= 6


def test_retry_policy_validation():
    with pytest.raises(ValueError):
        Retry(max_attempts=0)
    with pytest.raises(TypeError):
        YoloLossClient("http://127.0.0.1:1", retry=3)
    assert Retry().statuses == frozenset({502, 503, 504})


@pytest.mark.parametrize("answer", ["not-json", "header-too-long", "short-binary",
                                    "bad-datatype", "no-loss", "flat-stats"])
def test_malformed_answers_are_protocol_errors(answer):
    from yololoss import YoloLossProtocolError
    with FakeServer([answer]) as srv:
        c = fake_client(srv.url, retry=FAST)
        with pytest.raises(YoloLossProtocolError) as e:
            c.compute(OUTS, boxes=BOXES)
        assert isinstance(e.value, YoloLossError) and e.value.status == 200
        assert "malformed answer" in e.value.message
        assert srv.attempts == 1


def test_jitter_does_not_follow_the_random_modules_seed():
    """Training scripts seed `random` alike on every rank: the backoff must still differ."""
    import random
    draws = []
    for _ in range(2):
        random.seed(0)
        draws.append([Retry().backoff(6) for _ in range(8)])
    assert draws[0] != draws[1]
