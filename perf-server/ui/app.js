// perf console: one page, views by hash (#/tests, #/tests/<id>, #/compare,
// #/system, #/scaling, #/recommendations). Everything it shows comes from
// this server's API; text from the server is always set as text, never as
// markup.
'use strict';

// ---------------------------------------------------------------- helpers

/** An element with attributes and children (strings become text nodes). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const view = () => document.getElementById('view');
const num = (v, digits = 2) => (v === null || v === undefined || Number.isNaN(v)) ? '–'
  : Number(v).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
const ms = (v) => v === null || v === undefined ? '–' : `${num(v, v < 10 ? 3 : 1)} ms`;
const rate = (v) => v === null || v === undefined ? '–' : `${num(v, 1)} req/s`;
const pct = (ratio) => ratio === null || ratio === undefined ? '–' : `${num(ratio * 100, 3)} %`;
const bytes = (v) => {
  if (v === null || v === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0; let x = Number(v);
  while (Math.abs(x) >= 1024 && i < units.length - 1) { x /= 1024; i += 1; }
  return `${num(x, i ? 1 : 0)} ${units[i]}`;
};
const seconds = (v) => v === null || v === undefined ? '–' : `${num(v, 1)} s`;

/** A time in the viewer's locale, UTC on hover. */
function when(ms) {
  if (!ms) return '–';
  const d = new Date(ms);
  return h('time', { datetime: d.toISOString(), title: `${d.toISOString().replace('T', ' ').slice(0, 19)} UTC` },
    d.toLocaleString());
}

function statusBadge(status) {
  return h('span', { class: `status ${status}` }, status);
}

function tile(label, value, id) {
  return h('div', { class: 'tile' }, h('div', { class: 'label' }, label),
    h('div', { class: 'value', id, 'aria-live': id ? 'polite' : null }, value));
}

function table(headers, rows, caption) {
  return h('div', { class: 'table-wrap' }, h('table', {},
    caption ? h('caption', { class: 'hint' }, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label || c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((cell, i) => h('td', { class: headers[i] && headers[i].num ? 'num' : null }, cell)))))));
}

function notice(text) {
  const n = document.getElementById('notice');
  n.textContent = text || '';
}

// ---------------------------------------------------------------- the API

const TOKEN_KEY = 'perf-api-token';

/** Asks for the API token; true when one was given. */
function askToken() {
  const dialog = document.getElementById('token-dialog');
  const input = document.getElementById('token-input');
  input.value = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      if (dialog.returnValue === 'save' && input.value) {
        sessionStorage.setItem(TOKEN_KEY, input.value);
        resolve(true);
      } else {
        if (dialog.returnValue === 'forget') sessionStorage.removeItem(TOKEN_KEY);
        resolve(false);
      }
    }, { once: true });
    dialog.showModal();
    input.focus();
  });
}

/** Calls the API; a 401 asks for the token once and retries. */
async function api(path, { method = 'GET', body, retried = false } = {}) {
  const headers = { Accept: 'application/json' };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    return { status: 0, ok: false, data: { error: { message: `the server did not answer: ${e.message}` } } };
  }
  if (res.status === 401 && !retried && await askToken()) {
    return api(path, { method, body, retried: true });
  }
  const type = res.headers.get('content-type') || '';
  const data = type.includes('json') ? await res.json().catch(() => null) : await res.text();
  return { status: res.status, ok: res.ok, data };
}

/** The error of an answer as {field, message}. */
function errorOf(answer) {
  const e = answer.data && answer.data.error;
  if (e) return { field: e.field || '', message: e.message || `HTTP ${answer.status}` };
  return { field: '', message: `HTTP ${answer.status}` };
}

/** Shows an answer's error next to its field in `form`, or in `box`. */
function showFieldError(form, box, answer) {
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
  box.textContent = '';
  const { field, message } = errorOf(answer);
  // `requests[0].path` belongs to the `requests` input, `test_limits.max_users` to `users`...
  const root = field.split(/[.[]/)[0];
  const input = form.querySelector(`[data-field="${CSS.escape(root)}"]`);
  if (input) {
    input.setAttribute('aria-invalid', 'true');
    const slot = document.getElementById(`${input.id}-error`);
    if (slot) slot.textContent = message;
    input.focus();
  } else {
    box.append(h('div', { class: 'error-box', role: 'alert' }, field ? `${field}: ${message}` : message));
  }
}

function field(id, labelText, input, hint) {
  input.id = id;
  input.setAttribute('aria-describedby', `${id}-error${hint ? ` ${id}-hint` : ''}`);
  return h('div', {},
    h('label', { for: id }, labelText), input,
    hint ? h('div', { class: 'hint', id: `${id}-hint` }, hint) : null,
    h('div', { class: 'field-error', id: `${id}-error`, role: 'alert' }));
}

// ---------------------------------------------------------------- charts

const PALETTE = ['#0969da', '#cf222e', '#1a7f37', '#9a6700', '#8250df', '#bf3989', '#1b7c83', '#57606a'];

/** A time chart: `series` are {label, unit, format, scale?}; units on the axes and values. */
function timeChart(container, title, series, yLabel, y2Label, xAxis = { time: true, label: 'local time' }) {
  const style = getComputedStyle(document.documentElement);
  const fg = style.getPropertyValue('--fg').trim() || '#1b1f24';
  const grid = style.getPropertyValue('--line').trim() || '#d0d7de';
  const box = h('div', { class: 'chart', role: 'img', 'aria-label': `${title} chart` }, h('h3', {}, title));
  container.append(box);
  // Left (3) or right (1): an axis without a side would be laid out as a horizontal one.
  const axis = (label, scale, side = 3) => ({
    scale, side, label, stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid },
    size: 60, values: (u, vals) => vals.map((v) => (v === null ? '' : num(v, 2))),
  });
  const opts = {
    width: Math.max(280, box.clientWidth || 600),
    height: 220,
    scales: { x: { time: xAxis.time } },
    series: [
      xAxis.time
        ? { label: 'time', value: (u, v) => (v === null ? '–' : `${new Date(v * 1000).toLocaleTimeString()} (${new Date(v * 1000).toISOString().slice(11, 19)} UTC)`) }
        : { label: xAxis.label, value: (u, v) => (v === null ? '–' : `${num(v, 0)} s`) },
      ...series.map((s, i) => ({
        label: s.label, scale: s.scale || 'y', stroke: PALETTE[i % PALETTE.length], width: 2,
        value: (u, v) => (v === null || v === undefined ? '–' : s.format(v)),
        points: { show: s.points || false },
      })),
    ],
    axes: [
      { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, label: xAxis.label },
      axis(yLabel, 'y'),
      ...(y2Label ? [axis(y2Label, 'y2', 1)] : []),
    ],
    legend: { live: true },
  };
  const data = [[], ...series.map(() => [])];
  const plot = new uPlot(opts, data, box);
  const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(280, box.clientWidth), height: 220 }));
  resize.observe(box);
  Page.onLeave(() => { resize.disconnect(); plot.destroy(); });
  return {
    plot,
    push(t, values) {
      // Replayed or repeated events: x must only grow.
      if (data[0].length && t <= data[0][data[0].length - 1]) return;
      data[0].push(t);
      values.forEach((v, i) => data[i + 1].push(v));
      if (data[0].length > 3600) data.forEach((d) => d.shift());
      plot.setData(data);
    },
    set(columns) {
      columns.forEach((c, i) => { data[i] = c; });
      plot.setData(data);
    },
  };
}

