"""The exceptions of the client: one base class, one subclass per way a call can fail.

    YoloLossError                      base: catch this for "the loss could not be computed"
    +-- YoloLossHTTPError              the server answered with an error status (4xx, 5xx)
    +-- YoloLossConnectionError        no answer: refused, reset, unreachable (also a
    |                                  builtin ConnectionError, so OSError handlers see it)
    +-- YoloLossTimeoutError           no answer within the call's timeout (also a builtin
    |                                  TimeoutError)
    +-- YoloLossProtocolError          an answer the client cannot read (malformed body)

Every one carries .status (the HTTP status, None when no answer came back), .message (the
server's {"error": ...} text, or what went wrong on the client's side) and .headers (the
answer's headers, lower-case names; empty without an answer). They pickle with all three,
so they cross process boundaries (DataLoader workers, torch.multiprocessing) intact.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ["YoloLossError", "YoloLossHTTPError", "YoloLossConnectionError",
           "YoloLossTimeoutError", "YoloLossProtocolError"]


class YoloLossError(Exception):
    """A call that failed. status: the HTTP status (400, 401, 404, 413, 503, ...) or None
    when no answer came back; message: the server's text or the client's reason;
    headers: the answer's headers (lower-case names)."""

    status: Optional[int]
    message: str
    headers: Dict[str, str]

    def __init__(self, status: Optional[int], message: str,
                 headers: Optional[Mapping[str, str]] = None) -> None:
        super().__init__("HTTP %d: %s" % (status, message) if status else message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.status, self.message, self.headers))


class YoloLossHTTPError(YoloLossError):
    """The server answered with an error status: .status is it, .message the server's
    {"error": ...} text (it names the tensor, index or parameter at fault)."""

    status: int


class YoloLossConnectionError(YoloLossError, ConnectionError):
    """No answer: the connection was refused, reset or aborted, or the host is
    unreachable. .status is None."""


class YoloLossTimeoutError(YoloLossError, TimeoutError):
    """No answer within the call's timeout (retries included). .status is None."""


class YoloLossProtocolError(YoloLossError):
    """The server's answer could not be read (malformed JSON, sizes that do not add up)."""
