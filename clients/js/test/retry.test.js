// The retry policy of yololoss.js against a scripted fake server (no daemon): each attempt
// arrives on its own connection ("Connection: close") and is counted, so the tests check
// how many attempts a call made, never how long it took. The clients send dense tensors by
// the wire, so that no GET /v2 (for the extensions) is among the requests counted.
//
//   node --test clients/js/test/retry.test.js

import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";

import { Retry, YoloLossClient, YoloLossError } from "../yololoss.js";

const ANSWER = JSON.stringify({ model_name: "yolov3", model_version: "1", outputs: [
  { name: "loss", datatype: "FP32", shape: [1], data: [2.5] },
  { name: "loss_terms", datatype: "FP32", shape: [4], data: [1, 0.5, 0.75, 0.25] },
  { name: "layer_terms", datatype: "FP32", shape: [1, 4], data: [1, 0.5, 0.75, 0.25] },
  { name: "image_terms", datatype: "FP32", shape: [1, 4], data: [1, 0.5, 0.75, 0.25] },
  { name: "stats", datatype: "FP32", shape: [1, 8], data: [0, 0, 0, 0, 0, 0, 0, 0] }] });

// Steps: "ok", "close" (no answer), "reset" (RST, no answer), "hang" (never answers),
// or [status, retryAfter|null].
async function fakeServer(script, after) {
  const srv = createServer((sock) => {
    let buf = Buffer.alloc(0);
    let step = null;
    sock.on("error", () => {});
    sock.on("data", (d) => {
      if (step !== null) return;
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(buf.subarray(0, end).toString());
      if (buf.length - end - 4 < (m ? Number(m[1]) : 0)) return;
      step = srv.requests < script.length ? script[srv.requests] : after;
      srv.lastHead = buf.subarray(0, end).toString();
      srv.requests++;
      if (step === "close") sock.end();
      else if (step === "reset") sock.resetAndDestroy();
      else if (step === "hang") srv.hung.push(sock);
      else {
        const [status, retryAfter, body] = step === "ok" ? [200, null, ANSWER]
          : [step[0], step[1], '{"error":"fake: retry later"}'];
        sock.end(`HTTP/1.1 ${status} X\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\n` +
          (retryAfter != null ? `Retry-After: ${retryAfter}\r\n` : "") +
          `Connection: close\r\n\r\n${body}`);
      }
    });
  });
  srv.requests = 0;
  srv.hung = [];
  await new Promise((ok) => srv.listen(0, "127.0.0.1", ok));
  srv.url = `http://127.0.0.1:${srv.address().port}`;
  srv.stop = () => new Promise((ok) => { srv.hung.forEach((s) => s.destroy()); srv.close(ok); });
  return srv;
}

// A loopback URL on which nothing listens.
async function refusingUrl() {
  const srv = createServer();
  await new Promise((ok) => srv.listen(0, "127.0.0.1", ok));
  const { port } = srv.address();
  await new Promise((ok) => srv.close(ok));
  return `http://127.0.0.1:${port}`;
}

const outs = [{ data: new Float32Array(18), shape: [1, 1, 1, 18] }];
const boxes = { data: new Float32Array([10, 10, 20, 20, 0]), shape: [1, 1, 5] };

test("every retryable failure in a row, then the answer: one call, seven attempts", async () => {
  const srv = await fakeServer(["close", "reset", [502, null], [503, "0"], [504, null],
    [503, "Thu, 01 Jan 1970 00:00:00 GMT"]], "ok");
  try {
    const c = new YoloLossClient(srv.url, { tensors: "dense", shm: "wire", timeout: 20 });
    const res = await c.compute(outs, { boxes });
    assert.equal(res.loss, 2.5);
    assert.equal(res.terms.class, 0.25);
    assert.equal(srv.requests, 7);
    assert.equal(c.retries, 6);
    // on loopback the answers are not to be compressed (CPU for nothing)
    assert.match(srv.lastHead, /\r\naccept-encoding: identity/i);
  } finally { await srv.stop(); }
  const srv2 = await fakeServer([[503, "0"], "close"], "ok"); // metadata calls alike
  try {
    assert.equal(await new YoloLossClient(srv2.url).ready(), true);
    assert.equal(srv2.requests, 3);
  } finally { await srv2.stop(); }
});

