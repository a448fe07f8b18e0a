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
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .errors import HostctlError


class ExitStatus(IntEnum):
    """Documented exit codes (README, "Exit codes")."""

    OK = 0
    ERROR = 1  # the command could not do its job (message on stderr)
    USAGE = 2  # bad arguments
    CHECK_FAILED = 3  # an audit or expectation ran and failed
    NOT_RUNNABLE = 4  # the job could not run at all (no lab, no device, dead adb server)
    TIMEOUT = 5  # a device, server or port did not answer in time
    INTERRUPTED = 130  # Ctrl-C


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
    """A command's failure: the message for stderr, the exit status, and for ``--json`` the
    ``error.type`` (``kind``: by default the status, as ``not-runnable``) and the partial
    ``document`` the error object is merged into."""

    def __init__(
        self,
        message: str,
        status: ExitStatus = ExitStatus.ERROR,
        *,
        kind: str | None = None,
        document: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind or status.name.lower().replace("_", "-")
        self.document = document


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
_COMMAND_MODULES = ("device", "modem", "capture", "trace", "relay", "console", "wire", "audit", "demo")
_DISPATCH = {
    "emulator": "emulator",
    "modem": "modem",
    "capture": "capture",
    "trace": "trace",
    "relay": "relay",
    "console": "console",
    "wire-check": "wire",
    "audit": "audit",
    "demo": "demo",
}


def build_parser(env: Environment) -> argparse.ArgumentParser:
    def P(*a: Any, **k: Any) -> argparse.ArgumentParser:
        return _Parser(*a, env=env, **k)

    parser = P(prog="hostctl", description="Audit MIUI Cloud Messaging on Xiaomi handsets over ADB and Frida.")
    parser.add_argument("--version", action="version", version=f"hostctl {__version__}")
    parser.add_argument(
        "--adb",
        action="append",
        metavar="HOST:PORT",
        help="adb server to use (repeatable; default ANDROID_ADB_SERVER_PORT)",
    )
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
    up.add_argument(
        "--testbed-out",
        metavar="FILE",
        help="also write the lab's testbed file here (always written to <lab dir>/testbed.yaml)",
    )
    up.add_argument("--json", action="store_true")
    st = emu_sub.add_parser("status", help="show the lab on this adb port", env=env)
    st.add_argument("--json", action="store_true")
    down = emu_sub.add_parser("down", help="stop the lab on this adb port", env=env)
    down.add_argument("--json", action="store_true")
    reset = emu_sub.add_parser("reset", help="factory-reset one handset", env=env)
    reset.add_argument("serial", help="serial or label of the handset")
    reset.add_argument("--json", action="store_true")
    power = emu_sub.add_parser(
        "power", help="power a handset off or on (the adb server sees it go and come back)", env=env
    )
    power.add_argument("serial")
    power.add_argument("state", choices=["on", "off"])
    power.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None, env: Environment | None = None) -> ExitStatus | int:
    """Run one command. Returns an ExitStatus; `hostctl shell` returns the device command's own
    exit code, as `adb shell` does.

    A failure is one line on stderr and, when ``--json`` was asked for, one document on stdout:
    ``{"error": {"type", "message", "exit_status"}}`` (merged into the partial document a command
    had to show, such as the attempts of a failed ``identity``). A reader that went away (``|
    head``) ends the command quietly with exit status 0."""
    env = env or Environment()
    argv = sys.argv[1:] if argv is None else argv
    args: argparse.Namespace | None = None
    try:
        try:
            _check_adb_port(env)
            args = build_parser(env).parse_args(argv)
            module = _DISPATCH.get(args.command, "device")  # device: devices, info, identity, shell, cm...
            return importlib.import_module(f".commands.{module}", __package__).run(args, env)
        except HostctlError as exc:
            from .commands.device import status_for

            return _fail(env, args, argv, status_for(exc), type(exc).__name__, f"{exc}{_lab_hint(env, exc)}")
        except CliError as exc:
            message = str(exc)
            return _fail(
                env, args, argv, exc.status, exc.kind, message, exc.document, prefixed=message.startswith("hostctl")
            )
        except KeyboardInterrupt:
            return _fail(env, args, argv, ExitStatus.INTERRUPTED, "interrupted", "interrupted")
        except SystemExit as exc:  # argparse --help / --version
            return ExitStatus(exc.code) if isinstance(exc.code, int) and exc.code in (0, 2) else ExitStatus.OK
    except BrokenPipeError:
        _quiet_closed_stdout(env)
        return ExitStatus.OK


