#!/usr/bin/env node
// make-golden-ssd.mjs - golden outputs for face-api's SSD-MobileNetV1 face detector, which
// vultus builds in C (src/face/ssd.c) because face-api ships its weights without a graph.
//
// The forward pass here is written with TF.js ops (TF.js 4.22.0, pure-JS CPU backend) layer for
// layer as face-api 1.7.15 defines it (src/ssdMobilenetv1/: mobileNetV1.ts,
// pointwiseConvLayer.ts, predictionLayer.ts, boxPredictionLayer.ts, outputLayer.ts): TF.js
// computes every op (SAME padding, tf.batchNorm, clipByValue, the box decoding), and the
// weights are dequantised by tf.io.decodeWeights, so the C side is checked against TF.js, not
// against itself.
//
// Usage (from tools/golden): node make-golden-ssd.mjs [--models ../../models] [--out DIR]
// Writes DIR/ssd_mobilenetv1.face.gold (default DIR: tests/face/golden) with the outputs
//   boxes    [1,5118,4]  box encodings (dy, dx, dh, dw) of every anchor
//   classes  [1,5118,3]  class logits (background, face, unused)
//   decoded  [1,5118,4]  boxes (ymin, xmin, ymax, xmax in [0,1]) from face-api's outputLayer
//   scores   [1,5118]    sigmoid of the face logit
// Input "face": face256.rgb (tests/nn/golden) at 512x512 by golden.h's nearest-neighbour rule,
// each value fround(fround(u8 / 255) * 2 - 1), i.e. the [-1, 1] range face-api feeds.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { goldBuffer, nearest } from './gold.mjs';

const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs');

const SCRIPT_DIR = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(SCRIPT_DIR, '..', '..');
const args = { models: path.join(REPO, 'models'), out: path.join(REPO, 'tests', 'face', 'golden') };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--models') args.models = process.argv[++i];
  else if (a === '--out') args.out = process.argv[++i];
  else throw new Error(`unknown argument: ${a}`);
}

const SIZE = 512;
const EPSILON = 0.0010000000474974513;

function loadWeights(manifestPath) {
  const groups = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
  const specs = [];
  const buffers = [];
  for (const g of groups) {
    specs.push(...g.weights);
    for (const p of g.paths) buffers.push(fs.readFileSync(path.join(path.dirname(manifestPath), p)));
  }
  const all = Buffer.concat(buffers);
  return tf.io.decodeWeights(all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength), specs);
}

// nearest neighbour as tests/nn/golden.h: dst index -> src index

function faceInput(rgb) {
  const v = new Float32Array(SIZE * SIZE * 3);
  let k = 0;
  for (let y = 0; y < SIZE; y++) {
    const sy = nearest(y, 256, SIZE);
    for (let x = 0; x < SIZE; x++) {
      const si = (sy * 256 + nearest(x, 256, SIZE)) * 3;
      for (let c = 0; c < 3; c++) v[k++] = Math.fround(Math.fround(rgb[si + c] / 255) * 2 - 1);
    }
  }
  return tf.tensor4d(v, [1, SIZE, SIZE, 3]);
}

