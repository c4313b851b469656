"""gunicorn settings for wheelship's gapless handover (ROOT/bin/handover).

Each master records itself in $HANDOVER_RUN/masters/<pid>.json when it starts (its pid, start
time and command line: what the handover checks before it signals it), and removes the record
when it exits. Each worker that has loaded the app says so, and what it loaded (its working
directory and its env), in $HANDOVER_RUN/ready.<master>.<worker>, which the handover waits for
before it stops the old master and reads when it checks. Under systemd (Type=notify,
NotifyAccess=all) the master that is ready tells systemd it is now the main process, so a USR2
re-exec does not end the service when the old master exits.
"""
import json
import os
import socket
import sys

# The old master's workers finish the requests they hold within this, after TERM.
graceful_timeout = 30


def _run():
    return os.environ.get("HANDOVER_RUN")


def _write(path, value):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def _identity(pid):
    with open(f"/proc/{pid}/stat") as f:
        start = int(f.read().rsplit(")", 1)[1].split()[19])
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    return {"pid": pid, "start": start, "cmdline": argv}


def on_starting(server):
    run = _run()
    if run:
        masters = os.path.join(run, "masters")
        os.makedirs(masters, mode=0o755, exist_ok=True)
        _write(os.path.join(masters, f"{os.getpid()}.json"), _identity(os.getpid()))


def on_exit(server):
    run = _run()
    if run:
        try:
            os.unlink(os.path.join(run, "masters", f"{os.getpid()}.json"))
        except FileNotFoundError:
            pass


def _ready_file(worker):
    run = _run()
    return os.path.join(run, f"ready.{worker.ppid}.{worker.pid}") if run else None


def post_worker_init(worker):
    path = _ready_file(worker)
    if path:
        _write(path, {"cwd": os.path.realpath(os.getcwd()), "prefix": os.path.realpath(sys.prefix)})


def worker_exit(server, worker):
    path = _ready_file(worker)
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def when_ready(server):
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(f"MAINPID={os.getpid()}\nREADY=1".encode())
