// adagg live dashboard: a live top-N table over the /v1/ws/popular_ads WebSocket (protocol in
// src/gateway/ws-protocol.ts) with each ad's invalid share, and a per-minute chart of one ad polled
// from the REST API.
import { createMinuteChart, fmtInt, fmtTime } from './chart.js';
import { createInvalidShares } from './invalid-share.js';

const COUNTS = ['10', '25', '50'];
const WINDOWS = ['1', '5', '60'];
const COUNTRIES = ['', 'US', 'DE', 'FR', 'GB', 'JP', 'BR', 'IN', 'CA'];
const AD_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
const CHART_MINUTES = 60;
const CHART_POLL_MS = 2000;
const PING_MS = 25_000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15_000;

const $ = (sel) => {
  const node = document.querySelector(sel);
  if (!node) throw new Error(`dashboard: missing ${sel}`);
  return node;
};

const ui = {
  status: $('#status'),
  count: $('#count-select'),
  window: $('#window-select'),
  country: $('#country-select'),
  kind: $('#ranking-kind'),
  range: $('#ranking-range'),
  updated: $('#ranking-updated'),
  topnError: $('#topn-error'),
  tableWrap: $('#topn-table').parentElement,
  tbody: $('#topn-table tbody'),
  empty: $('#topn-empty'),
  adForm: $('#ad-form'),
  adInput: $('#ad-input'),
  chartTitle: $('#chart-title'),
  chartTotal: $('#chart-total'),
  chartCurrent: $('#chart-current'),
  chartWatermark: $('#chart-watermark'),
  chartError: $('#chart-error'),
  chart: createMinuteChart($('#chart')),
};

// ---------------------------------------------------------------------------------------------
// The bearer token: `npm start` prints a URL carrying it in the fragment (#token=…, never sent to
// the server). It moves to sessionStorage (this tab only) and out of the address bar at once.

const TOKEN_KEY = 'adagg.token';
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.has('token')) {
  sessionStorage.setItem(TOKEN_KEY, fragment.get('token') ?? '');
  history.replaceState(null, '', location.pathname + location.search);
}
const token = () => sessionStorage.getItem(TOKEN_KEY) || '';
const authHeaders = () => (token() ? { authorization: `Bearer ${token()}` } : {});
/** WebSocket subprotocols: browsers cannot set headers on a socket, so the token rides here. */
const wsProtocols = () => (token() ? ['adagg', `bearer.${token()}`] : []);
const NO_TOKEN_HELP = 'This gateway needs a token: open the dashboard URL that `npm start` printed (…/#token=…).';

// ---------------------------------------------------------------------------------------------
// State, kept in the page URL (?count=&window=&country=&ad=) so a reload keeps the view.

const params = new URLSearchParams(location.search);
const pick = (v, allowed, def) => (v !== null && allowed.includes(v) ? v : def);
const state = {
  count: pick(params.get('count'), COUNTS, '10'),
  window: pick(params.get('window'), WINDOWS, '5'),
  country: pick((params.get('country') ?? '').toUpperCase(), COUNTRIES, ''),
  ad: AD_ID.test(params.get('ad') ?? '') ? params.get('ad') : '',
  /** The user chose an ad (or cleared the box): stop auto-selecting the top ad. */
  adChosen: params.has('ad'),
};
ui.count.value = state.count;
ui.window.value = state.window;
ui.country.value = state.country;
ui.adInput.value = state.ad;

function saveUrl() {
  const p = new URLSearchParams();
  if (state.count !== '10') p.set('count', state.count);
  if (state.window !== '5') p.set('window', state.window);
  if (state.country) p.set('country', state.country);
  if (state.ad && state.adChosen) p.set('ad', state.ad);
  const qs = p.toString();
  history.replaceState(null, '', qs ? `?${qs}` : location.pathname);
}

const subscription = () => ({
  count: Number(state.count),
  window: Number(state.window),
  filter: state.country ? { country: state.country } : null,
});
const subKey = (s) => JSON.stringify([s.count, s.window, s.filter?.country ?? null]);

function setStatus(kind, text) {
  ui.status.className = `status status-${kind}`;
  ui.status.textContent = text;
}

function showError(node, text) {
  node.textContent = text ?? '';
  node.hidden = !text;
}

// ---------------------------------------------------------------------------------------------
// WebSocket: one socket, re-subscribed in place; reconnects with jittered exponential backoff.

