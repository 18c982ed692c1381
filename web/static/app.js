'use strict';
// The troupe web UI: plain JavaScript, no framework, no build step. It talks
// to the API of docs/api.md only. Data reaches the page through text nodes
// (el() below), never as markup.

const API = '/api/v1';

// frameTime is a frame's time in ms, with the digits below a ms that
// Date.parse drops: a node's last line of one action and the start of
// its next often fall in the same ms, and only the finer digits tell
// which came first (a double keeps them to about a microsecond).
const frameTime = (s) => {
  const m = /\.\d{3}(\d+)/.exec(s);
  return Date.parse(s) + (m ? Number('0.' + m[1]) : 0);
};

const TERMINAL = ['complete', 'incomplete', 'canceled'];
const MAX_LINES = 20000; // console lines kept in the page; the full log is a download
const main = document.getElementById('main');
const banner = document.getElementById('banner');
let token = localStorage.getItem('troupe.token') || '';
let generation = 0; // bumped on every page change; stale async work checks it
let leaving = []; // closers of the current page: sockets, timers

// ---- small helpers ---------------------------------------------------------

// el('a', {href: '#/'}, 'text', child, [children]) builds an element; strings
// become text nodes, attributes named on* become listeners.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null && c !== false) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// row makes a table row; labels name the cells for the narrow layout,
// where every row is a card.
const row = (cells, attrs, labels) => el('tr', attrs, cells.map((c, i) => el('td', {'data-label': labels && labels[i]}, c)));
const head = (names) => el('thead', {}, el('tr', {}, names.map((n) => el('th', {}, n))));
// badge shows a status; its color class only for one-word states (a node's
// status while it runs can be its current action, such as "test 'smoke'").
const badge = (s, prefix = 'status') => el('span', {class: `badge ${prefix}-${/^[a-z]+$/.test(s) ? s : 'other'}`}, s || '—');
const jobLink = (id) => el('a', {href: '#/jobs/' + encodeURIComponent(id)}, id);
const fmtDate = (s) => (s ? new Date(s).toLocaleString() : '—');
const pad = (n, w = 2) => String(n).padStart(w, '0');

