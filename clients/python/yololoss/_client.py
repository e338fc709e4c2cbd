"""The blocking client: Open Inference Protocol v2 requests with Triton's binary tensor
extension over http.client.

One request per compute(): the raw head outputs and the ground truth go out as binary
tensors (or JSON numbers with binary=False), the outputs come back the same way. Each
thread keeps one persistent connection (HTTP/1.1 keep-alive); a connection the server
closed while idle is reopened at once. Refused or reset connections and 502/503/504
answers are retried by the client's Retry policy (_retry.py) inside the call's deadline.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import multiprocessing.util
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import quote, urlsplit

import numpy as np

from ._errors import (YoloLossConnectionError, YoloLossError, YoloLossHTTPError,
                      YoloLossTimeoutError)
from ._infer import (CompactHead, InferCall, decode_body, images_query, json_body,
                     missing_row, parse_json, scalars_body)
from ._result import Result
from ._retry import Attempts, Retry, RetryLike, as_retry
from ._shm import SHM_MODES, Region, is_loopback
from ._tensors import ArrayLike

__all__ = ["YoloLossClient"]

# A failure after which the request may be sent again: the connection was refused, or it
# broke before the whole answer arrived (a restarting daemon, a proxy's reset).
_CONNECTION_LOST = (http.client.RemoteDisconnected, http.client.BadStatusLine,
                    http.client.IncompleteRead, ConnectionRefusedError, ConnectionResetError,
                    ConnectionAbortedError, BrokenPipeError)


RUN_PAGE = 100000          # the server's largest page of points

# The waits between attempts (a name of its own so that tests can record them).
_sleep = time.sleep


class _Conn(threading.local):
    conn: Optional[http.client.HTTPConnection] = None
    region: Optional[Region] = None           # this thread's shared-memory region



class _Settings:
    """The settings both clients hold (set by _configure, checked there)."""
    url: str
    model: str
    version: Optional[str]
    token: Optional[str]
    timeout: float
    retry: Retry
    retries: int
    compact: Optional[bool]
    shm: str
    grad_datatype: Optional[str]


def _configure(client: _Settings, url: str, model: str, token: Optional[str], timeout: float,
               version: Optional[Union[str, int]], retry: RetryLike, compact: Optional[bool],
               shm: str, grad_datatype: Optional[str]) -> Any:
    """The settings the blocking and the asyncio client share, checked and set on client;
    returns the split URL for the transport's own fields."""
    if shm not in SHM_MODES:
        raise ValueError("shm must be 'auto', 'shm' or 'wire', not %r" % (shm,))
    u = urlsplit(url if "://" in url else "http://" + url)
    if u.scheme not in ("http", "https"):
        raise ValueError("url: scheme must be http or https, not %r" % u.scheme)
    if not u.hostname:
        raise ValueError("url: no host in %r" % url)
    if not timeout > 0:
        raise ValueError("timeout must be positive")
    client.url = url
    client.model = model
    client.version = None if version is None else str(version)
    client.token = token
    client.timeout = float(timeout)
    client.retry = as_retry(retry)
    client.retries = 0                  # requests sent again, over the client's life
    client.compact = compact
    client.shm = shm
    client.grad_datatype = grad_datatype
    return u


