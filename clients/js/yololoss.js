// yololoss.js: a client of yololossd (the keras-yolo3 YOLOv3 loss over the Open Inference
// Protocol v2) for Node 20+ and browsers. No dependencies: fetch, Blob and typed arrays.
//
//   import { YoloLossClient } from "./yololoss.js";
//   const client = new YoloLossClient("http://127.0.0.1:8000", { model: "yolov3-tiny" });
//   const res = await client.compute(
//     [{ data: out13, shape: [1, 13, 13, 255] }, { data: out26, shape: [1, 26, 26, 255] }],
//     { boxes: { data: boxes, shape: [1, T, 5] }, grads: true });
//   res.loss, res.terms.confidence, res.stats.avg_iou[0], res.grads[0] (a Float32Array)
//
// Tensors are { data, shape, dtype? }: data a Float32Array (FP32), a Float64Array (FP64),
// or a Uint16Array of float16 or bfloat16 bit patterns with dtype "FP16" or "BF16"; plain
// arrays of numbers are sent as FP32. Requests use the binary tensor extension (raw
// little-endian bytes after the JSON header); { binary: false } sends JSON numbers.
//
// In a browser the page must come from the daemon's origin (for example through a reverse
// proxy): yololossd sends no CORS headers, and the Inference-Header-Content-Length header
// makes every infer request a preflighted one.
//
// In Node on Linux, against a daemon on the same host, the tensors go through a POSIX
// shared-memory region instead of the socket (shm.js, docs/js-client.md); the answers are
// the same bits.

import { gatherCompact, planCompact, scatterCompact } from "./compact.js";

export const TERM_NAMES = Object.freeze(["xy", "wh", "confidence", "class"]);
export const STAT_NAMES = Object.freeze(["count", "avg_iou", "avg_class", "avg_obj",
  "avg_noobj", "recall50", "recall75", "ignored"]);

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const IS_NODE = typeof process !== "undefined" && !!(process.versions && process.versions.node);
const SHM_MODES = ["auto", "shm", "wire"];
const SHM_ALIGN = 64;        // every tensor's slot in a region starts 64-byte aligned
const SHM_MIN = 1 << 20;     // a region holds at least 1 MiB
const alignUp = (n) => Math.ceil(n / SHM_ALIGN) * SHM_ALIGN;

/** True for the hosts whose /dev/shm is ours: localhost, 127.0.0.0/8, ::1. */
export function isLoopback(host) {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1" ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

// shm.js, imported on first use (it needs node:fs, which a browser does not have)
let shmModule = null;
async function loadShm() {
  if (shmModule === null) shmModule = IS_NODE ? await import("./shm.js") : false;
  return shmModule;
}

/** A failed request. status: the HTTP status, or null when no answer came back;
 * attempts: how many attempts the call made (retries included). */
export class YoloLossError extends Error {
  constructor(status, message, headers = null, attempts = 1) {
    super(status ? `HTTP ${status}: ${message}` : message);
    this.name = "YoloLossError";
    this.status = status;
    this.serverMessage = message;
    this.headers = headers;
    this.attempts = attempts;
  }
}

/** float16 bits -> number (for JSON mode). */
function halfToNumber(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1024 + m) * 2 ** (e - 25);
}

/** Round numbers to bfloat16 bit patterns (nearest even), e.g. for BF16 inputs. */
export function toBF16(values) {
  const f = Float32Array.from(values);
  const u = new Uint32Array(f.buffer);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) {
    const x = u[i];
    out[i] = Number.isNaN(f[i]) ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

function describe(name, t, role) {
  if (t == null || typeof t !== "object" || !("data" in t) || !Array.isArray(t.shape)) {
    throw new TypeError(`${name}: want { data, shape, dtype? }`);
  }
  let { data, dtype } = t;
  if (Array.isArray(data)) data = Float32Array.from(data);
  if (!dtype) {
    if (data instanceof Float32Array) dtype = "FP32";
    else if (data instanceof Float64Array) dtype = "FP64";
    else if (data instanceof Uint16Array) {
      throw new TypeError(`${name}: a Uint16Array needs dtype "FP16" or "BF16"`);
    } else throw new TypeError(`${name}: data must be a Float32Array, Float64Array, ` +
      "Uint16Array (with dtype) or an array of numbers");
  }
  const want = { FP32: Float32Array, FP64: Float64Array, FP16: Uint16Array, BF16: Uint16Array };
  if (!(dtype in want) || !(data instanceof want[dtype])) {
    throw new TypeError(`${name}: dtype ${dtype} does not match ${data.constructor.name}`);
  }
  if (role === "boxes" && (dtype === "FP16" || dtype === "BF16")) {
    throw new TypeError(`${name}: boxes are FP32 or FP64`);
  }
  const shape = t.shape.map((d) => {
    if (!Number.isInteger(d) || d < 0) throw new TypeError(`${name}: bad shape ${t.shape}`);
    return d;
  });
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new TypeError(`${name}: shape [${shape}] holds ${count} values, data has ${data.length}`);
  }
  return { name, dtype, shape, data };
}