def _wants_json(args: argparse.Namespace | None, argv: list[str]) -> bool:
    if args is not None:
        return bool(getattr(args, "json", False))
    words = argv[: argv.index("--")] if "--" in argv else argv  # a usage error: what was typed
    return "--json" in words


def _fail(
    env: Environment,
    args: argparse.Namespace | None,
    argv: list[str],
    status: ExitStatus,
    kind: str,
    message: str,
    document: Mapping[str, Any] | None = None,
    prefixed: bool = False,
) -> ExitStatus:
    """Report a failure: stderr for a person, and the ``{"error": ...}`` document with --json."""
    env.stderr.write(f"{message}\n" if prefixed else f"hostctl: {message}\n")
    if _wants_json(args, argv):
        text = message.removeprefix("hostctl: ")
        print_json(env, {**(document or {}), "error": error_object(status, text, kind)})
    return status


def _lab_hint(env: Environment, exc: Exception) -> str:
    """An adb server that is gone where an emulated lab used to serve: the lab stopped, so the fix
    is ``hostctl emulator up``, not ``adb start-server``."""
    from .errors import AdbServerError

    server = getattr(exc, "server", None)
    port = getattr(server, "port", None)
    if not isinstance(exc, AdbServerError) or not isinstance(port, int):
        return ""
    try:
        from .emulator.lab import lab_dir, running_lab

        if lab_dir(env.home, port).is_dir() and running_lab(env.home, port) is None:
            return (
                f" (an emulated lab used adb port {port} and has stopped: start one again with `hostctl emulator up`)"
            )
    except Exception:  # noqa: BLE001 - a hint must never hide the error it decorates
        return ""
    return ""


def _quiet_closed_stdout(env: Environment) -> None:
    """The reader of our stdout went away: drop what is buffered so the interpreter's last flush
    does not fail again (Python's documented recipe, "Note on SIGPIPE")."""
    try:
        if env.stdout is sys.stdout or env.stdout is sys.__stdout__:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _check_adb_port(env: Environment) -> None:
    """A bad ANDROID_ADB_SERVER_PORT is a usage error, before adbutils (which parses it when
    imported) turns it into a traceback."""
    _ = env.adb_port  # raises CliError when the variable is not a port
    if os.environ.get("ANDROID_ADB_SERVER_PORT") == "":  # empty is unset to adb; adbutils would crash
        del os.environ["ANDROID_ADB_SERVER_PORT"]
    _ = Environment(vars={"ANDROID_ADB_SERVER_PORT": os.environ.get("ANDROID_ADB_SERVER_PORT", "")}).adb_port


def run() -> None:
    try:
        status = int(main())
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_closed_stdout(Environment())
        status = ExitStatus.OK
    sys.exit(status)


def error_object(status: ExitStatus, message: str, kind: str | None = None) -> dict[str, Any]:
    """The ``error`` member of a ``--json`` document whose command failed (exit 1, 2, 4, 5, 130)."""
    return {"type": kind or status.name.lower().replace("_", "-"), "message": message, "exit_status": int(status)}


def print_json(env: Environment, data: Any) -> None:
    env.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def print_table(env: Environment, headers: list[str], rows: list[list[Any]]) -> None:
    cells = [headers] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        env.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")
