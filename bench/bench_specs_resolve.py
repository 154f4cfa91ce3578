"""spec:// resolution: 10,000 URIs against generated specs, per kind, against a plain floor.

Run: ``.venv/bin/python bench/bench_specs_resolve.py [--specs 1000] [--uris 10000]``; prints
JSON. The specs are ``bench_specs_index``'s generator (``--specs`` capabilities of two
requirements and three scenarios each, plus change ``add-2fa`` adding a requirement to
``cap-0001``). The URIs are a fixed mix, a quarter each: a capability (``spec://cap-0042``), a
requirement (``.../Login``), a scenario (``.../Login#Good%20password``) and a version: the
change's own requirement at ``@add-2fa`` (the delta applied, as archiving would) alternating
with an untouched capability at ``@add-2fa`` (current, with a notice). The floor is the same
URIs split by hand and looked up in dicts built once: what any resolver must at least do.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aidp.specs import load_project
from aidp.specs.resolver import resolve
from tests.specs.test_index import many_specs

KINDS = ("capability", "requirement", "scenario", "version")


def make_uris(specs: int, count: int) -> list[tuple[str, str]]:
    """(kind, uri) pairs, a quarter of each kind, capabilities spread over all specs."""
    uris: list[tuple[str, str]] = []
    for n in range(count):
        kind = KINDS[n % 4]
        cap = f"cap-{(n * 7919) % specs:04d}"
        if kind == "capability":
            uris.append((kind, f"spec://{cap}"))
        elif kind == "requirement":
            uris.append((kind, f"spec://{cap}/{'Login' if n % 8 < 4 else 'Logout'}"))
        elif kind == "scenario":
            uris.append((kind, f"spec://{cap}/Login#{'Good' if n % 8 < 4 else 'Bad'}%20password"))
        elif n % 8 < 4:
            uris.append((kind, "spec://cap-0001/Two%20factor#Code%20ok@add-2fa"))
        else:
            uris.append((kind, f"spec://{cap}/Logout@add-2fa"))
    return uris


def floor(project: object, uris: list[tuple[str, str]]) -> float:
    """Seconds to split every URI and look it up in prebuilt dicts."""
    specs = project.specs  # type: ignore[attr-defined]
    table = {(cap, r.name): {s.name: s for s in r.scenarios}
             for cap, spec in specs.items() for r in spec.requirements}
    start = time.perf_counter()
    for _, uri in uris:
        rest, _, _version = uri[len("spec://"):].partition("@")
        path, _, scenario = rest.partition("#")
        cap, _, name = path.partition("/")
        if name:
            found = table.get((cap, unquote(name)))
            if scenario and found is not None:
                found.get(unquote(scenario))
        else:
            specs.get(cap)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--specs", type=int, default=1000)
    parser.add_argument("--uris", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = many_specs(Path(tmp), args.specs)
        start = time.perf_counter()
        project = load_project(root)
        load_s = time.perf_counter() - start
    uris = make_uris(args.specs, args.uris)
    per_kind = dict.fromkeys(KINDS, 0.0)
    start = time.perf_counter()
    for kind, uri in uris:
        t0 = time.perf_counter()
        resolve(project, uri)
        per_kind[kind] += time.perf_counter() - t0
    total_s = time.perf_counter() - start
    floor_s = floor(project, uris)
    per = args.uris / len(KINDS)
    result = {
        "specs": args.specs, "uris": args.uris, "load_project_s": round(load_s, 3),
        "total_s": round(total_s, 4), "us_per_uri": round(total_s / args.uris * 1e6, 2),
        "us_per_uri_by_kind": {k: round(v / per * 1e6, 2) for k, v in per_kind.items()},
        "floor_total_s": round(floor_s, 4),
        "floor_us_per_uri": round(floor_s / args.uris * 1e6, 3),
        "ratio_vs_floor": round(total_s / floor_s, 1),
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
