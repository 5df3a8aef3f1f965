// vultus web page: plain modern JavaScript, no dependencies, no build step. It talks only to
// the service that served it (relative URLs; the page's Content-Security-Policy enforces it).
// The DOM is built with h() and textContent, never from HTML strings, so names that come back
// from the API cannot inject markup.

const KEY_STORAGE = 'vultus.apiKey';
const COLLECTION_STORAGE = 'vultus.collection';
const DOOR_STORAGE = 'vultus.door-name'; // this device's door (the check-in camera's)
const PALETTE = ['#4cc9b0', '#7aa2ff', '#f0a35e', '#e377c2', '#ffd166', '#8bd450', '#ff7b72', '#b197fc',
  '#5fd3f3', '#f7a1c4'];
const STAGE_COLORS = {
  queue: '#6b7787', decode: '#7aa2ff', detect: '#4cc9b0', landmarks: '#8bd450', align: '#ffd166',
  embed: '#f0a35e', attributes: '#e377c2', liveness: '#b197fc', gallery: '#ff7b72',
};
const STAGE_ORDER = ['queue', 'decode', 'detect', 'landmarks', 'align', 'embed', 'attributes', 'liveness',
  'gallery'];
// Enrolment's default min_quality (FACE_MIN_QUALITY_DEFAULT): a face below it is refused as too
// small, blurred or turned away to be recognised reliably.
const MIN_QUALITY = 0.1;
const EMOTIONS = ['neutral', 'happy', 'sad', 'surprise', 'angry', 'fear', 'disgust'];

const $ = (sel, root = document) => root.querySelector(sel);

// Creates an element: props are attributes, except class, text, style (an object of CSS
// properties, set through the CSSOM so the CSP needs no 'unsafe-inline') and on* listeners.
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'style') for (const [p, val] of Object.entries(v)) el.style.setProperty(p, val);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
}

const fmt = {
  ms: (v) => (v >= 100 ? Math.round(v).toString() : v >= 10 ? v.toFixed(1) : v.toFixed(2)),
  pct: (v) => `${Math.round(v * 100)}%`,
  num: (v, d = 3) => (Number.isFinite(v) ? v.toFixed(d) : '–'),
};

/* ---- the API ------------------------------------------------------------------------------ */

class ApiError extends Error {
  constructor(status, code, message, retryAfter, keySent = false) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.keySent = keySent; // a 401 with a key means that key was refused
  }
}

function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || '';
  } catch {
    return '';
  }
}

// Calls the API; resolves to the parsed JSON (or the Response when raw), rejects with an
// ApiError whose code is the API's stable error code ('network' when nothing answered or the
// answer broke off, 'aborted' when signal cancelled it).
async function api(method, path, { json, form, raw, signal, idempotencyKey } = {}) {
  const headers = {};
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const lost = (e) => (e.name === 'AbortError' ? new ApiError(0, 'aborted', 'cancelled')
    : new ApiError(0, 'network', String(e.message || e)));
  let res, text;
  try {
    res = await fetch(path, { method, headers, body, cache: 'no-store', signal });
    serviceAnswered();
    if (raw && res.ok) return res;
    // The service may go away in the middle of its answer, too.
    text = await res.text();
  } catch (e) {
    throw lost(e);
  }
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = data && data.error;
    const code = (err && err.code) || `http_${res.status}`;
    // Not the service's JSON: a proxy's error page, whose HTML is no message.
    const message = (err && err.message) || (/<[a-z!]/i.test(text) ? '' : text.slice(0, 300))
      || `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
    const ra = res.headers.get('Retry-After');
    if (res.status === 401) askForKeyOnce();
    throw new ApiError(res.status, code, message, ra ? Number(ra) : 0, Boolean(key));
  }
  return data;
}

// The service answered: "could not be reached" notices are stale now (it restarted, the
// Wi-Fi came back), and left in the corner they told a volunteer it was still away.
function serviceAnswered() {
  for (const n of document.querySelectorAll('#notices .notice[data-code="network"]')) n.remove();
}

const enc = encodeURIComponent;

// Thumbnails need the API key, so an <img src> cannot fetch them: they come through fetch()
// as blobs, kept as object URLs for the page's life.
const thumbCache = new Map();
function thumbnail(collection, faceId) {
  const path = `/v1/collections/${enc(collection)}/faces/${faceId}/thumbnail`;
  if (!thumbCache.has(path)) {
    const p = api('GET', path, { raw: true })
      .then((res) => res.blob())
      .then((b) => URL.createObjectURL(b));
    p.catch(() => thumbCache.delete(path));
    thumbCache.set(path, p);
  }
  return thumbCache.get(path);
}

function thumbImg(collection, faceId, alt) {
  const img = h('img', { class: 'thumb', alt, loading: 'lazy' });
  thumbnail(collection, faceId).then((url) => { img.src = url; }, () => { img.alt = `${alt} (unavailable)`; });
  return img;
}

/* ---- errors, in plain words ------------------------------------------------------------- */

const PLAIN = {
  network: 'The service could not be reached. Check that it is still running.',
  unauthorized: 'This service needs an API key. Enter one with “API key” at the top right.',
  key_rejected: 'The API key was not accepted (unknown, revoked or mistyped). Enter another with “API key” at the top right.',
  forbidden: 'Your API key is not allowed to do this.',
  host_not_allowed: 'The service does not answer pages opened by this address (a guard against other sites). Open it by its IP address or localhost, or ask whoever runs it to add this name to --allowed-hosts.',
  unsupported_image: 'That file is not a picture the service can read. Use a JPEG, PNG or WebP photo.',
  invalid_image: 'That picture is damaged or incomplete, so the service cannot read it.',
  missing_image: 'No picture was sent.',
  no_face: 'No face was found in that picture.',
  low_quality: 'The face in that picture is too small, blurred or turned away to be recognised reliably, so it was not enrolled. Use a sharper, frontal, well-lit photo.',
  image_too_large: 'That picture has more pixels than the service accepts.',
  body_too_large: 'That file is larger than the service accepts.',
  too_large: 'That is more than the service allows.',
  overloaded: 'The service is busy right now.',
  store_unavailable: 'The service cannot reach its database right now; nothing was changed.',
  store_full: 'The service’s database is full: nothing was stored. Tell the service’s operator.',
  rate_limited: 'Too many requests with this API key.',
  not_ready: 'The service is still starting (loading its models and its gallery): try again in a moment.',
  collection_not_found: 'There is no collection with that name.',
  no_collection: 'Choose a collection first.', // the page's own, not the service's
  subject_not_found: 'There is no such subject in this collection.',
  face_not_found: 'That face is no longer in the collection.',
  thumbnail_not_found: 'That face has no stored picture.',
  no_enrolled_face: 'That subject has no enrolled face to compare with.',
  not_found: 'The service has nothing at that address.',
  collection_exists: 'A collection with that name already exists.',
  subject_exists: 'A subject with that name already exists.',
  conflict: 'That already exists.',
  model_mismatch: 'This collection was made with another face model than the one the service uses now.',
  matches_other_subject: 'That face already looks like another person in this collection, so it was not enrolled.',
  invalid_parameter: 'One of the values is not valid.',
  bad_request: 'The service could not understand the request.',
  invalid_json: 'The service could not understand the request.',
  invalid_base64: 'The picture was not sent in a form the service can read.',
  method_not_allowed: 'The service does not allow that here.',
  unsupported: 'The service cannot do that.',
  invalid_multipart: 'The upload arrived incomplete; please try again.',
  unsupported_media_type: 'The service does not accept this kind of upload.',
  idempotency_in_progress: 'The same upload is still being processed.',
  idempotency_key_reused: 'The same upload key was used for another upload.',
  internal: 'The service hit an internal error.',
  // Answers without the service's JSON come from a proxy or gateway in front of it.
  http_413: 'That file is larger than the service accepts.',
  http_429: 'Too many requests: wait a moment and try again.',
  http_502: 'The service could not be reached (its gateway answered instead).',
  http_503: 'The service could not be reached (its gateway answered instead).',
  http_504: 'The service could not be reached in time (its gateway gave up).',
};

function plainWords(err) {
  if (!(err instanceof ApiError)) return { title: 'Something went wrong in the page.', detail: String(err) };
  let title = err.plain || (err.code === 'unauthorized' && err.keySent ? PLAIN.key_rejected : PLAIN[err.code])
    || `The service answered with an error (${err.status}).`;
  if (err.retryAfter > 0) title += ` Try again in ${err.retryAfter} s.`;
  return { title, detail: err.code === 'network' ? '' : `${err.message} (${err.code})` };
}

// A notice in the corner; errors stay until dismissed, information goes after a while.
function notify(err, { info = false, context = '' } = {}) {
  const { title, detail } = info ? { title: err, detail: '' } : plainWords(err);
  const box = $('#notices');
  const close = h('button', { type: 'button', 'aria-label': 'Dismiss', text: '×' });
  const n = h('div', { class: info ? 'notice info' : 'notice', role: info ? 'status' : 'alert' },
    h('strong', { text: context ? `${context}: ${title}` : title }),
    detail ? h('div', { class: 'detail', text: detail }) : null, close);
  if (!info && err instanceof ApiError) n.dataset.code = err.code;
  close.addEventListener('click', () => n.remove());
  // The same message again replaces the old one instead of stacking up.
  for (const old of box.children) if (old.firstChild.textContent === n.firstChild.textContent) old.remove();
  box.append(n);
  while (box.children.length > 4) box.firstElementChild.remove();
  if (info) setTimeout(() => n.remove(), 4000);
  return n;
}

function inlineError(el, err, what = '') {
  const { title, detail } = plainWords(err);
  // replaceChildren would write a null as the text "null": an error without details (nothing
  // answered) ended in it.
  el.replaceChildren(h('span', { text: what ? `${what}: ${title}` : title }));
  if (detail) el.append(h('span', { class: 'detail', text: detail }));
  el.hidden = false;
}

/* ---- the API key ------------------------------------------------------------------------ */

let askedForKey = false;
function askForKeyOnce() {
  if (askedForKey) return;
  askedForKey = true;
  openKeyDialog();
}

function openKeyDialog() {
  const d = $('#key-dialog');
  if (d.open) return;
  $('#key-input').value = apiKey();
  d.showModal();
}

function updateKeyButton() {
  $('#key-button').textContent = apiKey() ? 'API key ✓' : 'API key';
}

function setupKeyDialog() {
  const d = $('#key-dialog');
  $('#key-button').addEventListener('click', openKeyDialog);
  // Enter in the field would press the form's first button, Forget: it means Save.
  $('#key-input').addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' || e.isComposing) return;
    e.preventDefault();
    d.close('save');
  });
  d.addEventListener('close', () => {
    const v = $('#key-input').value.trim();
    try {
      if (d.returnValue === 'save' && v) localStorage.setItem(KEY_STORAGE, v);
      if (d.returnValue === 'forget') localStorage.removeItem(KEY_STORAGE);
    } catch {
      notify('This browser does not let the page keep the key (storage is blocked).', { info: true });
    }
    $('#key-input').value = '';
    updateKeyButton();
    if (d.returnValue === 'save' || d.returnValue === 'forget') {
      // What the service said about the previous key (none, refused, not allowed) is stale
      // now: left in the corner it would tell a user who has just entered a good key to
      // enter one. A refused new key gets a notice of its own on its first call.
      for (const n of $('#notices').querySelectorAll('.notice[data-code="unauthorized"], .notice[data-code="forbidden"]')) n.remove();
      askedForKey = false;
      refreshCollections();
    }
  });
  updateKeyButton();
}

/* ---- confirmation ----------------------------------------------------------------------- */

function confirmAction(title, text, okLabel = 'Delete') {
  const d = $('#confirm-dialog');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okLabel;
  d.returnValue = '';
  d.showModal();
  return new Promise((resolve) => d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true }));
}

/* ---- tabs ------------------------------------------------------------------------------- */

const TABS = ['analyse', 'enrol', 'search', 'verify', 'browse', 'status'];
let activeTab = '';
const tabListeners = [];

function showTab(name, focus = false) {
  if (!TABS.includes(name)) name = 'analyse';
  activeTab = name;
  for (const t of TABS) {
    const btn = $(`#tab-${t}`);
    btn.setAttribute('aria-selected', String(t === name));
    btn.tabIndex = t === name ? 0 : -1;
    $(`#${t}`).hidden = t !== name;
  }
  if (focus) $(`#tab-${name}`).focus();
  if (location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
  for (const f of tabListeners) f(name);
}

function setupTabs() {
  const list = $('.tabs');
  list.addEventListener('click', (e) => {
    const b = e.target.closest('[data-tab]');
    if (b) showTab(b.dataset.tab);
  });
  list.addEventListener('keydown', (e) => {
    const i = TABS.indexOf(activeTab);
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: TABS.length - 1 }[e.key];
    if (next === undefined) return;
    e.preventDefault();
    showTab(TABS[(next + TABS.length) % TABS.length], true);
  });
  addEventListener('hashchange', () => showTab(location.hash.slice(1)));
  document.querySelector('.brand').addEventListener('click', (e) => {
    e.preventDefault();
    showTab('analyse', true);
  });
  showTab(location.hash.slice(1));
}

/* ---- the picture picker: drop, choose, paste, camera ---------------------------------- */

const pickers = {};

