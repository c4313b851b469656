"""Builds small, real wheels for wheelship's tests (hermetic: no network, no build backend).

Usage: python3 mkwheel.py OUTDIR < spec.json, where spec is one wheel or a list of them:
  {"name": "Foo_Bar", "version": "1.0", "tag": "py3-none-any",
   "requires": ["dep>=1", "other; extra == 'x'"], "extras": ["x"],
   "files": {"foo_bar/__init__.py": "X = 1\n"},
   "data": {"scripts/tool": "#!python\nprint(1)\n", "data/share/x.txt": "x"},
   "entry_points": {"console_scripts": {"foo": "foo_bar:main"}},
   "purelib": true, "meta": ["License-Expression: MIT"]}   more METADATA lines
Hostile or broken wheels, for the tests that must refuse them:
   "members": [{"name": "../x", "data": "...", "mode": 0o120777, "compress": "bzip2",
                "in_record": true}]   extra members written as given, after the others
                                       ("in_record": "unhashed" lists it as `name,,`, as
                                       RECORD lists its own signatures RECORD.jws/.p7s)
   "tamper": {"path": "new content"}   content that no longer matches RECORD
   "dist_info": "other-9.9"            another .dist-info directory name
   "filename": "x.whl", "not_zip": true
   "corrupt": {"name": "path", "size": 2, "crc": 0, "encrypted": true, "bad_data": true}
                                       a member's headers or data patched after writing
Prints the path of each wheel it wrote.
"""
import base64
import hashlib
import json
import os
import re
import struct
import sys
import zipfile


def record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build(outdir: str, spec: dict) -> str:
    name, version = spec["name"], spec["version"]
    escaped = re.sub(r"[-_.]+", "_", name)
    tag = spec.get("tag", "py3-none-any")
    dist_info = f"{spec.get('dist_info', f'{escaped}-{version}')}.dist-info"
    data_dir = f"{escaped}-{version}.data"
    files = dict(spec.get("files", {}))
    meta = [f"Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Provides-Extra: {e}" for e in spec.get("extras", [])]
    meta += [f"Requires-Dist: {r}" for r in spec.get("requires", [])]
    meta += spec.get("meta", [])
    files[f"{dist_info}/METADATA"] = "\n".join(meta) + "\n\n"
    purelib = "true" if spec.get("purelib", True) else "false"
    wheel = ["Wheel-Version: 1.0", "Generator: wheelship-tests", f"Root-Is-Purelib: {purelib}"]
    for t in tag.split("-")[0].split("."):
        for a in tag.split("-")[1].split("."):
            for p in tag.split("-")[2].split("."):
                wheel.append(f"Tag: {t}-{a}-{p}")
    files[f"{dist_info}/WHEEL"] = "\n".join(wheel) + "\n"
    eps = spec.get("entry_points")
    if eps:
        text = ""
        for group, items in eps.items():
            text += f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items()) + "\n"
        files[f"{dist_info}/entry_points.txt"] = text
    for key, content in spec.get("data", {}).items():
        files[f"{data_dir}/{key}"] = content
    record_name = f"{dist_info}/RECORD"
    path = os.path.join(outdir, spec.get("filename", f"{escaped}-{version}-{tag}.whl"))
    if spec.get("not_zip"):
        with open(path, "wb") as f:
            f.write(b"this is not a zip file at all")
        return path
    rows = []
    tamper = spec.get("tamper", {})
    methods = {"stored": zipfile.ZIP_STORED, "deflated": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2}
    members = [{"name": a, "data": c} for a, c in sorted(files.items())] + spec.get("members", [])
    import warnings
    warnings.simplefilter("ignore")  # zipfile warns about duplicate names: some tests want them
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for m in members:
            arc, content = m["name"], m.get("data", "")
            data = content.encode() if isinstance(content, str) else bytes(content)
            info = zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0))
            mode = m.get("mode", 0o100755 if arc.startswith(f"{data_dir}/scripts/") else 0o100644)
            info.external_attr = mode << 16
            info.compress_type = methods[m.get("compress", "deflated")]
            written = tamper.get(arc, content)
            z.writestr(info, written.encode() if isinstance(written, str) else bytes(written))
            listed = m.get("in_record", True)
            if listed == "unhashed":
                rows.append(f"{arc},,")
            elif listed:
                rows.append(f"{arc},{record_hash(data)},{len(data)}")
        rows.append(f"{record_name},,")
        info = zipfile.ZipInfo(record_name, date_time=(2020, 1, 1, 0, 0, 0))
        z.writestr(info, "\n".join(rows) + "\n")
    if "corrupt" in spec:
        corrupt(path, spec["corrupt"])
    return path


def corrupt(path: str, how: dict) -> None:
    """Patches one member in both its local header and its central directory entry: its
    declared size, its CRC-32, its encryption flag, or the first byte of its data (0xff starts
    a deflate block of the reserved type)."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(how["name"])
        central = z.start_dir
    raw = bytearray(open(path, "rb").read())
    local = info.header_offset
    while raw[central + 46:central + 46 + len(info.filename)] != info.filename.encode():
        central = raw.index(b"PK\x01\x02", central + 4)
    # (local offset, central offset) of each field
    fields = {"flags": (6, 8, "<H"), "crc": (14, 16, "<I"), "size": (22, 24, "<I")}
    for key, value in (("size", how.get("size")), ("crc", how.get("crc"))):
        if value is not None:
            lo, co, fmt = fields[key]
            struct.pack_into(fmt, raw, local + lo, value)
            struct.pack_into(fmt, raw, central + co, value)
    if how.get("encrypted"):
        lo, co, fmt = fields["flags"]
        for at in (local + lo, central + co):
            struct.pack_into(fmt, raw, at, struct.unpack_from(fmt, raw, at)[0] | 1)
    if how.get("bad_data"):
        name_len, extra_len = struct.unpack_from("<HH", raw, local + 26)
        raw[local + 30 + name_len + extra_len] = 0xFF
    open(path, "wb").write(bytes(raw))


def main() -> None:
    spec = json.load(sys.stdin)
    for s in spec if isinstance(spec, list) else [spec]:
        print(build(sys.argv[1], s))


main()