function jsonNumbers(t) {
  const out = new Array(t.data.length);
  for (let i = 0; i < t.data.length; i++) {
    const v = t.dtype === "FP16" ? halfToNumber(t.data[i]) : t.data[i];
    if (!Number.isFinite(v)) {
      throw new RangeError(`${t.name}: element ${i} is ${v}, which JSON cannot carry`);
    }
    out[i] = v;
  }
  return out;
}

/** Milliseconds asked for by a Retry-After value (delay-seconds or an HTTP-date), or null
 * when absent or unreadable. */
function retryAfterMs(value) {
  if (value == null) return null;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v) * 1000;
  const when = Date.parse(v);
  return Number.isNaN(when) ? null : Math.max(0, when - Date.now());
}

// Transport failures worth another attempt: the connection was refused, reset or closed
// without an answer (a daemon restarting, a proxy's backend going away). A timeout is not:
// the deadline is spent.
const RETRYABLE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "EPIPE",
  "UND_ERR_SOCKET", "UND_ERR_CLOSED"]);
const RETRYABLE_STATUSES = new Set([502, 503, 504]);

function causeCode(e) {
  for (let c = e; c; c = c.cause) if (typeof c.code === "string") return c.code;
  return null;
}

/** How a call is retried (the same policy as the Python and C clients).
 *  maxAttempts: attempts in all, the first included (null: as many as the deadline allows;
 *  1: no retry); backoffBase, backoffMax: seconds (0.1 doubling to 5). The wait before
 *  retry n (0-based) is the answer's Retry-After when it has one, else a uniform draw in
 *  [0, min(backoffMax, backoffBase * 2^n)] ("full jitter"). */
export class Retry {
  constructor({ maxAttempts = null, backoffBase = 0.1, backoffMax = 5 } = {}) {
    if (maxAttempts != null && !(Number.isInteger(maxAttempts) && maxAttempts >= 1)) {
      throw new RangeError("Retry maxAttempts must be an integer >= 1 (or null)");
    }
    if (!(backoffBase >= 0 && backoffMax >= 0)) {
      throw new RangeError("Retry backoff times must not be negative");
    }
    this.maxAttempts = maxAttempts;
    this.backoffBase = backoffBase;
    this.backoffMax = backoffMax;
    Object.freeze(this);
  }

  static off() { return new Retry({ maxAttempts: 1 }); }

  /** Seconds of the full-jitter wait before retry n (0-based). */
  backoff(n) {
    return Math.random() * Math.min(this.backoffMax, this.backoffBase * 2 ** Math.min(n, 60));
  }
}