const DROP_ICON = () => {
  const s = svg('svg', { viewBox: '0 0 24 24', 'aria-hidden': 'true' });
  s.append(svg('path', {
    d: 'M4 16.5V18a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2v-1.5M12 4v11m0-11L7.5 8.5M12 4l4.5 4.5',
    fill: 'none', stroke: 'currentColor', 'stroke-width': '1.7', 'stroke-linecap': 'round', 'stroke-linejoin': 'round',
  }));
  return s;
};

function isImageFile(f) {
  return /^image\//.test(f.type) || /\.(jpe?g|png|webp)$/i.test(f.name || '');
}

// A picker owns a drop zone that turns into the image with its face overlay once a picture
// is chosen. onImage(blob, name) runs for every new picture.
function makePicker(root, { title = 'Drop a photo here', onImage }) {
  const id = root.dataset.picker;
  const fileInput = () => {
    const input = h('input', { type: 'file', accept: 'image/*', class: 'visually-hidden', 'data-role': 'file' });
    input.addEventListener('change', () => {
      if (input.files[0]) picker.set(input.files[0], input.files[0].name);
      input.value = '';
    });
    return input;
  };
  const cameraButton = () => h('button', { type: 'button', class: 'btn ghost', onclick: () => openCamera(picker) }, 'Camera');
  const drop = h('div', { class: 'drop' },
    h('div', {}, DROP_ICON(), h('div', { class: 'big', text: title }),
      h('div', { class: 'muted', text: 'or paste one with Ctrl+V' })),
    h('div', { class: 'picker-actions' },
      h('label', { class: 'btn primary' }, 'Choose a photo', fileInput()), cameraButton()));
  const img = h('img', { alt: '' });
  const overlay = h('div', { class: 'overlay' });
  const frame = h('div', { class: 'frame' }, img, overlay);
  const stage = h('div', { class: 'stage', hidden: true }, frame);
  const name = h('span', { class: 'name' });
  const bar = h('div', { class: 'picker-bar', hidden: true }, name,
    h('div', { class: 'row' }, h('label', { class: 'btn small' }, 'Another photo', fileInput()),
      h('button', { type: 'button', class: 'btn small ghost', onclick: () => openCamera(picker) }, 'Camera')));
  const error = h('div', { class: 'inline-error', role: 'alert', hidden: true });
  root.replaceChildren(drop, stage, bar, error);

  let depth = 0;
  root.addEventListener('dragenter', (e) => { e.preventDefault(); depth++; root.classList.add('dragging'); });
  root.addEventListener('dragover', (e) => { e.preventDefault(); e.dataTransfer.dropEffect = 'copy'; });
  root.addEventListener('dragleave', () => { if (--depth <= 0) { depth = 0; root.classList.remove('dragging'); } });
  root.addEventListener('drop', (e) => {
    e.preventDefault();
    depth = 0;
    root.classList.remove('dragging');
    const f = [...(e.dataTransfer.files || [])][0];
    if (f) picker.set(f, f.name);
  });

  // A small picture (a 150 px face crop) is shown larger, up to 3x, keeping its shape.
  const fitSmall = () => {
    img.style.removeProperty('width');
    const nw = img.naturalWidth, nh = img.naturalHeight;
    if (!nw || !nh) return;
    const s = Math.min(3, 320 / nh, (stage.clientWidth || 320) / nw);
    if (s > 1) img.style.setProperty('width', `${Math.round(nw * s)}px`);
  };
  new ResizeObserver(() => { if (picker.faceCount !== undefined) compactLabels(picker, picker.faceCount); }).observe(stage);

  let url = '';
  let shownSeq = 0;
  const picker = {
    id, root, img, overlay, frame, stage, blob: null, name: '',
    async set(blob, fileName) {
      const seq = ++shownSeq;
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(blob);
      picker.blob = blob;
      picker.name = fileName || 'image';
      picker.clearError();
      overlay.replaceChildren();
      img.src = url;
      img.alt = `the chosen photo, ${picker.name}`;
      let shown = true;
      try {
        await img.decode();
      } catch {
        shown = false; // not a picture the browser can show: the service will say why
      }
      if (seq !== shownSeq) return undefined; // another picture came while this one decoded
      drop.hidden = shown;
      stage.hidden = !shown;
      bar.hidden = !shown;
      fitSmall();
      name.textContent = picker.name;
      return onImage(blob, picker.name);
    },
    clear() {
      if (url) URL.revokeObjectURL(url);
      url = '';
      picker.blob = null;
      overlay.replaceChildren();
      img.removeAttribute('src');
      drop.hidden = false;
      stage.hidden = true;
      bar.hidden = true;
      picker.clearError();
    },
    busy(on) { stage.classList.toggle('busy', on); root.setAttribute('aria-busy', String(on)); },
    error(err) { inlineError(error, err, picker.name); },
    clearError() { error.hidden = true; error.replaceChildren(); },
  };
  pickers[id] = picker;
  return picker;
}

// The picker a pasted or loosely dropped picture goes to: the tab's (Verify: the one with the
// focus, else the empty second one); tabs without one send it to Analyse.
function tabPicker() {
  let target = { analyse: 'analyse', enrol: 'enrol', search: 'search' }[activeTab];
  if (activeTab === 'verify') {
    const inB = pickers['verify-b'].root.contains(document.activeElement);
    target = inB || (pickers['verify-a'].blob && !pickers['verify-b'].blob) ? 'verify-b' : 'verify-a';
  }
  if (!target) {
    showTab('analyse');
    target = 'analyse';
  }
  return pickers[target];
}

// Pasting an image sends it to the picker of the tab in view; so does a file dropped outside
// a drop zone, which the browser would otherwise open in place of the page (losing it).
function setupPaste() {
  document.addEventListener('paste', (e) => {
    const item = [...(e.clipboardData?.items || [])].find((i) => i.kind === 'file' && i.type.startsWith('image/'));
    if (!item) return;
    const file = item.getAsFile();
    if (!file) return;
    e.preventDefault();
    tabPicker().set(file, file.name && file.name !== 'image.png' ? file.name : 'pasted image');
  });
  const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes('Files');
  document.addEventListener('dragover', (e) => { if (hasFiles(e)) e.preventDefault(); });
  document.addEventListener('drop', (e) => {
    if (e.defaultPrevented || !hasFiles(e)) return; // a drop zone took it, or text for a field
    e.preventDefault();
    const f = e.dataTransfer.files[0];
    if (f) tabPicker().set(f, f.name);
  });
}

/* ---- camera ----------------------------------------------------------------------------- */

// The camera's current picture on a canvas, once it has one: null without any. A camera just
// started gives its size before its pictures, and its first frames can be black (Chromium
// draws a black frame for a while after 'loadeddata'; a webcam's first frames are often dark
// while it sets its exposure): a snapshot taken then, a key pressed as the door's camera
// starts, was answered "No face seen" or dropped. A frame whose 32x24 thumbnail is one flat
// shade is taken again every 50 ms, for 1.5 s at most; after that it is sent as it is, and
// the service says what it sees.
async function grabFrame(video) {
  const deadline = performance.now() + 1500;
  for (;;) {
    if (!video.srcObject) return null;
    if (video.videoWidth) {
      const c = h('canvas', { width: video.videoWidth, height: video.videoHeight });
      const g = c.getContext('2d', { willReadFrequently: true });
      g.drawImage(video, 0, 0);
      if (performance.now() >= deadline || !flatFrame(c)) return c;
    } else if (performance.now() >= deadline) {
      return null;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// Whether a picture is one shade: its thumbnail's brightest and darkest pixels within 8 levels.
function flatFrame(canvas) {
  const t = h('canvas', { width: 32, height: 24 });
  const g = t.getContext('2d', { willReadFrequently: true });
  g.drawImage(canvas, 0, 0, 32, 24);
  const px = g.getImageData(0, 0, 32, 24).data;
  let lo = 255, hi = 0;
  for (let i = 0; i < px.length; i += 4) {
    const y = (px[i] * 3 + px[i + 1] * 6 + px[i + 2]) / 10;
    if (y < lo) lo = y;
    if (y > hi) hi = y;
  }
  return hi - lo <= 8;
}

async function openCamera(picker) {
  if (!navigator.mediaDevices?.getUserMedia) {
    notify('The camera needs this page on https or localhost, in a browser that allows camera access.', { info: true });
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 } }, audio: false });
  } catch (e) {
    notify(`The camera could not be opened (${e.name}). Check that the browser may use it.`, { info: true });
    return;
  }
  const d = $('#camera-dialog');
  const video = $('#camera-video');
  video.srcObject = stream;
  d.returnValue = '';
  d.showModal();
  d.addEventListener('close', async () => {
    const c = d.returnValue === 'snap' ? await grabFrame(video) : null;
    if (c) c.toBlob((b) => b && picker.set(b, 'camera snapshot.jpg'), 'image/jpeg', 0.92);
    for (const t of stream.getTracks()) t.stop();
    video.srcObject = null;
  }, { once: true });
}

/* ---- one request per picture ------------------------------------------------------------ */

// A picture's request cancels the one before it on the same picker (or verify pair), and an
// answer that still comes for an older picture is dropped: otherwise a photo chosen while the
// previous one was being analysed got that one's boxes, and Enrol cut its upload with them.
function newJob(holder) {
  if (holder.job) holder.job.controller.abort();
  const job = { controller: new AbortController() };
  job.signal = job.controller.signal;
  job.stale = () => holder.job !== job;
  holder.job = job;
  return job;
}

/* ---- faces on a picture ----------------------------------------------------------------- */

const sortFaces = (faces) => [...faces].sort((a, b) => a.box.x - b.box.x);

function boxStyle(box, W, H) {
  const x0 = Math.max(0, box.x), y0 = Math.max(0, box.y);
  const x1 = Math.min(W, box.x + box.width), y1 = Math.min(H, box.y + box.height);
  return {
    left: `${(x0 / W) * 100}%`, top: `${(y0 / H) * 100}%`,
    width: `${((x1 - x0) / W) * 100}%`, height: `${((y1 - y0) / H) * 100}%`,
  };
}

// Draws one button per face over the picture. Each face gets a colour, a tag (text lines)
// and its keypoints; events: onEnter/onLeave (hover and focus) and onPick (click, Enter).
function drawFaces(picker, W, H, faces, { tag, color, label, onEnter, onLeave, onPick } = {}) {
  picker.overlay.replaceChildren();
  const els = faces.map((f, i) => {
    const c = color ? color(f, i) : PALETTE[i % PALETTE.length];
    const t0 = tag ? tag(f, i) : {};
    const t = h('span', { class: 'tag' }, t0.num ?? `#${i + 1}`, t0.text ? h('span', { class: 'rest', text: ` ${t0.text}` }) : null,
      t0.sub ? h('small', { text: t0.sub }) : null);
    const el = h('button', {
      // labels go below a face at the top edge, and end at the box's right side near the right edge
      type: 'button', class: ['face', f.box.y / H < 0.09 ? 'low' : '', (f.box.x + f.box.width) / W > 0.8 ? 'right' : ''].filter(Boolean).join(' '),
      'aria-label': label ? label(f, i) : `face ${i + 1}`,
      style: { ...boxStyle(f.box, W, H), '--c': c },
    }, t);
    if (onEnter) {
      el.addEventListener('mouseenter', () => onEnter(i));
      el.addEventListener('focus', () => onEnter(i));
    }
    if (onLeave) {
      el.addEventListener('mouseleave', () => onLeave(i));
      el.addEventListener('blur', () => onLeave(i));
    }
    if (onPick) el.addEventListener('click', () => onPick(i));
    picker.overlay.append(el);
    for (const p of Object.values(f.keypoints || {})) {
      picker.overlay.append(h('span', { class: 'pt', style: { left: `${(p[0] / W) * 100}%`, top: `${(p[1] / H) * 100}%`, '--c': c } }));
    }
    return el;
  });
  compactLabels(picker, faces.length);
  return els;
}

// Labels shrink to the face's number when the picture is small on screen or crowded.
function compactLabels(picker, n) {
  picker.faceCount = n;
  const w = picker.frame.clientWidth || picker.root.clientWidth;
  picker.stage.classList.toggle('compact', w < 560 || w / Math.max(n, 1) < 110);
}

// A canvas with the face cut out of the picture (a little margin around the box).
function faceCanvas(img, W, box, size = 112) {
  const c = h('canvas', { width: size, height: size, 'aria-hidden': 'true' });
  const s = img.naturalWidth / W || 1;
  const side = Math.max(box.width, box.height) * 1.25;
  const cx = box.x + box.width / 2, cy = box.y + box.height / 2;
  try {
    c.getContext('2d').drawImage(img, (cx - side / 2) * s, (cy - side / 2) * s, side * s, side * s, 0, 0, size, size);
  } catch {
    // the picture is not decodable by the browser: an empty square
  }
  return c;
}

function meter(label, value, shown, c) {
  return h('div', { class: 'meter' }, h('span', { text: label }),
    h('div', { class: 'track' }, h('div', { class: 'fill', style: { width: `${Math.max(0, Math.min(1, value)) * 100}%`, ...(c ? { '--c': c } : {}) } })),
    h('span', { class: 'v', text: shown }));
}