// ---------------------------------------------------------------- pages

/** What the page left running (streams, timers, charts), stopped on leaving it. */
const Page = {
  cleanups: [],
  /** Counts page changes: work started for an earlier page checks it and stops. */
  generation: 0,
  onLeave(fn) { this.cleanups.push(fn); },
  leave() {
    this.generation += 1;
    this.cleanups.splice(0).forEach((fn) => { try { fn(); } catch (e) { /* gone already */ } });
  },
  /** A check that is true while the page current when it was made is shown. */
  current() { const g = this.generation; return () => g === this.generation; },
};

/** Follows an event stream; `onGone` runs when the server refuses or ends it for good. */
function stream(path, handlers, onGone) {
  const source = new EventSource(path);
  for (const [event, fn] of Object.entries(handlers)) {
    source.addEventListener(event, (e) => fn(JSON.parse(e.data), e));
  }
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED) {
      notice('Live updates are unavailable (too many streams open, or the server went away); figures are polled instead.');
      if (onGone) onGone();
    }
  });
  Page.onLeave(() => source.close());
  return source;
}

const PRESETS = ['baseline', 'stress', 'spike', 'endurance', 'volume'];
const FINAL = ['completed', 'failed', 'cancelled', 'interrupted'];

async function testsPage(params) {
  const alive = Page.current();
  const root = view();
  root.replaceChildren(h('h1', {}, 'Load tests'));

  // The form that starts a test.
  const errors = h('div', {});
  const yaml = h('textarea', { 'data-field': 'scenario_yaml', spellcheck: 'false', placeholder: 'load_tests:\n  checkout:\n    target: http://127.0.0.1:8080\n    users: 20\n    duration: 30s\n    requests:\n      - {path: /health}' });
  const upload = h('input', { type: 'file', accept: '.yaml,.yml,text/yaml' });
  upload.addEventListener('change', async () => {
    if (upload.files[0]) yaml.value = await upload.files[0].text();
  });
  const form = h('form', { class: 'stack', id: 'start-form', novalidate: true },
    h('div', { class: 'fields' },
      field('start-name', 'Name', h('input', { 'data-field': 'name', maxlength: 100, placeholder: 'checkout' })),
      field('start-target', 'Target', h('input', { 'data-field': 'target', placeholder: 'http://127.0.0.1:8080', inputmode: 'url' }), 'base URL; the server allows loopback by default'),
      field('start-preset', 'Preset', h('select', { 'data-field': 'preset' }, h('option', { value: '' }, '— none —'), PRESETS.map((p) => h('option', { value: p }, p)))),
      field('start-users', 'Users', h('input', { 'data-field': 'users', type: 'number', min: 1, inputmode: 'numeric' }), 'closed model: virtual users'),
      field('start-rate', 'Rate (req/s)', h('input', { 'data-field': 'rate', type: 'number', min: 0, step: 'any' }), 'open model instead of users'),
      field('start-duration', 'Duration', h('input', { 'data-field': 'duration', placeholder: '30s' }), 'e.g. 30s, 5m'),
      field('start-path', 'Path', h('input', { 'data-field': 'requests', placeholder: '/health' }), 'one GET request (without a scenario file)'),
      field('start-thresholds', 'Thresholds', h('input', { 'data-field': 'thresholds', placeholder: 'p95 < 50ms, error_rate < 0.1%' }), 'comma separated')),
    h('details', {}, h('summary', {}, 'Scenario file (YAML)'),
      field('start-yaml', 'Scenario file', yaml, 'paste a scenario file, or choose one:'),
      upload,
      field('start-scenario', 'Scenario in the file', h('input', { 'data-field': 'scenario' }), 'needed when the file has several')),
    errors,
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'start-submit' }, 'Start test')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = (id) => document.getElementById(id).value.trim();
    const body = {};
    if (v('start-name')) body.name = v('start-name');
    if (v('start-target')) body.target = v('start-target');
    if (v('start-preset')) body.preset = v('start-preset');
    if (v('start-users')) body.users = Number(v('start-users'));
    if (v('start-rate')) body.rate = Number(v('start-rate'));
    if (v('start-duration')) body.duration = v('start-duration');
    if (v('start-path')) body.requests = [{ path: v('start-path') }];
    if (v('start-thresholds')) body.thresholds = v('start-thresholds').split(',').map((t) => t.trim()).filter(Boolean);
    if (yaml.value.trim()) body.scenario_yaml = yaml.value;
    if (v('start-scenario')) body.scenario = v('start-scenario');
    const button = document.getElementById('start-submit');
    button.disabled = true;
    const answer = await api('/performance/tests', { method: 'POST', body });
    button.disabled = false;
    if (answer.ok) {
      location.hash = `#/tests/${answer.data.id}`;
    } else {
      showFieldError(form, errors, answer);
    }
  });
  root.append(h('section', { 'aria-labelledby': 'start-title' }, h('h2', { id: 'start-title' }, 'Start a test'), form));

  // History with filters and pages.
  const filters = h('form', { class: 'fields', id: 'filters' },
    field('filter-scenario', 'Scenario', h('input', { value: params.get('scenario') || '' })),
    field('filter-target', 'Target', h('input', { value: params.get('target') || '' })),
    field('filter-status', 'Status', h('select', {}, ['', 'queued', 'running', ...FINAL].map((s) => h('option', { value: s, selected: params.get('status') === s }, s || 'any')))),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Filter')));
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, id] of [['scenario', 'filter-scenario'], ['target', 'filter-target'], ['status', 'filter-status']]) {
      const val = document.getElementById(id).value.trim();
      if (val) q.set(k, val);
    }
    location.hash = `#/tests?${q}`;
  });
  const list = h('div', { id: 'history' });
  root.append(h('section', { 'aria-labelledby': 'history-title' }, h('h2', { id: 'history-title' }, 'History'), filters, list));

  const q = new URLSearchParams();
  for (const k of ['scenario', 'target', 'status', 'cursor']) if (params.get(k)) q.set(k, params.get(k));
  q.set('limit', '20');
  const answer = await api(`/performance/tests?${q}`);
  if (!alive()) return;
  if (!answer.ok) { list.replaceChildren(h('div', { class: 'error-box', role: 'alert' }, errorOf(answer).message)); return; }
  const rows = answer.data.items.map((t) => [
    h('a', { href: `#/tests/${t.id}` }, t.scenario_name), statusBadge(t.status), t.targets.join(', '),
    when(t.created_at_ms),
    t.progress ? rate(t.progress.finished && t.progress.elapsed_s > 0 ? t.progress.requests / t.progress.elapsed_s : t.progress.rps) : '–',
    t.progress ? ms(t.progress.p95_ms) : '–',
    t.progress ? num(t.progress.errors, 0) : '–',
    t.passed === null || t.passed === undefined ? '–' : h('span', { class: t.passed ? 'pass' : 'fail' }, t.passed ? 'passed' : 'failed'),
  ]);
  list.replaceChildren(rows.length ? table(['Test', 'Status', 'Targets', 'Created', { label: 'Throughput', num: true }, { label: 'p95', num: true }, { label: 'Errors', num: true }, 'Thresholds'], rows)
    : h('p', {}, 'No tests match.'));
  const pages = h('div', { class: 'actions' });
  if (params.get('cursor')) {
    const back = new URLSearchParams(params); back.delete('cursor');
    pages.append(h('a', { href: `#/tests?${back}` }, 'First page'));
  }
  if (answer.data.next_cursor) {
    const next = new URLSearchParams(params); next.set('cursor', answer.data.next_cursor);
    pages.append(h('a', { href: `#/tests?${next}`, id: 'next-page' }, 'Next page'));
  }
  list.append(pages);
}

