"""One infer call without its transport: the request body and headers built from the
arguments, and the answer (status, headers, body bytes) turned into a Result or an error.
The blocking client (_client.py) and the asyncio client (aio.py) both send these."""

from __future__ import annotations

import http.client
import json
import zlib
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ._compact import head5, rows_for_boxes, rows_for_y_true
from ._errors import YoloLossHTTPError, YoloLossProtocolError
from ._result import Result
from ._tensors import (BF16, WIRE_DTYPES, ArrayLike, format_anchors, json_numbers,
                       wire_tensor)

__all__ = ["InferCall", "CompactHead", "http_error", "parse_json", "decode_body",
           "missing_row"]

SMALL_OUTPUTS = ("loss", "loss_terms", "layer_terms", "image_terms", "stats")
GRAD_DATATYPES = ("FP32", "FP64")


class CompactHead:
    """One layer already in compact form (yololoss.torch gathers on the tensor's device):
    box [B, H, W, 3, 5], rows [N, 5+C] (arrays or BF16), index [N] int64 sorted, and the
    shape of the dense head they came from (for the dense gradient)."""

    __slots__ = ("box", "rows", "index", "shape")

    def __init__(self, box: ArrayLike, rows: ArrayLike, index: np.ndarray,
                 shape: Sequence[int]) -> None:
        self.box, self.rows, self.index, self.shape = box, rows, index, tuple(shape)


def _compactable(outputs: Sequence[ArrayLike], y_true: Optional[Sequence[ArrayLike]]) -> bool:
    """True when every head is [B, H, W, 3*(5+C)] or [B, H, W, 3, 5+C] with one B, and
    every y_true (when given) has a head's B, H, W and a multiple of 3 channels."""
    try:
        shapes = [head5(tuple(o.shape)) for o in outputs]
        if len({s[0] for s in shapes}) != 1 or any(s[3] < 5 for s in shapes):
            return False
        if y_true is not None:
            if len(y_true) != len(outputs):
                return False
            for y, s in zip(y_true, shapes):
                ys = tuple(y.shape)
                if ys[:3] != s[:3] or (len(ys) == 4 and ys[3] % 3) or len(ys) not in (4, 5) \
                        or (len(ys) == 5 and ys[3] != 3):
                    return False
    except (ValueError, AttributeError, TypeError, IndexError):
        return False
    return True