function renderTiming(el, timing, rttMs) {
  const stages = STAGE_ORDER.filter((s) => timing && timing[s] > 0).map((s) => [s, timing[s]]);
  for (const [s, v] of Object.entries(timing || {})) if (!STAGE_ORDER.includes(s) && v > 0) stages.push([s, v]);
  const total = stages.reduce((a, [, v]) => a + v, 0);
  const bar = h('div', { class: 'bar', role: 'img', 'aria-label': `stage timings: ${stages.map(([s, v]) => `${s} ${fmt.ms(v)} ms`).join(', ')}` },
    stages.map(([s, v]) => h('span', { title: `${s}: ${fmt.ms(v)} ms`, style: { 'flex-grow': String(v), background: STAGE_COLORS[s] || '#999' } })));
  const legend = h('div', { class: 'legend' },
    stages.map(([s, v]) => h('span', {}, h('i', { style: { background: STAGE_COLORS[s] || '#999' } }), `${s} `, h('b', { text: `${fmt.ms(v)} ms` }))),
    h('span', { class: 'total' }, `service ${fmt.ms(total)} ms`),
    rttMs ? h('span', { text: `round trip ${fmt.ms(rttMs)} ms` }) : null);
  el.replaceChildren(bar, legend);
  el.hidden = false;
}

/* ---- Analyse ---------------------------------------------------------------------------- */

const analyse = { data: null, faces: [], els: [], pinned: -1, blob: null, name: '' };

function faceSummary(f) {
  const a = f.attributes;
  if (!a) return ['face', ''];
  const first = `${a.gender}, ${Math.round(a.age)} · ${a.dominant_emotion}`;
  const parts = [];
  if (f.liveness) parts.push(`live ${fmt.pct(f.liveness.score)}`);
  parts.push(`quality ${fmt.pct(a.quality)}`);
  return [first, parts.join(' · ')];
}

function analyseDetails(i) {
  const box = $('#analyse-details');
  const { faces, data } = analyse;
  analyse.els.forEach((el, k) => el.classList.toggle('active', k === i));
  // Moving between a face and the panel must not rebuild what is already shown (a click on
  // the panel's button would land on a replaced element).
  if (i === analyse.shown) return;
  analyse.shown = i;
  if (i < 0) {
    box.replaceChildren(h('h2', { text: faces.length === 1 ? '1 face' : `${faces.length} faces` }),
      faces.length ? h('p', { class: 'muted', text: 'Hover, tap or tab to a face for its details.' })
        : h('p', { class: 'muted', text: 'No face was found in this picture.' }),
      h('ul', { class: 'face-list' }, faces.map((f, k) => {
        const [a, b] = faceSummary(f);
        return h('li', {}, h('button', {
          type: 'button', class: 'face-item', style: { '--c': PALETTE[k % PALETTE.length] },
          onclick: () => pinFace(k), onmouseenter: () => analyse.els[k]?.classList.add('active'),
          onmouseleave: () => analyse.els[k]?.classList.remove('active'),
        }, faceCanvas(analyse.imgEl, data.width, f.box, 112), h('div', {}, h('div', {}, h('b', { text: `#${k + 1} ` }), a), h('div', { class: 'sub', text: b }))));
      })));
    return;
  }
  const f = faces[i];
  const a = f.attributes || {};
  const c = PALETTE[i % PALETTE.length];
  const head = h('div', { class: 'detail-head', style: { '--c': c } }, faceCanvas(analyse.imgEl, data.width, f.box, 168),
    h('div', {}, h('div', { class: 'big', text: a.gender ? `${a.gender[0].toUpperCase()}${a.gender.slice(1)}, about ${Math.round(a.age)}` : `Face ${i + 1}` }),
      h('div', { class: 'muted', text: `face #${i + 1} of ${faces.length}` }),
      a.dominant_emotion ? h('span', { class: 'badge', text: a.dominant_emotion }) : null));
  const facts = h('dl', { class: 'facts' });
  const fact = (k, v) => facts.append(h('dt', { text: k }), h('dd', { text: v }));
  fact('Detection score', fmt.num(f.score, 2));
  if (a.gender) fact('Gender', `${a.gender} (${fmt.pct(a.gender_confidence)} sure)`);
  if (a.quality !== undefined) fact('Quality', `${fmt.num(a.quality, 2)} (sharpness ${Math.round(a.sharpness)})`);
  if (a.pose) fact('Head pose', `yaw ${Math.round(a.pose.yaw)}°, pitch ${Math.round(a.pose.pitch)}°, roll ${Math.round(a.pose.roll)}°`);
  fact('Box', `${Math.round(f.box.x)}, ${Math.round(f.box.y)} · ${Math.round(f.box.width)}×${Math.round(f.box.height)} px`);
  const parts = [h('button', { type: 'button', class: 'btn ghost small back', onclick: () => pinFace(-1) }, '← All faces'), head, facts];
  if (f.liveness) {
    parts.push(h('div', { class: 'section-title', text: 'Liveness (a weak signal)' }),
      meter('score', f.liveness.score, fmt.num(f.liveness.score, 2)),
      meter('antispoof', f.liveness.antispoof, fmt.num(f.liveness.antispoof, 2)),
      meter('live', f.liveness.liveness, fmt.num(f.liveness.liveness, 2)));
  }
  if (Array.isArray(f.embedding)) {
    parts.push(h('div', { class: 'section-title', text: `Embedding (${f.embedding.length} numbers, ${f.embedding_model || 'model'})` }),
      embeddingStrip(f.embedding));
  }
  if (a.emotion) {
    parts.push(h('div', { class: 'section-title', text: 'Emotion' }),
      EMOTIONS.filter((e) => e in a.emotion).map((e) => meter(e, a.emotion[e], fmt.pct(a.emotion[e]), e === a.dominant_emotion ? c : '#56657a')));
  }
  parts.push(h('div', { class: 'row', style: { 'margin-top': '14px' } },
    h('button', { type: 'button', class: 'btn primary', onclick: () => enrolFromAnalyse(i) }, 'Enrol this face…')));
  box.replaceChildren(...parts.flat());
}

// The identity embedding as a strip: one column per number, teal above zero, blue below,
// brighter the larger it is. Two faces of one person have similar strips.
function embeddingStrip(v) {
  const c = h('canvas', { class: 'embedding', width: v.length, height: 1, role: 'img', 'aria-label': `an embedding of ${v.length} numbers` });
  const ctx = c.getContext('2d');
  const img = ctx.createImageData(v.length, 1);
  const max = Math.max(1e-9, ...v.map(Math.abs));
  v.forEach((x, k) => {
    const t = Math.min(1, Math.abs(x) / max);
    const [r, g, b] = x >= 0 ? [76, 201, 176] : [122, 162, 255];
    img.data.set([r * t + 20 * (1 - t), g * t + 26 * (1 - t), b * t + 34 * (1 - t), 255], k * 4);
  });
  ctx.putImageData(img, 0, 0);
  return c;
}

function pinFace(i) {
  analyse.pinned = i;
  analyseDetails(i);
}

async function runAnalyse(blob, name) {
  const p = pickers.analyse;
  const timing = $('#analyse-timing');
  const job = newJob(p);
  p.busy(true);
  const form = new FormData();
  form.append('image', blob, name);
  const t0 = performance.now();
  try {
    const withEmbedding = $('#analyse-embedding').checked;
    const data = await api('POST', `/v1/analyze${withEmbedding ? '?embedding=true' : ''}`, { form, signal: job.signal });
    if (job.stale()) return;
    const rtt = performance.now() - t0;
    Object.assign(analyse, { data, faces: sortFaces(data.faces), pinned: -1, shown: null, blob, name, imgEl: p.img });
    analyse.els = drawFaces(p, data.width, data.height, analyse.faces, {
      tag: (f, i) => { const [a, b] = faceSummary(f); return { num: `#${i + 1}`, text: a, sub: b }; },
      label: (f, i) => `face ${i + 1}: ${faceSummary(f).join(', ')}`,
      onEnter: (i) => analyseDetails(i),
      onLeave: () => analyseDetails(analyse.pinned),
      onPick: (i) => pinFace(analyse.pinned === i ? -1 : i),
    });
    renderTiming(timing, data.timing_ms, rtt);
    analyseDetails(-1);
  } catch (e) {
    if (job.stale()) return;
    p.overlay.replaceChildren();
    timing.hidden = true;
    analyse.faces = [];
    $('#analyse-details').replaceChildren(h('h2', { text: 'Faces' }), h('p', { class: 'muted', text: 'Nothing to show: see the message under the picture.' }));
    p.error(e);
    notify(e, { context: 'Analyse' });
  } finally {
    if (!job.stale()) p.busy(false);
  }
}

function setupAnalyse() {
  makePicker($('[data-picker="analyse"]'), { onImage: runAnalyse });
  const stage = () => pickers.analyse.root;
  $('#analyse-labels').addEventListener('change', (e) => stage().classList.toggle('hide-labels', !e.target.checked));
  $('#analyse-points').addEventListener('change', (e) => stage().classList.toggle('hide-points', !e.target.checked));
  $('#analyse-embedding').addEventListener('change', () => { if (analyse.blob) runAnalyse(analyse.blob, analyse.name); });
}

/* ---- collections (shared by Enrol, Search, Browse) -------------------------------------- */

let collections = [];
let collectionsError = null;
const collectionListeners = [];

async function refreshCollections() {
  try {
    const data = await api('GET', '/v1/collections?limit=1000');
    collections = data.collections || [];
    collectionsError = null;
  } catch (e) {
    collections = [];
    collectionsError = e;
    notify(e, { context: 'Collections' });
  }
  $('#collections-list').replaceChildren(...collections.map((c) => h('option', { value: c.name })));
  for (const f of collectionListeners) f(collections);
  return collections;
}

async function ensureCollection(name) {
  if (collections.some((c) => c.name === name)) return;
  try {
    await api('POST', '/v1/collections', { json: { name } });
    notify(`Created the collection “${name}”.`, { info: true });
  } catch (e) {
    if (e.code === 'forbidden') {
      // The key may enrol but not create collections: perhaps it exists by now (the list is
      // from earlier); if not, say that, rather than only "not allowed".
      if ((await refreshCollections()).some((c) => c.name === name)) return;
      e.plain = `There is no collection “${name}”, and this API key may not create one: choose an existing collection, or ask an administrator.`;
      throw e;
    }
    if (e.code !== 'collection_exists' && e.code !== 'conflict') throw e;
  }
  await refreshCollections();
}

let subjectsFor = '';
async function loadSubjectsList(collection) {
  if (!collection || collection === subjectsFor || !collections.some((c) => c.name === collection)) return;
  subjectsFor = collection;
  try {
    const data = await api('GET', `/v1/collections/${enc(collection)}/subjects?limit=1000`);
    $('#subjects-list').replaceChildren(...data.subjects.map((s) => h('option', { value: s.id })));
  } catch {
    subjectsFor = '';
  }
}

function rememberCollection(name) {
  try { localStorage.setItem(COLLECTION_STORAGE, name); } catch { /* private mode */ }
  for (const f of ['#enrol-form', '#batch-form']) if (!$(f).collection.value) $(f).collection.value = name;
}
function lastCollection() {
  try { return localStorage.getItem(COLLECTION_STORAGE) || ''; } catch { return ''; }
}

/* ---- Enrol ------------------------------------------------------------------------------ */

// photo counts the pictures; done is what was last enrolled (photo, face, collection,
// subject): the button stays off for it, so a second click does not enrol the face again;
// attempt is the upload and Idempotency-Key of what is being enrolled, for a second try;
// anyway is what the user chose to store although the service found its face too poor
// (low_quality: sent again with min_quality=0).
const enrol = { data: null, faces: [], selected: -1, els: [], pending: null, photo: 0, done: '', sending: false, attempt: null, anyway: '' };

function enrolWhat() {
  const f = $('#enrol-form');
  return JSON.stringify([enrol.photo, enrol.selected, f.collection.value.trim(), f.subject.value.trim()]);
}

function updateEnrolButton() {
  $('#enrol-submit').disabled = enrol.sending || enrol.selected < 0 || enrolWhat() === enrol.done;
}

function selectEnrolFace(i) {
  enrol.selected = i;
  enrol.els.forEach((el, k) => {
    el.classList.toggle('selected', k === i);
    el.classList.toggle('dim', i >= 0 && k !== i);
    el.setAttribute('aria-pressed', String(k === i));
  });
  updateEnrolButton();
  $('#enrol-hint').textContent = i < 0
    ? (enrol.faces.length ? 'Click (or tab to and press Enter on) the face to enrol.' : 'No face to enrol in this picture.')
    : enrolWhat() === enrol.done ? `Face #${i + 1} is enrolled. Choose another face, name or photo.`
      : `Face #${i + 1} is selected. Name the person and enrol.`;
}

