// Browser tests of the page at an event's check-in door (run by tests/ui/run), on a vultus of
// its own: the registration desk enrols a folder of badge photos (one person per photo, the
// file name is the badge id), then a volunteer checks arrivals with the live camera, one key
// per person, on a laptop and on a phone-width screen; a group, a stranger, a photo without
// a face and the service dropping away mid-event each get an answer in plain words; the door
// keeps a record of who came (a badge seen again, strangers counted, a CSV export, a new
// event), which lasts through a reload and the service's restart.
// Registration photos: the first photo of LFW people (../shared/data/lfw-dev) with a second
// photo for the arrival; without that folder, the model pack's samples (arrival = the same
// photo). chromium's fake camera shows the arrival's photo (--use-file-for-fake-video-capture).
// The page's clock is fixed (page.clock.setFixedTime; timers still run) at 10:42 UTC and moved
// on by hand, so that "a moment later" and "a minute later" need no waiting.
//
//   node tests/ui/test_ui_checkin.mjs --binary build/vultus --shots build/ui-screenshots
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startVultus, stopVultus, waitReady } from './server.mjs';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) => (i % 2 ? a : [...a, [v.replace(/^--/, ''), all[i + 1]]]), []));
const BINARY = args.binary || 'build/vultus';
const SHOTS = args.shots || 'build/ui-screenshots';
const LFW = process.env.UI_LFW || '../shared/data/lfw-dev/images';
const FIXTURES = process.env.UI_FIXTURES || '../shared/data/fixtures';
const PEOPLE = 8; // registrations enrolled from the page: enough for a roster, quick to send
const T0 = Date.parse('2026-03-14T10:42:00Z'); // the page's clock at the first arrival

let passed = 0, failed = 0, skipped = 0;
let server, serverLog = [], browser, page, base;
const pageErrors = [];
const work = mkdtempSync(join(tmpdir(), 'vultus-ui-checkin-'));
const dataDir = join(work, 'data');

function assert(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}

async function shot(name, p = page) {
  await p.waitForTimeout(250);
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
    if (page) await shot(`FAILED-checkin-${name.replace(/\W+/g, '-')}`).catch(() => {});
    throw e;
  }
}

