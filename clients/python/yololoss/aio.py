"""yololoss.aio: the asyncio client, for async training loops and servers.

    from yololoss.aio import AsyncYoloLossClient

    async with AsyncYoloLossClient("http://127.0.0.1:8000", model="yolov3") as client:
        res = await client.compute([out13, out26, out52], boxes=boxes, grads=True)

The same API as yololoss.YoloLossClient with every call awaited: the same arguments,
Result, exceptions (YoloLossHTTPError, YoloLossConnectionError, YoloLossTimeoutError, all
YoloLossError), Retry policy and per-call timeout. Requests are built and answers read by
the code the blocking client uses (_infer.py); only the transport differs: aiohttp (Debian's
python3-aiohttp), one connection pool per event loop, created on first use. Many computes
may run concurrently on one client (asyncio.gather); the pool keeps their connections
alive. Picklable: a copy has the settings and no session.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing.util
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import quote

try:
    import aiohttp
except ImportError as e:  # pragma: no cover - depends on the machine
    raise ImportError("yololoss.aio needs aiohttp (Debian: apt-get install python3-aiohttp);"
                      " the blocking yololoss.YoloLossClient works without it") from e

import numpy as np

from ._client import _Settings, _configure, _region_lost, _release_regions
from ._errors import (YoloLossConnectionError, YoloLossError, YoloLossHTTPError,
                      YoloLossTimeoutError)
from ._infer import (CompactHead, InferCall, decode_body, images_query, json_body,
                     missing_row, parse_json, scalars_body)
from ._result import Result
from ._retry import Attempts, Retry, RetryLike
from ._shm import SHM_MODES, Region, is_loopback
from ._tensors import ArrayLike

__all__ = ["AsyncYoloLossClient"]

RUN_PAGE = 100000

# The waits between attempts (a name of its own so that tests can record them).
_sleep = asyncio.sleep

# Failures after which the request may be sent again (the connection was refused, or broke
# before the whole answer arrived).
_RETRIED_OS_ERRORS = (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError,
                      BrokenPipeError)


def _lost(e: BaseException) -> bool:
    """True for a failure the retry policy covers (refused, reset, aborted, cut short)."""
    if isinstance(e, aiohttp.ClientConnectorError):
        return isinstance(e.os_error, _RETRIED_OS_ERRORS)
    return isinstance(e, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                          aiohttp.ClientOSError) + _RETRIED_OS_ERRORS)


class AsyncYoloLossClient(_Settings):
    """The asyncio client of one yololossd model; arguments as YoloLossClient's, compact
    tensors and shared memory included. Requests in flight at once each hold a region of
    their own from the client's pool (created and registered when none free is large
    enough; given back when the answer is read)."""

    def __init__(self, url: str = "http://127.0.0.1:8000", model: str = "yolov3",
                 token: Optional[str] = None, timeout: float = 60.0,
                 version: Optional[Union[str, int]] = None, retry: RetryLike = True,
                 compact: Optional[bool] = None, shm: str = "auto",
                 grad_datatype: Optional[str] = None) -> None:
        u = _configure(self, url, model, token, timeout, version, retry, compact, shm,
                       grad_datatype)
        self._extensions: Optional[frozenset] = None
        self._base = "%s://%s" % (u.scheme, u.netloc)
        self._host: str = u.hostname
        self._port = u.port or (443 if u.scheme == "https" else 80)
        self._prefix = u.path.rstrip("/")
        self._session: Optional[aiohttp.ClientSession] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._init_regions()

    def _init_regions(self) -> None:
        self._pid = os.getpid()
        self._regions: set = set()          # every registered region of this client
        self._free: List[Region] = []        # those no request holds now
        self._shm_failed = False
        # as the blocking client's: released at GC, exit and a multiprocessing child's end
        multiprocessing.util.Finalize(self, _release_regions,
                                      (self._regions, self._base.startswith("https"),
                                       self._host, self._port, self._prefix, self.token),
                                      exitpriority=10)

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None
        state["_loop"] = None
        state["_extensions"] = None
        for k in ("_regions", "_free", "_shm_failed", "_pid"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_regions()

    def __repr__(self) -> str:
        return "AsyncYoloLossClient(%r, model=%r)" % (self.url, self.model)

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # bodies are decoded by _infer.decode_body, as in the blocking client
            self._session = aiohttp.ClientSession(auto_decompress=False)
            self._loop = loop
        return self._session

    async def close(self) -> None:
        """Unregister the shared-memory regions and close the connection pool (a later
        call opens a new one)."""
        if self._pid == os.getpid():
            regions = list(self._regions)
            self._regions.clear()
            self._free.clear()
            for r in regions:
                await self._unregister(r)
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    # -- shared memory --

    def _use_shm(self, mode: str) -> bool:
        if mode == "wire" or (mode == "auto" and (self._shm_failed or not is_loopback(self._host))):
            return False
        return mode == "shm" or "system_shared_memory" in (self._extensions or ())

    async def _acquire(self, size: int, mode: str, timeout: Optional[float]) -> Optional[Region]:
        """A registered region of at least size bytes that no other request holds (None:
        use the wire)."""
        if self._pid != os.getpid():              # a forked child: the parent's stay its
            self._init_regions()
        for r in self._free:
            if r.size >= size:
                self._free.remove(r)
                return r
        if self._free:                            # too small: make room for a larger one
            small = self._free.pop(0)
            self._regions.discard(small)
            await self._unregister(small)
        try:
            r = Region(max(size, 1 << 20))
        except OSError as e:
            if mode == "shm":
                raise YoloLossConnectionError(None, "cannot create a shared-memory object: %s"
                                              % e) from e
            self._shm_failed = True
            return None
        try:
            body = json.dumps({"key": r.key, "offset": 0, "byte_size": r.size}).encode()
            parse_json(*await self._request(
                "POST", self._path("v2", "systemsharedmemory", "region", r.name, "register"),
                [body], {"Content-Type": "application/json"}, timeout))
        except YoloLossHTTPError:
            r.close()
            if mode == "shm":
                raise
            self._shm_failed = True
            return None
        finally:
            r.unlink()
        self._regions.add(r)
        return r

    async def _unregister(self, r: Region) -> None:
        try:
            await self._request("POST", self._path("v2", "systemsharedmemory", "region",
                                                   r.name, "unregister"),
                                timeout=5, retry=Retry.off())
        except YoloLossError:
            pass
        r.close()

    async def __aenter__(self) -> "AsyncYoloLossClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _path(self, *parts: Any) -> str:
        return self._prefix + "/" + "/".join(quote(str(p), safe="") for p in parts)

    def _model_path(self, model: Optional[str], *rest: str) -> str:
        p = ["v2", "models", model or self.model]
        if self.version is not None:
            p += ["versions", self.version]
        return self._path(*p, *rest)

    async def _request(self, method: str, path: str, body: Sequence[Any] = (),
                       headers: Optional[Mapping[str, str]] = None,
                       timeout: Optional[float] = None,
                       retry: Optional[Retry] = None) -> Tuple[int, Dict[str, str], Any]:
        hdrs = {"Accept-Encoding": "identity"}
        if self.token:
            hdrs["Authorization"] = "Bearer " + self.token
        hdrs.update(headers or {})
        data = b"".join(memoryview(c).cast("B") for c in body) if body else None
        limit = self.timeout if timeout is None else float(timeout)
        att = Attempts(self.retry if retry is None else retry, limit)
        what = "%s %s" % (method, path)
        session = self._get_session()
        while True:
            remaining = att.remaining()
            if remaining <= 0:
                raise YoloLossTimeoutError(None, "%s: no answer within the timeout (%gs)"
                                           % (what, limit))
            try:
                async with session.request(method, self._base + path, data=data, headers=hdrs,
                                           timeout=aiohttp.ClientTimeout(total=remaining),
                                           allow_redirects=False) as resp:
                    status = resp.status
                    rh = {k.lower(): v for k, v in resp.headers.items()}
                    raw = await resp.read()
            except asyncio.TimeoutError as e:
                raise YoloLossTimeoutError(None, "%s: no answer within the timeout (%gs)"
                                           % (what, limit)) from e
            except (aiohttp.ClientError, OSError) as e:
                if not _lost(e):
                    raise YoloLossConnectionError(None, "%s: cannot reach %s:%d: %s"
                                                  % (what, self._host, self._port,
                                                     str(e) or type(e).__name__)) from e
                if isinstance(e, aiohttp.ServerDisconnectedError) and not att.stale_reopened:
                    # most likely a pooled keep-alive connection the server closed while
                    # idle: reopen once, at once
                    att.stale_reopened = True
                    continue
                wait = att.wait_after_connection_error()
                if wait is None:
                    raise YoloLossConnectionError(
                        None, "%s: cannot reach %s:%d: %s (%d attempt%s)"
                        % (what, self._host, self._port, str(e) or type(e).__name__,
                           att.made, "" if att.made == 1 else "s")) from e
                self.retries += 1
                await _sleep(wait)
                continue
            wait = att.wait_after_status(status, rh.get("retry-after"))
            if wait is not None:
                self.retries += 1
                await _sleep(wait)
                continue
            return status, rh, _body(raw, rh)

    async def _get_json(self, path: str, timeout: Optional[float] = None) -> Any:
        return parse_json(*await self._request("GET", path, timeout=timeout))

    # -- metadata --

    async def live(self, timeout: Optional[float] = None) -> bool:
        return (await self._request("GET", self._path("v2", "health", "live"),
                                    timeout=timeout))[0] == 200

    async def ready(self, timeout: Optional[float] = None) -> bool:
        return (await self._request("GET", self._path("v2", "health", "ready"),
                                    timeout=timeout))[0] == 200

    async def model_ready(self, model: Optional[str] = None,
                          timeout: Optional[float] = None) -> bool:
        return (await self._request("GET", self._model_path(model, "ready"),
                                    timeout=timeout))[0] == 200

    async def server_metadata(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        return await self._get_json(self._path("v2"), timeout)

    async def model_metadata(self, model: Optional[str] = None,
                             timeout: Optional[float] = None) -> Dict[str, Any]:
        return await self._get_json(self._model_path(model), timeout)

    async def model_config(self, model: Optional[str] = None,
                           timeout: Optional[float] = None) -> Dict[str, Any]:
        return await self._get_json(self._path("v2", "models", model or self.model, "config"),
                                    timeout)

    async def statistics(self, model: Optional[str] = None,
                         timeout: Optional[float] = None) -> Dict[str, Any]:
        if model in ("", "*"):
            return await self._get_json(self._path("v2", "models", "stats"), timeout)
        return await self._get_json(self._path("v2", "models", model or self.model, "stats"),
                                    timeout)

    # -- the run history --

    async def runs(self, timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        return list((await self._get_json(self._path("v1", "runs"), timeout)).get("runs", []))

    async def steps(self, run: str, after: int = -1, limit: Optional[int] = None,
                    timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        out: List[Dict[str, Any]] = []
        while limit is None or len(out) < limit:
            page = RUN_PAGE if limit is None else min(RUN_PAGE, limit - len(out))
            path = self._path("v1", "runs", run, "steps") + "?after=%d&limit=%d" % (after, page)
            pts = (await self._get_json(path, timeout)).get("points", [])
            out += pts
            if len(pts) < page:
                break
            after = int(pts[-1]["step"])
        return out

    async def delete_run(self, run: str, timeout: Optional[float] = None) -> int:
        status, rh, data = await self._request("DELETE", self._path("v1", "runs", run),
                                               timeout=timeout)
        return int(parse_json(status, rh, data).get("deleted", 0))

    async def set_config(self, run: str, config: Mapping[str, Any],
                         timeout: Optional[float] = None) -> Dict[str, Any]:
        body, hdrs = json_body(config, "config")
        return parse_json(*await self._request("PUT", self._path("v1", "runs", run, "config"),
                                               body, hdrs, timeout))

    async def config(self, run: str,
                     timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        status, rh, data = await self._request("GET", self._path("v1", "runs", run, "config"),
                                               timeout=timeout)
        return None if status == 404 else parse_json(status, rh, data).get("config")

    async def log_scalars(self, run: str, step: int, scalars: Mapping[str, float],
                          timeout: Optional[float] = None) -> Dict[str, Any]:
        body, hdrs = json_body(scalars_body(step, scalars), "scalars")
        return parse_json(*await self._request(
            "POST", self._path("v1", "runs", run, "scalars"), body, hdrs, timeout))

    async def scalars(self, run: str,
                      timeout: Optional[float] = None) -> Dict[str, Dict[str, list]]:
        return (await self._get_json(self._path("v1", "runs", run, "scalars"),
                                     timeout)).get("scalars", {})

    async def images(self, run: str, order: str = "loss", limit: Optional[int] = None,
                     window: Optional[int] = None, timeout: Optional[float] = None,
                     per: Optional[str] = None) -> Dict[str, Any]:
        return await self._get_json(self._path("v1", "runs", run, "images")
                                    + images_query(order, limit, window, per), timeout)

    async def image_history(self, run: str, image: int,
                            timeout: Optional[float] = None) -> Dict[str, Any]:
        return await self._get_json(self._path("v1", "runs", run, "images", int(image)),
                                    timeout)

    # -- the loss --

    async def compute(self, outputs: Sequence[ArrayLike], boxes: Optional[ArrayLike] = None,
                      y_true: Optional[Sequence[ArrayLike]] = None, grads: bool = False,
                      ignore_thresh: Optional[float] = None,
                      anchors: Union[str, Sequence[float], np.ndarray, None] = None,
                      run: Optional[str] = None, step: Optional[int] = None,
                      binary: bool = True, compress: Optional[str] = None,
                      request_id: Optional[str] = None, timeout: Optional[float] = None,
                      grad_datatype: Optional[str] = None,
                      image_ids: Optional[ArrayLike] = None,
                      compact: Optional[bool] = None, shm: Optional[str] = None) -> Result:
        """As YoloLossClient.compute, awaited."""
        if grad_datatype is None:
            grad_datatype = self.grad_datatype
        args = (outputs, boxes, y_true, grads, ignore_thresh, anchors, run, step, binary,
                compress, request_id, grad_datatype, image_ids)
        use = self.compact if compact is None else compact
        if use is None:
            use = "yololoss_compact" in await self.server_extensions(timeout)
        call = InferCall(*args, compact=use)
        try:
            return await self.send(call, timeout, shm)
        except YoloLossHTTPError as e:
            if call.compact is None or not missing_row(e) or any(
                    isinstance(o, CompactHead) for o in outputs):
                raise
        return await self.send(InferCall(*args, compact=False), timeout, shm)

    async def send(self, call: InferCall, timeout: Optional[float] = None,
                   shm: Optional[str] = None) -> Result:
        """Send a prepared InferCall and read its Result."""
        mode = self.shm if shm is None else shm
        if mode not in SHM_MODES:
            raise ValueError("shm must be 'auto', 'shm' or 'wire', not %r" % (mode,))
        if mode == "auto" and self._extensions is None and call.binary:
            await self.server_extensions(timeout)
        for again in (False, True):
            region = None
            if call.binary and self._use_shm(mode):
                region = await self._acquire(call.shm_bytes(), mode, timeout)
            where = None if region is None else (region.name, region.buf)
            try:
                body, hdrs = call.encode(where)
                status, rh, data = await self._request("POST", self._model_path(None, "infer"),
                                                       body, hdrs, timeout)
                return call.result(status, rh, data, where)
            except YoloLossHTTPError as e:
                if again or region is None or not _region_lost(e, region):
                    raise
                self._regions.discard(region)     # the daemon lost it: a new one, once more
                region.close()
                region = None
            finally:
                if region is not None and region in self._regions:
                    self._free.append(region)
        raise AssertionError("unreachable")

    async def server_extensions(self, timeout: Optional[float] = None) -> frozenset:
        """The extensions GET /v2 lists (read once per client)."""
        if self._extensions is None:
            try:
                meta = await self.server_metadata(timeout)
            except YoloLossHTTPError:
                meta = {}
            self._extensions = frozenset(meta.get("extensions", []))
        return self._extensions


def _body(raw: bytes, rh: Mapping[str, str]) -> Any:
    """The body decoded; uncompressed, copied once into a buffer whose binary part starts
    16-byte aligned, so the arrays made on it are aligned and writable (as the blocking
    client's)."""
    enc = rh.get("content-encoding", "identity").strip().lower()
    if enc not in ("", "identity"):
        return decode_body(enc, raw)
    try:
        hlen = int(rh.get("inference-header-content-length", "0"))
    except ValueError:
        hlen = 0
    pad = (-hlen) % 16
    buf = np.empty(pad + len(raw), dtype=np.uint8)
    buf[pad:] = np.frombuffer(raw, dtype=np.uint8)
    return buf.data[pad:]