/** The figures of a report: summary, per request, thresholds, checks, errors. */
function renderReport(container, report) {
  const verdict = report.passed ? h('span', { class: 'pass' }, 'PASSED') : h('span', { class: 'fail' }, 'FAILED');
  container.append(h('h2', {}, 'Result: ', verdict));
  if (report.no_success) container.append(h('div', { class: 'error-box' }, report.no_success));
  for (const w of report.warnings || []) container.append(h('div', { class: 'error-box' }, w));
  if (report.generator && report.generator.bound) {
    container.append(h('div', { class: 'error-box' }, `generator bound: ${report.generator.reason} — the figures understate the target`));
  }
  const l = report.latency_ms;
  container.append(h('div', { class: 'tiles', id: 'report-summary' },
    tile('Requests', num(report.requests, 0)), tile('Throughput', rate(report.rps)),
    tile('Error rate', pct(report.error_rate)), tile('p50', ms(l.p50)), tile('p95', ms(l.p95)),
    tile('p99', ms(l.p99)), tile('max', ms(l.max)), tile('Duration', seconds(report.duration_s)),
    tile('Protocol', report.protocol || 'http/1.1'), tile('Data received', bytes(report.bytes_received))));
  if (report.thresholds.length) {
    const observed = (t) => {
      const e = t.expr.trim();
      if (e.startsWith('error_rate') || e.startsWith('checks')) return pct(t.observed);
      if (e.startsWith('rps')) return rate(t.observed);
      return ms(t.observed);
    };
    container.append(h('h3', {}, 'Thresholds'), table(['Threshold', { label: 'Observed', num: true }, 'Verdict'],
      report.thresholds.map((t) => [t.expr, observed(t), h('span', { class: t.passed ? 'pass' : 'fail' }, t.passed ? 'pass' : 'FAIL')])));
  }
  const names = Object.entries(report.per_request || {});
  if (names.length) {
    container.append(h('h3', {}, 'Per request and step'), table(['Name', { label: 'Requests', num: true }, { label: 'Errors', num: true },
      { label: 'p50', num: true }, { label: 'p95', num: true }, { label: 'p99', num: true }, { label: 'max', num: true }],
    names.map(([n, r]) => [n, num(r.requests, 0), num(r.errors, 0), ms(r.latency_ms.p50), ms(r.latency_ms.p95), ms(r.latency_ms.p99), ms(r.latency_ms.max)])));
  }
  const checks = Object.entries(report.checks || {});
  if (checks.length) {
    container.append(h('h3', {}, 'Checks'), table(['Check', { label: 'Passed', num: true }, { label: 'Failed', num: true }, { label: 'Pass rate', num: true }],
      checks.map(([n, c]) => [n, num(c.passes, 0), num(c.fails, 0), pct(c.pass_rate)])));
  }
  const flows = Object.entries(report.flows || {});
  if (flows.length) {
    container.append(h('h3', {}, 'Flows'), table(['Flow', { label: 'Iterations', num: true }, { label: 'Aborted', num: true }],
      flows.map(([n, f]) => [n, num(f.iterations, 0), num(f.aborted, 0)])));
  }
  const causes = [
    ...Object.entries(report.error_kinds || {}),
    ...Object.entries(report.status_codes || {}).filter(([code]) => Number(code) >= 400).map(([code, n]) => [`HTTP ${code}`, n]),
  ];
  if (causes.length) container.append(h('h3', {}, 'Errors by cause'), table(['Cause', { label: 'Requests', num: true }], causes.map(([k, n]) => [k, num(n, 0)])));
}

