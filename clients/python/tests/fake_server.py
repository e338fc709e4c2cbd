"""A tiny scripted HTTP/1.1 server standing in for yololossd where the real one cannot be
made to fail on cue: it answers the n-th infer with script[n], then a fixed good answer.

Script entries: an HTTP status (502, 503, ...; with the server's retry_after as the
Retry-After header when set), "reset" (read the request, then close with a TCP RST), or
"hang" (answer 200 only after `release` is set or 10 s pass), or a key of BROKEN (a
malformed 200 answer). .attempts counts requests
but GET /v2, which lists no extensions (so clients stay dense and on the wire).
"""

import http.server
import json
import socket
import struct
import threading

GOOD = [("loss", [1], [2.5]), ("loss_terms", [4], [1, 0.5, 0.75, 0.25]),
        ("layer_terms", [1, 4], [1, 0.5, 0.75, 0.25]),
        ("image_terms", [1, 4], [1, 0.5, 0.75, 0.25]), ("stats", [1, 8], [0] * 8)]
GOOD_BODY = json.dumps({"model_name": "yolov3", "model_version": "1", "outputs": [
    {"name": n, "datatype": "FP32", "shape": s, "data": d} for n, s, d in GOOD]}).encode()


# Malformed 200 answers: (body, Inference-Header-Content-Length or None).
_HDR = json.dumps({"outputs": [{"name": "loss", "datatype": "FP32", "shape": [1],
                                "parameters": {"binary_data_size": 8}}]}).encode()
BROKEN = {
    "not-json": (b"<html>proxy error page</html>", None),
    "header-too-long": (b'{"outputs": []}', 999),
    "short-binary": (_HDR + b"\0\0\0\0", len(_HDR)),
    "bad-datatype": (b'{"outputs": [{"name": "loss", "datatype": "INT8", "shape": [1], '
                     b'"data": [1]}]}', None),
    "no-loss": (b'{"outputs": []}', None),
    "flat-stats": (json.dumps({"outputs": [
        {"name": n, "datatype": "FP32", "shape": s, "data": d} for n, s, d in [
            ("loss", [1], [1]), ("loss_terms", [4], [1, 0, 0, 0]),
            ("layer_terms", [1, 4], [1, 0, 0, 0]), ("stats", [8], [0] * 8)]]}).encode(), None),
}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        srv = self.server
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with srv.lock:
            n = srv.attempts
            srv.attempts += 1
        action = srv.script[n] if n < len(srv.script) else 200
        if action == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if action in BROKEN:
            body, hlen = BROKEN[action]
            self.send_response(200)
            if hlen is not None:
                self.send_header("Inference-Header-Content-Length", str(hlen))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if action == "hang":
            srv.release.wait(10)
            action = 200
        if action == 200:
            self._send(200, GOOD_BODY)
        else:
            self._send(action, json.dumps({"error": "scripted %d" % action}).encode(),
                       srv.retry_after)

    def do_GET(self):
        if self.path == "/v2":             # server metadata: no extensions, not counted
            self._send(200, b'{"name":"fake","version":"0","extensions":[]}')
        else:
            self.do_POST()

    def _send(self, status, body, retry_after=None):
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class FakeServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script=(), retry_after=None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.retry_after = retry_after
        self.attempts = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.url = "http://127.0.0.1:%d" % self.server_port
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        self.release.set()
        self.shutdown()
        self.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
