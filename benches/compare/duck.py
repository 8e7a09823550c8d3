"""Tally's data model and analyses in DuckDB, written from SPEC.md alone.

`load` validates and deduplicates NDJSON wire-form events as SPEC §1 says
and keeps them in a native table (properties as JSON); `funnel`,
`retention`, `activation`, `lifecycle`, `active` and `trend` compute SPEC
§4's numbers in SQL, with §1's identity linking (or `--identity none`),
§5's `--where` filters and `--by` groups, and return SPEC's JSON shapes, so
that compare.py can check Tally against them number for number.

Times are Unix milliseconds (BIGINT) throughout, so nothing depends on a
time-zone setting or on DuckDB's microsecond timestamps.
"""

from __future__ import annotations

import datetime as dt
import time

DAY_MS = 86_400_000
MIN_EVENT_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_FUTURE_MS = 3_600_000
STAGES = [
    "discovery",
    "acquisition",
    "activation",
    "engagement",
    "retention",
    "revenue",
    "referral",
]
FIELDS = [
    "id",
    "event",
    "user_id",
    "anonymous_id",
    "timestamp",
    "sent_at",
    "stage",
    "revenue",
    "properties",
]

# SPEC §1's RFC 3339 dialect: 'T' or 't', optional fraction (digits below
# the millisecond truncated), 'Z'/'z' or +hh:mm; range checks in SQL below.
RFC3339 = (
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?"
    r"([Zz]|[+-]\d{2}:\d{2})$"
)