/** A compared metric's value in its unit: latencies in ms, throughput in req/s, the error rate in %. */
function metricValue(metric, v) {
  if (metric === 'rps') return rate(v);
  if (metric === 'error_rate') return pct(v);
  return ms(v);
}

function comparisonTable(comparison) {
  return h('div', {},
    h('p', {}, 'Against ', comparison.against, ': ',
      comparison.regressed ? h('span', { class: 'fail' }, 'REGRESSED')
        : comparison.inconclusive ? h('span', { class: 'warn' }, 'inconclusive') : h('span', { class: 'pass' }, 'no regression')),
    table(['Metric', { label: 'Baseline', num: true }, { label: 'Current', num: true }, { label: 'Change', num: true }, 'Verdict', 'Why'],
      comparison.metrics.map((m) => [m.metric, metricValue(m.metric, m.baseline), metricValue(m.metric, m.current),
        `${num(m.change_percent, 1)} % (${num(m.change_low_percent, 1)} to ${num(m.change_high_percent, 1)} %)`,
        h('span', { class: m.verdict === 'regressed' ? 'fail' : m.verdict === 'improved' ? 'pass' : null }, m.verdict), m.reason])));
}

async function testPage(id) {
  const root = view();
  const alive = Page.current();
  const answer = await api(`/performance/tests/${encodeURIComponent(id)}`);
  if (!alive()) return;
  if (!answer.ok) { root.replaceChildren(h('h1', {}, 'Load test'), h('div', { class: 'error-box', role: 'alert' }, errorOf(answer).message)); return; }
  const test = answer.data;
  const status = h('span', { id: 'test-status' }, statusBadge(test.status));
  const cancel = h('button', { type: 'button', class: 'danger', id: 'cancel-test' }, 'Cancel');
  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    const done = await api(`/performance/tests/${test.id}`, { method: 'DELETE' });
    if (!done.ok) { notice(errorOf(done).message); cancel.disabled = false; }
  });
  const base = `/performance/tests/${test.id}/results`;
  root.replaceChildren(
    h('h1', {}, `Load test ${test.scenario_name} `, status),
    h('p', {}, 'Targets ', test.targets.join(', '), ' · created ', when(test.created_at_ms)),
    h('div', { class: 'actions' },
      FINAL.includes(test.status) ? null : cancel,
      h('a', { href: `${base}?format=json`, download: `${test.id}.json` }, 'JSON'),
      h('a', { href: `${base}?format=csv`, download: `${test.id}.csv` }, 'CSV'),
      h('a', { href: `${base}?format=html`, target: '_blank', rel: 'noopener' }, 'HTML report')),
    ...(test.error ? [h('div', { class: 'error-box', role: 'alert' }, test.error)] : []));
  const live = h('section', { 'aria-labelledby': 'live-title' }, h('h2', { id: 'live-title' }, 'Throughput, latency and users'));
  const tiles = h('div', { class: 'tiles' },
    tile('Users', '–', 'live-users'), tile('Throughput', '–', 'live-rps'), tile('p95 so far', '–', 'live-p95'),
    tile('Errors', '–', 'live-errors'), tile('Checks', '–', 'live-checks'), tile('Dropped', '–', 'live-dropped'),
    tile('Generator', '–', 'live-generator'), tile('Elapsed', '–', 'live-elapsed'));
  const charts = h('div', { class: 'grid' });
  live.append(tiles, charts);
  root.append(live);
  const throughput = timeChart(charts, 'Throughput and errors', [
    { label: 'requests/s', format: rate }, { label: 'errors/s', format: (v) => `${num(v, 1)} errors/s` }], 'req/s');
  const latency = timeChart(charts, 'Latency percentiles (each second)', [
    { label: 'p50', format: ms }, { label: 'p95', format: ms }, { label: 'p99', format: ms }], 'ms');
  const users = timeChart(charts, 'Users, in flight, dropped', [
    { label: 'users', format: (v) => `${num(v, 0)} users` }, { label: 'in flight', format: (v) => `${num(v, 0)} requests` },
    { label: 'dropped/s', format: (v) => `${num(v, 0)} dropped/s`, scale: 'y2' }], 'users, requests in flight', 'dropped/s');
  const report = h('section', { id: 'report', 'aria-live': 'polite' });
  const trend = h('section', { id: 'trend' });
  root.append(report, trend);

  let shown = false;
  const showFinal = async () => {
    if (shown) return;
    shown = true;
    const full = await api(`${base}?format=json`);
    if (!alive()) return;
    if (!full.ok) { report.replaceChildren(h('p', {}, errorOf(full).message)); return; }
    const r = full.data;
    const start = r.started_at_ms / 1000;
    throughput.set([r.timeline.map((t) => start + t.t_s), r.timeline.map((t) => t.rps), r.timeline.map((t) => t.errors / Math.max(1, t.span_s))]);
    latency.set([r.timeline.map((t) => start + t.t_s), r.timeline.map((t) => t.p50_ms), r.timeline.map((t) => t.p95_ms), r.timeline.map((t) => t.p99_ms)]);
    users.set([r.timeline.map((t) => start + t.t_s), r.timeline.map((t) => t.users), r.timeline.map((t) => t.in_flight), r.timeline.map((t) => t.dropped / Math.max(1, t.span_s))]);
    document.getElementById('live-rps').textContent = `${rate(r.rps)} (whole run)`;
    document.getElementById('live-p95').textContent = ms(r.latency_ms.p95);
    report.replaceChildren();
    renderReport(report, r);
    const t = await api(`/performance/tests/${test.id}/trend`);
    if (alive() && t.ok) renderTrend(trend, t.data, test.id);
  };

  if (FINAL.includes(test.status)) {
    if (test.progress || test.status === 'completed') await showFinal();
    return;
  }
  let lastDropped = 0;
  stream(`/performance/tests/${test.id}/events`, {
    status: (d) => { status.replaceChildren(statusBadge(d.status)); },
    snapshot: (s) => {
      const now = (s.at_ms || Date.now()) / 1000;
      throughput.push(now, [s.last_second.requests, s.last_second.errors]);
      latency.push(now, [s.last_second.p50_ms, s.last_second.p95_ms, s.last_second.p99_ms]);
      users.push(now, [s.users, s.in_flight, Math.max(0, s.dropped - lastDropped)]);
      lastDropped = s.dropped;
      document.getElementById('live-users').textContent = s.target_rate > 0 ? `${num(s.target_rate, 0)} req/s target` : num(s.users, 0);
      document.getElementById('live-rps').textContent = rate(s.rps);
      document.getElementById('live-p95').textContent = ms(s.p95_ms);
      const kinds = Object.entries(s.errors_by_kind || {}).map(([k, n]) => `${k} ${num(n, 0)}`).join(', ');
      document.getElementById('live-errors').textContent = `${num(s.errors, 0)}${kinds ? ` (${kinds})` : ''}`;
      const checks = s.checks_passed + s.checks_failed;
      document.getElementById('live-checks').textContent = checks ? pct(s.checks_passed / checks) : '–';
      document.getElementById('live-dropped').textContent = num(s.dropped, 0);
      const gen = document.getElementById('live-generator');
      gen.textContent = `${num(s.generator_cpu * 100, 1)} % CPU${s.generator_bound ? ' — BOUND' : ''}`;
      gen.className = `value${s.generator_bound ? ' fail' : ''}`;
      document.getElementById('live-elapsed').textContent = `${seconds(s.elapsed_s)} of ${seconds(s.total_s)}`;
    },
    ...Object.fromEntries(FINAL.map((name) => [name, (d, e) => {
      e.target.close();
      status.replaceChildren(statusBadge(d.status));
      cancel.remove();
      showFinal();
    }])),
  }, () => {
    // No live events: poll the test until it ends, then show its report.
    const timer = setInterval(async () => {
      const now = await api(`/performance/tests/${test.id}`);
      if (!alive()) { clearInterval(timer); return; }
      if (now.ok) {
        status.replaceChildren(statusBadge(now.data.status));
        if (FINAL.includes(now.data.status)) { clearInterval(timer); cancel.remove(); showFinal(); }
      }
    }, 2000);
    Page.onLeave(() => clearInterval(timer));
  });
}

