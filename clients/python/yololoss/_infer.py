"""One infer call without its transport: the request body and headers built from the
arguments, and the answer (status, headers, body bytes) turned into a Result or an error.
The blocking client (_client.py) and the asyncio client (aio.py) both send these."""

from __future__ import annotations

import http.client
import json
import zlib
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ._errors import YoloLossHTTPError, YoloLossProtocolError
from ._result import Result
from ._tensors import (BF16, WIRE_DTYPES, ArrayLike, format_anchors, json_numbers,
                       wire_tensor)

__all__ = ["InferCall", "http_error", "parse_json", "decode_body"]

SMALL_OUTPUTS = ("loss", "loss_terms", "layer_terms", "image_terms", "stats")
GRAD_DATATYPES = ("FP32", "FP64")


class InferCall:
    """The request of one compute(): .body (list of bytes-like chunks), .headers;
    .result(status, headers, body) -> Result (or raises)."""

    body: List[Any]
    headers: Dict[str, str]

    def __init__(self, outputs: Sequence[ArrayLike], boxes: Optional[ArrayLike] = None,
                 y_true: Optional[Sequence[ArrayLike]] = None, grads: bool = False,
                 ignore_thresh: Optional[float] = None,
                 anchors: Union[str, Sequence[float], np.ndarray, None] = None,
                 run: Optional[str] = None, step: Optional[int] = None, binary: bool = True,
                 compress: Optional[str] = None, request_id: Optional[str] = None,
                 grad_datatype: Optional[str] = None,
                 image_ids: Optional[ArrayLike] = None) -> None:
        if isinstance(outputs, (np.ndarray, BF16)) or not hasattr(outputs, "__len__"):
            raise TypeError("outputs must be a list of the L raw head outputs")
        if (boxes is None) == (y_true is None):
            raise ValueError("give exactly one of boxes and y_true")
        if y_true is not None and (isinstance(y_true, (np.ndarray, BF16))
                                   or not hasattr(y_true, "__len__")):
            raise TypeError("y_true must be a list of L dense tensors")
        if compress not in (None, "gzip", "deflate"):
            raise ValueError("compress must be None, 'gzip' or 'deflate'")
        if grad_datatype is not None and grad_datatype not in GRAD_DATATYPES:
            raise ValueError("grad_datatype must be 'FP32' or 'FP64', not %r" % (grad_datatype,))
        self.n_layers = len(outputs)
        tensors = [wire_tensor("output_%d" % l, o, "output") + ("output_%d" % l,)
                   for l, o in enumerate(outputs)]
        if boxes is not None:
            tensors.append(wire_tensor("boxes", boxes, "boxes") + ("boxes",))
        else:
            assert y_true is not None
            tensors += [wire_tensor("y_true_%d" % l, y, "y_true") + ("y_true_%d" % l,)
                        for l, y in enumerate(y_true)]
        if image_ids is not None:
            tensors.append(wire_tensor("image_ids", image_ids, "index") + ("image_ids",))

        params: Dict[str, Any] = {}
        if ignore_thresh is not None:
            params["ignore_thresh"] = float(ignore_thresh)
        if anchors is not None:
            params["anchors"] = format_anchors(anchors)
        if run is not None:
            params["run"] = str(run)
        if step is not None:
            params["step"] = int(step)
        if grad_datatype is not None and grad_datatype != "FP32":
            params["grad_datatype"] = grad_datatype

        blobs: List[np.ndarray] = []
        inputs = []
        for dt, shape, a, name in tensors:
            desc: Dict[str, Any] = {"name": name, "shape": [int(s) for s in shape],
                                    "datatype": dt}
            if binary or dt == "BF16":
                desc["parameters"] = {"binary_data_size": a.nbytes}
                if a.nbytes:
                    blobs.append(a)
            else:
                desc["data"] = json_numbers(name, a)
            inputs.append(desc)
        names = list(SMALL_OUTPUTS)
        if grads:
            names += ["grad_%d" % l for l in range(len(outputs))]
        req: Dict[str, Any] = {
            "inputs": inputs,
            "outputs": [{"name": n, "parameters": {"binary_data": bool(binary)}}
                        for n in names]}
        if request_id is not None:
            req["id"] = str(request_id)
        if params:
            req["parameters"] = params
        header = json.dumps(req, separators=(",", ":"), allow_nan=False).encode()

        hdrs: Dict[str, str] = {}
        if blobs:
            hdrs["Inference-Header-Content-Length"] = str(len(header))
            hdrs["Content-Type"] = "application/octet-stream"
        else:
            hdrs["Content-Type"] = "application/json"
        body: List[Any] = [header] + blobs
        if compress:
            body = [_compress(compress, body)]
            hdrs["Content-Encoding"] = compress
            hdrs["Accept-Encoding"] = compress
        self.body = body
        self.headers = hdrs

    def result(self, status: int, rh: Mapping[str, str], data: Any) -> Result:
        if status != 200:
            raise http_error(status, rh, data)
        js, arrays = parse_infer_response(rh, data)
        return Result(arrays, js.get("model_name"), js.get("id"))


