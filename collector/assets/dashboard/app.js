// Tally's dashboard: plain JavaScript, no build step. Every figure shown
// comes from the JSON endpoints (/v1/lifecycle, /v1/funnel, ...) the CLI
// uses; this file only formats them (and subtracts two API numbers for a
// change or a drop-off). Untrusted text (event names, property paths, API
// errors) is only ever set with textContent, never as HTML.
'use strict';

(function () {
  const KEY = 'tally.readKey';
  const $ = (id) => document.getElementById(id);
  const PAGES = ['overview', 'funnel', 'retention', 'activation', 'trends', 'active'];
  let generation = 0; // a newer render makes older answers stale

  // ---- DOM helpers (text only) ----
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  }
  function table(head, rows, attrs) {
    const t = el('table', attrs);
    t.append(el('thead', {}, el('tr', {}, ...head.map((h) => el('th', { text: h })))));
    const b = el('tbody');
    for (const r of rows) b.append(r);
    t.append(b);
    return el('div', { class: 'scroll' }, t);
  }

  // ---- formatting (no arithmetic on figures) ----
  function num(v) {
    if (v === null || v === undefined) return '—';
    return Number.isInteger(v) ? String(v) : v.toFixed(2);
  }
  function pct(r) { return r === null || r === undefined ? '—' : (r * 100).toFixed(1) + '%'; }
  function dur(s) {
    if (s === null || s === undefined) return '—';
    if (s < 60) return s.toFixed(0) + 's';
    if (s < 3600) return (s / 60).toFixed(1) + 'm';
    if (s < 86400) return (s / 3600).toFixed(1) + 'h';
    return (s / 86400).toFixed(1) + 'd';
  }
  function signed(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return '—';
    const s = Number.isInteger(v) ? String(v) : v.toFixed(2);
    return v > 0 ? '+' + s : s;
  }

  // ---- the query in the URL: #page?param=value&... ----
  function state() {
    const h = location.hash.replace(/^#/, '');
    const i = h.indexOf('?');
    const page = (i < 0 ? h : h.slice(0, i)) || 'overview';
    return { page: PAGES.includes(page) ? page : 'overview', q: new URLSearchParams(i < 0 ? '' : h.slice(i + 1)) };
  }
  function go(page, q) { location.hash = page + (q.toString() ? '?' + q.toString() : ''); }
  function rangeOf(q) {
    const r = new URLSearchParams();
    if (q.get('from') || q.get('to')) {
      if (q.get('from')) r.set('from', q.get('from'));
      if (q.get('to')) r.set('to', q.get('to'));
    } else {
      r.set('last', q.get('last') || '30d');
    }
    return r;
  }
  const DAY = 86400000;
  const iso = (ms) => new Date(ms).toISOString().slice(0, 10);
  // The period before the query's range, as dates (calendar arithmetic,
  // not a figure): `last=Nd` is the N whole UTC days ending today.
  function previousRange(q) {
    let from, to;
    if (q.get('from') && q.get('to')) {
      from = Date.parse(q.get('from')); to = Date.parse(q.get('to'));
    } else {
      const m = /^(\d+)([dw])$/.exec(q.get('last') || '30d');
      if (!m) return null;
      const n = Number(m[1]) * (m[2] === 'w' ? 7 : 1);
      const today = Date.parse(new Date().toISOString().slice(0, 10));
      to = today + DAY; from = to - n * DAY;
    }
    if (!(to > from)) return null;
    return new URLSearchParams({ from: iso(from - (to - from)), to: iso(from) });
  }

  // ---- the API ----
  async function api(path, params) {
    const res = await fetch('/v1/' + path + '?' + params.toString(), {
      headers: { Authorization: 'Bearer ' + localStorage.getItem(KEY) },
      cache: 'no-store',
    });
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON */ }
    if (!res.ok) {
      const msg = body && typeof body.error === 'string' ? body.error : res.status + ' ' + res.statusText;
      const err = new Error(msg);
      err.status = res.status;
      throw err;
    }
    return body;
  }
  let catalog = null; // event names, from /v1/events (all time)
  async function eventNames() {
    if (!catalog) catalog = (await api('events', new URLSearchParams())).events.map((e) => e.event);
    return catalog;
  }

  function setStatus(text, kind) {
    const s = $('status');
    s.className = kind || '';
    s.textContent = text || '';
  }

  // ---- page controls ----
  function ctl(label, input) { return el('label', { class: 'ctl' }, label, input); }
  function select(id, options, value) {
    const s = el('select', { id });
    for (const o of options) {
      const [v, t] = Array.isArray(o) ? o : [o, o];
      const opt = el('option', { value: v, text: t });
      if (v === value) opt.selected = true;
      s.append(opt);
    }
    return s;
  }
  function input(id, type, value, extra) { const i = el('input', Object.assign({ id, type }, extra || {})); i.value = value; return i; }

  const CONTROLS = {
    overview: async () => [],
    funnel: async (q) => {
      const names = await eventNames();
      const steps = q.get('steps') ? q.get('steps').split(',') : names.slice(0, 2);
      const box = el('span', { class: 'steps', id: 'steps' });
      const add = (v) => box.insertBefore(select('', names.includes(v) ? names : [v, ...names], v), addBtn);
      const addBtn = el('button', { type: 'button', id: 'add-step', text: '+ step' });
      const rmBtn = el('button', { type: 'button', id: 'remove-step', text: '− step' });
      box.append(addBtn, rmBtn);
      steps.forEach(add);
      addBtn.addEventListener('click', () => add(names[0] || ''));
      rmBtn.addEventListener('click', () => { const s = box.querySelectorAll('select'); if (s.length > 2) s[s.length - 1].remove(); });
      return [ctl('Steps', box), ctl('Window', input('window', 'text', q.get('window') || '14d', { size: 5 }))];
    },
    retention: async (q) => {
      const names = await eventNames();
      return [
        ctl('Start', select('start', names, q.get('start') || names[0])),
        ctl('Return', select('return', ['any', ...names], q.get('return') || q.get('start') || names[0])),
        ctl('Period', select('period', ['week', 'day'], q.get('period') || 'week')),
        ctl('Periods', input('periods', 'number', q.get('periods') || '8', { min: 1, max: 100 })),
      ];
    },
    activation: async (q) => {
      const names = await eventNames();
      return [
        ctl('Start', select('start', names, q.get('start') || names[0])),
        ctl('Event', select('event', names, q.get('event') || names[1] || names[0])),
        ctl('Count', input('count', 'number', q.get('count') || '1', { min: 1 })),
        ctl('Within', input('within', 'text', q.get('within') || '30d', { size: 5 })),
      ];
    },
    trends: async (q) => {
      const names = await eventNames().catch(() => []);
      return [
        ctl('Event', select('event', ['any', ...names], q.get('event') || 'any')),
        ctl('Measure', select('measure', ['events', 'users', 'revenue'], q.get('measure') || 'events')),
        ctl('Interval', select('interval', ['hour', 'day', 'week', 'month'], q.get('interval') || 'day')),
      ];
    },
    active: async () => [],
  };
  // The query the controls describe (written to the URL on Apply).
  function readControls(page) {
    const q = new URLSearchParams();
    if ($('mode').value === 'range') {
      if ($('from').value) q.set('from', $('from').value);
      if ($('to').value) q.set('to', $('to').value);
    } else {
      q.set('last', ($('last').value || '30') + 'd');
    }
    // Pickers not drawn yet keep the URL's values.
    const old = state().q;
    for (const id of ['steps', 'window', 'start', 'return', 'period', 'periods', 'event', 'count', 'within', 'measure', 'interval']) {
      const e = $(id);
      if (e && $('page-controls').contains(e)) {
        q.set(id, id === 'steps' ? [...e.querySelectorAll('select')].map((s) => s.value).join(',') : e.value);
      } else if (old.get(id)) {
        q.set(id, old.get(id));
      }
    }
    return q;
  }
  function writeRange(q) {
    const ranged = !!(q.get('from') || q.get('to'));
    $('mode').value = ranged ? 'range' : 'last';
    $('from').value = q.get('from') || '';
    $('to').value = q.get('to') || '';
    const m = /^(\d+)d$/.exec(q.get('last') || '30d');
    $('last').value = m ? m[1] : '30';
    $('last').hidden = ranged;
    $('from').hidden = $('to').hidden = !ranged;
  }

  // ---- pages: each fetches, then draws from the answer ----
  const PAGES_DRAW = {
    async overview(q, view) {
      const prev = previousRange(q);
      // The event list reads every event's properties: it is drawn when it
      // comes, after the lifecycle report, so it never holds up the page.
      const events = api('events', rangeOf(q));
      events.catch(() => {}); // reported where it is drawn
      const [cur, old] = await Promise.all([
        api('lifecycle', rangeOf(q)),
        prev ? api('lifecycle', prev) : Promise.resolve(null),
      ]);
      const row = (label, key, a, b) => el('tr', { 'data-metric': key },
        el('td', { text: label }),
        el('td', { class: 'cur', text: num(a) }),
        el('td', { class: 'prev', text: old ? num(b) : '—' }),
        (() => { const d = a === null || b === null || !old ? null : a - b;
          return el('td', { class: 'change ' + (d > 0 ? 'up' : d < 0 ? 'down' : ''), text: signed(d) }); })());
      const kpi = (label, key, v) => el('div', { class: 'kpi', 'data-kpi': key }, label, el('b', { text: num(v) }));
      view.append(el('div', { class: 'kpis' },
        kpi('Active users', 'active_users', cur.active_users), kpi('Revenue', 'revenue', cur.revenue),
        kpi('Paying users', 'paying_users', cur.paying_users), kpi('AOV', 'aov', cur.aov), kpi('ARPU', 'arpu', cur.arpu)));
      if (prev) view.append(el('p', { class: 'hint', id: 'previous', text: 'Previous period: ' + prev.get('from') + ' to ' + prev.get('to') + ' (exclusive)' }));
      const rows = [];
      cur.stages.forEach((s, i) => {
        const o = old ? old.stages[i] : {};
        rows.push(row(s.stage + ' users', s.stage + '.users', s.users, o.users));
        rows.push(row(s.stage + ' events', s.stage + '.events', s.events, o.events));
      });
      for (const [label, key] of [['Active users', 'active_users'], ['Revenue', 'revenue'], ['Paying users', 'paying_users'],
        ['Orders', 'orders'], ['AOV', 'aov'], ['ARPU', 'arpu']]) rows.push(row(label, key, cur[key], old ? old[key] : null));
      view.append(el('h2', { text: 'Lifecycle (AARRR)' }), table(['', 'This period', 'Previous', 'Change'], rows, { id: 'lifecycle' }));
      const box = el('div', { id: 'catalog-box', class: 'spinner', text: 'Loading the events…' });
      view.append(el('h2', { text: 'Events in this period' }), box);
      const my = generation;
      events.then((ev) => {
        if (my !== generation) return;
        box.className = '';
        box.replaceChildren(table(['Event', 'Count', 'Users', 'Properties'],
          ev.events.map((e) => el('tr', {}, el('td', { class: 'name', text: e.event }), el('td', { text: num(e.count) }),
            el('td', { text: num(e.users) }), el('td', { class: 'name', text: e.properties.join(', ') }))), { id: 'catalog' }));
        box.dataset.state = 'ready';
      }, (e) => {
        if (my !== generation) return;
        box.className = 'error';
        box.textContent = e.message;
        box.dataset.state = 'error';
      });
    },
    async funnel(q, view) {
      const p = rangeOf(q);
      p.set('steps', q.get('steps') || (await eventNames()).slice(0, 2).join(','));
      p.set('window', q.get('window') || '14d');
      const f = await api('funnel', p);
      const rows = f.steps.map((s, i) => el('tr', { 'data-step': String(i) },
        el('td', { class: 'name', text: s.event }),
        el('td', { class: 'barcell' }, (() => { const b = el('div', { class: 'bar' }); b.style.width = (s.conversion_from_first * 100) + '%'; return b; })()),
        el('td', { class: 'users', text: num(s.users) }),
        el('td', { class: 'from-prev', text: pct(s.conversion_from_previous) }),
        el('td', { class: 'from-first', text: pct(s.conversion_from_first) }),
        el('td', { class: 'dropoff', text: i === 0 ? '—' : num(f.steps[i - 1].users - s.users) }),
        el('td', { class: 'median', text: dur(s.median_seconds_from_previous) })));
      view.append(el('p', { class: 'hint', id: 'funnel-range', text: f.from + ' to ' + f.to + ', window ' + dur(f.window_seconds) }),
        table(['Step', '', 'Users', 'From previous', 'From first', 'Drop-off', 'Median time'], rows, { id: 'funnel' }));
    },
    async retention(q, view) {
      const names = q.get('start') ? [] : await eventNames();
      const p = rangeOf(q);
      p.set('start', q.get('start') || names[0]);
      p.set('return', q.get('return') || p.get('start'));
      p.set('period', q.get('period') || 'week');
      p.set('periods', q.get('periods') || '8');
      const r = await api('retention', p);
      const n = r.total.retained.length;
      const head = ['Cohort', 'Size', ...Array.from({ length: n }, (_, k) => r.period + ' ' + k)];
      const cell = (v, of, incomplete) => {
        const c = el('td', { class: 'cell' + (incomplete ? ' incomplete' : ''), text: num(v) });
        if (incomplete) c.title = 'period not over yet';
        else if (of > 0) c.style.background = 'rgba(54, 110, 220, ' + (0.08 + 0.7 * v / of).toFixed(2) + ')';
        return c;
      };
      const rows = r.cohorts.map((c) => el('tr', { 'data-cohort': c.cohort }, el('td', { text: c.cohort }), el('td', { text: num(c.size) }),
        ...c.retained.map((v, k) => cell(v, c.size, c.incomplete_from !== null && k >= c.incomplete_from))));
      const t = r.total;
      rows.push(el('tr', { 'data-cohort': 'total', class: 'total' }, el('td', { text: 'All (complete periods)' }), el('td', { text: num(t.size) }),
        ...t.complete_retained.map((v, k) => { const c = cell(v, t.complete_size[k], false); c.textContent = num(v) + ' / ' + num(t.complete_size[k]); return c; })));
      view.append(el('p', { class: 'hint', text: 'Persons of each cohort with a return event in each period (as of ' + r.as_of + '). Hatched cells: the period has not fully elapsed.' }),
        table(head, rows, { id: 'retention' }));
    },
    async activation(q, view) {
      const names = q.get('start') && q.get('event') ? [] : await eventNames();
      const p = rangeOf(q);
      p.set('start', q.get('start') || names[0]);
      p.set('event', q.get('event') || names[1] || names[0]);
      p.set('count', q.get('count') || '1');
      p.set('within', q.get('within') || '30d');
      const a = await api('activation', p);
      const kpi = (label, key, v) => el('div', { class: 'kpi', 'data-kpi': key }, label, el('b', { text: v }));
      view.append(el('div', { class: 'kpis' }, kpi('Cohort', 'cohort_size', num(a.cohort_size)), kpi('Activated', 'activated', num(a.activated)),
        kpi('Rate', 'rate', pct(a.rate)), kpi('Rate (mature only)', 'mature_rate', pct(a.mature.rate)),
        kpi('Median time', 'median', dur(a.median_seconds_to_activate))));
      const rows = a.by_week.map((w) => el('tr', { 'data-cohort': w.cohort }, el('td', { text: w.cohort }),
        el('td', { class: 'size', text: num(w.cohort_size) }), el('td', { class: 'activated', text: num(w.activated) }),
        el('td', { class: 'rate', text: pct(w.rate) }),
        el('td', { class: 'barcell' }, (() => { const b = el('div', { class: 'bar' }); b.style.width = (w.rate * 100) + '%'; return b; })()),
        el('td', { class: 'status ' + (w.mature ? '' : 'running'), text: w.mature ? 'complete' : 'still running' })));
      view.append(table(['Cohort week', 'Size', 'Activated', 'Rate', '', ''], rows, { id: 'activation' }));
    },
    async trends(q, view) {
      const p = rangeOf(q);
      p.set('event', q.get('event') || 'any');
      p.set('measure', q.get('measure') || 'events');
      p.set('interval', q.get('interval') || 'day');
      const t = await api('trend', p);
      view.append(el('div', { class: 'kpis' }, el('div', { class: 'kpi', 'data-kpi': 'total' }, 'Total ' + t.measure, el('b', { text: num(t.total) }))));
      chart(view, t.series.map((s) => Date.parse(s.bucket) / 1000), [{ label: t.measure, values: t.series.map((s) => s.value) }]);
      view.append(table(['Bucket', t.measure], t.series.map((s) => el('tr', {}, el('td', { text: s.bucket }), el('td', { text: num(s.value) }))), { id: 'trend' }));
    },
    async active(q, view) {
      const a = await api('active', rangeOf(q));
      const xs = a.days.map((d) => Date.parse(d.day) / 1000);
      chart(view, xs, ['dau', 'wau', 'mau'].map((k) => ({ label: k.toUpperCase(), values: a.days.map((d) => d[k]) })));
      chart(view, xs, [{ label: 'Stickiness (DAU/MAU)', values: a.days.map((d) => d.stickiness) }]);
      view.append(table(['Day', 'DAU', 'WAU', 'MAU', 'Stickiness'], a.days.map((d) => el('tr', { 'data-day': d.day },
        el('td', { text: d.day }), el('td', { class: 'dau', text: num(d.dau) }), el('td', { class: 'wau', text: num(d.wau) }),
        el('td', { class: 'mau', text: num(d.mau) }), el('td', { class: 'stickiness', text: pct(d.stickiness) }))), { id: 'active' }));
    },
  };
  const COLORS = ['#366edc', '#17803d', '#b4541a', '#7a3bc4'];
  function chart(view, xs, series) {
    const box = el('div', { class: 'chart' });
    view.append(box);
    if (typeof uPlot === 'undefined' || xs.length === 0) return;
    // `view` is not in the document yet: size to the page's view.
    const width = Math.max(240, Math.min($('view').clientWidth || 800, 1100) - 4);
    new uPlot({
      width, height: 220, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2 }))],
    }, [xs, ...series.map((s) => s.values)], box);
  }

  async function render() {
    const my = ++generation;
    const { page, q } = state();
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('current', a.getAttribute('href') === '#' + page);
    const view = $('view');
    view.replaceChildren();
    writeRange(q);
    setStatus('Loading…', 'spinner');
    document.body.dataset.state = 'loading';
    // The pickers need the event names (/v1/events, which reads every
    // event): they are filled when those come, never holding up a page
    // whose query already names its events.
    $('page-controls').replaceChildren();
    CONTROLS[page](q).then((controls) => {
      if (my === generation) $('page-controls').replaceChildren(...controls);
    }, (e) => {
      if (my === generation) $('page-controls').replaceChildren(el('span', { class: 'error', text: e.message }));
    });
    try {
      const fresh = el('div');
      await PAGES_DRAW[page](q, fresh);
      if (my !== generation) return;
      view.replaceChildren(...fresh.childNodes);
      setStatus('');
      // Time from navigation start to the first drawn page (docs/BENCHMARKS.md).
      if (!document.body.dataset.firstRenderMs) document.body.dataset.firstRenderMs = String(Math.round(performance.now()));
      document.body.dataset.state = 'ready';
    } catch (e) {
      if (my !== generation) return;
      if (e.status === 401) askKey('The read key was refused: ' + e.message);
      setStatus(e.message, 'error');
      document.body.dataset.state = 'error';
    }
  }

  function askKey(why) {
    $('keyform').hidden = false;
    $('app').hidden = true;
    $('forget').hidden = true;
    if (why) setStatus(why, 'error');
  }
  function start() {
    $('keyform').addEventListener('submit', (ev) => {
      ev.preventDefault();
      localStorage.setItem(KEY, $('key').value);
      $('key').value = '';
      catalog = null;
      open();
    });
    $('forget').addEventListener('click', () => { localStorage.removeItem(KEY); askKey(); });
    $('mode').addEventListener('change', () => {
      const ranged = $('mode').value === 'range';
      $('last').hidden = ranged;
      $('from').hidden = $('to').hidden = !ranged;
    });
    $('controls').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const { page } = state();
      go(page, readControls(page));
    });
    // Moving between pages keeps the date range.
    for (const a of document.querySelectorAll('#nav a')) {
      a.addEventListener('click', (ev) => {
        ev.preventDefault();
        const q = state().q, keep = new URLSearchParams();
        for (const k of ['from', 'to', 'last']) if (q.get(k)) keep.set(k, q.get(k));
        go(a.getAttribute('href').slice(1), keep);
      });
    }
    window.addEventListener('hashchange', render);
    if (localStorage.getItem(KEY)) open(); else askKey();
  }
  function open() {
    $('keyform').hidden = true;
    $('app').hidden = false;
    $('forget').hidden = false;
    render();
  }
  start();
})();