/** The scenario's p95 per run, with its level shifts marked, and the regression verdicts. */
function renderTrend(container, data, id) {
  container.replaceChildren(h('h2', {}, 'Against history'));
  if (data.comparison) container.append(comparisonTable(data.comparison));
  else container.append(h('p', { class: 'hint' }, 'No earlier completed run of this scenario and targets to compare with.'));
  const runs = data.trend.runs;
  if (runs.length < 2) return;
  const shifts = new Set(data.trend.change_points);
  const chart = timeChart(container, 'p95 per run (dashed lines: level shifts)', [
    { label: 'p95', format: ms, points: true }], 'ms');
  chart.plot.hooks.draw = chart.plot.hooks.draw || [];
  const xs = runs.map((r) => (r.finished_at_ms || 0) / 1000);
  chart.plot.hooks.draw.push((u) => {
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = '#cf222e';
    ctx.setLineDash([6, 4]);
    for (const i of shifts) {
      const x = u.valToPos(xs[i], 'x', true);
      ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
    }
    ctx.restore();
  });
  chart.set([xs, runs.map((r) => r.p95_ms)]);
  container.append(table(['Run', 'Ended', { label: 'p95', num: true }, 'Level'],
    runs.map((r, i) => [r.id === id ? 'this test' : h('a', { href: `#/tests/${r.id}` }, r.id.slice(-8)), when(r.finished_at_ms), ms(r.p95_ms), shifts.has(i) ? h('span', { class: 'warn' }, 'shift starts here') : ''])));
}

async function comparePage(params) {
  const alive = Page.current();
  const root = view();
  root.replaceChildren(h('h1', {}, 'Compare two runs'));
  const answer = await api('/performance/tests?status=completed&limit=100');
  if (!alive()) return;
  if (!answer.ok) { root.append(h('div', { class: 'error-box' }, errorOf(answer).message)); return; }
  const options = (selected) => answer.data.items.map((t) => h('option', { value: t.id, selected: t.id === selected },
    `${t.scenario_name} · ${new Date(t.created_at_ms).toLocaleString()}`));
  const form = h('form', { class: 'fields' },
    field('compare-a', 'Baseline', h('select', {}, options(params.get('a')))),
    field('compare-b', 'Current', h('select', {}, options(params.get('b') || (answer.data.items[0] && answer.data.items[0].id)))),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Compare')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = `#/compare?a=${document.getElementById('compare-a').value}&b=${document.getElementById('compare-b').value}`;
  });
  const out = h('section', { id: 'comparison' });
  root.append(h('section', {}, form), out);
  const a = params.get('a'); const b = params.get('b');
  if (!a || !b) return;
  const [ea, eb] = [encodeURIComponent(a), encodeURIComponent(b)];
  const [ra, rb, cmp] = await Promise.all([api(`/performance/tests/${ea}/results`), api(`/performance/tests/${eb}/results`),
    api(`/performance/tests/${eb}/compare?baseline=${ea}`)]);
  if (!alive()) return;
  if (!ra.ok || !rb.ok) { out.append(h('div', { class: 'error-box' }, errorOf(ra.ok ? rb : ra).message)); return; }
  const rows = ['p50', 'p90', 'p95', 'p99', 'p999', 'max', 'mean'].map((k) => [k, ms(ra.data.latency_ms[k]), ms(rb.data.latency_ms[k])]);
  rows.push(['throughput', rate(ra.data.rps), rate(rb.data.rps)], ['error rate', pct(ra.data.error_rate), pct(rb.data.error_rate)]);
  out.append(h('h2', {}, 'Side by side'), table(['Figure', { label: 'Baseline', num: true }, { label: 'Current', num: true }], rows));
  if (cmp.ok) out.append(h('h2', {}, 'Verdicts'), comparisonTable(cmp.data));
}

