"""Tensors to and from the wire: numpy dtypes <-> Open Inference Protocol datatypes, and
bfloat16, which numpy lacks (BF16 holds its bit patterns)."""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple, Union

import numpy as np

__all__ = ["BF16", "bf16", "ArrayLike", "wire_tensor", "format_anchors", "json_numbers",
           "WIRE_DTYPES"]

# Wire datatype <-> little-endian numpy dtype (BF16 travels as its uint16 bit patterns).
WIRE_DTYPES: Dict[str, np.dtype] = {"FP32": np.dtype("<f4"), "FP16": np.dtype("<f2"), "FP64": np.dtype("<f8"),
               "BF16": np.dtype("<u2"), "INT64": np.dtype("<i8")}
_NUMPY_TO_WIRE = {"f4": "FP32", "f2": "FP16", "f8": "FP64"}


class BF16:
    """A bfloat16 tensor, held as its raw bit patterns (numpy has no bfloat16 dtype).

    BF16(bits): bits is a uint16 array of bfloat16 bit patterns (for example
    torch_tensor.view(torch.int16).numpy().view(np.uint16)).
    BF16.from_float(x) / bf16(x): round float values to bfloat16 (nearest even).
    Arrays whose dtype is named "bfloat16" (ml_dtypes, jax) are accepted as they are.
    """

    __slots__ = ("bits",)

    def __init__(self, bits: Any) -> None:
        bits = np.asarray(bits)
        if bits.dtype != np.uint16:
            raise TypeError("BF16 wants uint16 bit patterns, not %s (use BF16.from_float "
                            "to round float values)" % bits.dtype)
        self.bits = bits

    def __getstate__(self) -> np.ndarray:
        return self.bits

    def __setstate__(self, bits: np.ndarray) -> None:
        self.bits = bits

    @classmethod
    def from_float(cls, x: Any) -> "BF16":
        f = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        u = f.view(np.uint32).astype(np.uint64)
        r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        nan = np.isnan(f)
        r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
        return cls(r)

    def to_float32(self) -> np.ndarray:
        b = np.ascontiguousarray(self.bits)
        return (b.astype(np.uint32) << 16).view(np.float32)

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self.bits.shape)

    def __repr__(self) -> str:
        return "BF16(shape=%s)" % (self.bits.shape,)


def bf16(x: Any) -> BF16:
    """float values -> BF16 (round to nearest even)."""
    return BF16.from_float(x)


# What compute() takes for a tensor: numpy arrays (or anything np.asarray reads), BF16,
# or torch tensors (moved to the CPU).
ArrayLike = Union[np.ndarray, BF16, Any]


def wire_tensor(name: str, x: ArrayLike, role: str) -> Tuple[str, Tuple[int, ...], np.ndarray]:
    """(datatype, shape, little-endian C-contiguous array) for one input.
    role: "output" (FP16/FP32/FP64/BF16 pass through, other real numbers as FP64),
    "boxes" (FP32/FP64; others as FP64), "y_true" (like outputs), "index" (INT64)."""
    if isinstance(x, BF16):
        if role in ("boxes", "index"):
            raise TypeError("%s: BF16 is not accepted here" % name)
        a = np.ascontiguousarray(x.bits, dtype="<u2")
        return "BF16", tuple(a.shape), a
    if hasattr(x, "detach") and hasattr(x, "cpu"):      # a torch tensor given directly
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            import torch  # only reached with a torch tensor in hand
            return wire_tensor(name, BF16(x.contiguous().view(torch.int16).numpy()
                                          .view(np.uint16)), role)
        x = x.numpy()
    a = np.asarray(x)
    if role == "index":
        if a.dtype.kind not in "iu":
            raise TypeError("%s: an index must be integers, not %s" % (name, a.dtype))
        a = np.ascontiguousarray(a, dtype="<i8")
        return "INT64", tuple(a.shape), a
    if a.dtype.name == "bfloat16" and a.dtype.itemsize == 2:   # ml_dtypes / jax
        return wire_tensor(name, BF16(np.ascontiguousarray(a).view(np.uint16)), role)
    if a.dtype.kind == "f" and a.dtype.itemsize in (2, 4, 8):
        if role == "boxes" and a.dtype.itemsize == 2:
            a = a.astype("<f4")
    elif a.dtype.kind in "biuf":
        a = a.astype("<f8")
    else:
        raise TypeError("%s: dtype %s is not a real number type" % (name, a.dtype))
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return _NUMPY_TO_WIRE[a.dtype.str[1:]], tuple(a.shape), a


def format_anchors(anchors: Union[str, Sequence[float], np.ndarray]) -> str:
    if isinstance(anchors, str):
        return anchors
    flat = np.asarray(anchors, dtype=np.float64).reshape(-1)
    return ",".join(repr(float(v)) for v in flat)


def json_numbers(name: str, a: np.ndarray) -> list:
    flat = a.reshape(-1)
    if a.dtype == np.uint16:
        raise TypeError("%s: BF16 cannot be sent as JSON" % name)
    if a.dtype.kind in "iu":
        return flat.astype(np.int64).tolist()
    if not np.all(np.isfinite(flat)):
        raise ValueError("%s holds NaN or infinite values, which JSON cannot carry (and the "
                         "server refuses them in any form)" % name)
    return flat.astype(np.float64).tolist()
