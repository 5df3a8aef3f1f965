// Browser tests of the web page (run by tests/ui/run). The real vultus binary serves on a
// free loopback port with a temporary data folder; Debian's chromium, driven by
// playwright-core, does what a person would: analyse a group photo, see an error, enrol,
// search, verify, browse and delete, watch the status, use an API key, and the page on a
// phone-sized screen and with the keyboard. Every step asserts what the API answered against
// what the page shows, and leaves a screenshot in --shots.
//
//   node tests/ui/test_ui.mjs --binary build/vultus --shots build/ui-screenshots
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { chromium } from 'playwright-core';
import { startVultus, stopVultus, waitReady } from './server.mjs';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) => (i % 2 ? a : [...a, [v.replace(/^--/, ''), all[i + 1]]]), []));
const BINARY = args.binary || 'build/vultus';
const SHOTS = args.shots || 'build/ui-screenshots';
// UI_FIXTURES=/nonexistent runs the fallback on the model pack's samples.
const FIXTURES = process.env.UI_FIXTURES || '../shared/data/fixtures';
const HAVE_FIXTURES = existsSync(join(FIXTURES, 'identities'));
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // Containers often have a 64 MB /dev/shm, too small for chromium's shared memory.
  '--disable-dev-shm-usage',
  // A synthetic camera (a test pattern) for the webcam snapshot, allowed without a prompt.
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];

mkdirSync(SHOTS, { recursive: true });
for (const f of readdirSync(SHOTS)) if (f.endsWith('.png')) rmSync(join(SHOTS, f));

/* ---- the server ---- */

const dataDir = mkdtempSync(join(tmpdir(), 'vultus-ui-'));
let server, serverLog = [];

/* ---- a tiny step runner ---- */

let passed = 0, failed = 0, skipped = 0;
let page, browser, base;

function assert(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}

async function shot(name, p = page) {
  await p.waitForTimeout(250); // notices slide in
  await p.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    const r = await fn();
    if (r === 'skip') {
      skipped++;
      console.log(`SKIP  ${name}`);
    } else {
      passed++;
      console.log(`PASS  ${name}  (${((Date.now() - t0) / 1000).toFixed(2)} s)`);
    }
  } catch (e) {
    failed++;
    console.log(`FAIL  ${name}: ${e.message.split('\n').slice(0, 6).join('\n      ')}`);
    if (page) await shot(`FAILED-${name.replace(/\W+/g, '-')}`).catch(() => {});
    throw e;
  }
}

function fixture(...parts) {
  return join(FIXTURES, ...parts);
}

// Sets the file input of a picker and returns the API's JSON answer for the request it made.
async function pick(pickerId, files, urlPart) {
  const input = page.locator(`[data-picker="${pickerId}"] .drop input[type=file]`);
  const waiting = page.waitForResponse((r) => r.url().includes(urlPart) && r.request().method() === 'POST');
  await input.setInputFiles(files);
  const res = await waiting;
  return { status: res.status(), body: await res.json() };
}

// Drops a file on an element, as a person dragging it from the desktop would.
async function dropFile(selector, file) {
  await page.evaluate(([sel, b64, name]) => {
    const dt = new DataTransfer();
    dt.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], name, { type: 'image/jpeg' }));
    const el = document.querySelector(sel);
    for (const type of ['dragenter', 'dragover', 'drop']) el.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, [selector, readFileSync(file).toString('base64'), basename(file)]);
}

// Pastes a file into the page, as Ctrl+V with an image on the clipboard does.
async function pasteFile(file) {
  await page.evaluate(([b64, name]) => {
    const dt = new DataTransfer();
    dt.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], name, { type: 'image/jpeg' }));
    document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  }, [readFileSync(file).toString('base64'), basename(file)]);
}

async function tab(name) {
  await page.click(`#tab-${name}`);
  await page.locator(`#${name}`).waitFor({ state: 'visible' });
}

/* ---- the steps ---- */

const group = HAVE_FIXTURES ? fixture('group-t1.jpg') : 'models/samples/sample5.jpg';
// Four photos of one person and a fifth to search with; without the fixtures, the model
// pack's sample photos: four subjects of one photo each, searched with one of them.
const people = HAVE_FIXTURES
  ? ['amy', 'howard'].map((n) => ({ name: n, enrol: [1, 2, 3, 4].map((k) => fixture('identities', n, `${n}${k}.png`)) }))
  : [1, 2, 3, 4].map((k) => ({ name: `sample${k}`, enrol: [`models/samples/sample${k}.jpg`] }));
const probe = HAVE_FIXTURES ? { name: 'amy', file: fixture('identities', 'amy', 'amy5.png') }
  : { name: 'sample2', file: 'models/samples/sample2.jpg' };