async function systemPage() {
  const root = view();
  root.replaceChildren(h('h1', {}, 'System'));
  const tiles = h('div', { class: 'tiles' }, tile('CPU', '–', 'sys-cpu'), tile('RSS', '–', 'sys-rss'),
    tile('Budget', '–', 'sys-budget'), tile('Pressure', '–', 'sys-pressure'), tile('Leak verdict', '–', 'sys-leak'),
    tile('Connections', '–', 'sys-tcp'));
  const charts = h('div', { class: 'grid' });
  const allocator = h('div', { id: 'allocator' });
  root.append(h('section', {}, h('h2', {}, 'Host and process'), tiles, charts, allocator));
  let cpu = null;
  const memory = timeChart(charts, 'Memory', [{ label: 'RSS', format: bytes }, { label: 'jemalloc allocated', format: bytes },
    { label: 'jemalloc resident', format: bytes }], 'bytes');
  const network = timeChart(charts, 'Network (all interfaces)', [{ label: 'received', format: (v) => `${bytes(v)}/s` },
    { label: 'sent', format: (v) => `${bytes(v)}/s` }], 'bytes/s');
  stream('/performance/metrics/events', {
    sample: (s) => {
      const t = s.timestamp_ms / 1000;
      if (!cpu) {
        cpu = timeChart(charts, 'CPU per core', s.cpu.per_core_utilization_percent.map((_, i) => ({ label: `core ${i}`, format: (v) => `${num(v, 1)} %` })), '%');
      }
      cpu.push(t, s.cpu.per_core_utilization_percent);
      memory.push(t, [s.memory.process_rss_bytes, s.allocator ? s.allocator.allocated_bytes : null, s.allocator ? s.allocator.resident_bytes : null]);
      const ifs = s.network.interfaces.filter((i) => i.name !== 'lo');
      network.push(t, [ifs.reduce((a, i) => a + i.rx_bytes_per_sec, 0), ifs.reduce((a, i) => a + i.tx_bytes_per_sec, 0)]);
      document.getElementById('sys-cpu').textContent = `${num(s.cpu.utilization_percent, 1)} % of ${s.cpu.cores} cores`;
      document.getElementById('sys-rss').textContent = bytes(s.memory.process_rss_bytes);
      document.getElementById('sys-tcp').textContent = `${num(s.network.tcp.established, 0)} established`;
      if (s.allocator) {
        const a = s.allocator;
        allocator.replaceChildren(table(['jemalloc', { label: 'Bytes', num: true }],
          [['allocated', a.allocated_bytes], ['active', a.active_bytes], ['resident', a.resident_bytes], ['mapped', a.mapped_bytes],
            ['retained', a.retained_bytes], ['metadata', a.metadata_bytes], ['fragmentation', a.fragmentation_bytes], ['dirty', a.dirty_bytes]]
            .map(([k, v]) => [k, bytes(v)])));
      }
    },
  });
  const refreshMemory = async () => {
    const m = await api('/performance/metrics/memory');
    if (!m.ok) return;
    const b = m.data.budget;
    document.getElementById('sys-budget').textContent = `${pct(b.used_fraction)} of ${bytes(b.budget.limit)} (${b.limit_source})`;
    document.getElementById('sys-pressure').textContent = b.pressure;
    document.getElementById('sys-leak').textContent = m.data.leak ? m.data.leak.status : '–';
  };
  refreshMemory();
  const timer = setInterval(refreshMemory, 5000);
  Page.onLeave(() => clearInterval(timer));

  // Database.
  const db = h('section', { id: 'database' }, h('h2', {}, 'Database'));
  root.append(db);
  api('/performance/metrics/database').then((d) => {
    if (!d.ok) { db.append(h('p', { class: 'hint' }, errorOf(d).message)); return; }
    const r = d.data;
    if (!r.configured) { db.append(h('p', { class: 'hint' }, r.message)); return; }
    if (r.database) db.append(h('p', {}, r.database));
    for (const e of r.errors || []) db.append(h('div', { class: 'error-box' }, e));
    const p = r.pool;
    if (p) {
      db.append(h('div', { class: 'tiles', id: 'db-pool' },
        tile('Connections', `${num(p.size, 0)} of ${num(p.max_size, 0)} (${num(p.idle, 0)} idle)`),
        tile('Waiting', num(p.waiting, 0)), tile('Wait p95', ms(p.wait_ms.p95)), tile('Held p95', ms(p.held_ms.p95)),
        tile('Timeouts', num(p.timeouts, 0)), tile('Query p95', r.query_latency_ms ? ms(r.query_latency_ms.p95) : '–'),
        tile('Query cache hits', r.query_cache_hit_ratio === null || r.query_cache_hit_ratio === undefined ? '–' : pct(r.query_cache_hit_ratio))));
    }
    const slow = r.slow_queries || [];
    db.append(h('h3', {}, 'Slow statements'), slow.length
      ? table(['Statement', { label: 'Calls', num: true }, { label: 'Mean', num: true }, { label: 'Max', num: true }, { label: 'Total', num: true }, { label: 'Rows', num: true }],
        slow.map((q) => [h('code', {}, q.query.length > 300 ? `${q.query.slice(0, 300)}…` : q.query), num(q.calls, 0), ms(q.mean_ms), ms(q.max_ms), ms(q.total_ms), num(q.rows, 0)]))
      : h('p', { class: 'hint' }, 'None over the threshold.'));
  });

  // Profiles.
  const profiles = h('section', { id: 'profiles' }, h('h2', {}, 'Profiles'));
  const perr = h('div', {});
  const pform = h('form', { class: 'fields', id: 'profile-form' },
    field('profile-kind', 'Kind', h('select', { 'data-field': 'kind' }, h('option', { value: 'cpu' }, 'CPU'), h('option', { value: 'heap' }, 'heap'))),
    field('profile-duration', 'Seconds', h('input', { 'data-field': 'duration_s', type: 'number', min: 1, max: 600, value: 5 })),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'profile-start' }, 'Start profile'),
      h('button', { type: 'button', class: 'secondary', id: 'profile-stop' }, 'Stop')));
  const plist = h('div', { id: 'profile-list' });
  const flame = h('div', { class: 'flame', id: 'flamegraph' });
  profiles.append(pform, perr, plist, flame);
  root.append(profiles);
  let running = null;
  const listProfiles = async () => {
    const l = await api('/performance/profiling');
    if (!l.ok) return;
    running = l.data.running ? l.data.running.id : null;
    if (l.data.heap_available === false) {
      const heap = document.querySelector('#profile-kind option[value=heap]');
      if (heap) heap.remove();
    }
    const items = (l.data.profiles && l.data.profiles.items) || [];
    if (l.data.running) notice(`a ${l.data.running.kind} profile is running`);
    if (!items.length) { plist.replaceChildren(h('p', { class: 'hint' }, 'No profiles yet.')); return; }
    plist.replaceChildren(table(['Profile', 'Kind', 'Started', { label: 'Length', num: true }, { label: 'Flamegraph', num: true }, ''],
      items.map((p) => [p.id.slice(-8), p.kind, when(p.started_at_ms), seconds(p.duration_ms / 1000), bytes(p.flamegraph_svg_bytes),
        h('button', { type: 'button', class: 'secondary', onclick: () => {
          flame.replaceChildren(h('h3', {}, `Flamegraph of ${p.kind} profile ${p.id.slice(-8)}`),
            h('img', { src: `/performance/profiling/${p.id}?format=svg`, alt: `flamegraph of the ${p.kind} profile` }),
            h('p', {}, h('a', { href: `/performance/profiling/${p.id}?format=svg`, target: '_blank', rel: 'noopener' }, 'open it to zoom and search')));
        } }, 'View flamegraph')])));
  };
  pform.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { kind: document.getElementById('profile-kind').value, duration_s: Number(document.getElementById('profile-duration').value) };
    const a = await api('/performance/profiling/start', { method: 'POST', body });
    if (!a.ok) { showFieldError(pform, perr, a); return; }
    running = a.data.id;
    notice(`${body.kind} profile running for ${body.duration_s} s`);
    setTimeout(listProfiles, body.duration_s * 1000 + 1500);
  });
  document.getElementById('profile-stop').addEventListener('click', async () => {
    if (!running) { notice('no profile is running'); return; }
    const a = await api('/performance/profiling/stop', { method: 'POST', body: { id: running } });
    notice(a.ok ? 'profile stopped' : errorOf(a).message);
    running = null;
    listProfiles();
  });
  listProfiles();
}