def _compress(enc: str, chunks: Sequence[Any]) -> bytes:
    z = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS if enc == "gzip" else zlib.MAX_WBITS)
    parts = [z.compress(memoryview(c).cast("B")) for c in chunks]
    parts.append(z.flush())
    return b"".join(parts)


def decode_body(enc: str, data: bytes) -> memoryview:
    """A compressed body decoded (gzip, deflate with or without its zlib header)."""
    enc = enc.strip().lower()
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


def http_error(status: int, rh: Mapping[str, str], data: Any) -> YoloLossHTTPError:
    """The server's error answer as an exception carrying its {"error": ...} text."""
    text = bytes(data).decode("utf-8", "replace")
    msg = text.strip() or http.client.responses.get(status, "error")
    try:
        js = json.loads(text)
        if isinstance(js, dict) and isinstance(js.get("error"), str):
            msg = js["error"]
    except ValueError:
        pass
    return YoloLossHTTPError(status, msg, rh)


def parse_json(status: int, rh: Mapping[str, str], data: Any) -> Any:
    """The JSON body of a 200 answer (errors raised as YoloLossHTTPError)."""
    if status != 200:
        raise http_error(status, rh, data)
    if not len(data):
        return {}
    try:
        return json.loads(bytes(data).decode("utf-8"))
    except ValueError as e:
        raise YoloLossProtocolError(status, "malformed JSON from the server: %s" % e, rh) from None


def parse_infer_response(rh: Mapping[str, str], data: Any) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """(header JSON, {name: array}) of an infer response, binary outputs as views."""
    hlen_s = rh.get("inference-header-content-length")
    n = len(data)
    try:
        if hlen_s is not None:
            hlen = int(hlen_s)
            if not 0 <= hlen <= n:
                raise ValueError("Inference-Header-Content-Length %d, body %d bytes" % (hlen, n))
            js = json.loads(bytes(data[:hlen]).decode("utf-8"))
            off = hlen
        else:
            js = json.loads(bytes(data).decode("utf-8"))
            off = n
        arrays = {}
        for o in js.get("outputs", []):
            dt = WIRE_DTYPES.get(o.get("datatype"))
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
        raise YoloLossProtocolError(200, "malformed answer from the server: %s" % e, rh) from None
    return js, arrays


def json_body(obj: Any, what: str) -> Tuple[List[bytes], Dict[str, str]]:
    """A JSON request body (finite numbers only) and its Content-Type."""
    try:
        data = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise ValueError("%s: cannot be sent as JSON: %s" % (what, e)) from None
    return [data], {"Content-Type": "application/json"}


def scalars_body(step: int, scalars: Mapping[str, float]) -> Dict[str, Any]:
    if "step" in scalars:
        raise ValueError("scalars: 'step' is the step, not a scalar name")
    body: Dict[str, Any] = {"step": int(step)}
    for k, v in scalars.items():
        body[str(k)] = float(v)
    return body


def images_query(order: str, limit: Optional[int], window: Optional[int]) -> str:
    q = "?order=%s" % order
    if limit is not None:
        q += "&limit=%d" % int(limit)
    if window is not None:
        q += "&window=%d" % int(window)
    return q
