"""``hostctl emulator up|status|down|reset|power``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..cli import CliError, Environment, ExitStatus, print_json, print_table
from ..emulator import lab as labmod

CONTROL_TIMEOUT = 120.0
TESTBED_FILE = "testbed.yaml"


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    port = env.adb_port
    home = env.home
    action = args.action
    if action == "up":
        return _up(args, env, port, home)
    info = labmod.running_lab(home, port)
    if info is None and action == "down":
        stale = labmod.clear_stale_lab(home, port, extra_files=(TESTBED_FILE,))
        if stale is not None:  # killed, or its pid now belongs to another process
            return _report(
                env,
                args.json,
                {"running": False, "adb_port": port, "stale_pid": stale.get("pid")},
                f"the lab on adb port {port} (pid {stale.get('pid')}) was already gone: "
                "removed its lab file and testbed and disconnected its handsets from adb",
            )
    if info is None:
        raise CliError(
            f"no emulated lab on adb port {port} (start one with `hostctl emulator up`)",
            ExitStatus.NOT_RUNNABLE,
            document={"running": False, "adb_port": port, "handsets": []} if action == "status" else None,
        )
    if action == "status":
        result = _request(info, {"cmd": "status"})
        result["running"] = True
        if testbed_path(home, port).exists():
            result["testbed"] = str(testbed_path(home, port))
        return _show(env, args.json, result)
    if action == "down":
        _request(info, {"cmd": "down"})
        _wait_exit(int(info["pid"]), 60)
        return _report(env, args.json, {"running": False, "adb_port": port}, f"lab on adb port {port} stopped")
    if action == "reset":
        result = _request(info, {"cmd": "reset", "serial": args.serial})
        _wait_device(port, result["serial"])
        return _report(env, args.json, result, f"{result['serial']} ({result['label']}) factory-reset and back online")
    if action == "power":
        result = _request(info, {"cmd": "power", "serial": args.serial, "on": args.state == "on"})
        if args.state == "on":
            _wait_device(port, result["serial"])
        return _report(env, args.json, result, f"{result['serial']} ({result['label']}) powered {args.state}")
    raise CliError(f"unknown action {action}", ExitStatus.USAGE)


def lab_status(env: Environment, what: str) -> dict[str, Any]:
    """The emulated lab's file on this adb port (for ``--port lab`` and the like), or a
    NOT_RUNNABLE error naming ``what`` asked for it."""
    info = labmod.running_lab(env.home, env.adb_port)
    if info is None:
        raise CliError(f"--port {what}: no emulated lab on adb port {env.adb_port}", ExitStatus.NOT_RUNNABLE)
    return info


def testbed_path(home, port: int) -> Path:
    """Where ``emulator up`` writes the lab's testbed file (removed when the lab stops)."""
    return labmod.lab_dir(home, port) / TESTBED_FILE


def _testbed_targets(args: argparse.Namespace, home, port: int) -> list[Path]:
    """The testbed files to write: the lab's own, then ``--testbed-out`` (absolute) if given."""
    paths = [testbed_path(home, port)]
    if getattr(args, "testbed_out", None):
        out = Path(args.testbed_out).expanduser().absolute()
        if out != paths[0]:
            paths.append(out)
    return paths


def _write_testbed(lab: labmod.Lab, paths: list[Path]) -> None:
    from ..testbed import testbed_for_lab, write_testbed

    testbed = testbed_for_lab(lab)
    comment = (
        f"The emulated lab on adb port {lab.adb_port} (profile {lab.config.profile}), written by "
        "`hostctl emulator up`.\nIts ptys change every time the lab starts: use this file while "
        "this lab runs."
    )
    for path in paths:
        try:
            write_testbed(testbed, path, comment=comment)
        except OSError as exc:
            raise labmod.LabError(f"cannot write the testbed file {path}: {exc}") from None


