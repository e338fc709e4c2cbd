"""Seeds for the client_answer fuzzer: real answers of yololossd to the fuzzer's fixed
request (yolov3-tiny, B = 1, grids 1 and 2, C = 1, one box), dense and compact, FP32 and
FP64 gradients, JSON and binary, each prefixed with the fuzzer's mode byte and header
length.  usage: make_seeds.py URL OUTDIR   (a running daemon; standard library only)"""

import json
import os
import sys
import urllib.request

url, out = sys.argv[1], sys.argv[2]
zeros = lambda n: [0.0] * n  # noqa: E731


def request(compact, grads, f64, binary):
    inputs = []
    for l, cells in ((0, 1), (1, 4)):
        side = 1 if l == 0 else 2
        if compact:
            inputs += [
                {"name": "output_%d_box" % l, "datatype": "FP32", "shape": [1, side, side, 3, 5],
                 "data": zeros(cells * 15)},
                {"name": "output_%d_rows" % l, "datatype": "FP32", "shape": [3, 6], "data": zeros(18)},
                {"name": "output_%d_index" % l, "datatype": "INT64", "shape": [3], "data": [0, 1, 2]}]
        else:
            inputs.append({"name": "output_%d" % l, "datatype": "FP32", "shape": [1, side, side, 18],
                           "data": zeros(cells * 18)})
    inputs.append({"name": "boxes", "datatype": "FP32", "shape": [1, 1, 5], "data": [10, 10, 20, 20, 0]})
    names = ["loss", "loss_terms", "layer_terms", "image_terms", "stats"]
    if grads:
        for l in range(2):
            names += ["grad_%d_obj" % l, "grad_%d_rows" % l] if compact else ["grad_%d" % l]
    body = {"inputs": inputs, "outputs": [{"name": n, "parameters": {"binary_data": binary}} for n in names]}
    if grads and f64:
        body["parameters"] = {"grad_datatype": "FP64"}
    return json.dumps(body).encode()


n = 0
for compact in (False, True):
    for grads, f64 in ((False, False), (True, False), (True, True)):
        for binary in (False, True):
            req = urllib.request.Request(url + "/v2/models/yolov3-tiny/infer",
                                         data=request(compact, grads, f64, binary),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req) as r:
                body = r.read()
                hl = r.headers.get("Inference-Header-Content-Length")
            mode = (1 if grads else 0) | (2 if f64 else 0) | (8 if compact else 0) | \
                   (0 if hl else 32)
            hlen = int(hl) if hl else 0
            name = "seed-%s-%s-%s-%s" % ("compact" if compact else "dense",
                                         "grad64" if f64 else "grad" if grads else "loss",
                                         "bin" if binary else "json", "h" if hl else "noh")
            with open(os.path.join(out, name), "wb") as f:
                f.write(bytes([mode, hlen & 255, hlen >> 8]) + body)
            n += 1
print("%d seeds" % n)
