#!/usr/bin/env node
// Reads the JSON lines of bench/pipeline/run (vultus and human-wasm rows) and prints, per
// vultus configuration ("config": default, faceres), image and thread count, one ratio line
//   {"bench":"pipeline-ratio","config":...,"image":...,"threads":N,"stage":"analysis","vultus_ms":...,
//    "human_ms":...,"ratio":...,"vultus_images_per_s":...,"human_images_per_s":...,
//    "throughput_ratio":...}
// then a table on stdout after a blank line. ratio = Human's median analysis time / vultus's
// (above 1: vultus is faster): the matched stages only (detect, mesh/landmarks, alignment,
// description/embedding + age/gender, emotion), decoding excluded. throughput_ratio compares
// whole calls per second (decode included on both sides) with N workers at once.
//
//   node bench/pipeline/ratio.mjs BUILD/bench-pipeline.jsonl
import fs from 'fs';

const file = process.argv[2];
if (!file) {
  console.error('usage: node ratio.mjs BENCH.jsonl');
  process.exit(2);
}
const rows = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))
  .filter((r) => r.bench === 'pipeline');
const find = (engine, config, image, threads, stage) => rows.find((r) => r.engine === engine &&
  (config === null || (r.config || 'default') === config) && r.image === image && r.threads === threads && r.stage === stage);
const keys = [];
for (const r of rows) {
  const k = `${r.config || 'default'}|${r.image}|${r.threads}`;
  if (r.engine === 'vultus' && !keys.includes(k)) keys.push(k);
}
const table = [];
for (const k of keys) {
  const [config, image, t] = k.split('|');
  const threads = +t;
  const va = find('vultus', config, image, threads, 'analysis'), ha = find('human-wasm', null, image, threads, 'analysis');
  const vt = find('vultus', config, image, threads, 'total'), ht = find('human-wasm', null, image, threads, 'total');
  const vd = find('vultus', config, image, threads, 'decode'), hd = find('human-wasm', null, image, threads, 'decode');
  if (!va || !ha) continue;
  const line = {
    bench: 'pipeline-ratio', config, image, threads, stage: 'analysis',
    vultus_ms: va.ms, human_ms: ha.ms, ratio: +(ha.ms / va.ms).toFixed(3),
    vultus_decode_ms: vd ? vd.ms : null, human_decode_ms: hd ? hd.ms : null,
    vultus_images_per_s: vt ? vt.images_per_s : null, human_images_per_s: ht ? ht.images_per_s : null,
    throughput_ratio: vt && ht ? +(vt.images_per_s / ht.images_per_s).toFixed(3) : null,
    faces: va.faces, human_faces: ha.faces, width: va.width, height: va.height,
  };
  console.log(JSON.stringify(line));
  table.push(line);
}
const pad = (s, n) => String(s).padStart(n);
const f = (x, d = 2) => (x === null || x === undefined ? '-' : Number(x).toFixed(d));
console.log('');
const header = ['config'.padEnd(8), 'image'.padEnd(28), pad('thr', 3), pad('faces', 5), pad('vultus ms', 9), pad('Human ms', 9), pad('Human/vultus', 12),
  pad('decode v/H ms', 15), pad('img/s v', 8), pad('img/s H', 8), pad('img/s v/H', 9)].join(' ');
console.log(header);
console.log('-'.repeat(header.length));
for (const l of table) {
  console.log([l.config.padEnd(8), l.image.padEnd(28), pad(l.threads, 3), pad(`${l.faces}/${l.human_faces}`, 5), pad(f(l.vultus_ms), 9), pad(f(l.human_ms), 9),
    pad(f(l.ratio, 1) + 'x', 12), pad(`${f(l.vultus_decode_ms, 1)}/${f(l.human_decode_ms, 0)}`, 15), pad(f(l.vultus_images_per_s, 1), 8),
    pad(f(l.human_images_per_s, 1), 8), pad(f(l.throughput_ratio, 1) + 'x', 9)].join(' '));
}
console.log('\nms: median per call with N workers at once; analysis = the matched stages, decode excluded.');
console.log('config default: vultus\'s default embedder and age/gender model; faceres: the same model as Human\'s description.');