def compact_head(dt: str, a: np.ndarray, index: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(box, rows) of a dense wire array (uint16 bits for BF16)."""
    B, H, W, K = head5(a.shape)
    a5 = a.reshape(B, H, W, 3, K)
    return _box_channels(a5), a5.reshape(-1, K)[index]


def _box_channels(a5: np.ndarray) -> np.ndarray:
    """a5[..., :5] as a new C-contiguous array. numpy copies that strided view 5 elements
    at a time (3-4 ms for the standard workload's 170,352 anchors, most of the client's
    time of a compact request); each anchor's first 5 elements taken as one void element
    are copied in one pass (1-2 ms), the same bytes."""
    K = a5.shape[-1]
    n = a5.size // K if K else 0
    if n == 0 or not a5.flags.c_contiguous:
        return np.ascontiguousarray(a5[..., :5])
    es = a5.itemsize
    anchors: np.ndarray = np.ndarray(shape=(n,), dtype=np.dtype((np.void, 5 * es)),
                                     buffer=a5, strides=(K * es,))
    return np.ascontiguousarray(anchors).view(a5.dtype).reshape(a5.shape[:-1] + (5,))


_ALIGN = 64


class InferCall:
    """The request of one compute(), built from its arguments; encode() -> (body chunks,
    headers), with the tensors in a shared-memory region when one is given;
    result(status, headers, body) -> Result (or raises).

    compact: send each layer as output_l_box / _rows / _index (docs/protocol.md); outputs
    may also be CompactHead objects (then compact is implied)."""

    def __init__(self, outputs: Sequence[ArrayLike], boxes: Optional[ArrayLike] = None,
                 y_true: Optional[Sequence[ArrayLike]] = None, grads: bool = False,
                 ignore_thresh: Optional[float] = None,
                 anchors: Union[str, Sequence[float], np.ndarray, None] = None,
                 run: Optional[str] = None, step: Optional[int] = None, binary: bool = True,
                 compress: Optional[str] = None, request_id: Optional[str] = None,
                 grad_datatype: Optional[str] = None,
                 image_ids: Optional[ArrayLike] = None, compact: bool = False) -> None:
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
        pre = [isinstance(o, CompactHead) for o in outputs]
        if any(pre) and not all(pre):
            raise TypeError("outputs: all layers compact (CompactHead) or none")
        compact = compact or (bool(pre) and all(pre))
        self.n_layers = L = len(outputs)
        self.grads = grads
        self.grad_itemsize = 8 if grad_datatype == "FP64" else 4
        truth = []
        if boxes is not None:
            truth.append(wire_tensor("boxes", boxes, "boxes") + ("boxes",))
        else:
            assert y_true is not None
            truth += [wire_tensor("y_true_%d" % l, y, "y_true") + ("y_true_%d" % l,)
                      for l, y in enumerate(y_true)]
        tensors = []
        # per layer: (index, dense shape) when compact, for the dense gradient
        self.compact: Optional[List[Tuple[np.ndarray, Tuple[int, ...]]]] = None
        if compact and not all(pre) and not _compactable(outputs, y_true):
            # shapes the compact form cannot express: sent dense, so that the daemon's 400
            # names the tensor and dimension at fault, as for any dense request
            compact = False
        if not compact:
            tensors = [wire_tensor("output_%d" % l, o, "output") + ("output_%d" % l,)
                       for l, o in enumerate(outputs)]
            self.grad_shapes = [tuple(t[1]) for t in tensors]
        else:
            self.compact = []
            heads: List[CompactHead] = []
            if all(pre):
                heads = [o for o in outputs if isinstance(o, CompactHead)]
            else:
                dense = [wire_tensor("output_%d" % l, o, "output") for l, o in enumerate(outputs)]
                grids = [head5(sh)[1:3] for _, sh, _ in dense]
                if boxes is not None:
                    index = rows_for_boxes(truth[0][2], grids)
                else:
                    index = rows_for_y_true([t[2] for t in truth])
                for (dt, sh, a), idx in zip(dense, index):
                    box, rows = compact_head(dt, a, idx)
                    if dt == "BF16":
                        heads.append(CompactHead(BF16(box), BF16(rows), idx, sh))
                    else:
                        heads.append(CompactHead(box, rows, idx, sh))
            for l, h in enumerate(heads):
                tensors.append(wire_tensor("output_%d_box" % l, h.box, "output")
                               + ("output_%d_box" % l,))
                tensors.append(wire_tensor("output_%d_rows" % l, h.rows, "output")
                               + ("output_%d_rows" % l,))
                tensors.append(wire_tensor("output_%d_index" % l, h.index, "index")
                               + ("output_%d_index" % l,))
                self.compact.append((np.asarray(h.index, dtype=np.int64), h.shape))
        tensors += truth
        if image_ids is not None:
            tensors.append(wire_tensor("image_ids", image_ids, "index") + ("image_ids",))
        self.tensors = tensors

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
        self.params = params
        self.binary = binary
        self.compress = compress
        self.request_id = request_id
        # the gradient outputs: (name, bytes)
        self.grad_outputs: List[Tuple[str, int]] = []
        self.placed: Dict[str, int] = {}  # encode(shm): each gradient's offset in the region
        if grads:
            g = self.grad_itemsize
            if self.compact is None:
                for l in range(L):
                    self.grad_outputs.append(("grad_%d" % l,
                                              g * int(np.prod(self.grad_shapes[l]))))
            else:
                for l, (idx, sh) in enumerate(self.compact):
                    B, H, W, K = head5(sh)
                    self.grad_outputs.append(("grad_%d_obj" % l, g * B * H * W * 3))
                    self.grad_outputs.append(("grad_%d_rows" % l, g * len(idx) * K))

    def shm_bytes(self) -> int:
        """Bytes of a shared-memory region that holds every input and gradient output."""
        n = 0
        for _, _, a, name in self.tensors:
            if name != "image_ids":
                n += -(-a.nbytes // _ALIGN) * _ALIGN
        for _, size in self.grad_outputs:
            n += -(-size // _ALIGN) * _ALIGN
        return n

    def encode(self, shm: Optional[Tuple[str, memoryview]] = None
               ) -> Tuple[List[Any], Dict[str, str]]:
        """(body chunks, headers). shm: (region name, its mapping) to carry the inputs and
        the gradients in a registered shared-memory region instead of the body."""
        blobs: List[np.ndarray] = []
        inputs = []
        off = 0
        for dt, shape, a, name in self.tensors:
            desc: Dict[str, Any] = {"name": name, "shape": [int(s) for s in shape],
                                    "datatype": dt}
            if shm is not None and name != "image_ids":   # the daemon reads ids from the body
                n = a.nbytes
                if n:
                    shm[1][off:off + n] = a.reshape(-1).view(np.uint8).data
                desc["parameters"] = {"shared_memory_region": shm[0],
                                      "shared_memory_offset": off,
                                      "shared_memory_byte_size": n}
                off += -(-n // _ALIGN) * _ALIGN
            elif self.binary or dt == "BF16":
                desc["parameters"] = {"binary_data_size": a.nbytes}
                if a.nbytes:
                    blobs.append(a)
            else:
                desc["data"] = json_numbers(name, a)
            inputs.append(desc)
        outs: List[Dict[str, Any]] = [{"name": n, "parameters": {"binary_data": bool(self.binary)}}
                                      for n in SMALL_OUTPUTS]
        self.placed = {}
        for name, size in self.grad_outputs:
            if shm is not None:
                self.placed[name] = off
                outs.append({"name": name, "parameters": {
                    "shared_memory_region": shm[0], "shared_memory_offset": off,
                    "shared_memory_byte_size": size}})
                off += -(-size // _ALIGN) * _ALIGN
            else:
                outs.append({"name": name, "parameters": {"binary_data": bool(self.binary)}})
        req: Dict[str, Any] = {"inputs": inputs, "outputs": outs}
        if self.request_id is not None:
            req["id"] = str(self.request_id)
        if self.params:
            req["parameters"] = self.params
        header = json.dumps(req, separators=(",", ":"), allow_nan=False).encode()

        hdrs: Dict[str, str] = {}
        if blobs:
            hdrs["Inference-Header-Content-Length"] = str(len(header))
            hdrs["Content-Type"] = "application/octet-stream"
        else:
            hdrs["Content-Type"] = "application/json"
        body: List[Any] = [header] + blobs
        if self.compress:
            body = [_compress(self.compress, body)]
            hdrs["Content-Encoding"] = self.compress
            hdrs["Accept-Encoding"] = self.compress
        return body, hdrs

    def result(self, status: int, rh: Mapping[str, str], data: Any,
               shm: Optional[Tuple[str, memoryview]] = None) -> Result:
        if status != 200:
            raise http_error(status, rh, data)
        js, arrays = parse_infer_response(rh, data, shm, self.placed)
        for name in ("loss", "loss_terms", "layer_terms", "stats") + tuple(
                n for n, _ in self.grad_outputs):
            if name not in arrays:
                raise YoloLossProtocolError(200, "malformed answer from the server: no output "
                                            "%r" % name, rh)
        try:
            return Result(arrays, js.get("model_name"), js.get("id"), compact=self.compact)
        except (ValueError, IndexError, TypeError) as e:
            raise YoloLossProtocolError(200, "malformed answer from the server: %s" % e,
                                        rh) from None


def missing_row(e: YoloLossHTTPError) -> bool:
    """The daemon's answer to a compact request lacking a truth anchor's row (the client's
    row choice should make it impossible; the call is then sent dense)."""
    return e.status == 400 and "no row for the truth anchor" in e.message


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


def parse_infer_response(rh: Mapping[str, str], data: Any,
                         shm: Optional[Tuple[str, memoryview]] = None,
                         placed: Optional[Mapping[str, int]] = None
                         ) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """(header JSON, {name: array}) of an infer response, binary outputs as views, outputs
    in the shared-memory region shm copied out of it."""
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
            p = o.get("parameters") or {}
            size = p.get("binary_data_size")
            count = int(np.prod(shape, dtype=np.int64))
            if shm is not None and placed and o["name"] in placed and size is None \
                    and "data" not in o:
                # asked for in the region (placed: its offset there); answered as Triton
                # answers it, with name, datatype and shape only
                at = placed[o["name"]]
                if at + count * dt.itemsize > len(shm[1]):
                    raise ValueError("output %r: outside the shared-memory region" % o["name"])
                a = np.frombuffer(shm[1], dtype=dt, count=count, offset=at).reshape(shape).copy()
            elif size is not None:
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


def images_query(order: str, limit: Optional[int], window: Optional[int],
                 per: Optional[str] = None) -> str:
    q = "?order=%s" % order
    if per is not None:
        q += "&per=%s" % per
    if limit is not None:
        q += "&limit=%d" % int(limit)
    if window is not None:
        q += "&window=%d" % int(window)
    return q
