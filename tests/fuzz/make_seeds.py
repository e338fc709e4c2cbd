#!/usr/bin/env python3
"""Write the seed corpora of the core's fuzz targets: tests/fuzz/corpus/<target>/seed-*.

Each seed is a meaningful batch in the target's input format (described at the top of
tests/fuzz/core_*.c): valid problems of every model, layout and dtype, and one input per
refusal the API documents. Regression inputs (crash-*) are the files libFuzzer saved, copied in
by hand, and a few hand-made reproducers of known core bugs written here (write_bug).
Run from anywhere; rewrites seed-* and the hand-made crash-* files.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# tests/fuzz/fuzz_common.h: ylf_specials, in order
SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 3.0, 10.0, 100.0, 416.0, 1000.0, 1e6,
            1e30, -1e30, 3.4028234663852886e38, -3.4028234663852886e38, 3.5e38, 1e300,
            -1e300, "DBL_MAX", "-DBL_MAX", 1e-30, 1.401298464324817e-45, 1e-40, 5e-324,
            1e-300, 1.1754943508222875e-38, 88.0, 89.0, 709.0, 710.0, -88.0, -89.0,
            -709.0, -710.0, 745.0, -745.0, 36.0, -36.0, "NAN", "-NAN", "INFINITY",
            "-INFINITY", 0.25, 0.75, 0.9999999, 1.0000001, 2.0000001, 65504.0, 65520.0,
            65536.0, 0.49999999999999994, 0.5000000000000001, 1e-6, -1e-6, 16777216.0,
            16777217.0, 4294967296.0, 9007199254740993.0, 0.1, 0.9, 13.0, 26.0, 52.0]


def special(name):
    """Index of a special value (a float or its C spelling)."""
    return SPECIALS.index(name)


def val(v):
    """The byte ylf_value() maps to v: (b - 80) / 8 for b < 160, else a special."""
    if isinstance(v, str) or v != v or abs(v) > 9.875 or (v * 8) != int(v * 8):
        return 160 + special(v)
    return int(80 + 8 * v)


def pack_f64(x):
    return struct.pack("<d", x)


def pack_f32(x):
    return struct.pack("<f", x)


def write(target, name, data, prefix="seed-"):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, prefix + name), "wb") as f:
        f.write(bytes(data))


def write_bug(target, name, data):
    """A hand-made reproducer of a known core bug: fails until the core is fixed."""
    write(target, name, data, prefix="crash-")


# ----------------------------------------------------------------- core_problem
# tests/fuzz/core_problem.c: dim_table, in order
I32 = 2**31 - 1
I64 = 2**63 - 1
DIM_TABLE = [0, -1, 1, 2, 3, 4, 5, 6, 7, 8, 13, 15, 16, 17, 18, 19, 26, 32, 52, 64, 255, 256, 85,
             2**20, 2**20 + 1, 2**21, 2**31, 2**32, I32, I32 + 1, I32 + 5, I32 + 6, 3 * (I32 + 6),
             2**40, 2**62, I64, -2**63, -2**62, I64 // 3, I64 // 4 + 1, (2**64 - 1) // 16,
             (2**64 - 1) // 16 + 1, 1000003]


def problem(anchors=9, custom=None, thresh=None, boxes=False, odd_gt=None, odd_n=0,
            n_out_delta=None, B=1, H0=1, W0=1, C=1, T=1, five_out=(0, 0, 0),
            five_yt=(0, 0, 0), out_dt=0, yt_dt=0, box_f64=False, out_dts=None,
            perturb=(), data=b""):
    """One core_problem input. thresh: None (0.5), ('v', x), ('raw', x), ('b', byte).
    perturb: (tensor, field, value bytes). data: the tensors' bytes, in order."""
    flags = {9: 0, 6: 2}.get(anchors, 3)
    flags |= 4 if custom else 0
    tmode = {None: 0, "v": 1, "raw": 2, "b": 3}[thresh[0] if thresh else None]
    flags |= tmode << 3
    flags |= 32 if boxes else 0
    flags |= 64 if odd_gt is not None else 0
    flags |= 128 if n_out_delta is not None else 0
    out = [flags]
    if flags & 3 == 3:
        out.append(anchors & 0xFF)
    if custom:
        out += [val(a) for a in custom]
    if tmode == 1:
        out.append(val(thresh[1]))
    elif tmode == 2:
        out += pack_f64(thresh[1])
    elif tmode == 3:
        out.append(thresh[1])
    if odd_gt is not None:
        out.append(odd_gt)
        if odd_gt == 2:
            out.append(odd_n & 0xFF)
    if n_out_delta is not None:
        out.append(n_out_delta & 0xFF)
    out.append(B - 1)
    out.append((H0 - 1) | (W0 - 1) << 2 | (C - 1) << 4)
    out.append(T - 1)
    out.append(sum(b << i for i, b in enumerate(five_out)) |
               sum(b << (3 + i) for i, b in enumerate(five_yt)))
    out.append(out_dt | yt_dt << 2 | (16 if box_f64 else 0) | (32 if out_dts else 0))
    if out_dts:
        out += out_dts
    out.append(len(perturb))
    for k, field, v in perturb:
        out += [k, field] + list(v)
    return bytes(out) + bytes(data)