def _report(env: Environment, as_json: bool, data: dict[str, Any], line: str) -> ExitStatus:
    """A finished action: its JSON document, or one line for a person."""
    if as_json:
        print_json(env, data)
    else:
        env.stdout.write(line + "\n")
    return ExitStatus.OK


def _show(env: Environment, as_json: bool, status: dict[str, Any]) -> ExitStatus:
    public = {k: v for k, v in status.items() if k not in ("token", "control_port")}
    if as_json:
        print_json(env, public)
        return ExitStatus.OK
    env.stdout.write(
        f"emulated lab on adb port {status['adb_port']}, profile {status['profile']}, pid {status['pid']}\n"
    )
    rows = [
        [
            h["serial"],
            h["label"],
            h["number"],
            h["model"],
            "on" if h["powered"] else "off",
            h.get("frida_portal_port") or "-",
        ]
        for h in status["handsets"]
    ]
    print_table(env, ["SERIAL", "LABEL", "NUMBER", "MODEL", "POWER", "FRIDA PORTAL"], rows)
    modem = status.get("modem")
    if modem:
        env.stdout.write(
            f"modem: {modem['pty']} ({modem['url']}), number {modem['number']}, "
            f"IMSI {modem['imsi']}, IMEI {modem['imei']}\n"
        )
    relay = status.get("relay")
    if relay:
        wired = ", ".join(f"{ch}={c['handset']}" for ch, c in relay.get("channels", {}).items())
        env.stdout.write(f"relay: {relay['pty']} ({relay['url']}), channels {wired}\n")
    for label, console in (status.get("consoles") or {}).items():
        env.stdout.write(f"console {label}: {console['pty']} ({console['url']})\n")
    if status.get("testbed"):
        env.stdout.write(f"testbed: {status['testbed']}\n")
    return ExitStatus.OK


def _up(args: argparse.Namespace, env: Environment, port: int, home) -> ExitStatus:
    existing = labmod.running_lab(home, port)
    if existing is not None:
        raise CliError(
            f"a lab is already running on adb port {port} (pid {existing['pid']}); `hostctl emulator down` stops it",
            ExitStatus.ERROR,
        )
    from ..emulator.profiles import ProfileError, load_profile

    try:
        load_profile(args.profile)  # a bad profile is a clear error before anything starts
    except ProfileError as exc:
        raise CliError(str(exc), ExitStatus.USAGE) from None
    if args.detach:
        return _up_detached(args, env, port, home)
    config = labmod.LabConfig(
        adb_port=port,
        handsets=args.handsets,
        profile=args.profile,
        home=home,
        with_apps=not args.no_apps,
        modem=not args.no_modem,
        relay=not args.no_relay,
        consoles=not args.no_consoles,
    )
    try:
        return asyncio.run(_serve(config, env, args.json, _testbed_targets(args, home, port)))
    except labmod.LabError as exc:
        raise CliError(str(exc), ExitStatus.NOT_RUNNABLE) from None
    except Exception as exc:  # noqa: BLE001 - a profile error, an OS error: say what, not a traceback
        raise CliError(f"lab failed: {exc}", ExitStatus.ERROR) from None


async def _serve(config: labmod.LabConfig, env: Environment, as_json: bool, testbeds: list[Path]) -> ExitStatus:
    lab = labmod.Lab(config)
    env.stderr.write(f"starting {config.handsets} emulated handset(s) on adb port {config.adb_port}...\n")
    env.stderr.flush()
    await lab.start()
    try:
        _write_testbed(lab, testbeds)
    except BaseException:
        await lab.stop()
        raise
    _show(env, as_json, dict(lab.status(), testbed=str(testbeds[-1])))
    env.stdout.flush()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(lab.stop()))
        except (RuntimeError, ValueError):  # not the main thread (in-process tests)
            pass
    try:
        await lab.stopped.wait()
    finally:  # its ptys are gone: a stale file would point the next run at nothing
        testbeds[0].unlink(missing_ok=True)
    return ExitStatus.OK