async function scalingPage() {
  const alive = Page.current();
  const root = view();
  root.replaceChildren(h('h1', {}, 'Scaling'));
  const s = await api('/performance/scaling/status');
  if (!alive()) return;
  if (!s.ok) { root.append(h('div', { class: 'error-box' }, errorOf(s).message)); return; }
  const st = s.data;
  const summary = h('section', {}, h('h2', {}, 'Replicas'));
  root.append(summary);
  if (st.current_replicas !== undefined) {
    summary.append(h('div', { class: 'tiles' }, tile('Current', num(st.current_replicas, 0)), tile('Desired', num(st.desired_replicas, 0)),
      tile('Manager', st.manager), tile('Last decision', st.last_decision ? `${st.last_decision.from} → ${st.last_decision.to}` : '–')));
    summary.append(h('h3', {}, 'Instances'), table(['Instance', 'Address', 'Ready', 'Phase', { label: 'Restarts', num: true }, { label: 'Age', num: true }, { label: 'Load share', num: true }],
      st.instances.map((i) => [i.id, i.address || '–', i.ready ? 'yes' : h('span', { class: 'fail' }, 'no'),
        i.phase, num(i.restarts, 0), seconds(i.age_s), i.load_share === null || i.load_share === undefined ? '–' : pct(i.load_share)])));
  } else {
    summary.append(h('p', {}, st.message));
  }
  // Decisions over time.
  const hist = await api('/performance/scaling/history?limit=200');
  if (!alive()) return;
  const events = hist.ok ? (hist.data.items || []).slice().reverse() : [];
  if (events.length) {
    const chart = timeChart(summary, 'Replicas over time (each decision)', [{ label: 'replicas', format: (v) => `${num(v, 0)} replicas`, points: true }], 'replicas');
    chart.set([events.map((e) => e.at_ms / 1000), events.map((e) => e.to)]);
    summary.append(h('h3', {}, 'Decisions'), table(['When', 'Kind', { label: 'From', num: true }, { label: 'To', num: true }, 'Reason'],
      events.slice().reverse().slice(0, 50).map((e) => [when(e.at_ms), e.kind, num(e.from, 0), num(e.to, 0), e.reason])));
  }
  // The policy, edited with the server's validation.
  const policyErrors = h('div', {});
  const policyText = h('textarea', { 'data-field': 'policy', rows: 14, spellcheck: 'false' });
  policyText.value = st.policy ? JSON.stringify(st.policy, null, 2) : '{\n  "min_replicas": 1,\n  "max_replicas": 10,\n  "metrics": [{"name": "cpu", "kind": "resource", "target": {"utilization": 70}}]\n}';
  const pform = h('form', { class: 'stack', id: 'policy-form' }, field('policy-json', 'Policy (JSON)', policyText, 'min_replicas, max_replicas, metrics, behavior, tolerance, predictive'),
    policyErrors, h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save policy')));
  pform.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let body;
    try { body = JSON.parse(policyText.value); } catch (e) {
      policyErrors.replaceChildren(h('div', { class: 'error-box', role: 'alert' }, `not JSON: ${e.message}`)); return;
    }
    const a = await api('/performance/scaling/config', { method: 'PUT', body });
    if (a.ok) { policyErrors.replaceChildren(h('p', { class: 'pass' }, 'saved')); } else {
      policyErrors.replaceChildren(h('div', { class: 'error-box', role: 'alert' }, `${errorOf(a).field}: ${errorOf(a).message}`));
    }
  });
  root.append(h('section', {}, h('h2', {}, 'Policy'), pform));
  // Simulation of the policy over an uploaded trace.
  const simErrors = h('div', {});
  const trace = h('textarea', { 'data-field': 'trace_csv', rows: 6, placeholder: 't,v\n0,100\n60,400\n120,900' });
  const traceFile = h('input', { type: 'file', accept: '.csv,text/csv' });
  traceFile.addEventListener('change', async () => { if (traceFile.files[0]) trace.value = await traceFile.files[0].text(); });
  const sform = h('form', { class: 'stack', id: 'simulate-form' },
    field('sim-trace', 'Load trace (CSV: seconds, load)', trace), traceFile,
    h('div', { class: 'fields' },
      field('sim-period', 'Decision period (s)', h('input', { 'data-field': 'period_s', type: 'number', value: 15, min: 1 })),
      field('sim-startup', 'Start-up time (s)', h('input', { 'data-field': 'startup_s', type: 'number', value: 30, min: 0 })),
      field('sim-per-replica', 'Load one replica serves', h('input', { 'data-field': 'request_per_replica', type: 'number', value: 100, min: 1 }))),
    simErrors, h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Simulate')));
  const simOut = h('div', { id: 'simulation' });
  sform.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let policy;
    try { policy = JSON.parse(policyText.value); } catch (e) { policy = undefined; }
    const body = { trace_csv: trace.value, policy,
      settings: { period_s: Number(document.getElementById('sim-period').value), startup_s: Number(document.getElementById('sim-startup').value),
        request_per_replica: Number(document.getElementById('sim-per-replica').value) } };
    const a = await api('/performance/scaling/simulate', { method: 'POST', body });
    simOut.replaceChildren();
    if (!a.ok) { showFieldError(sform, simErrors, a); return; }
    simErrors.replaceChildren();
    const r = a.data;
    simOut.append(h('div', { class: 'tiles' }, tile('Peak replicas', num(r.peak_replicas, 0)), tile('Scale events', num(r.scale_events, 0)),
      tile('Slowest scale-up', seconds(r.max_time_to_scale_up_s)), tile('Replica-seconds', num(r.replica_seconds, 0)),
      tile('Short of demand', `${num(r.under_provisioned_instance_s, 0)} replica-s`)));
    const c = timeChart(simOut, 'Simulated replicas against load', [
      { label: 'replicas', format: (v) => `${num(v, 0)} replicas` }, { label: 'needed', format: (v) => `${num(v, 0)} replicas` },
      { label: 'load', format: (v) => `${num(v, 1)} (trace units)`, scale: 'y2' }], 'replicas', 'load (trace units)',
    { time: false, label: 'seconds into the trace' });
    c.set([r.timeline.map((x) => x.t_s), r.timeline.map((x) => x.replicas), r.timeline.map((x) => x.needed), r.timeline.map((x) => x.load)]);
  });
  root.append(h('section', {}, h('h2', {}, 'Simulate the policy'), sform, simOut));
}

