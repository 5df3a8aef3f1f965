#!/usr/bin/env node
// Times Human (@vladmandic/human) on photos with the TF.js WASM backend in node, in the
// configuration that matches `vultus bench pipeline`'s "analysis" stages: face detector
// (blazeface-back, the same model file), face mesh, description (faceres: embedding, age,
// gender) and emotion; iris, antispoof, liveness, body, hand, object, gesture, segmentation and
// the image filter are off, and the frame cache is disabled (cacheSensitivity 0, skipFrames 0)
// so every call runs every model. Models are read from our models/human folder.
//
//   node bench/pipeline/human-time.mjs [--runs 20] [--warmup 3] [--threads 1,2] IMAGE...
//
// Prints JSON lines like vultus: {"bench":"pipeline","engine":"human-wasm","image":...,
// "threads":N,"stage":"decode"|"analysis"|"total","ms":...}. decode is jpeg-js (a JavaScript
// JPEG decoder: node has no native one in this setup) plus the tensor creation; analysis is
// human.detect() on the decoded tensor; total is their sum. "threads": N runs N node processes
// at once on the same image (TF.js WASM is single-threaded in node), each after its own
// warm-up and a common start; ms are medians over every process's runs and images_per_s is
// the throughput of the N processes together.
import fs from 'fs';
import path from 'path';
import { fork } from 'child_process';
import { createRequire } from 'module';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf('--' + name);
  return i < 0 ? def : args[i + 1];
};
const valued = new Set(['--runs', '--warmup', '--threads', '--models', '--child']);
const images = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && valued.has(args[i - 1])));
const runs = +opt('runs', 20), warmup = +opt('warmup', 3);
const threadsList = String(opt('threads', '1,2')).split(',').map(Number);
const modelsDir = path.resolve(opt('models', path.join(root, 'models/human')));

const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

// --- child: one worker process ------------------------------------------------------------
async function child(image) {
  const tf = await import('@tensorflow/tfjs');
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  const jpeg = (await import('jpeg-js')).default;
  // The package's export map does not list its node-wasm build; load it by file path.
  const require = createRequire(import.meta.url);
  const { Human } = require(path.join(here, 'node_modules/@vladmandic/human/dist/human.node-wasm.js'));
  const wasmDir = path.join(here, 'node_modules/@tensorflow/tfjs-backend-wasm/dist') + path.sep;
  wasm.setWasmPaths(wasmDir);
  const human = new Human({
    backend: 'wasm',
    wasmPath: wasmDir,
    modelBasePath: 'file://' + modelsDir + '/',
    debug: false,
    async: false,
    warmup: 'none',
    cacheSensitivity: 0,
    filter: { enabled: false },
    face: {
      enabled: true,
      detector: { modelPath: 'blazeface-back.json', rotation: false, maxDetected: 100, skipFrames: 0, skipTime: 0, minConfidence: 0.2, return: false },
      mesh: { enabled: true, modelPath: 'facemesh.json' },
      attention: { enabled: false },
      iris: { enabled: false },
      description: { enabled: true, modelPath: 'faceres.json', skipFrames: 0, skipTime: 0 },
      emotion: { enabled: true, modelPath: 'emotion.json', skipFrames: 0, skipTime: 0 },
      antispoof: { enabled: false },
      liveness: { enabled: false },
      gear: { enabled: false },
    },
    body: { enabled: false },
    hand: { enabled: false },
    object: { enabled: false },
    gesture: { enabled: false },
    segmentation: { enabled: false },
  });
  // file:// model URLs need an IO handler in node without tfjs-node: read model.json and its
  // shards from disk, the way bench/nn/tfjs-time.mjs does.
  human.tf.io.registerLoadRouter((url) => {
    const u = Array.isArray(url) ? url[0] : url;
    if (typeof u !== 'string' || !u.startsWith('file://')) return null;
    const file = u.slice('file://'.length);
    return {
      load: async () => {
        const json = JSON.parse(fs.readFileSync(file, 'utf8'));
        const dir = path.dirname(file);
        const weightSpecs = json.weightsManifest.flatMap((g) => g.weights);
        const all = Buffer.concat(json.weightsManifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(dir, p)))));
        return {
          modelTopology: json.modelTopology,
          format: json.format,
          generatedBy: json.generatedBy,
          convertedBy: json.convertedBy,
          signature: json.signature,
          userDefinedMetadata: json.userDefinedMetadata,
          weightSpecs,
          weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
        };
      },
    };
  });
  await human.load();
  const missing = ['blazeface-back', 'facemesh', 'faceres', 'emotion'].filter((m) => !Object.values(human.models.models || {}).some((x) => x && x.modelUrl && x.modelUrl.includes(m)));
  if (missing.length) console.error('human-time: models not seen loaded:', missing.join(', '));
  const bytes = fs.readFileSync(image);
  const decode = () => {
    const t0 = performance.now();
    const raw = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxMemoryUsageInMB: 2048 });
    const tensor = human.tf.tensor3d(raw.data, [raw.height, raw.width, 3], 'int32');
    return { tensor, ms: performance.now() - t0, width: raw.width, height: raw.height };
  };
  const once = async () => {
    const d = decode();
    const t0 = performance.now();
    const res = await human.detect(d.tensor);
    const ms = performance.now() - t0;
    human.tf.dispose(d.tensor);
    return { decode: d.ms, analysis: ms, faces: res.face.length, width: d.width, height: d.height, perf: res.performance };
  };
  let last;
  for (let i = 0; i < warmup; i++) last = await once();
  // Check once that the matched stages really ran: an embedding, age/gender and emotion.
  const check = await human.detect(decode().tensor);
  const f = check.face[0];
  const ran = f ? { mesh: (f.mesh || []).length, embedding: (f.embedding || []).length, age: f.age, gender: f.gender, emotion: (f.emotion || []).length } : null;
  process.stderr.write(`human-time: ${path.basename(image)}: ${check.face.length} face(s); first: ${JSON.stringify(ran)}\n`);
  process.send({ ready: true, backend: human.tf.getBackend(), version: human.version, tfjs: tf.version.tfjs });
  await new Promise((resolve) => process.once('message', resolve));
  const samples = [];
  const tStart = Date.now();
  for (let i = 0; i < runs; i++) samples.push(last = await once());
  const tEnd = Date.now();
  process.send({ samples, tStart, tEnd, faces: last ? last.faces : 0, width: last?.width, height: last?.height });
}

