"""Load harness: switches under a constant request load, with the gapless handover of
examples/zero-downtime (gunicorn re-executed through ROOT/current, the new release proven on
a port of its own before it takes traffic).

    python3 bench/load.py [--clients N] [--switches N] [--kill-swaps] [--bin DIR] [--json] [--work DIR]

Builds releases of examples/app (code changes, dependency changes, two broken ones whose every
page answers 500), deploys the first locally and serves it, then runs N clients, each sending
GET / on a new connection per request, while it deploys and rolls back, in this order (the
first --switches of them): deploy v2 (code), v3 (a new dependency), v4 (broken), rollback,
rollback, v5 (code and dependency), v6 (broken, another dependency), rollback, v5 again,
rollback, v2, v5. With --kill-swaps, each deploy is first started and SIGKILLed (its whole
process group) once the new gunicorn master has recorded itself and before the old one is
stopped (a swap killed between its USR2 and its TERM: two masters serve), and then run again:
the rerun must bring the service to one master serving `current`. After each switch it asks which release answers and which `switch list`
calls current. Prints requests, failures, the releases seen and the steps (a Markdown table,
or with --json the figures as JSON). Needs PyPI the first time (the wheel directory is kept in
the work directory). Exit status 1 when a request failed, a broken release served, or the
release answering was not the current one.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ZD = os.path.join(REPO, "examples", "zero-downtime")

BROKEN = '''

@app.before_request
def broken():
    return "broken\\n", 500
'''

# (name, what it changes, extra requirement lines, broken)
RELEASES = [
    ("v1", "the first", [], False),
    ("v2", "code", [], False),
    ("v3", "a new dependency", ["six==1.17.0"], False),
    ("v4", "broken", ["six==1.17.0"], True),
    ("v5", "code and dependency", ["tabulate==0.9.0"], False),
    ("v6", "broken, another dependency", ["idna==3.10"], True),
]
SWITCHES = [("deploy", "v2"), ("deploy", "v3"), ("deploy", "v4"), ("rollback", None),
            ("rollback", None), ("deploy", "v5"), ("deploy", "v6"), ("rollback", None),
            ("deploy", "v5"), ("rollback", None), ("deploy", "v2"), ("deploy", "v5")]


def sh(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    return p.stdout


def git(app, *args):
    sh(["git", "-c", "user.name=load", "-c", "user.email=load@example.invalid", *args], cwd=app)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def build_releases(work, env):
    """Each release committed and released in turn: {name: release document}."""
    app = os.path.join(work, "app")
    shutil.copytree(os.path.join(REPO, "examples", "app"), app)
    git(app, "init", "-q")
    base_req = open(os.path.join(app, "requirements.txt")).read()
    base_code = open(os.path.join(app, "app.py")).read()
    docs = {}
    for name, _, extra, broken in RELEASES:
        code = base_code.replace("hello from", f"hello ({name}) from") + (BROKEN if broken else "")
        with open(os.path.join(app, "app.py"), "w") as f:
            f.write(code)
        with open(os.path.join(app, "requirements.txt"), "w") as f:
            f.write(base_req + "".join(x + "\n" for x in extra))
        git(app, "add", "-A")
        git(app, "commit", "-qm", name)
        out = sh([os.path.join(REPO, "scripts", "release"), "--wheelhouse", os.path.join(work, "wheelhouse"),
                  "--out", os.path.join(work, "dist"), app], env=env)
        docs[name] = json.loads(out)
    return docs


class Load:
    """Clients sending GET / on a new connection each, until stopped."""

    def __init__(self, port, clients):
        self.port, self.stop = port, threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.failures = []
        self.seen = {}
        self.statuses = {}
        self.slowest = 0.0
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]

    def client(self):
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                c.request("GET", "/", headers={"Connection": "close"})
                r = c.getresponse()
                body = r.read().decode(errors="replace").strip()
                c.close()
                status, failure = r.status, (None if r.status == 200 else f"HTTP {r.status}")
            except Exception as e:  # every way a request can fail counts
                status, body, failure = None, "", f"{type(e).__name__}: {e}"
            took = time.monotonic() - t
            with self.lock:
                self.requests += 1
                self.slowest = max(self.slowest, took)
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if failure:
                    self.failures.append(failure)
                else:
                    rel = body.rsplit(" ", 1)[-1]
                    self.seen[rel] = self.seen.get(rel, 0) + 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()


def masters(srv):
    """The gunicorn masters that recorded themselves and are alive."""
    out = []
    d = os.path.join(srv, "run", "masters")
    for n in os.listdir(d) if os.path.isdir(d) else []:
        try:
            pid = json.load(open(os.path.join(d, n)))["pid"]
        except (OSError, ValueError, KeyError):
            continue
        if os.path.exists(f"/proc/{pid}"):
            out.append(pid)
    return out


def killed_swap(cmd, env, srv):
    """Starts `cmd` and SIGKILLs its process group once two masters serve: True if it did."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                         start_new_session=True)
    deadline = time.monotonic() + 120
    while p.poll() is None and time.monotonic() < deadline:
        if len(masters(srv)) >= 2:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return True
        time.sleep(0.005)
    p.wait()
    return False


