// compact.js: the compact exact tensors of yololossd's "yololoss_compact" extension
// (docs/protocol.md), built from dense head outputs and ground truth, and the compact
// gradient scattered back to the dense layout. The same rules as the C client's compact.c:
//
// Per layer l the request carries output_l_box [B, H, W, 3, 5] (t_x, t_y, t_w, t_h, t_o of
// every anchor), output_l_rows [N, 5+C] (full rows of the chosen anchors) and
// output_l_index [N] (INT64 flat indices ((b*H + j)*W + i)*3 + k, increasing). The rows are
// a superset of the truth anchors: with boxes all 3 anchors of each box's cell in every
// layer, the cell computed as keras-yolo3's preprocess_true_boxes does (float32 centre
// floor((min + max) / 2), normalised in float32, times the grid in float64, floored; the
// plain float64 cell too when it differs); with y_true the anchors of nonzero objectness.
// Values are copied in the caller's dtype, never converted.

const f32 = Math.fround;

/** B, H, W and 5+C of a 4-D [B,H,W,3*(5+C)] or 5-D [B,H,W,3,5+C] shape, or null. */
function headShape(shape) {
  let row;
  if (shape.length === 4 && shape[3] % 3 === 0) row = shape[3] / 3;
  else if (shape.length === 5 && shape[3] === 3) row = shape[4];
  else return null;
  const [B, H, W] = shape;
  return B > 0 && H > 0 && W > 0 && row >= 5 ? { B, H, W, row } : null;
}

/** Nonzero y_true objectness, from the bits for FP16/BF16 (-0 is zero; NaN is not). */
function nonzero(t, i) {
  if (t.dtype === "FP16" || t.dtype === "BF16") return (t.data[i] & 0x7fff) !== 0;
  return t.data[i] !== 0; // NaN !== 0 is true
}

/**
 * The plan of a compact request, or null when the tensors cannot be read as a batch (odd
 * shapes): then the request goes dense and the daemon names the problem.
 * outputs: [{ name, dtype, shape, data }] (described); boxes or yTrue likewise.
 */
export function planCompact(outputs, boxes, yTrue) {
  const layers = [];
  for (const t of outputs) {
    const s = headShape(t.shape);
    if (!s || (layers.length && (s.B !== layers[0].B || s.row !== layers[0].row))) return null;
    layers.push({ ...s, anchors: s.B * s.H * s.W * 3, src: t });
  }
  const B = layers[0].B;
  const marks = layers.map((p) => new Uint8Array(p.anchors));
  if (boxes) {
    if (boxes.shape.length !== 3 || boxes.shape[0] !== B || boxes.shape[2] !== 5) return null;
    const T = boxes.shape[1], d = boxes.data;
    const inW = 32 * layers[0].W, inH = 32 * layers[0].H;
    const mark = (l, b, i, j) => {
      const p = layers[l];
      if (i < 0 || i >= p.W || j < 0 || j >= p.H) return; // the daemon refuses the box
      const a = ((b * p.H + j) * p.W + i) * 3;
      marks[l][a] = marks[l][a + 1] = marks[l][a + 2] = 1;
    };
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const o = (b * T + t) * 5;
        const x0 = f32(d[o]), y0 = f32(d[o + 1]), x1 = f32(d[o + 2]), y1 = f32(d[o + 3]);
        if (!(f32(x1 - x0) > 0)) continue; // padding: keras tests the width only
        const cx = Math.floor(f32(f32(x0 + x1) / 2)), cy = Math.floor(f32(f32(y0 + y1) / 2));
        if (!Number.isFinite(cx) || !Number.isFinite(cy)) continue;
        layers.forEach((p, l) => {
          const i = Math.floor(f32(cx / inW) * p.W), j = Math.floor(f32(cy / inH) * p.H);
          mark(l, b, i, j);
          const i2 = Math.floor((cx / inW) * p.W), j2 = Math.floor((cy / inH) * p.H);
          if (i2 !== i || j2 !== j) mark(l, b, i2, j2);
        });
      }
    }
  } else {
    if (yTrue.length !== layers.length) return null;
    for (let l = 0; l < layers.length; l++) {
      const s = headShape(yTrue[l].shape), p = layers[l];
      if (!s || s.B !== B || s.H !== p.H || s.W !== p.W) return null;
      for (let a = 0; a < p.anchors; a++) marks[l][a] = nonzero(yTrue[l], a * s.row + 4) ? 1 : 0;
    }
  }
  for (let l = 0; l < layers.length; l++) {
    let n = 0;
    const ml = marks[l];
    for (let a = 0; a < ml.length; a++) n += ml[a];
    const index = new BigInt64Array(n);
    const plain = new Array(n);
    let k = 0;
    for (let a = 0; a < marks[l].length; a++) {
      if (marks[l][a]) {
        plain[k] = a;
        index[k++] = BigInt(a);
      }
    }
    layers[l].index = index;
    layers[l].rows = plain;
  }
  return { B, layers };
}

/** output_l_box, output_l_rows of layer p, in the output's own typed array type. */
export function gatherCompact(p) {
  const src = p.src.data, R = p.row;
  const Ctor = src.constructor;
  const box = new Ctor(p.anchors * 5);
  // element by element: a subarray per anchor costs more than the copy itself
  for (let a = 0, o = 0, b = 0; a < p.anchors; a++, o += R, b += 5) {
    box[b] = src[o];
    box[b + 1] = src[o + 1];
    box[b + 2] = src[o + 2];
    box[b + 3] = src[o + 3];
    box[b + 4] = src[o + 4];
  }
  const rows = new Ctor(p.rows.length * R);
  p.rows.forEach((a, k) => rows.set(src.subarray(a * R, (a + 1) * R), k * R));
  return { box, rows };
}

/** The dense gradient of layer p from grad_l_obj and grad_l_rows (same array type). */
export function scatterCompact(p, obj, rows) {
  const R = p.row;
  const dense = new obj.constructor(p.anchors * R);
  for (let a = 0; a < p.anchors; a++) dense[a * R + 4] = obj[a];
  p.rows.forEach((a, k) => dense.set(rows.subarray(k * R, (k + 1) * R), a * R));
  return dense;
}
