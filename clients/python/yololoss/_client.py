"""The HTTP client: Open Inference Protocol v2 requests with Triton's binary tensor extension.

One request per compute(): the raw head outputs and the ground truth go out as binary
tensors (or JSON numbers with binary=False), the outputs come back the same way. Each
thread keeps one persistent connection (HTTP/1.1 keep-alive); a connection the server
closed while idle is reopened once, transparently. A 503 (overloaded or draining) is
retried after the server's Retry-After for as long as the client's timeout allows.
"""

import email.utils
import http.client
import json
import random
import socket
import threading
import time
import zlib
from urllib.parse import quote, urlsplit

import numpy as np

TERM_NAMES = ("xy", "wh", "confidence", "class")
STAT_NAMES = ("count", "avg_iou", "avg_class", "avg_obj", "avg_noobj", "recall50",
              "recall75", "ignored")
_COUNT_STATS = ("count", "ignored")
_SMALL_OUTPUTS = ("loss", "loss_terms", "layer_terms", "image_terms", "stats")

# Wire datatype <-> little-endian numpy dtype (BF16 travels as its uint16 bit patterns).
_WIRE_DTYPES = {"FP32": np.dtype("<f4"), "FP16": np.dtype("<f2"),
                "FP64": np.dtype("<f8"), "BF16": np.dtype("<u2")}
_NUMPY_TO_WIRE = {"f4": "FP32", "f2": "FP16", "f8": "FP64"}