class YoloLossClient(_Settings):
    """A client of one yololossd model.

    url: "http://host:port" (an https:// URL and a path prefix work too).
    model: "yolov3" (3 layers, 9 anchors), "yolov3-tiny" (2 layers) or any model the
    server was started with. version: None or "1". token: the bearer token when the server
    runs with --token-file. timeout: the deadline of one call in seconds, its retries
    included (each method takes timeout= to override it). retry: a yololoss.Retry, True
    (the default policy) or False (no retries).
    compact: send compact tensors (only the box channels of every anchor and the rows of
    the anchors that may hold a truth; docs/protocol.md): None (default) when the server
    offers them, True, False. shm: "auto" (default: tensors through a shared-memory region
    when the server offers it and is on this host, falling back to the wire silently when
    registering fails), "shm" (always; failures raise), "wire" (never). The answers are
    the same bits whichever is used. grad_datatype: the default of compute's ("FP32" or
    "FP64").

    Thread-safe: each thread gets its own keep-alive connection. close() (or a `with`
    block) closes them. Picklable and deep-copyable: a copy has the same settings and no
    connections; it opens its own on first use.
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", model: str = "yolov3",
                 token: Optional[str] = None, timeout: float = 60.0,
                 version: Optional[Union[str, int]] = None, retry: RetryLike = True,
                 compact: Optional[bool] = None, shm: str = "auto",
                 grad_datatype: Optional[str] = None) -> None:
        u = _configure(self, url, model, token, timeout, version, retry, compact, shm,
                       grad_datatype)
        self._https = u.scheme == "https"
        self._host: str = u.hostname
        self._port = u.port or (443 if self._https else 80)
        self._prefix = u.path.rstrip("/")
        self._init_connections()

    def _init_connections(self) -> None:
        self._pid = os.getpid()
        self._local = _Conn()
        self._all: set = set()
        self._regions: set = set()
        self._lock = threading.Lock()
        self._extensions: Optional[frozenset] = None   # the server's, read once
        self._shm_failed = False                       # registration refused: use the wire
        # regions left registered when the client is dropped without close(), or at exit:
        # unregistered then. multiprocessing's Finalize rather than weakref.finalize: it
        # also runs when a multiprocessing child ends (by os._exit, which skips atexit),
        # and only in the process that made it (a fork's copy leaves the parent's alone)
        multiprocessing.util.Finalize(self, _release_regions,
                                      (self._regions, self._https, self._host, self._port,
                                       self._prefix, self.token), exitpriority=10)
        # and its keep-alive sockets closed, not left to the GC (ResourceWarning)
        multiprocessing.util.Finalize(self, _close_connections, (self._all,), exitpriority=9)

    def _check_fork(self) -> None:
        """In a forked child, forget the parent's connections and regions (they stay the
        parent's: closing or unregistering them here would break it)."""
        if self._pid != os.getpid():
            self._init_connections()

    # -- copies: settings travel, connections do not --

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        for k in ("_local", "_all", "_regions", "_lock", "_extensions", "_shm_failed"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_connections()

    def __repr__(self) -> str:
        return "YoloLossClient(%r, model=%r)" % (self.url, self.model)

    # -- connection management --

    def _connection(self) -> http.client.HTTPConnection:
        self._check_fork()
        c = self._local.conn
        if c is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            c = cls(self._host, self._port, timeout=self.timeout)
            self._local.conn = c
            with self._lock:
                self._all.add(c)
        return c

    def _drop(self) -> None:
        c = self._local.conn
        if c is not None:
            c.close()
            self._local.conn = None
            with self._lock:
                self._all.discard(c)

    def close(self) -> None:
        """Unregister this client's shared-memory regions and close every connection
        (all threads). The client stays usable: a later call reconnects."""
        with self._lock:                   # in place: the finalizer holds this set
            regions = list(self._regions)
            self._regions.clear()
        for r in regions:
            self._unregister(r)
        with self._lock:
            conns = list(self._all)          # in place too: the finalizer holds the set
            self._all.clear()
        for c in conns:
            c.close()
        self._local = _Conn()

    # -- shared memory --

    def server_extensions(self, timeout: Optional[float] = None) -> frozenset:
        """The extensions GET /v2 lists (read once per client)."""
        if self._extensions is None:
            try:
                meta = self.server_metadata(timeout)
            except YoloLossHTTPError:
                meta = {}
            self._extensions = frozenset(meta.get("extensions", []))
        return self._extensions

    def _use_shm(self, mode: str, timeout: Optional[float]) -> bool:
        if mode == "wire" or (mode == "auto" and (self._shm_failed or not is_loopback(self._host))):
            return False
        if mode == "auto":
            return "system_shared_memory" in self.server_extensions(timeout)
        return True

    def _region(self, size: int, mode: str, timeout: Optional[float]) -> Optional[Region]:
        """This thread's registered region of at least size bytes (None: use the wire)."""
        self._check_fork()
        r = self._local.region
        if r is not None and r.size >= size:
            return r
        if r is not None:
            self._local.region = None
            with self._lock:
                self._regions.discard(r)
            self._unregister(r)
        try:
            r = Region(max(size, 2 * (r.size if r is not None else 0), 1 << 20))
        except OSError as e:
            if mode == "shm":
                raise YoloLossConnectionError(None, "cannot create a shared-memory object: %s"
                                              % e) from e
            self._shm_failed = True
            return None
        try:
            body = json.dumps({"key": r.key, "offset": 0, "byte_size": r.size}).encode()
            parse_json(*self._request("POST", self._path("v2", "systemsharedmemory", "region",
                                                         r.name, "register"),
                                      [body], {"Content-Type": "application/json"}, timeout))
        except YoloLossHTTPError:
            r.close()
            if mode == "shm":
                raise
            self._shm_failed = True        # another host, another /dev/shm, another user
            return None
        finally:
            r.unlink()                     # registered (or not): the name is not needed
        self._local.region = r
        with self._lock:
            self._regions.add(r)
        return r

    def _unregister(self, r: Region) -> None:
        try:
            self._request("POST", self._path("v2", "systemsharedmemory", "region", r.name,
                                             "unregister"), timeout=5, retry=Retry.off())
        except YoloLossError:
            pass                           # the daemon is gone (not retried): so is the region
        r.close()

    def __enter__(self) -> "YoloLossClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _path(self, *parts: Any) -> str:
        return self._prefix + "/" + "/".join(quote(str(p), safe="") for p in parts)

    def _model_path(self, model: Optional[str], *rest: str) -> str:
        p = ["v2", "models", model or self.model]
        if self.version is not None:
            p += ["versions", self.version]
        return self._path(*p, *rest)

    def _request(self, method: str, path: str, body: Sequence[Any] = (),
                 headers: Optional[Mapping[str, str]] = None,
                 timeout: Optional[float] = None,
                 retry: Optional[Retry] = None) -> Tuple[int, Dict[str, str], Any]:
        """One HTTP exchange with retries: (status, headers dict, body bytes).
        body: a list of bytes-like chunks (sent without copying them together)."""
        hdrs = {"Accept-Encoding": "identity"}
        if self.token:
            hdrs["Authorization"] = "Bearer " + self.token
        hdrs.update(headers or {})
        chunks = [memoryview(c).cast("B") for c in body]
        length = sum(c.nbytes for c in chunks)
        if method in ("POST", "PUT") or length:
            hdrs["Content-Length"] = str(length)
        limit = self.timeout if timeout is None else float(timeout)
        att = Attempts(self.retry if retry is None else retry, limit)
        what = "%s %s" % (method, path)
        while True:
            remaining = att.remaining()
            if remaining <= 0:
                raise YoloLossTimeoutError(None, "%s: no answer within the timeout (%gs)"
                                           % (what, limit))
            conn = self._connection()
            reused = conn.sock is not None
            conn.timeout = remaining
            if conn.sock is not None:
                conn.sock.settimeout(remaining)
            try:
                try:
                    conn.request(method, path, body=chunks if chunks else None, headers=hdrs)
                except (BrokenPipeError, ConnectionResetError):
                    # the server may have answered early (a 413 decided from the headers)
                    # and closed; its answer can still be waiting in the socket
                    if conn.sock is None or reused:
                        raise
                resp = conn.getresponse()
                status = resp.status
                rh = {k.lower(): v for k, v in resp.getheaders()}
                data = _read_body(resp, rh)
                if resp.will_close:
                    self._drop()
            except _CONNECTION_LOST as e:
                self._drop()
                if reused and not att.stale_reopened:
                    # the server closed an idle keep-alive socket: reopen once, at once
                    att.stale_reopened = True
                    continue
                wait = att.wait_after_connection_error()
                if wait is None:
                    raise YoloLossConnectionError(
                        None, "%s: cannot reach %s:%d: %s (%d attempt%s)"
                        % (what, self._host, self._port, _reason(e), att.made,
                           "" if att.made == 1 else "s")) from e
                self.retries += 1
                _sleep(wait)
                continue
            except socket.timeout as e:
                self._drop()
                raise YoloLossTimeoutError(None, "%s: no answer within the timeout (%gs)"
                                           % (what, limit)) from e
            except (OSError, http.client.HTTPException) as e:
                self._drop()
                raise YoloLossConnectionError(None, "%s: cannot reach %s:%d: %s"
                                              % (what, self._host, self._port, _reason(e))) from e
            wait = att.wait_after_status(status, rh.get("retry-after"))
            if wait is not None:
                self.retries += 1
                _sleep(wait)
                continue
            return status, rh, data

    def _get_json(self, path: str, timeout: Optional[float] = None) -> Any:
        return parse_json(*self._request("GET", path, timeout=timeout))

    # -- metadata --

    def live(self, timeout: Optional[float] = None) -> bool:
        """True when the server answers /v2/health/live with 200."""
        return self._request("GET", self._path("v2", "health", "live"), timeout=timeout)[0] == 200

    def ready(self, timeout: Optional[float] = None) -> bool:
        """True when the server is ready (False while starting or draining)."""
        return self._request("GET", self._path("v2", "health", "ready"), timeout=timeout)[0] == 200

    def model_ready(self, model: Optional[str] = None, timeout: Optional[float] = None) -> bool:
        return self._request("GET", self._model_path(model, "ready"), timeout=timeout)[0] == 200

    def server_metadata(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """{"name", "version", "extensions"}."""
        return self._get_json(self._path("v2"), timeout)

    def model_metadata(self, model: Optional[str] = None,
                       timeout: Optional[float] = None) -> Dict[str, Any]:
        """{"name", "versions", "platform", "inputs", "outputs"} of the model."""
        return self._get_json(self._model_path(model), timeout)

    def model_config(self, model: Optional[str] = None,
                     timeout: Optional[float] = None) -> Dict[str, Any]:
        """The model configuration, with its default anchors and ignore_thresh."""
        return self._get_json(self._path("v2", "models", model or self.model, "config"), timeout)

    def statistics(self, model: Optional[str] = None,
                   timeout: Optional[float] = None) -> Dict[str, Any]:
        """Triton's statistics extension for the model ("" or "*": every model)."""
        if model in ("", "*"):
            return self._get_json(self._path("v2", "models", "stats"), timeout)
        return self._get_json(self._path("v2", "models", model or self.model, "stats"), timeout)

    # -- the run history (docs/monitoring.md) --

    def runs(self, timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        """The recorded runs, most recently updated first: dicts with run, first_step,
        last_step, last_loss, points, updated."""
        return list(self._get_json(self._path("v1", "runs"), timeout).get("runs", []))

    def steps(self, run: str, after: int = -1, limit: Optional[int] = None,
              timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        """The points of a run with step > after, in step order: every one (fetched page
        by page), or at most limit. A point: run, step, wall, batch, total, xy, wh,
        confidence, class, layers (per layer terms and statistics), latency."""
        out: List[Dict[str, Any]] = []
        while limit is None or len(out) < limit:
            page = RUN_PAGE if limit is None else min(RUN_PAGE, limit - len(out))
            path = self._path("v1", "runs", run, "steps") + "?after=%d&limit=%d" % (after, page)
            pts = self._get_json(path, timeout).get("points", [])
            out += pts
            if len(pts) < page:
                break
            after = int(pts[-1]["step"])
        return out

    def delete_run(self, run: str, timeout: Optional[float] = None) -> int:
        """Delete a run's points, image rows, configuration and scalars (needs the token
        when the server has one); how many points."""
        status, rh, data = self._request("DELETE", self._path("v1", "runs", run),
                                         timeout=timeout)
        return int(parse_json(status, rh, data).get("deleted", 0))

    def set_config(self, run: str, config: Mapping[str, Any],
                   timeout: Optional[float] = None) -> Dict[str, Any]:
        """Store the run's configuration (a JSON object: hyper-parameters), replacing the
        previous one (the token when the server has one)."""
        body, hdrs = json_body(config, "config")
        return parse_json(*self._request("PUT", self._path("v1", "runs", run, "config"),
                                         body, hdrs, timeout))

    def config(self, run: str, timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """The run's configuration, or None when it has none."""
        status, rh, data = self._request("GET", self._path("v1", "runs", run, "config"),
                                         timeout=timeout)
        return None if status == 404 else parse_json(status, rh, data).get("config")

    def log_scalars(self, run: str, step: int, scalars: Mapping[str, float],
                    timeout: Optional[float] = None) -> Dict[str, Any]:
        """Log scalars of your own (learning rate, validation mAP) at a step of the run,
        next to its loss; the same name and step again replaces the value."""
        body, hdrs = json_body(scalars_body(step, scalars), "scalars")
        return parse_json(*self._request("POST", self._path("v1", "runs", run, "scalars"),
                                         body, hdrs, timeout))

    def scalars(self, run: str, timeout: Optional[float] = None) -> Dict[str, Dict[str, list]]:
        """{name: {"steps", "walls", "values"}} of the run's scalars."""
        return self._get_json(self._path("v1", "runs", run, "scalars"), timeout).get("scalars", {})

    def images(self, run: str, order: str = "loss", limit: Optional[int] = None,
               window: Optional[int] = None, timeout: Optional[float] = None,
               per: Optional[str] = None) -> Dict[str, Any]:
        """The run's images ranked by how far above their batches' mean loss they stay
        (compute(image_ids=...) records them): {"images": [{"rank", "image", "score", ...}],
        ...}. order: "loss", "xy", "wh", "confidence" or "class"; per: "box" (the value
        per truth, the daemon's default) or "image"."""
        return self._get_json(self._path("v1", "runs", run, "images")
                              + images_query(order, limit, window, per), timeout)

    def image_history(self, run: str, image: int,
                      timeout: Optional[float] = None) -> Dict[str, Any]:
        """One image's terms at every step it was seen: {"run", "image", "url", "history"}."""
        return self._get_json(self._path("v1", "runs", run, "images", int(image)), timeout)

    # -- the loss --

    def compute(self, outputs: Sequence[ArrayLike], boxes: Optional[ArrayLike] = None,
                y_true: Optional[Sequence[ArrayLike]] = None, grads: bool = False,
                ignore_thresh: Optional[float] = None,
                anchors: Union[str, Sequence[float], np.ndarray, None] = None,
                run: Optional[str] = None, step: Optional[int] = None, binary: bool = True,
                compress: Optional[str] = None, request_id: Optional[str] = None,
                timeout: Optional[float] = None,
                grad_datatype: Optional[str] = None,
                image_ids: Optional[ArrayLike] = None, compact: Optional[bool] = None,
                shm: Optional[str] = None) -> Result:
        """The loss of one batch. Returns a Result.

        outputs: list of L raw head outputs, [B, H_l, W_l, 3*(5+C)] or [B, H_l, W_l, 3, 5+C]
          (NHWC, as keras's heads; layer 0 is the coarsest grid), float16, float32, float64
          or BF16 (other real dtypes are sent as float64).
        Ground truth, exactly one of boxes [B, T, 5] (pixels: x_min, y_min, x_max, y_max,
          class; rows of width <= 0 are padding) or y_true (list of L dense tensors).
        grads: also return d loss / d outputs (Result.grads).
        ignore_thresh (number), anchors ("w,h,..." or 12/18 numbers): override the model's.
        run (str), step (int): labels for the server's monitoring.
        binary: binary tensors (default) or JSON numbers; BF16 tensors are always binary.
        compress: None, "gzip" or "deflate", for the request and the answer.
        request_id: echoed by the server in Result.id.
        timeout: this call's deadline (seconds, retries included) instead of the client's.
        grad_datatype: "FP32" (default) or "FP64" (gradients computed and sent in double).
        image_ids: [B] integers, the batch's images' ids in your dataset (with run): the
          server keeps each image's loss per step and ranks the images (images()).
        compact, shm: this call's choice instead of the client's (see the class).
        Raises YoloLossHTTPError (status and the server's message), YoloLossConnectionError,
        YoloLossTimeoutError (all YoloLossError), or TypeError/ValueError for arguments
        that cannot be sent at all.
        """
        if grad_datatype is None:
            grad_datatype = self.grad_datatype
        args = (outputs, boxes, y_true, grads, ignore_thresh, anchors, run, step, binary,
                compress, request_id, grad_datatype, image_ids)
        use = self.compact if compact is None else compact
        if use is None:
            use = "yololoss_compact" in self.server_extensions(timeout)
        call = InferCall(*args, compact=use)
        try:
            return self.send(call, timeout, shm)
        except YoloLossHTTPError as e:
            if call.compact is None or not missing_row(e) or not _dense_available(outputs):
                raise
        return self.send(InferCall(*args, compact=False), timeout, shm)

    def send(self, call: InferCall, timeout: Optional[float] = None,
             shm: Optional[str] = None) -> Result:
        """Send a prepared InferCall (yololoss.torch builds its own) and read its Result."""
        mode = self.shm if shm is None else shm
        if mode not in SHM_MODES:
            raise ValueError("shm must be 'auto', 'shm' or 'wire', not %r" % (mode,))
        for again in (False, True):
            region = None
            if call.binary and self._use_shm(mode, timeout):      # JSON numbers: the wire
                region = self._region(call.shm_bytes(), mode, timeout)
            where = None if region is None else (region.name, region.buf)
            body, hdrs = call.encode(where)
            status, rh, data = self._request("POST", self._model_path(None, "infer"), body,
                                             hdrs, timeout)
            try:
                return call.result(status, rh, data, where)
            except YoloLossHTTPError as e:
                if again or region is None or not _region_lost(e, region):
                    raise
                # the daemon lost our region (it restarted, or someone unregistered it):
                # forget it, register a new one, send again
                self._forget_region(region)
        raise AssertionError("unreachable")

    def _forget_region(self, r: Region) -> None:
        if self._local.region is r:
            self._local.region = None
        with self._lock:
            self._regions.discard(r)
        r.close()


# ---- helpers --------------------------------------------------------------------------

def _region_lost(e: YoloLossHTTPError, r: Region) -> bool:
    return e.status == 400 and ("no shared-memory region '%s'" % r.name) in e.message


def _close_connections(conns: set) -> None:
    for c in list(conns):
        c.close()
    conns.clear()


def _release_regions(regions: set, https: bool, host: str, port: int, prefix: str,
                     token: Optional[str]) -> None:
    """Unregister and unmap the regions a client left (its Finalize: garbage collection,
    interpreter exit, the end of a multiprocessing child), on a connection of its own, a short timeout, errors
    ignored (a daemon that is gone has dropped them anyway)."""
    if not regions:
        return
    cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
    conn = cls(host, port, timeout=2)
    hdrs = {"Content-Length": "0"}
    if token:
        hdrs["Authorization"] = "Bearer " + token
    for r in list(regions):
        try:
            conn.request("POST", "%s/v2/systemsharedmemory/region/%s/unregister"
                         % (prefix, quote(r.name, safe="")), headers=hdrs)
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            conn.close()
        r.close()
    regions.clear()
    conn.close()


def _dense_available(outputs: Sequence[Any]) -> bool:
    return not any(isinstance(o, CompactHead) for o in outputs)


def _reason(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _read_body(resp: http.client.HTTPResponse, rh: Mapping[str, str]) -> Any:
    """The whole body, decoded from gzip/deflate. Uncompressed bodies are read into a
    buffer whose binary part starts 16-byte aligned, so the arrays made on it are aligned
    and writable."""
    enc = rh.get("content-encoding", "identity").strip().lower()
    length = rh.get("content-length")
    if enc in ("", "identity") and length is not None and length.isdigit():
        n = int(length)
        try:
            hlen = int(rh.get("inference-header-content-length", "0"))
        except ValueError:
            hlen = 0
        pad = (-hlen) % 16
        buf = np.empty(pad + n, dtype=np.uint8)
        view = buf.data[pad:]
        got = 0
        while got < n:
            k = resp.readinto(view[got:])
            if not k:
                raise http.client.IncompleteRead(bytes(view[:got]), n - got)
            got += k
        # marks the response finished (also when the body is empty), so that http.client
        # lets the kept-alive connection carry the next request
        resp.read()
        return view
    return decode_body(enc, resp.read())
