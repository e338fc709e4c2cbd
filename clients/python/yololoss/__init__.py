"""yololoss: the Python client of yololossd, the keras-yolo3 YOLOv3 loss over HTTP.

    import numpy as np
    from yololoss import YoloLossClient

    client = YoloLossClient("http://127.0.0.1:8000", model="yolov3-tiny")
    res = client.compute([out13, out26], boxes=boxes, grads=True)
    res.loss, res.terms["confidence"], res.stats["avg_iou"], res.grads[0].shape

Depends on numpy and the standard library only. `yololoss.torch` adds a PyTorch loss module
(`RemoteYoloLoss`) whose backward pass is the server's gradient, and `yololoss.aio` an
asyncio client (it needs aiohttp); both are imported only when used. bfloat16 tensors
travel as `BF16` (numpy has no bfloat16).
"""

from ._client import YoloLossClient
from ._errors import (YoloLossConnectionError, YoloLossError, YoloLossHTTPError,
                      YoloLossProtocolError, YoloLossTimeoutError)
from ._result import STAT_NAMES, TERM_NAMES, Result
from ._retry import Retry
from ._tensors import BF16, bf16

__version__ = "0.2.0"

__all__ = ["YoloLossClient", "Result", "Retry", "BF16", "bf16", "TERM_NAMES", "STAT_NAMES",
           "YoloLossError", "YoloLossHTTPError", "YoloLossConnectionError",
           "YoloLossTimeoutError", "YoloLossProtocolError", "__version__"]
