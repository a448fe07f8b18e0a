"""What `make lint` would still find, counted per file and per tool.

    .venv/bin/python .ci/lint_files.py [PATH ...]     (default: the paths `make lint` checks)

One line per file with findings: ruff check findings, whether `ruff format` would change the file,
and mypy errors, then the totals. Exit status 0 when nothing is left, 1 otherwise, 2 when a tool
could not run. Meant for after a merge: the files a branch changed while the code base was being
made lint-clean show up here with what is left in each.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["hostctl", "tests", "hw_tests", "benchmarks", "setup.py"]  # the Makefile's LINT_PATHS
TIMEOUT = 600  # seconds per tool; mypy from cold takes well under a minute here


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        sys.exit(f"lint_files: {args[0]} did not finish in {TIMEOUT} s")


def _rel(path: str) -> str:
    p = Path(path)
    return str(p.resolve().relative_to(ROOT)) if p.is_absolute() else path


def main(argv: list[str]) -> int:
    paths = argv or PATHS
    check = _run("ruff", "check", "--output-format", "json", "--exit-zero", *paths)
    if check.returncode != 0:
        print(check.stderr, file=sys.stderr)
        return 2
    ruff = Counter(_rel(f["filename"]) for f in json.loads(check.stdout or "[]"))
    codes = Counter(f["code"] for f in json.loads(check.stdout or "[]"))

    # ruff >= 0.15 lists files as `path:line:col: unformatted: ...` (concise); older ones as `Would reformat: path`
    fmt = _run("ruff", "format", "--check", "--output-format", "concise", *paths)
    if fmt.returncode not in (0, 1):
        fmt = _run("ruff", "format", "--check", *paths)
    if fmt.returncode not in (0, 1):
        print(fmt.stderr, file=sys.stderr)
        return 2
    out = fmt.stdout + fmt.stderr
    reformat = {_rel(m) for m in re.findall(r"^Would reformat: (.+)$", out, re.M)}
    reformat |= {_rel(m) for m in re.findall(r"^(\S+?):\d+:\d+: unformatted", out, re.M)}

    # mypy checks what [tool.mypy] files= names (hostctl/); a narrower PATH list filters its output
    my = _run("mypy")
    if my.returncode not in (0, 1):
        print(my.stdout + my.stderr, file=sys.stderr)
        return 2
    mypy = Counter(m for m in re.findall(r"^([^:\s]+\.py):\d+: error:", my.stdout, re.M))
    if argv:
        mypy = Counter(
            {f: n for f, n in mypy.items() if any(f == p or f.startswith(p.rstrip("/") + "/") for p in argv)}
        )

    files = sorted(set(ruff) | reformat | set(mypy))
    if files:
        print(f"{'ruff':>5} {'fmt':>4} {'mypy':>5}  file")
    for f in files:
        print(f"{ruff[f]:>5} {'yes' if f in reformat else '-':>4} {mypy[f]:>5}  {f}")
    print(
        f"total: ruff check {sum(ruff.values())} finding(s), ruff format {len(reformat)} file(s), "
        f"mypy {sum(mypy.values())} error(s), in {len(files)} file(s)"
    )
    if codes:
        print("ruff codes: " + ", ".join(f"{c} {n}" for c, n in codes.most_common()))
    return 1 if files else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
