"""A package index for wheelship's tests: PEP 503 simple pages over the files of a directory.

Usage: python3 index.py ROOT. Serves ROOT/files/* at /files/ and /simple/<name>/ pages that
link them with their sha256 as computed at start (so a file changed afterwards no longer
matches what the index says, as a tampered mirror would). Prints the port on its first line;
the path of every whole GET (not a range or HEAD) goes to ROOT/requests.log. Binds 127.0.0.1 on a port of its own.
"""
import hashlib
import http.server
import os
import re
import sys

root = sys.argv[1]
files_dir = os.path.join(root, "files")
log_path = os.path.join(root, "requests.log")


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def project(file):
    if file.endswith(".whl"):
        return canonical(file.split("-")[0])
    stem = re.sub(r"\.(tar\.gz|zip)$", "", file)
    return canonical(stem.rsplit("-", 1)[0])


hashes = {}
for f in sorted(os.listdir(files_dir)):
    with open(os.path.join(files_dir, f), "rb") as fh:
        hashes[f] = hashlib.sha256(fh.read()).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, code, body, kind="text/html"):
        # A range of a file, as uv asks for a wheel's metadata (RFC 9110, section 14).
        rng = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        total = len(body)
        if code == 200 and rng and kind == "application/octet-stream":
            first, last = rng.groups()
            if first == "":
                first, last = max(0, total - int(last)), total - 1
            else:
                first, last = int(first), min(int(last) if last else total - 1, total - 1)
            body = body[first : last + 1]
            code = 206
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if code == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{total}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        if self.command == "GET" and "Range" not in self.headers:
            with open(log_path, "a") as log:
                log.write(self.path + "\n")
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if parts[:1] == ["files"] and len(parts) == 2 and parts[1] in hashes:
            with open(os.path.join(files_dir, parts[1]), "rb") as fh:
                return self.send(200, fh.read(), "application/octet-stream")
        if parts[:1] == ["simple"] and len(parts) == 2:
            links = "".join(
                f'<a href="/files/{f}#sha256={h}">{f}</a>\n'
                for f, h in hashes.items()
                if project(f) == parts[1]
            )
            if links:
                return self.send(200, f"<html><body>\n{links}</body></html>\n".encode())
        return self.send(404, b"not found\n", "text/plain")


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
