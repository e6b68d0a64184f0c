// tccd activity monitor.
//
// Plain JavaScript, no build step and no library: what is reviewed is what
// runs. The page shows what the coordinator reports and nothing else:
// every state on screen comes from a transaction record (GET
// /api/v1/transactions…) or an event of the stream (GET /api/v1/events);
// nothing is inferred, and a participant in doubt is shown in doubt.
//
// It never builds HTML from strings (the Content-Security-Policy requires
// Trusted Types): elements are created and text is set as text.

// BASE is the path the coordinator is served under (empty unless a proxy
// adds a prefix): the page is at BASE/ui/.
const BASE = location.pathname.replace(/\/ui\/.*$/, '');
// The token lives in this tab's sessionStorage only: never localStorage,
// never a cookie, never a URL.
const TOKEN_KEY = 'tccd.token';

// Every transaction state, in lifecycle order (tccd.States; a Go test
// keeps the two lists equal).
const STATES = ['active', 'confirming', 'confirmed', 'cancelling', 'cancelled', 'compensating', 'compensated', 'heuristic'];
const FINAL = new Set(['confirmed', 'cancelled', 'compensated', 'heuristic']);
const DECIDED = ['confirming', 'cancelling', 'compensating'];

const POLL_MS = 2000;        // the list's period without the stream
const QUEUE_MS = 10000;      // the queue's period
const LIST_LIMIT = 200;      // transactions asked for in one list request
const MAX_ENTRIES = 2000;    // transactions kept in memory
const WINDOW_MS = 60000;     // the throughput window

const PARTICIPANT_EXPLAIN = {
  pending: 'not called yet, or no call reached it',
  in_doubt: 'a confirm went out without a definite answer: it may have taken effect; the coordinator keeps asking',
  confirmed: 'answered 2xx to the confirm',
  cancelled: 'cancelled (2xx/404/410 to the cancel, or 404/410 to the confirm)',
  expired: 'its link expired with no confirm in doubt: by contract it cancelled itself',
  failed: 'refused to confirm',
  cancel_refused: 'refused the cancel until its link expired',
  compensated: 'it had confirmed and was undone',
};

// ---- small helpers ---------------------------------------------------

const $ = (id) => document.getElementById(id);

// h creates an element: attributes (class, text, on<event>, dataset, or
// plain attributes) and children (nodes or text).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// setText changes an element's text only if it differs.
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function pad(n, w = 2) { return String(n).padStart(w, '0'); }

// fmtTime shows an instant in local time with milliseconds.
function fmtTime(s) {
  if (!s) return '';
  const d = new Date(s);
  if (isNaN(d)) return String(s);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

// ago says how long ago an instant was, roughly.
function ago(s) {
  if (!s) return '';
  const ms = Date.now() - new Date(s).getTime();
  if (ms < 1000) return 'just now';
  const sec = Math.round(ms / 1000);
  if (sec < 60) return `${sec} s ago`;
  if (sec < 3600) return `${Math.round(sec / 60)} min ago`;
  if (sec < 86400) return `${Math.round(sec / 3600)} h ago`;
  return `${Math.round(sec / 86400)} d ago`;
}

function hostOf(uri) {
  try { return new URL(uri).host; } catch { return ''; }
}

function stateBadge(state, reason) {
  return h('span', { class: 'state' },
    h('span', { class: `badge s-${state}`, text: state, dataset: { state } }),
    reason ? h('span', { class: 'reason', text: reason }) : null);
}

function participantBadge(state) {
  const label = state === 'in_doubt' ? 'in doubt' : state;
  return h('span', { class: `badge p-${state}`, text: label, title: PARTICIPANT_EXPLAIN[state] || '', dataset: { pstate: state } });
}

function txLink(id) {
  return h('a', { href: '#/tx/' + encodeURIComponent(id), class: 'mono', text: id });
}

// ---- the API ---------------------------------------------------------

class APIError extends Error {
  constructor(status, problem, message) {
    super(message);
    this.status = status;
    this.problem = problem;
  }
}

const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY) || ''; },
  set token(t) { if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY); },
};

function authHeaders(extra) {
  const hdr = Object.assign({}, extra);
  const tok = session.token;
  if (tok) hdr.Authorization = 'Bearer ' + tok;
  return hdr;
}

async function api(method, path, body) {
  const init = {
    method,
    headers: authHeaders({ Accept: 'application/json' }),
    cache: 'no-store',
    credentials: 'omit',
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(BASE + path, init);
  } catch (e) {
    throw new APIError(0, null, 'cannot reach the coordinator');
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    const msg = (json && (json.detail || json.title)) || `${res.status} ${res.statusText}`;
    const err = new APIError(res.status, json, msg);
    if (res.status === 401) app.unauthorized(err);
    throw err;
  }
  return json;
}

