// Tally's dashboard: plain JavaScript, no build step. Every figure shown
// comes from the JSON endpoints (/v1/lifecycle, /v1/funnel, ...) the CLI
// uses; this file only formats them (and subtracts two API numbers for a
// change or a drop-off). Untrusted text (event names, KPI names, property
// paths, group values of a breakdown, API errors) is only ever set with
// textContent (or as an input's value), never as HTML. Filters (`where`,
// repeated), the breakdown (`by`, `limit`) and `identity=none` are passed
// through to the endpoints as the URL holds them.
// Calendar arithmetic on dates (the previous period, the latest whole
// day/week/month) is done here; every number comes from the API.
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
  function go(page, q) {
    // Loading from now on, not only once hashchange has run render().
    const to = '#' + page + (q.toString() ? '?' + q.toString() : '');
    if (location.hash !== to) document.body.dataset.state = 'loading';
    location.hash = to;
  }
  // The zone of every query: the URL's `tz`, else the browser's own zone
  // (UTC when the browser names none); render() writes it into the URL so
  // a bookmarked view means the same days for whoever opens it.
  function browserZone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'; } catch (_) { return 'UTC'; }
  }
  let zone = 'UTC';
  function zones() {
    let all = [];
    try { all = Intl.supportedValuesOf('timeZone'); } catch (_) { /* old browser */ }
    return ['UTC', ...all.filter((z) => z !== 'UTC')];
  }
  // Today's date in `tz`, YYYY-MM-DD.
  function todayIn(tz) {
    return new Intl.DateTimeFormat('en-CA', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date());
  }
  // An instant of the API (RFC 3339 UTC) as a local date in the query's
  // zone, with the time when it is not a midnight.
  function localTime(s) {
    const d = new Date(s);
    if (Number.isNaN(d.getTime())) return String(s);
    const t = new Intl.DateTimeFormat('sv-SE', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(d);
    return t.endsWith(' 00:00') ? t.slice(0, 10) : t;
  }
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
  // The filters of SPEC §5 and the identity switch, as the URL holds them
  // (`where` repeated), for any endpoint.
  function filtersOf(q) {
    const r = new URLSearchParams();
    for (const w of q.getAll('where')) r.append('where', w);
    if (q.get('identity') === 'none') r.set('identity', 'none');
    return r;
  }
  // Range, filters, and the breakdown (`by`, `limit`) unless the page
  // takes none (active users).
  function paramsOf(q, page) {
    const r = new URLSearchParams([...rangeOf(q), ...filtersOf(q)]);
    if (page !== 'active' && q.get('by')) {
      r.set('by', q.get('by'));
      if (q.get('limit')) r.set('limit', q.get('limit'));
    }
    return r;
  }
  // `PATH OP VALUE` split at its first operator (SPEC §5), for the editor.
  const OPS = ['=', '!=', '<', '<=', '>', '>=', '~', '!~'];
  function splitWhere(w) {
    for (let i = 0; i < w.length; i++) {
      const two = w.slice(i, i + 2);
      const op = ['!=', '!~', '<=', '>='].includes(two) ? two : '=<>~'.includes(w[i]) ? w[i] : null;
      if (op) return [w.slice(0, i).trim(), op, w.slice(i + op.length).trim()];
    }
    return [w.trim(), '=', ''];
  }
  // A group's value (a JSON string, number, boolean or null) as text.
  function groupLabel(v) {
    if (v === null || v === undefined) return '(no value)';
    return typeof v === 'string' ? v : String(v);
  }
  const DAY = 86400000;
  const iso = (ms) => new Date(ms).toISOString().slice(0, 10);
  const DATE = /^\d{4}-\d{2}-\d{2}$/;
  // The range of equal length just before the query's, as local dates in
  // the query's zone (calendar arithmetic, not a figure): `last=Nd` is the
  // N whole days ending today there. Null when the range is not in dates.
  function previousRange(q) {
    let from, to;
    if (q.get('from') || q.get('to')) {
      if (!DATE.test(q.get('from') || '') || !DATE.test(q.get('to') || '')) return null;
      from = Date.parse(q.get('from')); to = Date.parse(q.get('to'));
    } else {
      const m = /^(\d+)([dw])$/.exec(q.get('last') || '30d');
      if (!m) return null;
      const n = Number(m[1]) * (m[2] === 'w' ? 7 : 1);
      to = Date.parse(todayIn(zone)) + DAY; from = to - n * DAY;
    }
    if (!(to > from)) return null;
    return new URLSearchParams({ from: iso(from - (to - from)), to: iso(from) });
  }
  // The latest whole day, ISO week or month that has ended by `asOf` (a
  // local date; today when empty), and the one before it, as local dates:
  // the period `tally review` reports counts for.
  function reviewPeriods(period, asOf) {
    const d = Date.parse(asOf || todayIn(zone));
    let end, start, prevStart;
    if (period === 'day') {
      end = d; start = end - DAY; prevStart = start - DAY;
    } else if (period === 'month') {
      const e = new Date(d);
      end = Date.UTC(e.getUTCFullYear(), e.getUTCMonth(), 1);
      start = Date.UTC(e.getUTCFullYear(), e.getUTCMonth() - 1, 1);
      prevStart = Date.UTC(e.getUTCFullYear(), e.getUTCMonth() - 2, 1);
    } else {
      end = d - ((new Date(d).getUTCDay() + 6) % 7) * DAY; // Monday
      start = end - 7 * DAY; prevStart = start - 7 * DAY;
    }
    return {
      cur: new URLSearchParams({ from: iso(start), to: iso(end) }),
      prev: new URLSearchParams({ from: iso(prevStart), to: iso(start) }),
    };
  }

  // ---- the API ----
  async function api(path, params) {
    params = new URLSearchParams(params);
    params.set('tz', zone);
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
  // Event names for the pickers, most frequent first (all time): the
  // names-only answer, which decodes no event.
  let catalog = null;
  async function eventNames() {
    if (!catalog) catalog = (await api('events', new URLSearchParams({ names: 'only' }))).events.map((e) => e.event);
    return catalog;
  }

  // Known property paths for the path inputs: /v1/events over the last 7
  // days of the view's range (the full call reads every event's
  // properties: 21 s over all of a 10M-event store, 1.5 s over a week), for
  // the events the page names (all of them when it names none). Asked when
  // a path input is first used, never before a page draws; any path can be
  // typed meanwhile.
  const pathsAsked = new Map();
  function samplePaths() {
    const { page, q } = state();
    const r = new URLSearchParams();
    const to = q.get('to');
    if (DATE.test(to || '')) {
      r.set('from', iso(Date.parse(to) - 7 * DAY));
      r.set('to', to);
    } else {
      r.set('last', '7d');
    }
    const named = [...(q.get('steps') || '').split(','), q.get('start'), q.get('return'), q.get('event')]
      .filter((n) => n && n !== 'any' && page !== 'overview' && page !== 'active');
    const key = r.toString() + '|' + named.join(',');
    if (pathsAsked.has(key)) return;
    pathsAsked.set(key, true);
    api('events', r).then((ev) => {
      const paths = new Set();
      for (const e of ev.events) if (!named.length || named.includes(e.event)) e.properties.forEach((x) => paths.add(x));
      $('paths').replaceChildren(...[...paths].sort().map((x) => el('option', { value: x })));
      $('paths').dataset.from = key;
    }, () => pathsAsked.delete(key));
  }
  function whereRow(w) {
    const [path, op, value] = splitWhere(w);
    const pi = el('input', { type: 'text', class: 'w-path', list: 'paths', size: 10, placeholder: 'property', autocomplete: 'off', 'aria-label': 'Property path' });
    const vi = el('input', { type: 'text', class: 'w-value', size: 8, placeholder: 'value', 'aria-label': 'Value' });
    pi.value = path; vi.value = value;
    const os = select('', OPS, op);
    os.className = 'w-op';
    os.setAttribute('aria-label', 'Operator');
    os.removeAttribute('id');
    const rm = el('button', { type: 'button', class: 'w-remove', text: '×', 'aria-label': 'Remove filter' });
    const row = el('span', { class: 'where' }, pi, os, vi, rm);
    rm.addEventListener('click', () => row.remove());
    pi.addEventListener('focus', samplePaths);
    return row;
  }
  function writeFilters(q, page) {
    $('where-rows').replaceChildren(...q.getAll('where').map(whereRow));
    $('by').value = q.get('by') || '';
    $('limit').value = q.get('limit') || '';
    $('identity').value = q.get('identity') === 'none' ? 'none' : '';
    $('breakdown').hidden = page === 'active';
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
    overview: async (q) => [
      ctl('Period', select('period', ['day', 'week', 'month'], q.get('period') || 'week')),
      ctl('As of (default now)', input('as_of', 'date', q.get('as_of') || '')),
    ],
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
        ctl('Compare', select('compare', [['previous', 'previous period'], ['none', 'none']], q.get('compare') || 'previous')),
      ];
    },
    active: async () => [],
  };
  // The query the controls describe (written to the URL on Apply).
  function readControls(page) {
    const q = new URLSearchParams();
    if (page === 'overview') {
      // Its range is the review period (period, as_of).
    } else if ($('mode').value === 'range') {
      if ($('from').value) q.set('from', $('from').value);
      if ($('to').value) q.set('to', $('to').value);
    } else {
      q.set('last', ($('last').value || '30') + 'd');
    }
    // Pickers not drawn yet keep the URL's values.
    const old = state().q;
    for (const id of ['steps', 'window', 'start', 'return', 'period', 'periods', 'event', 'count', 'within', 'measure',
      'interval', 'compare', 'as_of']) {
      const e = $(id);
      if (e && $('page-controls').contains(e)) {
        const v = id === 'steps' ? [...e.querySelectorAll('select')].map((s) => s.value).join(',') : e.value;
        if (v) q.set(id, v);
      } else if (old.get(id)) {
        q.set(id, old.get(id));
      }
    }
    for (const row of $('where-rows').querySelectorAll('.where')) {
      const path = row.querySelector('.w-path').value.trim();
      if (path) q.append('where', path + ' ' + row.querySelector('.w-op').value + ' ' + row.querySelector('.w-value').value.trim());
    }
    if (page !== 'active' && $('by').value.trim()) {
      q.set('by', $('by').value.trim());
      if ($('limit').value) q.set('limit', $('limit').value);
    }
    if ($('identity').value === 'none') q.set('identity', 'none');
    q.set('tz', $('tz').value || zone);
    return q;
  }
  function writeZone() {
    const t = $('tz');
    if (!t.options.length || ![...t.options].some((o) => o.value === zone)) {
      const list = zones();
      if (!list.includes(zone)) list.unshift(zone);
      t.replaceChildren(...list.map((z) => el('option', { value: z, text: z })));
    }
    t.value = zone;
  }
  function writeRange(q, page) {
    // The overview's range is its review period.
    $('range').hidden = page === 'overview';
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
      const period = q.get('period') || 'week';
      const asOf = q.get('as_of') || '';
      const rq = new URLSearchParams({ period });
      if (asOf) rq.set('as_of', asOf);
      const { cur: curRange, prev: prevRange } = reviewPeriods(period, asOf);
      // The event list is drawn when it comes, after the report.
      const events = api('events', new URLSearchParams([...curRange, ['names', 'only']]));
      events.catch(() => {}); // reported where it is drawn
      // The filters apply to the lifecycle report (the KPIs carry their
      // own `where` in kpis.toml); a breakdown adds the period's groups.
      const f = filtersOf(q);
      const by = q.get('by') ? new URLSearchParams([...curRange, ...f, ['by', q.get('by')], ...(q.get('limit') ? [['limit', q.get('limit')]] : [])]) : null;
      const [review, cur, old, grouped] = await Promise.all([
        // A missing or bad KPI file is shown in place of the scorecard;
        // the lifecycle report does not depend on it.
        api('review', rq).catch((e) => ({ failed: e })),
        api('lifecycle', new URLSearchParams([...curRange, ...f])),
        api('lifecycle', new URLSearchParams([...prevRange, ...f])),
        by ? api('lifecycle', by) : Promise.resolve(null),
      ]);
      view.append(el('h2', { text: 'KPI scorecard' }));
      if (review.failed) {
        const box = el('div', { id: 'scorecard-error', class: 'error-box' }, el('p', { class: 'error', text: review.failed.message }));
        if (review.failed.status === 500 && /no KPI file/.test(review.failed.message)) {
          box.append(el('p', { class: 'hint', text: 'The scorecard reads kpis.toml in the collector\'s data directory. '
            + 'Write a starter file with `tally review --init --data DIR` on the collector\'s machine, edit its event '
            + 'names, then reload this page (the file is read on every request).' }));
        }
        view.append(box);
      } else {
        view.append(...scorecard(review));
      }
      const row = (label, key, a, b) => el('tr', { 'data-metric': key },
        el('td', { text: label }),
        el('td', { class: 'cur', text: num(a) }),
        el('td', { class: 'prev', text: num(b) }),
        (() => { const d = a === null || b === null ? null : a - b;
          return el('td', { class: 'change ' + (d > 0 ? 'up' : d < 0 ? 'down' : ''), text: signed(d) }); })());
      const kpi = (label, key, v) => el('div', { class: 'kpi', 'data-kpi': key }, label, el('b', { text: num(v) }));
      const span = (r) => r.get('from') + ' to ' + r.get('to');
      view.append(el('h2', { text: 'Lifecycle (AARRR), last whole ' + period }),
        el('p', { class: 'hint', id: 'lifecycle-periods', 'data-from': curRange.get('from'), 'data-to': curRange.get('to'),
          text: 'This ' + period + ': ' + span(curRange) + '; previous: ' + span(prevRange) + ' (local dates in ' + zone + ', end exclusive)' }),
        el('div', { class: 'kpis' },
          kpi('Active users', 'active_users', cur.active_users), kpi('Revenue', 'revenue', cur.revenue),
          kpi('Paying users', 'paying_users', cur.paying_users), kpi('AOV', 'aov', cur.aov), kpi('ARPU', 'arpu', cur.arpu)));
      const rows = [];
      cur.stages.forEach((s, i) => {
        const o = old.stages[i];
        rows.push(row(s.stage + ' users', s.stage + '.users', s.users, o.users));
        rows.push(row(s.stage + ' events', s.stage + '.events', s.events, o.events));
      });
      for (const [label, key] of [['Active users', 'active_users'], ['Revenue', 'revenue'], ['Paying users', 'paying_users'],
        ['Orders', 'orders'], ['AOV', 'aov'], ['ARPU', 'arpu']]) rows.push(row(label, key, cur[key], old[key]));
      view.append(table(['', 'This ' + period, 'Previous', 'Change'], rows, { id: 'lifecycle' }));
      if (grouped) {
        const keys = ['active_users', 'revenue', 'paying_users', 'orders', 'aov', 'arpu'];
        view.append(el('h2', { text: 'Lifecycle by ' + grouped.by + ', this ' + period }),
          table([grouped.by, 'Active users', 'Revenue', 'Paying users', 'Orders', 'AOV', 'ARPU', ...cur.stages.map((s) => s.stage + ' users')],
            grouped.groups.map((g, i) => el('tr', { 'data-group': String(i) }, el('td', { class: 'group', text: groupLabel(g.value) }),
              ...keys.map((k) => el('td', { class: k, text: num(g.result[k]) })),
              ...g.result.stages.map((s) => el('td', { class: s.stage, text: num(s.users) })))), { id: 'lifecycle-by' }),
          more(grouped));
      }
      const box = el('div', { id: 'catalog-box', class: 'spinner', text: 'Loading the events…' });
      view.append(el('h2', { text: 'Events this ' + period }), box);
      const my = generation;
      events.then((ev) => {
        if (my !== generation) return;
        box.className = '';
        box.replaceChildren(table(['Event', 'Count'],
          ev.events.map((e) => el('tr', {}, el('td', { class: 'name', text: e.event }), el('td', { text: num(e.count) }))), { id: 'catalog' }));
        box.dataset.state = 'ready';
      }, (e) => {
        if (my !== generation) return;
        box.className = 'error';
        box.textContent = e.message;
        box.dataset.state = 'error';
      });
    },
    async funnel(q, view) {
      const p = paramsOf(q, 'funnel');
      p.set('steps', q.get('steps') || (await eventNames()).slice(0, 2).join(','));
      p.set('window', q.get('window') || '14d');
      const f = await api('funnel', p);
      // One row per step, or with a breakdown one per step and group (the
      // groups' bars side by side under each step).
      const cells = (r, i, first) => [
        el('td', { class: 'barcell' }, (() => { const b = el('div', { class: 'bar' }); b.style.width = (r.steps[i].conversion_from_first * 100) + '%'; return b; })()),
        el('td', { class: 'users', text: num(r.steps[i].users) }),
        el('td', { class: 'from-prev', text: pct(r.steps[i].conversion_from_previous) }),
        el('td', { class: 'from-first', text: pct(r.steps[i].conversion_from_first) }),
        el('td', { class: 'dropoff', text: i === 0 ? '—' : num(r.steps[i - 1].users - r.steps[i].users) }),
        el('td', { class: 'median', text: dur(r.steps[i].median_seconds_from_previous) }),
      ].map((c) => { if (!first) c.classList.add('in-group'); return c; });
      const head = ['Step', '', 'Users', 'From previous', 'From first', 'Drop-off', 'Median time'];
      if (!f.groups) {
        const rows = f.steps.map((s, i) => el('tr', { 'data-step': String(i) }, el('td', { class: 'name', text: s.event }), ...cells(f, i, true)));
        view.append(el('p', { class: 'hint', id: 'funnel-range', text: f.from + ' to ' + f.to + ', window ' + dur(f.window_seconds) }),
          table(head, rows, { id: 'funnel' }));
        return;
      }
      const rows = [];
      const steps = f.groups.length ? f.groups[0].result.steps : [];
      steps.forEach((s, i) => f.groups.forEach((g, j) => rows.push(el('tr', { 'data-step': String(i), 'data-group': String(j) },
        el('td', { class: 'name', text: j === 0 ? s.event : '' }), el('td', { class: 'group', text: groupLabel(g.value) }),
        ...cells(g.result, i, j === 0)))));
      view.append(el('p', { class: 'hint', id: 'funnel-range', text: 'By ' + f.by + ': each group\'s conversion, its bars side by side under each step' }),
        table(['Step', f.by, ...head.slice(1)], rows, { id: 'funnel-by' }), more(f));
    },
    async retention(q, view) {
      const names = q.get('start') ? [] : await eventNames();
      const p = paramsOf(q, 'retention');
      p.set('start', q.get('start') || names[0]);
      p.set('return', q.get('return') || p.get('start'));
      p.set('period', q.get('period') || 'week');
      p.set('periods', q.get('periods') || '8');
      const r = await api('retention', p);
      // One heatmap per group with a breakdown.
      if (r.groups) return groups(r, view, (g, box) => retentionBlock(g, box, { class: 'retention' }));
      retentionBlock(r, view, { id: 'retention' });
    },
    async activation(q, view) {
      const names = q.get('start') && q.get('event') ? [] : await eventNames();
      const p = paramsOf(q, 'activation');
      p.set('start', q.get('start') || names[0]);
      p.set('event', q.get('event') || names[1] || names[0]);
      p.set('count', q.get('count') || '1');
      p.set('within', q.get('within') || '30d');
      const a = await api('activation', p);
      if (a.groups) return groups(a, view, (g, box) => activationBlock(g, box, { class: 'activation' }));
      activationBlock(a, view, { id: 'activation' });
    },
    trends,
    async active(q, view) {
      const a = await api('active', paramsOf(q, 'active'));
      const xs = a.days.map((d) => Date.parse(d.day) / 1000);
      chart(view, xs, ['dau', 'wau', 'mau'].map((k) => ({ label: k.toUpperCase(), values: a.days.map((d) => d[k]) })));
      chart(view, xs, [{ label: 'Stickiness (DAU/MAU)', values: a.days.map((d) => d.stickiness) }]);
      view.append(table(['Day', 'DAU', 'WAU', 'MAU', 'Stickiness'], a.days.map((d) => el('tr', { 'data-day': d.day },
        el('td', { text: d.day }), el('td', { class: 'dau', text: num(d.dau) }), el('td', { class: 'wau', text: num(d.wau) }),
        el('td', { class: 'mau', text: num(d.mau) }), el('td', { class: 'stickiness', text: pct(d.stickiness) }))), { id: 'active' }));
    },
  };
  // "N more groups" under a breakdown that --limit cut.
  function more(r) {
    return r.other_groups > 0 ? el('p', { class: 'more', id: 'other-groups', text: r.other_groups + ' more group' + (r.other_groups === 1 ? '' : 's') })
      : document.createTextNode('');
  }
  // A breakdown drawn as one block per group, headed by its value (text).
  function groups(r, view, draw) {
    if (!r.groups.length) view.append(el('p', { class: 'hint', text: 'No group: nothing matched.' }));
    r.groups.forEach((g, i) => {
      const box = el('section', { class: 'group', 'data-group': String(i) }, el('h3', { class: 'group-value', text: r.by + ': ' + groupLabel(g.value) }));
      draw(g.result, box);
      view.append(box);
    });
    view.append(more(r));
  }
  function retentionBlock(r, view, attrs) {
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
      table(head, rows, attrs));
  }
  function activationBlock(a, view, attrs) {
    const kpi = (label, key, v) => el('div', { class: 'kpi', 'data-kpi': key }, label, el('b', { text: v }));
    view.append(el('div', { class: 'kpis' }, kpi('Cohort', 'cohort_size', num(a.cohort_size)), kpi('Activated', 'activated', num(a.activated)),
      kpi('Rate', 'rate', pct(a.rate)), kpi('Rate (mature only)', 'mature_rate', pct(a.mature.rate)),
      kpi('Median time', 'median', dur(a.median_seconds_to_activate))));
    const rows = a.by_week.map((w) => el('tr', { 'data-cohort': w.cohort }, el('td', { text: w.cohort }),
      el('td', { class: 'size', text: num(w.cohort_size) }), el('td', { class: 'activated', text: num(w.activated) }),
      el('td', { class: 'rate', text: pct(w.rate) }),
      el('td', { class: 'barcell' }, (() => { const b = el('div', { class: 'bar' }); b.style.width = (w.rate * 100) + '%'; return b; })()),
      el('td', { class: 'status ' + (w.mature ? '' : 'running'), text: w.mature ? 'complete' : 'still running' })));
    view.append(table(['Cohort week', 'Size', 'Activated', 'Rate', '', ''], rows, attrs));
  }
  async function trends(q, view) {
    const p = paramsOf(q, 'trends');
    p.set('event', q.get('event') || 'any');
    p.set('measure', q.get('measure') || 'events');
    p.set('interval', q.get('interval') || 'day');
    // The same query over the range of equal length just before.
    if (q.get('by')) return trendGroups(await api('trend', p), view);
    const prevRange = (q.get('compare') || 'previous') === 'previous' ? previousRange(q) : null;
    const pp = prevRange && new URLSearchParams([...prevRange, ...[...p].filter(([k]) => !['from', 'to', 'last'].includes(k))]);
    const [t, old] = await Promise.all([api('trend', p), pp ? api('trend', pp) : Promise.resolve(null)]);
    const kpis = el('div', { class: 'kpis' }, el('div', { class: 'kpi', 'data-kpi': 'total' }, 'Total ' + t.measure, el('b', { text: num(t.total) })));
    if (old) kpis.append(el('div', { class: 'kpi', 'data-kpi': 'previous_total' }, 'Previous period', el('b', { text: num(old.total) })));
    view.append(kpis);
    if (old) {
      view.append(el('p', { class: 'hint', id: 'trend-previous', 'data-from': pp.get('from'), 'data-to': pp.get('to'),
        text: 'Previous period: ' + pp.get('from') + ' to ' + pp.get('to') + ' (end exclusive), drawn bucket by bucket under this one' }));
    }
    // The previous series is drawn against this one's buckets, the i-th
    // bucket of each together.
    const n = Math.max(t.series.length, old ? old.series.length : 0);
    const series = [{ label: t.measure, values: t.series.map((s) => s.value) }];
    if (old) series.push({ label: 'previous period', values: Array.from({ length: t.series.length }, (_, i) => (old.series[i] ? old.series[i].value : null)), dash: [6, 4] });
    chart(view, t.series.map((s) => Date.parse(s.bucket) / 1000), series);
    const rows = Array.from({ length: n }, (_, i) => {
      const c = t.series[i], o = old && old.series[i];
      const cells = [el('td', { text: c ? c.bucket : '' }), el('td', { class: 'value', text: c ? num(c.value) : '' })];
      if (old) cells.push(el('td', { class: 'prev-bucket', text: o ? o.bucket : '' }), el('td', { class: 'prev-value', text: o ? num(o.value) : '' }));
      return el('tr', {}, ...cells);
    });
    view.append(table(old ? ['Bucket', t.measure, 'Previous bucket', 'Previous ' + t.measure] : ['Bucket', t.measure], rows, { id: 'trend' }));
  }
  // A trend by group: one line per group, a column per group, the totals
  // last (no comparison with the previous period).
  function trendGroups(t, view) {
    const gs = t.groups;
    const first = gs.length ? gs[0].result : { measure: '', series: [] };
    view.append(el('p', { class: 'hint', id: 'trend-by', text: 'By ' + t.by + ', one line per group (no comparison with the previous period in a breakdown)' }));
    chart(view, first.series.map((s) => Date.parse(s.bucket) / 1000), gs.map((g) => ({ label: groupLabel(g.value), values: g.result.series.map((s) => s.value) })));
    const rows = first.series.map((s, i) => el('tr', { 'data-bucket': s.bucket }, el('td', { text: s.bucket }),
      ...gs.map((g) => el('td', { class: 'value', text: num(g.result.series[i].value) }))));
    rows.push(el('tr', { class: 'total' }, el('td', { text: 'Total' }), ...gs.map((g) => el('td', { class: 'total', text: num(g.result.total) }))));
    view.append(table(['Bucket', ...gs.map((g) => groupLabel(g.value))], rows, { id: 'trend-groups' }), more(t));
  }
  // ---- the KPI scorecard (SPEC §6), from /v1/review's JSON ----
  const STAGES = ['discovery', 'acquisition', 'activation', 'engagement', 'retention', 'revenue', 'referral'];
  const RATES = ['funnel', 'activation', 'retention'];
  // Rates as percentages (changes in percentage points), ratios to four
  // places, everything else as the other pages show numbers.
  function kpiValue(k, v) {
    if (v === null || v === undefined) return '—';
    if (RATES.includes(k.metric)) return pct(v);
    if (k.metric === 'ratio') return v.toFixed(4);
    return num(v);
  }
  function kpiChange(k) {
    const c = k.change;
    if (c === null || c === undefined) return '—';
    const arrow = c > 0 ? '▲ ' : c < 0 ? '▼ ' : '';
    const sign = c > 0 ? '+' : '';
    if (RATES.includes(k.metric)) return arrow + sign + (c * 100).toFixed(1) + ' pp';
    if (k.metric === 'ratio') return arrow + sign + c.toFixed(4);
    return arrow + signed(c);
  }
  function scorecard(r) {
    const byName = new Map(r.kpis.map((k) => [k.name, k]));
    const out = [];
    out.push(el('p', { class: 'hint', id: 'review-as-of', text: 'Each KPI is reported for the latest ' + r.period
      + ' that has ended and matured by ' + localTime(r.as_of) + ' (' + zone + '), against the ' + r.period + ' before; dates are local, ends exclusive.' }));
    out.push(r.tripped.length
      ? el('p', { class: 'tripped-banner', id: 'tripped', text: 'Tripwire tripped: ' + r.tripped.join(', ') })
      : el('p', { class: 'ok-banner', id: 'tripped', text: 'No tripwire tripped.' }));
    if (!r.kpis.length) {
      out.push(el('p', { class: 'hint', text: 'kpis.toml defines no KPI.' }));
      return out;
    }
    const rows = [];
    const groups = [...STAGES.map((s) => [s, r.kpis.filter((k) => k.stage === s)]),
      [null, r.kpis.filter((k) => !STAGES.includes(k.stage))]];
    for (const [stage, kpis] of groups) {
      if (!kpis.length) continue;
      rows.push(el('tr', { class: 'stage-row' }, el('th', { colspan: '8', text: stage || 'no stage' })));
      for (const k of kpis) {
        const target = k.target === null ? '—'
          : k.target + (k.target_met === true ? ' ✓ met' : k.target_met === false ? ' ✗ missed' : ' (no value)');
        const trip = k.tripwire === null ? '—' : k.tripwire + (k.tripped ? ' ⚠ TRIPPED' : ' ok');
        // Its pairs beside it, under its name: each pair's value and change.
        const name = el('td', { class: 'kname' }, el('span', { class: 'kname-text', text: k.name }));
        for (const pn of k.pair) {
          const p = byName.get(pn);
          name.append(el('span', { class: 'pair', text: '↔ ' + pn + ': ' + (p ? kpiValue(p, p.value) + ' (' + kpiChange(p) + ')' : 'not in the file') }));
        }
        const cls = ['kpi-row', k.tripped ? 'tripped' : '', k.target_met === true ? 'met' : k.target_met === false ? 'missed' : ''];
        const row = el('tr', { class: cls.join(' ').trim(), 'data-stage': k.stage || '' },
          name,
          el('td', { class: 'value', text: kpiValue(k, k.value) }),
          el('td', { class: 'change ' + (k.change > 0 ? 'up' : k.change < 0 ? 'down' : ''), text: kpiChange(k) }),
          el('td', { class: 'previous', text: kpiValue(k, k.previous.value) }),
          el('td', { class: 'ratio', text: k.numerator === null || k.denominator === null ? '—' : num(k.numerator) + ' / ' + num(k.denominator) }),
          el('td', { class: 'target' + (k.target_met === false ? ' down' : k.target_met === true ? ' up' : ''), text: target }),
          el('td', { class: 'tripwire' + (k.tripped ? ' down' : ''), text: trip }),
          el('td', { class: 'period', 'data-from': k.from, 'data-to': k.to, text: localTime(k.from) + ' – ' + localTime(k.to),
            title: 'previous: ' + localTime(k.previous.from) + ' – ' + localTime(k.previous.to) }));
        row.dataset.kpiName = k.name; // an attribute value, never markup
        rows.push(row);
      }
    }
    out.push(table(['KPI (↔ paired with)', 'Value', 'Change', 'Previous', 'Of', 'Target', 'Tripwire', 'Period'], rows, { id: 'scorecard' }));
    return out;
  }

  const COLORS = ['#366edc', '#17803d', '#b4541a', '#7a3bc4'];
  function chart(view, xs, series) {
    const box = el('div', { class: 'chart' });
    view.append(box);
    if (typeof uPlot === 'undefined' || xs.length === 0) return;
    // `view` is not in the document yet: size to the page's view.
    const width = Math.max(240, Math.min($('view').clientWidth || 800, 1100) - 4);
    new uPlot({
      // Bucket labels are local dates; they are drawn as UTC midnights.
      width, height: 220, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      series: [{}, ...series.map((s, i) => Object.assign({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2 }, s.dash ? { dash: s.dash } : {}))],
    }, [xs, ...series.map((s) => s.values)], box);
  }

  async function render() {
    const my = ++generation;
    const { page, q } = state();
    if (!q.get('tz')) {
      // Every view's URL names its zone (no hashchange: this render goes on).
      q.set('tz', browserZone());
      history.replaceState(null, '', '#' + page + '?' + q.toString());
    }
    zone = q.get('tz');
    writeZone();
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('current', a.getAttribute('href') === '#' + page);
    const view = $('view');
    view.replaceChildren();
    writeRange(q, page);
    writeFilters(q, page);
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
    $('add-where').addEventListener('click', () => {
      const row = whereRow('');
      $('where-rows').append(row);
      samplePaths();
      row.querySelector('.w-path').focus();
    });
    $('by').addEventListener('focus', samplePaths);
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
        for (const k of ['from', 'to', 'last', 'tz', 'identity', 'by', 'limit']) if (q.get(k)) keep.set(k, q.get(k));
        for (const w of q.getAll('where')) keep.append('where', w);
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