def _up_detached(args: argparse.Namespace, env: Environment, port: int, home) -> ExitStatus:
    lab_dir = labmod.make_private_dir(labmod.lab_dir(home, port))
    log_path = lab_dir / "daemon.log"
    cmd = [
        sys.executable,
        "-m",
        "hostctl",
        "emulator",
        "up",
        "--handsets",
        str(args.handsets),
        "--profile",
        args.profile,
        "--json",
    ]
    if args.no_apps:
        cmd.append("--no-apps")
    if args.no_modem:
        cmd.append("--no-modem")
    if args.no_relay:
        cmd.append("--no-relay")
    if args.no_consoles:
        cmd.append("--no-consoles")
    testbeds = _testbed_targets(args, home, port)
    if len(testbeds) > 1:
        cmd += ["--testbed-out", str(testbeds[-1])]
    for path in testbeds:  # the child writes them once the lab is up: wait for fresh ones
        path.unlink(missing_ok=True)
    child_env = dict(env.vars, ANDROID_ADB_SERVER_PORT=str(port), HOSTCTL_HOME=str(home))
    with labmod.open_private(log_path) as log:  # the log names handsets, numbers and ports
        # umask 077: whatever the lab writes (state, captures, its testbed) is its user's alone
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,
            close_fds=True,
            umask=0o077,
        )
    started = time.monotonic()
    deadline = started + args.timeout
    progress = _DetachProgress(env, started)
    progress.say(
        f"starting {args.handsets} emulated handset(s) on adb port {port} in the background "
        f"(pid {proc.pid}, log {log_path})"
    )
    while time.monotonic() < deadline:
        info = labmod.read_lab_file(home, port)
        if info and info.get("pid") == proc.pid and all(p.exists() for p in testbeds):
            progress.say(f"lab ready after {time.monotonic() - started:.1f} s")
            return _show(env, args.json, dict(info, testbed=str(testbeds[-1])))
        progress.tick()
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise CliError(
                f"the lab exited with status {proc.returncode} before it was ready:\n{tail}", ExitStatus.NOT_RUNNABLE
            )
        time.sleep(0.05)
    proc.terminate()
    raise CliError(f"the lab was not ready within {args.timeout:.0f} s (log: {log_path})", ExitStatus.TIMEOUT)


class _DetachProgress:
    """``emulator up --detach`` waits for the lab in the background: a line on stderr when it
    starts, every few seconds while it waits, and when it is ready (stdout keeps the result)."""

    EVERY = 2.0

    def __init__(self, env: Environment, started: float) -> None:
        self.env, self.started, self.last = env, started, started

    def say(self, text: str) -> None:
        self.env.stderr.write(f"hostctl: {text}\n")
        self.env.stderr.flush()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.EVERY:
            self.last = now
            self.say(f"still starting ({now - self.started:.0f} s)")


def _request(info: dict[str, Any], req: dict[str, Any], timeout: float = CONTROL_TIMEOUT) -> Any:
    """:func:`hostctl.emulator.lab.control_request`, its failures as the CLI's exit codes."""
    try:
        return labmod.control_request(info, req, timeout)
    except labmod.ControlError as exc:
        status = {"timeout": ExitStatus.TIMEOUT, "unreachable": ExitStatus.NOT_RUNNABLE}.get(
            exc.reason, ExitStatus.ERROR
        )
        raise CliError(str(exc), status) from None


def _wait_exit(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not labmod._pid_alive(pid):
            return
        try:  # reap it if it is our child (in-process tests)
            import os

            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    raise CliError(f"the lab (pid {pid}) did not stop within {timeout:.0f} s", ExitStatus.TIMEOUT)


def _wait_device(port: int, serial: str, timeout: float = 20.0) -> None:
    try:
        labmod.wait_for_device(port, serial, timeout)
    except labmod.LabError as exc:
        raise CliError(str(exc), ExitStatus.TIMEOUT) from None
