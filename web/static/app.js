'use strict';
// The troupe web UI: plain JavaScript, no framework, no build step. It talks
// to the API of docs/api.md only. Data reaches the page through text nodes
// (el() below), never as markup.

const API = '/api/v1';
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

const row = (cells, attrs) => el('tr', attrs, cells.map((c) => el('td', {}, c)));
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
  [/^#\/jobs\/([^/]+)$/, 'jobs', jobPage],
  [/^#\/submit$/, 'submit', submitPage],
  [/^#\/queue$/, 'queue', queuePage],
  [/^#\/devices$/, 'devices', devicesPage],
];

function route() {
  for (const fn of leaving.splice(0)) fn();
  const g = ++generation;
  const alive = () => g === generation;
  hideBanner();
  document.title = 'troupe';
  const hash = location.hash || '#/';
  for (const [re, nav, page] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    page(alive, ...m.slice(1).map(decodeURIComponent));
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
    el('table', {id: 'jobs'}, head(['ID', 'Name', 'Status', 'Priority', 'Roles', 'Submitted', 'Ended', 'Error']), tbody),
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

// ---- one job: status, nodes, results, consoles ---------------------------------

function jobPage(alive, id) {
  const path = '/jobs/' + encodeURIComponent(id);
  const title = el('span', {id: 'job-name'}, 'Job ' + id);
  const status = el('span', {id: 'job-status', class: 'badge'}, '…');
  const cancel = el('button', {id: 'cancel', class: 'danger', hidden: true}, 'Cancel job');
  const error = el('pre', {id: 'job-error', class: 'error', hidden: true});
  const why = el('p', {id: 'job-why', class: 'why', hidden: true});
  const meta = el('p', {class: 'muted'});
  const nodesBody = el('tbody', {id: 'nodes'});
  const testsBody = el('tbody', {id: 'tests'});
  const tabs = el('div', {class: 'tabs', id: 'tabs', role: 'tablist'});
  const box = el('div', {id: 'console', class: 'console'});
  const follow = el('button', {class: 'follow', hidden: true}, '↓ follow');
  const streamState = el('span', {id: 'stream-state', class: 'live'});
  main.replaceChildren(
    el('h1', {}, title, ' ', status, ' ', cancel),
    error, why, meta,
    el('div', {class: 'toolbar'},
      el('button', {onclick: () => download(path + '/logs', `job-${id}.log`)}, 'Download log'),
      el('button', {onclick: () => download(path + '/junit.xml', `job-${id}-junit.xml`)}, 'junit.xml'),
      el('button', {onclick: () => download(path + '/source', `job-${id}.txt`)}, 'Job file')),
    el('h2', {}, 'Nodes'),
    el('table', {}, head(['Node', 'Role', 'Board', 'Status', 'Error']), nodesBody),
    el('h2', {}, 'Test results'),
    el('table', {}, head(['Node', 'Suite', 'Test', 'Result', 'Measurement']), testsBody),
    el('h2', {}, 'Console ', streamState),
    tabs, el('div', {class: 'console-wrap'}, box, follow),
  );

  let job = {id};
  let ended = false;

  // Tabs: the merged timeline, then one per node, filtering one stream.
  let filter = '';
  const tabFor = new Map();
  const addTab = (node) => {
    if (tabFor.has(node)) return;
    const b = el('button', {role: 'tab', 'data-node': node, onclick: () => select(node)},
      node ? el('span', {class: 'swatch'}) : null, node || 'Timeline');
    if (node) b.style.setProperty('--node', nodeColor(node));
    tabFor.set(node, b);
    tabs.append(b);
    b.setAttribute('aria-selected', String(node === filter));
  };
  const select = (node) => {
    filter = node;
    for (const [n, b] of tabFor) b.setAttribute('aria-selected', String(n === node));
    box.classList.toggle('single', node !== '');
    for (const line of box.children) line.hidden = node !== '' && line.dataset.node !== node;
    if (stick) box.scrollTop = box.scrollHeight;
  };
  addTab('');

  // Auto-scroll follows the end until the user scrolls up.
  let stick = true;
  box.addEventListener('scroll', () => {
    stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
    follow.hidden = stick;
  });
  follow.addEventListener('click', () => {
    stick = true;
    follow.hidden = true;
    box.scrollTop = box.scrollHeight;
  });

  // Lines are batched so a fast console does not relayout per line.
  let pending = [], flushTimer = null;
  const flush = () => {
    flushTimer = null;
    const frag = document.createDocumentFragment();
    for (const f of pending) {
      addTab(f.node);
      const line = el('div', {class: 'line', 'data-node': f.node, 'data-seq': f.seq},
        el('span', {class: 'time'}, fmtTime(f.time)), el('span', {class: 'node'}, f.node), el('span', {class: 'text'}, f.text));
      line.style.setProperty('--node', nodeColor(f.node));
      line.hidden = filter !== '' && f.node !== filter;
      frag.append(line);
    }
    pending = [];
    box.append(frag);
    let drop = box.childElementCount - MAX_LINES;
    if (drop > 0) {
      while (drop-- > 0) box.firstElementChild.remove();
      box.classList.add('trimmed');
    }
    if (stick) box.scrollTop = box.scrollHeight;
  };
  const addLine = (f) => {
    pending.push(f);
    if (!flushTimer) flushTimer = setTimeout(flush, 40);
  };
  onLeave(() => clearTimeout(flushTimer));

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
    meta.textContent = `submitted ${fmtDate(job.submitted)} · started ${fmtDate(job.started)} · ended ${fmtDate(job.ended)}` +
      (job.priority !== undefined ? ` · priority ${job.priority}` : '');
    const nodes = job.nodes || [];
    nodesBody.replaceChildren(...nodes.map((n) => {
      const name = el('span', {class: 'node-name'}, n.name);
      name.style.setProperty('--node', nodeColor(n.name));
      return row([name, n.role, n.board || '—', badge(n.status), n.error || ''], {'data-node': n.name});
    }));
    if (!nodes.length) nodesBody.append(el('tr', {}, el('td', {colspan: 5, class: 'muted'}, 'No nodes yet.')));
    const tests = job.tests || [];
    testsBody.replaceChildren(...tests.map((t) => row([
      t.node, t.suite, t.name, badge(t.result, 'result'),
      t.measurement !== undefined && t.measurement !== null ? `${t.measurement} ${t.units || ''}` : '',
    ], {class: `result-${t.result}`})));
    if (!tests.length) testsBody.append(el('tr', {}, el('td', {colspan: 5, class: 'muted'}, TERMINAL.includes(job.status) ? 'No test results.' : 'No results yet.')));
    for (const n of nodes) addTab(n.name);
    if (!nodes.length) {
      for (const [role, count] of Object.entries(job.roles || {})) for (let i = 0; i < count; i++) addTab(`${role}-${i}`);
    }
    if (job.status !== 'queued') why.hidden = true;
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
  // frame or a dropped socket reconnects from the last line seen + 1.
  let ws = null, lastSeq = 0, retry = null, backoff = 500;
  const connect = () => {
    if (!alive() || ended) return;
    streamState.textContent = 'connecting…';
    const sock = new WebSocket(wsURL(path + '/stream', {from: lastSeq + 1}));
    ws = sock;
    sock.onopen = () => {
      streamState.textContent = '● live';
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
          addLine(f);
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
        clearTimeout(flushTimer);
        flush();
        show({...f.job, status: f.status});
        streamState.textContent = 'ended';
      }
    };
    sock.onclose = () => {
      if (!alive() || ended) return;
      streamState.textContent = 'reconnecting…';
      retry = setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  };
  onLeave(() => { clearTimeout(retry); closeSocket(ws); });

  show(job);
  refresh().then(start, (e) => {
    if (e.status === 404) {
      main.replaceChildren(el('h1', {}, 'Job not found'), el('p', {}, e.message, ' — ', el('a', {href: '#/'}, 'all jobs')));
      return;
    }
    showError(e);
    start();
  });
}

// ---- queue: what waits, and why -------------------------------------------

function queuePage(alive) {
  const tbody = el('tbody', {id: 'queue'});
  main.replaceChildren(el('h1', {}, 'Queue'),
    el('table', {}, head(['#', 'Job', 'Name', 'Priority', 'Submitted', 'Why waiting']), tbody));
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
    el('table', {}, head(['Name', 'Type', 'Tags', 'Backend', 'Health', 'Current job']), tbody));
  poll(alive, 5000, async () => {
    const devices = await api('GET', '/devices');
    if (!alive()) return;
    tbody.replaceChildren(...devices.map((d) => row([
      d.name, d.device_type, (d.tags || []).join(', '), d.backend, badge(d.health, 'health'), d.job ? jobLink(d.job) : '—',
    ], {'data-name': d.name})));
    if (!devices.length) tbody.append(el('tr', {}, el('td', {colspan: 6, class: 'muted'}, 'No devices.')));
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
  route();
});
window.addEventListener('hashchange', route);
route();
