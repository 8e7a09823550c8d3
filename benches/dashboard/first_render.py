#!/usr/bin/env python3
"""Time to first render of the dashboard against a running `tally serve`.

    benches/dashboard/first_render.py URL READ_KEY [HASH] [RUNS]

Drives Debian's headless Chromium through chromedriver (WebDriver over
urllib; nothing to install), stores the read key in the page's
localStorage, then loads URL/#HASH afresh RUNS times and prints, for each,
the page's own `document.body.dataset.firstRenderMs`: navigation start to
the page drawn from its API answers. Every address is the URL's.
"""
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def call(base, method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=json.dumps(body or {}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        v = json.load(r)["value"]
    if isinstance(v, dict) and "error" in v:
        raise RuntimeError(f"{path}: {v}")
    return v


def main():
    url, key = sys.argv[1].rstrip("/"), sys.argv[2]
    hash_ = sys.argv[3] if len(sys.argv) > 3 else "overview?last=30d"
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    driver = subprocess.Popen(["/usr/bin/chromedriver", f"--port={port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    profile = tempfile.mkdtemp()
    base = None
    try:
        root = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(root + "/status", timeout=1); break
            except OSError:
                time.sleep(0.05)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,800"]
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome",
                "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}}
        sid = call(root, "POST", "/session", caps)["sessionId"]
        base = f"{root}/session/{sid}"
        js = lambda script: call(base, "POST", "/execute/sync", {"script": script, "args": []})
        call(base, "POST", "/url", {"url": url + "/"})
        js(f"localStorage.setItem('tally.readKey', {json.dumps(key)})")
        for i in range(runs):
            call(base, "POST", "/url", {"url": "about:blank"})
            started = time.monotonic()
            call(base, "POST", "/url", {"url": f"{url}/#{hash_}"})
            while js("return document.body.dataset.state") not in ("ready", "error"):
                time.sleep(0.01)
            state = js("return document.body.dataset.state")
            ms = js("return document.body.dataset.firstRenderMs")
            print(f"run {i + 1}: first render {ms} ms ({state}; "
                  f"{(time.monotonic() - started) * 1000:.0f} ms as the driver saw it)")
            if state == "error":
                print("  error:", js("return document.getElementById('status').textContent"))
    finally:
        # Ending the session is what stops Chromium; killing the driver
        # alone would leave the browser running.
        if base:
            try:
                call(base, "DELETE", "")
            except OSError:
                pass
        driver.kill(); driver.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
