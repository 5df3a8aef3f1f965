// The vultus that a browser test drives: the real binary on a free loopback port, with its
// own data folder; shared by test_ui.mjs and test_ui_review.mjs.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

// Starts `BINARY serve` and resolves once it listens, with { server, port, log } (log: its
// last 400 stderr lines, for a failure's report). extra: more `serve` flags.
export function startVultus(binary, dataDir, extra = []) {
  return new Promise((resolve, reject) => {
    const log = [];
    const server = spawn(binary, ['serve', '--listen', '127.0.0.1:0', '--data', dataDir, '--models', 'models', '--workers', '2', ...extra],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, VULTUS_LOG_LEVEL: 'info' } });
    server.on('error', reject);
    server.on('exit', (code) => reject(new Error(`vultus serve exited (${code}) before listening`)));
    createInterface({ input: server.stderr }).on('line', (line) => {
      log.push(line);
      if (log.length > 400) log.shift();
      if (line.includes('"msg":"listening"')) resolve({ server, port: JSON.parse(line).port, log });
    });
  });
}

// Waits for /readyz (the models loaded), at most 60 s; fails at once if the server exited.
export async function waitReady(base, server) {
  const until = Date.now() + 60000;
  while (Date.now() < until) {
    if (server.exitCode !== null) throw new Error(`vultus serve exited (${server.exitCode})`);
    try {
      if ((await fetch(`${base}/readyz`)).ok) return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the service did not become ready within 60 s');
}

// SIGTERM, then SIGKILL after 5 s.
export async function stopVultus(server) {
  if (!server || server.exitCode !== null) return;
  server.removeAllListeners('exit');
  server.kill('SIGTERM');
  await new Promise((r) => {
    const t = setTimeout(() => { server.kill('SIGKILL'); r(); }, 5000);
    server.on('exit', () => { clearTimeout(t); r(); });
  });
}
