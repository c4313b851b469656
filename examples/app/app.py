"""The bundled example app: one page that says which release serves it."""
import os

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return f"hello from {os.path.basename(os.path.dirname(os.path.abspath(__file__)))}\n"
