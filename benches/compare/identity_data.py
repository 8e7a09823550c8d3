"""Derives, from a `gen_dataset` NDJSON file, a smaller file on which
identity linking (SPEC §1) and `--by` tie-breaks (SPEC §5) matter.

`gen_dataset` already attributes a person's pre-signup visits to the user
(they carry `user_id` and `anonymous_id`), so linking changes no answer on
its files. This keeps every event of one person in `--sample` (by a hash of
the person key) and, for the persons it keeps:

- drops `user_id` from every event before the person's first `signup`
  line, so those visits are anonymous and only the link (the signup, which
  carries both ids) makes them the user's;
- for 1 person in 50 adds a second linking event at the signup's very
  timestamp with a user id that sorts first (`u_!...`: the tie goes to it)
  and for another 1 in 50 one that sorts last (`u_~...`: the user keeps
  the link); for another 1 in 50 one 1 s *before* the signup with a
  user id that sorts last (the earlier link wins);
- for 1 person in 25 adds a second `signup` at the same timestamp whose
  `utm_source` is `aaa_tie`, `zzz_tie`, the number 7, or absent (the
  cohort event's group is the smallest of the tied values, null last);
- adds `trial` (a boolean) and `utm.source` (a nested object) to signups.

    python identity_data.py IN.ndjson OUT.ndjson [--sample 10]
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import zlib

U = re.compile(r'"user_id":"([^"]*)"')
A = re.compile(r'"anonymous_id":"([^"]*)"')


def ms(ts) -> int:
    if isinstance(ts, int):
        return ts
    d = dt.datetime.fromisoformat(ts.replace("z", "Z").replace("t", "T"))
    return int(d.timestamp() * 1000)


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    sample = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--sample" else 10
    signed: set[str] = set()
    n_in = n_out = 0
    with open(src) as f, open(dst, "w") as out:
        for line in f:
            n_in += 1
            u, a = U.search(line), A.search(line)
            key = u.group(1) if u else (a.group(1) if a else line)
            h = zlib.crc32(key.encode())
            if h % sample:
                continue
            if not u:
                out.write(line)
                n_out += 1
                continue
            try:
                e = json.loads(line)
            except ValueError:
                out.write(line)
                n_out += 1
                continue
            user = u.group(1)
            extra = []
            if e.get("event") == "signup" and user not in signed:
                signed.add(user)
                anon = e.get("anonymous_id")
                props = e.get("properties") or {}
                if isinstance(props, dict):
                    props["trial"] = (h // sample) % 3 == 0
                    if "utm_source" in props:
                        props["utm"] = {"source": props["utm_source"]}
                    e["properties"] = props
                r = (h // sample) % 50
                if anon and isinstance(e.get("timestamp"), (int, str)):
                    t = ms(e["timestamp"])
                    link = {"event": "login", "anonymous_id": anon}
                    if r == 1:
                        extra.append({**link, "user_id": "u_!tie" + user, "timestamp": t})
                    elif r == 2:
                        extra.append({**link, "user_id": "u_~tie" + user, "timestamp": t})
                    elif r == 3:
                        extra.append({**link, "user_id": "u_~early" + user,
                                      "timestamp": t - 1000})
                    elif r in (4, 5, 6, 7):
                        p2 = {k: v for k, v in props.items() if k != "utm_source"}
                        if r != 7:
                            p2["utm_source"] = {4: "aaa_tie", 5: "zzz_tie", 6: 7}[r]
                        extra.append({"event": "signup", "user_id": user,
                                      "anonymous_id": anon, "timestamp": t,
                                      "stage": "acquisition", "properties": p2})
            elif user not in signed and "anonymous_id" in e:
                del e["user_id"]
            out.write(json.dumps(e, separators=(",", ":")) + "\n")
            n_out += 1
            for x in extra:
                out.write(json.dumps(x, separators=(",", ":")) + "\n")
                n_out += 1
    print(json.dumps({"lines_in": n_in, "lines": n_out}))


if __name__ == "__main__":
    main()