let ws = null;
let openedWith = ''; // subKey of the URL the current socket was opened with
let pending = 0; // `subscribe`s (incl. the implicit one on connect) not yet answered
let attempt = 0;
let retryTimer = 0;
let pingTimer = 0;

function connect() {
  clearTimeout(retryTimer);
  retryTimer = 0;
  const sub = subscription();
  const url = new URL('/v1/ws/popular_ads', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.searchParams.set('count', String(sub.count));
  url.searchParams.set('window', String(sub.window));
  if (sub.filter) url.searchParams.set('country', sub.filter.country);
  setStatus('connecting', attempt === 0 ? 'connecting…' : `reconnecting (attempt ${attempt + 1})…`);

  const sock = new WebSocket(url, wsProtocols());
  ws = sock;
  openedWith = subKey(sub);
  pending = 1; // the server answers the connect parameters with `subscribed`
  markStale(true);

  let opened = false;
  sock.addEventListener('open', () => {
    if (sock !== ws) return;
    opened = true;
    setStatus('live', 'live');
    // The controls changed while the socket was still connecting.
    if (subKey(subscription()) !== openedWith) sendSubscribe();
    clearInterval(pingTimer);
    pingTimer = setInterval(() => send({ type: 'ping' }), PING_MS);
  });
  sock.addEventListener('message', (ev) => {
    if (sock !== ws) return;
    let frame;
    try {
      frame = JSON.parse(ev.data);
    } catch {
      return;
    }
    onFrame(frame);
  });
  sock.addEventListener('close', (ev) => {
    if (sock !== ws) return;
    ws = null;
    clearInterval(pingTimer);
    if (ev.code === 1008 && ev.reason) showError(ui.topnError, ev.reason);
    // A refused upgrade only shows as 1006: ask the REST API whether the token is the reason.
    else if (ev.code === 1006 && !opened) void explainRefusal();
    scheduleReconnect();
  });
  // An 'error' is always followed by 'close', which does the work.
}

async function explainRefusal() {
  const res = await fetch('/v1/status', { cache: 'no-store', headers: authHeaders() }).catch(() => null);
  if (res?.status === 401) showError(ui.topnError, NO_TOKEN_HELP);
  else if (res?.status === 403) showError(ui.topnError, 'This token may not read rankings (it needs the read scope).');
}

function scheduleReconnect() {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
  const delay = Math.round(base * (0.75 + Math.random() * 0.5));
  attempt++;
  setStatus('down', `disconnected, retrying in ${Math.max(1, Math.round(delay / 1000))} s`);
  markStale(true);
  retryTimer = setTimeout(connect, delay);
}

function send(frame) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
}

function sendSubscribe() {
  if (!ws || ws.readyState !== WebSocket.OPEN) return; // sent on 'open', or used on reconnect
  pending++;
  markStale(true);
  send({ type: 'subscribe', ...subscription() });
}

/** The subscription last confirmed by the server (to restore the controls after a refused one). */
let confirmed = null;

function onFrame(frame) {
  switch (frame.type) {
    case 'subscribed':
      pending = Math.max(0, pending - 1);
      shownTo = -Infinity;
      attempt = 0;
      confirmed = frame;
      showError(ui.topnError, '');
      break;
    case 'error':
      pending = Math.max(0, pending - 1);
      showError(ui.topnError, `${frame.code}: ${frame.error}`);
      if (confirmed && pending === 0) restoreControls(confirmed);
      break;
    case 'ranking':
      // Rankings of a superseded subscription may still arrive before its `subscribed` answer.
      if (pending > 0) break;
      // The final ranking of a just-closed minute ends before the provisional one already shown
      // (which ends with the open minute): never step the table back to an older window.
      if (Date.parse(frame.to) < shownTo) {
        lastFinal = frame;
        ui.kind.title = kindTitle(false);
        break;
      }
      renderRanking(frame);
      break;
    default:
      break; // pong
  }
}

function restoreControls(sub) {
  state.count = pick(String(sub.count), COUNTS, state.count);
  state.window = pick(String(sub.window), WINDOWS, state.window);
  state.country = pick(sub.filter?.country ?? '', COUNTRIES, state.country);
  ui.count.value = state.count;
  ui.window.value = state.window;
  ui.country.value = state.country;
  saveUrl();
  markStale(false);
}