async function runEnrolDetect(blob, name) {
  const p = pickers.enrol;
  const job = newJob(p);
  enrol.photo++;
  // The face chosen in Analyse counts for the photo sent with it only: kept after a failed
  // detection, it selected a face of whatever photo came next.
  const want = enrol.pending && enrol.pending.blob === blob ? enrol.pending.box : null;
  enrol.pending = null;
  p.busy(true);
  $('#enrol-result').replaceChildren();
  selectEnrolFace(-1);
  enrol.faces = [];
  const form = new FormData();
  form.append('image', blob, name);
  try {
    const data = await api('POST', '/v1/detect', { form, signal: job.signal });
    if (job.stale()) return;
    enrol.data = data;
    enrol.faces = sortFaces(data.faces);
    enrol.els = drawFaces(p, data.width, data.height, enrol.faces, {
      label: (f, i) => `select face ${i + 1} to enrol`,
      onPick: (i) => selectEnrolFace(i),
    });
    let pick = enrol.faces.length === 1 ? 0 : -1;
    if (want) {
      // Coming from Analyse: the face with the largest overlap with the one chosen there.
      let best = 0;
      enrol.faces.forEach((f, k) => { const o = iou(f.box, want); if (o > best) { best = o; pick = k; } });
    }
    selectEnrolFace(pick);
  } catch (e) {
    if (job.stale()) return;
    p.overlay.replaceChildren();
    p.error(e);
    $('#enrol-hint').textContent = '';
    notify(e, { context: 'Enrol' });
  } finally {
    if (!job.stale()) p.busy(false);
  }
}

function iou(a, b) {
  const x0 = Math.max(a.x, b.x), y0 = Math.max(a.y, b.y);
  const x1 = Math.min(a.x + a.width, b.x + b.width), y1 = Math.min(a.y + a.height, b.y + b.height);
  const inter = Math.max(0, x1 - x0) * Math.max(0, y1 - y0);
  return inter / (a.width * a.height + b.width * b.height - inter || 1);
}

// The service enrols an image's most prominent face (the largest area in view, nearest the
// centre), so a picture with several faces is cut around the chosen one (with a margin the detector needs) before it is sent.
function faceUpload(p, W, H, box) {
  if (enrol.faces.length <= 1) return Promise.resolve(p.blob);
  const s = p.img.naturalWidth / W || 1;
  const m = Math.max(box.width, box.height) * 0.6;
  const x0 = Math.max(0, box.x - m), y0 = Math.max(0, box.y - m);
  const x1 = Math.min(W, box.x + box.width + m), y1 = Math.min(H, box.y + box.height + m);
  const c = h('canvas', { width: Math.round((x1 - x0) * s), height: Math.round((y1 - y0) * s) });
  c.getContext('2d').drawImage(p.img, x0 * s, y0 * s, (x1 - x0) * s, (y1 - y0) * s, 0, 0, c.width, c.height);
  return new Promise((resolve) => c.toBlob(resolve, 'image/jpeg', 0.95));
}

// An enrolment sent again after its answer was lost (Wi-Fi dropping, the service restarting
// after it stored the face) must not enrol the face twice: the same Idempotency-Key makes the
// service answer with the first enrolment. A random key (crypto.randomUUID needs https).
function newIdempotencyKey() {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
}

// minQuality: the service's min_quality (undefined: its default, which refuses a face too
// poor to recognise well with low_quality); 0 stores any face.
async function enrolOne(collection, subject, blob, name, idempotencyKey, minQuality) {
  const form = new FormData();
  form.append('subject', subject);
  if (minQuality !== undefined) form.append('min_quality', String(minQuality));
  form.append('image', blob, name);
  return api('POST', `/v1/collections/${enc(collection)}/faces`, { form, idempotencyKey });
}

async function submitEnrol(e) {
  e.preventDefault();
  const form = e.target;
  const p = pickers.enrol;
  if (enrol.selected < 0 || !p.blob) return;
  const collection = form.collection.value.trim();
  const subject = form.subject.value.trim();
  const what = enrolWhat();
  const anyway = enrol.anyway === what; // "Enrol anyway" after low_quality
  enrol.sending = true;
  updateEnrolButton();
  const out = $('#enrol-result');
  out.replaceChildren();
  try {
    await ensureCollection(collection);
    rememberCollection(collection);
    // One key, and one upload, per photo, face, collection and subject: a second try sends
    // the same bytes with the same key.
    if (!enrol.attempt || enrol.attempt.what !== what) {
      const blob = await faceUpload(p, enrol.data.width, enrol.data.height, enrol.faces[enrol.selected].box);
      enrol.attempt = { what, blob, key: newIdempotencyKey(), anyway: false };
    }
    // Storing a refused face anyway is another request for the service: a key of its own (the
    // first key would only get the refusal replayed, or idempotency_key_reused).
    if (anyway && !enrol.attempt.anyway) enrol.attempt = { ...enrol.attempt, key: newIdempotencyKey(), anyway: true };
    const r = await enrolOne(collection, subject, enrol.attempt.blob, p.name, enrol.attempt.key, anyway ? 0 : undefined);
    enrol.done = what;
    // The face matches other subjects too: one person under two names (registered twice, or
    // a fraud signal). Stored all the same; said beside the result so the desk can check.
    const others = alsoMatches(r);
    out.replaceChildren(thumbImg(collection, r.face_id, `${r.subject}'s enrolled face`),
      h('div', {}, h('b', { text: `Enrolled as ${r.subject}` }),
        h('div', { class: 'muted', text: `in ${r.collection}, face #${r.face_id}${r.subject_created ? ' (a new subject)' : ''}` }),
        others.length ? h('div', { class: 'inline-error', id: 'enrol-also-matches', role: 'status',
          text: `Also looks like ${others.join('; ')}. If it is the same person, they are now enrolled twice.` }) : null));
    subjectsFor = '';
    refreshCollections();
    loadSubjectsList(collection);
  } catch (err) {
    // low_quality is answered in the form, with its "Enrol anyway": a notice in the corner
    // would say it twice and could cover that button.
    if (err.code !== 'low_quality') notify(err, { context: 'Enrol' });
    inlineErrorIn(out, err);
    // The service's message says what pulled the face's quality down; when no better photo
    // can be had, the person at the desk may still store this one.
    if (err.code === 'low_quality' && !anyway) {
      out.firstChild.append(h('div', { class: 'actions' }, h('button', {
        type: 'button', class: 'btn', id: 'enrol-anyway',
        onclick: () => { enrol.anyway = what; form.requestSubmit(); },
      }, 'Enrol anyway')));
    }
  } finally {
    enrol.sending = false;
    selectEnrolFace(enrol.selected);
  }
}

// The other subjects an enrolment's face matches (its also_matches), in words: one person
// under two names (registered twice, or a fraud signal). Stored all the same.
function alsoMatches(r) {
  return (r.also_matches || []).map((m) => `subject ${m.subject}, similarity ${Number(m.similarity).toFixed(2)}`);
}

// A batch's line for an enrolled photo: whom and which face, and whom else it looks like.
function batchEnrolled(li, r, perFile, note = '') {
  li.className = 'ok';
  li.append(h('span', { class: 'muted', text: `${perFile ? `${r.subject}, ` : ''}face #${r.face_id}${note}` }));
  const others = alsoMatches(r);
  if (others.length) li.append(h('span', { class: 'why also', text: `also looks like ${others.join('; ')}` }));
}

function inlineErrorIn(out, err) {
  const d = h('div', { class: 'inline-error', role: 'alert' });
  inlineError(d, err);
  out.replaceChildren(d);
}

function enrolFromAnalyse(i) {
  enrol.pending = { box: analyse.faces[i].box, blob: analyse.blob };
  showTab('enrol');
  pickers.enrol.set(analyse.blob, analyse.name);
  $('#enrol-form').subject.focus();
}

let batchFiles = [];

// Refusals that came before any work was done: the same upload may simply be sent again.
const RETRYABLE = new Set(['rate_limited', 'overloaded', 'not_ready', 'store_unavailable']);
// Answers about the photo itself: sending the same file again cannot succeed (an enrolment
// with its Idempotency-Key even gets the same answer replayed), so a batch does not keep it
// chosen for "Enrol all" to try again.
const PHOTO_FAULTS = new Set(['no_face', 'low_quality', 'unsupported_image', 'invalid_image', 'image_too_large', 'body_too_large', 'http_413']);

// Enrols one photo of a batch, waiting out a refusal's Retry-After (or 1, 2, 3 s) up to three
// times, and saying so on its line: a batch met by the key's rate limit or a busy service
// no longer marks those photos failed.
const batchKeys = new WeakMap(); // File -> { what, key }: a photo sent again reuses its key

async function enrolPatiently(collection, subject, f, li) {
  const what = JSON.stringify([collection, subject]);
  if (batchKeys.get(f)?.what !== what) batchKeys.set(f, { what, key: newIdempotencyKey() });
  for (let attempt = 1; ; attempt++) {
    try {
      return await enrolOne(collection, subject, f, f.name, batchKeys.get(f).key);
    } catch (err) {
      if (!RETRYABLE.has(err.code) || attempt > 3) throw err;
      const s = Math.min(30, err.retryAfter > 0 ? err.retryAfter : attempt);
      const note = h('span', { class: 'muted', text: `${PLAIN[err.code]} Trying again in ${s} s…` });
      li.append(note);
      await new Promise((r) => setTimeout(r, s * 1000));
      note.remove();
    }
  }
}

// One person per photo (a registration desk's folder of badge photos): each file's name
// without its extension is the subject, so B-0042.jpg enrols B-0042.
function perFileBatch() {
  return $('#batch-per-file').checked;
}

function batchSubject(form, f) {
  return perFileBatch() ? f.name.replace(/\.[^.]*$/, '').trim() : form.subject.value.trim();
}

function updateBatchMode() {
  const input = $('#batch-form').subject;
  const perFile = perFileBatch();
  // The field is not asked for when the files name the people: required, it blocked the form.
  input.disabled = perFile;
  input.required = !perFile;
  $('#batch-subject').hidden = perFile;
}

function chooseBatch(files) {
  const all = [...files];
  batchFiles = all.filter(isImageFile).sort((a, b) => (a.webkitRelativePath || a.name).localeCompare(b.webkitRelativePath || b.name));
  const skipped = all.length - batchFiles.length;
  $('#batch-chosen').textContent = batchFiles.length
    ? `${batchFiles.length} photo${batchFiles.length === 1 ? '' : 's'} chosen${skipped ? ` (${skipped} other file${skipped === 1 ? '' : 's'} left out)` : ''}.`
    : 'No photos among the chosen files.';
  $('#batch-submit').disabled = !batchFiles.length;
  $('#batch-log').replaceChildren();
  $('#batch-summary').textContent = '';
  $('#batch-progress').hidden = true;
}

// A batch's photo refused for low quality may still be stored, as the one-face form's "Enrol
// anyway" allows when no better photo can be had. Another request for the service
// (min_quality=0), so a key of its own: the refused one's would only replay the refusal. One
// key per photo, so a click again after a lost answer does not store the face twice.
function batchAnyway(collection, who, f, li, perFile, tally, say) {
  const key = newIdempotencyKey();
  const btn = h('button', { type: 'button', class: 'btn small', text: 'Enrol anyway' });
  btn.addEventListener('click', async () => {
    btn.disabled = true;
    try {
      const r = await enrolOne(collection, who, f, f.name, key, 0);
      li.replaceChildren(li.firstChild); // the file's name; its refusal is gone
      batchEnrolled(li, r, perFile, `, enrolled anyway (quality ${fmt.num(r.quality, 2)})`);
      tally.ok++;
      tally.unfit--;
      say();
      subjectsFor = '';
      refreshCollections();
    } catch (err) {
      btn.disabled = false;
      notify(err, { context: 'Enrol' });
    }
  });
  return btn;
}

async function submitBatch(e) {
  e.preventDefault();
  const form = e.target;
  const collection = form.collection.value.trim();
  const perFile = perFileBatch();
  const subject = perFile ? '' : form.subject.value.trim();
  const files = batchFiles;
  if (!files.length) return;
  const btn = $('#batch-submit');
  const bar = $('#batch-progress');
  const log = $('#batch-log');
  const summary = $('#batch-summary');
  btn.disabled = true;
  log.replaceChildren();
  bar.max = files.length;
  bar.value = 0;
  bar.hidden = false;
  summary.textContent = `Enrolling ${files.length} photos…`;
  let done = 0;
  // ok and unfit change after the batch too: a refused photo enrolled anyway.
  const tally = { ok: 0, unfit: 0 };
  const say = () => {
    summary.textContent = `Enrolled ${tally.ok} of ${files.length} photo${files.length === 1 ? '' : 's'}${perFile ? ', one person each,' : ` for ${subject}`} in ${collection}.`
      + (tally.unfit ? ` ${tally.unfit} cannot be enrolled as ${tally.unfit === 1 ? 'it is' : 'they are'} (see why in the list).` : '');
  };
  const left = new Set(files); // not enrolled, and worth sending again
  try {
    await ensureCollection(collection);
    rememberCollection(collection);
    // Two uploads at a time: the service works on several requests in parallel.
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const f = files[next++];
        const who = batchSubject(form, f);
        const li = h('li', {}, h('span', { class: 'file', text: f.webkitRelativePath || f.name }));
        log.append(li);
        try {
          const r = await enrolPatiently(collection, who, f, li);
          batchEnrolled(li, r, perFile);
          left.delete(f);
          tally.ok++;
        } catch (err) {
          li.className = 'err';
          // The service's own message says more (for no_face: the smallest face looked for).
          li.append(h('span', { class: 'why', text: plainWords(err).title, title: err.message || '' }));
          if (PHOTO_FAULTS.has(err.code)) {
            li.append(h('span', { class: 'muted final', text: 'not tried again' }));
            left.delete(f);
            tally.unfit++;
          }
          if (err.code === 'low_quality') li.append(batchAnyway(collection, who, f, li, perFile, tally, say));
          if (err.code === 'unauthorized' || err.code === 'network') { next = files.length; notify(err, { context: 'Enrol' }); }
        }
        bar.value = ++done;
        summary.textContent = `${done} of ${files.length} done…`;
      }
    };
    await Promise.all([worker(), worker()]);
    say();
    subjectsFor = '';
    refreshCollections();
  } catch (err) {
    summary.textContent = '';
    notify(err, { context: 'Enrol' });
    inlineErrorIn(summary, err);
  } finally {
    // What was enrolled is no longer chosen: "Enrol all" again sent the whole batch again.
    // The photos that failed for a passing reason stay, to be tried again; one the service
    // cannot use (no face in it, not an image) is not offered again: it would fail again.
    batchFiles = files.filter((f) => left.has(f));
    $('#batch-chosen').textContent = batchFiles.length
      ? `${batchFiles.length} photo${batchFiles.length === 1 ? '' : 's'} not enrolled still chosen: “Enrol all” tries ${batchFiles.length === 1 ? 'it' : 'them'} again.`
      : 'No photos chosen.';
    btn.disabled = !batchFiles.length;
  }
}

