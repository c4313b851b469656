"""gunicorn settings for wheelship's gapless handover (examples/zero-downtime/handover).

Each worker that has loaded the app says so with a file in $HANDOVER_RUN, which the handover
waits for before it stops the old master; under systemd (Type=notify, NotifyAccess=all) the
master that is ready tells systemd it is now the main process, so a USR2 re-exec does not end
the service when the old master exits.
"""
import os
import socket

# The old master's workers finish the requests they hold within this, after TERM.
graceful_timeout = 30


def _ready_file(worker):
    run = os.environ.get("HANDOVER_RUN")
    return os.path.join(run, f"ready.{worker.ppid}.{worker.pid}") if run else None


def post_worker_init(worker):
    path = _ready_file(worker)
    if path:
        with open(path, "w"):
            pass


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
