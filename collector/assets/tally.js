/* Tally browser SDK, served by the collector at GET /sdk.js.
 * Plain modern JavaScript with JSDoc types; no dependencies, no build step.
 * Usage:
 *   <script src="https://tally.example.com/sdk.js"></script>
 *   <script>tally.init({ host: "https://tally.example.com", key: "WRITE_KEY" });</script>
 * API and behaviour: docs/browser-sdk.md. SPEC §1 is the event format. */
(() => {
  "use strict";

  /** @typedef {{host?: string, key: string, batchSize?: number, flushInterval?: number,
   *   maxQueue?: number, retryBase?: number, retryMax?: number, autoPageViews?: boolean}} Options */
  /** @typedef {{stage?: string, revenue?: number}} TrackOptions */

  const STORE = "tally_"; // localStorage key prefix
  const MAX_NAME = 200; // bytes (SPEC §1)
  const MAX_PROPS = 32 * 1024; // bytes of compact JSON (SPEC §1)
  const BEACON_BYTES = 60000; // browsers cap a beacon's queued bytes near 64 KiB
  const STAGES = ["discovery", "acquisition", "activation", "engagement", "retention", "revenue", "referral"];
  const UTM = ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"];
  const enc = new TextEncoder();
  /** @param {string} s */
  const bytes = (s) => enc.encode(s).length;

  /** A UUIDv7 (RFC 9562): 48 bits of Unix ms, version 7, variant 10, random rest.
   * @param {number} [now] @returns {string} */
  function uuidv7(now = Date.now()) {
    const b = crypto.getRandomValues(new Uint8Array(16));
    for (let i = 0; i < 6; i++) b[i] = Math.floor(now / 2 ** (8 * (5 - i))) & 0xff;
    b[6] = (b[6] & 0x0f) | 0x70;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  /** Full-jitter exponential backoff: a random delay in [0, min(max, base * 2^attempt)).
   * @param {number} attempt 0 for the first retry @param {number} base ms @param {number} max ms
   * @param {() => number} [rnd] @returns {number} ms */
  function backoff(attempt, base, max, rnd = Math.random) {
    return Math.floor(rnd() * Math.min(max, base * 2 ** Math.min(attempt, 30)));
  }

  /** Appends to a queue bounded at `max`, dropping the oldest beyond it.
   * @template T @param {T[]} q @param {T} item @param {number} max @returns {number} dropped */
  function push(q, item, max) {
    q.push(item);
    const over = Math.max(0, q.length - max);
    q.splice(0, over);
    return over;
  }

  /** Why an event breaks SPEC §1's limits, or null.
   * @param {string} name @param {object} props @returns {string | null} */
  function invalid(name, props) {
    if (typeof name !== "string" || bytes(name) < 1 || bytes(name) > MAX_NAME) return "event name must be 1 to 200 bytes";
    if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) return "event name has a control character";
    if (bytes(JSON.stringify(props)) > MAX_PROPS) return "properties exceed 32 KiB";
    return null;
  }

  /** @param {string} k @returns {string | null} */
  const load = (k) => { try { return localStorage.getItem(STORE + k); } catch { return null; } };
  /** @param {string} k @param {string | null} v */
  const save = (k, v) => {
    try { v === null ? localStorage.removeItem(STORE + k) : localStorage.setItem(STORE + k, v); } catch { /* private mode, full */ }
  };
  const warn = (/** @type {string} */ m) => console.warn(`tally: ${m}`);

  const script = /** @type {HTMLScriptElement | null} */ (document.currentScript);
  /** @type {Required<Options> | null} */
  let cfg = null;
  /** @type {object[]} events not yet acknowledged (persisted, so a reload or a
   * collector that is down loses nothing; the collector deduplicates by id) */
  let queue = [];
  try { queue = JSON.parse(load("queue") || "[]"); } catch { queue = []; }
  let anon = load("anon_id") || newAnon();
  let user = load("user_id");
  /** @type {Record<string, unknown>} */
  let registered = {};
  try { registered = JSON.parse(load("props") || "{}"); } catch { registered = {}; }
  let sending = false;
  let attempt = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let retryTimer;
  let lastPage = "";
  /** ids already handed to sendBeacon by this page (hidden, then closed: once) */
  const beaconed = new Set();

  function newAnon() {
    const id = uuidv7();
    save("anon_id", id);
    return id;
  }
  const optedOut = () => load("opt_out") === "1";
  const persist = () => save("queue", JSON.stringify(queue));

  /** Sends a batch of queued events; on success drops them from the queue. */
  async function flush() {
    if (!cfg || sending || retryTimer || !queue.length || optedOut()) return;
    sending = true;
    const batch = queue.slice(0, cfg.batchSize);
    const sentAt = new Date().toISOString();
    let retry = false;
    try {
      const res = await fetch(`${cfg.host}/v1/batch`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${cfg.key}` },
        body: JSON.stringify({ batch: batch.map((e) => ({ ...e, sent_at: sentAt })) }),
        keepalive: false,
      });
      if (res.status === 429 || res.status >= 500) retry = true;
      else {
        if (!res.ok) warn(`events dropped: ${res.status} ${await res.text()}`);
        else for (const r of (await res.json()).rejected || []) warn(`event rejected: ${r.error}`);
        const sent = new Set(batch.map((e) => e.id));
        queue = queue.filter((e) => !sent.has(e.id));
        persist();
        attempt = 0;
      }
    } catch {
      retry = true; // network error, collector down, CORS refused
    }
    sending = false;
    if (retry) {
      retryTimer = setTimeout(() => { retryTimer = undefined; flush(); }, backoff(attempt++, cfg.retryBase, cfg.retryMax));
    } else if (queue.length >= cfg.batchSize) flush();
  }

  /** The page is going away: hand everything queued to sendBeacon (text/plain,
   * the key in the body). The queue stays persisted; a later page load resends
   * whatever is left and the collector drops duplicates by id. */
  function beacon() {
    if (!cfg || !queue.length || optedOut() || !navigator.sendBeacon) return;
    const sentAt = new Date().toISOString();
    const url = `${cfg.host}/v1/batch`;
    let part = [];
    let size = 0;
    const send = () => {
      if (part.length) navigator.sendBeacon(url, JSON.stringify({ key: cfg.key, batch: part }));
      part = [];
      size = 0;
    };
    for (const e of queue) {
      if (beaconed.has(e.id)) continue;
      beaconed.add(e.id);
      const s = bytes(JSON.stringify(e)) + 64;
      if (size + s > BEACON_BYTES || part.length >= 100) send();
      part.push({ ...e, sent_at: sentAt });
      size += s;
    }
    send();
  }

  /** Queues an event.
   * @param {string} event @param {Record<string, unknown>} [properties] @param {TrackOptions} [opts] */
  function track(event, properties = {}, opts = {}) {
    if (optedOut()) return;
    const props = { ...registered, ...properties };
    const why = invalid(event, props);
    if (why) return warn(`${why}; "${String(event).slice(0, 50)}" not sent`);
    /** @type {Record<string, unknown>} */
    const e = { id: uuidv7(), event, anonymous_id: anon, timestamp: new Date().toISOString(), properties: props };
    if (user) e.user_id = user;
    if (opts.stage) {
      if (STAGES.includes(opts.stage)) e.stage = opts.stage;
      else warn(`unknown stage "${opts.stage}" left out`);
    }
    if (typeof opts.revenue === "number" && isFinite(opts.revenue)) e.revenue = opts.revenue;
    if (push(queue, e, cfg ? cfg.maxQueue : 1000)) warn("queue full: oldest event dropped");
    persist();
    if (cfg && queue.length >= cfg.batchSize) flush();
  }

  /** Tracks a `page_view` (stage discovery) with the path, title, referrer and UTM tags. */
  function page() {
    const here = location.pathname + location.search;
    if (here === lastPage) return;
    lastPage = here;
    const q = new URLSearchParams(location.search);
    /** @type {Record<string, string>} */
    const p = { path: location.pathname, title: document.title, referrer: document.referrer };
    for (const k of UTM) { const v = q.get(k); if (v) p[k] = v; }
    track("page_view", p, { stage: "discovery" });
  }

  /** Links this browser's anonymous id to `userId` (an `identify` event with
   * both ids, SPEC §1); later events carry the user id.
   * @param {string} userId */
  function identify(userId) {
    userId = String(userId);
    if (!userId || bytes(userId) > 255) return warn("user id must be 1 to 255 bytes");
    if (userId === user) return;
    user = userId;
    save("user_id", user);
    track("identify");
  }

  /** Logout: forgets the user and registered properties; a new anonymous id. */
  function reset() {
    user = null;
    registered = {};
    save("user_id", null);
    save("props", null);
    anon = newAnon();
  }

  /** Properties sent with every later event (persisted); an event's own win.
   * @param {Record<string, unknown>} props */
  function register(props) {
    registered = { ...registered, ...props };
    save("props", JSON.stringify(registered));
  }

  /** Stops sending and queueing (persisted), dropping what is queued. */
  function optOut() {
    save("opt_out", "1");
    queue = [];
    persist();
  }

  function optIn() {
    save("opt_out", null);
  }

  /** Starts sending; tracks the first page view unless autoPageViews is false.
   * @param {Options} options */
  function init(options) {
    if (cfg) return;
    const from = script && script.src ? new URL(script.src).origin : "";
    cfg = {
      host: from, batchSize: 20, flushInterval: 3000, maxQueue: 1000, retryBase: 1000, retryMax: 30000,
      autoPageViews: true, ...options,
    };
    cfg.host = cfg.host.replace(/\/+$/, "");
    if (!cfg.key) warn("init needs the write key: init({host, key})");
    setInterval(flush, cfg.flushInterval);
    addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") beacon(); });
    addEventListener("pagehide", beacon);
    if (cfg.autoPageViews) {
      for (const m of /** @type {const} */ (["pushState", "replaceState"])) {
        const orig = history[m];
        history[m] = function (...args) {
          const r = orig.apply(this, args);
          setTimeout(page); // after the app has set the new title
          return r;
        };
      }
      addEventListener("popstate", () => setTimeout(page));
      page();
    }
    flush();
  }

  const api = {
    init, track, page, identify, reset, register, optOut, optIn, flush,
    /** @returns {string} */ anonymousId: () => anon,
    /** @returns {string | null} */ userId: () => user,
    /** For the SDK's own tests. */
    _test: { uuidv7, backoff, push, invalid, queue: () => queue },
  };
  /** @type {any} */ (window).tally = api;
  if (script && script.dataset.key) init({ key: script.dataset.key, host: script.dataset.host });
})();