function setupEnrol() {
  makePicker($('[data-picker="enrol"]'), { onImage: runEnrolDetect });
  $('#enrol-form').addEventListener('submit', submitEnrol);
  $('#batch-form').addEventListener('submit', submitBatch);
  $('#batch-files').addEventListener('change', (e) => chooseBatch(e.target.files));
  $('#batch-folder').addEventListener('change', (e) => chooseBatch(e.target.files));
  for (const r of $('#batch-form').querySelectorAll('input[name="batch-mode"]')) r.addEventListener('change', updateBatchMode);
  updateBatchMode();
  for (const name of ['collection', 'subject']) $('#enrol-form')[name].addEventListener('input', updateEnrolButton);
  for (const f of ['#enrol-form', '#batch-form']) {
    const input = $(f).collection;
    input.value = lastCollection();
    input.addEventListener('change', () => loadSubjectsList(input.value.trim()));
    input.addEventListener('focus', () => loadSubjectsList(input.value.trim()));
    $(f).subject.addEventListener('focus', () => loadSubjectsList(input.value.trim()));
  }
}

/* ---- Search ----------------------------------------------------------------------------- */

function simbar(similarity, threshold, match) {
  // Similarities of faces are mostly above 0.5; the bar shows [0.5, 1], where decisions happen.
  const scale = (v) => `${Math.max(0, Math.min(1, (v - 0.5) / 0.5)) * 100}%`;
  return h('div', { class: 'simbar', title: `similarity ${fmt.num(similarity)} (threshold ${fmt.num(threshold)})` },
    h('div', { class: match ? 'fill ok' : 'fill', style: { width: scale(similarity) } }),
    h('div', { class: 'th', style: { left: scale(threshold) } }));
}

// What the recognised subject's metadata holds (search's identity_metadata: a badge number,
// a department), shown with the match so that nobody has to look the subject up. An object's
// fields as name: value (nested values as JSON); any other JSON value as it is; nothing for
// null or an empty object.
function metadataList(meta) {
  if (meta === null || meta === undefined) return null;
  const text = (v) => (typeof v === 'string' ? v : JSON.stringify(v));
  if (typeof meta !== 'object' || Array.isArray(meta)) {
    return h('dl', { class: 'identity-meta' }, h('dt', { text: 'metadata' }), h('dd', { text: text(meta) }));
  }
  const keys = Object.keys(meta);
  if (!keys.length) return null;
  return h('dl', { class: 'identity-meta' }, ...keys.flatMap((k) => [h('dt', { text: k }), h('dd', { text: text(meta[k]) })]));
}

async function runSearch(blob, name) {
  const p = pickers.search;
  const out = $('#search-results');
  const collection = $('#search-collection').value;
  if (!collection) {
    // No collection because they could not be listed (no key, a refused key, the service
    // gone) is not the same as none enrolled yet.
    const why = collectionsError ? `The collections could not be listed: ${plainWords(collectionsError).title}`
      : 'There is no collection to search yet: enrol someone first (Enrol tab).';
    p.error(collectionsError || new ApiError(0, 'no_collection', 'choose a collection first'));
    out.replaceChildren(h('h2', { text: 'Matches' }), h('p', { class: 'unknown', text: why }));
    showCheckin('bad', 'Not checked', [], why);
    return;
  }
  rememberCollection(collection);
  const job = newJob(p);
  p.busy(true);
  // Said at once: on a slow network the last person's answer must not stand for this one's.
  showCheckin('', 'Checking…', [], '');
  const form = new FormData();
  form.append('image', blob, name);
  let arriving = false;
  try {
    const k = $('#search-k').value;
    // A snapshot of the check-in camera is somebody arriving: the service searches it and
    // records the arrival (POST …/checkins). A photo from a file is a plain search. A snapshot
    // already recorded in this collection (searched again for another Top k, or the collection
    // chosen back) is searched plainly and keeps what the record said of it: sent again, the
    // same person would count twice.
    const recorded = door.snapshots.has(blob) ? door.answers.get(blob)?.get(collection) : null;
    arriving = door.snapshots.has(blob) && !recorded;
    // An arrival says at which door: the record keeps where each person came in.
    const at = arriving ? doorName() : '';
    const data = await api('POST', `/v1/collections/${enc(collection)}/${arriving ? 'checkins' : 'search'}?k=${k}${at ? `&door=${enc(at)}` : ''}`, { form, signal: job.signal });
    if (arriving) {
      if (!door.answers.has(blob)) door.answers.set(blob, new Map());
      door.answers.get(blob).set(collection, data.faces.map((f) => f.checkin ?? null));
      // The counts at once; the list (other doors' arrivals too) follows.
      record.seq++;
      if (record.collection === collection && data.checkins) record.data = { checkins: [], ...record.data, ...data.checkins };
      renderDoorlog();
      refreshRecord();
    } else if (recorded) {
      data.faces.forEach((f, i) => { f.checkin = recorded[i] ?? null; });
    }
    if (job.stale()) return;
    const faces = sortFaces(data.faces);
    const best = (f) => f.matches && f.matches[0];
    const known = (f) => best(f) && best(f).decision === 'match';
    const color = (f, i) => (known(f) ? PALETTE[i % PALETTE.length] : '#e0a030');
    const W = p.img.naturalWidth || 1, H = p.img.naturalHeight || 1;
    drawFaces(p, W, H, faces, {
      color,
      tag: (f, i) => (known(f) ? { num: best(f).subject, sub: fmt.num(best(f).similarity, 2) } : { num: 'unknown' }),
      label: (f, i) => `face ${i + 1}: ${known(f) ? best(f).subject : 'unknown'}`,
      onPick: (i) => $(`#match-${i}`)?.scrollIntoView({ block: 'nearest', behavior: 'smooth' }),
    });
    const cards = faces.map((f, i) => {
      const b = best(f);
      const who = known(f) ? b.subject : 'Unknown';
      const card = h('article', { class: 'match-card', id: `match-${i}`, style: { '--c': color(f, i) } },
        h('header', {}, faceCanvas(p.img, W, f.box, 56),
          h('div', {}, h('div', { class: known(f) ? 'who' : 'who unknown', text: `#${i + 1} ${who}` }),
            known(f) ? h('span', { class: 'badge ok', text: `match · ${fmt.num(b.similarity)}` })
              : h('span', { class: 'muted', text: b ? `Nobody in “${collection}” is similar enough: the closest is ${b.subject} at ${fmt.num(b.similarity)}, below the threshold ${fmt.num(data.threshold)}.`
                : `“${collection}” has nobody enrolled yet.` }))));
      const meta = known(f) ? metadataList(f.identity_metadata) : null;
      if (meta) card.append(meta);
      for (const m of f.matches || []) {
        card.append(h('div', { class: 'match' },
          m.face_id ? thumbImg(collection, m.face_id, m.subject) : h('span'),
          h('div', {}, h('div', { class: 'name', text: m.subject }), simbar(m.similarity, data.threshold, m.decision === 'match')),
          h('span', { class: m.decision === 'match' ? 'badge ok' : 'badge', text: `${fmt.num(m.similarity)} ${m.decision === 'match' ? 'match' : 'no match'}` })));
      }
      return card;
    });
    out.replaceChildren(h('h2', { text: `${faces.length} face${faces.length === 1 ? '' : 's'} in “${collection}”` }),
      h('p', { class: 'muted', text: `Threshold ${fmt.num(data.threshold)}: a similarity at or above it is a match.` }), ...cards);
    checkinVerdict(faces, collection, W, door.snapshots.has(blob) ? faces.map((f) => arrivalOf(f.checkin)) : null);
  } catch (e) {
    if (job.stale()) return;
    // A key that may search but not record arrivals: the door's volunteer needs another key,
    // not another snapshot.
    const readOnly = arriving && e.code === 'forbidden' && /scope/.test(e.message);
    if (readOnly) e.plain = scopeRefusal('Recording arrivals', e.message);
    // No face in the snapshot is the person at the door to ask, not a fault of the service.
    if (e.code === 'no_face') checkinVerdict([], collection, 1);
    else if (readOnly) showCheckin('bad', 'Not checked in', [], e.plain);
    else showCheckin('bad', 'Not checked', [], `${plainWords(e).title} ${door.stream ? 'Press Space to try again.' : 'Try again.'}`);
    p.overlay.replaceChildren();
    p.error(e);
    out.replaceChildren(h('h2', { text: 'Matches' }), h('p', { class: 'muted', text: 'Nothing to show: see the message under the picture.' }));
    notify(e, { context: 'Search' });
  } finally {
    if (!job.stale()) p.busy(false);
  }
}

// The answer at a check-in door, in words a volunteer reads at arm's length: who was
// recognised (with their metadata: a badge number), who was not, and what to do next.
// kind: ok (everyone recognised), warn (someone not, or no face), bad (no answer).
function showCheckin(kind, headline, lines, next) {
  const el = $('#checkin');
  el.className = `checkin ${kind}`.trim();
  el.replaceChildren(h('div', { class: 'headline', text: headline }), ...lines);
  if (next) el.append(h('div', { class: 'next', text: next }));
  el.hidden = false;
}

function metadataText(meta) {
  if (meta === null || meta === undefined) return '';
  if (typeof meta !== 'object' || Array.isArray(meta)) return JSON.stringify(meta);
  return Object.entries(meta).map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' · ');
}

// What the service's record said of a face (its checkin: checked_in, already_checked_in,
// same_arrival or not_recognised), as checkinVerdict reads it: null for a face not recognised,
// else { counted: a new arrival (not the same one again within 10 s), back: not the subject's
// first arrival, first: the subject's first arrival (ms), door: where that was ('' unknown),
// seen: the subject's arrivals }.
function arrivalOf(c) {
  if (!c || c.status === 'not_recognised' || !c.subject_id) return null;
  return { counted: c.status !== 'same_arrival', back: c.arrivals > 1, first: c.first_seen_ms, door: c.first_door || '', seen: c.arrivals };
}

// "at 10:42 at North entrance": when and where a subject first came (the door when known).
const firstCame = (a) => `${clockTime(a.first, true)}${a.door ? ` at ${a.door}` : ''}`;

// counted: for a snapshot of the check-in camera, arrivalOf each face; null for a photo from a
// file, which is not somebody arriving.
function checkinVerdict(faces, collection, W, counted = null) {
  const again = door.stream ? 'press Space for another snapshot' : 'take another photo';
  if (!faces.length) {
    showCheckin('warn', 'No face seen', [], `Ask them to face the camera in good light, then ${again}.`);
    return;
  }
  const arrival = counted !== null;
  const knownAt = faces.map((f, i) => i).filter((i) => faces[i].decision === 'match' && faces[i].identity != null);
  const known = knownAt.map((i) => faces[i]);
  const unknown = faces.length - known.length;
  // Checked in before, at any door (longer ago than a repeated key): the volunteer must notice.
  const back = arrival ? knownAt.filter((i) => counted[i]?.back) : [];
  // An unknown face below enrolment's own quality limit (search gives each face's quality) is
  // more likely a poor photo of someone enrolled than a stranger. A service without the
  // figure: a face a tenth of the picture wide or less is too far away to be recognised well.
  const poor = faces.some((f) => f.decision !== 'match'
    && (typeof f.quality === 'number' ? f.quality < MIN_QUALITY : f.box.width < W / 10));
  const lines = knownAt.map((i) => {
    const f = faces[i];
    const meta = metadataText(f.identity_metadata);
    const said = counted?.[i]?.back ? `↺ ${f.identity} already checked in ${firstCame(counted[i])}` : `✓ ${f.identity}`;
    return h('div', { class: counted?.[i]?.back ? 'line again' : 'line' }, said, meta ? h('small', { text: ` · ${meta}` }) : null);
  });
  if (unknown) lines.push(h('div', { class: 'line', text: `✕ ${unknown === 1 ? '1 face' : `${unknown} faces`} not recognised` }));
  // "Checked in" at the door only: a photo searched from a file is not somebody arriving.
  const done = arrival ? 'checked in' : 'recognised';
  let headline;
  if (faces.length === 1 && known.length && back.length) headline = `Already checked in ${firstCame(counted[knownAt[0]])} (${known[0].identity})`;
  else if (faces.length === 1) headline = known.length ? `${arrival ? 'Checked in' : 'Recognised'}: ${known[0].identity}` : 'Not recognised';
  else if (!unknown && !back.length) headline = `All ${faces.length} ${done}`;
  else if (!known.length) headline = `None of the ${faces.length} recognised`;
  else {
    headline = [known.length > back.length ? `${known.length - back.length} ${done}` : '',
      back.length ? `${back.length} already checked in` : '', unknown ? `${unknown} not recognised` : ''].filter(Boolean).join(', ');
  }
  // One person recognised needs no second line with the same name.
  if (faces.length === 1 && known.length) lines.shift();
  const meta = faces.length === 1 && known.length ? metadataText(known[0].identity_metadata) : '';
  if (meta) lines.unshift(h('div', { class: 'line', text: meta }));
  let next = '';
  if (unknown) {
    next = poor
      ? `A poor photo (the face small, blurred or turned away): ask them to step closer and face the camera, then ${again}.`
      : `Not enrolled in “${collection}”, or a poor photo: ${again}, else send them to the registration desk.`;
  } else if (back.length) {
    next = back.length === 1 && faces.length === 1
      ? `Arrival ${counted[knownAt[0]].seen} of this badge: the same person coming back, or somebody else? Check the badge, then ${again}.`
      : `Checked in before: the same people coming back, or somebody else? Check their badges, then ${again}.`;
  } else if (arrival && knownAt.every((i) => !counted[i]?.counted)) {
    next = 'Counted once: the same arrival as a moment ago.';
  }
  showCheckin(unknown ? 'warn' : back.length ? 'again' : 'ok', headline, lines, next);
}