// readSSE reads a text/event-stream body, calling onEvent(name, id, data)
// for each event; it returns when the stream ends.
async function readSSE(res, onEvent) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let name = '', id = null, data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      let line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line === '') {
        if (data.length) onEvent(name || 'message', id, data.join('\n'));
        name = ''; id = null; data = [];
        continue;
      }
      if (line.startsWith(':')) continue; // a keep-alive comment
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      let v = c < 0 ? '' : line.slice(c + 1);
      if (v.startsWith(' ')) v = v.slice(1);
      if (field === 'event') name = v;
      else if (field === 'data') data.push(v);
      else if (field === 'id') id = v;
    }
  }
}

// Stream follows GET /api/v1/events with fetch, so that the token goes in
// the Authorization header (EventSource cannot send one). It reconnects
// with Last-Event-ID, and reports its condition to onStatus: 'live', or
// 'down' with the reason.
class Stream {
  constructor(query, { onEvent, onStatus, fromStart = false }) {
    this.query = query;
    this.onEvent = onEvent;
    this.onStatus = onStatus || (() => {});
    this.last = fromStart ? '0' : null; // '0': every event the coordinator still keeps
    this.ctl = null;
    this.stopped = false;
    this.retry = 1000;
    this.run();
  }

  async run() {
    while (!this.stopped) {
      this.ctl = new AbortController();
      let reason;
      try {
        const hdr = authHeaders({ Accept: 'text/event-stream' });
        if (this.last !== null) hdr['Last-Event-ID'] = this.last;
        const res = await fetch(BASE + '/api/v1/events' + this.query, { headers: hdr, cache: 'no-store', credentials: 'omit', signal: this.ctl.signal });
        if (res.status === 401) {
          app.unauthorized(new APIError(401, null, 'the token was not accepted'));
          return;
        }
        if (!res.ok || !res.body) {
          let detail = `${res.status} ${res.statusText}`;
          try { const p = await res.json(); if (p && p.detail) detail = p.detail; } catch { /* not a problem document */ }
          throw new Error(detail);
        }
        this.retry = 1000;
        this.onStatus('live');
        await readSSE(res, (name, id, data) => {
          // A lagged event has no id (earlier coordinators gave it the
          // seq of the event it stood for, which was not sent): resume
          // after the last one that was.
          if (id && name !== 'lagged') this.last = id;
          let ev;
          try { ev = JSON.parse(data); } catch { return; }
          this.onEvent(ev);
        });
        reason = 'the coordinator ended the stream';
      } catch (e) {
        if (this.stopped) return;
        reason = e.name === 'TypeError' ? 'cannot reach the coordinator' : e.message;
      }
      if (this.stopped) return;
      this.onStatus('down', reason);
      await new Promise((r) => setTimeout(r, this.retry));
      this.retry = Math.min(this.retry * 2, 30000);
    }
  }

  stop() {
    this.stopped = true;
    if (this.ctl) this.ctl.abort();
  }
}

// ---- the model: transactions as the coordinator reported them ---------

// An entry is one transaction: rec is its record as GET returned it (null
// until fetched), state and reason the latest the coordinator reported
// (from the record or a later event), lastEv the event count at its last
// event, so that a fetch that started before that event is not taken as
// newer than it.
const model = {
  entries: new Map(),
  evCount: 0,
  dirty: new Set(),
  inflight: 0,
  started: [],      // times (ms) of transactions created, from the stream
  finished: [],     // [time, state] of final states reached, from the stream
  attempts: [],     // [time, failed] of participant calls, from the stream
  outcomes: {},     // final state -> count, since the page opened
  resolved: 0,
  missed: false,    // a gap or lag: the counts above are lower bounds

  entry(id) {
    let e = this.entries.get(id);
    if (!e) {
      e = { id, rec: null, state: null, reason: '', lastEv: 0, seen: Date.now(), fresh: true };
      this.entries.set(id, e);
    }
    return e;
  },

  // applyRecord takes a record fetched when the event count was at.
  applyRecord(rec, at) {
    const e = this.entry(rec.id);
    if (e.lastEv > at) {
      this.dirty.add(rec.id); // an event came since: read it again
      return e;
    }
    e.rec = rec;
    e.state = rec.state;
    e.reason = rec.reason || '';
    return e;
  },

  applyEvent(ev) {
    const t = Date.parse(ev.time) || Date.now();
    if (ev.type === 'state') {
      const e = this.entry(ev.transaction);
      e.lastEv = ++this.evCount;
      e.state = ev.state;
      e.reason = ev.reason || '';
      this.dirty.add(ev.transaction);
      if (ev.previous === '') this.started.push(t);
      if (FINAL.has(ev.state)) {
        if (ev.previous === 'heuristic') this.resolved++;
        else {
          this.finished.push([t, ev.state]);
          this.outcomes[ev.state] = (this.outcomes[ev.state] || 0) + 1;
        }
      }
    } else if (ev.type === 'attempt') {
      const e = this.entry(ev.transaction);
      e.lastEv = ++this.evCount;
      this.dirty.add(ev.transaction);
      const failed = !ev.status || ev.status >= 500 || (ev.error && ev.error !== '');
      this.attempts.push([t, failed]);
    }
  },

  trim() {
    const cut = Date.now() - WINDOW_MS;
    while (this.started.length && this.started[0] < cut) this.started.shift();
    while (this.finished.length && this.finished[0][0] < cut) this.finished.shift();
    while (this.attempts.length && this.attempts[0][0] < cut) this.attempts.shift();
    if (this.entries.size > MAX_ENTRIES) {
      // Forget the oldest finished transactions first.
      const old = [...this.entries.values()].filter((e) => FINAL.has(e.state))
        .sort((a, b) => created(a) - created(b));
      for (const e of old.slice(0, this.entries.size - MAX_ENTRIES)) this.entries.delete(e.id);
    }
  },
};