function fmtTime(s) {
  const d = new Date(s);
  if (isNaN(d)) return '';
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

// nodeColor gives every node name its own stable color: a hash of the name
// picks one of a few colors that are easy to tell apart on the console.
const PALETTE = ['#7fb0ff', '#ff8a80', '#8ce99a', '#ffd43b', '#da77f2', '#66d9e8', '#ffa94d', '#f783ac', '#a9e34b', '#b197fc', '#63e6be'];
function nodeColor(name) {
  let h = 2166136261; // FNV-1a, then a final mix
  for (const ch of String(name)) {
    h ^= ch.codePointAt(0);
    h = Math.imul(h, 16777619);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x45d9f3b);
  h ^= h >>> 16;
  return PALETTE[(h >>> 0) % PALETTE.length];
}

// byNewest orders jobs newest first: numeric ids, else submit time.
function byNewest(a, b) {
  const x = Number(a.id), y = Number(b.id);
  if (!isNaN(x) && !isNaN(y)) return y - x;
  return String(b.submitted || '').localeCompare(String(a.submitted || ''));
}

// ---- API access ------------------------------------------------------------

class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// api calls the REST API; it resolves to the decoded JSON (or text) and
// rejects with an APIError carrying the server's error text verbatim.
async function api(method, path, body, type) {
  const headers = {};
  if (token) headers.Authorization = 'Bearer ' + token;
  headers['X-Troupe-Client'] = 'web';
  if (body !== undefined) headers['Content-Type'] = type || 'application/toml';
  let resp;
  try {
    resp = await fetch(API + path, {method, headers, body, cache: 'no-store'});
  } catch (e) {
    throw new APIError(0, `cannot reach the server (${method} ${path}): ${e.message}`);
  }
  const text = await resp.text();
  if (!resp.ok) {
    let msg = text;
    try {
      msg = JSON.parse(text).error || text;
    } catch (_) { /* not JSON: keep the text */ }
    throw new APIError(resp.status, msg || `${resp.status} ${resp.statusText}`);
  }
  return (resp.headers.get('Content-Type') || '').includes('json') ? JSON.parse(text) : text;
}

function wsURL(path, params) {
  const u = new URL(API + path, location.href);
  u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  for (const [k, v] of Object.entries(params || {})) u.searchParams.set(k, v);
  if (token) u.searchParams.set('token', token);
  return u.href;
}

// authText explains 401 and 403; other errors are shown as the server said.
function authText(e) {
  if (e.status === 401) return `Not authorized (401): this server needs a valid token. Enter it in the Token field above and press Save. Server: ${e.message}`;
  if (e.status === 403) return `Forbidden (403): your token's role may not do this (viewer < submitter < admin). Server: ${e.message}`;
  return e.message;
}

function showError(e) {
  banner.textContent = authText(e);
  banner.hidden = false;
}

function hideBanner() {
  banner.hidden = true;
  banner.textContent = '';
}

// download fetches an API text resource (with the token) and saves it.
async function download(path, name) {
  try {
    const text = await api('GET', path);
    const url = URL.createObjectURL(new Blob([text], {type: 'text/plain'}));
    el('a', {href: url, download: name}).click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    showError(e);
  }
}

// ---- page life -------------------------------------------------------------

const onLeave = (fn) => leaving.push(fn);

// poll runs fn (at once, unless later) and then every ms until the page is
// left; runs never overlap.
function poll(alive, ms, fn, later = false) {
  let timer;
  const tick = async () => {
    try {
      await fn();
    } catch (e) {
      if (alive()) showError(e);
    }
    if (alive()) timer = setTimeout(tick, ms);
  };
  onLeave(() => clearTimeout(timer));
  if (later) timer = setTimeout(tick, ms);
  else tick();
}

function closeSocket(ws) {
  if (!ws) return;
  ws.onclose = ws.onmessage = ws.onerror = null;
  ws.close();
}

const routes = [
  [/^#?\/?$/, 'jobs', jobsPage],
  [/^#\/jobs\/?$/, 'jobs', jobsPage],
  [/^#\/jobs\/([^/#]+)(?:#L(\d+))?$/, 'jobs', jobPage],
  [/^#\/submit$/, 'submit', submitPage],
  [/^#\/queue$/, 'queue', queuePage],
  [/^#\/devices$/, 'devices', devicesPage],
];

// shown is the job page on screen ({job, goLine}), or null: a permalink
// to one of its lines (#/jobs/7#L42) scrolls there without a reload.
let shown = null;

function route(reload) {
  const hash = location.hash || '#/';
  const m = hash.match(/^#\/jobs\/([^/#]+)(?:#L(\d+))?$/);
  if (reload !== true && m && shown && shown.job === decodeURIComponent(m[1])) {
    if (m[2]) shown.goLine(m[2]);
    return;
  }
  shown = null;
  for (const fn of leaving.splice(0)) fn();
  const g = ++generation;
  const alive = () => g === generation;
  hideBanner();
  document.title = 'troupe';
  for (const [re, nav, page] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    shown = page(alive, ...m.slice(1).map((x) => (x === undefined ? x : decodeURIComponent(x)))) || null;
    return;
  }
  main.replaceChildren(el('h1', {}, 'Not found'), el('p', {}, 'There is no page ', el('code', {}, hash), '.'));
}

// ---- jobs: the list, live ---------------------------------------------------

function jobsPage(alive) {
  const jobs = new Map();
  const tbody = el('tbody');
  const state = el('span', {id: 'live', class: 'live'});
  main.replaceChildren(
    el('h1', {}, 'Jobs ', state),
    el('table', {id: 'jobs', class: 'cards'}, head(['ID', 'Name', 'Status', 'Priority', 'Roles', 'Submitted', 'Ended', 'Error']), tbody),
  );
  const render = () => {
    const list = [...jobs.values()].sort(byNewest);
    tbody.replaceChildren(...list.map((j) => row([
      jobLink(j.id), j.name, badge(j.status), j.priority ?? '',
      Object.entries(j.roles || {}).map(([r, n]) => `${n} ${r}`).join(', '),
      fmtDate(j.submitted), fmtDate(j.ended), j.error || '',
    ], {'data-id': j.id})));
    if (!list.length) tbody.append(el('tr', {}, el('td', {colspan: 8, class: 'muted'}, 'No jobs yet. ', el('a', {href: '#/submit'}, 'Submit one.'))));
  };
  const load = async () => {
    const list = await api('GET', '/jobs');
    if (!alive()) return;
    jobs.clear();
    for (const j of list) jobs.set(j.id, j);
    render();
  };

  // Live through /events; while the socket is down, poll and retry it.
  let ws = null, retry = null, polling = false;
  const connect = () => {
    if (!alive()) return;
    ws = new WebSocket(wsURL('/events'));
    ws.onopen = () => {
      polling = false;
      state.textContent = '● live';
      load().catch(showError); // catch up on what changed while down
    };
    ws.onmessage = (ev) => {
      const f = JSON.parse(ev.data);
      if (f.type !== 'job' || !f.job) return;
      jobs.set(f.job.id, {...jobs.get(f.job.id), ...f.job});
      render();
    };
    ws.onclose = () => {
      if (!alive()) return;
      state.textContent = '○ polling';
      if (!polling) {
        polling = true;
        const tick = () => {
          if (!polling || !alive()) return;
          load().catch(showError).finally(() => { if (polling && alive()) retry = setTimeout(tick, 3000); });
        };
        tick();
      }
      setTimeout(connect, 5000);
    };
  };
  onLeave(() => { polling = false; clearTimeout(retry); closeSocket(ws); });
  render();
  load().catch(showError);
  connect();
}

// ---- submit -------------------------------------------------------------------

function submitPage(alive) {
  const text = el('textarea', {id: 'job-text', rows: 22, spellcheck: 'false', placeholder: 'name = "smoke"\n\n[roles.solo]\ndevice_type = "sim"\n\n[[action]]\ntype = "boot"\n…'});
  text.value = sessionStorage.getItem('troupe.draft') || '';
  text.addEventListener('input', () => sessionStorage.setItem('troupe.draft', text.value));
  const format = el('select', {id: 'job-format'}, el('option', {value: 'toml'}, 'troupe job (TOML)'), el('option', {value: 'lava'}, 'LAVA job (YAML)'));
  const file = el('input', {type: 'file', id: 'job-file', accept: '.toml,.yaml,.yml,text/plain'});
  let fileName = ''; // errors name the picked file, as troupe validate would
  file.addEventListener('change', async () => {
    const f = file.files[0];
    if (!f) return;
    fileName = f.name;
    text.value = await f.text();
    format.value = /\.ya?ml$/i.test(f.name) ? 'lava' : 'toml';
    sessionStorage.setItem('troupe.draft', text.value);
  });
  const err = el('pre', {id: 'submit-error', class: 'error', hidden: true});
  const button = el('button', {type: 'submit', id: 'submit-job'}, 'Submit job');
  const form = el('form', {id: 'submit-form'},
    el('div', {class: 'toolbar'}, el('label', {}, 'File ', file), el('label', {}, 'Format ', format)),
    text, err, el('div', {class: 'toolbar'}, button));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    button.disabled = true;
    try {
      const lava = format.value === 'lava';
      const q = new URLSearchParams({format: lava ? 'lava' : 'toml'});
      if (fileName) q.set('file', fileName);
      const r = await api('POST', '/jobs?' + q, text.value, lava ? 'application/yaml' : 'application/toml');
      sessionStorage.removeItem('troupe.draft');
      if (alive()) location.hash = '#/jobs/' + encodeURIComponent(r.id);
    } catch (e) {
      err.textContent = authText(e); // a 400 is the validation error, verbatim
      err.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  main.replaceChildren(el('h1', {}, 'Submit a job'), form);
}

// ---- the console's lines: plumbing, test cases, sections ----------------------

// The harness's own lines: the shell set-up command (its printf builds the
// end marker), end markers, MultiNode calls, result markers. Hidden unless
// "raw" is on; result markers are shown as a readable line instead.
const SETUP_RE = /printf '<TROUPE_%s/;
const MULTINODE_RE = /<LAVA_MULTI_NODE>/;
const MARKER_RE = /<TROUPE_END [^<>]*>|<LAVA_[A-Z_]+(?: [^<>]*)?>/g;
const SIGNAL_RE = /<LAVA_SIGNAL_(TESTCASE|TESTRAISE) ([^<>]*)>/g;

// signalFields parses "TEST_CASE_ID=x RESULT=pass" into {TEST_CASE_ID: 'x', ...}.
function signalFields(s) {
  const f = {};
  for (const m of s.matchAll(/([A-Z_]+)=(\S*)/g)) f[m[1]] = m[2];
  return f;
}

// readLine classifies a console line: plumb (hidden unless raw), the text
// shown otherwise, and the test cases it records.
function readLine(text) {
  if (SETUP_RE.test(text) || MULTINODE_RE.test(text)) return {plumb: true, shown: text, cases: []};
  const cases = [];
  const said = [];
  let failed = false;
  for (const m of text.matchAll(SIGNAL_RE)) {
    if (m[1] === 'TESTCASE') {
      const f = signalFields(m[2]);
      if (f.TEST_CASE_ID) cases.push(f.TEST_CASE_ID);
      failed = failed || f.RESULT === 'fail';
      said.push(`test case ${f.TEST_CASE_ID || '?'}: ${f.RESULT || '?'}` + (f.MEASUREMENT ? ` (${f.MEASUREMENT}${f.UNITS ? ' ' + f.UNITS : ''})` : ''));
    } else {
      said.push('test raised: ' + m[2]);
      failed = true;
    }
  }
  const rest = text.replace(MARKER_RE, '');
  const shown = [rest.trim() ? rest : '', ...said].filter(Boolean).join('  ');
  return {plumb: shown === '', shown, cases, said: said.length > 0, failed};
}

// fmtDur shows a duration in ms: "850 ms", "4.2 s", "3 m 05 s", "1 h 02 m".
function fmtDur(ms) {
  if (!(ms >= 0)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${pad(Math.floor(s % 60))} s`;
  return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} m`;
}

// A phase is an action ("deploy", "boot", "test 'smoke'") or a node's end.
const isAction = (phase) => !TERMINAL.includes(phase);
const testName = (phase) => (phase.match(/^test '(.*)'$/) || [])[1];

// ---- one job: status, nodes, results, consoles ---------------------------------

function jobPage(alive, id, line) {
  const path = '/jobs/' + encodeURIComponent(id);
  const permalink = (seq) => `#/jobs/${encodeURIComponent(id)}#L${seq}`;
  const title = el('span', {id: 'job-name'}, 'Job ' + id);
  const status = el('span', {id: 'job-status', class: 'badge'}, '…');
  const liveMark = el('span', {id: 'job-live', class: 'marker'});
  const cancel = el('button', {id: 'cancel', class: 'danger', hidden: true}, 'Cancel job');
  const error = el('pre', {id: 'job-error', class: 'error', hidden: true});
  const why = el('p', {id: 'job-why', class: 'why', hidden: true});
  const meta = el('p', {id: 'job-meta', class: 'muted meta'});
  const downloads = el('div', {class: 'toolbar', id: 'downloads'});
  const nodesBody = el('tbody', {id: 'nodes'});
  const testsBody = el('tbody', {id: 'tests'});
  const totals = el('span', {id: 'totals', class: 'totals'});
  const tabs = el('div', {class: 'tabs', id: 'tabs', role: 'tablist'});
  const box = el('div', {id: 'console', class: 'console', tabindex: 0});
  const follow = el('button', {class: 'follow', id: 'follow', hidden: true}, '↓ follow');
  const streamState = el('span', {id: 'stream-state', class: 'marker'});
  const search = el('input', {id: 'search', type: 'search', placeholder: 'Search this tab', autocomplete: 'off', 'aria-label': 'Search the log'});
  const count = el('span', {id: 'search-count', class: 'muted count'});
  const prev = el('button', {id: 'search-prev', type: 'button', title: 'Previous match (Shift+Enter)'}, '↑');
  const next = el('button', {id: 'search-next', type: 'button', title: 'Next match (Enter)'}, '↓');
  const rawBox = el('input', {id: 'raw', type: 'checkbox'});
  const collapseAll = el('button', {id: 'collapse-all', type: 'button'}, 'Collapse all');
  main.replaceChildren(
    el('h1', {}, title, ' ', status, ' ', liveMark, ' ', cancel),
    error, why, meta, downloads,
    el('h2', {}, 'Nodes'),
    el('table', {class: 'cards'}, head(['Node', 'Role', 'Board', 'Status', 'Error']), nodesBody),
    el('h2', {}, 'Test results ', totals),
    el('table', {class: 'cards'}, head(['Node', 'Suite', 'Test', 'Result', 'Measurement', 'Line']), testsBody),
    el('h2', {}, 'Console ', streamState),
    el('div', {class: 'toolbar console-tools'},
      el('div', {class: 'search'}, search, count, prev, next),
      el('label', {title: 'Show the harness\'s own lines: shell set-up, markers, blank lines'}, rawBox, ' raw'),
      collapseAll),
    tabs, el('div', {class: 'console-wrap'}, box, follow),
  );

  let job = {id};
  let ended = false;
  let now = Date.now();

  // ---- state of the console view
  const recs = []; // every line on the page, in seq order: {seq, node, time, text, plumb, shown, cases, el, textEl, sec}
  const bySeq = new Map();
  const nodeRecs = new Map(); // node → its recs, in order
  const sections = new Map(); // node → [{node, phase, start, detail, key, el, badge, dur}]
  const ends = new Map(); // node → {phase, time, detail}: its final status
  const collapsed = new Set();
  let tab = ''; // '' is the merged timeline
  let raw = false;
  let query = '';
  let matches = [], current = -1;
  let target = null; // seq of a permalink not on the page yet

  const shownText = (r) => (raw ? r.text : r.shown);
  const visible = (r) => {
    if (tab && r.node !== tab) return false;
    if (r.plumb && !raw) return false;
    if (query) return shownText(r).toLowerCase().includes(query);
    return !(r.sec && collapsed.has(r.sec.key));
  };
  const paint = (r) => {
    const t = shownText(r);
    const key = (raw ? 'r' : 't') + query;
    if (r.painted === key) return;
    r.painted = key;
    if (!query) {
      r.textEl.textContent = t;
      return;
    }
    const parts = [];
    const low = t.toLowerCase();
    let i = 0;
    for (let j = low.indexOf(query); j >= 0; j = low.indexOf(query, i)) {
      parts.push(t.slice(i, j), el('mark', {}, t.slice(j, j + query.length)));
      i = j + query.length;
    }
    parts.push(t.slice(i));
    r.textEl.replaceChildren(...parts.filter((p) => p !== ''));
  };
  const headerVisible = (s) => !query && !(tab && s.node !== tab);

  // applyView shows what the tab, raw, the sections and the search say.
  const applyView = () => {
    box.classList.toggle('single', tab !== '');
    matches = [];
    for (const r of recs) {
      const v = visible(r);
      r.el.hidden = !v;
      paint(r);
      r.el.classList.remove('current');
      if (v && query) matches.push(r);
    }
    for (const list of sections.values()) for (const s of list) s.el.hidden = !headerVisible(s);
    current = -1;
    count.textContent = query ? `${matches.length} match${matches.length === 1 ? '' : 'es'}` : '';
    prev.disabled = next.disabled = matches.length === 0;
  };
  const goMatch = (d) => {
    if (!matches.length) return;
    if (current >= 0) matches[current].el.classList.remove('current');
    current = (current + d + matches.length) % matches.length;
    const r = matches[current];
    r.el.classList.add('current');
    count.textContent = `${current + 1} of ${matches.length}`;
    stick = false;
    reveal(r);
  };
  const reveal = (r) => {
    follow.hidden = ended;
    r.el.scrollIntoView({block: 'center'});
  };
  let searchTimer = null;
  search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      query = search.value.toLowerCase();
      applyView();
      if (query) goMatch(1);
    }, 120);
  });
  search.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') {
      ev.preventDefault();
      goMatch(ev.shiftKey ? -1 : 1);
    }
  });
  prev.addEventListener('click', () => goMatch(-1));
  next.addEventListener('click', () => goMatch(1));
  onLeave(() => clearTimeout(searchTimer));
  rawBox.addEventListener('change', () => {
    raw = rawBox.checked;
    applyView();
  });
  collapseAll.addEventListener('click', () => {
    const all = [...sections.values()].flat();
    const open = all.some((s) => !collapsed.has(s.key));
    for (const s of all) setCollapsed(s, open);
    collapseAll.textContent = open ? 'Expand all' : 'Collapse all';
    applyView();
  });

  // ---- tabs: the merged timeline, then one per node
  const tabFor = new Map();
  const addTab = (node) => {
    if (tabFor.has(node)) return;
    const b = el('button', {role: 'tab', 'data-node': node, onclick: () => select(node)},
      node ? el('span', {class: 'swatch'}) : null, node || 'Timeline');
    if (node) b.style.setProperty('--node', nodeColor(node));
    tabFor.set(node, b);
    tabs.append(b);
    b.setAttribute('aria-selected', String(node === tab));
    if (node) {
      downloads.append(el('button', {'data-log': node, onclick: () => download(`${path}/logs?node=${encodeURIComponent(node)}`, `job-${id}-${node}.log`)}, `${node}.log`));
    }
  };
  const select = (node) => {
    tab = node;
    for (const [n, b] of tabFor) b.setAttribute('aria-selected', String(n === node));
    applyView();
    if (stick) box.scrollTop = box.scrollHeight;
  };
  downloads.append(
    el('span', {class: 'muted'}, 'Download'),
    el('button', {id: 'download-log', onclick: () => download(path + '/logs', `job-${id}.log`), title: 'The merged log of every node, as recorded'}, 'Log (raw)'),
    el('button', {onclick: () => download(path + '/junit.xml', `job-${id}-junit.xml`)}, 'junit.xml'),
    el('button', {onclick: () => download(path + '/source', `job-${id}.txt`)}, 'Job file'));
  addTab('');

  // ---- sections: one per action of each node, from the stream's action frames
  const setCollapsed = (s, yes) => {
    if (yes) collapsed.add(s.key);
    else collapsed.delete(s.key);
    s.el.setAttribute('aria-expanded', String(!yes));
  };
  // sectionResult is a section's badge: pass, fail, running, or ''.
  const sectionResult = (s, list) => {
    const i = list.indexOf(s);
    const end = ends.get(s.node);
    const last = i === list.length - 1;
    const name = testName(s.phase);
    if (last && !end && !ended) return 'running';
    if (name !== undefined) { // a test action: its own result, suite "troupe"
      const t = (job.tests || []).find((x) => x.node === s.node && x.suite === 'troupe' && x.name === name);
      return t ? t.result : '';
    }
    if (!last) return 'pass';
    if (!end) return '';
    return end.phase === 'complete' ? 'pass' : 'fail';
  };
  const sectionEnd = (s, list) => {
    const i = list.indexOf(s);
    if (i < list.length - 1) return list[i + 1].start;
    const end = ends.get(s.node);
    if (end) return end.time;
    if (ended && job.ended) return Date.parse(job.ended);
    return ended ? NaN : now;
  };
  const paintSections = () => {
    for (const list of sections.values()) {
      for (const s of list) {
        const res = sectionResult(s, list);
        s.badge.textContent = res;
        s.badge.className = `badge result-${res || 'none'}`;
        s.badge.hidden = !res;
        s.dur.textContent = fmtDur(sectionEnd(s, list) - s.start);
      }
    }
  };
  const firstRecOf = (s) => (nodeRecs.get(s.node) || []).find((r) => r.sec === s);
  // addAction records a node's phase change; the node's lines from its
  // time on move to the new section.
  const addAction = (f) => {
    const t = frameTime(f.time);
    if (!isAction(f.phase)) {
      ends.set(f.node, {phase: f.phase, time: t, detail: f.detail});
      paintSections();
      return;
    }
    addTab(f.node);
    const list = sections.get(f.node) || [];
    sections.set(f.node, list);
    const key = `${f.node} ${list.length}`;
    const s = {node: f.node, phase: f.phase, start: t, detail: f.detail, key};
    s.badge = el('span', {class: 'badge'});
    s.dur = el('span', {class: 'dur'});
    s.el = el('button', {class: 'sec', type: 'button', 'data-node': f.node, 'data-phase': f.phase, 'aria-expanded': 'true'},
      el('span', {class: 'chev', 'aria-hidden': 'true'}), el('span', {class: 'node'}, f.node), el('span', {class: 'phase'}, f.phase), s.dur, s.badge);
    s.el.style.setProperty('--node', nodeColor(f.node));
    s.el.addEventListener('click', () => {
      setCollapsed(s, !collapsed.has(s.key));
      applyView();
    });
    list.push(s);
    const mine = nodeRecs.get(f.node) || [];
    for (let i = mine.length - 1; i >= 0 && (mine[i].time >= t || list.length === 1); i--) mine[i].sec = s;
    const first = firstRecOf(s);
    if (first) first.el.before(s.el);
    else box.append(s.el);
    s.el.hidden = !headerVisible(s);
    for (const r of mine) if (r.sec === s) r.el.hidden = !visible(r);
    paintSections();
  };

  // ---- lines: batched, so a fast console does not relayout per line
  let stick = true;
  box.addEventListener('scroll', () => {
    stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
    follow.hidden = stick || ended;
  });
  follow.addEventListener('click', () => {
    stick = true;
    follow.hidden = true;
    box.scrollTop = box.scrollHeight;
  });

  let pending = [], flushTimer = null;
  const flush = () => {
    clearTimeout(flushTimer);
    flushTimer = null;
    const frag = document.createDocumentFragment();
    for (const f of pending) {
      if (f.type === 'action') {
        box.append(frag);
        addAction(f);
        continue;
      }
      addTab(f.node);
      const r = {seq: f.seq, node: f.node, time: frameTime(f.time), text: f.text, ...readLine(f.text)};
      r.textEl = el('span', {class: 'text'});
      r.el = el('div', {class: 'line' + (r.plumb ? ' plumb' : '') + (r.said ? ' said' : '') + (r.failed ? ' failed' : ''), id: 'L' + f.seq, 'data-node': f.node, 'data-seq': f.seq},
        el('a', {class: 'ln', href: permalink(f.seq), 'aria-label': 'line ' + f.seq}, String(f.seq)),
        el('span', {class: 'time'}, fmtTime(f.time)), el('span', {class: 'node'}, f.node), r.textEl);
      r.el.style.setProperty('--node', nodeColor(f.node));
      const mine = nodeRecs.get(f.node) || [];
      nodeRecs.set(f.node, mine);
      const secs = sections.get(f.node);
      r.sec = secs ? secs[secs.length - 1] : null;
      mine.push(r);
      recs.push(r);
      bySeq.set(r.seq, r);
      paint(r);
      r.el.hidden = !visible(r);
      if (query && !r.el.hidden) matches.push(r);
      frag.append(r.el);
    }
    pending = [];
    box.append(frag);
    let drop = recs.length - MAX_LINES;
    if (drop > 0) {
      for (const r of recs.splice(0, drop)) {
        r.el.remove();
        bySeq.delete(r.seq);
        nodeRecs.get(r.node).shift();
      }
      box.classList.add('trimmed');
    }
    if (query) count.textContent = current >= 0 ? `${current + 1} of ${matches.length}` : `${matches.length} match${matches.length === 1 ? '' : 'es'}`;
    if (target !== null) goLine(target);
    else if (stick) box.scrollTop = box.scrollHeight;
    linkResults();
  };
  const addFrame = (f) => {
    pending.push(f);
    if (!flushTimer) flushTimer = setTimeout(flush, 40);
  };
  onLeave(() => clearTimeout(flushTimer));

  // goLine opens the tab of line seq, shows it (raw on if it is plumbing,
  // its section expanded, a search that hides it cleared) and scrolls there.
  const goLine = (seq) => {
    const r = bySeq.get(seq);
    if (!r) {
      target = seq; // not here yet: once it arrives
      return;
    }
    target = null;
    for (const x of box.querySelectorAll('.line.target')) x.classList.remove('target');
    if (r.plumb && !raw) rawBox.checked = raw = true;
    if (query && !shownText(r).toLowerCase().includes(query)) search.value = query = '';
    if (r.sec && collapsed.has(r.sec.key)) setCollapsed(r.sec, false);
    tab = r.node;
    for (const [n, b] of tabFor) b.setAttribute('aria-selected', String(n === tab));
    applyView();
    r.el.classList.add('target');
    stick = false;
    reveal(r);
  };

  // linkResults points every result at the line that recorded it: its
  // result marker in the node's section of its test action (the action's
  // own result, suite "troupe", at the section's first line).
  const linkResults = () => {
    for (const a of testsBody.querySelectorAll('a.case-line[data-want]')) {
      const t = JSON.parse(a.dataset.want);
      const mine = nodeRecs.get(t.node) || [];
      let r;
      if (t.suite === 'troupe') {
        const s = (sections.get(t.node) || []).find((x) => testName(x.phase) === t.name);
        r = s && (mine.find((x) => x.sec === s && !x.plumb) || firstRecOf(s));
      } else {
        const cands = mine.filter((x) => x.cases.includes(t.name));
        const inAction = cands.filter((x) => x.sec && testName(x.sec.phase) === t.suite);
        r = (inAction.length ? inAction : cands)[t.nth];
      }
      if (!r) continue;
      a.href = permalink(r.seq);
      a.textContent = 'L' + r.seq;
      a.removeAttribute('data-want');
    }
  };

  // ---- the job itself
  const durations = () => {
    const started = job.started ? Date.parse(job.started) : NaN;
    const endAt = job.ended ? Date.parse(job.ended) : now;
    const parts = [`submitted ${fmtDate(job.submitted)}`];
    if (job.started) parts.push(`started ${fmtDate(job.started)}`);
    if (job.ended) parts.push(`ended ${fmtDate(job.ended)}`);
    if (!isNaN(started)) parts.push((job.ended ? 'took ' : 'running for ') + fmtDur(endAt - started));
    if (job.priority !== undefined) parts.push(`priority ${job.priority}`);
    meta.textContent = parts.join(' · ');
  };
  const markers = () => {
    const done = ended || TERMINAL.includes(job.status);
    liveMark.textContent = done ? '■ ended' : (job.status === 'queued' ? '◌ queued' : '● live');
    liveMark.className = 'marker ' + (done ? 'ended' : 'live');
    if (done) follow.hidden = true;
  };

  // show renders a Job (or JobSummary: nodes and tests are kept then).
  const show = (j) => {
    if (!j || !alive()) return;
    job = {...job, ...j};
    title.textContent = `${job.name || 'Job'} #${job.id}`;
    status.textContent = job.status || '…';
    status.className = badge(job.status).className;
    document.title = `${job.status || '…'} · ${job.name || 'job ' + job.id} — troupe`;
    cancel.hidden = !['queued', 'running'].includes(job.status);
    error.textContent = job.error || '';
    error.hidden = !job.error;
    durations();
    markers();
    const nodes = job.nodes || [];
    nodesBody.replaceChildren(...nodes.map((n) => {
      const name = el('span', {class: 'node-name'}, n.name);
      name.style.setProperty('--node', nodeColor(n.name));
      return row([name, n.role, n.board || '—', badge(n.status), n.error || ''], {'data-node': n.name}, ['Node', 'Role', 'Board', 'Status', 'Error']);
    }));
    if (!nodes.length) nodesBody.append(el('tr', {}, el('td', {colspan: 5, class: 'muted'}, 'No nodes yet.')));
    const tests = job.tests || [];
    const seen = new Map(); // the n-th result of a case links to its n-th marker
    testsBody.replaceChildren(...tests.map((t) => {
      const k = `${t.node} ${t.suite} ${t.name}`;
      const n = seen.get(k) || 0;
      seen.set(k, n + 1);
      const link = el('a', {class: 'case-line', 'data-want': JSON.stringify({node: t.node, suite: t.suite, name: t.name, nth: n})}, '');
      return row([
        t.node, t.suite, t.name, badge(t.result, 'result'),
        t.measurement !== undefined && t.measurement !== null ? `${t.measurement} ${t.units || ''}` : '', link,
      ], {class: `result-${t.result}`}, ['Node', 'Suite', 'Test', 'Result', 'Measurement', 'Line']);
    }));
    if (!tests.length) testsBody.append(el('tr', {}, el('td', {colspan: 6, class: 'muted'}, TERMINAL.includes(job.status) ? 'No test results.' : 'No results yet.')));
    const tally = {pass: 0, fail: 0, skip: 0, unknown: 0};
    for (const t of tests) tally[t.result in tally ? t.result : 'unknown']++;
    totals.replaceChildren(...(tests.length ? [
      el('span', {class: 'badge result-pass', id: 'total-pass'}, `${tally.pass} passed`),
      el('span', {class: 'badge result-fail', id: 'total-fail'}, `${tally.fail} failed`),
      tally.skip ? el('span', {class: 'badge result-skip'}, `${tally.skip} skipped`) : null,
      tally.unknown ? el('span', {class: 'badge result-unknown'}, `${tally.unknown} unknown`) : null,
    ].filter(Boolean) : []));
    linkResults();
    for (const n of nodes) addTab(n.name);
    if (!nodes.length) {
      for (const [role, cnt] of Object.entries(job.roles || {})) for (let i = 0; i < cnt; i++) addTab(`${role}-${i}`);
    }
    if (job.status !== 'queued') why.hidden = true;
    paintSections();
  };

  const refresh = async () => show(await api('GET', path));

  cancel.addEventListener('click', async () => {
    if (!confirm(`Cancel job ${id}?`)) return;
    try {
      show(await api('POST', path + '/cancel'));
    } catch (e) {
      showError(e);
    }
  });

  // Durations of what still runs move on every second.
  const ticker = setInterval(() => {
    if (ended) return;
    now = Date.now();
    durations();
    paintSections();
  }, 1000);
  onLeave(() => clearInterval(ticker));

  // While queued: why it waits. While not ended: the job, in case the
  // stream is down (nodes and results arrive with the end frame otherwise).
  const explain = async () => {
    if (job.status !== 'queued') return;
    const x = await api('GET', path + '/explain');
    if (!alive() || x.waiting === false) return;
    if (x.summary || x.never) {
      why.textContent = (x.never ? `Can never start: ${x.never}. ` : '') + (x.summary || '');
      why.hidden = job.status !== 'queued';
    }
  };
  const start = () => {
    poll(alive, 3000, explain);
    poll(alive, 5000, async () => {
      if (!ended && !TERMINAL.includes(job.status)) await refresh();
    }, true);
    connect();
  };

  // The console stream: replay from the first line, then live. A lagged
  // frame or a dropped socket reconnects from the last line seen + 1; the
  // actions come again on every connection, so they are reset then.
  let ws = null, lastSeq = 0, retry = null, backoff = 500, actionsSeen = 0;
  const connect = () => {
    if (!alive() || ended) return;
    streamState.textContent = 'connecting…';
    streamState.className = 'marker';
    const sock = new WebSocket(wsURL(path + '/stream', {from: lastSeq + 1}));
    ws = sock;
    let actionsNow = 0;
    sock.onopen = () => {
      streamState.textContent = '● live';
      streamState.className = 'marker live';
      backoff = 500;
    };
    sock.onmessage = (ev) => {
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      if (f.type === undefined || f.type === 'line') {
        if (f.seq > lastSeq) {
          lastSeq = f.seq;
          addFrame(f);
        }
      } else if (f.type === 'action') {
        if (++actionsNow > actionsSeen) { // a reconnection repeats the ones seen
          actionsSeen = actionsNow;
          addFrame(f);
        }
      } else if (f.type === 'status') {
        show({...f.job, status: f.status, error: f.error ?? (f.job || {}).error});
        refresh().catch(showError); // nodes and boards change with the status
      } else if (f.type === 'lagged') {
        closeSocket(sock);
        streamState.textContent = 'catching up…';
        connect();
      } else if (f.type === 'end') {
        ended = true;
        closeSocket(sock);
        flush();
        if (target !== null) showError({message: `Line ${target} is not on the page (no such line, or an older line dropped from the page: download the log).`});
        show({...f.job, status: f.status});
        streamState.textContent = '■ ended';
        streamState.className = 'marker ended';
        follow.hidden = true;
      }
    };
    sock.onclose = () => {
      if (!alive() || ended) return;
      streamState.textContent = 'reconnecting…';
      streamState.className = 'marker';
      retry = setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  };
  onLeave(() => { clearTimeout(retry); closeSocket(ws); });

  if (line) target = Number(line);
  show(job);
  refresh().then(start, (e) => {
    if (e.status === 404) {
      main.replaceChildren(el('h1', {}, 'Job not found'), el('p', {}, e.message, ' — ', el('a', {href: '#/'}, 'all jobs')));
      return;
    }
    showError(e);
    start();
  });
  return {job: id, goLine: (seq) => goLine(Number(seq))};
}

// ---- queue: what waits, and why -------------------------------------------

function queuePage(alive) {
  const tbody = el('tbody', {id: 'queue'});
  main.replaceChildren(el('h1', {}, 'Queue'),
    el('table', {class: 'cards'}, head(['#', 'Job', 'Name', 'Priority', 'Submitted', 'Why waiting']), tbody));
  poll(alive, 3000, async () => {
    const jobs = await api('GET', '/jobs?status=queued');
    const why = await Promise.all(jobs.map((j) =>
      api('GET', `/jobs/${encodeURIComponent(j.id)}/explain`).catch((e) => ({summary: `(${authText(e)})`}))));
    if (!alive()) return;
    const items = jobs.map((j, i) => ({j, x: why[i] || {}}));
    items.sort((a, b) => (a.x.position ?? Infinity) - (b.x.position ?? Infinity));
    tbody.replaceChildren(...items.map(({j, x}) => row([
      x.position ?? '', jobLink(j.id), j.name, j.priority ?? '', fmtDate(j.submitted),
      el('div', {class: 'why'},
        x.never ? el('div', {class: 'error-text'}, 'Can never start: ' + x.never) : null,
        el('div', {}, x.summary || (x.waiting === false ? `not waiting (${x.status})` : ''))),
    ], {'data-id': j.id})));
    if (!items.length) tbody.append(el('tr', {}, el('td', {colspan: 6, class: 'muted'}, 'Nothing is waiting.')));
  });
}

// ---- devices ------------------------------------------------------------------

function devicesPage(alive) {
  const tbody = el('tbody', {id: 'devices'});
  main.replaceChildren(el('h1', {}, 'Devices'),
    el('table', {class: 'cards'}, head(['Name', 'Type', 'Tags', 'Backend', 'Health', 'Current job', 'Reserved by']), tbody));
  poll(alive, 5000, async () => {
    const devices = await api('GET', '/devices');
    if (!alive()) return;
    tbody.replaceChildren(...devices.map((d) => row([
      d.name, d.device_type, (d.tags || []).join(', '),
      // A worker's board: the worker, and offline (its worker lost) beside its health.
      d.worker ? el('span', {}, `worker ${d.worker} `, badge(d.connection, 'conn')) : d.backend,
      badge(d.health, 'health'), d.job ? jobLink(d.job) : '—',
      d.reserved_by ? `${d.reserved_by} until ${new Date(d.reserved_until).toLocaleString()}` : '—',
    ], {'data-name': d.name})));
    if (!devices.length) tbody.append(el('tr', {}, el('td', {colspan: 7, class: 'muted'}, 'No devices.')));
  });
  // Workers (troupe serve --workers): each one's connection and boards.
  const wbody = el('tbody', {id: 'workers'});
  const wsection = el('section', {hidden: true}, el('h2', {}, 'Workers'),
    el('table', {}, head(['Worker', 'Connection', 'Address', 'Boards']), wbody));
  main.append(wsection);
  poll(alive, 5000, async () => {
    let workers;
    try {
      workers = await api('GET', '/workers');
    } catch (e) {
      if (e.status === 404) return; // a server without workers
      throw e;
    }
    if (!alive()) return;
    wsection.hidden = false;
    wbody.replaceChildren(...workers.map((w) => row([
      w.name, badge(w.connected ? 'online' : 'offline', 'conn'), w.address, (w.boards || []).join(', '),
    ], {'data-name': w.name})));
  });
}

// ---- start ----------------------------------------------------------------------

const tokenInput = document.getElementById('token');
tokenInput.value = token;
document.getElementById('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = tokenInput.value.trim();
  if (token) localStorage.setItem('troupe.token', token);
  else localStorage.removeItem('troupe.token');
  route(true);
});
window.addEventListener('hashchange', route);
route();
