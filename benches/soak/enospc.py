#!/usr/bin/env python3
"""Disk-full soak (issue 16.1): `tally serve` on a small tmpfs with small
chunks, a filler file leaving ~300 KiB, one client posting 20-event batches
until writes fail with "No space left on device"; then the filler is
removed, writes must come back without a restart, and after SIGTERM every
acknowledged id must be in `tally export` exactly once.

Needs root (mount -t tmpfs). Usage: enospc.py PATH/TO/tally [RUNS]
"""
import json, os, signal, subprocess, sys, time, urllib.request, uuid

TALLY = sys.argv[1]
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
KEY = "w" * 16
RKEY = "r" * 16


def post(url, batch):
    req = urllib.request.Request(url + "/v1/batch", data=json.dumps({"batch": batch}).encode(),
                                 headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def run(n):
    mnt = f"/tmp/tally-enospc-{os.getpid()}-{n}"
    os.makedirs(mnt, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", mnt], check=True)
    try:
        data = os.path.join(mnt, "data")
        env = dict(os.environ, TALLY_CHUNK_EVENTS="50", RUST_LOG="warn")
        srv = subprocess.Popen([TALLY, "serve", "--data", data, "--listen", "127.0.0.1:0",
                                "--write-key", KEY, "--read-key", RKEY], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=env, text=True)
        url = None
        for line in srv.stdout:
            if "listening on" in line:
                url = line.split("listening on ")[1].split()[0]
                break
        st = os.statvfs(mnt)
        free = st.f_bavail * st.f_frsize
        with open(os.path.join(mnt, "filler"), "wb") as f:
            f.write(b"\0" * max(0, free - 300 * 1024))
        acked, full, i = [], 0, 0
        while full < 30 and i < 100000:
            batch = [{"id": str(uuid.uuid4()), "event": "e", "user_id": f"u{j % 50}",
                      "properties": {"pad": "x" * 200}} for j in range(20)]
            i += 1
            status, body = post(url, batch)
            if status == 200:
                acked += [e["id"] for e in batch]
            else:
                full += 1
        os.remove(os.path.join(mnt, "filler"))
        recovered = 0
        for _ in range(50):
            batch = [{"id": str(uuid.uuid4()), "event": "e", "user_id": "after"} for _ in range(20)]
            status, _ = post(url, batch)
            if status == 200:
                acked += [e["id"] for e in batch]
                recovered += 1
        srv.send_signal(signal.SIGTERM)
        srv.wait(timeout=60)
        out = subprocess.run([TALLY, "export", "--data", data], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"run {n}: export failed: {out.stderr.strip()}")
            return False
        ids = [json.loads(l)["id"] for l in out.stdout.splitlines()]
        missing = set(acked) - set(ids)
        dups = len(ids) - len(set(ids))
        ok = not missing and dups == 0 and recovered == 50
        print(f"run {n}: acked {len(acked)}, failed requests {full}, stored {len(ids)}, "
              f"missing {len(missing)}, duplicates {dups}, writes after freeing space {recovered}/50: "
              f"{'ok' if ok else 'FAIL'}")
        return ok
    finally:
        subprocess.run(["umount", "-l", mnt])


results = [run(n) for n in range(RUNS)]
print(f"{sum(results)}/{RUNS} runs lost nothing")
sys.exit(0 if all(results) else 1)
