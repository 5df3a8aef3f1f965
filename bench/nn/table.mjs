#!/usr/bin/env node
// Reads the JSON lines of bench/nn/run (BUILD/bench-nn.jsonl) and prints a table: per model,
// batch and thread count, the median ms of one call in each engine, the peers' times divided
// by vultus's (above 1: vultus is faster), and vultus's GFLOP/s as a share of the measured
// FP32 peak of the cores it was given (peak per core x threads).
//
//   node bench/nn/table.mjs build/bench-nn.jsonl
import fs from 'fs';

const file = process.argv[2];
if (!file) {
  console.error('usage: node table.mjs BENCH.jsonl');
  process.exit(2);
}
const rows = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
const peak = rows.find((r) => r.bench === 'nn-peak');
const key = (r) => `${r.model}|${r.batch}|${r.threads}`;
const cells = new Map(); // key -> { vultus, tfjs, ort } rows
const order = [];
for (const r of rows.filter((x) => x.bench === 'nn')) {
  const k = key(r);
  if (!cells.has(k)) {
    cells.set(k, {});
    order.push(k);
  }
  const slot = { vultus: 'vultus', 'tfjs-wasm': 'tfjs', onnxruntime: 'ort' }[r.engine];
  if (slot) cells.get(k)[slot] = r;
}
// Peers only run some configurations (TF.js-WASM is single-threaded in node); list every
// configuration any engine ran, grouped by model in the order the benchmark ran them.
const models = [...new Set(order.map((k) => k.split('|')[0]))];
const keys = models.flatMap((m) =>
  order.filter((k) => k.startsWith(m + '|')).sort((a, b) => {
    const [, ba, ta] = a.split('|').map(Number), [, bb, tb] = b.split('|').map(Number);
    return ba - bb || ta - tb;
  }));

const ms = (r) => (r ? (r.ms >= 1 ? r.ms.toFixed(2) : r.ms.toPrecision(3)) : '-');
const fmt = (x) => (x >= 100 ? x.toFixed(0) : x >= 0.01 ? x.toPrecision(3) : x.toExponential(1));
const ratio = (peer, v) => (peer && v ? fmt(peer.ms / v.ms) + 'x' : '-');
const pad = (s, n) => String(s).padStart(n);
const header = ['model'.padEnd(24), pad('batch', 5), pad('thr', 3), pad('vultus ms', 10), pad('ORT ms', 9),
  pad('TFJS ms', 9), pad('ORT/vultus', 10), pad('TFJS/vultus', 11), pad('GFLOP/s', 8), pad('% peak', 7)].join(' ');
console.log(header);
console.log('-'.repeat(header.length));
const logs = {}; // `${batch}|${threads}` -> { ort: [], tfjs: [] } log ratios for geometric means
for (const k of keys) {
  const [model, batch, threads] = k.split('|');
  const c = cells.get(k);
  const v = c.vultus;
  let share = '-';
  if (v && peak && v.gflops != null) share = ((100 * v.gflops) / (peak.gflops * Number(threads))).toFixed(1) + '%';
  console.log([model.padEnd(24), pad(batch, 5), pad(threads, 3), pad(ms(v), 10), pad(ms(c.ort), 9), pad(ms(c.tfjs), 9),
    pad(ratio(c.ort, v), 10), pad(ratio(c.tfjs, v), 11), pad(v && v.gflops != null ? v.gflops.toFixed(1) : '-', 8),
    pad(share, 7)].join(' '));
  const g = (logs[`${batch}|${threads}`] ??= { ort: [], tfjs: [] });
  if (v && c.ort) g.ort.push(Math.log(c.ort.ms / v.ms));
  if (v && c.tfjs) g.tfjs.push(Math.log(c.tfjs.ms / v.ms));
}
console.log('-'.repeat(header.length));
const geo = (xs) => (xs.length ? fmt(Math.exp(xs.reduce((a, b) => a + b, 0) / xs.length)) + 'x' : '-');
for (const [bt, g] of Object.entries(logs)) {
  const [batch, threads] = bt.split('|');
  console.log(['geometric mean'.padEnd(24), pad(batch, 5), pad(threads, 3), pad('', 10), pad('', 9), pad('', 9),
    pad(geo(g.ort), 10), pad(geo(g.tfjs), 11)].join(' ') +
    `   (${g.ort.length} models with ORT, ${g.tfjs.length} with TF.js)`);
}
console.log();
console.log('ms: median of one call for the whole batch. Ratios are peer ms / vultus ms: above 1, vultus is faster.');
console.log('TF.js-WASM runs single-threaded in node (tfjs issue #3830), so it has 1-thread rows only;');
console.log('a graph with a fixed batch of 1 has no TF.js batch > 1 row.');
if (peak) {
  console.log(`% peak: vultus GFLOP/s (2 x multiply-adds / time) over the measured FP32 peak, ` +
    `${peak.gflops.toFixed(1)} GFLOP/s per core (${peak.isa}), times the threads.`);
} else {
  console.log('% peak: no nn-peak line in the results.');
}
const load = rows.find((r) => r.bench === 'nn-load');
if (load) {
  console.log(`load: ${load.models} models in ${load.ms.toFixed(1)} ms; RSS ${load.rss_mb.toFixed(1)} MB after ` +
    `loading, ${load.rss_with_contexts_mb.toFixed(1)} MB with one context per model.`);
}
