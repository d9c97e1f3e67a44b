"""Mutation testing of qsmflow's core modules with mutmut (a developer command, not run in CI).

Each core module is mutated alone, against the tests that are meant to guard it, in a
scratch copy of the working tree (``.mutation/<module>/``, git-ignored), so that runs of
different modules do not share mutmut's state and the checkout stays clean.

    pip install mutmut                       # 3.x
    python tools/mutation.py kernels         # one module (kernels: ~4 min on 2 cores)
    python tools/mutation.py                 # every core module (hours)
    python tools/mutation.py --report        # the scores of the runs already made

Score = killed / all mutants; mutants that no selected test reaches count as survivors.
The survivors of a run are listed in ``.mutation/<module>/survivors.txt``
(inspect one with ``cd .mutation/<module> && mutmut show NAME``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"

# module: (files mutated, tests that guard them)
CORE = {
    "kernels": (["kernels.py"], ["test_kernels.py", "test_units.py"]),
    "fieldmap": (["fieldmap.py"], ["test_fieldmap.py", "test_units.py"]),
    "unwrap": (["unwrap.py", "_romeo.py"], ["test_unwrap.py"]),
    "bgremove": (["bgremove.py", "_bg_pde.py", "_bg_smv.py"], ["test_bgremove.py"]),
    "inversion": (["inversion.py", "_inv_tv.py", "_inv_ops.py", "_inv_ilsqr.py"], ["test_inversion.py"]),
    "relaxometry": (["relaxometry.py"], ["test_relaxometry.py"]),
    "masking": (["masking.py", "bet.py"], ["test_masking.py", "test_bet.py", "test_sanity.py"]),
    "io-phase": (["io/_phase.py"], ["test_io.py", "test_units.py"]),
}


def _config(files, tests) -> str:
    lines = ["", "[tool.mutmut]", 'source_paths = ["src"]',
             "only_mutate = [" + ", ".join(f'"src/qsmflow/{f}"' for f in files) + "]",
             "pytest_add_cli_args_test_selection = [" + ", ".join(f'"tests/{t}"' for t in tests) + "]",
             'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]']
    return "\n".join(lines) + "\n"


def run(module: str, children: int) -> None:
    files, tests = CORE[module]
    work = WORK / module
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for part in ("src", "tests"):
        shutil.copytree(ROOT / part, work / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (work / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + _config(files, tests))
    env = dict(os.environ, PYTHONWARNINGS="ignore::UserWarning:mutmut")
    done = subprocess.run(["mutmut", "run", "--max-children", str(children)], cwd=work, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:  # e.g. the unmutated tests failed: show why
        sys.exit(f"mutmut failed on {module} (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    print(report(module))


def report(module: str) -> str:
    work = WORK / module
    out = subprocess.run(["mutmut", "results", "--all", "true"], cwd=work, capture_output=True, text=True,
                         check=True).stdout
    status = {}
    for line in out.splitlines():
        if ":" in line:
            name, state = line.strip().rsplit(":", 1)
            status[name.strip()] = state.strip()
    counts = collections.Counter(status.values())
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    total = sum(counts.values())
    survivors = sorted(n for n, s in status.items() if s not in ("killed", "timeout"))
    (work / "survivors.txt").write_text("\n".join(f"{n}: {status[n]}" for n in survivors) + "\n")
    (work / "score.json").write_text(json.dumps({"killed": killed, "total": total, "counts": counts}))
    return f"{module:12s} {killed:5d} / {total:5d} killed = {100 * killed / max(total, 1):5.1f} %  {dict(counts)}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="*", help=f"core modules: {', '.join(CORE)} (default: all)")
    ap.add_argument("--report", action="store_true", help="print the scores of the runs already made")
    ap.add_argument("--children", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args(argv)
    modules = args.modules or list(CORE)
    unknown = [m for m in modules if m not in CORE]
    if unknown:
        print(f"unknown module(s) {', '.join(unknown)}; core modules are {', '.join(CORE)}", file=sys.stderr)
        return 1
    if shutil.which("mutmut") is None:
        print("mutmut is not installed: pip install mutmut", file=sys.stderr)
        return 1
    for m in modules:
        if args.report:
            print(report(m) if (WORK / m / "mutants").exists() else f"{m:12s} not run")
        else:
            run(m, args.children)
    return 0


if __name__ == "__main__":
    sys.exit(main())