function asRetry(value) {
  if (value == null || value === true) return new Retry();
  if (value === false) return Retry.off();
  if (value instanceof Retry) return value;
  if (typeof value === "object") return new Retry(value);
  throw new TypeError(`retry must be a Retry, an options object, true or false, not ${value}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The answer of one compute(). */
export class Result {
  constructor(outputs, header) {
    this.outputs = outputs; // name -> { data: Float32Array, shape }
    this.modelName = header.model_name;
    this.id = header.id;
    this.loss = outputs.loss.data[0];
    this.terms = Object.fromEntries(TERM_NAMES.map((n, k) => [n, outputs.loss_terms.data[k]]));
    const rows = (o) => Array.from({ length: o.shape[0] },
      (_, i) => o.data.subarray(i * o.shape[1], (i + 1) * o.shape[1]));
    this.layerTerms = rows(outputs.layer_terms);
    this.imageTerms = rows(outputs.image_terms);
    const L = outputs.stats.shape[0];
    this.stats = Object.fromEntries(STAT_NAMES.map((n, k) =>
      [n, Float32Array.from({ length: L }, (_, l) => outputs.stats.data[l * 8 + k])]));
    this.grads = null;       // per layer, dense: Float32Array (FP32) or Float64Array (FP64)
    this.gradShapes = null;
    this.compactGrads = null; // per layer { obj, rows, index } with gradLayout "compact"
    this.compact = false;     // the request sent compact tensors
    this.sharedMemory = false; // the tensors went through a shared-memory region
    this.bytesSent = 0;
    this.bytesReceived = 0;
    if (outputs.grad_0) {
      this.grads = [];
      this.gradShapes = [];
      for (let l = 0; `grad_${l}` in outputs; l++) {
        this.grads.push(outputs[`grad_${l}`].data);
        this.gradShapes.push(outputs[`grad_${l}`].shape);
      }
    }
  }
}

/** The answer's header and outputs; those asked for in shared memory (placed: name ->
 * offset) are read from region (a registered shm.js Region, or null). The daemon answers
 * them as Triton does, with name, datatype and shape only. */
function parseAnswer(buf, headers, region = null, placed = new Map()) {
  const bytes = new Uint8Array(buf);
  const hl = headers.get("inference-header-content-length");
  const hlen = hl == null ? bytes.length : Number(hl);
  if (!Number.isInteger(hlen) || hlen < 0 || hlen > bytes.length) {
    throw new YoloLossError(200, `malformed answer: Inference-Header-Content-Length ${hl}`);
  }
  let header;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(0, hlen)));
  } catch (e) {
    throw new YoloLossError(200, `malformed answer: ${e.message}`);
  }
  let off = hlen;
  const outputs = {};
  for (const o of header.outputs || []) {
    const Ctor = { FP32: Float32Array, FP64: Float64Array, INT64: BigInt64Array }[o.datatype];
    if (!Ctor) throw new YoloLossError(200, `output ${o.name}: ${o.datatype}`);
    const n = o.shape.reduce((a, b) => a * b, 1);
    const size = o.parameters && o.parameters.binary_data_size;
    let data;
    if (region && placed.has(o.name) && size == null && o.data === undefined) {
      const at = placed.get(o.name), want = Ctor.BYTES_PER_ELEMENT * n;
      if (at + want > region.size) {
        throw new YoloLossError(200, `output ${o.name}: outside the shared-memory region`);
      }
      data = new Ctor(region.read(at, want));
    } else if (size != null) {
      if (size !== Ctor.BYTES_PER_ELEMENT * n || off + size > bytes.length) {
        throw new YoloLossError(200, `output ${o.name}: ${size} bytes for shape [${o.shape}]`);
      }
      data = new Ctor(buf.slice(off, off + size)); // aligned, owned
      off += size;
    } else {
      data = Ctor.from(o.data.flat(Infinity));
    }
    outputs[o.name] = { data, shape: o.shape };
  }
  return { header, outputs };
}

export class YoloLossClient {
  /**
   * @param {string} url  "http://127.0.0.1:8000" (a path prefix is kept)
   * @param {{model?: string, token?: string, timeout?: number, retry?: Retry|object|boolean,
   *          tensors?: "auto"|"compact"|"dense", shm?: "auto"|"shm"|"wire",
   *          version?: string, fetch?: typeof fetch}}
   *   options  timeout: the deadline of one call in seconds, retries included (default 60;
   *   compute takes its own); retry: the retry policy (a Retry, its options, true: the
   *   default, false: no retry); tensors: "auto" (default) sends the compact exact tensors
   *   when the daemon offers "yololoss_compact", "compact" always, "dense" never; shm:
   *   "auto" (default) carries the tensors in a shared-memory region when this is Node on
   *   Linux, the URL's host is loopback and the daemon offers "system_shared_memory" (a
   *   refused registration switches the client to the wire for good), "shm" always
   *   (failures throw), "wire" never. Call close() to unregister the regions.
   */
  constructor(url = "http://127.0.0.1:8000", options = {}) {
    if (!LITTLE_ENDIAN) throw new Error("yololoss.js needs a little-endian platform");
    this.url = url.replace(/\/+$/, "");
    this.model = options.model ?? "yolov3";
    this.version = options.version ?? null;
    this.token = options.token ?? null;
    this.timeout = options.timeout ?? 60;
    this.retry = asRetry(options.retry);
    this.tensors = options.tensors ?? "auto";
    if (!["auto", "compact", "dense"].includes(this.tensors)) {
      throw new TypeError(`tensors must be "auto", "compact" or "dense", not ${this.tensors}`);
    }
    this.shm = options.shm ?? "auto";
    if (!SHM_MODES.includes(this.shm)) {
      throw new TypeError(`shm must be "auto", "shm" or "wire", not ${this.shm}`);
    }
    this._extensions = null; // the daemon's, read once (GET /v2)
    // on loopback compressing a dense gradient costs the daemon more than it saves: ask for
    // answers as they are (Node's fetch asks for gzip by default; browsers ignore this)
    let host = "";
    try { host = new URL(this.url).hostname; } catch { /* fetch reports the bad URL */ }
    this._loopback = isLoopback(host);
    this.retries = 0;
    this._fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    // shared memory: every registered region, and those no call in flight holds (calls in
    // flight at once each hold their own: one region's bytes serve one request at a time)
    this._regions = new Set();
    this._free = [];
    this._shmFailed = false; // a registration was refused: the wire from now on
    this._leftovers = null;  // shm.js's record of our regions, for the exit and GC cleanup
  }

  /** Unregister this client's shared-memory regions (one attempt each: a daemon that is
   * gone has dropped them) and close their objects. The client stays usable. */
  async close() {
    const regions = [...this._regions];
    this._regions.clear();
    this._free.length = 0;
    await Promise.all(regions.map((r) => this._unregister(r)));
  }

  // ---- shared memory ----

  async _useShm(mode, timeout) {
    if (mode === "wire") return false;
    if (mode === "shm") return true;
    if (this._shmFailed || !this._loopback || !IS_NODE) return false;
    const lib = await loadShm();
    if (!lib || !lib.available()) return false;
    return (await this._daemonExtensions(timeout)).includes("system_shared_memory");
  }

  /** A registered region of at least size bytes that no call in flight holds; null: use the
   * wire (auto mode, registration refused). */
  async _acquire(size, mode, timeout) {
    const fit = this._free.findIndex((r) => r.size >= size);
    if (fit >= 0) return this._free.splice(fit, 1)[0];
    let grow = 0;
    if (this._free.length) { // too small: make room for a larger one
      const small = this._free.shift();
      this._regions.delete(small);
      grow = 2 * small.size;
      await this._unregister(small);
    }
    let r;
    try {
      const lib = await loadShm();
      if (!lib) throw new Error("shared memory needs Node on Linux (/dev/shm)");
      r = new lib.Region(Math.max(size, grow, SHM_MIN));
    } catch (e) {
      if (mode === "shm") {
        throw new YoloLossError(null, `cannot create a shared-memory object: ${e.message}`);
      }
      this._shmFailed = true;
      return null;
    }
    try {
      const body = new TextEncoder().encode(JSON.stringify({ key: r.key, offset: 0, byte_size: r.size }));
      const resp = await this._request("POST",
        `/v2/systemsharedmemory/region/${encodeURIComponent(r.name)}/register`, body,
        { "Content-Type": "application/json" }, timeout);
      if (resp.status !== 200) {
        const err = await this._error(resp);
        r.close();
        if (mode === "shm") throw err;
        this._shmFailed = true; // another host, another /dev/shm, another user
        return null;
      }
      await resp.arrayBuffer();
    } catch (e) {
      r.close();
      throw e;
    } finally {
      r.unlink(); // registered (the daemon has mapped it) or not: the name is not needed
    }
    this._regions.add(r);
    if (this._leftovers === null) this._leftovers = shmModule.leftovers(this, this._releaser());
    this._leftovers.add(r);
    return r;
  }

  /** What unregisters a region left behind (at exit, or once this client is collected):
   * it holds the URL and token, not the client. */
  _releaser() {
    const url = this.url, token = this.token, fetchFn = this._fetch;
    return async (r) => {
      const headers = token ? { Authorization: `Bearer ${token}` } : {};
      try {
        const resp = await fetchFn(`${url}/v2/systemsharedmemory/region/${encodeURIComponent(r.name)}/unregister`,
          { method: "POST", headers, signal: AbortSignal.timeout(2000) });
        await resp.arrayBuffer();
      } catch { /* the daemon is gone, and so is the region */ }
      r.close();
    };
  }

  async _unregister(r) {
    if (this._leftovers) this._leftovers.delete(r);
    try {
      const resp = await this._request("POST",
        `/v2/systemsharedmemory/region/${encodeURIComponent(r.name)}/unregister`,
        new Uint8Array(0), {},
        5, Retry.off());
      await resp.arrayBuffer();
    } catch { /* the daemon is gone (not retried): so is the region */ }
    r.close();
  }

  /** Drop a region the daemon no longer knows (restarted, or unregistered by someone). */
  _forget(r) {
    this._regions.delete(r);
    if (this._leftovers) this._leftovers.delete(r);
    r.close();
  }

  _modelPath(model, suffix = "") {
    let p = `/v2/models/${encodeURIComponent(model ?? this.model)}`;
    if (this.version != null) p += `/versions/${encodeURIComponent(this.version)}`;
    return p + suffix;
  }

  /** One exchange with retries (see Retry), all within timeout seconds (default: the
   * client's), or within what is left of a call's budget ({seconds, deadline}: compute's,
   * so that a timeout names the call's own seconds, not the part of them left): the fetch
   * Response (body unread). body must be replayable (a Blob or bytes). */
  async _request(method, path, body = null, headers = {}, timeout = null, retry = null) {
    const h = { ...headers };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    if (this._loopback) h["Accept-Encoding"] = "identity";
    const budget = typeof timeout === "object" && timeout !== null ? timeout : null;
    const limit = budget ? budget.seconds : timeout ?? this.timeout;
    const deadline = budget ? budget.deadline : Date.now() + limit * 1000;
    const policy = retry ?? this.retry;
    for (let attempt = 1; ; attempt++) {
      let resp = null, failure = null, asked = null;
      try {
        resp = await this._fetch(this.url + path, {
          method, headers: h, body,
          signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
        });
      } catch (e) {
        if (e.name === "TimeoutError" || e.name === "AbortError") {
          throw new YoloLossError(null, `${method} ${this.url}${path}: no answer within the ` +
            `timeout (${limit}s)`, null, attempt);
        }
        const why = (e.cause && e.cause.message) || e.message;
        failure = new YoloLossError(null, `${method} ${this.url}${path}: ${why} (${attempt} ` +
          `attempt${attempt === 1 ? "" : "s"})`, null, attempt);
        if (!RETRYABLE_CODES.has(causeCode(e))) throw failure;
      }
      if (resp) {
        resp.attempts = attempt;
        if (!RETRYABLE_STATUSES.has(resp.status)) return resp;
        asked = retryAfterMs(resp.headers.get("retry-after"));
      }
      const wait = asked ?? policy.backoff(attempt - 1) * 1000;
      if ((policy.maxAttempts != null && attempt >= policy.maxAttempts) ||
          Date.now() + wait >= deadline) {
        if (resp) return resp;
        throw failure;
      }
      if (resp) await resp.arrayBuffer().catch(() => null);
      this.retries++;
      await sleep(wait);
    }
  }

  async _error(resp) {
    const text = await resp.text().catch(() => "");
    let msg = text.trim() || resp.statusText;
    try {
      const j = JSON.parse(text);
      if (j && typeof j.error === "string") msg = j.error;
    } catch { /* not JSON */ }
    return new YoloLossError(resp.status, msg, resp.headers, resp.attempts ?? 1);
  }

  async _getJSON(path) {
    const resp = await this._request("GET", path);
    if (resp.status !== 200) throw await this._error(resp);
    return resp.json();
  }

  async _ok(path) {
    const resp = await this._request("GET", path);
    await resp.arrayBuffer();
    return resp.status === 200;
  }

  live() { return this._ok("/v2/health/live"); }
  ready() { return this._ok("/v2/health/ready"); }
  modelReady(model) { return this._ok(this._modelPath(model, "/ready")); }
  serverMetadata() { return this._getJSON("/v2"); }
  modelMetadata(model) { return this._getJSON(this._modelPath(model)); }
  modelConfig(model) {
    return this._getJSON(`/v2/models/${encodeURIComponent(model ?? this.model)}/config`);
  }
  statistics(model) {
    return this._getJSON(model === "*" ? "/v2/models/stats"
      : `/v2/models/${encodeURIComponent(model ?? this.model)}/stats`);
  }

  /** The daemon's extensions (GET /v2), read once; [] when it does not say. */
  async _daemonExtensions(timeout) {
    if (this._extensions === null) {
      const resp = await this._request("GET", "/v2", null, {}, timeout);
      let ext = [];
      if (resp.status === 200) {
        const j = await resp.json().catch(() => null);
        if (j && Array.isArray(j.extensions)) ext = j.extensions;
      } else {
        await resp.arrayBuffer().catch(() => null);
      }
      if (resp.status >= 500) return ext; // may be passing: ask again next time
      this._extensions = ext;
    }
    return this._extensions;
  }

  /**
   * The loss of one batch.
   * @param {Array<{data, shape, dtype?}>} outputs  the L raw head outputs, NHWC:
   *   [B, H, W, 3*(5+C)] or [B, H, W, 3, 5+C], coarsest grid first
   * @param {{boxes?, yTrue?, grads?: boolean, ignoreThresh?: number,
   *          anchors?: string|number[], run?: string, step?: number, binary?: boolean,
   *          requestId?: string, timeout?: number, gradDatatype?: "FP32"|"FP64",
   *          gradLayout?: "dense"|"compact", shm?: "auto"|"shm"|"wire"}} options
   *   exactly one of boxes [B, T, 5]
   *   (pixels: x_min, y_min, x_max, y_max, class) or yTrue (L dense tensors); timeout: this
   *   call's deadline in seconds, retries included (default: the client's); gradDatatype
   *   "FP64": gradients computed in double and never rounded (Float64Array); gradLayout
   *   "compact": a compact call's gradient as sent ({ obj, rows, index } per layer in
   *   res.compactGrads) instead of dense; shm: this call's choice instead of the client's
   *   (binary: false always uses the wire)
   * @returns {Promise<Result>}
   */
  async compute(outputs, options = {}) {
    const { boxes, yTrue, grads = false, ignoreThresh, anchors, run, step,
      binary = true, requestId, timeout = null, gradDatatype = "FP32",
      gradLayout = "dense", shm = this.shm } = options;
    if (!Array.isArray(outputs) || outputs.length === 0) {
      throw new TypeError("outputs must be a non-empty array of tensors");
    }
    if ((boxes == null) === (yTrue == null)) {
      throw new TypeError("give exactly one of boxes and yTrue");
    }
    if (gradDatatype !== "FP32" && gradDatatype !== "FP64") {
      throw new TypeError(`gradDatatype must be "FP32" or "FP64", not ${gradDatatype}`);
    }
    if (gradLayout !== "dense" && gradLayout !== "compact") {
      throw new TypeError(`gradLayout must be "dense" or "compact", not ${gradLayout}`);
    }
    if (!SHM_MODES.includes(shm)) {
      throw new TypeError(`shm must be "auto", "shm" or "wire", not ${shm}`);
    }
    const outs = outputs.map((t, l) => describe(`output_${l}`, t, "output"));
    const bx = boxes != null ? describe("boxes", boxes, "boxes") : null;
    const yt = bx ? null : yTrue.map((t, l) => describe(`y_true_${l}`, t, "y_true"));
    const seconds = timeout ?? this.timeout;
    const budget = { seconds, deadline: Date.now() + seconds * 1000 }; // the whole call's

    let compact = this.tensors === "compact";
    if (this.tensors === "auto") {
      compact = (await this._daemonExtensions(budget)).includes("yololoss_compact");
    }
    let plan = compact ? planCompact(outs, bx, yt) : null; // null: odd shapes, sent dense
    for (;;) {
      try {
        return await this._infer(outs, bx, yt, plan, { grads, ignoreThresh, anchors, run, step,
          binary, requestId, gradDatatype, gradLayout, shm, budget });
      } catch (e) {
        // a compact request the daemon finds short of a truth row (the contract says it
        // cannot happen): the dense request is the authority
        if (plan && this.tensors === "auto" && e instanceof YoloLossError && e.status === 400 &&
            /no row for the truth anchor/.test(e.serverMessage)) {
          plan = null;
          continue;
        }
        throw e;
      }
    }
  }

  async _infer(outs, bx, yt, plan, o) {
    const tensors = [];
    if (plan) {
      plan.layers.forEach((p, l) => {
        const { box, rows } = gatherCompact(p);
        const dtype = outs[l].dtype;
        tensors.push({ name: `output_${l}_box`, dtype, shape: [p.B, p.H, p.W, 3, 5], data: box });
        tensors.push({ name: `output_${l}_rows`, dtype, shape: [p.rows.length, p.row], data: rows });
        tensors.push({ name: `output_${l}_index`, dtype: "INT64", shape: [p.rows.length],
          data: p.index, plain: p.rows });
      });
    } else {
      tensors.push(...outs);
    }
    if (bx) tensors.push(bx);
    else tensors.push(...yt);
    // the gradient outputs and their bytes
    const g = o.gradDatatype === "FP64" ? 8 : 4;
    const gradOuts = [];
    if (o.grads) {
      outs.forEach((t, l) => {
        if (plan) {
          const p = plan.layers[l];
          gradOuts.push([`grad_${l}_obj`, g * p.anchors], [`grad_${l}_rows`, g * p.rows.length * p.row]);
        } else {
          gradOuts.push([`grad_${l}`, g * t.data.length]);
        }
      });
    }
    // binary: false (JSON numbers) always goes by the wire
    const useShm = o.binary && await this._useShm(o.shm, o.budget);
    let shmBytes = 0;
    if (useShm) {
      for (const t of tensors) shmBytes += alignUp(t.data.byteLength);
      for (const [, n] of gradOuts) shmBytes += alignUp(n);
    }
    for (let again = false; ; again = true) {
      const region = useShm ? await this._acquire(shmBytes, o.shm, o.budget) : null;
      try {
        return await this._exchange(outs, tensors, gradOuts, plan, region, o);
      } catch (e) {
        // the daemon lost our region (it restarted, or someone unregistered it): forget it,
        // register a new one, send again (once)
        if (again || !region || !(e instanceof YoloLossError) || e.status !== 400 ||
            !e.serverMessage.includes(`no shared-memory region '${region.name}'`)) throw e;
        this._forget(region);
      } finally {
        if (region && this._regions.has(region)) this._free.push(region);
      }
    }
  }

  /** One infer request: the inputs in the body or written into region, the gradients
   * answered in the body or in region. */
  /**
   * One-shot detection evaluation on the daemon's evaluation models (docs/protocol.md):
   * pycocotools' COCOeval (bbox) for "coco-bbox", py-faster-rcnn's voc_eval for "voc07" /
   * "voc", the same float64 values.
   * @param {{images: {id: number}[], annotations: object[], categories: {id: number}[]}} gt
   *   a COCO-format dataset (annotations: image_id, category_id, bbox [x, y, w, h], area,
   *   iscrowd, difficult, id)
   * @param {{image_id: number, category_id: number, bbox: number[], score: number}[]} dt
   *   results as COCO's result files hold them
   * @param {{model?: string, params?: object, timeout?: number}} options  params:
   *   pycocotools' Params by name (iouThrs, recThrs, maxDets, areaRng, areaRngLbl, useCats,
   *   imgIds, catIds); model: "coco-bbox" (default), "voc07" or "voc"
   * @returns {Promise<object>} coco-bbox: {stats: number[12], ap: Float64Array (per
   *   category), precision / recall / scores: {data: Float64Array, shape}, counts: number[]};
   *   voc*: {ap: {data, shape: [T, K]}, map: number[], counts}
   */
  async evaluate(gt, dt, options = {}) {
    const anns = gt.annotations ?? [];
    const col = (Ctor, rows, f) => Ctor.from(rows.flatMap(f));
    const ids = (Ctor, v) => Ctor.from([...new Set(v.map(Number))].sort((a, b) => a - b),
      (x) => BigInt(x));
    const big = (rows, f) => BigInt64Array.from(rows.map(f), (x) => BigInt(x));
    const tensors = [
      ["gt_image_id", big(anns, (a) => a.image_id)],
      ["gt_category_id", big(anns, (a) => a.category_id)],
      ["gt_bbox", col(Float64Array, anns, (a) => a.bbox.map(Number)), 4],
      // pycocotools reads "area"; an annotation without one gets w * h (docs/metrics.md)
      ["gt_area", col(Float64Array, anns, (a) => [a.area ?? a.bbox[2] * a.bbox[3]])],
      ["gt_iscrowd", Int32Array.from(anns, (a) => (a.iscrowd ? 1 : 0))],
      ["gt_difficult", Int32Array.from(anns, (a) => (a.difficult ? 1 : 0))],
      ["gt_id", big(anns.map((a, i) => a.id ?? i + 1), (x) => x)],
      ["dt_image_id", big(dt, (d) => d.image_id)],
      ["dt_category_id", big(dt, (d) => d.category_id)],
      ["dt_bbox", col(Float64Array, dt, (d) => d.bbox.map(Number)), 4],
      ["dt_score", Float64Array.from(dt, (d) => Number(d.score))],
      ["image_ids", ids(BigInt64Array, (gt.images ?? []).map((i) => i.id))],
      ["category_ids", ids(BigInt64Array, (gt.categories ?? []).map((c) => c.id))],
    ];
    const type = { Float64Array: "FP64", BigInt64Array: "INT64", Int32Array: "INT32" };
    const inputs = tensors.map(([name, data, w]) => ({
      name, datatype: type[data.constructor.name],
      shape: w ? [data.length / w, w] : [data.length],
      parameters: { binary_data_size: data.byteLength },
    }));
    const parameters = { binary_data_output: true };
    for (const [k, v] of Object.entries(options.params ?? {})) {
      // Open Inference Protocol parameters are scalars: lists travel as their JSON text
      parameters[k] = typeof v === "object" ? JSON.stringify(ArrayBuffer.isView(v) ? [...v] : v)
        : String(v);
    }
    const header = new TextEncoder().encode(JSON.stringify({ inputs, parameters }));
    const blobs = tensors.map(([, d]) => new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    const model = options.model ?? "coco-bbox";
    const resp = await this._request("POST", this._modelPath(model, "/infer"),
      new Blob([header, ...blobs]), {
        "Inference-Header-Content-Length": String(header.length),
        "Content-Type": "application/octet-stream",
      }, options.timeout ?? null);
    if (resp.status !== 200) throw await this._error(resp);
    const { outputs } = parseAnswer(await resp.arrayBuffer(), resp.headers);
    const out = {};
    for (const [name, o] of Object.entries(outputs)) {
      if (name === "counts") out.counts = Array.from(o.data, Number);
      else if (name === "stats" || name === "map") out[name] = Array.from(o.data);
      else if (name === "ap" && o.shape.length === 1) out.ap = o.data;
      else out[name] = o;
    }
    return out;
  }

  async _exchange(outs, tensors, gradOuts, plan, region, o) {
    const blobs = [];
    let off = 0;
    const inputs = tensors.map((t) => {
      const d = { name: t.name, shape: t.shape, datatype: t.dtype };
      if (region) {
        const n = t.data.byteLength;
        if (n) region.write(off, t.data);
        d.parameters = { shared_memory_region: region.name, shared_memory_offset: off,
          shared_memory_byte_size: n };
        off += alignUp(n);
      } else if (o.binary || t.dtype === "BF16") {
        d.parameters = { binary_data_size: t.data.byteLength };
        if (t.data.length) {
          blobs.push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
        }
      } else {
        d.data = t.dtype === "INT64" ? t.plain : jsonNumbers(t);
      }
      return d;
    });
    const names = ["loss", "loss_terms", "layer_terms", "image_terms", "stats"];
    const wanted = names.map((name) => ({ name, parameters: { binary_data: o.binary } }));
    const placed = new Map();
    for (const [name, n] of gradOuts) {
      if (region) {
        placed.set(name, off);
        wanted.push({ name, parameters: { shared_memory_region: region.name,
          shared_memory_offset: off, shared_memory_byte_size: n } });
        off += alignUp(n);
      } else {
        wanted.push({ name, parameters: { binary_data: o.binary } });
      }
    }
    const req = { inputs, outputs: wanted };
    const params = {};
    if (o.ignoreThresh != null) params.ignore_thresh = Number(o.ignoreThresh);
    if (o.anchors != null) {
      params.anchors = Array.isArray(o.anchors) ? o.anchors.join(",") : String(o.anchors);
    }
    if (o.run != null) params.run = String(o.run);
    if (o.step != null) {
      if (!Number.isSafeInteger(o.step)) throw new TypeError("step must be an integer");
      params.step = o.step;
    }
    if (o.grads && o.gradDatatype === "FP64") params.grad_datatype = "FP64";
    if (Object.keys(params).length) req.parameters = params;
    if (o.requestId != null) req.id = String(o.requestId);

    const header = new TextEncoder().encode(JSON.stringify(req));
    const headers = {};
    let body;
    if (blobs.length) {
      headers["Inference-Header-Content-Length"] = String(header.length);
      headers["Content-Type"] = "application/octet-stream";
      body = new Blob([header, ...blobs]);
    } else {
      headers["Content-Type"] = "application/json";
      body = header;
    }
    const resp = await this._request("POST", this._modelPath(null, "/infer"), body, headers,
      o.budget);
    if (resp.status !== 200) throw await this._error(resp);
    const buf = await resp.arrayBuffer();
    const { header: h, outputs: got } = parseAnswer(buf, resp.headers, region, placed);
    const res = new Result(got, h);
    res.compact = plan !== null;
    res.sharedMemory = region !== null;
    res.bytesSent = body.size ?? body.byteLength;
    res.bytesReceived = buf.byteLength;
    if (plan && o.grads) {
      const want = o.gradDatatype === "FP64" ? Float64Array : Float32Array;
      const gs = plan.layers.map((p, l) => {
        const obj = got[`grad_${l}_obj`], rows = got[`grad_${l}_rows`];
        if (!obj || !rows || !(obj.data instanceof want) || obj.data.length !== p.anchors ||
            rows.data.length !== p.rows.length * p.row) {
          throw new YoloLossError(200, `malformed answer: grad_${l}_obj/grad_${l}_rows`);
        }
        return { obj: obj.data, rows: rows.data, index: p.index };
      });
      if (o.gradLayout === "compact") {
        res.compactGrads = gs;
      } else {
        res.grads = gs.map((g, l) => scatterCompact(plan.layers[l], g.obj, g.rows));
        res.gradShapes = outs.map((t) => t.shape);
      }
    }
    return res;
  }
}