/* ---- the door's record: who came -------------------------------------------------------- */

// The record of who came is the service's (POST, GET and DELETE …/checkins, kept in its
// store): every door, device and replica of an event sees one list, and a person checked in at
// door A is "already checked in" at door B. The Search tab shows its newest page, fetched when
// the collection or the tab changes and, while the check-in camera is on, every
// RECORD_REFRESH_MS and after each arrival, so that a door sees the other doors' arrivals
// within seconds. One request at a time (one asked for meanwhile runs after it), none while the
// page is hidden: a door left open all day does not pile requests on the service.
//   data: the last answer of GET …/checkins for collection; error: why the last one failed;
//   seq: counts the check-in camera's answers, whose counts are newer than a GET sent before.
const RECORD_REFRESH_MS = 3000;
const RECORD_SHOWN = 200; // the newest arrivals listed; Export CSV pages through all of them
const RECORD_PAGE = 1000; // the service's largest page (PAGE_MAX), for the export
const REPEAT_MS = 10000; // the service's: a face again within 10 s is the same arrival
const record = { collection: '', data: null, error: null, busy: false, again: false, timer: 0, seq: 0 };

// The record was kept in this browser's local storage until the service kept it: what an
// older page left there is of no use now, and dropped.
function dropLocalRecord() {
  try {
    for (const k of Object.keys(localStorage)) if (k.startsWith('vultus.doorlog')) localStorage.removeItem(k);
  } catch { /* storage blocked: nothing was kept either */ }
}

async function refreshRecord() {
  clearTimeout(record.timer);
  record.timer = 0;
  if (record.busy) {
    record.again = true;
    return;
  }
  const collection = $('#search-collection').value;
  if (record.collection !== collection) Object.assign(record, { collection, data: null, error: null });
  if (collection) {
    record.busy = true;
    const seq = record.seq;
    try {
      const data = await api('GET', `/v1/collections/${enc(collection)}/checkins?limit=${RECORD_SHOWN}`);
      // An arrival answered meanwhile: this list is older than the counts shown; ask again.
      if (record.seq !== seq) record.again = true;
      else if (record.collection === collection) Object.assign(record, { data, error: null });
    } catch (e) {
      if (record.collection === collection) record.error = e;
    } finally {
      record.busy = false;
    }
  }
  renderDoorlog();
  if (record.again) {
    record.again = false;
    refreshRecord();
  } else {
    scheduleRecord();
  }
}

function scheduleRecord() {
  clearTimeout(record.timer);
  record.timer = door.stream && !document.hidden && activeTab === 'search' && !record.busy
    ? setTimeout(refreshRecord, RECORD_REFRESH_MS) : 0;
}

const two = (n) => String(n).padStart(2, '0');
const sameDay = (a, b) => a.toDateString() === b.toDateString();

// "10:42", or "14 Mar 10:42" when that was not today (an event of several days); in a
// sentence (said): "at 10:42", "on 14 Mar at 10:42".
function clockTime(ms, said = false) {
  const d = new Date(ms);
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (sameDay(d, new Date())) return said ? `at ${time}` : time;
  const day = d.toLocaleDateString([], { day: 'numeric', month: 'short' });
  return said ? `on ${day} at ${time}` : `${day} ${time}`;
}

// Local time as a spreadsheet reads it: 2026-03-14 10:42:05.
function localStamp(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

// The record's card on the Search tab: the count against the collection's subjects, the
// arrivals newest first (one line per person, with how many times they came). Shown while the
// check-in camera is on, or when the collection has a record.
function renderDoorlog() {
  const card = $('#doorlog');
  const collection = $('#search-collection').value;
  const data = record.collection === collection ? record.data : null;
  const error = record.collection === collection ? record.error : null;
  const people = data?.checked_in ?? 0;
  card.hidden = !collection || (!door.stream && !people && !data?.not_recognised);
  $('#door-tally').textContent = '';
  if (card.hidden) return;
  const total = data?.subjects ?? collections.find((c) => c.name === collection)?.subjects;
  $('#doorlog-title').textContent = `Arrivals in “${collection}”`;
  $('#doorlog-count').replaceChildren(h('b', { text: data ? String(people) : '…' }), ` of ${total ?? '?'} checked in`);
  $('#door-tally').textContent = data ? `${people} of ${total ?? '?'} checked in` : '';
  if (data?.not_recognised) $('#doorlog-count').append(h('span', { class: 'unrecognised', text: ` · ${data.not_recognised} not recognised` }));
  const list = data?.checkins || [];
  const more = people > list.length ? ` The newest ${list.length} are listed; Export CSV has everyone.` : '';
  $('#doorlog-since').textContent = error
    ? `The record could not be read: ${plainWords(error).title}`
    : people ? `Shared by every door since ${clockTime(data.since_ms)}; a face seen again within ${REPEAT_MS / 1000} s counts once.${more}`
      : 'Nobody checked in yet: each recognised arrival at any door\'s check-in camera is listed here.';
  const rows = list.map((c) => {
    const meta = metadataText(c.metadata);
    const back = c.arrivals > 1;
    return h('li', { class: back ? 'again' : null },
      h('time', { datetime: new Date(c.first_seen_ms).toISOString(), text: clockTime(c.first_seen_ms) }),
      h('div', {}, h('b', { class: 'who', text: c.subject_id }),
        c.first_door ? h('span', { class: 'at', text: ` at ${c.first_door}` }) : null,
        back ? h('span', { class: 'nth', text: `${c.first_door ? ' ·' : ''} ${c.arrivals} arrivals, the last ${clockTime(c.last_arrival_ms, true)}${c.last_door ? ` at ${c.last_door}` : ''}` }) : null,
        meta ? h('div', { class: 'meta', text: meta }) : null),
      h('span', { class: 'sim', title: 'similarity at the first arrival', text: typeof c.similarity === 'number' ? fmt.num(c.similarity, 2) : '' }));
  });
  $('#doorlog-list').replaceChildren(...rows);
  $('#doorlog-export').disabled = !people;
  $('#doorlog-reset').disabled = !people && !data?.not_recognised;
}

// A field of RFC 4180 CSV. A text that starts like a formula (= + - @, also after spaces or
// line breaks, which some spreadsheets trim before they evaluate; or a tab or carriage return)
// is led by a quote, so a spreadsheet shows metadata as it was entered instead of running it.
function csvField(v) {
  if (v === null || v === undefined) return '';
  let s = typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v);
  if (typeof v === 'string' && /^\s*[=+\-@]|^[\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

// One line per subject who came, in the order they first came (the service lists newest
// first): subject, first_seen, last_arrival, times_seen, similarity (at the first arrival),
// first_door, last_door (empty when the arrival named none; after the columns a sheet built
// on earlier exports reads), then a column per metadata field (metadata that is not an
// object: one "metadata" column).
function doorlogCsv(checkins) {
  const fixed = ['subject', 'first_seen', 'last_arrival', 'times_seen', 'similarity', 'first_door', 'last_door'];
  const rows = [...checkins].reverse();
  const fields = [];
  const isObject = (m) => m !== null && typeof m === 'object' && !Array.isArray(m);
  for (const c of rows) {
    const m = c.metadata;
    const keys = isObject(m) ? Object.keys(m) : m == null ? [] : [''];
    for (const k of keys) if (!fields.includes(k)) fields.push(k);
  }
  const column = (k) => (k === '' ? 'metadata' : fixed.includes(k) || k === 'metadata' ? `metadata.${k}` : k);
  const lines = [[...fixed, ...fields.map(column)]];
  for (const c of rows) {
    const m = c.metadata;
    lines.push([c.subject_id, localStamp(c.first_seen_ms), localStamp(c.last_arrival_ms), c.arrivals,
      typeof c.similarity === 'number' ? Number(c.similarity.toFixed(4)) : null, c.first_door ?? null, c.last_door ?? null,
      ...fields.map((k) => (k === '' ? (isObject(m) ? null : m) : isObject(m) ? m[k] : null))]);
  }
  return lines.map((l) => l.map(csvField).join(',')).join('\r\n') + '\r\n';
}

// The whole record, page by page (the card holds only the newest), then the download.
async function exportDoorlog() {
  const collection = $('#search-collection').value;
  if (!collection) return;
  const btn = $('#doorlog-export');
  btn.disabled = true;
  try {
    const all = [];
    let after = null;
    do {
      const page = await api('GET', `/v1/collections/${enc(collection)}/checkins?limit=${RECORD_PAGE}${after ? `&after=${enc(after)}` : ''}`);
      all.push(...page.checkins);
      after = page.next_after ?? null;
    } while (after);
    // The byte order mark tells a spreadsheet the file is UTF-8 (names with accents).
    const blob = new Blob(['\ufeff', doorlogCsv(all)], { type: 'text/csv;charset=utf-8' });
    const url = URL.createObjectURL(blob);
    const d = new Date();
    const a = h('a', { href: url, download: `arrivals-${collection}-${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}.csv`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) {
    notify(e, { context: 'Export CSV' });
  } finally {
    btn.disabled = false;
    renderDoorlog();
  }
}

async function resetDoorlog() {
  const collection = $('#search-collection').value;
  if (!collection) return;
  const data = record.collection === collection ? record.data : null;
  const people = data?.checked_in ?? 0;
  const what = [`${people} ${people === 1 ? 'person' : 'people'} checked in`, data?.not_recognised ? `${data.not_recognised} not recognised` : ''].filter(Boolean).join(' and ');
  if (!await confirmAction('Start a new event?', `The record of “${collection}” (${what}) will be cleared at every door, and everyone's next arrival counts as their first. Export the list first to keep it.`, 'Start a new event')) return;
  try {
    await api('DELETE', `/v1/collections/${enc(collection)}/checkins`);
  } catch (e) {
    if (e.code === 'forbidden' && /scope/.test(e.message)) e.plain = scopeRefusal('Clearing the record', e.message);
    notify(e, { context: 'Start a new event' });
    return;
  }
  door.answers = new WeakMap();
  notify(`A new event: the record of “${collection}” is empty at every door.`, { info: true });
  await refreshRecord();
}

// What a key is told when it tries to change the record beyond its scope. The service's 403
// says "this route needs a key with scope checkin; this key has read": recording arrivals
// needs a checkin key (a door device's, which may do nothing more) or a write one; starting a
// new event needs write, which a door's checkin key does not have.
const scopeRefusal = (what, message) => {
  const needs = /needs a key with scope (\w+)/.exec(message)?.[1];
  const has = /this key has (\w+)/.exec(message)?.[1];
  const scopes = needs === 'checkin' ? 'check-in or write scope' : 'write scope';
  const may = has === 'checkin' ? 'search, record arrivals and read the record' : 'search and read the record';
  return `${what} needs an API key with ${scopes}: this key may only ${may}. Enter another with “API key” at the top right.`;
};

function setupDoorlog() {
  dropLocalRecord();
  $('#doorlog-export').addEventListener('click', exportDoorlog);
  $('#doorlog-reset').addEventListener('click', resetDoorlog);
  // The list of collections filled the select (or changed its choice): the record follows it.
  collectionListeners.push(() => {
    if (activeTab === 'search' && $('#search-collection').value !== record.collection) refreshRecord();
    else renderDoorlog();
  });
  $('#search-collection').addEventListener('change', refreshRecord);
  tabListeners.push((t) => { if (t === 'search') refreshRecord(); });
  // Back on the door's screen: what the other doors did meanwhile, at once.
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && door.stream) refreshRecord();
    else scheduleRecord();
  });
}

// The check-in camera: a live preview on the Search tab, and one key (Space or Enter) or one
// tap per arrival takes the snapshot and sends it to the service's record (POST …/checkins).
// The camera dialog of the other tabs took two clicks and started the camera afresh for every
// person. snapshots: the camera's pictures (a photo from a file is not an arrival, and is a
// plain search); answers: what the record said of each snapshot's faces, by collection (see
// runSearch).
const door = { stream: null, snapshots: new WeakSet(), answers: new WeakMap() };

async function startDoor() {
  if (!navigator.mediaDevices?.getUserMedia) {
    notify('The camera needs this page on https or localhost, in a browser that allows camera access.', { info: true });
    return;
  }
  try {
    door.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 } }, audio: false });
  } catch (e) {
    notify(`The camera could not be opened (${e.name}). Check that the browser may use it.`, { info: true });
    return;
  }
  $('#door-video').srcObject = door.stream;
  $('#door').hidden = false;
  $('#door-start').hidden = true;
  $('#door-snap').focus();
  // What the other doors recorded so far, and from now on every few seconds.
  refreshRecord();
}

