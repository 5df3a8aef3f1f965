#!/usr/bin/env node
// Reads the JSON lines of bench/load/run (BUILD/bench-load.jsonl) and prints a table of the
// load runs, then the figures issue 5's "Done when" asks for, each with its target and
// whether this run met it. Ratios come from one run, so they compare like with like on a
// shared, noisy machine.
//
//   node bench/load/table.mjs build/bench-load.jsonl
import fs from 'fs';
import os from 'os';

const file = process.argv[2];
if (!file) {
  console.error('usage: node table.mjs BENCH-LOAD.jsonl');
  process.exit(2);
}
const rows = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
const runs = rows.filter((r) => r.bench === 'load');
const one = (b) => rows.find((r) => r.bench === b);

const num = (x, d = 1) => (x == null || Number.isNaN(x) ? '-' : Number(x).toFixed(d));
const pad = (s, n) => String(s).padStart(n);
const header = ['image', 'conc', 'batching', 'overload', 'rps', 'p50 ms', 'p99 ms', 'errors', '503s', '503 p99 ms', 'rss max MB', 'cpu ms/answer'];
const widths = [14, 6, 9, 9, 8, 9, 9, 7, 7, 11, 11, 14];
const line = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : pad(c, widths[i]))).join(' ');
console.log(line(header));
for (const r of runs) {
  const conc = r.overload ? `${num(r.offered_rps, 0)}/s` : r.concurrency;
  console.log(line([r.image, conc, r.batching, r.overload, num(r.rps), num(r.p50_ms), num(r.p99_ms), r.errors,
    r.rejected, num(r.reject_p99_ms), num(r.rss_max_mb, 0), num(r.cpu_ms_per_answer)]));
}

// The figures of "Done when", as measured.
const checks = [];
const check = (what, value, target, ok) => checks.push({ what, value, target, ok });
const pipeline = one('load-pipeline');
const c16 = runs.find((r) => !r.overload && r.concurrency === 16 && r.image === pipeline?.image && r.batching);
if (c16 && pipeline) {
  check(`server rps at concurrency 16 / pipeline rps on 2 threads (${pipeline.image})`,
    `${num(c16.rps)} / ${num(pipeline.rps)} = ${num(c16.rps / pipeline.rps, 2)}, ${c16.errors} errors` +
      (pipeline.rps_before != null ? ` (pipeline ${num(pipeline.rps_before)} just before the concurrency-16 run, ${num(pipeline.rps_after)} just after)` : ''),
    '>= 0.80, 0 errors', c16.rps / pipeline.rps >= 0.8 && c16.errors === 0);
}
const groupOn = runs.find((r) => r.image.startsWith('group') && r.batching === true && !r.overload);
const groupOff = runs.find((r) => r.image.startsWith('group') && r.batching === false && !r.overload);
if (groupOn && groupOff) {
  check(`batching gain on ${groupOn.image} (rps with --batch-max ${groupOn.batch_max} / --batch-max 1)`,
    `${num(groupOn.rps)} / ${num(groupOff.rps)} = ${num(groupOn.rps / groupOff.rps, 2)}`, '>= 1.30',
    groupOn.rps / groupOff.rps >= 1.3);
  // Not a target of its own: the server's CPU time per answered photo moves far less than rps
  // with whatever else runs on the machine, so it says whether batching made a photo cheaper.
  if (groupOn.cpu_ms_per_answer != null && groupOff.cpu_ms_per_answer != null) {
    console.log(`\nbatching, server CPU per answered ${groupOn.image} photo: ${num(groupOff.cpu_ms_per_answer)} ms off / ` +
      `${num(groupOn.cpu_ms_per_answer)} ms on = ${num(groupOff.cpu_ms_per_answer / groupOn.cpu_ms_per_answer, 2)}x`);
  }
}
const over = runs.find((r) => r.overload);
if (over) {
  check(`overload at ${num(over.offered_rps)} req/s (4x): 503 p99`, `${num(over.reject_p99_ms, 2)} ms (${over.rejected} refused)`,
    '<= 10 ms', over.rejected > 0 && over.reject_p99_ms <= 10);
  check('overload: accepted p99 vs the deadline', `${num(over.p99_ms)} ms of ${over.deadline_ms} ms (${over.ok} served)`,
    '< deadline', over.p99_ms < over.deadline_ms);
  check('overload: errors other than 503', `${over.errors}`, '0', over.errors === 0);
}
const ready = one('load-ready');
if (ready) check('start to /readyz 200 (median of 5)', `${num(ready.ms)} ms`, '<= 1000 ms', ready.ms <= 1000);
const rss = one('load-rss');
if (rss) check('RSS under load (max VmRSS)', `${num(rss.max_mb)} MB`, '<= 400 MB', rss.max_mb <= 400);
const soak = one('load-soak');
if (soak) {
  const growth = (soak.rss_end_mb - soak.rss_start_mb) / soak.rss_start_mb;
  check(`soak RSS growth over ${soak.duration_s} s`, `${num(soak.rss_start_mb)} -> ${num(soak.rss_end_mb)} MB (${num(100 * growth, 2)}%), ${soak.errors} errors`,
    '<= 5%', growth <= 0.05);
}
console.log('');
const machine = one('load-machine');
if (machine) {
  console.log(`run ${machine.start} to ${machine.end} on ${machine.cores} cores shared by the server, the load ` +
    `generator and anything else running; load average ${machine.loadavg_start} at the start, ${machine.loadavg_end} at the end`);
}
console.log(`issue 5, "Done when" (this machine: ${os.cpus().length} cores):`);
for (const c of checks) console.log(`  ${c.ok ? 'met ' : 'MISS'}  ${c.what}: ${c.value} (target ${c.target})`);
