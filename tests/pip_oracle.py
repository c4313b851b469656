"""Prints how pip itself reads requirement files, as JSON, for hashreq's comparison test.

Usage: python pip_oracle.py FILE...   (run with a Python whose pip is the one to compare with)
"""
import json
import sys

from pip._internal.exceptions import InstallationError
from pip._internal.network.session import PipSession
from pip._internal.req.constructors import install_req_from_parsed_requirement
from pip._internal.req.req_file import parse_requirements
from pip._vendor.packaging.utils import canonicalize_name


def main() -> None:
    out = []
    try:
        session = PipSession()
        for f in sys.argv[1:]:
            for parsed in parse_requirements(f, session=session):
                ireq = install_req_from_parsed_requirement(parsed)
                req = ireq.req
                hashes = sorted(
                    f"{algo}:{d}"
                    for algo, ds in (ireq.hash_options or {}).items()
                    for d in ds
                )
                out.append(
                    {
                        "name": canonicalize_name(req.name) if req else None,
                        "specifier": str(req.specifier) if req else "",
                        "extras": sorted({canonicalize_name(e) for e in ireq.extras}),
                        "marker": str(ireq.markers) if ireq.markers else None,
                        "hashes": hashes,
                        "constraint": bool(ireq.constraint),
                        "editable": bool(ireq.editable),
                    }
                )
    except (InstallationError, Exception) as e:  # noqa: BLE001 - any refusal counts
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return
    print(json.dumps({"entries": out}))


main()