test("other statuses are answers, not outages: one attempt", async () => {
  for (const status of [400, 401, 404, 413, 500]) {
    const srv = await fakeServer([], [status, "0"]);
    try {
      const c = new YoloLossClient(srv.url, { tensors: "dense", shm: "wire", timeout: 20 });
      await assert.rejects(c.compute(outs, { boxes }), (e) =>
        e instanceof YoloLossError && e.status === status && /retry later/.test(e.message) &&
        e.attempts === 1);
      assert.equal(srv.requests, 1);
      assert.equal(c.retries, 0);
    } finally { await srv.stop(); }
  }
});

test("maxAttempts bounds the attempts; retry: false turns retrying off", async () => {
  let srv = await fakeServer([], [503, null]);
  try {
    const c = new YoloLossClient(srv.url, { tensors: "dense", shm: "wire", timeout: 20, retry: { maxAttempts: 3 } });
    await assert.rejects(c.compute(outs, { boxes }), (e) => e.status === 503 && e.attempts === 3);
    assert.equal(srv.requests, 3);
    assert.equal(c.retries, 2);
  } finally { await srv.stop(); }

  srv = await fakeServer([], "close");
  try {
    const c = new YoloLossClient(srv.url, { tensors: "dense", shm: "wire", timeout: 20, retry: false });
    await assert.rejects(c.compute(outs, { boxes }), (e) =>
      e.status === null && /\(1 attempt\)/.test(e.message));
    assert.equal(srv.requests, 1);
  } finally { await srv.stop(); }

  // connection refused: the client counts its own attempts
  const c = new YoloLossClient(await refusingUrl(),
    { timeout: 20, retry: new Retry({ maxAttempts: 4 }), tensors: "dense", shm: "wire" });
  await assert.rejects(c.compute(outs, { boxes }), (e) =>
    e.status === null && e.attempts === 4 && /\(4 attempts\)/.test(e.message));
  assert.equal(c.retries, 3);
  assert.throws(() => new Retry({ maxAttempts: 0 }), RangeError);
  assert.throws(() => new YoloLossClient(srv.url, { tensors: "dense", shm: "wire", retry: "often" }), TypeError);
});

test("the deadline: a Retry-After past it is not waited for; a call's own timeout", async () => {
  let srv = await fakeServer([], [503, "30"]);
  try {
    const c = new YoloLossClient(srv.url, { tensors: "dense", shm: "wire", timeout: 5 });
    await assert.rejects(c.compute(outs, { boxes }), (e) => e.status === 503);
    assert.equal(srv.requests, 1);
  } finally { await srv.stop(); }

  srv = await fakeServer([], "hang");
  try {
    const c = new YoloLossClient(srv.url, { tensors: "dense", shm: "wire", timeout: 30 });
    await assert.rejects(c.compute(outs, { boxes, timeout: 0.3 }), (e) =>
      e.status === null && /no answer within the timeout \(0\.3s\)/.test(e.message));
    assert.equal(srv.requests, 1); // a timeout is not retried
  } finally { await srv.stop(); }

  // the timeout a call names is its own, not what was left of it when its last request
  // began (the daemon's extensions took a 1 s Retry-After first: it used to say "1.99..s")
  srv = await fakeServer([[503, "1"], "ok"], "hang");
  try {
    const c = new YoloLossClient(srv.url, { tensors: "auto", shm: "wire", timeout: 30 });
    await assert.rejects(c.compute(outs, { boxes, timeout: 3 }), (e) =>
      e.status === null && /no answer within the timeout \(3s\)/.test(e.message));
    assert.equal(srv.requests, 3);
  } finally { await srv.stop(); }

  // 503s without Retry-After until the deadline: the call ends with the last 503
  srv = await fakeServer([], [503, null]);
  try {
    const c = new YoloLossClient(srv.url, { tensors: "dense", shm: "wire", timeout: 30 });
    await assert.rejects(c.compute(outs, { boxes, timeout: 1 }), (e) =>
      e.status === 503 && e.attempts === srv.requests);
    assert.equal(c.retries, srv.requests - 1);
  } finally { await srv.stop(); }
});