def answering(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/")
    body = c.getresponse().read().decode().strip()
    c.close()
    return body.rsplit(" ", 1)[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--switches", type=int, default=len(SWITCHES))
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release"))
    ap.add_argument("--work", default=os.path.join(HERE, ".work", "load"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--kill-swaps", action="store_true",
                    help="kill each deploy between its new master's start and its old master's stop, then run it again")
    a = ap.parse_args()
    work = os.path.abspath(a.work)
    wheelhouse = os.path.join(work, "wheelhouse")
    if os.path.exists(work):
        # The wheel directory is kept; the rest is moved aside and removed at the end.
        kept = wheelhouse + ".kept"
        if os.path.isdir(wheelhouse):
            os.rename(wheelhouse, kept)
        old = work + f".old-{os.getpid()}"
        os.rename(work, old)
        os.makedirs(work)
        if os.path.isdir(os.path.join(old, "wheelhouse.kept")):
            os.rename(os.path.join(old, "wheelhouse.kept"), wheelhouse)
    else:
        old = None
        os.makedirs(work)
    env = dict(os.environ, WHEELSHIP_BIN=os.path.abspath(a.bin), WHEELSHIP_CACHE=os.path.join(work, "cache"))
    docs = build_releases(work, env)
    ids = {n: d["bundle"]["id"] for n, d in docs.items()}
    broken = {ids[n] for n, _, _, b in RELEASES if b}
    srv, port = os.path.join(work, "srv"), free_port()
    for n in docs:
        with open(os.path.join(work, f"{n}.json"), "w") as f:
            json.dump(docs[n], f)
    sh([os.path.join(REPO, "scripts", "deploy"), os.path.join(work, "v1.json"), srv], env=env)
    sh([os.path.join(ZD, "serve"), srv, str(port)], env=env)
    flags = {w: sh([os.path.join(ZD, "flags"), srv, str(port), w]).splitlines() for w in ("deploy", "rollback")}
    steps, kills = [], 0
    try:
        with Load(port, a.clients) as load:
            time.sleep(1)
            for what, name in SWITCHES[:a.switches]:
                t = time.monotonic()
                if what == "deploy":
                    cmd = [os.path.join(REPO, "scripts", "deploy"), os.path.join(work, f"{name}.json"), srv, *flags["deploy"]]
                    if a.kill_swaps and killed_swap(cmd, env, srv):
                        kills += 1
                else:
                    cmd = [os.path.join(REPO, "scripts", "rollback"), srv, *flags["rollback"]]
                p = subprocess.run(cmd, capture_output=True, text=True, env=env)
                took = time.monotonic() - t
                current = json.loads(sh([os.path.join(a.bin, "switch"), "--root", srv, "list", "--json"], stdin=subprocess.DEVNULL))["switch"]["current"]
                answers = answering(port)
                name_of = {v: k for k, v in ids.items()}
                steps.append({
                    "step": f"{what} {name or ''}".strip(),
                    "ok": p.returncode == 0,
                    "expected_ok": not (what == "deploy" and ids[name] in broken),
                    "seconds": round(took, 2),
                    "current": name_of.get(current, current),
                    "answers": name_of.get(answers, answers),
                    "error": p.stderr.strip().splitlines()[-1] if p.returncode else "",
                })
            time.sleep(1)
            masters_after = len(masters(srv))
    finally:
        subprocess.run([os.path.join(ZD, "stop"), srv])
    name_of = {v: k for k, v in ids.items()}
    result = {
        "clients": a.clients,
        "requests": load.requests,
        "failures": len(load.failures),
        "failure_kinds": sorted(set(load.failures))[:5],
        "broken_served": sum(c for r, c in load.seen.items() if r in broken) + load.statuses.get(500, 0),
        "seen": {name_of.get(r, r): c for r, c in sorted(load.seen.items(), key=lambda x: name_of.get(x[0], x[0]))},
        "slowest_request_seconds": round(load.slowest, 3),
        "swaps_killed": kills,
        "masters_after": masters_after,
        "steps": steps,
    }
    bad = result["failures"] or result["broken_served"] or result["masters_after"] > 1 or any(
        s["current"] != s["answers"] or s["ok"] != s["expected_ok"] for s in steps)
    if a.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"\n## Switches under load: {len(steps)} switches, {a.clients} clients, a new connection per request\n")
        print("| requests | failed | served by a broken release | slowest request |\n| --- | --- | --- | --- |")
        print(f"| {result['requests']} | {result['failures']} | {result['broken_served']} | {result['slowest_request_seconds']} s |\n")
        print("| step | result | seconds | current after | answering after |\n| --- | --- | --- | --- | --- |")
        for s in steps:
            res = "ok" if s["ok"] else "refused (as it must be)" if not s["expected_ok"] else "FAILED"
            print(f"| {s['step']} | {res} | {s['seconds']} | {s['current']} | {s['answers']} |")
        if a.kill_swaps:
            print(f"\nswaps killed between the new master's start and the old one's stop: {kills}")
        print("\nreleases seen: " + ", ".join(f"{r} {c}" for r, c in result["seen"].items()))
    if old:
        shutil.rmtree(old, ignore_errors=True)
    sys.exit(1 if bad else 0)


main()