// --- parent: N processes at once per image ------------------------------------------------
async function timeImage(image, n) {
  const kids = [];
  const ready = [];
  const done = [];
  for (let i = 0; i < n; i++) {
    const k = fork(fileURLToPath(import.meta.url), ['--child', image, '--runs', String(runs), '--warmup', String(warmup), '--models', modelsDir], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    kids.push(k);
    ready.push(new Promise((resolve, reject) => {
      k.once('message', resolve);
      k.once('exit', (code) => reject(new Error(`worker exited with ${code} before it was ready`)));
    }));
  }
  const info = await Promise.all(ready);
  for (const k of kids) done.push(new Promise((resolve) => k.on('message', (m) => { if (m.samples) resolve(m); })));
  for (const k of kids) k.send('go');
  const results = await Promise.all(done);
  for (const k of kids) k.kill();
  const all = results.flatMap((r) => r.samples);
  const seconds = (Math.max(...results.map((r) => r.tEnd)) - Math.min(...results.map((r) => r.tStart))) / 1000;
  const perS = all.length / seconds;
  const name = path.basename(image);
  const base = { bench: 'pipeline', engine: 'human-wasm', image: name, threads: n };
  const stages = {
    decode: all.map((s) => s.decode),
    analysis: all.map((s) => s.analysis),
    total: all.map((s) => s.decode + s.analysis),
  };
  for (const [stage, v] of Object.entries(stages)) {
    const line = { ...base, stage, ms: +median(v).toFixed(4) };
    if (stage !== 'decode') Object.assign(line, { images_per_s: +perS.toFixed(4), faces: results[0].faces, width: results[0].width, height: results[0].height, runs, version: info[0].version, backend: info[0].backend });
    console.log(JSON.stringify(line));
  }
}

if (args.includes('--child')) {
  await child(opt('child', null));
} else {
  if (images.length === 0) {
    console.error('usage: node human-time.mjs [--runs N] [--warmup N] [--threads 1,2] IMAGE...');
    process.exit(2);
  }
  for (const image of images) {
    for (const n of threadsList) {
      console.error(`human-time: ${path.basename(image)}, ${n} process${n > 1 ? 'es' : ''}`);
      await timeImage(image, n);
    }
  }
}