def q(s: str) -> str:
    """A SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


def parse_time(s: str) -> int:
    """A command-line time (date or RFC 3339 with Z) as Unix ms."""
    if len(s) == 10:
        d = dt.datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    else:
        d = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    return int(d.timestamp() * 1000)


def rfc3339(ms: int) -> str:
    d = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
    if ms % 1000:
        return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def time_sql(typ: str, text: str) -> str:
    """SQL for a wire-form time field (JSON type `typ`, text `text`) as
    Unix ms, NULL when absent or invalid (the caller tells those apart).
    Once the pattern matches, the fields are at fixed positions."""
    t = text
    return f"""CASE
        WHEN {typ} IN ('UBIGINT', 'BIGINT') THEN TRY_CAST({t} AS BIGINT)
        WHEN {typ} = 'VARCHAR' AND regexp_full_match({t}, {q(RFC3339)})
            AND substr({t}, 12, 2)::INT <= 23 AND substr({t}, 15, 2)::INT <= 59
            AND substr({t}, 18, 2)::INT <= 59
            AND (right({t}, 1) IN ('Z', 'z')
                 OR (substr(right({t}, 5), 1, 2)::INT <= 23 AND right({t}, 2)::INT <= 59))
            AND TRY_CAST(substr({t}, 1, 10) AS DATE) IS NOT NULL
        THEN (CAST(substr({t}, 1, 10) AS DATE) - DATE '1970-01-01')::BIGINT * 86400000
            + substr({t}, 12, 2)::BIGINT * 3600000 + substr({t}, 15, 2)::BIGINT * 60000
            + substr({t}, 18, 2)::BIGINT * 1000
            + CASE WHEN substr({t}, 20, 1) = '.'
                   THEN rpad(regexp_extract(substr({t}, 21, 3), '^[0-9]*'), 3, '0')::BIGINT
                   ELSE 0 END
            - CASE WHEN right({t}, 1) IN ('Z', 'z') THEN 0
                   ELSE (CASE WHEN substr(right({t}, 6), 1, 1) = '-' THEN -1 ELSE 1 END)
                        * (substr(right({t}, 5), 1, 2)::BIGINT * 3600000
                           + right({t}, 2)::BIGINT * 60000) END
    END"""


def absent(typ: str) -> str:
    """A wire-form optional field is absent when missing or JSON null."""
    return f"({typ} IS NULL OR {typ} = 'NULL')"


def key_ok(typ: str, text: str) -> str:
    return f"({absent(typ)} OR ({typ} = 'VARCHAR' AND strlen({text}) BETWEEN 1 AND 255))"


def load(con, path: str, lines: int) -> dict:
    """Loads NDJSON at `path` into table `events`, validated and
    deduplicated per SPEC §1. Returns counts and timings."""
    received = int(time.time() * 1000)
    fields = ", ".join(q(f) for f in FIELDS)
    stages = ", ".join(q(s) for s in STAGES)
    # Each field as raw JSON, parsed once per line.
    shape = "{" + ", ".join(f'"{f}": "JSON"' for f in FIELDS) + "}"
    uuid_re = "-".join("[0-9a-fA-F]{%d}" % n for n in (8, 4, 4, 4, 12))
    t0 = time.perf_counter()
    con.execute("DROP TABLE IF EXISTS events")
    # One JSON object per line; lines that are not JSON are dropped by the
    # reader and counted as rejected from the line count. Row numbers
    # follow the file (DuckDB preserves insertion order), so "the first
    # valid event is kept" keeps the earliest line.
    con.execute(
        f"""
        CREATE TEMP TABLE raw AS
        SELECT row_number() OVER () AS line, json AS j
        FROM read_json_objects({q(path)}, format = 'newline_delimited', ignore_errors = true)
        """
    )
    con.execute(
        f"""
        CREATE TEMP TABLE typed AS
        WITH f AS (
            SELECT line, json_type(j) AS jt, json_keys(j) AS keys,
                CASE WHEN json_type(j) = 'OBJECT' THEN json_transform(j, {q(shape)}) END AS f
            FROM raw
        )
        SELECT line, jt, keys,
            json_type(f.id) AS id_t, f.id->>'$' AS id,
            json_type(f.event) AS event_t, f.event->>'$' AS event,
            json_type(f.user_id) AS user_t, f.user_id->>'$' AS user_id,
            json_type(f.anonymous_id) AS anon_t, f.anonymous_id->>'$' AS anonymous_id,
            json_type(f.timestamp) AS ts_t, f.timestamp->>'$' AS ts_text,
            json_type(f.sent_at) AS sent_t, f.sent_at->>'$' AS sent_text,
            json_type(f.stage) AS stage_t, f.stage->>'$' AS stage,
            json_type(f.revenue) AS revenue_t, f.revenue->>'$' AS revenue_text,
            json_type(f.properties) AS props_t, f.properties AS properties
        FROM f
        """
    )
    con.execute("DROP TABLE raw")
    con.execute(
        f"""
        CREATE TEMP TABLE timed AS
        SELECT *, {time_sql('ts_t', 'ts_text')} AS ts_raw,
            {time_sql('sent_t', 'sent_text')} AS sent_raw
        FROM typed
        """
    )
    con.execute("DROP TABLE typed")
    con.execute(
        f"""
        CREATE TEMP TABLE valid AS
        WITH checked AS (
            SELECT * FROM timed
            WHERE jt = 'OBJECT'
            AND len(list_filter(keys, lambda k: NOT list_contains([{fields}], k))) = 0
            AND ({absent('id_t')} OR (id_t = 'VARCHAR' AND regexp_full_match(id, {q(uuid_re)})))
            AND event_t = 'VARCHAR' AND strlen(event) BETWEEN 1 AND 200
            AND NOT regexp_matches(event, '[\\x{{00}}-\\x{{1F}}\\x{{7F}}-\\x{{9F}}]')
            AND {key_ok('user_t', 'user_id')} AND {key_ok('anon_t', 'anonymous_id')}
            AND NOT ({absent('user_t')} AND {absent('anon_t')})
            AND ({absent('ts_t')} OR ts_raw IS NOT NULL)
            AND ({absent('sent_t')} OR sent_raw IS NOT NULL)
            AND ({absent('stage_t')} OR (stage_t = 'VARCHAR' AND stage IN ({stages})))
            AND ({absent('revenue_t')} OR (revenue_t IN ('DOUBLE', 'BIGINT', 'UBIGINT')
                 AND isfinite(revenue_text::DOUBLE)))
            AND ({absent('props_t')} OR (props_t = 'OBJECT'
                 AND strlen(json(properties)::VARCHAR) <= 32768))
        )
        -- The timestamp defaults to the time received, is corrected by
        -- sent_at (Segment's rule), then bounded (both bounds inclusive).
        SELECT * FROM (
            SELECT line,
                CASE WHEN {absent('id_t')} THEN NULL ELSE lower(id) END AS id,
                event,
                CASE WHEN {absent('user_t')} THEN NULL ELSE user_id END AS user_id,
                CASE WHEN {absent('anon_t')} THEN NULL ELSE anonymous_id END AS anonymous_id,
                coalesce(ts_raw, {received})
                  + CASE WHEN sent_raw IS NULL THEN 0 ELSE {received} - sent_raw END AS ts,
                CASE WHEN {absent('stage_t')} THEN NULL ELSE stage END AS stage,
                CASE WHEN {absent('revenue_t')} THEN NULL ELSE revenue_text::DOUBLE END AS revenue,
                CASE WHEN {absent('props_t')} THEN NULL ELSE json(properties) END AS properties
            FROM checked
        )
        WHERE ts BETWEEN {MIN_EVENT_MS} AND {received + MAX_FUTURE_MS}
        """
    )
    con.execute("DROP TABLE timed")
    t_parse = time.perf_counter()
    # Dedup by id (case-insensitive): the first valid line wins. Events
    # without an id get one each (the collector assigns one).
    con.execute(
        """
        CREATE TABLE events AS
        SELECT coalesce(id::UUID, uuid()) AS id, event,
               coalesce(user_id, anonymous_id) AS person,
               user_id, anonymous_id, ts, stage, revenue, properties
        FROM valid
        QUALIFY id IS NULL OR row_number() OVER (PARTITION BY id ORDER BY line) = 1
        """
    )
    con.execute("CHECKPOINT")
    t_end = time.perf_counter()
    valid = con.execute("SELECT count(*) FROM valid").fetchone()[0]
    accepted = con.execute("SELECT count(*) FROM events").fetchone()[0]
    con.execute("DROP TABLE valid")
    return {
        "lines": lines,
        "accepted": accepted,
        "duplicates": valid - accepted,
        "rejected": lines - valid,
        "seconds": t_end - t0,
        "parse_validate_seconds": t_parse - t0,
        "dedup_store_seconds": t_end - t_parse,
    }


def median_s(ms) -> float | None:
    return None if ms is None else ms / 1000.0


def ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


# ------------------------------------------------ identity, filters, groups
#
# Every analysis reads `ev`, a CTE of the events it may see: the events that
# pass every `--where` (SPEC §5), each with its person (SPEC §1: user_id, else
# the user its anonymous id is linked to, else the anonymous id; links come
# from every stored event, filtered or not) and its group `g` for `--by`.
# `g` is a struct {t, n, s} that sorts as §5 orders group values: t = 0 for
# booleans (n = 0 or 1), 1 for numbers (n), 2 for strings (s, byte order),
# 3 for null (missing, null, object, array). Without `--by` every event is in
# the one group NO_GROUP.

NO_GROUP = (3, 0.0, "")
NUMERIC = "('BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT')"
NUMBER_RE = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"


def json_path(path: str) -> str:
    """SPEC §5: the path is split at every dot into nested keys."""
    return "$" + "".join('."' + k.replace('"', '\\"') + '"' for k in path.split("."))


def parse_where(text: str) -> tuple[str, str, str, object]:
    """`PATH OP VALUE` -> (path, op, kind, value); the first operator in the
    text splits it; kind is 'str', 'num' (value a float, text kept for the
    string comparison) or 'bool'."""
    import json
    import re

    for i in range(len(text)):
        if text[i:i + 2] in ("!=", "<=", ">=", "!~"):
            op = text[i:i + 2]
            break
        if text[i] in "=<>~":
            op = text[i]
            break
    else:
        raise ValueError(f"no operator in {text!r}")
    path, raw = text[:i].strip(), text[i + len(op):].strip()
    if raw.startswith('"'):
        return path, op, "str", json.loads(raw)
    if re.fullmatch(NUMBER_RE, raw):
        return path, op, "num", raw
    if raw in ("true", "false"):
        return path, op, "bool", raw
    return path, op, "str", raw


def where_sql(text: str) -> str:
    """SQL that holds when an event passes the filter (SPEC §5)."""
    path, op, kind, v = parse_where(text)
    P = q(json_path(path))
    jt = f"json_type(e.properties, {P})"
    s = f"(e.properties ->> {P})"
    neg = "true" if op in ("!=", "!~") else "false"  # missing, null, other types
    sql_op = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
    vs = v if kind == "str" else str(v)  # an unquoted number or bool is text to a string
    if op == "~":
        s_cmp = f"contains({s}, {q(vs)})"
    elif op == "!~":
        s_cmp = f"NOT contains({s}, {q(vs)})"
    else:
        s_cmp = f"{s} {sql_op[op]} {q(vs)}"
    if kind == "num" and op in sql_op:
        n_cmp = f"CAST({s} AS DOUBLE) {sql_op[op]} CAST({q(v)} AS DOUBLE)"
    else:
        n_cmp = neg  # `~` fails, `!~` holds, a non-number value: only != and !~
    if kind == "bool" and op in ("=", "!="):
        b_cmp = f"{s} {sql_op[op]} {q(v)}"
    else:
        b_cmp = neg
    return f"""(CASE WHEN {jt} IS NULL OR {jt} = 'NULL' THEN {neg}
        WHEN {jt} = 'VARCHAR' THEN {s_cmp}
        WHEN {jt} IN {NUMERIC} THEN {n_cmp}
        WHEN {jt} = 'BOOLEAN' THEN {b_cmp}
        ELSE {neg} END)"""


def source(p: dict, names: list[str] | None = None) -> str:
    """CTEs `links` (unless --identity none) and `ev` for analysis
    parameters `p`; `names` limits ev to those event names (a speed-up:
    links still come from every event)."""
    wheres = p.get("where", [])
    if isinstance(wheres, str):
        wheres = [wheres]
    conds = [where_sql(w) for w in wheres]
    if names is not None:
        conds.append(f"e.event IN ({', '.join(q(n) for n in sorted(set(names)))})")
    cond = " AND ".join(conds) or "true"
    by = p.get("by")
    if by:
        P = q(json_path(by))
        inner = f", json_type(e.properties, {P}) AS gjt, e.properties ->> {P} AS graw"
        t = (f"CASE WHEN gjt = 'BOOLEAN' THEN 0 WHEN gjt IN {NUMERIC} THEN 1 "
             f"WHEN gjt = 'VARCHAR' THEN 2 ELSE 3 END")
        g = (f"{{'t': {t}, 'n': CASE WHEN gjt = 'BOOLEAN' THEN (graw = 'true')::DOUBLE "
             f"WHEN gjt IN {NUMERIC} THEN graw::DOUBLE ELSE 0::DOUBLE END, "
             f"'s': CASE WHEN gjt = 'VARCHAR' THEN graw ELSE '' END}}")
    else:
        inner = ""
        g = "{'t': 3, 'n': 0::DOUBLE, 's': ''}"
    filtered = f"SELECT e.*{inner} FROM events e WHERE {cond}"
    if p.get("identity", "linked") == "none":
        return f"""ev AS MATERIALIZED (SELECT id, event, person, ts, stage, revenue, {g} AS g
            FROM ({filtered}))"""
    if p.get("identity", "linked") != "linked":
        raise ValueError(f"identity {p['identity']!r}")
    # SPEC §1: an anonymous id's link is the user_id of its earliest linking
    # event, ties broken by the smallest user_id (byte order).
    return f"""links AS MATERIALIZED (
            SELECT anonymous_id AS anon, (min({{'ts': ts, 'u': user_id}})).u AS linked
            FROM events WHERE user_id IS NOT NULL AND anonymous_id IS NOT NULL
            GROUP BY anonymous_id),
        ev AS MATERIALIZED (
            SELECT f.id, f.event, coalesce(f.user_id, l.linked, f.anonymous_id) AS person,
                f.ts, f.stage, f.revenue, {g} AS g
            FROM ({filtered}) f LEFT JOIN links l ON l.anon = f.anonymous_id)"""


def gkey(g: dict) -> tuple:
    return (g["t"], g["n"], g["s"])


def gvalue(k: tuple):
    t, n, s = k
    if t == 0:
        return bool(n)
    if t == 1:
        return int(n) if float(n).is_integer() and abs(n) < 2**53 else n
    if t == 2:
        return s
    return None


def grouped(p: dict, per_group: dict, build, headline):
    """The analysis's JSON: `build(data)` of the one group, or with --by
    SPEC §5's `{"by", "groups", "other_groups"}`, groups ordered by
    headline (largest first) then value, the first --limit kept."""
    if not p.get("by"):
        return build(per_group.get(NO_GROUP))
    results = [(k, build(d)) for k, d in per_group.items()]
    results.sort(key=lambda kr: (-headline(kr[1]), kr[0]))
    limit = int(p.get("limit", 20))
    return {"by": p["by"],
            "groups": [{"value": gvalue(k), "result": r} for k, r in results[:limit]],
            "other_groups": max(0, len(results) - limit)}


# ---------------------------------------------------------------- funnel


def funnel(con, p: dict, steps: list[str], window_ms: int, frm: int, to: int) -> dict:
    """SPEC §4 funnel. From each entry (a step-1 event in [from, to)), step
    k is matched to the earliest event of its name at or after step k-1's
    time that is not already used, and counts if within the window of the
    entry (inclusive). With distinct step names "not already used" is
    automatic and an ASOF join on the time does it; with a repeated name,
    each event gets an order `ord` (time, then a rank among the person's
    events of that name at that time) and step k must come after the
    previous use of its name as well as at or after step k-1's time.
    With --by, an entry's group is its step-1 event's value, and levels
    and chains are per (person, group)."""
    n = len(steps)
    distinct = len(set(steps)) == n
    hi = to + window_ms  # later steps may fall after --to
    M = 1_000_000
    sel = [source(p, steps)]
    if distinct:
        for k, name in enumerate(steps, 1):
            lo_to = f"ts < {to}" if k == 1 else f"ts <= {hi}"
            sel.append(
                f"e{k} AS (SELECT person, ts, ts AS ord, g FROM ev "
                f"WHERE event = {q(name)} AND ts >= {frm} AND {lo_to})"
            )
    else:
        names = list(dict.fromkeys(steps))
        for i, name in enumerate(names):
            sel.append(
                f"n{i} AS (SELECT person, ts, g, ts * {M} + row_number() OVER "
                f"(PARTITION BY person, ts ORDER BY id) - 1 AS ord FROM ev "
                f"WHERE event = {q(name)} AND ts >= {frm} AND ts <= {hi})"
            )
        for k, name in enumerate(steps, 1):
            cond = f"ts < {to}" if k == 1 else "true"
            sel.append(f"e{k} AS (SELECT * FROM n{names.index(name)} WHERE {cond})")
    # j1: entries; jk: entry joined with step k's earliest candidate.
    # Events of one name at one time are interchangeable: any of them can
    # fill a step, and each is used at most once. Ranking them and always
    # taking the lowest unused rank keeps the used ones a prefix, so an entry
    # counts as rank 0 of its time (whichever event it is, its chain is the
    # same) and step k takes the first rank after the last use of its name.
    sel.append(f"j1 AS (SELECT person, g, ts AS t1, ts * {M} AS o1 FROM e1)")
    for k in range(2, n + 1):
        prev = [f"j.t{i}, j.o{i}" for i in range(1, k)]
        if distinct:
            lb = f"j.t{k - 1}"
        else:
            lbs = [f"j.t{k - 1} * {M}"]
            for i in range(k - 1, 0, -1):
                if steps[i - 1] == steps[k - 1]:
                    lbs.append(f"j.o{i} + 1")
                    break
            lb = f"greatest({', '.join(lbs)})"
        sel.append(
            f"""j{k} AS (
            SELECT j.person, j.g, {', '.join(prev)},
                CASE WHEN e.ts - j.t1 <= {window_ms} THEN e.ts END AS t{k},
                CASE WHEN e.ts - j.t1 <= {window_ms} THEN e.ord END AS o{k}
            FROM (SELECT *, {lb} AS lb FROM j{k - 1} j) j
            ASOF LEFT JOIN e{k} e ON j.person = e.person AND e.ord >= j.lb)"""
        )
    ts = [f"t{k}" for k in range(1, n + 1)]
    level = " + ".join(["1"] + [f"(t{k} IS NOT NULL)::INT" for k in range(2, n + 1)])
    last = "CASE level " + " ".join(f"WHEN {k} THEN t{k}" for k in range(1, n + 1)) + " END"
    sel.append(
        f"""lv AS (SELECT person, g, {', '.join(ts)}, level, {last} AS t_last
            FROM (SELECT *, {level} AS level FROM j{n}))"""
    )
    # The chain: highest level, then the earliest completion, then the
    # latest entry.
    sel.append(
        f"""chain AS (SELECT person, g,
            arg_min({{{', '.join(f"'t{k}': t{k}" for k in range(1, n + 1))}}},
                    (-level, t_last, -t1)) AS c,
            max(level) AS level
            FROM lv GROUP BY person, g)"""
    )
    aggs = []
    for k in range(1, n + 1):
        aggs.append(f"count(*) FILTER (WHERE level >= {k})")
        if k > 1:
            aggs.append(
                f"quantile_cont(c.t{k} - c.t{k - 1}, 0.5) FILTER (WHERE level >= {k})"
            )
    sql = "WITH " + ",\n".join(sel) + f"\nSELECT g, {', '.join(aggs)} FROM chain GROUP BY g"
    per_group = {gkey(r[0]): r[1:] for r in con.execute(sql).fetchall()}

    def build(row):
        users, medians, i = [], [None], 0
        for k in range(1, n + 1):
            users.append(row[i] if row else 0)
            i += 1
            if k > 1:
                medians.append(median_s(row[i]) if row else None)
                i += 1
        return {
            "window_seconds": window_ms / 1000,
            "from": rfc3339(frm),
            "to": rfc3339(to),
            "steps": [
                {
                    "event": steps[k],
                    "users": users[k],
                    "conversion_from_previous": 1.0 if k == 0 and users[0] else (
                        0.0 if k == 0 else ratio(users[k], users[k - 1])),
                    "conversion_from_first": ratio(users[k], users[0]),
                    "median_seconds_from_previous": medians[k],
                }
                for k in range(n)
            ],
        }

    return grouped(p, per_group, build, lambda r: r["steps"][0]["users"])


# ------------------------------------------------- activation, retention


def first_start_sql(start: str, frm: int, to: int) -> str:
    """Persons whose first ever `start` event s0 (among the events that
    pass the filters) is in [from, to), with the Monday of s0's ISO week
    (UTC) as a Unix day number, and the group of that event (the smallest
    value when several tie for first)."""
    return f"""SELECT person, s0, g,
            (s0 // {DAY_MS}) - ((s0 // {DAY_MS} + 3) % 7) AS week_day
        FROM (SELECT person, m.ts AS s0, m.g AS g
              FROM (SELECT person, min({{'ts': ts, 'g': g}}) AS m FROM ev
                    WHERE event = {q(start)} GROUP BY person))
        WHERE s0 >= {frm} AND s0 < {to}"""


def day_str(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def retention(con, p: dict, start: str, ret: str, period: str, periods: int,
              frm: int, to: int, as_of: int) -> dict:
    """SPEC §4 retention: rolling periods from each person's own s0."""
    L = DAY_MS if period == "day" else 7 * DAY_MS
    cohort = "s0 // 86400000" if period == "day" else "week_day"
    ret_filter = "true" if ret == "any" else f"e.event = {q(ret)}"
    names = None if ret == "any" else [start, ret]
    per_group: dict = {}
    for row in _retention_rows(con, p, names, start, ret_filter, cohort, L, periods, frm, to):
        per_group.setdefault(gkey(row[0]), []).append(row[1:])

    def build(rows):
        cohorts = []
        total_size = 0
        z = [0] * (periods + 1)
        total_ret, total_unb, c_size, c_ret, c_unb = z[:], z[:], z[:], z[:], z[:]
        for c, size, latest, retained, unbounded in rows or []:
            retained = [size] + list(retained)
            unbounded = [size] + list(unbounded)
            done = max(0, (as_of - latest) // L)
            incomplete = done if done <= periods else None
            cohorts.append(
                {
                    "cohort": day_str(c),
                    "size": size,
                    "retained": retained,
                    "unbounded": unbounded,
                    "incomplete_from": incomplete,
                }
            )
            total_size += size
            total_ret = [a + b for a, b in zip(total_ret, retained)]
            total_unb = [a + b for a, b in zip(total_unb, unbounded)]
            for k in range(periods + 1):
                if incomplete is None or k < incomplete:
                    c_size[k] += size
                    c_ret[k] += retained[k]
                    c_unb[k] += unbounded[k]
        return {
            "period": period,
            "as_of": rfc3339(as_of),
            "cohorts": cohorts,
            "total": {"size": total_size, "retained": total_ret, "unbounded": total_unb,
                      "complete_size": c_size, "complete_retained": c_ret,
                      "complete_unbounded": c_unb},
        }

    return grouped(p, per_group, build, lambda r: r["total"]["size"])


def _retention_rows(con, p, names, start, ret_filter, cohort, L, periods, frm, to):
    """(group, cohort day, size, latest s0, retained[1..], unbounded[1..])
    per group and cohort."""
    ks = range(1, periods + 1)
    ret_cols = ", ".join(f"count(*) FILTER (WHERE b{k})" for k in ks)
    bits = "".join(f"bool_or(k = {k}) AS b{k}, " for k in ks)
    m_bits = "".join(f"per.b{k}, " for k in ks)
    unb_cols = ", ".join(f"count(*) FILTER (WHERE top >= {k})" for k in ks)
    sql = f"""
        WITH {source(p, names)},
        c AS ({first_start_sql(start, frm, to)}),
        c2 AS (SELECT person, s0, g, {cohort} AS cohort FROM c),
        r AS (SELECT c2.person, (e.ts - c2.s0) // {L} AS k
              FROM c2 JOIN ev e ON e.person = c2.person
              WHERE {ret_filter} AND e.ts >= c2.s0),
        per AS (SELECT person, {bits}least(max(k), {periods}) AS top
                FROM r GROUP BY person),
        m AS (SELECT c2.g, c2.cohort, c2.s0, {m_bits}coalesce(per.top, 0) AS top
              FROM c2 LEFT JOIN per USING (person))
        SELECT g, cohort, count(*), max(s0), [{ret_cols}]::BIGINT[], [{unb_cols}]::BIGINT[]
        FROM m GROUP BY g, cohort ORDER BY cohort"""
    return con.execute(sql).fetchall()


def activation(con, p: dict, start: str, event: str, count: int, within_ms: int,
               frm: int, to: int, as_of: int) -> dict:
    """SPEC §4 activation: `count` `event`s in [s0, s0 + within]; mature
    when s0 + within <= as_of (a week when its end + within is)."""
    rows = con.execute(
        f"""
        WITH {source(p, [start, event])},
        c AS ({first_start_sql(start, frm, to)}),
        hits AS (SELECT c.person, e.ts - c.s0 AS dt,
                        row_number() OVER (PARTITION BY c.person ORDER BY e.ts) AS n
                 FROM c JOIN ev e ON e.person = c.person
                 WHERE e.event = {q(event)} AND e.ts BETWEEN c.s0 AND c.s0 + {within_ms}),
        act AS (SELECT person, dt FROM hits WHERE n = {count})
        SELECT c.g, c.week_day, grouping(c.week_day) AS all_weeks,
               count(*) AS size, count(act.person) AS activated,
               quantile_cont(act.dt, 0.5) AS med,
               count(*) FILTER (WHERE c.s0 + {within_ms} <= {as_of}) AS m_size,
               count(act.person) FILTER (WHERE c.s0 + {within_ms} <= {as_of}) AS m_act
        FROM c LEFT JOIN act USING (person)
        GROUP BY GROUPING SETS ((c.g, c.week_day), (c.g))
        ORDER BY c.week_day
        """
    ).fetchall()
    per_group: dict = {}
    for r in rows:
        per_group.setdefault(gkey(r[0]), []).append(r[1:])

    def build(rows):
        weeks = [r for r in rows or [] if not r[1]]
        tot = [r for r in rows or [] if r[1]]
        size, activated, med, m_size, m_act = tot[0][2:] if tot else (0, 0, None, 0, 0)
        return {
            "cohort_size": size,
            "activated": activated,
            "rate": ratio(activated, size),
            "median_seconds_to_activate": median_s(med),
            "by_week": [
                {
                    "cohort": day_str(r[0]),
                    "cohort_size": r[2],
                    "activated": r[3],
                    "rate": ratio(r[3], r[2]),
                    "mature": (r[0] + 7) * DAY_MS + within_ms <= as_of,
                }
                for r in weeks
            ],
            "as_of": rfc3339(as_of),
            "mature": {"cohort_size": m_size, "activated": m_act,
                       "rate": ratio(m_act, m_size)},
        }

    return grouped(p, per_group, build, lambda r: r["cohort_size"])


# -------------------------------------------------------- lifecycle, trend


def lifecycle(con, p: dict, frm: int, to: int) -> dict:
    """SPEC §4 lifecycle (AARRR) over events in [from, to)."""
    rng = f"ts >= {frm} AND ts < {to}"
    per_group: dict = {}
    for g, stage, users, events in con.execute(
        f"""WITH {source(p)}
            SELECT g, stage, count(DISTINCT person), count(*) FROM ev
            WHERE {rng} AND stage IS NOT NULL GROUP BY g, stage"""
    ).fetchall():
        per_group.setdefault(gkey(g), {"stages": {}})["stages"][stage] = (users, events)
    for g, *totals in con.execute(
        f"""WITH {source(p)}
            SELECT g, count(DISTINCT person), sum(revenue),
                count(DISTINCT person) FILTER (WHERE revenue > 0),
                count(*) FILTER (WHERE revenue > 0),
                sum(revenue) FILTER (WHERE revenue > 0)
            FROM ev WHERE {rng} GROUP BY g"""
    ).fetchall():
        per_group.setdefault(gkey(g), {"stages": {}})["totals"] = totals

    def build(d):
        by_stage = d["stages"] if d else {}
        active, revenue, paying, orders, positive = (
            d["totals"] if d else (0, None, 0, 0, None))
        return {
            "stages": [
                {"stage": st, "users": by_stage.get(st, (0, 0))[0],
                 "events": by_stage.get(st, (0, 0))[1]}
                for st in STAGES
            ],
            "active_users": active,
            "revenue": revenue or 0.0,
            "paying_users": paying,
            "orders": orders,
            "aov": positive / orders if orders else None,
            "arpu": (revenue or 0.0) / active if active else None,
        }

    return grouped(p, per_group, build, lambda r: r["active_users"])


def trend(con, p: dict, event: str, measure: str, interval: str, frm: int, to: int) -> dict:
    """SPEC §4 trend, UTC, intervals day and week: every bucket overlapping
    [from, to) (empty ones 0), labelled by its start; only events in
    [from, to) count; `total` over the whole range (users: distinct)."""
    day = f"(ts // {DAY_MS})"
    if interval == "day":
        bucket, step = day, 1
        first = frm // DAY_MS
    elif interval == "week":
        bucket, step = f"({day} - (({day} + 3) % 7))", 7
        d0 = frm // DAY_MS
        first = d0 - ((d0 + 3) % 7)
    else:
        raise ValueError(f"duck.py's trend has no interval {interval}")
    labels = list(range(first, -(-to // DAY_MS), step))
    value = {"events": "count(*)", "users": "count(DISTINCT person)",
             "revenue": "coalesce(sum(revenue), 0)::DOUBLE"}[measure]
    names = None if event == "any" else [event]
    cond = "true" if event == "any" else f"event = {q(event)}"
    per_group: dict = {}
    for g, b, all_buckets, v in con.execute(
        f"""WITH {source(p, names)}
            SELECT g, {bucket} AS b, grouping({bucket}), {value} FROM ev
            WHERE {cond} AND ts >= {frm} AND ts < {to}
            GROUP BY GROUPING SETS ((g, {bucket}), (g))"""
    ).fetchall():
        d = per_group.setdefault(gkey(g), {"series": {}, "total": 0})
        if all_buckets:
            d["total"] = v
        else:
            d["series"][b] = v
    zero = 0.0 if measure == "revenue" else 0

    def build(d):
        series = d["series"] if d else {}
        return {
            "event": event, "measure": measure, "interval": interval,
            "from": rfc3339(frm), "to": rfc3339(to),
            "series": [{"bucket": day_str(b), "value": series.get(b, zero)} for b in labels],
            "total": d["total"] if d else zero,
        }

    return grouped(p, per_group, build, lambda r: r["total"])


def active(con, p: dict, frm: int, to: int) -> dict:
    """SPEC §4 active users for each UTC day whose midnight is in [from, to);
    windows reach back before --from."""
    first = -(-frm // DAY_MS)  # the first midnight at or after --from
    last = (to - 1) // DAY_MS
    if last < first:
        return {"days": []}
    rows = con.execute(
        f"""
        WITH {source(p)},
        pd AS (SELECT DISTINCT person, ts // {DAY_MS} AS day FROM ev
                    WHERE ts >= {(first - 29) * DAY_MS} AND ts < {(last + 1) * DAY_MS}),
        days AS (SELECT range AS d FROM range({first}, {last + 1}))
        SELECT d,
            count(DISTINCT person) FILTER (WHERE day = d),
            count(DISTINCT person) FILTER (WHERE day >= d - 6),
            count(DISTINCT person)
        FROM days LEFT JOIN pd ON pd.day BETWEEN d - 29 AND d
        GROUP BY d ORDER BY d
        """
    ).fetchall()
    return {
        "days": [
            {"day": day_str(d), "dau": dau, "wau": wau, "mau": mau,
             "stickiness": ratio(dau, mau)}
            for d, dau, wau, mau in rows
        ]
    }


DURATION_UNITS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": DAY_MS, "w": 7 * DAY_MS}


def duration_ms(s: str) -> int:
    return int(s[:-1]) * DURATION_UNITS[s[-1]]


def run_analysis(con, name: str, p: dict) -> dict:
    """One analysis with parameters named as Tally's flags (`name` may
    carry a `#label` suffix to tell apart several runs of one analysis;
    `where` is a list, `identity` is `none` or absent)."""
    name = name.split("#")[0]
    frm, to = parse_time(p["from"]), parse_time(p["to"])
    if name == "funnel":
        return funnel(con, p, p["steps"].split(","), duration_ms(p.get("window", "14d")),
                      frm, to)
    if name == "retention":
        return retention(con, p, p["start"], p.get("return", p["start"]),
                         p.get("period", "week"), int(p.get("periods", 8)), frm, to,
                         parse_time(p["as-of"]))
    if name == "activation":
        return activation(con, p, p["start"], p["event"], int(p["count"]),
                          duration_ms(p["within"]), frm, to, parse_time(p["as-of"]))
    if name == "lifecycle":
        return lifecycle(con, p, frm, to)
    if name == "active":
        return active(con, p, frm, to)
    if name == "trend":
        return trend(con, p, p.get("event", "any"), p.get("measure", "events"),
                     p.get("interval", "day"), frm, to)
    raise ValueError(f"unknown analysis {name}")


def main(argv: list[str]) -> None:
    """`duck.py load DB FILE LINES` or `duck.py query DB ANALYSES_JSON RUNS`:
    prints one JSON object (run as separate processes so that each phase's
    peak memory can be measured on its own)."""
    import json
    import os
    import statistics

    import duckdb

    cmd, db = argv[0], argv[1]
    if cmd == "load":
        for f in (db, db + ".wal"):
            if os.path.exists(f):
                os.remove(f)
        con = duckdb.connect(db)
        out = load(con, argv[2], int(argv[3]))
        con.close()
        out["db_bytes"] = os.path.getsize(db)
    elif cmd == "query":
        con = duckdb.connect(db, read_only=True)
        analyses, runs = json.loads(argv[2]), int(argv[3])
        out = {}
        for name, params in analyses.items():
            result = run_analysis(con, name, params)  # warm-up
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                again = run_analysis(con, name, params)
                times.append((time.perf_counter() - t) * 1000)
                assert again == result, f"{name}: DuckDB's answer changed between runs"
            out[name] = {"runs_ms": times,
                         "median_ms": statistics.median(times) if times else None,
                         "result": result}
        out["threads"] = con.execute("SELECT current_setting('threads')").fetchone()[0]
    else:
        raise SystemExit(main.__doc__)
    out["duckdb_version"] = duckdb.__version__
    print(json.dumps(out))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
