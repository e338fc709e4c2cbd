"""yololoss: the Python client of yololossd, the keras-yolo3 YOLOv3 loss over HTTP.

    import numpy as np
    from yololoss import YoloLossClient

    client = YoloLossClient("http://127.0.0.1:8000", model="yolov3-tiny")
    res = client.compute([out13, out26], boxes=boxes, grads=True)
    res.loss, res.terms["confidence"], res.stats["avg_iou"], res.grads[0].shape

Depends on numpy and the standard library only. `yololoss.torch` adds a PyTorch loss module
(`RemoteYoloLoss`) whose backward pass is the server's gradient; it is imported only when
used, so torch stays optional. bfloat16 tensors travel as `BF16` (numpy has no bfloat16).
"""

from ._client import (STAT_NAMES, TERM_NAMES, BF16, Result, YoloLossClient, YoloLossError,
                      bf16)

__version__ = "0.1.0"

__all__ = ["YoloLossClient", "YoloLossError", "Result", "BF16", "bf16", "TERM_NAMES",
           "STAT_NAMES", "__version__"]