for (const [key, select] of [['count', ui.count], ['window', ui.window], ['country', ui.country]]) {
  select.addEventListener('change', () => {
    state[key] = select.value;
    saveUrl();
    if (ws && ws.readyState === WebSocket.OPEN) sendSubscribe();
    else if (!ws) connect(); // waiting to reconnect: go now with the new settings
  });
}
addEventListener('online', () => {
  if (!ws) {
    attempt = 0;
    connect();
  }
});

// ---------------------------------------------------------------------------------------------
// The top-N table.

/** Each listed ad's invalid share over the ranking's window (invalid-share.js). */
const invalidShares = createInvalidShares({
  authHeaders,
  onUpdate: () => {
    for (const tr of ui.tbody.querySelectorAll('tr[data-ad-id]')) {
      const td = tr.querySelector('td.invalid');
      if (td) invalidShares.cell(td, tr.dataset.adId);
    }
  },
});

let lastCounts = new Map();
/** End (ms) of the window shown in the table; the newest final ranking when it ends earlier. */
let shownTo = -Infinity;
let lastFinal = null;

function kindTitle(final) {
  if (final) return 'Every minute of this window is closed: these counts are final';
  const last = lastFinal ? ` Last final window: ${fmtTime(lastFinal.from)} – ${fmtTime(lastFinal.to)}, top ad ${lastFinal.ads[0]?.ad_id ?? 'none'}.` : '';
  return `The window includes the open minute: counts still grow.${last}`;
}

function markStale(stale) {
  ui.tableWrap.classList.toggle('stale', stale);
}

function renderRanking(r) {
  markStale(false);
  shownTo = Date.parse(r.to);
  if (r.final) lastFinal = r;
  ui.kind.textContent = r.final ? 'final' : 'provisional';
  ui.kind.className = `kind ${r.final ? 'kind-final' : 'kind-provisional'}`;
  ui.kind.title = kindTitle(r.final);

  const country = r.filter?.country;
  ui.range.textContent = `${fmtTime(r.from)} – ${fmtTime(r.to)}${country ? ` · ${country}` : ''}`;
  ui.range.title = `[${r.from}, ${r.to})`;
  ui.updated.textContent = fmtTime(Date.now(), true);
  ui.updated.title = `computed by the server at ${r.at}`;

  const ads = Array.isArray(r.ads) ? r.ads : [];
  const max = ads.reduce((m, a) => Math.max(m, a.count), 0) || 1;
  const counts = new Map();
  const rows = ads.map((a, i) => {
    counts.set(a.ad_id, a.count);
    const tr = document.createElement('tr');
    tr.dataset.adId = a.ad_id;
    tr.dataset.count = String(a.count);
    if (a.ad_id === state.ad) tr.classList.add('selected');
    const prev = lastCounts.get(a.ad_id);
    if (prev !== undefined && prev !== a.count) tr.classList.add('changed');

    const rank = document.createElement('td');
    rank.className = 'num rank';
    rank.textContent = String(i + 1);

    const ad = document.createElement('td');
    ad.className = 'ad';
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'ad-link';
    btn.textContent = a.ad_id;
    btn.title = `Chart ${a.ad_id}`;
    btn.setAttribute('aria-pressed', String(a.ad_id === state.ad));
    ad.appendChild(btn);

    const count = document.createElement('td');
    count.className = 'num count';
    count.textContent = fmtInt(a.count);

    const invalid = document.createElement('td');
    invalid.className = 'num invalid';
    invalidShares.cell(invalid, a.ad_id);

    const barCell = document.createElement('td');
    barCell.className = 'bar-col';
    const bar = document.createElement('div');
    bar.className = 'share-bar';
    const fill = document.createElement('span');
    fill.className = 'share-fill';
    fill.style.width = `${((a.count / max) * 100).toFixed(1)}%`;
    bar.appendChild(fill);
    barCell.appendChild(bar);

    tr.append(rank, ad, count, invalid, barCell);
    return tr;
  });
  lastCounts = counts;
  ui.tbody.replaceChildren(...rows);
  ui.empty.textContent = 'No clicks in this window yet.';
  ui.empty.hidden = rows.length > 0;
  invalidShares.track(ads.map((a) => a.ad_id), r.from, r.to, country);

  if (!state.adChosen && !state.ad && ads[0]) selectAd(ads[0].ad_id, { chosen: false });
}

ui.tbody.addEventListener('click', (ev) => {
  const tr = ev.target instanceof Element ? ev.target.closest('tr[data-ad-id]') : null;
  if (tr) selectAd(tr.dataset.adId, { chosen: true });
});