function forward(w, x) {
  const pointwise = (t, prefix, strides) => tf.clipByValue(
    tf.add(tf.conv2d(t, w[`${prefix}/weights`], strides, 'same'), w[`${prefix}/convolution_bn_offset`]), 0, 6);
  const depthwise = (t, prefix, strides) => tf.clipByValue(tf.batchNorm(
    tf.depthwiseConv2d(t, w[`${prefix}/depthwise_weights`], strides, 'same'),
    w[`${prefix}/BatchNorm/moving_mean`], w[`${prefix}/BatchNorm/moving_variance`],
    w[`${prefix}/BatchNorm/beta`], w[`${prefix}/BatchNorm/gamma`], EPSILON), 0, 6);
  // mobileNetV1
  let out = pointwise(x, 'MobilenetV1/Conv2d_0_pointwise', [2, 2]);
  let conv11 = null;
  for (let i = 1; i <= 13; i++) {
    const s = [2, 4, 6, 12].includes(i) ? [2, 2] : [1, 1];
    out = depthwise(out, `MobilenetV1/Conv2d_${i}_depthwise`, s);
    out = pointwise(out, `MobilenetV1/Conv2d_${i}_pointwise`, [1, 1]);
    if (i === 11) conv11 = out;
  }
  // predictionLayer
  const p = [];
  let t = out;
  for (let i = 0; i < 8; i++) {
    t = pointwise(t, `Prediction/Conv2d_${i}_pointwise`, i % 2 ? [2, 2] : [1, 1]);
    p.push(t);
  }
  const feats = [conv11, out, p[1], p[3], p[5], p[7]];
  const conv = (f, prefix) => tf.add(tf.conv2d(f, w[`${prefix}/weights`], [1, 1], 'same'), w[`${prefix}/biases`]);
  const boxes = tf.concat(feats.map((f, i) => tf.reshape(conv(f, `Prediction/BoxPredictor_${i}/BoxEncodingPredictor`), [1, -1, 4])), 1);
  const classes = tf.concat(feats.map((f, i) => tf.reshape(conv(f, `Prediction/BoxPredictor_${i}/ClassPredictor`), [1, -1, 3])), 1);
  // outputLayer: decode against the anchors (Output/extra_dim)
  const a = tf.unstack(tf.transpose(tf.reshape(w['Output/extra_dim'], [-1, 4]), [1, 0]));
  const sizes = [tf.sub(a[2], a[0]), tf.sub(a[3], a[1])];
  const centers = [tf.add(a[0], tf.div(sizes[0], 2)), tf.add(a[1], tf.div(sizes[1], 2))];
  const e = tf.unstack(tf.transpose(tf.reshape(boxes, [-1, 4]), [1, 0]));
  const halfH = tf.div(tf.mul(tf.exp(tf.div(e[2], 5)), sizes[0]), 2);
  const cy = tf.add(tf.mul(tf.div(e[0], 10), sizes[0]), centers[0]);
  const halfW = tf.div(tf.mul(tf.exp(tf.div(e[3], 5)), sizes[1]), 2);
  const cx = tf.add(tf.mul(tf.div(e[1], 10), sizes[1]), centers[1]);
  const decoded = tf.reshape(tf.transpose(tf.stack([tf.sub(cy, halfH), tf.sub(cx, halfW), tf.add(cy, halfH), tf.add(cx, halfW)]), [1, 0]), [1, -1, 4]);
  const scores = tf.reshape(tf.slice(tf.sigmoid(classes), [0, 0, 1], [-1, -1, 1]), [1, -1]);
  return { boxes, classes, decoded, scores };
}


async function main() {
  await tf.setBackend('cpu');
  const w = loadWeights(path.join(args.models, 'faceapi', 'ssd_mobilenetv1_model-weights_manifest.json'));
  const rgb = fs.readFileSync(path.join(REPO, 'tests', 'nn', 'golden', 'face256.rgb'));
  const r = forward(w, faceInput(rgb));
  const outputs = [];
  for (const name of ['boxes', 'classes', 'decoded', 'scores'])
    outputs.push({ name, shape: r[name].shape, data: r[name].dataSync() });
  const s = r.scores.dataSync();
  let best = 0;
  for (let i = 1; i < s.length; i++) if (s[i] > s[best]) best = i;
  const d = r.decoded.dataSync().slice(4 * best, 4 * best + 4);
  console.log(`tfjs ${tf.version.tfjs} (${tf.getBackend()}): best anchor ${best} score ${s[best].toFixed(4)} box ${Array.from(d).map((v) => v.toFixed(3)).join(' ')}`);
  fs.mkdirSync(args.out, { recursive: true });
  const file = path.join(args.out, 'ssd_mobilenetv1.face.gold');
  fs.writeFileSync(file, goldBuffer(outputs));
  console.log(`wrote ${file}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