const SEVERITY = { critical: 0, warning: 1, info: 2 };

async function recommendationsPage() {
  const alive = Page.current();
  const root = view();
  root.replaceChildren(h('h1', {}, 'Recommendations'));
  const a = await api('/performance/recommendations');
  if (!alive()) return;
  if (!a.ok) { root.append(h('div', { class: 'error-box' }, errorOf(a).message)); return; }
  const items = (a.data.items || a.data.recommendations || a.data || []).slice()
    .sort((x, y) => (SEVERITY[x.severity] ?? 9) - (SEVERITY[y.severity] ?? 9));
  if (!items.length) { root.append(h('p', {}, 'Nothing to recommend now.')); return; }
  for (const r of items) {
    const action = h('pre', {}, r.action);
    const copy = h('button', { type: 'button', class: 'secondary' }, 'Copy action');
    copy.addEventListener('click', async () => {
      try { await navigator.clipboard.writeText(r.action); notice('copied'); } catch (e) { notice('select the text to copy it'); }
    });
    root.append(h('section', { class: 'recommendation' },
      h('h2', {}, h('span', { class: r.severity === 'critical' ? 'fail' : 'warn' }, `${r.severity} `), r.title),
      h('p', { class: 'hint' }, r.kind),
      table(['Evidence', 'Value'], Object.entries(r.evidence || {}).map(([k, v]) => [k, typeof v === 'object' ? JSON.stringify(v) : String(v)])),
      h('h3', {}, 'Action'), action, copy));
  }
}

// ---------------------------------------------------------------- routing

async function route() {
  Page.leave();
  notice('');
  const hash = location.hash.startsWith('#/') ? location.hash : '#/tests';
  const [path, query] = hash.slice(1).split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean);
  const page = parts[0] || 'tests';
  for (const a of document.querySelectorAll('header nav a')) {
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  document.title = `perf · ${page}`;
  try {
    if (page === 'tests' && parts[1]) await testPage(parts[1]);
    else if (page === 'tests') await testsPage(params);
    else if (page === 'compare') await comparePage(params);
    else if (page === 'system') await systemPage();
    else if (page === 'scaling') await scalingPage();
    else if (page === 'recommendations') await recommendationsPage();
    else view().replaceChildren(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/tests' }, 'Back to the tests')));
  } catch (e) {
    view().append(h('div', { class: 'error-box', role: 'alert' }, `This page failed: ${e.message}`));
  }
  view().focus({ preventScroll: true });
}

document.getElementById('token-button').addEventListener('click', askToken);
// The skip link moves the focus; it is not a page to route to.
document.querySelector('a.skip').addEventListener('click', (e) => { e.preventDefault(); view().focus(); });
window.addEventListener('hashchange', route);
route();