function stopDoor() {
  if (!door.stream) return;
  for (const t of door.stream.getTracks()) t.stop();
  door.stream = null;
  $('#door-video').srcObject = null;
  $('#door').hidden = true;
  $('#door-start').hidden = false;
  scheduleRecord();
  renderDoorlog();
}

async function doorSnap() {
  if (!door.stream) return;
  const c = await grabFrame($('#door-video'));
  if (!c || !door.stream) return;
  c.toBlob((b) => {
    if (!b) return;
    door.snapshots.add(b);
    pickers.search.set(b, 'check-in camera.jpg');
  }, 'image/jpeg', 0.92);
}

// This device's door, as the service takes it: no control characters, at most 64 bytes of
// UTF-8 (cut at a character), '' when not named.
function doorName() {
  let name = $('#door-name').value.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ').trim();
  const bytes = new TextEncoder();
  while (bytes.encode(name).length > 64) name = [...name].slice(0, -1).join('').trimEnd();
  return name;
}

function setupDoor() {
  // The door is the device's, not the event's: kept in this browser, shown on its screen.
  const field = $('#door-name');
  try { field.value = localStorage.getItem(DOOR_STORAGE) || ''; } catch { /* private mode */ }
  field.addEventListener('change', () => {
    // Cut to what the service keeps, and said: a name cut in silence ("… des visiteu", half a
    // name in Chinese: 64 bytes are 21 of its characters) looks like a typing slip.
    const typed = [...field.value.trim()].length;
    field.value = doorName();
    if ([...field.value].length < typed) notify(`A door's name is kept to 64 bytes (of UTF-8): this door is “${field.value}”.`, { info: true });
    try {
      if (field.value) localStorage.setItem(DOOR_STORAGE, field.value);
      else localStorage.removeItem(DOOR_STORAGE);
    } catch { /* private mode: this page's door until it is closed */ }
  });
  $('#door-start').addEventListener('click', startDoor);
  $('#door-stop').addEventListener('click', () => { stopDoor(); $('#door-start').focus(); });
  $('#door-snap').addEventListener('click', doorSnap);
  // Space or Enter anywhere on the tab takes the next snapshot; a focused control keeps its
  // own keys (a button its click, a select its list), and a held key takes one snapshot.
  document.addEventListener('keydown', (e) => {
    if (activeTab !== 'search' || !door.stream || e.repeat || (e.key !== ' ' && e.key !== 'Enter')) return;
    if (e.target.closest?.('input, select, textarea, button, a, dialog, [contenteditable]')) return;
    e.preventDefault();
    doorSnap();
  });
  tabListeners.push((t) => { if (t !== 'search') stopDoor(); });
}

function setupSearch() {
  setupDoor();
  makePicker($('[data-picker="search"]'), { onImage: runSearch });
  const sel = $('#search-collection');
  collectionListeners.push((list) => {
    const keep = sel.value || lastCollection();
    sel.replaceChildren(...(list.length ? list.map((c) => h('option', { value: c.name, text: `${c.name} (${c.subjects} subjects)` }))
      : [h('option', { value: '', text: collectionsError ? 'collections not available' : 'no collections yet' })]));
    if (list.some((c) => c.name === keep)) sel.value = keep;
  });
  const rerun = () => { const p = pickers.search; if (p.blob) runSearch(p.blob, p.name); };
  sel.addEventListener('change', rerun);
  $('#search-k').addEventListener('change', rerun);
  // After the select's own listener: the record follows the collection it shows.
  setupDoorlog();
}

/* ---- Verify ----------------------------------------------------------------------------- */

const verify = { job: null };

async function runVerify() {
  const a = pickers['verify-a'], b = pickers['verify-b'];
  const out = $('#verify-result');
  const job = newJob(verify);
  if (!a.blob || !b.blob) {
    a.busy(false);
    b.busy(false);
    out.replaceChildren(h('p', { class: 'muted', text: a.blob || b.blob ? 'Now the other photo.' : 'Two photos, one face each (the most prominent is used).' }));
    return;
  }
  a.busy(true);
  b.busy(true);
  out.replaceChildren(h('p', { class: 'muted', text: 'Comparing…' }));
  const form = new FormData();
  form.append('image_a', a.blob, a.name);
  form.append('image_b', b.blob, b.name);
  try {
    const r = await api('POST', '/v1/verify', { form, signal: job.signal });
    if (job.stale()) return;
    const same = r.decision === 'match';
    for (const [p, f] of [[a, r.face_a], [b, r.face_b]]) {
      drawFaces(p, p.img.naturalWidth || 1, p.img.naturalHeight || 1, [f], {
        color: () => (same ? '#3fb950' : '#f2615a'), tag: () => ({ num: f.faces_in_image > 1 ? `1 of ${f.faces_in_image}` : 'compared' }),
        label: () => 'the compared face',
      });
    }
    out.replaceChildren(h('div', { class: 'muted', text: 'similarity' }), h('div', { class: 'score', text: fmt.num(r.similarity) }),
      simbar(r.similarity, r.threshold, same),
      h('div', { class: same ? 'decision ok' : 'decision bad', text: same ? 'Same person' : 'Different people' }),
      h('div', { class: 'muted', text: `threshold ${fmt.num(r.threshold)} · ${r.model}` }));
  } catch (e) {
    if (job.stale()) return;
    for (const p of [a, b]) p.overlay.replaceChildren();
    const d = h('div', { class: 'inline-error', role: 'alert' });
    inlineError(d, e);
    out.replaceChildren(d);
    notify(e, { context: 'Verify' });
  } finally {
    if (!job.stale()) {
      a.busy(false);
      b.busy(false);
    }
  }
}

function setupVerify() {
  makePicker($('[data-picker="verify-a"]'), { title: 'First photo', onImage: runVerify });
  makePicker($('[data-picker="verify-b"]'), { title: 'Second photo', onImage: runVerify });
}

/* ---- Browse ----------------------------------------------------------------------------- */

const browse = { collection: '', after: null };

function renderCollections(list) {
  const ul = $('#collections');
  if (!list.length) {
    ul.replaceChildren(h('li', { class: 'muted', text: collectionsError ? `Not available: ${plainWords(collectionsError).title}` : 'No collections yet. Create one below, or enrol a face.' }));
    return;
  }
  ul.replaceChildren(...list.map((c) => h('li', {}, h('button', {
    type: 'button', 'aria-current': String(c.name === browse.collection), onclick: () => openCollection(c.name),
  }, h('b', { text: c.name }), h('span', { class: 'sub', text: `${c.subjects} subject${c.subjects === 1 ? '' : 's'} · ${c.faces} face${c.faces === 1 ? '' : 's'} · threshold ${fmt.num(c.threshold)} · ${c.dtype}` })))));
}

async function openCollection(name) {
  browse.collection = name;
  browse.after = null;
  renderCollections(collections);
  $('#subjects-title').textContent = `Subjects in “${name}”`;
  $('#collection-delete').hidden = false;
  $('#subjects').replaceChildren(h('div', { class: 'subjects', id: 'subject-grid' }));
  await loadSubjects();
}

async function loadSubjects() {
  const name = browse.collection;
  const grid = $('#subject-grid');
  const more = $('#subjects-more');
  // Hiding the button drops its focus to the page's start: the first new subject gets it.
  const keyboard = document.activeElement === more;
  more.hidden = true;
  try {
    const q = browse.after ? `&after=${enc(browse.after)}` : '';
    const data = await api('GET', `/v1/collections/${enc(name)}/subjects?limit=100${q}`);
    if (browse.collection !== name) return;
    if (!data.subjects.length && !browse.after) {
      $('#subjects').replaceChildren(h('p', { class: 'muted', text: 'Nobody is enrolled in this collection yet.' }));
      return;
    }
    const cards = data.subjects.map((s) => subjectCard(name, s));
    grid.append(...cards.map((c) => c.el));
    browse.after = data.next_after;
    more.hidden = !data.next_after;
    if (keyboard && cards.length) {
      cards[0].el.tabIndex = -1;
      cards[0].el.focus();
    }
    // Their faces, four subjects at a time.
    let i = 0;
    const worker = async () => { while (i < cards.length) await cards[i++].load(); };
    await Promise.all([worker(), worker(), worker(), worker()]);
  } catch (e) {
    notify(e, { context: 'Browse' });
  }
}

function subjectCard(collection, s) {
  const thumbs = h('div', { class: 'thumbs' });
  const count = h('span', { class: 'muted', text: `${s.faces} face${s.faces === 1 ? '' : 's'}` });
  const meta = h('div', { class: 'muted subject-meta', text: metadataText(s.metadata) });
  const el = h('article', { class: 'subject' },
    h('header', {}, h('div', {}, h('div', { class: 'name', text: s.id }), count, meta),
      h('button', { type: 'button', class: 'btn ghost small', 'aria-label': `edit the metadata of ${s.id}`, onclick: () => editMetadata(collection, s, el, meta) }, 'Edit'),
      h('button', { type: 'button', class: 'btn danger small', 'aria-label': `delete subject ${s.id}`, onclick: () => deleteSubject(collection, s.id, el) }, 'Delete')),
    thumbs);
  // A page of faces at a time: a subject with more than a page gets a button for the rest.
  const more = h('button', { type: 'button', class: 'btn ghost small', hidden: true, onclick: () => load(more.dataset.after) });
  const load = async (after) => {
    try {
      const q = after ? `&after=${enc(after)}` : '';
      const data = await api('GET', `/v1/collections/${enc(collection)}/faces?subject=${enc(s.id)}&limit=100${q}`);
      const tiles = data.faces.map((f) => {
        const tile = h('div', { class: 'tile' }, thumbImg(collection, f.face_id, `${s.id}, face #${f.face_id}`),
          h('button', { type: 'button', class: 'x', 'aria-label': `delete face #${f.face_id} of ${s.id}`, title: 'Delete this face', text: '×', onclick: () => deleteFace(collection, f.face_id, s.id, tile, count) }));
        return tile;
      });
      if (after) more.before(...tiles);
      else thumbs.replaceChildren(...tiles, more);
      more.hidden = !data.next_after;
      if (data.next_after) {
        more.dataset.after = String(data.next_after);
        const left = Number(count.textContent.split(' ')[0]) - thumbs.querySelectorAll('.tile').length;
        more.textContent = left > 0 ? `${left} more` : 'More';
        more.setAttribute('aria-label', `show more faces of ${s.id}`);
      }
      if (after && tiles.length && document.activeElement === document.body) tiles[0].querySelector('.x').focus();
    } catch (e) {
      if (after) notify(e, { context: 'Browse' });
      else thumbs.replaceChildren(h('span', { class: 'muted', text: plainWords(e).title }));
    }
  };
  return { el, load: () => load() };
}

// A subject's metadata (a badge's name, a desk: what search's identity_metadata and the
// check-in answer show), edited as JSON and stored with PATCH …/subjects/{s}, which replaces it.
function editMetadata(collection, s, card, line) {
  if (card.querySelector('form.meta-edit')) return;
  const area = h('textarea', { name: 'metadata', rows: 3, 'aria-label': `metadata of ${s.id} (JSON)`, spellcheck: 'false' });
  area.value = JSON.stringify(s.metadata ?? {}, null, 1);
  const why = h('div', { class: 'inline-error', role: 'alert', hidden: true });
  const form = h('form', { class: 'meta-edit' }, area, why,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'btn primary small' }, 'Save'),
      h('button', { type: 'button', class: 'btn ghost small', onclick: () => form.remove() }, 'Cancel')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    let metadata;
    try {
      metadata = JSON.parse(area.value);
    } catch (err) {
      why.textContent = `Not JSON: ${err.message}. For example {"name": "Ada", "desk": 3}.`;
      why.hidden = false;
      return;
    }
    try {
      const r = await api('PATCH', `/v1/collections/${enc(collection)}/subjects/${enc(s.id)}`, { json: { metadata } });
      s.metadata = r.metadata ?? metadata;
      line.textContent = metadataText(s.metadata);
      form.remove();
    } catch (err) {
      inlineError(why, err);
      why.hidden = false;
    }
  });
  card.querySelector('header').after(form);
  area.focus();
}