function created(e) {
  return e.rec ? Date.parse(e.rec.created_at) : e.seen;
}

// ---- the application --------------------------------------------------

const app = {
  role: null,          // 'open' (no authentication), 'admin' or 'client'
  mode: 'wait',        // 'live', 'poll' or 'down'
  stream: null,
  pollTimer: null,
  view: null,
  txView: null,        // the open transaction page
  queue: { heuristic: [], doubt: [], at: 0, error: null },
  filters: { state: '', age: '', search: '' },
  renderPending: false,
  soonTimer: null,
  streamWhy: '',       // why the event stream is down
  listing: false,      // a list read is under way
  listAgain: false,    // and another is wanted after it
  rows: new Map(),     // id -> the list's row, kept across redraws
  qnodes: new Map(),   // id -> the queue's item, kept across redraws

  async start() {
    for (const s of STATES) $('f-state').insertBefore(h('option', { value: s, text: s }), $('f-state').lastElementChild);
    $('login').addEventListener('submit', (ev) => { ev.preventDefault(); this.signIn($('token').value.trim()); });
    $('signout').addEventListener('click', () => this.signOut());
    $('filters').addEventListener('submit', (ev) => ev.preventDefault());
    $('f-state').addEventListener('change', () => { this.filters.state = $('f-state').value; this.loadList(); this.render(); });
    $('f-age').addEventListener('change', () => { this.filters.age = $('f-age').value; this.render(); });
    $('f-search').addEventListener('input', () => { this.filters.search = $('f-search').value.trim().toLowerCase(); this.render(); });
    window.addEventListener('hashchange', () => this.route());
    setInterval(() => this.tick(), 1000);
    await this.connect();
  },

  // connect finds out whether the coordinator wants a token and what the
  // token may do, then starts following it.
  async connect() {
    this.setConn('wait', 'connecting…');
    try {
      await api('GET', '/api/v1/transactions?limit=1');
      this.role = session.token ? 'admin' : 'open';
    } catch (e) {
      if (e.status === 401) return; // unauthorized() showed the sign-in
      if (e.status === 403) {
        this.role = 'client';
      } else {
        this.setConn('down', e.message);
        this.showBanner(`Cannot read the coordinator (${e.message}); trying again.`);
        setTimeout(() => this.connect(), 3000);
        return;
      }
    }
    this.hideBanner();
    $('who').textContent = { open: 'authentication off', admin: 'admin token', client: 'client token' }[this.role];
    $('signout').hidden = !session.token;
    this.follow();
    this.route();
  },

  async signIn(tok) {
    $('login-error').hidden = true;
    if (!tok) return;
    session.token = tok;
    $('token').value = '';
    await this.connect();
  },

  signOut() {
    session.token = '';
    location.hash = '#/';
    location.reload();
  },

  unauthorized(err) {
    const had = !!session.token;
    session.token = '';
    this.stopFollowing();
    this.role = null;
    $('who').textContent = '';
    $('signout').hidden = true;
    this.setConn('wait', 'signed out');
    this.showView('login');
    const msg = $('login-error');
    msg.textContent = had ? `The token was not accepted: ${err.message}` : '';
    msg.hidden = !had;
    $('token').focus();
  },

  // follow opens the event stream, and polls while it is down.
  follow() {
    this.stopFollowing();
    this.stream = new Stream('', {
      onEvent: (ev) => this.onEvent(ev),
      onStatus: (st, why) => {
        if (st === 'live') {
          this.setConn('live', 'live: event stream');
          this.stopPolling();
        } else {
          this.streamWhy = why;
          this.setConn('poll', this.pollText());
          this.startPolling();
        }
        this.render();
      },
    });
    this.loadList();
    this.loadQueue();
  },

  stopFollowing() {
    if (this.stream) this.stream.stop();
    this.stream = null;
    this.stopPolling();
    if (this.txView) this.txView.close();
  },

  startPolling() {
    if (this.pollTimer) return;
    this.pollTimer = setInterval(() => {
      this.loadList();
      if (this.txView) this.txView.refresh();
    }, POLL_MS);
  },

  stopPolling() {
    clearInterval(this.pollTimer);
    this.pollTimer = null;
  },

  onEvent(ev) {
    if (ev.type === 'gap' || ev.type === 'lagged') {
      // Some events were missed: read the records again.
      model.missed = true;
      this.loadList();
      return;
    }
    model.applyEvent(ev);
    this.soon();
    if (this.txView && this.txView.id === ev.transaction) this.txView.refresh();
    if (ev.type === 'state' && (ev.state === 'heuristic' || ev.previous === 'heuristic')) this.loadQueue();
    this.render();
  },

  // loadList reads the newest transactions (and, with a state filter, the
  // newest in that state). Listing needs the admin role.
  async loadList() {
    if (this.role === 'client') return;
    // One list read at a time; news meanwhile asks for one more, a moment
    // later, so that a busy coordinator is not read in a loop.
    if (this.listing) { this.listAgain = true; return; }
    this.listing = true;
    try {
      await this.readList();
    } finally {
      this.listing = false;
      if (this.listAgain) { this.listAgain = false; setTimeout(() => this.loadList(), 1000); }
    }
  },

  async readList() {
    const at = model.evCount;
    const paths = ['/api/v1/transactions?limit=' + LIST_LIMIT];
    const st = this.filters.state;
    if (st && st !== 'in_doubt') paths.push(`/api/v1/transactions?limit=${LIST_LIMIT}&state=${encodeURIComponent(st)}`);
    if (st === 'in_doubt') for (const d of DECIDED) paths.push(`/api/v1/transactions?limit=${LIST_LIMIT}&state=${d}`);
    try {
      for (const p of paths) {
        const list = await api('GET', p);
        for (const rec of list.transactions) model.applyRecord(rec, at).fresh = false;
      }
      if (this.mode === 'down') this.setConn('poll', this.pollText());
    } catch (e) {
      if (e.status === 0) this.setConn('down', 'cannot reach the coordinator; trying again');
    }
    this.render();
  },

  // soon reads the records with news shortly: a burst of events costs
  // one read per transaction.
  soon() {
    if (this.soonTimer) return;
    this.soonTimer = setTimeout(() => { this.soonTimer = null; this.refreshDirty(); }, 100);
  },

  // refreshDirty reads again the records of transactions with news.
  async refreshDirty() {
    if (model.dirty.size > 100 && this.role !== 'client') {
      model.dirty.clear();
      await this.loadList();
      return;
    }
    while (model.dirty.size && model.inflight < 4) {
      const id = model.dirty.values().next().value;
      model.dirty.delete(id);
      model.inflight++;
      const at = model.evCount;
      api('GET', '/api/v1/transactions/' + encodeURIComponent(id))
        .then((rec) => model.applyRecord(rec, at))
        .catch((e) => {
          // Gone (purged) or not this token's: it is not shown.
          if (e.status === 404) {
            const en = model.entries.get(id);
            if (en && en.lastEv <= at) model.entries.delete(id);
          }
        })
        .finally(() => { model.inflight--; this.render(); });
    }
  },

  async loadQueue() {
    if (this.role === 'client') {
      this.queue.error = 'The queue lists every transaction: it needs an admin token.';
      this.renderQueue();
      return;
    }
    try {
      const heur = await api('GET', `/api/v1/transactions?limit=${LIST_LIMIT}&state=heuristic`);
      const doubt = [];
      for (const d of DECIDED) {
        const list = await api('GET', `/api/v1/transactions?limit=${LIST_LIMIT}&state=${d}`);
        for (const rec of list.transactions) {
          if (rec.participants.some((p) => p.state === 'in_doubt')) doubt.push(rec);
        }
      }
      this.queue = { heuristic: heur.transactions, doubt, at: Date.now(), error: null, more: !!heur.next_cursor, flash: this.queue.flash };
    } catch (e) {
      if (e.status === 401) return;
      this.queue.error = `Cannot read the queue: ${e.message}`;
    }
    this.renderQueue();
  },

  tick() {
    model.trim();
    this.refreshDirty();
    const now = Date.now();
    if (this.role && this.role !== 'client' && now - this.queue.at > QUEUE_MS) {
      this.queue.at = now;
      this.loadQueue();
    }
    this.render();
  },

  pollText() {
    return `polling every ${POLL_MS / 1000} s (event stream unavailable: ${this.streamWhy})`;
  },

  setConn(mode, text) {
    this.mode = mode;
    const el = $('conn');
    el.className = 'conn-state conn-' + mode;
    el.textContent = text;
    el.dataset.mode = mode;
  },

  showBanner(text) { const b = $('banner'); b.textContent = text; b.hidden = false; },
  hideBanner() { $('banner').hidden = true; },

  showView(name) {
    for (const v of ['login', 'list', 'tx', 'queue']) $('view-' + v).hidden = v !== name;
    $('nav-list').classList.toggle('current', name === 'list' || name === 'tx');
    $('nav-queue').classList.toggle('current', name === 'queue');
    this.view = name;
  },

  route() {
    if (!this.role) return;
    const hash = location.hash || '#/';
    const m = hash.match(/^#\/tx\/(.+)$/);
    if (m) {
      const id = decodeURIComponent(m[1]);
      if (!this.txView || this.txView.id !== id) {
        if (this.txView) this.txView.close();
        this.txView = new TxView(id);
      }
      this.showView('tx');
      this.txView.render();
      return;
    }
    if (this.txView) { this.txView.close(); this.txView = null; }
    if (hash === '#/queue') {
      this.showView('queue');
      this.loadQueue();
      return;
    }
    this.showView('list');
    this.render();
  },

  // render redraws the current view, at most once a frame.
  render() {
    if (this.renderPending) return;
    this.renderPending = true;
    requestAnimationFrame(() => {
      this.renderPending = false;
      if (this.view === 'list') this.renderList();
      if (this.view === 'tx' && this.txView) this.txView.render();
      this.renderQueueCount();
    });
  },

  matches(e) {
    const f = this.filters;
    if (f.state === 'in_doubt') {
      if (!e.rec || !e.rec.participants.some((p) => p.state === 'in_doubt')) return false;
    } else if (f.state && e.state !== f.state) return false;
    if (f.age && Date.now() - created(e) > Number(f.age) * 1000) return false;
    if (f.search) {
      if (e.id.toLowerCase().includes(f.search)) return true;
      if (e.rec && e.rec.name && e.rec.name.toLowerCase().includes(f.search)) return true;
      return !!(e.rec && e.rec.participants.some((p) => hostOf(p.uri).toLowerCase().includes(f.search)));
    }
    return true;
  },

  renderStats() {
    const live = this.mode === 'live';
    const stat = (k, v, extra, cls) => h('div', { class: 'stat ' + (cls || '') }, h('div', { class: 'v', text: v }), h('div', { class: 'k', text: k }), extra);
    const perMin = (arr) => (live ? String(arr.length) : '—');
    const failed = model.attempts.filter((a) => a[1]).length;
    // Finished per 5 s over the last minute, as bars.
    const bars = h('div', { class: 'bars', title: 'transactions finished, per 5 s, over the last minute' });
    if (live) {
      const now = Date.now();
      const buckets = new Array(12).fill(0);
      for (const [t] of model.finished) {
        const i = 11 - Math.floor((now - t) / 5000);
        if (i >= 0 && i < 12) buckets[i]++;
      }
      const top = Math.max(1, ...buckets);
      for (const b of buckets) {
        const bar = h('span');
        bar.style.height = Math.round((b / top) * 100) + '%';
        bars.append(bar);
      }
    }
    // Counted from the stream's state events: without the stream there is
    // nothing to count, and no number is shown.
    const outcomes = h('div', { class: 'outcomes' });
    for (const s of ['confirmed', 'cancelled', 'compensated', 'heuristic']) {
      outcomes.append(h('span', { dataset: { outcome: s } }, h('span', { class: `badge s-${s}`, text: s }), ' ', live ? String(model.outcomes[s] || 0) : '—'));
    }
    if (live && model.resolved) outcomes.append(h('span', { text: `${model.resolved} resolved` }));
    if (live && model.missed) outcomes.append(h('span', { class: 'muted', text: '(some events were missed: at least these)' }));
    const byState = {};
    for (const e of model.entries.values()) if (e.state) byState[e.state] = (byState[e.state] || 0) + 1;
    const inFlight = DECIDED.concat(['active']).reduce((n, s) => n + (byState[s] || 0), 0);
    const note = live ? 'since this page opened' : 'needs the event stream';
    $('stats').replaceChildren(
      stat('started in the last minute', perMin(model.started)),
      stat('finished in the last minute', perMin(model.finished), bars),
      stat('participant calls in the last minute', live ? `${model.attempts.length}` : '—', h('div', { class: 'k', text: live ? `${failed} without a definite answer or refused` : '' })),
      stat(`outcomes ${note}`, '', outcomes, 'wide'),
      stat('unfinished, among those listed', String(inFlight)),
    );
  },

  renderList() {
    this.renderStats();
    const rows = [...model.entries.values()].filter((e) => e.state && this.matches(e))
      .sort((a, b) => created(b) - created(a) || (a.id < b.id ? 1 : -1));
    const shown = rows.slice(0, 500);
    // Rows are kept and changed in place, not rebuilt: a click or a
    // selection is not lost to a redraw.
    const want = shown.map((e) => this.row(e));
    const body = $('tx-rows');
    const have = body.children;
    if (have.length !== want.length || want.some((tr, i) => have[i] !== tr)) body.replaceChildren(...want);
    for (const id of this.rows.keys()) if (!model.entries.has(id)) this.rows.delete(id);
    $('list-empty').hidden = shown.length > 0;
    const parts = [];
    if (this.role === 'client') parts.push('A client token cannot list transactions: this list shows those it created, as the event stream reports them.');
    parts.push(`${rows.length} shown` + (rows.length > shown.length ? ' (the newest 500)' : '') + ` of ${model.entries.size} known to this page.`);
    setText($('list-note'), parts.join(' '));
  },

  // row returns the table row of an entry, rebuilt only when what it
  // shows changed; the times ("3 s ago") are updated in place.
  row(e) {
    const r = e.rec;
    const sig = `${e.state}|${e.reason}|${r ? r.updated_at + '|' + r.participants.map((p) => p.state).join(',') : ''}`;
    let c = this.rows.get(e.id);
    if (!c || c.sig !== sig) {
      let parts = h('span', { class: 'muted', text: '…' });
      if (r) {
        const counts = {};
        for (const p of r.participants) counts[p.state] = (counts[p.state] || 0) + 1;
        parts = h('span', {}, `${r.participants.length}`, r.participants.length ? ': ' : '',
          Object.entries(counts).map(([st, n], i) => [i ? ', ' : '', `${n} `, participantBadge(st)]));
      }
      const createdTd = h('td', { class: 'when', title: r ? fmtTime(r.created_at) : '' });
      const updatedTd = h('td', { class: 'when', title: r ? fmtTime(r.updated_at) : '' });
      const tr = h('tr', { dataset: { tx: e.id, state: e.state }, class: c ? '' : 'fresh' },
        h('td', { class: 'id' }, txLink(e.id)),
        h('td', { text: r ? (r.name || '') : '' }),
        h('td', {}, stateBadge(e.state, e.reason)),
        h('td', {}, parts),
        createdTd, updatedTd);
      c = { sig, tr, createdTd, updatedTd };
      this.rows.set(e.id, c);
    }
    if (r) {
      setText(c.createdTd, ago(r.created_at));
      setText(c.updatedTd, ago(r.updated_at));
    }
    return c.tr;
  },

  renderQueueCount() {
    const n = this.queue.heuristic.length + this.queue.doubt.length;
    const c = $('queue-count');
    c.textContent = String(n);
    c.hidden = n === 0;
  },

  renderQueue() {
    this.renderQueueCount();
    if (this.view !== 'queue') return;
    const q = this.queue;
    const note = [];
    if (q.flash) note.push(q.flash);
    note.push(q.error || (q.at ? `Read at ${fmtTime(new Date(q.at))}; read again every ${QUEUE_MS / 1000} s and on every heuristic outcome.` : 'Reading…'));
    setText($('queue-note'), note.join(' '));
    const fill = (el, recs, resolvable) => {
      const want = recs.length ? recs.map((rec) => this.queueItem(rec, resolvable)) : [h('p', { class: 'muted', text: 'None.' })];
      if (resolvable && q.more) want.push(h('p', { class: 'muted', text: `Only the newest ${LIST_LIMIT} are shown.` }));
      const have = el.children;
      if (have.length !== want.length || want.some((n, i) => have[i] !== n)) el.replaceChildren(...want);
    };
    fill($('queue-heuristic'), q.heuristic, true);
    fill($('queue-doubt'), q.doubt, false);
    const keep = new Set([...q.heuristic, ...q.doubt].map((r) => r.id));
    for (const id of this.qnodes.keys()) if (!keep.has(id)) this.qnodes.delete(id);
  },

  // queueItem returns the queue's item for a record, kept while the
  // record is unchanged: a resolution being typed survives a refresh.
  queueItem(rec, resolvable) {
    const sig = `${resolvable}|${rec.updated_at}|${rec.state}|${rec.participants.map((p) => p.state).join(',')}`;
    const c = this.qnodes.get(rec.id);
    if (c && c.sig === sig) return c.node;
    const node = h('div', { class: 'qitem', dataset: { queueTx: rec.id } },
      h('div', { class: 'head' }, txLink(rec.id), rec.name ? h('span', { text: rec.name }) : null, stateBadge(rec.state, rec.reason),
        h('span', { class: 'muted', text: rec.finished_at ? `finished ${fmtTime(rec.finished_at)}` : `updated ${fmtTime(rec.updated_at)}` })),
      h('ul', {}, rec.participants.map((p) => h('li', {}, h('span', { class: 'uri', text: p.uri }), ' ', participantBadge(p.state),
        p.last_error ? h('span', { class: 'muted', text: ` — ${p.last_error}` }) : null))),
      resolvable ? resolveForm(rec, (out) => {
        this.queue.flash = `Recorded: ${out.id} is now ${out.state} (${out.reason}${out.resolved_by ? ', by ' + out.resolved_by : ''}).`;
        this.loadQueue();
      }) : null);
    this.qnodes.set(rec.id, { sig, node });
    return node;
  },
};

// resolveForm is the admin's resolution of a heuristic transaction: the
// operator settled the participants by hand and records how it ended (PUT
// /api/v1/transactions/{id}/resolve). Nothing is sent to the participants.
function resolveForm(rec, done) {
  const box = h('div', { class: 'resolve-box' });
  const open = h('button', { type: 'button', class: 'resolve-open danger', text: 'Resolve…' });
  const result = h('p', { class: 'resolve-result', hidden: true });
  const form = h('form', { class: 'resolve', hidden: true });
  const name = 'resolve-state-' + rec.id;
  const err = h('p', { class: 'error resolve-error', hidden: true });
  const note = h('input', { class: 'resolve-note', type: 'text', maxlength: 1024, placeholder: 'what you did, e.g. "refunded the hotel by hand, ticket 4711"' });
  const submit = h('button', { type: 'submit', class: 'resolve-submit danger', text: 'Record resolution' });
  form.append(
    h('p', { text: 'Resolving records how you settled the participants by hand. tccd sends nothing to them: it records your word, with your token\'s name and the note. Settle the participants first.' }),
    h('div', { class: 'row' },
      h('label', {}, h('input', { type: 'radio', name, value: 'confirmed', required: true }), ' confirmed — every participant now holds its confirmed reservation'),
      h('label', {}, h('input', { type: 'radio', name, value: 'cancelled' }), ' cancelled — every participant was released or undone')),
    h('div', { class: 'row' }, note, submit, h('button', { type: 'button', text: 'Back', onclick: () => { form.hidden = true; open.hidden = false; } })),
    err);
  open.addEventListener('click', () => { form.hidden = false; open.hidden = true; });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const picked = form.querySelector(`input[name="${CSS.escape(name)}"]:checked`);
    if (!picked) return;
    submit.disabled = true;
    err.hidden = true;
    try {
      const body = { state: picked.value };
      if (note.value.trim()) body.note = note.value.trim();
      const out = await api('PUT', `/api/v1/transactions/${encodeURIComponent(rec.id)}/resolve`, body);
      model.applyRecord(out, model.evCount);
      form.hidden = true;
      result.hidden = false;
      result.replaceChildren('Recorded: the coordinator now reports ', stateBadge(out.state, out.reason),
        out.resolved_by ? ` by ${out.resolved_by}` : '', '.');
      if (done) done(out);
    } catch (e) {
      err.textContent = e.status === 403 ? 'Resolving needs an admin token.' : `The coordinator refused: ${e.message}`;
      err.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  box.append(open, form, result);
  return box;
}

// TxView is a transaction's page: its record, its participants, and every
// event the coordinator still keeps of it on a timeline (a stream from
// Last-Event-ID 0, filtered to it).
class TxView {
  constructor(id) {
    this.id = id;
    this.rec = null;
    this.error = null;
    this.events = new Map(); // seq -> event
    this.gap = false;
    this.streamState = 'connecting';
    this.streamWhy = '';
    this.fetching = false;
    this.again = false;
    this.resolveBox = null;
    this.stream = new Stream('?transaction=' + encodeURIComponent(id), {
      fromStart: true,
      onEvent: (ev) => {
        if (ev.type === 'gap') this.gap = true;
        else if (ev.type === 'state' || ev.type === 'attempt') this.events.set(ev.seq, ev);
        this.refresh();
      },
      onStatus: (st, why) => { this.streamState = st; this.streamWhy = why || ''; app.render(); },
    });
    this.refresh();
  }

  close() { this.stream.stop(); }

  // refresh reads the record again; one read at a time, one more if news
  // came meanwhile.
  async refresh() {
    if (this.fetching) { this.again = true; return; }
    this.fetching = true;
    try {
      const at = model.evCount;
      this.rec = await api('GET', '/api/v1/transactions/' + encodeURIComponent(this.id));
      this.error = null;
      model.applyRecord(this.rec, at);
    } catch (e) {
      this.error = e.status === 404 ? 'No such transaction (or it is not this token\'s, or it was purged after its retention).' : e.message;
    } finally {
      this.fetching = false;
      app.render();
      if (this.again) { this.again = false; this.refresh(); }
    }
  }

  // render redraws the page when what it shows changed, part by part:
  // the resolution form is kept while the transaction is heuristic, so a
  // note being typed survives news.
  render() {
    const r = this.rec;
    const sig = [r && r.updated_at, r && r.state, this.error, this.events.size, this.gap, this.streamState].join('|');
    if (sig === this.sig) return;
    this.sig = sig;
    if (!this.els) {
      this.els = {};
      for (const k of ['head', 'resolve', 'error', 'facts', 'participants', 'timeline']) this.els[k] = h('div');
      $('view-tx').replaceChildren(h('p', {}, h('a', { href: '#/', text: '← all transactions' })), ...Object.values(this.els));
    }
    const els = this.els;
    if (!r) {
      els.head.replaceChildren(this.error ? h('p', { class: 'error', text: this.error }) : h('p', { class: 'muted', text: 'Reading…' }));
      return;
    }
    els.head.replaceChildren(h('div', { class: 'card head' }, h('h1', { class: 'mono', text: r.id }), stateBadge(r.state, r.reason),
      r.name ? h('span', { text: r.name }) : null));
    const box = els.resolve.firstChild;
    if (r.state === 'heuristic' && !box) {
      els.resolve.append(h('div', { class: 'card' },
        h('strong', { text: 'Heuristic outcome: ' }),
        'the participants did not all end the same way (see their states below). An operator settles them by hand, then records it here.',
        resolveForm(r, (out) => { this.rec = out; model.applyRecord(out, model.evCount); app.render(); })));
    } else if (r.state !== 'heuristic' && box && !box.querySelector('.resolve-result:not([hidden])')) {
      els.resolve.replaceChildren(); // resolved elsewhere meanwhile
    }
    els.error.replaceChildren(this.error ? h('p', { class: 'error', text: `Could not read it again: ${this.error}` }) : '');
    els.facts.replaceChildren(this.facts(r));
    els.participants.replaceChildren(this.participants(r));
    els.timeline.replaceChildren(this.timeline(r));
  }

  facts(r) {
    const rows = [
      ['protocol', r.protocol],
      ['created', r.created_at && `${fmtTime(r.created_at)}${r.created_by ? ' by ' + r.created_by : ''}`],
      ['timeout', r.timeout && `${r.timeout}${r.deadline ? ' (deadline ' + fmtTime(r.deadline) + ')' : ''}`],
      ['decided', fmtTime(r.decided_at)],
      ['finished', fmtTime(r.finished_at)],
      ['updated', fmtTime(r.updated_at)],
      ['resolved', r.resolved_by && `by ${r.resolved_by}${r.resolution_note ? ': ' + r.resolution_note : ''}`],
      ['labels', r.labels && Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(', ')],
      ['barrier', r.barrier && (r.round ? `round ${r.round.n}${r.round.committed ? ', committed' : ''}` : 'yes')],
      ['notify', r.notify && `${r.notify}${r.notification ? ` — ${r.notification.state}, ${r.notification.attempts} attempts` : ''}`],
    ].filter(([, v]) => v);
    return h('div', { class: 'card' }, h('dl', { class: 'facts' }, rows.map(([k, v]) => [h('dt', { text: k }), h('dd', { text: v })])));
  }

  participants(r) {
    const rows = r.participants.map((p) => h('tr', { dataset: { participant: p.uri, pstate: p.state } },
      h('td', { class: 'uri' }, p.uri, p.style && p.style !== 'tcc' ? h('div', { class: 'muted', text: `style ${p.style}${p.subject ? ', subject ' + p.subject : ''}` }) : null),
      h('td', {}, participantBadge(p.state), p.state === 'in_doubt' ? h('div', { class: 'explain', text: PARTICIPANT_EXPLAIN.in_doubt }) : null),
      h('td', { text: String(p.attempts) }),
      h('td', { text: p.last_status ? String(p.last_status) : (p.attempts ? 'no answer' : '') }),
      h('td', { text: p.last_error || '' }),
      h('td', { class: 'when', text: p.last_attempt_at ? `${fmtTime(p.last_attempt_at)}${p.last_duration_ms != null ? ` (${p.last_duration_ms.toFixed(1)} ms)` : ''}` : '' }),
      h('td', { class: 'when', text: fmtTime(p.expires) })));
    const resolved = r.reason === 'resolved'
      ? h('p', { class: 'muted', text: 'As the coordinator last saw them: a resolution is the operator\'s word, and nothing was sent to the participants.' }) : null;
    return h('div', { class: 'card' }, h('h2', { text: `Participants (${r.participants.length})` }), resolved,
      r.participants.length ? h('table', { class: 'participants' },
        h('thead', {}, h('tr', {}, ['URI', 'State', 'Attempts', 'Last status', 'Last error', 'Last attempt', 'Link expires'].map((t) => h('th', { text: t })))),
        h('tbody', {}, rows)) : h('p', { class: 'muted', text: 'None enlisted yet.' }));
  }

  timeline(r) {
    const evs = [...this.events.values()].sort((a, b) => a.seq - b.seq);
    const items = [];
    if (this.gap) {
      items.push(h('li', { class: 'ev-gap' }, 'Earlier events are no longer kept by the coordinator (its event ring has moved on): the timeline starts later. The participants\' attempt counts above are the record\'s.'));
    }
    const t0 = evs.length ? Date.parse(evs[0].time) : 0;
    for (const ev of evs) {
      const when = h('span', { class: 't', title: fmtTime(ev.time), text: `${fmtTime(ev.time)} (+${((Date.parse(ev.time) - t0) / 1000).toFixed(3)} s)` });
      if (ev.type === 'state') {
        items.push(h('li', { class: 'ev-state', dataset: { seq: ev.seq } }, when, 'state ',
          ev.previous ? [h('span', { class: `badge s-${ev.previous}`, text: ev.previous }), ' → '] : 'created ',
          stateBadge(ev.state, ev.reason)));
      } else {
        const failed = !ev.status || ev.status >= 400;
        items.push(h('li', { class: failed ? 'ev-attempt ev-fail' : 'ev-attempt', dataset: { seq: ev.seq, attempt: ev.attempt, phase: ev.phase } }, when,
          `${ev.phase} attempt ${ev.attempt} to `, h('span', { class: 'uri', text: ev.participant }), ' → ',
          h('strong', { text: ev.status ? String(ev.status) : 'no answer' }),
          ev.error ? h('span', { class: 'muted', text: ` (${ev.error})` }) : null,
          ev.next_retry ? h('span', { class: 'muted', text: `; next try at ${fmtTime(ev.next_retry)}` }) : null));
      }
    }
    let note;
    if (this.streamState === 'down') note = `The event stream of this transaction is unavailable (${this.streamWhy}): the timeline shows what came before it went; the record above is read again on news.`;
    else if (!evs.length && !this.gap) note = 'No event of it is kept by the coordinator (it may come from before the coordinator\'s last start).';
    return h('div', { class: 'card' }, h('h2', { text: 'Timeline' }),
      h('p', { class: 'muted', text: 'Every state change and participant call the coordinator still keeps an event of (its event ring), live; each at the time the coordinator wrote it.' }),
      note ? h('p', { class: 'muted', text: note }) : null,
      h('ol', { class: 'timeline' }, items));
  }
}

app.start();
