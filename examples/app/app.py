"""The bundled example app: one page that says which release serves it."""
import os

from flask import Flask

app = Flask(__name__)
# The real path: a server started from ROOT/current names the release, not `current`.
HERE = os.path.dirname(os.path.realpath(__file__))


@app.get("/")
def index() -> str:
    return f"hello from {os.path.basename(HERE)}\n"


@app.get("/health")
def health():
    # The demo's deliberately broken release ships a file named BROKEN: its check fails.
    if os.path.exists(os.path.join(HERE, "BROKEN")):
        return "broken\n", 500
    return "ok\n"