const verifyPair = HAVE_FIXTURES ? [fixture('id-obama-1.jpg'), fixture('id-obama-2.jpg')]
  : ['models/samples/sample1.jpg', 'models/samples/sample1.jpg'];

async function main() {
  let port;
  ({ server, port, log: serverLog } = await startVultus(BINARY, dataDir, []));
  base = `http://127.0.0.1:${port}`;
  await waitReady(base, server);
  console.log(`ui: vultus on ${base}, data ${dataDir}, ${HAVE_FIXTURES ? 'fixtures from ../shared/data' : 'no ../shared/data: model pack samples'}`);

  await step('static files are served from the binary', async () => {
    const want = { '/': 'text/html', '/app.js': 'text/javascript', '/app.css': 'text/css', '/favicon.svg': 'image/svg+xml' };
    let total = 0;
    for (const [path, type] of Object.entries(want)) {
      const r = await fetch(base + path);
      assert(r.status === 200, `${path} answers 200 (got ${r.status})`);
      assert((r.headers.get('content-type') || '').startsWith(type), `${path} is ${type} (got ${r.headers.get('content-type')})`);
      total += (await r.arrayBuffer()).byteLength;
    }
    assert(total < 200 * 1024, `the page is under 200 KB (it is ${total} bytes)`);
    const head = await fetch(`${base}/`, { method: 'HEAD' });
    assert(head.status === 200, 'HEAD / answers 200');
    const missing = await fetch(`${base}/nothing-here.js`);
    assert(missing.status === 404, 'an unknown file is 404');
    console.log(`      page size ${total} bytes`);
  });

  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS });
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, deviceScaleFactor: 1 });
  page = await context.newPage();
  page.setDefaultTimeout(20000);
  // Nothing may leave for another origin, and the page must not throw.
  const foreign = [], pageErrors = [];
  page.on('request', (r) => { if (!r.url().startsWith(base) && !/^(blob|data):/.test(r.url())) foreign.push(r.url()); });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push(m.text()); });

  await step('the page loads and is ready', async () => {
    await page.goto(base + '/');
    await page.waitForSelector('html[data-ready="true"]');
    await page.locator('#ready.ok').waitFor();
    assert(await page.locator('#analyse').isVisible(), 'Analyse is the first tab');
  });

  let analysed;
  await step('analyse: a group photo gets one box per detected face', async () => {
    analysed = await pick('analyse', group, '/v1/analyze');
    assert(analysed.status === 200, `analyze answered 200 (got ${analysed.status})`);
    const n = analysed.body.faces.length;
    assert(n > 1, `the group photo has more than one face (the API found ${n})`);
    const boxes = page.locator('[data-picker="analyse"] .overlay .face');
    await page.waitForFunction((k) => document.querySelectorAll('[data-picker="analyse"] .overlay .face').length === k, n);
    assert(await boxes.count() === n, `boxes drawn (${await boxes.count()}) == faces returned (${n})`);
    // Labels show what the API said about each face, in the page's left-to-right order.
    const sorted = [...analysed.body.faces].sort((a, b) => a.box.x - b.box.x);
    const label0 = await boxes.nth(0).locator('.tag').textContent();
    assert(label0.includes(String(Math.round(sorted[0].attributes.age))) && label0.includes(sorted[0].attributes.gender),
      `the first label "${label0}" shows the age and gender the API returned`);
    // The stage-timing bar lists the stages the service timed.
    const timing = await page.locator('#analyse-timing').innerText();
    for (const stage of Object.keys(analysed.body.timing_ms)) assert(timing.includes(stage), `timing bar shows ${stage}`);
    for (const stage of ['decode', 'detect', 'embed', 'attributes']) assert(timing.includes(stage), `the issue's stages are timed: ${stage}`);
    assert(await page.locator('#analyse-details .face-item').count() === n, 'the side list has every face');
    // Every label is inside the picture, also for the faces at its edges.
    const outside = await page.evaluate(() => {
      const stage = document.querySelector('[data-picker="analyse"] .overlay').getBoundingClientRect();
      return [...document.querySelectorAll('[data-picker="analyse"] .overlay .face .tag')].map((t) => t.getBoundingClientRect())
        .filter((r) => r.left < stage.left - 1 || r.right > stage.right + 1 || r.top < stage.top - 1 || r.bottom > stage.bottom + 1).length;
    });
    assert(outside === 0, `${outside} face labels reach outside the picture`);
    await shot('01-analyse-group');
  });

  await step('analyse: hovering a face shows its details', async () => {
    const boxes = page.locator('[data-picker="analyse"] .overlay .face');
    await boxes.nth(1).hover();
    const details = await page.locator('#analyse-details').innerText();
    assert(/about \d+/.test(details) && /emotion/i.test(details) && /liveness/i.test(details), `details of face 2 are shown: ${details.slice(0, 80)}`);
    assert(/embedding \(128 numbers/i.test(details), 'the face\'s embedding is shown');
    await shot('02-analyse-details');
  });

  await step('analyse: "Enrol this face" opens Enrol with that face selected', async () => {
    await page.locator('[data-picker="analyse"] .overlay .face').nth(2).click();
    const waiting = page.waitForResponse((r) => r.url().includes('/v1/detect'));
    await page.locator('#analyse-details button', { hasText: 'Enrol this face' }).click();
    await waiting;
    await page.locator('#enrol').waitFor({ state: 'visible' });
    await page.waitForFunction(() => document.querySelectorAll('[data-picker="enrol"] .overlay .face.selected').length === 1);
    const selected = await page.locator('[data-picker="enrol"] .overlay .face').evaluateAll((els) => els.findIndex((e) => e.classList.contains('selected')));
    assert(selected === 2, `face #3 is selected in Enrol (got #${selected + 1})`);
    assert(await page.evaluate(() => document.activeElement.name) === 'subject', 'the subject field has the focus');
    await tab('analyse');
  });

  await step('keyboard: tab list arrows and a focused face', async () => {
    await page.mouse.move(5, 5);
    await page.locator('#tab-analyse').focus();
    await page.keyboard.press('ArrowRight');
    assert(await page.locator('#tab-enrol').getAttribute('aria-selected') === 'true', 'ArrowRight selects Enrol');
    await page.keyboard.press('ArrowLeft');
    assert(await page.locator('#tab-analyse').getAttribute('aria-selected') === 'true', 'ArrowLeft selects Analyse');
    const face = page.locator('[data-picker="analyse"] .overlay .face').first();
    await face.focus();
    await page.keyboard.press('Enter');
    await page.mouse.move(5, 5);
    const details = await page.locator('#analyse-details').innerText();
    assert(details.includes('face #1 of'), 'Enter on a focused face pins its details');
    await shot('03-keyboard-focus');
  });

  await step('analyse: a webcam snapshot (chromium\'s synthetic camera)', async () => {
    await page.locator('[data-picker="analyse"] .picker-bar button', { hasText: 'Camera' }).click();
    await page.locator('#camera-dialog[open]').waitFor();
    await page.waitForFunction(() => document.querySelector('#camera-video').videoWidth > 0);
    await shot('04-camera');
    const waiting = page.waitForResponse((r) => r.url().includes('/v1/analyze'));
    await page.locator('#camera-snap').click();
    const res = await waiting;
    assert(res.status() === 200, `the snapshot was analysed (${res.status()})`);
    const n = (await res.json()).faces.length;
    await page.waitForFunction((k) => document.querySelectorAll('[data-picker="analyse"] .overlay .face').length === k
      && document.querySelector('[data-picker="analyse"] .name').textContent.includes('camera'), n);
    assert(!await page.locator('#camera-dialog[open]').count(), 'the dialog closed');
    assert(await page.evaluate(() => !document.querySelector('#camera-video').srcObject), 'the camera was released');
  });

  await step('an API error (a file that is not an image) is shown in plain words', async () => {
    const r = await pick('analyse', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('these are notes, not a photo\n') }, '/v1/analyze');
    assert(r.status === 415 && r.body.error.code === 'unsupported_image', `the API refused it (${r.status} ${r.body.error && r.body.error.code})`);
    const msg = page.locator('.notice[role=alert]').filter({ hasText: 'not a picture the service can read' });
    await msg.first().waitFor({ state: 'visible' });
    const inline = page.locator('[data-picker="analyse"] .inline-error');
    await inline.waitFor({ state: 'visible' });
    assert((await inline.innerText()).includes('JPEG, PNG or WebP'), 'the message under the picker says what to do');
    await shot('05-error-not-an-image');
    for (const b of await page.locator('.notice button').all()) await b.click();
  });

  await step('enrol: several photos of a person, with a progress bar', async () => {
    await tab('enrol');
    const form = page.locator('#batch-form');
    for (const person of people) {
      await form.locator('input[name=collection]').fill('people');
      await form.locator('input[name=subject]').fill(person.name);
      await page.locator('#batch-files').setInputFiles(person.enrol);
      await form.locator('#batch-submit').click();
      const n = person.enrol.length;
      await page.locator('#batch-summary').filter({ hasText: `Enrolled ${n} of ${n}` }).waitFor();
      assert(await page.locator('#batch-progress').evaluate((p) => p.value === p.max), 'the progress bar is full');
      assert(await page.locator('#batch-log li.ok').count() === n, `${n} photos enrolled`);
    }
    await shot('06-enrol-batch');
    const subjects = await (await fetch(`${base}/v1/collections/people/subjects`)).json();
    assert(subjects.subjects.length === people.length, `the collection has ${people.length} subjects`);
  });

  // Found walking through the page as a new user: "Enrol all" kept a photo without a face
  // chosen and offered to try it again, which cannot succeed (the same photo has no face).
  await step('enrol: a photo without a face fails with the reason and is not offered again', async () => {
    const blank = Buffer.from(await page.evaluate(() => {
      const c = document.createElement('canvas');
      c.width = 320;
      c.height = 240;
      const g = c.getContext('2d');
      g.fillStyle = '#c8c8c8';
      g.fillRect(0, 0, c.width, c.height);
      return c.toDataURL('image/jpeg', 0.9).split(',')[1];
    }), 'base64');
    const form = page.locator('#batch-form');
    await form.locator('input[name=collection]').fill('nofaces');
    await form.locator('input[name=subject]').fill('someone');
    // (playwright takes paths or buffers, not both)
    const face = { name: basename(people[0].enrol[0]), mimeType: people[0].enrol[0].endsWith('.png') ? 'image/png' : 'image/jpeg', buffer: readFileSync(people[0].enrol[0]) };
    await page.locator('#batch-files').setInputFiles([face, { name: 'wall.jpg', mimeType: 'image/jpeg', buffer: blank }]);
    await form.locator('#batch-submit').click();
    await page.locator('#batch-summary').filter({ hasText: 'Enrolled 1 of 2' }).waitFor();
    const failed = page.locator('#batch-log li.err');
    assert(await failed.count() === 1, 'one photo failed');
    const line = await failed.innerText();
    assert(line.includes('wall.jpg') && line.includes('No face was found'), `the failed line names the photo and why (${line})`);
    assert(line.includes('not tried again'), `the failed line says it is not tried again (${line})`);
    const why = await failed.locator('.why').getAttribute('title');
    assert(why && why.includes('smaller than'), `the service's reason (the smallest face looked for) is at hand (${why})`);
    const chosen = await page.locator('#batch-chosen').innerText();
    assert(!chosen.includes('tries'), `"Enrol all" does not offer the photo again (${chosen})`);
    assert(await page.locator('#batch-submit').isDisabled(), '"Enrol all" has nothing left to send');
    await shot('06b-enrol-batch-no-face');
    const r = await fetch(`${base}/v1/collections/nofaces`, { method: 'DELETE' });
    assert(r.status === 204, `the step's collection is deleted (${r.status})`);
  });

  // A face too poor to recognise well (the sample reduced to a sixth: faces 29 px wide, quality
  // about 0.06) is refused by the service with low_quality: the enrol form shows its reason and
  // offers "Enrol anyway" (min_quality=0); "Enrol all" marks the photo and does not retry it.
  await step('enrol: a face too poor to recognise is refused with the reason; Enrol anyway stores it', async () => {
    const sample = readFileSync('models/samples/sample1.jpg').toString('base64');
    const small = Buffer.from(await page.evaluate(async (b64) => {
      const img = new Image();
      img.src = `data:image/jpeg;base64,${b64}`;
      await img.decode();
      const c = document.createElement('canvas');
      c.width = Math.round(img.naturalWidth / 6);
      c.height = Math.round(img.naturalHeight / 6);
      c.getContext('2d').drawImage(img, 0, 0, c.width, c.height);
      return c.toDataURL('image/jpeg', 0.9).split(',')[1];
    }, sample), 'base64');
    const lowq = { name: 'tiny.jpg', mimeType: 'image/jpeg', buffer: small };
    const batch = page.locator('#batch-form');
    await batch.locator('input[name=collection]').fill('lowq');
    await batch.locator('input[name=subject]').fill('someone');
    const face = { name: basename(people[0].enrol[0]), mimeType: people[0].enrol[0].endsWith('.png') ? 'image/png' : 'image/jpeg', buffer: readFileSync(people[0].enrol[0]) };
    await page.locator('#batch-files').setInputFiles([face, lowq]);
    await batch.locator('#batch-submit').click();
    await page.locator('#batch-summary').filter({ hasText: 'Enrolled 1 of 2' }).waitFor();
    const failed = page.locator('#batch-log li.err');
    assert(await failed.count() === 1, 'one photo failed');
    const line = await failed.innerText();
    assert(line.includes('tiny.jpg') && line.includes('too small, blurred or turned away'), `the failed line names the photo and why (${line})`);
    assert(line.includes('not tried again'), `the low-quality photo is not tried again (${line})`);
    const why = await failed.locator('.why').getAttribute('title');
    assert(why && why.includes('quality is 0.0') && why.includes('min_quality=0'), `the service's figures are at hand (${why})`);
    assert(await page.locator('#batch-submit').isDisabled(), '"Enrol all" has nothing left to send');
    await shot('06c-enrol-batch-low-quality');

    const det = await pick('enrol', lowq, '/v1/detect');
    const n = det.body.faces.length;
    assert(n >= 1, `the reduced photo still has faces (${n})`);
    await page.waitForFunction((k) => document.querySelectorAll('[data-picker="enrol"] .overlay .face').length === k, n);
    if (n > 1) await page.locator('[data-picker="enrol"] .overlay .face').first().click();
    const form = page.locator('#enrol-form');
    await form.locator('input[name=collection]').fill('lowq');
    await form.locator('input[name=subject]').fill('blurry');
    const refused = page.waitForResponse((r) => r.url().endsWith('/v1/collections/lowq/faces') && r.request().method() === 'POST');
    const lowNotices = page.locator('#notices .notice[data-code="low_quality"]');
    const noticesBefore = await lowNotices.count();
    await page.locator('#enrol-submit').click();
    assert((await refused).status() === 422, 'the service refused the face');
    const result = page.locator('#enrol-result');
    await result.filter({ hasText: 'too small, blurred or turned away' }).waitFor();
    assert(await lowNotices.count() === noticesBefore, 'the form shows the refusal, no corner notice over its "Enrol anyway"');
    assert((await result.innerText()).includes('min_quality=0'), 'the service\'s message (what to do) is shown');
    const gone = await fetch(`${base}/v1/collections/lowq/subjects/blurry`);
    assert(gone.status === 404, `a refused enrolment created no subject (${gone.status})`);
    await shot('07a-enrol-low-quality');
    const stored = page.waitForResponse((r) => r.url().endsWith('/v1/collections/lowq/faces') && r.request().method() === 'POST');
    await page.locator('#enrol-anyway').click();
    assert((await stored).status() === 201, 'Enrol anyway stored it');
    await result.filter({ hasText: 'Enrolled as blurry' }).waitFor();
    const r = await fetch(`${base}/v1/collections/lowq`, { method: 'DELETE' });
    assert(r.status === 204, `the step's collection is deleted (${r.status})`);
  });

  await step('enrol: click a face of a group photo and name it', async () => {
    const det = await pick('enrol', group, '/v1/detect');
    const n = det.body.faces.length;
    await page.waitForFunction((k) => document.querySelectorAll('[data-picker="enrol"] .overlay .face').length === k, n);
    assert(await page.locator('#enrol-submit').isDisabled(), 'nothing is selected yet in a group photo');
    await page.locator('[data-picker="enrol"] .overlay .face').nth(1).click();
    assert(await page.locator('[data-picker="enrol"] .overlay .face.selected').count() === 1, 'one face is selected');
    const form = page.locator('#enrol-form');
    await form.locator('input[name=collection]').fill('people');
    await form.locator('input[name=subject]').fill('guest');
    const waiting = page.waitForResponse((r) => r.url().endsWith('/v1/collections/people/faces') && r.request().method() === 'POST');
    await page.locator('#enrol-submit').click();
    const res = await waiting;
    assert(res.status() === 201, `enrolled (${res.status()})`);
    const body = await res.json();
    // The page sent a crop around the chosen face: the enrolled face is that one.
    assert(body.faces_in_image <= 2, `the upload was cut around the chosen face (${body.faces_in_image} faces in it)`);
    await page.locator('#enrol-result').filter({ hasText: 'Enrolled as guest' }).waitFor();
    await page.waitForFunction(() => document.querySelector('#enrol-result img')?.naturalWidth > 0);
    await shot('07-enrol-click-a-face');
  });

  // An enrolment whose face matches another subject says so beside its result: the same
  // face of the group photo enrolled as "one", then as "two" (the API's also_matches).
  await step('enrol: a face that matches another subject is said to', async () => {
    const det = await pick('enrol', group, '/v1/detect');
    const n = det.body.faces.length;
    await page.waitForFunction((k) => document.querySelectorAll('[data-picker="enrol"] .overlay .face').length === k, n);
    await page.locator('[data-picker="enrol"] .overlay .face').nth(1).click();
    const form = page.locator('#enrol-form');
    await form.locator('input[name=collection]').fill('twins');
    const result = page.locator('#enrol-result');
    for (const subject of ['one', 'two']) {
      await form.locator('input[name=subject]').fill(subject);
      const waiting = page.waitForResponse((r) => r.url().endsWith('/v1/collections/twins/faces') && r.request().method() === 'POST');
      await page.locator('#enrol-submit').click();
      const body = await (await waiting).json();
      await result.filter({ hasText: `Enrolled as ${subject}` }).waitFor();
      const said = await page.locator('#enrol-also-matches').count();
      if (subject === 'one') assert(said === 0 && body.also_matches.length === 0, 'the first enrolment matches nobody');
      else assert(said === 1 && body.also_matches[0]?.subject === 'one', `the second names one (${JSON.stringify(body.also_matches)})`);
    }
    const text = await page.locator('#enrol-also-matches').innerText();
    assert(/Also looks like subject one, similarity (0\.9\d|1\.00)/.test(text), `said in plain words (${text})`);
    await shot('07b-enrol-also-matches');
    const r = await fetch(`${base}/v1/collections/twins`, { method: 'DELETE' });
    assert(r.status === 204, `the step's collection is deleted (${r.status})`);
  });

  await step('search: a fifth photo finds the enrolled name', async () => {
    await tab('search');
    await page.locator('#search-collection').selectOption('people');
    const r = await pick('search', probe.file, '/v1/collections/people/search');
    assert(r.status === 200, `search answered 200 (got ${r.status})`);
    const best = r.body.faces.map((f) => f.matches[0]).filter((m) => m && m.decision === 'match');
    assert(best.some((m) => m.subject === probe.name), `the API matched ${probe.name}`);
    const tags = page.locator('[data-picker="search"] .overlay .face .tag');
    await tags.first().waitFor();
    const shown = await tags.allInnerTexts();
    assert(shown.some((t) => t.startsWith(probe.name)), `a face is labelled ${probe.name} (labels: ${shown.join(' | ')})`);
    const results = page.locator('#search-results');
    await results.locator('.who', { hasText: probe.name }).first().waitFor();
    await page.waitForFunction(() => [...document.querySelectorAll('#search-results .thumb')].some((i) => i.naturalWidth > 0));
    await shot('08-search');
  });

  // Found walking through the page as a new user: search answers the recognised subject's
  // identity_metadata (a badge number, so a desk needs no second call), and the page did not
  // show it.
  await step('search: a match shows what the subject\'s metadata holds', async () => {
    const meta = { badge: 'B-4711', desk: 'north gate' };
    const patched = await fetch(`${base}/v1/collections/people/subjects/${encodeURIComponent(probe.name)}`, {
      method: 'PATCH', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ metadata: meta }),
    });
    assert(patched.status === 200, `the subject's metadata was set (${patched.status})`);
    const r = await pick('search', probe.file, '/v1/collections/people/search');
    const hit = r.body.faces.find((f) => f.identity === probe.name);
    assert(hit && hit.identity_metadata?.badge === meta.badge, `the API answered the metadata (${JSON.stringify(hit && hit.identity_metadata)})`);
    const card = page.locator('#search-results .match-card', { has: page.locator('.who', { hasText: probe.name }) }).first();
    const shown = card.locator('.identity-meta');
    await shown.waitFor();
    const text = await shown.innerText();
    for (const [k, v] of Object.entries(meta)) assert(text.includes(k) && text.includes(v), `the card shows ${k}: ${v} (${text})`);
    await shot('08b-search-metadata');
  });

  await step('search: a face nobody enrolled says unknown', async () => {
    const file = HAVE_FIXTURES ? fixture('identities', 'leonard', 'leonard5.png') : null;
    if (!file) return 'skip';
    const r = await pick('search', file, '/v1/collections/people/search');
    assert(r.status === 200, 'search answered 200');
    const decided = r.body.faces[0].matches[0]?.decision;
    if (decided === 'match') throw new Error(`leonard matched ${r.body.faces[0].matches[0].subject}: the threshold is too loose for this test`);
    await page.locator('[data-picker="search"] .overlay .face .tag', { hasText: 'unknown' }).first().waitFor();
    await page.locator('#search-results', { hasText: 'is similar enough' }).waitFor();
    await shot('09-search-unknown');
  });

  await step('verify: two photos (one dropped, one pasted), similarity and decision', async () => {
    await tab('verify');
    await dropFile('[data-picker="verify-a"]', verifyPair[0]);
    await page.locator('[data-picker="verify-a"] .stage').waitFor({ state: 'visible' });
    const waiting = page.waitForResponse((r) => r.url().endsWith('/v1/verify'));
    // With the first photo in place, a pasted image goes to the second.
    await pasteFile(verifyPair[1]);
    const res = await waiting;
    const body = await res.json();
    assert(res.status() === 200, `verify answered 200 (got ${res.status()})`);
    assert(body.decision === 'match', `the two photos are the same person (similarity ${body.similarity})`);
    const verdict = page.locator('#verify-result .decision');
    await verdict.waitFor();
    assert(await verdict.innerText() === 'Same person', 'the page says Same person');
    assert((await page.locator('#verify-result .score').innerText()) === body.similarity.toFixed(3), 'the similarity shown is the API\'s');
    assert((await page.locator('[data-picker="verify-b"] .name').innerText()) === basename(verifyPair[1]), 'the pasted photo is the second one');
    await shot('10-verify');
  });

  await step('browse: subjects with thumbnails; delete a face and a subject, with confirmation', async () => {
    await tab('browse');
    await page.locator('#collections button', { hasText: 'people' }).click();
    const cards = page.locator('#subject-grid .subject');
    await page.waitForFunction((k) => document.querySelectorAll('#subject-grid .subject').length === k, people.length + 1);
    await page.waitForFunction(() => [...document.querySelectorAll('#subject-grid .thumb')].filter((i) => i.naturalWidth > 0).length >= 3);
    await shot('11-browse');
    // Delete one face of the first person: cancel first (nothing happens), then confirm.
    const first = cards.filter({ hasText: people[0].name }).first();
    const before = await first.locator('.tile').count();
    await first.locator('.tile .x').first().click();
    await page.locator('#confirm-dialog[open]').waitFor();
    await shot('12-browse-confirm');
    await page.locator('#confirm-dialog button[value=cancel]').click();
    assert(await first.locator('.tile').count() === before, 'cancel keeps the face');
    await first.locator('.tile .x').first().click();
    const del = page.waitForResponse((r) => r.request().method() === 'DELETE');
    await page.locator('#confirm-ok').click();
    assert((await del).status() === 204 || (await del).status() === 200, 'the face was deleted');
    await page.waitForFunction(([name, k]) => [...document.querySelectorAll('#subject-grid .subject')].find((c) => c.textContent.includes(name))?.querySelectorAll('.tile').length === k, [people[0].name, before - 1]);
    // Delete the subject "guest".
    await cards.filter({ hasText: 'guest' }).locator('button', { hasText: 'Delete' }).click();
    await page.locator('#confirm-ok').click();
    await page.waitForFunction(() => ![...document.querySelectorAll('#subject-grid .subject .name')].some((n) => n.textContent === 'guest'));
    const subjects = await (await fetch(`${base}/v1/collections/people/subjects`)).json();
    assert(!subjects.subjects.some((s) => s.id === 'guest'), 'the service no longer has guest');
  });

  await step('status: live figures from /metrics, under load', async () => {
    await tab('status');
    await page.locator('#figures .figure').first().waitFor();
    // Detect requests from here while the page refreshes: the rate is a delta of the
    // counters, the percentiles come from the latency histogram's buckets in that window.
    const photo = new Blob([readFileSync(group)], { type: 'image/jpeg' });
    let stop = false, sent = 0;
    const load = (async () => {
      while (!stop) {
        const form = new FormData();
        form.append('image', photo, 'group.jpg');
        await fetch(`${base}/v1/detect`, { method: 'POST', body: form }).then((r) => r.arrayBuffer());
        sent++;
      }
    })();
    try {
      await page.waitForFunction(() => {
        const v = document.querySelector('#figures .figure .value')?.textContent || '';
        return Number.parseFloat(v) > 0 && document.querySelectorAll('#chart-rps path.line').length === 1;
      }, null, { timeout: 15000 });
    } finally {
      stop = true;
      await load;
    }
    assert(sent > 0, 'the load ran');
    const text = await page.locator('#figures').textContent();
    for (const label of ['Requests / s', 'p50 latency', 'p99 latency', 'Queue', 'In flight']) assert(text.toLowerCase().includes(label.toLowerCase()), `status shows ${label}`);
    const p99 = await page.locator('#figures .figure', { hasText: 'p99' }).locator('.value').textContent();
    assert(/\d/.test(p99), `p99 latency is a number (${p99})`);
    assert(await page.locator('#stages .meter').count() >= 3, 'time per stage is shown');
    await shot('13-status');
  });

  await step('status behind an ingress that keeps /metrics inside: said so, the top bar still ready', async () => {
    // deploy/kubernetes/base/ingress.yaml routes every path but /metrics; the ingress answers 404.
    await page.route('**/metrics', (route) => route.fulfill({ status: 404, contentType: 'text/html', body: '<html>404 Not Found</html>' }));
    try {
      await tab('analyse');
      await tab('status');
      await page.waitForFunction(() => (document.querySelector('#status-updated')?.textContent || '').includes('does not serve /metrics'), null, { timeout: 10000 });
      assert((await page.locator('#ready').textContent()) === 'ready', 'the readiness pill still says ready');
    } finally {
      await page.unroute('**/metrics');
    }
  });

  await step('API key: asked for when the service needs one, kept in the browser', async () => {
    const key = execFileSync(BINARY, ['keys', 'create', '--scope', 'admin', '--data', dataDir, '--name', 'ui-test'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n').pop().trim();
    assert(/^\S{16,}$/.test(key), `a key was made (${key.length} characters)`);
    // The server notices new keys within a second; then the page gets 401 and asks.
    const until = Date.now() + 5000;
    while ((await fetch(`${base}/v1/collections`)).status !== 401) {
      assert(Date.now() < until, 'the server requires the key within 5 s');
      await new Promise((r) => setTimeout(r, 200));
    }
    await tab('browse');
    await page.locator('#key-dialog[open]').waitFor();
    await page.locator('.notice', { hasText: 'needs an API key' }).first().waitFor();
    await page.locator('#key-input').fill(key);
    await shot('14-api-key');
    await page.locator('#key-dialog button[value=save]').click();
    await page.locator('#collections button', { hasText: 'people' }).waitFor();
    // The notice that asked for a key goes once one is given (it used to stay, telling a
    // user with a working key to enter one).
    assert(await page.locator('.notice', { hasText: 'needs an API key' }).count() === 0,
      'the "needs an API key" notice is gone once a key is saved');
    assert(await page.evaluate(() => localStorage.getItem('vultus.apiKey')) === key, 'the key is kept in localStorage');
    assert((await page.locator('#key-button').innerText()).includes('✓'), 'the key button shows a key is set');
    // Thumbnails need the key too.
    await page.locator('#collections button', { hasText: 'people' }).click();
    await page.waitForFunction(() => [...document.querySelectorAll('#subject-grid .thumb')].some((i) => i.naturalWidth > 0));
    for (const b of await page.locator('.notice button').all()) await b.click();
  });

  await step('phone-sized screen (390x844): usable, nothing wider than the screen', async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const p = await phone.newPage();
    p.on('pageerror', (e) => pageErrors.push(String(e)));
    await p.goto(base + '/');
    await p.evaluate((k) => localStorage.setItem('vultus.apiKey', k), await page.evaluate(() => localStorage.getItem('vultus.apiKey')));
    await p.reload();
    await p.waitForSelector('html[data-ready="true"]');
    const waiting = p.waitForResponse((r) => r.url().includes('/v1/analyze'));
    await p.locator('[data-picker="analyse"] .drop input[type=file]').setInputFiles(group);
    const body = await (await waiting).json();
    await p.waitForFunction((k) => document.querySelectorAll('[data-picker="analyse"] .overlay .face').length === k, body.faces.length);
    const width = await p.evaluate(() => document.documentElement.scrollWidth);
    assert(width <= 390, `the page fits the screen (${width} px wide)`);
    await p.locator('[data-picker="analyse"] .overlay .face').first().tap();
    await p.locator('#analyse-details', { hasText: 'face #1 of' }).waitFor();
    await shot('15-phone-analyse', p);
    await p.locator('#analyse-details').scrollIntoViewIfNeeded();
    await shot('16-phone-details', p);
    await p.locator('#tab-search').tap();
    await shot('17-phone-search', p);
    await p.locator('#tab-status').tap();
    await p.locator('#figures .figure').first().waitFor();
    await shot('18-phone-status', p);
    await p.locator('#tab-enrol').tap();
    await shot('19-phone-enrol', p);
    await p.locator('#tab-browse').tap();
    await p.locator('#collections button', { hasText: 'people' }).tap();
    await p.waitForFunction(() => [...document.querySelectorAll('#subject-grid .thumb')].some((i) => i.naturalWidth > 0));
    await shot('20-phone-browse', p);
    await phone.close();
  });

  await step('nothing left the page for another origin; no script errors', async () => {
    assert(foreign.length === 0, `requests to other origins: ${foreign.join(', ')}`);
    assert(pageErrors.length === 0, `page errors: ${pageErrors.join(' | ')}`);
  });
}

let code = 0;
try {
  await main();
} catch (e) {
  code = 1;
  if (!failed) {
    failed++;
    console.log(`FAIL  setup: ${e.message}`);
  }
  console.log('--- last lines of the server log ---');
  console.log(serverLog.slice(-30).join('\n'));
} finally {
  await browser?.close().catch(() => {});
  await stopVultus(server);
  rmSync(dataDir, { recursive: true, force: true });
}
console.log(`ui: screenshots in ${SHOTS}/`);
console.log(`ui: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(code || (failed ? 1 : 0));
