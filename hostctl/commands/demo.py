"""``hostctl demo``: what ``make demo`` does, for an installed hostctl (hostctl/demo.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..cli import CliError, Environment, ExitStatus, error_object, print_json


def add_parsers(sub: Any, P: Any, env: Environment) -> None:
    d = sub.add_parser(
        "demo",
        env=env,
        help="audit the emulated lab on the July 2014 build and the 2014-08-10 OTA, and check both read as documented",
    )
    d.add_argument(
        "--profile",
        action="append",
        metavar="NAME",
        dest="profiles",
        help="audit only this shipped profile (repeatable; default both, July first)",
    )
    d.add_argument(
        "--out", default="hostctl-runs", metavar="DIR", help="evidence folder for both runs (default ./hostctl-runs)"
    )
    d.add_argument(
        "--json", action="store_true", help="print one JSON document at the end (the audits' own output goes to stderr)"
    )


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..demo import PROFILES, run_demo

    profiles = tuple(dict.fromkeys(args.profiles or PROFILES))
    unknown = [p for p in profiles if p not in PROFILES]
    if unknown:
        raise CliError(
            f"demo: --profile {unknown[0]}: the demo knows {', '.join(PROFILES)} "
            "(any other profile: hostctl audit --emulator --profile NAME)",
            ExitStatus.USAGE,
        )
    stream = env.stderr if args.json else env.stdout

    def say(text: str) -> None:
        stream.write(text + "\n")
        stream.flush()

    # the audits are child processes writing to our real stdout: with --json, keep it for the document
    result = run_demo(Path(args.out), say=say, profiles=profiles, child_stdout=sys.stderr if args.json else None)
    if args.json:
        doc = dict(result)
        if not result["ok"]:
            doc["error"] = error_object(ExitStatus.ERROR, "an audit did not read as its profile documents")
        print_json(env, doc)
    return ExitStatus.OK if result["ok"] else ExitStatus.ERROR
