#!/usr/bin/env bash
# piuparts on wheelship's Debian packages, as Debian checks its own: in a fresh bookworm chroot,
# install, upgrade and purge, with nothing left behind that no package owns.
#
#   bash bench/piuparts.sh [WORK]         (as root; a few minutes a package)
#
# Builds the tools' package (scripts/install --deb, from $WHEELSHIP_BIN or this checkout's
# release build) and two releases of a small app (two wheels made here, no network for them)
# as packages, makes an apt repository of the tools and the app's first release, then runs
# piuparts on the tools' package, and on the app's second release (piuparts installs it,
# purges it, then installs the first from the repository and upgrades it to the second, and
# purges again). The Debian base tarball is made once by debootstrap from deb.debian.org (or
# $MIRROR; $DIST for another suite than bookworm) and kept in WORK/$DIST.tgz for the next runs. Prints what piuparts
# says of each, and exits 1 when one fails.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mkdir -p "${1:-$repo/bench/.work/piuparts}" && cd "${1:-$repo/bench/.work/piuparts}" && pwd)
mirror=${MIRROR:-http://deb.debian.org/debian}
dist=${DIST:-bookworm}
[[ $(id -u) == 0 ]] || { echo "piuparts.sh: piuparts runs as root" >&2; exit 2; }
for need in piuparts debootstrap apt-ftparchive dpkg-deb; do
    command -v "$need" >/dev/null || { echo "piuparts.sh: needs $need (apt-get install piuparts debootstrap apt-utils)" >&2; exit 2; }
done
bin=${WHEELSHIP_BIN:-$repo/target/release}
[[ -x $bin/wheelship-host ]] || (cd "$repo" && cargo build --release --quiet)
export WHEELSHIP_BIN=$bin PATH=$bin:$PATH

# The packages: the tools, and two releases of an app (a code change: the same lock).
rm -rf "$work/repo" "$work/next" "$work/app" "$work/wheels" "$work/dist" "$work/cache"
mkdir -p "$work/repo" "$work/next" "$work/app" "$work/wheels"
"$repo/scripts/install" --deb "$work/repo" >/dev/null
python3 "$repo/tests/support/mkwheel.py" "$work/wheels" >/dev/null <<'SPEC'
[{"name": "greeter", "version": "1.0", "requires": ["colors>=1"],
  "files": {"greeter/__init__.py": "from colors import paint\ndef hello(x):\n    return paint('hello ' + x)\n"}},
 {"name": "colors", "version": "1.0", "files": {"colors/__init__.py": "def paint(s):\n    return '*' + s + '*'\n"}}]
SPEC
cd "$work/app"
git init -q .
echo "greeter==1.0" > requirements.txt
echo "import greeter; print(greeter.hello('v1'))" > app.py
git add -A && git -c user.name=b -c user.email=b@example.invalid commit -qm v1
export WHEELSHIP_CACHE=$work/cache
release() {
    "$repo/scripts/release" --offline --wheelhouse "$work/wheels" --out "$work/dist" --deb "$work/app" 2>/dev/null \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["deb"]["path"])'
}
cp "$(release)" "$work/repo/"
sleep 1
echo "import greeter; print(greeter.hello('v2'))" > app.py
git -c user.name=b -c user.email=b@example.invalid commit -qam v2
cp "$(release)" "$work/next/"
cd "$work/repo" && apt-ftparchive packages . > Packages
cd "$work"

base=$work/$dist.tgz
basearg=(-b "$base")
[[ -s $base ]] || basearg=(-s "$base")
common=(-d "$dist" -m "$mirror" --extra-repo "deb [trusted=yes] file://$work/repo ./" --bindmount "$work/repo")
status=0
run() {
    local what=$1 log=$work/$1.log
    shift
    echo "piuparts.sh: $what" >&2
    if piuparts "${common[@]}" "${basearg[@]}" "$@" >"$log" 2>&1; then
        echo "$what: PASS ($(grep -c '' "$log") lines of log: $log)"
    else
        status=1
        echo "$what: FAIL (see $log)"
        grep -E "^[0-9:. ]*(FAIL|ERROR)" "$log" | tail -n 20 || true
    fi
    basearg=(-b "$base")
}
run tools "$work"/repo/wheelship_*.deb
run app "$work"/next/wsapp-*.deb
exit $status