def prng(seed=1, scale=2.0):
    """Data mode 2: PRNG values of a scale."""
    return bytes([2]) + struct.pack("<I", seed) + bytes([val(scale)])


def sparse(rows):
    """Data mode 3: rows of values (None: a zero row)."""
    out = [3]
    for r in rows:
        if r is None:
            out.append(0)
        else:
            out.append(200)
            out += [val(v) for v in r]
    return bytes(out)


def dim(v):
    """A dim value: its dim_table byte, or 200 and the raw int64."""
    if v in DIM_TABLE:
        return bytes([DIM_TABLE.index(v)])
    return bytes([200]) + struct.pack("<q", v)


def core_problem():
    t = "core_problem"
    one_box = sparse([[1, 1, 9, 9, 0]])
    # valid problems, computed
    write(t, "v3-boxes", problem(boxes=True, data=prng() * 3 + one_box))
    write(t, "v3-boxes-b2-t3-c3", problem(boxes=True, B=2, H0=2, W0=1, C=3, T=3,
                                          data=prng(7) * 3 + sparse([[1, 1, 9, 9, 2], None,
                                                                     [2, 2, 6, 5, 1],
                                                                     [0, 0, 9.875, 9.875, 0],
                                                                     [3, 3, 3, 8, 0], None])))
    write(t, "tiny-boxes", problem(anchors=6, boxes=True, H0=2, W0=2, data=prng(3) * 2 + one_box))
    write(t, "v3-ytrue-sparse", problem(C=2, data=prng(5) * 3 + sparse(
        [[0.5, 0.5, 0.25, 0.25, 1, 1, 0], None, None]) + sparse([None] * 12) + sparse([None] * 48)))
    write(t, "v3-ytrue-5d-f16", problem(five_out=(1, 1, 1), five_yt=(1, 0, 1), out_dt=1, yt_dt=1,
                                        data=prng(9, 8) * 3 + sparse([None, [0.25, 0.75, 0.5, 0.125, 0.5, 1]])
                                        + bytes([3]) + bytes([3]) ))
    write(t, "v3-bf16-f64-mixed", problem(out_dts=[1, 2, 3], boxes=True, box_f64=True,
                                          data=prng(11, 9) * 3 + one_box))
    write(t, "v3-raw-f32", problem(boxes=True, data=bytes([0]) + pack_f32(0.5) * 18 + bytes([0]) +
                                   pack_f32(-1.0) * 72 + bytes([0]) + pack_f32(3.0) * 288 +
                                   bytes([0]) + pack_f32(1) + pack_f32(1) + pack_f32(20) + pack_f32(20) + pack_f32(0)))
    write(t, "err-output-table-values", problem(boxes=True, data=bytes([1]) + bytes(range(160, 178)) +
                                                bytes([1]) + bytes(range(100, 172)) + prng() + one_box))
    write(t, "v3-table-values", problem(boxes=True, data=bytes([1]) + bytes(range(60, 78)) +
                                        bytes([1]) + bytes(range(0, 144, 2)) + prng() + one_box))
    write(t, "v3-custom-anchors", problem(custom=[1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9],
                                          boxes=True, data=prng() * 3 + one_box))
    for name, th in [("thresh-0", ("v", 0)), ("thresh-neg", ("v", -1)), ("thresh-1", ("v", 1)),
                     ("thresh-2", ("b", 255)), ("thresh-tiny", ("raw", 5e-324))]:
        write(t, name, problem(boxes=True, thresh=th, data=prng(2, 0.5) * 3 + one_box))
    write(t, "bigger-grid", problem(boxes=True, B=3, H0=4, W0=4, C=4, T=8,
                                    data=prng(4) * 3 + sparse([[1, 2, 9, 9, 3]] * 24)))
    write(t, "grid-64-accepted", problem(boxes=True, perturb=[(0, 3, dim(64)), (1, 3, dim(128)), (2, 3, dim(256))],
                                         data=prng() * 3 + one_box))
    # refusals
    write(t, "err-thresh-nan", problem(boxes=True, thresh=("raw", float("nan"))))
    write(t, "err-thresh-inf", problem(boxes=True, thresh=("v", "INFINITY")))
    write(t, "err-anchors-count-0", problem(anchors=0, boxes=True))
    write(t, "err-anchors-count-12", problem(anchors=12, boxes=True))
    write(t, "err-anchor-negative", problem(custom=[1] * 17 + [-1], boxes=True))
    write(t, "err-anchor-nan", problem(custom=["NAN"] + [1] * 17, boxes=True))
    write(t, "err-anchor-zero", problem(custom=[1] * 5 + [0] + [1] * 12, boxes=True))
    write(t, "err-n-outputs", problem(n_out_delta=-1, boxes=True))
    write(t, "err-n-outputs-neg", problem(n_out_delta=-5, boxes=True))
    write(t, "err-both-truths", problem(odd_gt=0, boxes=True))
    write(t, "err-no-truth", problem(odd_gt=1))
    # known bug: the message does not name err.tensor ("y_true_0")
    write_bug(t, "ytrue-count-message-n2", problem(odd_gt=2, odd_n=2))
    write(t, "err-ytrue-null", problem(odd_gt=3))
    write(t, "ok-ytrue-count-0", problem(odd_gt=4, boxes=True, data=prng() * 3 + one_box))
    write(t, "err-dim-zero", problem(boxes=True, perturb=[(0, 2, dim(0))]))
    write(t, "err-dim-neg", problem(boxes=True, perturb=[(1, 3, dim(-1))]))
    write(t, "err-dim-int64-min", problem(perturb=[(4, 4, dim(-2**63))]))
    write(t, "err-dim-overflow", problem(perturb=[(0, 2, dim(2**62)), (0, 3, dim(2**62))]))
    write(t, "err-dim-int64-max", problem(perturb=[(2, 5, dim(I64))]))
    write(t, "err-grid-2^20", problem(boxes=True, perturb=[(0, 3, dim(2**20 + 1))]))
    write(t, "err-grid-mismatch", problem(boxes=True, perturb=[(1, 4, dim(3))]))
    write(t, "err-batch-mismatch", problem(boxes=True, perturb=[(2, 2, dim(2))]))
    write(t, "err-classes-mismatch", problem(boxes=True, perturb=[(1, 5, dim(255))]))
    write(t, "err-channels-not-3x", problem(boxes=True, perturb=[(0, 5, dim(13))]))
    write(t, "err-channels-c0", problem(boxes=True, perturb=[(0, 5, dim(15))]))
    write(t, "err-classes-mismatch-huge", problem(boxes=True, perturb=[(0, 5, dim(3 * (I32 + 6)))]))
    write(t, "err-classes-overflow", problem(boxes=True, perturb=[(k, 5, dim(3 * (I32 + 6))) for k in range(3)]))
    write(t, "err-classes-overflow-5d", problem(five_out=(1, 1, 1), perturb=[(k, 6, dim(I32 + 6)) for k in range(3)]))
    write(t, "dtype-name-fp16", problem(boxes=True, data=prng() * 3 + one_box + b"FP16"))
    write(t, "err-5d-not-3", problem(boxes=True, five_out=(1, 0, 0), perturb=[(0, 5, dim(4))]))
    write(t, "err-ndim-0", problem(boxes=True, perturb=[(0, 1, bytes([0]))]))
    write(t, "err-ndim-6", problem(boxes=True, perturb=[(1, 1, bytes([6]))]))
    write(t, "err-ndim-3", problem(perturb=[(5, 1, bytes([3]))]))
    write(t, "err-dtype-4", problem(boxes=True, perturb=[(0, 0, bytes([4]))]))
    write(t, "err-dtype-neg", problem(perturb=[(6, 0, bytes([0xFF]))]))
    write(t, "err-boxes-f16", problem(boxes=True, perturb=[(7, 0, bytes([1]))]))
    write(t, "err-boxes-shape", problem(boxes=True, perturb=[(7, 4, dim(4))]))
    write(t, "err-boxes-ndim", problem(boxes=True, perturb=[(7, 1, bytes([4]))]))
    write(t, "err-boxes-batch", problem(boxes=True, perturb=[(7, 2, dim(2))]))
    write(t, "err-boxes-rows-2^31", problem(boxes=True, perturb=[(7, 3, dim(2**31))]))
    write(t, "ok-boxes-rows-int32-max", problem(boxes=True, perturb=[(7, 3, dim(I32))]))
    write(t, "err-null-output", problem(boxes=True, perturb=[(1, 7, b"")]))
    write(t, "err-null-boxes", problem(boxes=True, perturb=[(7, 7, b"")]))
    write(t, "err-null-ytrue", problem(perturb=[(6, 7, b"")]))
    write(t, "err-ytrue-shape", problem(perturb=[(5, 3, dim(3))]))
    write(t, "ok-batch-huge-decoy", problem(boxes=True, perturb=[(0, 2, dim(2**31)), (1, 2, dim(2**31)),
                                                                (2, 2, dim(2**31)), (7, 2, dim(2**31))]))
    # values refused by yl_compute
    write(t, "err-output-nan", problem(boxes=True, data=bytes([1, val("NAN")]) + prng() * 2 + one_box))
    write(t, "err-output-inf-f16", problem(boxes=True, out_dt=1, data=bytes([1]) + bytes([val(1)] * 17 + [val(65520.0)]) + prng() * 2 + one_box))
    write(t, "err-box-class", problem(boxes=True, C=2, data=prng() * 3 + sparse([[1, 1, 9, 9, 2]])))
    write(t, "err-box-height", problem(boxes=True, data=prng() * 3 + sparse([[1, 9, 9, 1, 0]])))
    write(t, "err-ytrue-width-0", problem(data=prng() * 3 + bytes([1, val(0.5), val(0.5), val(0), val(0.5), val(1), val(1)])))


