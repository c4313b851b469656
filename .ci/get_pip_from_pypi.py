"""A stand-in for the pip bootstrap script ansible-test downloads from
https://ci-files.testing.ansible.com (not reachable from every network): pip from the
interpreter's own ensurepip, then the packages ansible-test asks for (`pip==X` …) from PyPI
(or the index pip is configured with). ansible-test looks for it first in
~/.ansible/test/cache/get_pip_<version with _>.py; .ci/run puts it there (ansible/README.md)."""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
wanted = [a for a in sys.argv[1:] if not a.startswith("-")]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet"] + wanted)
