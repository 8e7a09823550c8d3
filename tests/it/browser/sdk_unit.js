// Unit tests of the browser SDK's pure parts, run in Chromium by
// tests/it/browser.rs; the outcome goes into <pre id="result">.
(() => {
  const t = tally._test;
  const fails = [];
  const check = (ok, what) => { if (!ok) fails.push(what); };

  // UUIDv7: format, version, variant, time prefix, distinct.
  const re = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  const ids = new Set();
  for (let i = 0; i < 1000; i++) {
    const id = t.uuidv7();
    check(re.test(id), `uuidv7 format: ${id}`);
    ids.add(id);
  }
  check(ids.size === 1000, "uuidv7 ids repeat");
  const ms = 1767225600123; // 2026-01-01T00:00:00.123Z
  const id = t.uuidv7(ms);
  check(parseInt(id.slice(0, 8) + id.slice(9, 13), 16) === ms, `uuidv7 time: ${id}`);
  check(t.uuidv7(ms) < t.uuidv7(ms + 1), "uuidv7 sorts by time");

  // The bounded queue drops the oldest.
  const q = [];
  let dropped = 0;
  for (let i = 0; i < 1005; i++) dropped += t.push(q, i, 1000);
  check(q.length === 1000 && q[0] === 5 && q[999] === 1004 && dropped === 5, "queue bound");

  // Backoff: full jitter under an exponential cap.
  check(t.backoff(0, 1000, 30000, () => 0.999) === 999, "backoff attempt 0");
  check(t.backoff(3, 1000, 30000, () => 0.5) === 4000, "backoff attempt 3");
  check(t.backoff(10, 1000, 30000, () => 0.999) === 29970, "backoff capped");
  check(t.backoff(5000, 1000, 30000, () => 0) === 0, "backoff jitter down to 0");
  for (let a = 0; a < 20; a++) {
    const d = t.backoff(a, 100, 5000);
    check(d >= 0 && d < Math.min(5000, 100 * 2 ** a), `backoff bounds at ${a}: ${d}`);
  }

  // SPEC §1 limits, checked before queueing.
  check(t.invalid("a".repeat(200), {}) === null, "200-byte name is valid");
  check(t.invalid("é".repeat(101), {}) !== null, "202-byte name is invalid");
  check(t.invalid("", {}) !== null, "empty name is invalid");
  check(t.invalid("a\nb", {}) !== null, "control character");
  check(t.invalid("x", { s: "y".repeat(32 * 1024) }) !== null, "properties over 32 KiB");
  check(t.invalid("x", { s: "y".repeat(32 * 1024 - 10) }) === null, "properties at 32 KiB");

  // What goes on the wire: sent_at on every attempt, the ids, register
  // (an event's own key wins), reset.
  const sent = [];
  const realFetch = window.fetch;
  window.fetch = (url, opts) => {
    sent.push(JSON.parse(opts.body));
    return realFetch(url, opts);
  };
  const anon = tally.anonymousId();
  tally.register({ app: "unit", plan: "free" });
  tally.identify("unit-user");
  tally.track("unit_event", { plan: "pro" });
  tally.flush();
  setTimeout(() => {
    window.fetch = realFetch;
    const batch = sent.length ? sent[0].batch : [];
    check(batch.length === 2, `one batch of identify + unit_event: ${JSON.stringify(sent)}`);
    for (const e of batch) {
      check(re.test(e.id), `wire id: ${e.id}`);
      check(typeof e.sent_at === "string" && !isNaN(Date.parse(e.sent_at)), `sent_at: ${e.sent_at}`);
      check(e.anonymous_id === anon && e.user_id === "unit-user", `ids: ${JSON.stringify(e)}`);
    }
    const ev = batch.find((e) => e.event === "unit_event") || {};
    check(JSON.stringify(ev.properties) === '{"app":"unit","plan":"pro"}', `register: ${JSON.stringify(ev.properties)}`);
    tally.reset();
    check(tally.anonymousId() !== anon && tally.userId() === null, "reset");
    check(localStorage.getItem("tally_anon_id") === tally.anonymousId(), "anonymous id persisted");
    check(localStorage.getItem("tally_props") === null, "reset forgets registered properties");
    document.getElementById("result").textContent = fails.length ? fails.join("\n") : "ok";
  }, 300);
})();
