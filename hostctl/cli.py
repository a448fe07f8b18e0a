"""The ``hostctl`` command line: a thin layer over the library.

``main(argv, env) -> ExitStatus`` is what tests call in-process; ``run()`` is the console script.
Human output goes to stdout, progress and errors to stderr, ``--json`` prints one JSON document.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TextIO

from . import __version__
from .errors import HostctlError
from .status import ExitStatus  # the one exit-code table; re-exported here


@dataclass
class Environment:
    """Everything the CLI touches outside its arguments; tests pass their own."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    vars: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def adb_port(self) -> int:
        text = self.vars.get("ANDROID_ADB_SERVER_PORT", "")
        if not text:
            return 5037
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise CliError(f"ANDROID_ADB_SERVER_PORT={text!r} is not a port number", ExitStatus.USAGE)
        return int(text)

    @property
    def home(self) -> Path:
        from .emulator.lab import default_home

        return default_home(dict(self.vars))


class CliError(Exception):
    def __init__(self, message: str, status: ExitStatus = ExitStatus.ERROR) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, env: Environment, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._env = env

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            (self._env.stderr if file is sys.stderr else self._env.stdout).write(message)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise CliError(f"{self.prog}: error: {message}", ExitStatus.USAGE)


# hostctl/commands/<module>.py: add_parsers(sub, P, env) registers its commands (in this order,
# the order of --help), run(args, env) runs them; _DISPATCH names the module of each command
# that is not the device module's.
_COMMAND_MODULES = ("device", "modem", "capture", "trace", "relay", "console", "wire", "audit")
_DISPATCH = {"emulator": "emulator", "modem": "modem", "capture": "capture", "trace": "trace", "relay": "relay",
             "console": "console", "wire-check": "wire", "audit": "audit"}


def build_parser(env: Environment) -> argparse.ArgumentParser:
    def P(*a: Any, **k: Any) -> argparse.ArgumentParser:
        return _Parser(*a, env=env, **k)

    parser = P(prog="hostctl", description="Audit MIUI Cloud Messaging on Xiaomi handsets over ADB and Frida.")
    parser.add_argument("--version", action="version", version=f"hostctl {__version__}")
    parser.add_argument("--adb", action="append", metavar="HOST:PORT",
                        help="adb server to use (repeatable; default ANDROID_ADB_SERVER_PORT)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in _COMMAND_MODULES:
        importlib.import_module(f".commands.{name}", __package__).add_parsers(sub, P, env)

    emu = sub.add_parser("emulator", help="run an emulated lab", env=env)
    emu_sub = emu.add_subparsers(dest="action", required=True, parser_class=_Parser)
    up = emu_sub.add_parser("up", help="start a lab and attach its handsets to the adb server", env=env)
    up.add_argument("--handsets", type=int, default=2, help="number of handsets (default 2)")
    up.add_argument("--profile", default="miui-v5-2014-08-10", help="firmware profile name or path")
    up.add_argument("--detach", action="store_true", help="run the lab in the background and return")
    up.add_argument("--no-apps", action="store_true", help="skip app processes and Frida portals (faster, no Frida)")
    up.add_argument("--no-modem", action="store_true", help="no emulated GSM modem on a pty")
    up.add_argument("--no-relay", action="store_true", help="no emulated relay board on a pty")
    up.add_argument("--no-consoles", action="store_true", help="no emulated UART consoles on ptys")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the lab (default 60)")
    up.add_argument("--testbed-out", metavar="FILE",
                    help="also write the lab's testbed file here (always written to <lab dir>/testbed.yaml)")
    up.add_argument("--json", action="store_true")
    st = emu_sub.add_parser("status", help="show the lab on this adb port", env=env)
    st.add_argument("--json", action="store_true")
    down = emu_sub.add_parser("down", help="stop the lab on this adb port", env=env)
    down.add_argument("--json", action="store_true")
    reset = emu_sub.add_parser("reset", help="factory-reset one handset", env=env)
    reset.add_argument("serial", help="serial or label of the handset")
    reset.add_argument("--json", action="store_true")
    power = emu_sub.add_parser("power", help="power a handset off or on (the adb server sees it go and come back)", env=env)
    power.add_argument("serial")
    power.add_argument("state", choices=["on", "off"])
    power.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None, env: Environment | None = None) -> ExitStatus | int:
    """Run one command. Returns an ExitStatus; `hostctl shell` returns the device command's own
    exit code, as `adb shell` does."""
    env = env or Environment()
    argv = sys.argv[1:] if argv is None else argv
    try:
        _check_adb_port(env)
        args = build_parser(env).parse_args(argv)
        module = _DISPATCH.get(args.command, "device")      # device: devices, info, identity, shell, cm...
        return importlib.import_module(f".commands.{module}", __package__).run(args, env)
    except HostctlError as exc:
        from .commands.device import status_for

        env.stderr.write(f"hostctl: {exc}\n")
        return status_for(exc)
    except CliError as exc:
        env.stderr.write(f"hostctl: {exc}\n" if not str(exc).startswith("hostctl") else f"{exc}\n")
        return exc.status
    except KeyboardInterrupt:
        env.stderr.write("hostctl: interrupted\n")
        return ExitStatus.INTERRUPTED
    except SystemExit as exc:   # argparse --help / --version
        return ExitStatus(exc.code) if isinstance(exc.code, int) and exc.code in (0, 2) else ExitStatus.OK


def _check_adb_port(env: Environment) -> None:
    """A bad ANDROID_ADB_SERVER_PORT is a usage error, before adbutils (which parses it when
    imported) turns it into a traceback."""
    _ = env.adb_port    # raises CliError when the variable is not a port
    if os.environ.get("ANDROID_ADB_SERVER_PORT") == "":   # empty is unset to adb; adbutils would crash
        del os.environ["ANDROID_ADB_SERVER_PORT"]
    Environment(vars={"ANDROID_ADB_SERVER_PORT": os.environ.get("ANDROID_ADB_SERVER_PORT", "")}).adb_port


def run() -> None:
    sys.exit(int(main()))


def print_json(env: Environment, data: Any) -> None:
    env.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def print_table(env: Environment, headers: list[str], rows: list[list[Any]]) -> None:
    cells = [headers] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        env.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")