// The roster: { badge, name, registration, arrival } for each attendee; the registration
// photos are copied under their badge id, as the registration desk's folder would hold them.
function roster() {
  const folder = join(work, 'badges');
  mkdirSync(folder);
  let people = [];
  if (existsSync(LFW)) {
    for (const name of readdirSync(LFW).sort()) {
      const photos = readdirSync(join(LFW, name)).filter((f) => f.endsWith('.jpg')).sort();
      if (photos.length >= 2) people.push({ name, registration: join(LFW, name, photos[0]), arrival: join(LFW, name, photos[1]) });
      if (people.length === PEOPLE) break;
    }
  } else {
    people = [1, 2, 3, 4].map((k) => ({ name: `sample${k}`, registration: `models/samples/sample${k}.jpg`, arrival: `models/samples/sample${k}.jpg` }));
  }
  people.forEach((p, i) => {
    p.badge = `B-${String(i + 1).padStart(4, '0')}`;
    p.file = join(folder, `${p.badge}.jpg`);
    copyFileSync(p.registration, p.file);
  });
  return people;
}

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  const people = roster();
  const arriving = people[1];
  // chromium's fake camera plays an MJPEG file: one JPEG is a one-frame MJPEG.
  const camera = join(work, 'arrival.mjpeg');
  copyFileSync(arriving.arrival, camera);

  let port;
  ({ server, port, log: serverLog } = await startVultus(BINARY, dataDir, []));
  base = `http://127.0.0.1:${port}`;
  await waitReady(base, server);
  console.log(`ui checkin: vultus on ${base}, ${people.length} registrations from ${existsSync(LFW) ? LFW : 'the model pack samples'}`);

  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-dev-shm-usage', '--disable-background-networking',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', `--use-file-for-fake-video-capture=${camera}`],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, permissions: ['camera'], locale: 'en-GB', timezoneId: 'UTC' });
  page = await context.newPage();
  await page.clock.setFixedTime(T0);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.goto(`${base}/#enrol`);
  await page.waitForSelector('html[data-ready="true"]');

  // Found walking the door through: the Enrol tab's batch was "many photos of ONE person", so
  // 300 registrations took 300 trips through the one-face form.
  await step('check-in: a folder of badge photos enrols one person per photo, named by the file', async () => {
    const keys = new Set();
    page.on('request', (r) => { if (r.url().includes('/v1/collections/door/faces') && r.method() === 'POST') keys.add(r.headers()['idempotency-key']); });
    const form = page.locator('#batch-form');
    await form.locator('input[name=collection]').fill('door');
    await page.locator('#batch-per-file').check();
    assert(await form.locator('input[name=subject]').isHidden(), 'the one-person subject field is not asked for');
    await page.locator('#batch-files').setInputFiles(people.map((p) => p.file));
    await form.locator('#batch-submit').click();
    await page.locator('#batch-summary').filter({ hasText: `Enrolled ${people.length} of ${people.length}` }).waitFor({ timeout: 60000 });
    const r = await (await fetch(`${base}/v1/collections/door/subjects?limit=1000`)).json();
    const ids = r.subjects.map((s) => s.id).sort();
    assert(JSON.stringify(ids) === JSON.stringify(people.map((p) => p.badge)), `one subject per badge (${ids.join(' ')})`);
    assert(r.subjects.every((s) => s.faces === 1), 'one face each');
    assert(keys.size === people.length, `an Idempotency-Key per photo (${keys.size} keys for ${people.length})`);
    const line = await page.locator('#batch-log li.ok').first().innerText();
    assert(line.includes(people[0].badge), `the line says whom the photo enrolled (${line})`);
    await shot('c1-checkin-roster');
    // The badge's metadata, as a registration system would set it.
    const patched = await fetch(`${base}/v1/collections/door/subjects/${arriving.badge}`, {
      method: 'PATCH', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ metadata: { name: arriving.name.replace(/_/g, ' ') } }),
    });
    assert(patched.status === 200, `metadata set (${patched.status})`);
  });

  // Found at the door: a camera arrival took "Camera", then "Take snapshot" in a dialog that
  // started the camera afresh each time, and the answer was a small list beside the photo.
  await step('check-in: the live camera checks an arrival in with one key, the answer large', async () => {
    await page.click('#tab-search');
    await page.locator('#search-collection').selectOption('door');
    await page.click('#door-start');
    await page.waitForFunction(() => document.querySelector('#door-video').videoWidth > 0);
    // Nothing focused: Space on the page takes the snapshot, one search per key.
    await page.evaluate(() => document.activeElement?.blur());
    let searches = 0;
    const count = (r) => { if (r.url().includes('/v1/collections/door/search')) searches++; };
    page.on('request', count);
    const answered = page.waitForResponse((r) => r.url().includes('/v1/collections/door/search'));
    await page.keyboard.press('Space');
    const body = await (await answered).json();
    assert(body.faces?.length === 1 && body.faces[0].identity === arriving.badge, `the service recognised ${arriving.badge} (${JSON.stringify(body.faces?.map((f) => f.identity) ?? body)})`);
    const verdict = page.locator('#checkin.ok');
    await verdict.filter({ hasText: `Checked in: ${arriving.badge}` }).waitFor();
    const text = await verdict.innerText();
    assert(text.includes(arriving.name.replace(/_/g, ' ')), `the badge's metadata is shown (${text})`);
    assert(!/null|undefined/.test(text), `no stray null in the answer (${text})`);
    const size = await page.locator('#checkin .headline').evaluate((e) => parseFloat(getComputedStyle(e).fontSize));
    assert(size >= 28, `the answer is large enough to read at arm's length (${size} px)`);
    // The next arrival: Enter does the same, and on the focused button, Enter is its click.
    // Each key once the answer before it is in, as at a door (two keys within milliseconds
    // rightly give one search: the newer snapshot replaces the one not yet sent).
    const next = () => page.waitForResponse((r) => r.url().includes('/v1/collections/door/search'));
    let reply = next();
    await page.keyboard.press('Enter');
    await reply;
    await page.focus('#door-snap');
    reply = next();
    await page.keyboard.press('Enter');
    await reply;
    // A while longer: a key that searched twice would show by then.
    await page.waitForTimeout(1000);
    page.off('request', count);
    assert(searches === 3, `one search per key (${searches} for 3 keys)`);
    await verdict.filter({ hasText: `Checked in: ${arriving.badge}` }).waitFor();
    await shot('c2-checkin-camera');
  });

  // Found by an event team: the door recorded nothing. Nobody could say who came or how many
  // of those registered, and the same key pressed three times would be three arrivals.
  await step('check-in: the door records the arrival, once for three keys, against the collection\'s count', async () => {
    const log = page.locator('#doorlog');
    await log.locator('#doorlog-count', { hasText: `1 of ${people.length} checked in` }).waitFor();
    const rows = log.locator('#doorlog-list li');
    assert(await rows.count() === 1, `one arrival for three keys within seconds (${await rows.count()})`);
    const row = await rows.first().innerText();
    assert(row.includes(arriving.badge) && row.includes('10:42') && row.includes(arriving.name.replace(/_/g, ' ')), `the arrival names the badge, the time and the metadata (${row})`);
    const count = await log.locator('#doorlog-count').innerText();
    assert(!/null|undefined/.test(count), `no stray null in the count (${count})`);
    const size = await log.locator('#doorlog-count b').evaluate((e) => parseFloat(getComputedStyle(e).fontSize));
    assert(size >= 28, `the count is large enough to read across a desk (${size} px)`);
    await shot('c2b-checkin-record');
  });

  // Found on a slow network and restarting the service mid-event: while the next search was
  // on its way the answer still named the last person, and the corner's "could not be
  // reached" stayed up after the service was back.
  await step('check-in: a slow network and the service restarting mid-event; Space tries again', async () => {
    let release;
    const gate = new Promise((r) => { release = r; });
    await page.route('**/v1/collections/door/search**', async (r) => { await gate; await r.continue(); });
    await page.evaluate(() => document.activeElement?.blur());
    await page.keyboard.press('Space');
    const pending = page.locator('#checkin', { hasText: 'Checking' });
    await pending.waitFor();
    assert(!(await pending.innerText()).includes(arriving.badge), 'the last answer is not shown for the next person');
    release();
    await page.locator('#checkin.ok').filter({ hasText: `Checked in: ${arriving.badge}` }).waitFor();
    await page.unroute('**/v1/collections/door/search**');
    await stopVultus(server);
    await page.keyboard.press('Space');
    const bad = page.locator('#checkin.bad');
    await bad.waitFor();
    const text = await bad.innerText();
    assert(text.includes('could not be reached') && text.includes('Press Space'), `the answer says what happened and what to do (${text})`);
    assert(!text.includes(arriving.badge), `the last person's name is gone (${text})`);
    // Found with the door's record: an error without details (nothing answered) ended "null".
    const under = await page.locator('[data-picker="search"] .inline-error').innerText();
    assert(under.includes('could not be reached') && !/null|undefined/.test(under), `the error under the picture (${under})`);
    await shot('c3-checkin-unreachable');
    ({ server, log: serverLog } = await startVultus(BINARY, dataDir, ['--listen', `127.0.0.1:${port}`]));
    await waitReady(base, server);
    await page.keyboard.press('Space');
    await page.locator('#checkin.ok').filter({ hasText: `Checked in: ${arriving.badge}` }).waitFor();
    const stale = await page.locator('#notices .notice[data-code="network"]').count();
    assert(stale === 0, `no "could not be reached" notice once the service answers again (${stale})`);
    // Still the one arrival: the keys of this step came within seconds of the first.
    await page.locator('#doorlog-count', { hasText: `1 of ${people.length} checked in` }).waitFor();
  });

  // Found by an event team: a badge used a second time (a friend with the same face, or the
  // same person coming back) was answered "Checked in" again, in the same green.
  await step('check-in: a badge seen again later is "Already checked in at 10:42", not in green; the record outlives a reload', async () => {
    // Metadata with a comma, quotes and what a spreadsheet would run: for the export's step.
    const metadata = { name: arriving.name.replace(/_/g, ' '), team: 'Blue, "North"', note: '=1+1' };
    const patched = await fetch(`${base}/v1/collections/door/subjects/${arriving.badge}`, {
      method: 'PATCH', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ metadata }),
    });
    assert(patched.status === 200, `metadata set (${patched.status})`);
    await page.reload();
    await page.waitForSelector('html[data-ready="true"]');
    await page.locator('#search-collection option[value="door"]').waitFor({ state: 'attached' });
    assert(await page.locator('#search-collection').inputValue() === 'door', 'the door\'s collection is chosen again');
    await page.clock.setFixedTime(T0 + 90000);
    await page.click('#door-start');
    // The key pressed as soon as the camera is on, before its first frame (the focused
    // "Check in the next one" button takes it): the snapshot waits for a picture, the key is not lost.
    await page.locator('#door').waitFor();
    await page.keyboard.press('Space');
    await page.locator('#doorlog-count', { hasText: `1 of ${people.length} checked in` }).waitFor();
    const again = page.locator('#checkin.again');
    await again.filter({ hasText: `Already checked in at 10:42 (${arriving.badge})` }).waitFor();
    const colour = await again.evaluate((e) => getComputedStyle(e).borderTopColor);
    const green = await page.evaluate(() => {
      const e = document.createElement('div');
      e.className = 'checkin ok';
      document.body.append(e);
      const c = getComputedStyle(e).borderTopColor;
      e.remove();
      return c;
    });
    assert(colour !== green, `not the success colour (${colour}, success ${green})`);
    const said = await again.innerText();
    assert(said.includes('Blue, "North"') && said.includes('Arrival 2'), `the badge's metadata and which arrival it is (${said})`);
    const rows = page.locator('#doorlog-list li');
    assert(await rows.count() === 2, `a second arrival (${await rows.count()})`);
    const newest = await rows.first().innerText();
    assert(newest.includes('10:43') && newest.includes('arrival 2'), `newest first (${newest})`);
    await page.locator('#doorlog-count', { hasText: `1 of ${people.length} checked in` }).waitFor();
    // The key pressed again at once: still the warning, still two arrivals.
    const reply = page.waitForResponse((r) => r.url().includes('/v1/collections/door/search'));
    await page.keyboard.press('Space');
    await reply;
    await page.locator('#checkin.again').filter({ hasText: 'Already checked in' }).waitFor();
    assert(await rows.count() === 2, `a repeated key is no third arrival (${await rows.count()})`);
    await shot('c3b-checkin-again');
  });

  await step('check-in: a face not recognised at the door is counted, no photo kept', async () => {
    if (!existsSync(LFW)) return 'skip'; // the samples' roster has nobody left over for a stranger
    // The fake camera reads its file when it starts: a stranger at the door (it needs the new
    // file's size to be the old one's: LFW's photos are all 250x250).
    const name = readdirSync(LFW).sort().filter((n) => !people.some((p) => p.name === n)).at(-1);
    const restart = async (file) => {
      await page.click('#door-stop');
      copyFileSync(file, camera);
      await page.click('#door-start');
      await page.waitForFunction(() => document.querySelector('#door-video').videoWidth > 0);
      await page.evaluate(() => document.activeElement?.blur());
    };
    await restart(join(LFW, name, readdirSync(join(LFW, name)).sort()[0]));
    await page.clock.setFixedTime(T0 + 120000);
    for (let k = 0; k < 2; k++) { // the second at once: the same stranger trying again
      const reply = page.waitForResponse((r) => r.url().includes('/v1/collections/door/search'));
      await page.keyboard.press('Space');
      await reply;
      await page.locator('#checkin.warn').filter({ hasText: 'Not recognised' }).waitFor();
    }
    await page.locator('#doorlog-count', { hasText: '1 not recognised' }).waitFor();
    const stored = await page.evaluate(() => Object.entries(localStorage).filter(([k]) => k.startsWith('vultus.doorlog')).map(([, v]) => v).join(''));
    assert(stored.length > 0 && stored.length < 4000 && !/[A-Za-z0-9+/]{200}/.test(stored), `a count and names only, no picture (${stored.length} bytes)`);
    await restart(arriving.arrival);
  });

  await step('check-in: the arrivals export as CSV: subject, first time, times seen, metadata', async () => {
    const download = page.waitForEvent('download');
    await page.click('#doorlog-export');
    const file = await download;
    assert(file.suggestedFilename() === 'arrivals-door-2026-03-14.csv', `named for the collection and the day (${file.suggestedFilename()})`);
    const text = readFileSync(await file.path(), 'utf8');
    assert(text.startsWith('\ufeff'), 'a byte order mark, for spreadsheets to read UTF-8');
    const lines = text.slice(1).split('\r\n');
    assert(lines[0] === 'subject,first_seen,last_arrival,times_seen,similarity,name,team,note', `the header (${lines[0]})`);
    const row = lines.find((l) => l.startsWith(`${arriving.badge},`)) || '';
    assert(row.startsWith(`${arriving.badge},2026-03-14 10:42:00,2026-03-14 10:43:30,2,0.`), `first time, last arrival, times seen, similarity (${row})`);
    assert(row.endsWith(`,${arriving.name.replace(/_/g, ' ')},"Blue, ""North""",'=1+1`), `metadata quoted, a formula kept as text (${row})`);
    assert(lines.length === 3 && lines[2] === '', `one line per person who came (${lines.length - 2})`);
  });

  await step('check-in: "Start a new event" asks first, then clears the record', async () => {
    await page.click('#doorlog-reset');
    const dialog = page.locator('#confirm-dialog');
    await dialog.filter({ hasText: 'Start a new event?' }).waitFor();
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await page.locator('#doorlog-count', { hasText: `1 of ${people.length} checked in` }).waitFor();
    await page.click('#doorlog-reset');
    await dialog.getByRole('button', { name: 'Start a new event' }).click();
    await page.locator('#doorlog-count', { hasText: `0 of ${people.length} checked in` }).waitFor();
    assert(await page.locator('#doorlog-list li').count() === 0, 'the list is empty');
    assert(!(await page.locator('#doorlog-count').innerText()).includes('not recognised'), 'and the strangers\' count');
    // The badge's next arrival is a first one again.
    await page.evaluate(() => document.activeElement?.blur());
    await page.keyboard.press('Space');
    await page.locator('#checkin.ok').filter({ hasText: `Checked in: ${arriving.badge}` }).waitFor();
    await page.locator('#doorlog-count', { hasText: `1 of ${people.length} checked in` }).waitFor();
    await shot('c3c-checkin-new-event');
  });

  await step('check-in: a group, a stranger and a photo without a face each get an answer', async () => {
    await page.click('#door-stop');
    const input = page.locator('[data-picker="search"] input[type=file]').first();
    const ask = async (file) => {
      const answered = page.waitForResponse((r) => r.url().includes('/v1/collections/door/search'));
      await input.setInputFiles(file);
      return (await answered).json();
    };
    const group = existsSync(join(FIXTURES, 'group-t1.jpg')) ? join(FIXTURES, 'group-t1.jpg') : 'models/samples/sample5.jpg';
    let r = await ask(group);
    assert(r.faces.length >= 2, `the group photo has several faces (${r.faces.length})`);
    const unknown = r.faces.filter((f) => f.decision !== 'match').length;
    let v = await page.locator('#checkin').innerText();
    assert(v.includes(unknown === r.faces.length ? `None of the ${r.faces.length} recognised` : `${unknown} not recognised`), `the group's answer counts the faces (${v})`);
    await shot('c4-checkin-group');
    // An enrolled person's photo from a file (no camera): recognised, not "checked in".
    r = await ask(arriving.arrival);
    assert(r.faces[0]?.identity === arriving.badge, `${arriving.badge} recognised from a file (${r.faces[0]?.identity})`);
    v = await page.locator('#checkin.ok').innerText();
    assert(v.includes(`Recognised: ${arriving.badge}`) && !v.includes('Checked in'), `a file search says recognised, not checked in (${v})`);
    const stranger = existsSync(LFW) ? people.length : -1;
    if (stranger >= 0) {
      const name = readdirSync(LFW).sort().filter((n) => !people.some((p) => p.name === n)).at(-1);
      const file = join(LFW, name, readdirSync(join(LFW, name)).sort()[0]);
      r = await ask(file);
      assert(r.faces.length === 1 && r.faces[0].decision !== 'match', `${name} is not recognised (${r.faces[0]?.identity})`);
      await page.locator('#checkin.warn').filter({ hasText: 'Not recognised' }).waitFor();
      v = await page.locator('#checkin').innerText();
      assert(v.includes('registration desk'), `the answer says what to do next (${v})`);
    }
    const blank = existsSync(join(FIXTURES, 'noface-white.png')) ? join(FIXTURES, 'noface-white.png') : null;
    if (blank) {
      // The service answers 422 no_face: a person to ask to face the camera, not an error.
      r = await ask(blank);
      assert(r.error?.code === 'no_face', `no face in the blank picture (${JSON.stringify(r)})`);
      await page.locator('#checkin.warn').filter({ hasText: 'No face seen' }).waitFor();
    }
  });

  // Found by the check-in's engineers: search gave no quality, so "a poor photo" was guessed
  // from the face's size in the picture, and a whole photo taken small (its largest face of
  // quality ~0.06: the sample reduced to a sixth, each face as wide in it as before) got "Not
  // enrolled".
  await step('check-in: a poor photo is called one, from the face\'s quality', async () => {
    const jpeg = readFileSync('models/samples/sample1.jpg').toString('base64');
    const small = await page.evaluate(async (b64) => {
      const img = new Image();
      img.src = `data:image/jpeg;base64,${b64}`;
      await img.decode();
      const c = document.createElement('canvas');
      c.width = Math.floor(img.naturalWidth / 6);
      c.height = Math.floor(img.naturalHeight / 6);
      c.getContext('2d').drawImage(img, 0, 0, c.width, c.height);
      return c.toDataURL('image/jpeg', 0.9).split(',')[1];
    }, jpeg);
    const file = join(work, 'poor.jpg');
    writeFileSync(file, Buffer.from(small, 'base64'));
    const answered = page.waitForResponse((r) => r.url().includes('/v1/collections/door/search'));
    await page.locator('[data-picker="search"] input[type=file]').first().setInputFiles(file);
    const r = await (await answered).json();
    const f = r.faces?.[0];
    assert(f && r.faces.every((x) => typeof x.quality === 'number' && x.quality < 0.1), `the service gives the small faces their low quality (${JSON.stringify(r.faces?.map((x) => x.quality))})`);
    if (r.faces.some((x) => x.decision === 'match')) return 'skip'; // the samples' roster enrols this very photo
    // The answer drawn from this search (the last one's was "No face seen").
    await page.waitForFunction(() => !/Checking|No face seen/.test(document.querySelector('#checkin').textContent));
    const text = await page.locator('#checkin.warn').innerText();
    assert(text.includes('poor photo') && text.includes('face the camera') && !text.includes('Not enrolled'), `the answer says it is a poor photo (${text})`);
    await shot('c4b-checkin-poor-photo');
  });

  // Found by the check-in's engineers: a badge photo the batch found too poor had no way to be
  // stored, where the one-face form offers "Enrol anyway". The poor photo is the step above's.
  await step('check-in: a badge photo refused as poor can be enrolled anyway from the batch', async () => {
    await page.click('#tab-enrol');
    const folder = join(work, 'late');
    mkdirSync(folder);
    copyFileSync(join(work, 'poor.jpg'), join(folder, 'B-0901.jpg'));
    const keys = [];
    const watch = (r) => { if (r.url().includes('/v1/collections/late/faces') && r.method() === 'POST') keys.push([r.headers()['idempotency-key']]); };
    page.on('request', watch);
    const form = page.locator('#batch-form');
    await form.locator('input[name=collection]').fill('late');
    await page.locator('#batch-per-file').check();
    await page.locator('#batch-files').setInputFiles([join(folder, 'B-0901.jpg')]);
    await form.locator('#batch-submit').click();
    await page.locator('#batch-summary').filter({ hasText: 'Enrolled 0 of 1' }).waitFor({ timeout: 60000 });
    const line = page.locator('#batch-log li.err', { hasText: 'B-0901.jpg' });
    await line.getByRole('button', { name: 'Enrol anyway' }).click();
    await page.locator('#batch-log li.ok', { hasText: 'enrolled anyway' }).waitFor();
    page.off('request', watch);
    const text = await page.locator('#batch-log li.ok').innerText();
    assert(text.includes('B-0901') && /face #\d+/.test(text), `the line says whom it enrolled (${text})`);
    assert(keys.length === 2 && keys[0][0] !== keys[1][0], `the second try has a key of its own (${keys.map((k) => k[0]).join(' ')})`);
    const summary = await page.locator('#batch-summary').innerText();
    assert(summary.includes('Enrolled 1 of 1'), `the summary counts it (${summary})`);
    // Stored below the default limit: the second try sent min_quality=0.
    const r = await (await fetch(`${base}/v1/collections/late/faces?subject=B-0901`)).json();
    assert(r.faces?.length === 1 && r.faces[0].quality < 0.1, `B-0901 is stored with its one poor face (${JSON.stringify(r.faces?.map((x) => x.quality))})`);
    await shot('c4c-batch-enrol-anyway');
  });

  // Found by the check-in's engineers: the one-face form says when a face also looks like
  // another subject (also_matches), the batches said nothing: a person registered twice under
  // two badges went unseen. The arrival's photo of B-0002 enrolled again under another badge,
  // in either batch mode.
  await step('check-in: a batch says when a photo also looks like another subject', async () => {
    const folder = join(work, 'twice');
    mkdirSync(folder);
    copyFileSync(arriving.arrival, join(folder, 'B-0902.jpg'));
    const form = page.locator('#batch-form');
    await form.locator('input[name=collection]').fill('door');
    await page.locator('#batch-per-file').check();
    const answered = page.waitForResponse((r) => r.url().includes('/v1/collections/door/faces') && r.request().method() === 'POST');
    await page.locator('#batch-files').setInputFiles([join(folder, 'B-0902.jpg')]);
    await form.locator('#batch-submit').click();
    const r = await (await answered).json();
    const also = (r.also_matches || []).find((m) => m.subject === arriving.badge);
    assert(also, `the service found ${arriving.badge} in the new face (${JSON.stringify(r.also_matches)})`);
    const line = page.locator('#batch-log li.ok', { hasText: 'B-0902' });
    await line.waitFor({ timeout: 60000 });
    let text = await line.innerText();
    assert(text.includes(`also looks like subject ${arriving.badge}, similarity ${also.similarity.toFixed(2)}`), `the line names the other subject (${text})`);
    await shot('c4d-batch-also-matches');
    // The same photo for one person named in the form ("all of one person"): B-0002 and B-0902.
    await page.locator('#batch-form input[name="batch-mode"][value="one"]').check();
    await form.locator('input[name=subject]').fill('visitor');
    copyFileSync(arriving.arrival, join(folder, 'visitor.jpg')); // another name: a change event
    await page.locator('#batch-files').setInputFiles([join(folder, 'visitor.jpg')]);
    await form.locator('#batch-submit').click();
    await page.locator('#batch-summary').filter({ hasText: 'Enrolled 1 of 1' }).waitFor({ timeout: 60000 });
    text = await page.locator('#batch-log li.ok').innerText();
    assert(text.includes(`subject ${arriving.badge}`) && text.includes('subject B-0902'), `one person's batch names both (${text})`);
    // Both subjects hold the arrival's own photo: leave the door as the phone step expects it.
    for (const s of ['B-0902', 'visitor']) await fetch(`${base}/v1/collections/door/subjects/${s}`, { method: 'DELETE' });
  });

  // Found by the check-in's engineers: a badge's name misspelt at registration could only be
  // fixed with curl (PATCH …/subjects/{s}); the Browse tab showed no metadata and had no edit.
  await step('check-in: the Browse tab edits a badge\'s metadata, which the check-in then shows', async () => {
    await page.click('#tab-browse');
    await page.locator('#collections button', { hasText: 'door' }).first().click();
    const card = page.locator('article.subject', { has: page.locator('.name', { hasText: new RegExp(`^${arriving.badge}$`) }) });
    await card.getByRole('button', { name: `edit the metadata of ${arriving.badge}` }).click();
    const area = card.locator('textarea[name=metadata]');
    assert((await area.inputValue()).includes(arriving.name.replace(/_/g, ' ')), 'the form starts from the metadata as stored');
    await area.fill('{"name": oops}');
    await card.getByRole('button', { name: 'Save' }).click();
    await card.locator('.inline-error', { hasText: 'Not JSON' }).waitFor();
    await area.fill('{"name": "Desk Checked", "desk": 3}');
    await card.getByRole('button', { name: 'Save' }).click();
    await card.locator('.subject-meta', { hasText: 'desk: 3' }).waitFor();
    const r = await (await fetch(`${base}/v1/collections/door/subjects/${arriving.badge}`)).json();
    assert(JSON.stringify(r.metadata) === '{"name":"Desk Checked","desk":3}', `stored (${JSON.stringify(r.metadata)})`);
    await shot('c4e-browse-metadata');
  });

  await step('check-in: on a phone (390x844) the answer is on screen after one tap, nothing wider', async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, permissions: ['camera'] });
    const p = await phone.newPage();
    p.on('pageerror', (e) => pageErrors.push(String(e)));
    await p.goto(`${base}/#search`);
    await p.waitForSelector('html[data-ready="true"]');
    await p.locator('#search-collection').selectOption('door');
    await p.locator('#door-start').tap();
    await p.waitForFunction(() => document.querySelector('#door-video').videoWidth > 0);
    await p.locator('#door-snap').tap();
    const verdict = p.locator('#checkin.ok').filter({ hasText: `Checked in: ${arriving.badge}` });
    await verdict.waitFor();
    const said = await verdict.innerText();
    assert(said.includes('Desk Checked') && said.includes('desk: 3'), `the metadata edited in Browse is shown (${said})`);
    const box = await verdict.boundingBox();
    assert(box.y >= 0 && box.y + box.height <= 844, `the answer is on the screen without scrolling (${Math.round(box.y)}..${Math.round(box.y + box.height)} px)`);
    const snap = await p.locator('#door-snap').boundingBox();
    assert(snap.y + snap.height <= 844, 'the check-in button too');
    // The count beside Stop: the record's card is far below the camera on a phone.
    const tally = p.locator('#door-tally');
    assert((await tally.innerText()) === `1 of ${people.length} checked in`, `the count by the camera (${await tally.innerText()})`);
    const at = await tally.boundingBox();
    assert(at.y + at.height <= 844, `the count is on the screen too (${Math.round(at.y + at.height)} px)`);
    const width = await p.evaluate(() => document.documentElement.scrollWidth);
    assert(width <= 390, `the page fits the screen (${width} px wide)`);
    await shot('c5-checkin-phone', p);
    // Another device keeps a record of its own (README: two doors, two lists), below the camera.
    const record = p.locator('#doorlog');
    await record.scrollIntoViewIfNeeded();
    const count = await record.locator('#doorlog-count').innerText();
    assert(count.startsWith('1 of') && !count.includes('not recognised'), `the phone's own record (${count})`);
    const wide = await p.evaluate(() => document.documentElement.scrollWidth);
    assert(wide <= 390, `the record fits the screen (${wide} px wide)`);
    await shot('c5b-checkin-phone-record', p);
    await phone.close();
  });

  await step('check-in: no script errors', async () => {
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
  rmSync(work, { recursive: true, force: true });
}
console.log(`ui checkin: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(code || (failed ? 1 : 0));