function highlightSelected() {
  for (const tr of ui.tbody.querySelectorAll('tr[data-ad-id]')) {
    const on = tr.dataset.adId === state.ad;
    tr.classList.toggle('selected', on);
    tr.querySelector('.ad-link')?.setAttribute('aria-pressed', String(on));
  }
}

// ---------------------------------------------------------------------------------------------
// The per-minute chart of the selected ad: REST, re-fetched every 2 s.

let pollTimer = 0;
let inflight = null;

function selectAd(adId, { chosen, fromInput = false }) {
  if (chosen) state.adChosen = true;
  state.ad = adId;
  if (!fromInput) ui.adInput.value = adId;
  saveUrl();
  highlightSelected();
  restartPolling();
}

function restartPolling({ keep = false } = {}) {
  clearTimeout(pollTimer);
  inflight?.abort();
  inflight = null;
  const ad = state.ad;
  if (!ad) {
    ui.chartTitle.textContent = 'Clicks per minute';
    setChartMeta(null);
    showError(ui.chartError, '');
    ui.chart.clear('Select an ad in the table or type its id.');
    return;
  }
  ui.chartTitle.textContent = `Clicks per minute · ${ad}`;
  if (!AD_ID.test(ad)) {
    setChartMeta(null);
    showError(ui.chartError, 'An ad id is 1–128 characters of A–Z, a–z, 0–9, “_”, “.”, “:” or “-”.');
    ui.chart.clear('');
    return;
  }
  if (!keep) {
    showError(ui.chartError, '');
    ui.chart.clear('Loading…');
  }
  void poll(ad);
}

async function poll(ad) {
  const ctl = new AbortController();
  inflight = ctl;
  try {
    if (!document.hidden) await refreshChart(ad, ctl.signal);
  } catch (err) {
    if (ctl.signal.aborted) return;
    showError(ui.chartError, `Could not load counts: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (ctl.signal.aborted || state.ad !== ad) return;
  inflight = null;
  pollTimer = setTimeout(() => void poll(ad), CHART_POLL_MS);
}

async function refreshChart(ad, signal) {
  // The last 60 minutes including the open one: `to` is the start of the next minute.
  const to = Math.floor(Date.now() / 60_000) * 60_000 + 60_000;
  const from = to - CHART_MINUTES * 60_000;
  const res = await fetch(`/v1/ads/${encodeURIComponent(ad)}/aggregated_count?from=${from}&to=${to}`, { signal, cache: 'no-store', headers: authHeaders() });
  const body = await res.json().catch(() => null);
  if (signal.aborted || state.ad !== ad) return;
  if (res.status === 401) {
    showError(ui.chartError, `${body?.code ?? 'HTTP 401'}: ${NO_TOKEN_HELP}`);
    return;
  }
  if (!res.ok || !body) {
    showError(ui.chartError, body?.error ? `${body.code}: ${body.error}` : `HTTP ${res.status}`);
    return;
  }
  showError(ui.chartError, '');
  const minutes = (body.minutes ?? []).map((m) => ({ start: Date.parse(m.minute), count: Number(m.count) || 0, final: m.final === true }));
  setChartMeta(body, minutes);
  ui.chart.update({ adId: ad, minutes });
}

function setChartMeta(body, minutes = []) {
  if (!body) {
    ui.chartTotal.textContent = ui.chartCurrent.textContent = ui.chartWatermark.textContent = '—';
    return;
  }
  ui.chartTotal.textContent = `${fmtInt(body.count)} clicks`;
  const current = minutes.at(-1);
  ui.chartCurrent.textContent = current ? `${fmtInt(current.count)}${current.final ? '' : ' so far'}` : '—';
  ui.chartWatermark.textContent = body.watermark ? fmtTime(body.watermark, true) : 'none yet';
  ui.chartWatermark.title = body.watermark ? `event time up to which every shard has seen all clicks: ${body.watermark}` : '';
}

let typing = 0;
ui.adInput.addEventListener('input', () => {
  clearTimeout(typing);
  typing = setTimeout(() => selectAd(ui.adInput.value.trim(), { chosen: true, fromInput: true }), 350);
});
ui.adForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  clearTimeout(typing);
  selectAd(ui.adInput.value.trim(), { chosen: true, fromInput: true });
});
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && state.ad) restartPolling({ keep: true });
});

// ---------------------------------------------------------------------------------------------

connect();
restartPolling();