async function deleteFace(collection, id, subject, tile, count) {
  if (!await confirmAction('Delete this face?', `Face #${id} of ${subject} will be removed from “${collection}”. This cannot be undone.`)) return;
  try {
    await api('DELETE', `/v1/collections/${enc(collection)}/faces/${id}`);
    // The dialog gives the focus back to the removed button, which drops it to the page's
    // start: it goes to the next face, else the previous one, else the subject's Delete.
    const tileNear = (dir) => { let e = tile[dir]; while (e && !e.classList.contains('tile')) e = e[dir]; return e; };
    const near = tileNear('nextElementSibling') || tileNear('previousElementSibling');
    const then = near ? near.querySelector('.x') : tile.closest('.subject')?.querySelector('header button.danger');
    tile.remove();
    then?.focus();
    const n = Number(count.textContent.split(' ')[0]) - 1;
    count.textContent = `${n} face${n === 1 ? '' : 's'}`;
    refreshCollections();
  } catch (e) {
    notify(e, { context: 'Delete' });
  }
}

function focusTitle() {
  const t = $('#subjects-title');
  t.tabIndex = -1;
  t.focus();
}

async function deleteSubject(collection, id, card) {
  if (!await confirmAction(`Delete ${id}?`, `${id} and all of their faces will be removed from “${collection}”. This cannot be undone.`)) return;
  try {
    await api('DELETE', `/v1/collections/${enc(collection)}/subjects/${enc(id)}`);
    const near = card.nextElementSibling || card.previousElementSibling;
    card.remove();
    // As for a face: the next subject's Delete, else the previous one's, else the title.
    if (near) near.querySelector('header button.danger').focus();
    else focusTitle();
    subjectsFor = '';
    refreshCollections();
    // The page's last subject gone: the next page, or the empty collection's line.
    if (browse.collection === collection && !$('#subject-grid')?.children.length) {
      if (browse.after) await loadSubjects();
      else $('#subjects').replaceChildren(h('p', { class: 'muted', text: 'Nobody is enrolled in this collection yet.' }));
    }
  } catch (e) {
    notify(e, { context: 'Delete' });
  }
}

async function deleteCollection() {
  const name = browse.collection;
  if (!name) return;
  if (!await confirmAction(`Delete the collection “${name}”?`, 'Every subject and face in it will be removed. This cannot be undone.', 'Delete collection')) return;
  try {
    await api('DELETE', `/v1/collections/${enc(name)}`);
    browse.collection = '';
    $('#collection-delete').hidden = true;
    $('#subjects-title').textContent = 'Subjects';
    $('#subjects').replaceChildren(h('p', { class: 'muted', text: 'Choose a collection.' }));
    $('#subjects-more').hidden = true;
    await refreshCollections();
  } catch (e) {
    notify(e, { context: 'Delete' });
  }
}

async function createCollection(e) {
  e.preventDefault();
  const form = e.target;
  const btn = form.querySelector('button[type=submit]');
  // One request at a time: a double click sent two, and the second one's 409 said "already
  // exists" about the collection just made.
  if (btn.disabled) return;
  const body = { name: form.name.value.trim() };
  if (form.threshold.value !== '') body.threshold = Number(form.threshold.value);
  btn.disabled = true;
  try {
    await api('POST', '/v1/collections', { json: body });
    form.reset();
    await refreshCollections();
    openCollection(body.name);
  } catch (err) {
    notify(err, { context: 'New collection' });
  } finally {
    btn.disabled = false;
  }
}

function setupBrowse() {
  collectionListeners.push((list) => {
    renderCollections(list);
    if (browse.collection && !list.some((c) => c.name === browse.collection)) browse.collection = '';
  });
  $('#browse-refresh').addEventListener('click', async () => {
    await refreshCollections();
    if (browse.collection) openCollection(browse.collection);
  });
  $('#collection-delete').addEventListener('click', deleteCollection);
  $('#collection-form').addEventListener('submit', createCollection);
  $('#subjects-more').addEventListener('click', loadSubjects);
  tabListeners.push((t) => {
    if (t !== 'browse') return;
    refreshCollections().then(() => { if (browse.collection) openCollection(browse.collection); });
  });
}

/* ---- Status: live figures from /metrics ------------------------------------------------- */

// Prometheus text format: `name{label="value",...} number` lines; comments skipped.
function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) for (const l of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    const v = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    out.push({ name: m[1], labels, value: v });
  }
  return out;
}

// The figures the page shows, from one scrape. Requests and latency count the API (/v1)
// only, so the page's own polling does not show up as load.
function snapshot(samples) {
  const s = { t: performance.now(), requests: 0, buckets: new Map(), stageSum: {}, stageCount: {}, g: {}, faces: 0, rejected: 0 };
  for (const { name, labels, value } of samples) {
    const api = (labels.route || '').startsWith('/v1');
    if (name === 'vultus_http_requests_total' && api) s.requests += value;
    else if (name === 'vultus_http_request_duration_seconds_bucket' && api) {
      const le = labels.le === '+Inf' ? Infinity : Number(labels.le);
      s.buckets.set(le, (s.buckets.get(le) || 0) + value);
    } else if (name === 'vultus_stage_duration_seconds_sum') s.stageSum[labels.stage] = value;
    else if (name === 'vultus_stage_duration_seconds_count') s.stageCount[labels.stage] = value;
    else if (name === 'vultus_gallery_faces') s.faces += value;
    else if (name === 'vultus_rejected_requests_total') s.rejected += value;
    else if (!Object.keys(labels).length) s.g[name] = value;
  }
  return s;
}

// histogram_quantile over cumulative buckets: linear within the bucket the rank falls in.
function quantile(q, buckets) {
  const bs = [...buckets.entries()].sort((a, b) => a[0] - b[0]);
  const total = bs.length ? bs[bs.length - 1][1] : 0;
  if (!total) return NaN;
  const rank = q * total;
  let prevLe = 0, prevCount = 0;
  for (const [le, count] of bs) {
    if (count >= rank) {
      if (le === Infinity) return prevLe;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(count - prevCount, 1e-9);
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

const status = { prev: null, history: [], timer: 0, busy: false };

function figure(label, value, unit, title) {
  return h('div', { class: 'figure', title }, h('div', { class: 'label', text: label }),
    h('div', { class: 'value' }, value, unit ? h('small', { text: unit }) : null));
}

function drawChart(el, values, unitFmt) {
  el.replaceChildren();
  el.append(svg('line', { x1: '0', y1: '79', x2: '300', y2: '79', stroke: '#28323f', 'vector-effect': 'non-scaling-stroke' }));
  const pts = values.filter((v) => Number.isFinite(v.v));
  const max = Math.max(1e-9, ...pts.map((p) => p.v));
  const now = performance.now();
  // The window grows from 30 s to 5 minutes as the history does, so the line fills the chart.
  const W = 300, H = 80, span = Math.min(300000, Math.max(30000, pts.length ? now - pts[0].t : 0));
  const x = (t) => W - ((now - t) / span) * W;
  const y = (v) => H - 4 - (v / max) * (H - 16);
  if (pts.length > 1) {
    const d = pts.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join('');
    el.append(svg('path', { class: 'area', d: `${d}L${x(pts[pts.length - 1].t).toFixed(1)},${H}L${x(pts[0].t).toFixed(1)},${H}Z` }));
    el.append(svg('path', { class: 'line', d }));
  }
  el.closest('figure').querySelector('.max').textContent = pts.length ? `max ${unitFmt(max)}` : 'no data yet';
}

async function refreshStatus() {
  if (status.busy) return;
  status.busy = true;
  try {
    const res = await api('GET', '/metrics', { raw: true });
    const cur = snapshot(parseMetrics(await res.text()));
    const prev = status.prev;
    const dt = prev ? (cur.t - prev.t) / 1000 : 0;
    let rps = NaN, p50, p99, window = false;
    if (prev && dt > 0) {
      rps = Math.max(0, (cur.requests - prev.requests) / dt);
      const delta = new Map([...cur.buckets].map(([le, c]) => [le, c - (prev.buckets.get(le) || 0)]));
      p50 = quantile(0.5, delta);
      p99 = quantile(0.99, delta);
      window = Number.isFinite(p50);
    }
    if (!window) {
      p50 = quantile(0.5, cur.buckets);
      p99 = quantile(0.99, cur.buckets);
    }
    status.prev = cur;
    if (Number.isFinite(rps)) {
      status.history.push({ t: cur.t, rps, p99: window ? p99 * 1000 : NaN });
      while (status.history.length && cur.t - status.history[0].t > 300000) status.history.shift();
    }
    const g = cur.g;
    const lat = (v) => (Number.isFinite(v) ? fmt.ms(v * 1000) : '–');
    const since = window ? 'over the last few seconds' : 'since the service started';
    // The page's own /metrics request is in flight while it is being answered.
    const inFlight = Math.max(0, (g.vultus_http_in_flight_requests || 0) - 1);
    $('#figures').replaceChildren(
      figure('Requests / s', Number.isFinite(rps) ? rps.toFixed(rps < 10 ? 2 : 0) : '…', '', 'API requests (/v1) per second since the last refresh'),
      figure('p50 latency', lat(p50), 'ms', `median API request time, ${since}`),
      figure('p99 latency', lat(p99), 'ms', `99th percentile of API request time, ${since}`),
      figure('Queue', String(g.vultus_queue_depth ?? '–'), `/ ${g.vultus_queue_capacity ?? '–'}`, 'requests waiting for a worker'),
      figure('In flight', String(inFlight), '', 'requests received and not yet answered (not counting this page)'),
      figure('Workers busy', String(g.vultus_workers_busy ?? '–'), `/ ${g.vultus_workers ?? '–'}`, 'inference workers running a request'),
      figure('Refused', String(cur.rejected), '', 'requests refused (overload, deadline, rate limit, not ready) since start'),
      figure('Faces enrolled', String(cur.faces), '', 'faces in all collections'),
      figure('Memory', g.vultus_process_resident_memory_bytes ? (g.vultus_process_resident_memory_bytes / 1048576).toFixed(0) : '–', 'MiB', 'resident memory of the service'),
      figure('Ready', g.vultus_ready ? (g.vultus_draining ? 'draining' : 'yes') : 'no', '', 'whether the service takes traffic'));
    drawChart($('#chart-rps'), status.history.map((p) => ({ t: p.t, v: p.rps })), (v) => `${v.toFixed(1)}/s`);
    drawChart($('#chart-p99'), status.history.map((p) => ({ t: p.t, v: p.p99 })), (v) => `${fmt.ms(v)} ms`);
    const rows = [];
    const stagesWindow = prev && STAGE_ORDER.some((st) => (cur.stageCount[st] || 0) > (prev.stageCount[st] || 0));
    for (const st of STAGE_ORDER) {
      let n = cur.stageCount[st] || 0, sum = cur.stageSum[st] || 0;
      if (stagesWindow) {
        sum -= prev.stageSum[st] || 0;
        n -= prev.stageCount[st] || 0;
      }
      if (n > 0) rows.push([st, (sum / n) * 1000]);
    }
    const maxMs = Math.max(1, ...rows.map((r) => r[1]));
    $('#stages-caption').textContent = stagesWindow ? '(mean over the last few seconds, ms)' : '(mean since the service started, ms)';
    $('#stages').replaceChildren(...(rows.length ? rows.map(([st, ms]) => meter(st, ms / maxMs, `${fmt.ms(ms)} ms`, STAGE_COLORS[st]))
      : [h('p', { class: 'muted', text: 'No image has been processed yet.' })]));
    $('#status-updated').textContent = `updated ${new Date().toLocaleTimeString()} · every 3 s`;
  } catch (e) {
    // Behind deploy/'s Ingress /metrics is not routed: it names every collection, keyless.
    $('#status-updated').textContent = e.status === 404
      ? 'not available here: this address does not serve /metrics (a deployment keeps it inside the cluster, for Prometheus)'
      : `not updated: ${plainWords(e).title}`;
  } finally {
    status.busy = false;
  }
}

function setupStatus() {
  tabListeners.push((t) => {
    clearInterval(status.timer);
    if (t !== 'status') return;
    // A first rate needs two scrapes: the second comes a second after the first.
    refreshStatus().then(() => setTimeout(() => { if (activeTab === 'status') refreshStatus(); }, 1000));
    status.timer = setInterval(() => { if (!document.hidden) refreshStatus(); }, 3000);
  });
}

/* ---- readiness in the top bar ----------------------------------------------------------- */

async function refreshReady() {
  const pill = $('#ready');
  try {
    const res = await fetch('/readyz', { cache: 'no-store' });
    const data = await res.json().catch(() => ({}));
    if (res.ok) {
      pill.className = 'pill ok';
      pill.textContent = 'ready';
    } else {
      pill.className = 'pill warn';
      pill.textContent = (data.error && data.error.message) || 'not ready';
    }
  } catch {
    pill.className = 'pill bad';
    pill.textContent = 'unreachable';
  }
}

/* ---- start ------------------------------------------------------------------------------ */

function start() {
  setupKeyDialog();
  setupAnalyse();
  setupEnrol();
  setupSearch();
  setupVerify();
  setupBrowse();
  setupStatus();
  setupPaste();
  setupTabs();
  refreshReady();
  setInterval(() => { if (!document.hidden) refreshReady(); }, 10000);
  refreshCollections();
  document.documentElement.dataset.ready = 'true';
}

start();