# ----------------------------------------------------------------- core_boxes
def px(frac):
    """core_boxes byte for a whole pixel at `frac` of the input (b < 96: (b-8)/80)."""
    b = int(round(frac * 80 + 8))
    assert 0 <= b < 96
    return b


def boxes(tiny=False, thresh=None, f64=False, omode=1, f16=False, B=1, H0=1, W0=1, C=1,
          rows=(), seed=1, scale=None, outs=b""):
    """rows: per row None (padding) or five bytes (already encoded)."""
    T = max(1, len(rows) // B)
    cb = (1 if tiny else 0) | {None: 0, "v": 1, "b": 2, "raw": 3}[thresh[0] if thresh else None] << 1
    cb |= (8 if f64 else 0) | omode << 4 | (64 if f16 else 0)
    out = [cb, (B - 1) + 3 * (H0 - 1) + 9 * (W0 - 1), (C - 1) + 5 * (T - 1)]
    if thresh and thresh[0] == "v":
        out.append(val(thresh[1]))
    elif thresh and thresh[0] == "b":
        out.append(thresh[1])
    elif thresh:
        out += pack_f64(thresh[1])
    for r in rows:
        if r is None:
            out.append(0)
        else:
            out.append(1)
            out += list(r)
    out += struct.pack("<I", seed)
    if omode == 2:
        out.append(val(scale if scale is not None else 4))
    return bytes(out) + bytes(outs)


def sp(v):
    """core_boxes byte for a special value."""
    return 128 + special(v)


def raw(x, is64):
    return [255] + list(pack_f64(x) if is64 else pack_f32(x))


def box(x0, y0, x1, y1, c):
    return [px(x0), px(y0), px(x1), px(y1), c]


def core_boxes():
    t = "core_boxes"
    good = box(0.1, 0.1, 0.6, 0.7, 0)
    write(t, "one", boxes(rows=[good]))
    write(t, "one-f64", boxes(f64=True, rows=[good]))
    write(t, "tiny", boxes(tiny=True, C=2, rows=[box(0.1, 0.1, 0.9, 0.9, 1), box(0.0, 0.0, 0.05, 0.05, 0)]))
    write(t, "tiny-anchor0-dropped", boxes(tiny=True, H0=3, W0=3, rows=[box(0.5, 0.5, 0.51, 0.52, 0)]))
    write(t, "padding-middle", boxes(B=2, C=3, H0=2, W0=3, rows=[good, None, box(0.2, 0.3, 0.4, 0.5, 2), None,
                                                                 None, box(0.5, 0.5, 0.9, 0.9, 1)]))
    write(t, "padding-negative-width", boxes(C=2, rows=[box(0.6, 0.1, 0.1, 0.7, 1), good]))
    write(t, "same-cell-multihot", boxes(C=4, rows=[box(0.1, 0.1, 0.6, 0.7, 0), box(0.1, 0.1, 0.6, 0.7, 3),
                                                    box(0.1, 0.1, 0.6, 0.7, 3)]))
    write(t, "many", boxes(B=3, C=5, H0=3, W0=3, omode=2, scale=8,
                           rows=[box(i / 17, (i * 7 % 17) / 20, min(1.05, i / 17 + 0.1 + (i % 3) / 10),
                                     (i * 7 % 17) / 20 + 0.15, i % 5) for i in range(16)] * 3))
    write(t, "edge-centre", boxes(rows=[box(0.9, 0.9, 1.09, 1.09, 0)]))
    write(t, "half-pixels", boxes(f64=True, rows=[[100, 101, 120, 122, 0]]))
    write(t, "outputs-f16-bytes", boxes(f16=True, omode=3, rows=[good], outs=bytes(range(40, 40 + 18)) + bytes(72 + 288)))
    write(t, "thresh-0", boxes(thresh=("v", 0), rows=[good, box(0.3, 0.3, 0.5, 0.5, 0)]))
    write(t, "thresh-1", boxes(thresh=("v", 1), rows=[good]))
    write(t, "thresh-neg", boxes(thresh=("v", -2), omode=2, scale=36.0, rows=[good]))
    write(t, "err-thresh-nan", boxes(thresh=("raw", float("nan")), rows=[good]))
    write(t, "err-class-range", boxes(C=2, rows=[box(0.1, 0.1, 0.6, 0.7, 2)]))
    write(t, "err-class-fraction", boxes(rows=[box(0.1, 0.1, 0.6, 0.7, 0)[:4] + [sp(2.0000001)]]))
    write(t, "err-class-negative", boxes(rows=[box(0.1, 0.1, 0.6, 0.7, 0)[:4] + [sp(-1.0)]]))
    write(t, "err-class-huge-f64", boxes(f64=True, rows=[box(0.1, 0.1, 0.6, 0.7, 0)[:4] + raw(1e300, True)]))
    write(t, "err-height-zero", boxes(rows=[box(0.1, 0.4, 0.6, 0.4, 0)]))
    write(t, "err-height-negative", boxes(B=2, rows=[good, good, good, box(0.1, 0.7, 0.6, 0.1, 0)]))
    write(t, "err-nan", boxes(rows=[good, [px(0.1), sp("NAN"), px(0.5), px(0.5), 0]]))
    write(t, "err-nan-in-padding", boxes(rows=[[sp("NAN"), 0, 0, 0, 0], good]))
    write(t, "err-inf", boxes(f64=True, rows=[[px(0.1), px(0.1), sp("INFINITY"), px(0.5), 0]]))
    write(t, "err-f64-beyond-f32", boxes(f64=True, rows=[[px(0.1), px(0.1), sp(1e300), px(0.5), 0]]))
    write(t, "err-centre-outside", boxes(rows=[box(0.95, 0.1, 1.09, 0.7, 0)]))
    write(t, "err-centre-negative", boxes(rows=[box(-0.1, -0.1, 0.05, 0.05, 0)]))
    write(t, "denormal-width", boxes(rows=[[px(0), px(0), sp(1e-40), px(0.5), 0]]))
    # known bugs: a finite box whose float32 width overflows, or whose normalised width or
    # height rounds to 0, is accepted with a loss of +-inf (the dense path refuses it)
    write_bug(t, "box-width-overflows-f32", boxes(rows=[[sp(-3.4028234663852886e38), px(0),
                                                         sp(3.4028234663852886e38), px(0.3), 0]]))
    write_bug(t, "box-width-rounds-to-0", boxes(rows=[[px(0), px(0), sp(1.401298464324817e-45), px(0.3), 0]]))
    write_bug(t, "box-height-rounds-to-0", boxes(f64=True, rows=[[px(0), px(0), px(0.3), sp(1.401298464324817e-45), 0]]))
    write(t, "raw-f32", boxes(rows=[raw(1.5, False) + raw(2.25, False) + raw(20.75, False) +
                                    raw(19.0, False) + [0]]))
    write(t, "raw-f64", boxes(f64=True, rows=[raw(1.5, True) + raw(2.25, True) + raw(20.75, True) +
                                              raw(19.0, True) + raw(0.0, True)]))


# ----------------------------------------------------------------- core_dense
DENSE_OBJ = [1, 1, 1, 0.5, 0.9, 1e-7, -1, 2, 0, 0.9999, 1e30, -0.0]
DENSE_CLS = [0, 1, 0, 0.9, 0.1, 1, -1, 2]


def dobj(v):
    return DENSE_OBJ.index(v)


def dxy(v):
    b = int(round(v * 200))
    assert 0 <= b < 200 and b / 200 == v, v
    return b


def dwh(v):
    b = int(round(v * 100))
    assert 0 <= b < 200 and b / 100 == v, v
    return b


def dcls(v):
    return DENSE_CLS.index(v)


def dense(tiny=False, thresh=None, dt=2, dts=None, five=False, prng_out=True, B=1, H0=1, W0=1,
          C=1, out_dt=0, seed=1, scale=2, rows=None):
    """rows: {(layer, image, anchor index in the image's layer): row bytes}, others zero."""
    cb = (1 if tiny else 0) | {None: 0, "v": 1, "b": 2, "raw": 3}[thresh[0] if thresh else None] << 1
    cb |= dt << 3 | (32 if dts else 0) | (64 if five else 0) | (128 if prng_out else 0)
    sb = (B - 1) + 2 * (H0 - 1) + 4 * (W0 - 1) + 8 * (C - 1) + 24 * out_dt
    out = [cb, sb]
    if thresh and thresh[0] == "v":
        out.append(val(thresh[1]))
    elif thresh and thresh[0] == "b":
        out.append(thresh[1])
    elif thresh:
        out += pack_f64(thresh[1])
    L = 2 if tiny else 3
    if dts:
        out += dts[:L]
    out += struct.pack("<I", seed)
    out.append(val(scale))
    rows = rows or {}
    for l in range(L):
        n = (H0 << l) * (W0 << l) * 3
        for b in range(B):
            for a in range(n):
                r = rows.get((l, b, a))
                out += r if r is not None else [0]
    return bytes(out)


def spec_byte(v, lo):
    """The first byte >= lo that ylf_value maps to the special v (specials repeat every 64)."""
    for b in range(max(lo, 160), 256):
        if (b - 160) % 64 == special(v):
            return b
    raise ValueError(v)


def truth(obj=1, x=0.5, y=0.5, w=0.25, h=0.25, cls=(1,)):
    """A structured row: kind 128, objectness, x, y, w, h, classes."""
    r = [128]
    r.append(obj if isinstance(obj, list) else dobj(obj))
    for v, enc in ((x, dxy), (y, dxy), (w, dwh), (h, dwh)):
        r.append(v[0] if isinstance(v, list) else enc(v))
    for c in cls:
        r.append(c[0] if isinstance(c, list) else dcls(c))
    return r


def core_dense():
    t = "core_dense"
    write(t, "one-f32", dense(rows={(0, 0, 1): truth()}))
    for dt, name in ((0, "f32"), (1, "f16"), (2, "bf16"), (3, "f64")):
        write(t, "layers-" + name, dense(dt=dt, C=2, H0=2, rows={(0, 0, 0): truth(cls=(1, 0)),
                                                              (1, 0, 7): truth(x=0.4, y=0.3, w=0.5, h=0.75, cls=(0, 1)),
                                                              (2, 0, 40): truth(w=0.05, h=0.1, cls=(1, 1))}))
    write(t, "mixed-dtypes-5d", dense(dts=[1, 2, 3], five=True, C=3, B=2,
                                      rows={(0, 1, 2): truth(cls=(0, 0, 1)), (2, 0, 5): truth(0.5, cls=(0.9, 0.1, 0))}))
    write(t, "tiny", dense(tiny=True, rows={(0, 0, 1): truth(), (1, 0, 3): truth(0.9)}))
    write(t, "soft-obj", dense(rows={(0, 0, 0): truth(0.5), (1, 0, 0): truth(1e-7), (2, 0, 0): truth(0.9999)}))
    write(t, "obj-negative", dense(rows={(0, 0, 0): truth(-1)}))
    write(t, "obj-two", dense(rows={(0, 0, 0): truth(2)}))
    write(t, "obj-huge", dense(rows={(0, 0, 0): truth(1e30)}))
    write(t, "obj-negzero-width-0", dense(rows={(0, 0, 0): truth(-0.0, w=0)}))
    write(t, "obj-zero-width-neg", dense(rows={(0, 0, 0): truth(0, w=[spec_byte(-1.0, 200)])}))  # w = -1 via special
    write(t, "class-soft-multihot", dense(C=3, rows={(1, 0, 2): truth(cls=(0.9, 1, -1))}))
    write(t, "wide-box", dense(rows={(0, 0, 0): truth(w=1.99, h=1.99)}))
    write(t, "out-f16-big", dense(out_dt=1, scale=9.875, rows={(0, 0, 0): truth()}))
    write(t, "out-bf16", dense(out_dt=2, scale=1e6, rows={(0, 0, 2): truth()}))
    write(t, "out-zero", dense(prng_out=False, rows={(0, 0, 2): truth()}))
    write(t, "thresh-0", dense(thresh=("v", 0), rows={(0, 0, 0): truth(), (2, 0, 9): truth()}))
    write(t, "thresh-neg", dense(thresh=("v", -1), rows={(0, 0, 0): truth()}))
    write(t, "thresh-over-1", dense(thresh=("b", 200), rows={(0, 0, 0): truth()}))
    write(t, "err-thresh-nan", dense(thresh=("raw", float("nan"))))
    write(t, "err-width-zero", dense(rows={(0, 0, 0): truth(w=0)}))
    write(t, "err-height-zero-l2", dense(B=2, rows={(0, 0, 0): truth(), (2, 1, 11): truth(h=0)}))
    write(t, "err-width-negative", dense(dt=1, rows={(1, 0, 4): truth(w=[spec_byte(-1.0, 200)])}))
    write(t, "err-nan-class", dense(C=2, rows={(0, 0, 1): truth(cls=(1, [spec_byte("NAN", 192)]))}))
    write(t, "err-inf-in-zero-obj-row", dense(dt=2, rows={(1, 0, 0): truth(0, x=[spec_byte("INFINITY", 200)])}))
    write(t, "err-f16-overflow", dense(dt=1, rows={(0, 0, 0): truth(x=[spec_byte(65520.0, 200)])}))
    write(t, "err-nan-5d", dense(five=True, dt=3, rows={(2, 0, 3): truth(y=[spec_byte("-NAN", 200)])}))
    write(t, "err-nan-image1-and-width0-image0", dense(B=2, rows={(0, 1, 0): truth(x=[spec_byte("-NAN", 200)]),
                                                                  (1, 0, 0): truth(w=0)}))
    raw_row = [255] + list(struct.pack("<6f", 0.25, 0.5, 0.125, 0.5, 1.0, 1.0))
    write(t, "raw-f32-row", dense(rows={(0, 0, 0): raw_row}))


def core_compact():
    """tests/fuzz/core_compact.c: cfg, size, seed, box rows, then rows or raw indices."""
    import random
    t = "core_compact"
    rnd = random.Random(12)

    def size_byte(B, H0, W0, C, T):
        for v in range(256):
            if (1 + v % 2, 1 + (v // 2) % 2, 1 + (v // 4) % 2, 1 + (v // 8) % 3,
                    1 + (v // 24) % 6) == (B, H0, W0, C, T):
                return v
        raise ValueError("no size byte")

    def box(x0, y0, x1, y1, cls):  # bytes b with floor((b - 24) * dim / 200) = fraction
        return bytes([24 + int(x0 * 200), 24 + int(y0 * 200), 24 + int(x1 * 200),
                      24 + int(y1 * 200), cls])

    def case(tiny=False, box_f64=False, out_dt=0, rows_f64=False, raw=None, drop=None,
             B=1, H0=1, W0=1, C=1, boxes=(), extra=0.1):
        L = 2 if tiny else 3
        cfg = int(tiny) | int(box_f64) << 1 | out_dt << 2 | int(rows_f64) << 4 | \
            int(raw is not None) << 5 | int(drop is not None) << 6
        T = len(boxes[0])
        d = bytes([cfg, size_byte(B, H0, W0, C, T)]) + bytes([7, 1, 2, 3])
        for img in boxes:
            for row in img:
                d += box(*row)
        if raw is not None:
            for idx in raw:
                d += bytes([len(idx)]) + b"".join(struct.pack("<h", v) for v in idx)
            return d
        d += bytes([drop or 0])
        anchors = sum(B * (H0 << l) * (W0 << l) * 3 for l in range(L))
        return d + bytes(rnd.randrange(32) if rnd.random() < extra else 200
                         for _ in range(anchors))

    two = [[(0.1, 0.1, 0.6, 0.7, 0), (0.5, 0.4, 0.9, 0.6, 1)]]
    write(t, "v3-f32-exact", case(boxes=two, C=2, extra=0))
    write(t, "v3-f16-rows-f64-superset", case(out_dt=1, rows_f64=True, boxes=two, C=2, extra=0.3))
    write(t, "tiny-bf16-b2", case(tiny=True, out_dt=2, B=2, H0=2, W0=1, C=3, boxes=[
        [(0.1, 0.1, 0.9, 0.9, 2), (0.3, 0.2, 0.5, 0.3, 1), (0.0, 0.0, 0.0, 0.0, 0)],
        [(0.6, 0.5, 0.95, 0.9, 0), (0.2, 0.6, 0.4, 0.95, 2), (0.5, 0.1, 0.7, 0.2, 1)]]))
    write(t, "v3-f64-boxes-f64-2x2", case(box_f64=True, out_dt=3, B=2, H0=2, W0=2, C=3, boxes=[
        [(0.05, 0.1, 0.5, 0.5, 0), (0.5, 0.5, 0.9, 0.95, 1), (0.2, 0.6, 0.3, 0.8, 2)],
        [(0.4, 0.3, 0.6, 0.7, 2), (0.0, 0.0, 0.0, 0.0, 0), (0.1, 0.1, 0.2, 0.15, 1)]]))
    write(t, "err-missing-row", case(drop=0, boxes=two, C=2))
    write(t, "err-missing-row-image-1", case(drop=1, B=2, C=2, boxes=[
        [(0.1, 0.1, 0.6, 0.7, 0)], [(0.2, 0.3, 0.5, 0.9, 1)]]))
    write(t, "err-bad-box-after-missing-row", case(drop=0, B=2, C=2, boxes=[
        [(0.1, 0.1, 0.6, 0.7, 0)], [(0.2, 0.3, 0.5, 0.9, 7)]]))
    write(t, "err-index-unsorted", case(raw=[[0, 2, 1], [3], [5, 6]], boxes=two, C=2))
    write(t, "err-index-range", case(raw=[[0, 1], [3, 400], []], boxes=two, C=2))
    write(t, "err-index-negative", case(raw=[[-1], [], []], boxes=two, C=2))
    write(t, "raw-valid-no-truth-rows", case(raw=[[1, 2], [0, 11], [47]], boxes=two, C=2))


def main():
    core_problem()
    core_boxes()
    core_dense()
    core_compact()
    return 0


if __name__ == "__main__":
    sys.exit(main())
