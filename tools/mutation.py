"""Mutation testing of qsmflow's core modules with mutmut (a developer command, not run in CI).

Each core module is mutated alone, against the tests that are meant to guard it, in a
scratch copy of the working tree (``.mutation/<module>/``, git-ignored), so that runs of
different modules do not share mutmut's state and the checkout stays clean.

    pip install mutmut                       # 3.x
    python tools/mutation.py kernels         # one module (kernels: ~4 min on 2 cores)
    python tools/mutation.py                 # every core module (hours)
    python tools/mutation.py --report        # the scores of the runs already made
    python tools/mutation.py inversion --sample 37   # only mutants numbered ...3 and ...7 (~20 %)

``--sample`` runs a systematic sample (mutants whose number ends in the given digits) for
modules whose tests are slow; the score is then over the sampled mutants, with its 95 %
interval.

Score = killed / all mutants; mutants that no selected test reaches count as survivors.
A second score leaves out the mutants that change only a logging call's arguments (the
words and numbers of an info or warning line), as PIT leaves out calls to logging
frameworks by default (its ``avoidCallsTo``); both are printed. The survivors of a run are
listed in ``.mutation/<module>/survivors.txt``, logging ones marked ``[log]`` (inspect one
with ``cd .mutation/<module> && mutmut show NAME``).
"""

from __future__ import annotations

import argparse
import ast
import collections
import difflib
import re
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
    "fieldmap": (["fieldmap/__init__.py", "fieldmap/noise.py", "fieldmap/phasediff.py"], ["test_fieldmap.py", "test_units.py"]),
    "unwrap": (["unwrap/__init__.py", "unwrap/romeo.py"], ["test_unwrap.py"]),
    "bgremove": (["bgremove/__init__.py", "bgremove/pde.py", "bgremove/smv.py"], ["test_bgremove.py"]),
    "inversion": ([f"inversion/{f}.py" for f in ("__init__", "_common", "direct", "tv", "solvers", "problem", "ilsqr",
                                                 "regularisation")], ["test_inversion.py"]),
    "relaxometry": (["relaxometry.py", "_shared/lm.py"], ["test_relaxometry.py", "test_lm.py"]),
    "masking": (["masking/__init__.py", "masking/bet.py"], ["test_masking.py", "test_bet.py", "test_sanity.py"]),
    "io-phase": (["io/_phase.py"], ["test_io.py", "test_units.py"]),
    "sanity": (["workflows/sanity.py"], ["test_sanity.py"]),
    "parallel": (["_shared/parallel.py", "_shared/cg.py"], ["test_parallel.py"]),
}


def _config(files, tests) -> str:
    lines = ["", "[tool.mutmut]", 'source_paths = ["src"]',
             "only_mutate = [" + ", ".join(f'"src/qsmflow/{f}"' for f in files) + "]",
             "pytest_add_cli_args_test_selection = [" + ", ".join(f'"tests/{t}"' for t in tests) + "]",
             'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-n", "0"]']  # mutmut runs pytest in its own process
    return "\n".join(lines) + "\n"


def run(module: str, children: int, sample: str | None = None) -> None:
    files, tests = CORE[module]
    work = WORK / module
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for part in ("src", "tests"):
        shutil.copytree(ROOT / part, work / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (work / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + _config(files, tests))
    env = dict(os.environ, PYTHONWARNINGS="ignore::UserWarning:mutmut")
    names = [f"*__mutmut_*{d}" for d in sample] if sample else []
    done = subprocess.run(["mutmut", "run", "--max-children", str(children), *names], cwd=work, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:  # e.g. the unmutated tests failed: show why
        sys.exit(f"mutmut failed on {module} (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    print(report(module))


_LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}


def _log_call_lines(fn: ast.FunctionDef) -> set[int]:
    """Line numbers (absolute) spanned by ``log.<level>(...)`` calls inside ``fn``."""
    lines = set()
    for node in ast.walk(fn):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in _LOG_METHODS and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("log", "logger", "logging")):
            lines.update(range(node.lineno, node.end_lineno + 1))
    return lines


def logging_mutants(work: Path) -> set[str]:
    """Names of the mutants whose every changed line lies inside a logging call."""
    found = set()
    for path in (work / "mutants" / "src").rglob("*.py"):
        text = path.read_text()
        if "__mutmut_" not in text:
            continue
        parts = path.relative_to(work / "mutants" / "src").with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)  # a package's mutants bear its name
        lines = text.splitlines()
        funcs = {}
        for node in ast.walk(ast.parse(text)):
            m = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and re.fullmatch(r"(.+)__mutmut_(\w+)", node.name)
            if m:
                funcs[(m.group(1), m.group(2))] = node
        for (base, tag), node in funcs.items():
            orig = funcs.get((base, "orig"))
            if tag == "orig" or orig is None:
                continue
            a = lines[orig.lineno:orig.end_lineno]  # bodies, without the def line
            b = lines[node.lineno:node.end_lineno]
            changed = set()
            for op, _, _, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
                if op != "equal":
                    changed.update(range(node.lineno + 1 + j1, node.lineno + 1 + max(j2, j1 + 1)))
            if changed and changed <= _log_call_lines(node):
                found.add(f"{module}.{base}__mutmut_{tag}")
    return found


def report(module: str) -> str:
    work = WORK / module
    out = subprocess.run(["mutmut", "results", "--all", "true"], cwd=work, capture_output=True, text=True,
                         check=True).stdout
    status = {}
    for line in out.splitlines():
        if ":" in line:
            name, state = line.strip().rsplit(":", 1)
            status[name.strip()] = state.strip()
    sampled = any(st == "not checked" for st in status.values())
    status = {n: st for n, st in status.items() if st != "not checked"}  # outside a --sample
    counts = collections.Counter(status.values())
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    total = sum(counts.values())
    survivors = sorted(n for n, s in status.items() if s not in ("killed", "timeout"))
    logged = logging_mutants(work) & set(status)
    log_killed = sum(status[n] in ("killed", "timeout") for n in logged)
    code_killed, code_total = killed - log_killed, total - len(logged)
    (work / "survivors.txt").write_text(
        "\n".join(f"{n}: {status[n]}{' [log]' if n in logged else ''}" for n in survivors) + "\n")
    (work / "score.json").write_text(json.dumps({"killed": killed, "total": total, "counts": counts,
                                                  "logging": len(logged), "logging_killed": log_killed}))
    half = 196 * (killed * (total - killed) / max(total, 1) ** 3) ** 0.5  # a sample's 95 % interval, percent
    return (f"{module:12s} {killed:5d} / {total:5d} killed = {100 * killed / max(total, 1):5.1f} %"
            f"{f' (sample, ±{half:.1f})' if sampled else ''};"
            f" without logging calls {code_killed:5d} / {code_total:5d} = "
            f"{100 * code_killed / max(code_total, 1):5.1f} %  {dict(counts)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="*", help=f"core modules: {', '.join(CORE)} (default: all)")
    ap.add_argument("--report", action="store_true", help="print the scores of the runs already made")
    ap.add_argument("--children", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--sample", metavar="DIGITS", help="only mutants whose number ends in one of these digits")
    args = ap.parse_args(argv)
    modules = args.modules or list(CORE)
    if args.sample is not None and not (args.sample.isdigit() and args.sample.isascii()):
        print(f"--sample takes the last digits of the mutants to run (e.g. 3 or 37), got {args.sample!r}",
              file=sys.stderr)
        return 1
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
            run(m, args.children, args.sample)
    return 0


if __name__ == "__main__":
    sys.exit(main())
