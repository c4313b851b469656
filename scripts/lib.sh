# Shared by the wheelship scripts: finding the binaries, saying which step failed.
# shellcheck shell=bash

# The directory of the wheelship binaries: $WHEELSHIP_BIN, else PATH, else this checkout's
# target/release, built only when it is missing or older than a source file (a `find`, not a
# cargo run: a call costs milliseconds when nothing changed), and said so when it builds.
wheelship_bin() {
    if [[ -n "${WHEELSHIP_BIN:-}" ]]; then
        printf '%s\n' "$WHEELSHIP_BIN"
        return
    elif command -v mkenv >/dev/null 2>&1 && command -v bundle >/dev/null 2>&1 \
        && command -v switch >/dev/null 2>&1 && command -v wheelship-host >/dev/null 2>&1; then
        dirname "$(command -v mkenv)"
        return
    fi
    local root rel t why=""
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    rel="$root/target/release"
    for t in hashreq wheelhouse mkenv bundle switch wheelship-host; do
        [[ -x "$rel/$t" ]] || why="they are not built yet"
    done
    if [[ -z "$why" ]] && [[ -n "$(find "$root" -path "$root/target" -prune -o -path "$root/.git" -prune -o \
        \( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) -newer "$rel/switch" -print -quit)" ]]; then
        why="sources changed since the last build"
    fi
    if [[ -n "$why" ]]; then
        echo "${SCRIPT:-wheelship}: building the wheelship binaries ($why): cargo build --release, minutes the first time; cargo's progress follows" >&2
        (cd "$root" && cargo build --release >&2) || die "cannot build the binaries: run \`cargo build --release\` in $root"
        touch "$rel/switch"
    fi
    printf '%s\n' "$rel"
}

# The version of wheelship these scripts belong to (the workspace's).
wheelship_version() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | sed -n 1p
}

# For every script: `--version` prints the script's name and wheelship's version.
if [[ "${1:-}" == --version ]]; then
    echo "${SCRIPT:-wheelship} (wheelship) $(wheelship_version)"
    exit 0
fi

# safe_name NAME: whether NAME may enter a file name or a command line (the rule of the
# tools: letters, digits, `.`, `_`, `-`, not starting with `.` or `-`).
safe_name() {
    [[ "$1" =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$ ]]
}

die() {
    echo "${SCRIPT:-wheelship}: $*" >&2
    exit 1
}

# seconds OPTION VALUE: VALUE is a number of seconds (30, 0.5); else a usage error (exit 2),
# before any work is done.
seconds() {
    [[ "$2" =~ ^[0-9]{1,9}([.][0-9]+)?$ ]] && return 0
    echo "${SCRIPT:-wheelship}: $1 needs a number of seconds (like 30 or 0.5), not '$2'" >&2
    exit 2
}

say() {
    echo "${SCRIPT:-wheelship}: $*" >&2
}

# run STEP CMD... : runs CMD, and if it fails says which step failed (the tool has said why).
run_step() {
    local step=$1
    shift
    "$@" || die "step '$step' failed (exit $?): see the message above"
}

# Splits [USER@HOST:]ROOT into $REMOTE (empty when local) and $ROOT, for the caller.
# shellcheck disable=SC2034
split_target() {
    local target=$1
    if [[ "$target" == *:* ]]; then
        REMOTE=${target%%:*}
        ROOT=${target#*:}
    else
        REMOTE=""
        ROOT=$target
    fi
    [[ -n "$ROOT" ]] || die "empty ROOT in '$target'"
}

# json_fields a.b c.d ... < doc : prints several fields of a JSON document on one line, space
# separated (one python for all of them).
json_fields() {
    python3 -c 'import json, sys
d = json.load(sys.stdin)
out = []
for path in sys.argv[1:]:
    v = d
    for k in path.split("."):
        v = v.get(k) if isinstance(v, dict) else None
    out.append("" if v is None else v if isinstance(v, str) else json.dumps(v))
print(" ".join(out))' "$@"
}

# recorded_paths FROM TO < doc : the document with the requirement files' paths under FROM
# named under TO instead (`requirements.files`, each entry's `file`).
recorded_paths() {
    python3 -c 'import json, sys
src, dst = sys.argv[1], sys.argv[2]
d = json.load(sys.stdin)
r = d.get("requirements") or {}
def moved(p):
    return dst + p[len(src):] if isinstance(p, str) and (p == src or p.startswith(src + "/")) else p
r["files"] = [moved(f) for f in r.get("files", [])]
for e in r.get("entries", []):
    e["file"] = moved(e.get("file"))
print(json.dumps(d))' "$1" "$2"
}

# json_get a.b < doc : prints one string field of a JSON document (python3 is on every box:
# the servers need it for the env anyway).
# emit DOC: the document on stdout when that is a pipe or a file; on a terminal, where it would
# be one line of several KB, a summary of it instead.
emit() {
    if [[ -t 1 ]]; then
        # shellcheck disable=SC2016 # a Python program, not shell
        python3 -c 'import json, sys
d = json.load(sys.stdin)
s = d.get("switch") or {}
if "releases" in s:
    for r in s["releases"]:
        mark = "*" if r.get("current") else " "
        bad = "  (bad)" if r.get("bad") else ""
        print("{} {}  last activated {}{}".format(mark, r.get("id"), r.get("last_activated") or "never", bad))
else:
    env = d.get("env") or {}
    print("live: {}  (previous: {})".format(s.get("current") or "nothing", s.get("previous") or "none"))
    if env:
        print("env: {}  ({})".format(env.get("key"), "reused" if env.get("reused") else "built"))
print("(the whole document goes to a pipe or a file: add `> doc.json`)")' <<<"$1"
    else
        printf '%s\n' "$1"
    fi
}

# json_at KEY... < doc : one field of a JSON document by its keys, each its own word (keys may hold
# dots: file names); a list as its items one a line.
json_at() {
    python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1:]:
    v = v.get(k) if isinstance(v, dict) else None
if isinstance(v, list):
    sys.stdout.write("".join("%s\n" % x for x in v))
else:
    print("" if v is None else v if isinstance(v, str) else json.dumps(v))' "$@"
}

json_get() {
    python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v if isinstance(v, str) else json.dumps(v))' "$1"
}