class YoloLossError(Exception):
    """A request that failed. status: the HTTP status (400, 401, 404, 413, 503, ...), or
    None when no answer came back (connection refused or reset, timeout). message: the
    server's {"error": ...} text, or what went wrong on the client's side."""

    def __init__(self, status, message, headers=None):
        super().__init__("HTTP %d: %s" % (status, message) if status else message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class BF16:
    """A bfloat16 tensor, held as its raw bit patterns (numpy has no bfloat16 dtype).

    BF16(bits): bits is a uint16 array of bfloat16 bit patterns (for example
    torch_tensor.view(torch.int16).numpy().view(np.uint16)).
    BF16.from_float(x) / bf16(x): round float values to bfloat16 (nearest even).
    Arrays whose dtype is named "bfloat16" (ml_dtypes, jax) are accepted as they are.
    """

    __slots__ = ("bits",)

    def __init__(self, bits):
        bits = np.asarray(bits)
        if bits.dtype != np.uint16:
            raise TypeError("BF16 wants uint16 bit patterns, not %s (use BF16.from_float "
                            "to round float values)" % bits.dtype)
        self.bits = bits

    @classmethod
    def from_float(cls, x):
        f = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        u = f.view(np.uint32).astype(np.uint64)
        r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        nan = np.isnan(f)
        r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
        return cls(r)

    def to_float32(self):
        b = np.ascontiguousarray(self.bits)
        return (b.astype(np.uint32) << 16).view(np.float32)

    @property
    def shape(self):
        return self.bits.shape

    def __repr__(self):
        return "BF16(shape=%s)" % (self.bits.shape,)


def bf16(x):
    """float values -> BF16 (round to nearest even)."""
    return BF16.from_float(x)


class Result:
    """What one compute() returned.

    loss: float. terms: {"xy", "wh", "confidence", "class"} -> float (they sum to loss).
    layer_terms: float32 [L, 4]; image_terms: float32 [B, 4] (per image, not divided by B).
    stats: {"count", "avg_iou", "avg_class", "avg_obj", "avg_noobj", "recall50",
    "recall75", "ignored"} -> array [L] (darknet's statistics per layer; count and ignored
    as int64). grads: list of L float32 arrays shaped like the outputs sent, or None when
    not asked for. outputs: every output as the server sent it (name -> array).
    """

    def __init__(self, outputs, model_name=None, request_id=None):
        self.outputs = outputs
        self.model_name = model_name
        self.id = request_id
        self.loss = float(outputs["loss"].reshape(-1)[0])
        self.terms = {n: float(v) for n, v in zip(TERM_NAMES, outputs["loss_terms"].reshape(-1))}
        self.layer_terms = outputs["layer_terms"]
        self.image_terms = outputs.get("image_terms")
        st = outputs["stats"]
        self.stats = {}
        for k, name in enumerate(STAT_NAMES):
            col = st[:, k]
            self.stats[name] = col.astype(np.int64) if name in _COUNT_STATS else col
        grads = []
        while "grad_%d" % len(grads) in outputs:
            grads.append(outputs["grad_%d" % len(grads)])
        self.grads = grads or None

    def to_dict(self):
        """Plain Python values (for JSON logs); gradients left out."""
        return {"loss": self.loss, "terms": dict(self.terms),
                "layer_terms": self.layer_terms.tolist(),
                "image_terms": None if self.image_terms is None else self.image_terms.tolist(),
                "stats": {k: v.tolist() for k, v in self.stats.items()}}

    def __repr__(self):
        return "Result(loss=%.6g, terms=%s)" % (
            self.loss, ", ".join("%s=%.6g" % kv for kv in self.terms.items()))


# ---- tensors to the wire --------------------------------------------------------------

def _wire_tensor(name, x, role):
    """(datatype, shape, little-endian C-contiguous array) for one input.
    role: "output" (FP16/FP32/FP64/BF16 pass through, other real numbers as FP64),
    "boxes" (FP32/FP64; others as FP64), "y_true" (like outputs)."""
    if isinstance(x, BF16):
        if role == "boxes":
            raise TypeError("boxes: BF16 is not accepted for boxes (FP32 or FP64)")
        a = np.ascontiguousarray(x.bits, dtype="<u2")
        return "BF16", a.shape, a
    if hasattr(x, "detach") and hasattr(x, "cpu"):      # a torch tensor given directly
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            return _wire_tensor(name, BF16(x.view(_torch_int16(x)).numpy().view(np.uint16)),
                                role)
        x = x.numpy()
    a = np.asarray(x)
    if a.dtype.name == "bfloat16" and a.dtype.itemsize == 2:   # ml_dtypes / jax
        return _wire_tensor(name, BF16(np.ascontiguousarray(a).view(np.uint16)), role)
    if a.dtype.kind == "f" and a.dtype.itemsize in (2, 4, 8):
        if role == "boxes" and a.dtype.itemsize == 2:
            a = a.astype("<f4")
    elif a.dtype.kind in "biuf":
        a = a.astype("<f8")
    else:
        raise TypeError("%s: dtype %s is not a real number type" % (name, a.dtype))
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return _NUMPY_TO_WIRE[a.dtype.str[1:]], a.shape, a


def _torch_int16(t):
    import torch  # only reached with a torch tensor in hand
    return torch.int16


def _format_anchors(anchors):
    if isinstance(anchors, str):
        return anchors
    flat = np.asarray(anchors, dtype=np.float64).reshape(-1)
    return ",".join(repr(float(v)) for v in flat)


def _json_numbers(name, a):
    flat = a.reshape(-1)
    if a.dtype == np.uint16:
        raise TypeError("%s: BF16 cannot be sent as JSON" % name)
    if not np.all(np.isfinite(flat)):
        raise ValueError("%s holds NaN or infinite values, which JSON cannot carry (and the "
                         "server refuses them in any form)" % name)
    return flat.astype(np.float64).tolist()


# ---- the client -----------------------------------------------------------------------

class _Conn(threading.local):
    conn = None


class YoloLossClient:
    """A client of one yololossd model.

    url: "http://host:port" (an https:// URL and a path prefix work too).
    model: "yolov3" (3 layers, 9 anchors), "yolov3-tiny" (2 layers) or any model the
    server was started with. version: None or "1". token: the bearer token when the server
    runs with --token-file. timeout: seconds for a whole call, including 503 retries.

    Thread-safe: each thread gets its own keep-alive connection. close() (or a `with`
    block) closes them.
    """

    def __init__(self, url="http://127.0.0.1:8000", model="yolov3", token=None, timeout=60.0,
                 version=None):
        u = urlsplit(url if "://" in url else "http://" + url)
        if u.scheme not in ("http", "https"):
            raise ValueError("url: scheme must be http or https, not %r" % u.scheme)
        if not u.hostname:
            raise ValueError("url: no host in %r" % url)
        self.url = url
        self.model = model
        self.version = None if version is None else str(version)
        self.token = token
        self.timeout = float(timeout)
        self.retries = 0                  # 503 answers retried, over the client's life
        self._https = u.scheme == "https"
        self._host = u.hostname
        self._port = u.port or (443 if self._https else 80)
        self._prefix = u.path.rstrip("/")
        self._local = _Conn()
        self._all = set()
        self._lock = threading.Lock()

    # -- connection management --

    def _connection(self):
        c = self._local.conn
        if c is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            c = cls(self._host, self._port, timeout=self.timeout)
            self._local.conn = c
            with self._lock:
                self._all.add(c)
        return c

    def _drop(self):
        c = self._local.conn
        if c is not None:
            c.close()
            self._local.conn = None
            with self._lock:
                self._all.discard(c)

    def close(self):
        """Close every connection of this client (all threads)."""
        with self._lock:
            conns, self._all = list(self._all), set()
        for c in conns:
            c.close()
        self._local = _Conn()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _path(self, *parts):
        return self._prefix + "/" + "/".join(quote(str(p), safe="") for p in parts)

    def _model_path(self, model, *rest):
        p = ["v2", "models", model or self.model]
        if self.version is not None:
            p += ["versions", self.version]
        return self._path(*p, *rest)

    def _request(self, method, path, body=(), headers=None):
        """One HTTP exchange with retries: (status, headers dict, body bytes).
        body: a list of bytes-like chunks (sent without copying them together)."""
        hdrs = {"Accept-Encoding": "identity"}
        if self.token:
            hdrs["Authorization"] = "Bearer " + self.token
        hdrs.update(headers or {})
        chunks = [memoryview(c).cast("B") for c in body]
        length = sum(c.nbytes for c in chunks)
        if method == "POST" or length:
            hdrs["Content-Length"] = str(length)
        deadline = time.monotonic() + self.timeout
        stale_retry = True
        while True:
            conn = self._connection()
            reused = conn.sock is not None
            conn.timeout = max(deadline - time.monotonic(), 0.001)
            if conn.sock is not None:
                conn.sock.settimeout(conn.timeout)
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
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    ConnectionAbortedError, http.client.BadStatusLine) as e:
                self._drop()
                if reused and stale_retry:     # the server closed an idle keep-alive socket
                    stale_retry = False
                    continue
                raise YoloLossError(None, "%s %s: connection lost: %s" % (method, path, e))
            except socket.timeout:
                self._drop()
                raise YoloLossError(None, "%s %s: no answer within the timeout (%gs)"
                                    % (method, path, self.timeout))
            except (OSError, http.client.HTTPException) as e:
                self._drop()
                raise YoloLossError(None, "%s %s: cannot reach %s:%d: %s"
                                    % (method, path, self._host, self._port, e))
            if status == 503:
                # up to 10% more than asked, so that clients refused together do not all
                # come back in the same instant
                wait = _retry_after(rh.get("retry-after")) * random.uniform(1.0, 1.1)
                if time.monotonic() + wait < deadline:
                    self.retries += 1
                    time.sleep(wait)
                    continue
            return status, rh, data

    def _get_json(self, path):
        status, rh, data = self._request("GET", path)
        if status != 200:
            raise _error(status, rh, data)
        return json.loads(bytes(data).decode("utf-8")) if len(data) else {}

    # -- metadata --

    def live(self):
        """True when the server answers /v2/health/live with 200."""
        return self._request("GET", self._path("v2", "health", "live"))[0] == 200

    def ready(self):
        """True when the server is ready (False while starting or draining)."""
        return self._request("GET", self._path("v2", "health", "ready"))[0] == 200

    def model_ready(self, model=None):
        return self._request("GET", self._model_path(model, "ready"))[0] == 200

    def server_metadata(self):
        """{"name", "version", "extensions"}."""
        return self._get_json(self._path("v2"))

    def model_metadata(self, model=None):
        """{"name", "versions", "platform", "inputs", "outputs"} of the model."""
        return self._get_json(self._model_path(model))

    def model_config(self, model=None):
        """The model configuration, with its default anchors and ignore_thresh."""
        return self._get_json(self._path("v2", "models", model or self.model, "config"))

    def statistics(self, model=None):
        """Triton's statistics extension for the model ("" or "*": every model)."""
        if model in ("", "*"):
            return self._get_json(self._path("v2", "models", "stats"))
        return self._get_json(self._path("v2", "models", model or self.model, "stats"))

    # -- the loss --

    def compute(self, outputs, boxes=None, y_true=None, grads=False, ignore_thresh=None,
                anchors=None, run=None, step=None, binary=True, compress=None,
                request_id=None):
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
        Raises YoloLossError (status and the server's message) or TypeError/ValueError for
        arguments that cannot be sent at all.
        """
        if isinstance(outputs, (np.ndarray, BF16)) or not hasattr(outputs, "__len__"):
            raise TypeError("outputs must be a list of the L raw head outputs")
        if (boxes is None) == (y_true is None):
            raise ValueError("give exactly one of boxes and y_true")
        if y_true is not None and (isinstance(y_true, (np.ndarray, BF16))
                                   or not hasattr(y_true, "__len__")):
            raise TypeError("y_true must be a list of L dense tensors")
        if compress not in (None, "gzip", "deflate"):
            raise ValueError("compress must be None, 'gzip' or 'deflate'")
        tensors = [_wire_tensor("output_%d" % l, o, "output") + ("output_%d" % l,)
                   for l, o in enumerate(outputs)]
        if boxes is not None:
            tensors.append(_wire_tensor("boxes", boxes, "boxes") + ("boxes",))
        else:
            tensors += [_wire_tensor("y_true_%d" % l, y, "y_true") + ("y_true_%d" % l,)
                        for l, y in enumerate(y_true)]

        params = {}
        if ignore_thresh is not None:
            params["ignore_thresh"] = float(ignore_thresh)
        if anchors is not None:
            params["anchors"] = _format_anchors(anchors)
        if run is not None:
            params["run"] = str(run)
        if step is not None:
            params["step"] = int(step)

        blobs, inputs = [], []
        for dt, shape, a, name in tensors:
            desc = {"name": name, "shape": [int(s) for s in shape], "datatype": dt}
            if binary or dt == "BF16":
                desc["parameters"] = {"binary_data_size": a.nbytes}
                if a.nbytes:
                    blobs.append(a)
            else:
                desc["data"] = _json_numbers(name, a)
            inputs.append(desc)
        names = list(_SMALL_OUTPUTS)
        if grads:
            names += ["grad_%d" % l for l in range(len(outputs))]
        req = {"inputs": inputs,
               "outputs": [{"name": n, "parameters": {"binary_data": bool(binary)}}
                           for n in names]}
        if request_id is not None:
            req["id"] = str(request_id)
        if params:
            req["parameters"] = params
        header = json.dumps(req, separators=(",", ":"), allow_nan=False).encode()

        hdrs = {}
        if blobs:
            hdrs["Inference-Header-Content-Length"] = str(len(header))
            hdrs["Content-Type"] = "application/octet-stream"
        else:
            hdrs["Content-Type"] = "application/json"
        body = [header] + blobs
        if compress:
            body = [_compress(compress, body)]
            hdrs["Content-Encoding"] = compress
            hdrs["Accept-Encoding"] = compress
        status, rh, data = self._request("POST", self._model_path(None, "infer"), body, hdrs)
        if status != 200:
            raise _error(status, rh, data)
        js, arrays = _parse_infer_response(rh, data)
        return Result(arrays, js.get("model_name"), js.get("id"))


# ---- helpers --------------------------------------------------------------------------

def _read_body(resp, rh):
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
        view = memoryview(buf)[pad:]
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
    data = resp.read()
    if enc in ("", "identity"):
        return memoryview(data)
    if enc == "gzip":
        return memoryview(zlib.decompress(data, 16 + zlib.MAX_WBITS))
    if enc == "deflate":
        try:
            return memoryview(zlib.decompress(data))
        except zlib.error:
            return memoryview(zlib.decompress(data, -zlib.MAX_WBITS))
    raise http.client.HTTPException("unsupported Content-Encoding %r in the answer" % enc)


def _compress(enc, chunks):
    z = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS if enc == "gzip" else zlib.MAX_WBITS)
    parts = [z.compress(memoryview(c).cast("B")) for c in chunks]
    parts.append(z.flush())
    return b"".join(parts)


def _retry_after(value):
    """Seconds to wait from a Retry-After value (seconds or an HTTP date); 1 when absent."""
    if value is None:
        return 1.0
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return 1.0


def _error(status, rh, data):
    text = bytes(data).decode("utf-8", "replace")
    msg = text.strip() or http.client.responses.get(status, "error")
    try:
        js = json.loads(text)
        if isinstance(js, dict) and isinstance(js.get("error"), str):
            msg = js["error"]
    except ValueError:
        pass
    return YoloLossError(status, msg, rh)


def _parse_infer_response(rh, data):
    """(header JSON, {name: array}) of an infer response, binary outputs as views."""
    hlen = rh.get("inference-header-content-length")
    n = len(data)
    try:
        if hlen is not None:
            hlen = int(hlen)
            if not 0 <= hlen <= n:
                raise ValueError("Inference-Header-Content-Length %d, body %d bytes" % (hlen, n))
            js = json.loads(bytes(data[:hlen]).decode("utf-8"))
            off = hlen
        else:
            js = json.loads(bytes(data).decode("utf-8"))
            off = n
        arrays = {}
        for o in js.get("outputs", []):
            dt = _WIRE_DTYPES.get(o.get("datatype"))
            if dt is None:
                raise ValueError("output %r: datatype %r" % (o.get("name"), o.get("datatype")))
            shape = tuple(int(s) for s in o["shape"])
            size = (o.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                count = int(np.prod(shape, dtype=np.int64))
                if size != count * dt.itemsize or off + size > n:
                    raise ValueError("output %r: %d bytes for shape %s" % (o["name"], size, shape))
                a = np.frombuffer(data, dtype=dt, count=count, offset=off).reshape(shape)
                off += size
            else:
                a = np.asarray(o["data"], dtype=dt).reshape(shape)
            arrays[o["name"]] = a
    except (ValueError, KeyError, TypeError) as e:
        raise YoloLossError(200, "malformed answer from the server: %s" % e, rh) from None
    return js, arrays
