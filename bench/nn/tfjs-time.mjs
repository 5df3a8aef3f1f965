#!/usr/bin/env node
// Times a TF.js graph model with the WASM backend (@tensorflow/tfjs-backend-wasm, the XNNPACK
// build TF.js ships) in node, the same way `vultus bench nn` and ../shared/anchors/ort-time.mjs
// time it: same pseudo-random input, warm-up runs, median of timed runs. Prints one JSON line.
//
//   node bench/nn/tfjs-time.mjs models/human/NAME.json [--batch 1] [--threads 1] [--runs 20]
//                               [--warmup 5] [--gmacs G]
//
// --gmacs: multiply-adds per image in billions (TF.js does not count them; bench/nn/run passes
// the figure `vultus bench nn` printed) so the line can carry gflops like the others.
// "threads" is the thread count asked for; "threads_used" what the backend reports it uses
// (the threaded WASM build needs worker threads, which TF.js may not enable in node).
import fs from 'fs';
import path from 'path';
import { fileURLToPath } from 'url';
import * as tf from '@tensorflow/tfjs';
import * as wasm from '@tensorflow/tfjs-backend-wasm';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf('--' + name);
  return i < 0 ? def : args[i + 1];
};
const file = args.find((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1].startsWith('--')));
if (!file) {
  console.error('usage: node tfjs-time.mjs MODEL.json [--batch N] [--threads N] [--runs N] [--warmup N] [--gmacs G]');
  process.exit(2);
}
const batch = +opt('batch', 1), threads = +opt('threads', 1);
const runs = +opt('runs', 20), warmup = +opt('warmup', 5);
const gmacs = opt('gmacs', null) === null ? null : +opt('gmacs', null);
const name = path.basename(file).replace(/\.json$/, '');

// The WASM binaries from this folder's node_modules, read from disk (no fetch).
const here = path.dirname(fileURLToPath(import.meta.url));
wasm.setWasmPaths(path.join(here, 'node_modules/@tensorflow/tfjs-backend-wasm/dist') + path.sep);
if (wasm.setThreadsCount) wasm.setThreadsCount(threads);
if (!(await tf.setBackend('wasm'))) {
  console.error('tfjs-time: the wasm backend did not initialise');
  process.exit(1);
}
await tf.ready();
const threadsUsed = wasm.getThreadsCount ? wasm.getThreadsCount() : 1;

// An IO handler that reads model.json and its shards from disk.
const dir = path.dirname(file);
const json = JSON.parse(fs.readFileSync(file, 'utf8'));
const handler = {
  load: async () => {
    const weightSpecs = json.weightsManifest.flatMap((g) => g.weights);
    const shards = json.weightsManifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(dir, p))));
    const all = Buffer.concat(shards);
    return {
      modelTopology: json.modelTopology,
      format: json.format,
      generatedBy: json.generatedBy,
      convertedBy: json.convertedBy,
      signature: json.signature,
      userDefinedMetadata: json.userDefinedMetadata,
      modelInitializer: json.modelInitializer,
      weightSpecs,
      weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
    };
  },
};
const model = await tf.loadGraphModel(handler);

// The same input as vultus and ort-time.mjs: one LCG sequence over the whole batch.
const declared = model.inputs[0].shape;
if (declared[0] > 0 && declared[0] !== batch) {
  console.error(`tfjs-time: ${name}: the graph fixes the batch at ${declared[0]}; batch ${batch} skipped`);
  process.exit(3);
}
const shape = declared.map((d, i) => (i === 0 ? batch : d));
const per = shape.slice(1).reduce((a, b) => a * b, 1);
const data = new Float32Array(per * batch);
let s = 937;
for (let i = 0; i < data.length; i++) {
  s = (s * 1103515245 + 12345) >>> 0;
  data[i] = (s >>> 8) / 16777216;
}
const input = tf.tensor(data, shape, 'float32');

// One call: run the graph and read every output back, as the other engines do.
const once = async () => {
  let out = model.execute(input);
  out = Array.isArray(out) ? out : [out];
  for (const t of out) t.dataSync();
  tf.dispose(out);
};
try {
  for (let i = 0; i < warmup; i++) await once();
} catch (e) {
  console.error(`tfjs-time: ${name} batch ${batch}: ${e.message}`);
  process.exit(1);
}
const times = [];
for (let i = 0; i < runs; i++) {
  const t0 = process.hrtime.bigint();
  await once();
  times.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
times.sort((a, b) => a - b);
const ms = times[times.length >> 1];
console.log(JSON.stringify({
  bench: 'nn', model: name, engine: 'tfjs-wasm', version: tf.version.tfjs, batch, threads,
  threads_used: threadsUsed, ms, ms_per_image: ms / batch, ms_min: times[0], gmacs,
  gflops: gmacs === null ? null : (2 * gmacs * 1e9 * batch) / (ms / 1e3) / 1e9, runs,
}));
