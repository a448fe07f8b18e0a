"""The F-Secure protocol's device steps, driven through adb on any handset.

Each step runs real Android commands from the shell user, within one deadline (``timeout``), and
returns a :class:`StepResult`: the commands it ran with their exit codes and output, the rows it
created, and what it read back to verify. Nothing here asks whether the handset is emulated,
except :func:`factory_reset` and :func:`lab_cloud_state` (and :func:`lab_carrier_records`): they
are the one place the host knowingly uses the emulated lab's control channel, because no adb
command can do what they do (reset a handset; look inside Xiaomi's server).

The Android commands, by step and SDK:

- **add_contact** (all SDKs): ``content insert --uri content://com.android.contacts/raw_contacts
  --bind account_type:s: --bind account_name:s:`` (empty strings: ContactsProvider2 takes an
  empty name and type as the local, account-less contact on every release, where ``:n:`` null
  bindings exist only in Android 11's ``content`` tool), the new ``_id`` read back with ``content
  query ... --projection _id --where '_id>N' --sort '_id ASC'``, then two rows in
  ``content://com.android.contacts/data``: ``vnd.android.cursor.item/name`` (``data1`` the
  display name) and ``vnd.android.cursor.item/phone_v2`` (``data1`` the number, ``data2`` 2 =
  mobile), verified by querying the contact's data rows. **delete_contact** deletes the raw
  contact through ``raw_contacts?caller_is_syncadapter=true`` (a hard delete, data rows too).
- **place_call**: ``am start -a android.intent.action.CALL -d tel:N`` (the shell holds
  CALL_PHONE), ``dumpsys telephony.registry`` until ``mCallState=2`` (off-hook), ``seconds`` of
  call, ``input keyevent KEYCODE_ENDCALL``, ``mCallState=0`` again.
- **micloud_login**: ``am start -n`` the Mi Cloud settings screen, ``uiautomator dump``, ``input
  tap`` on its sign-in row, dump again until it says "Signed in" (or fill the Xiaomi account form
  when one appears and an account was given); ``dumpsys account`` lists the ``com.xiaomi``
  account (:func:`micloud_status`).
- **set_airplane**: SDK 17-23 ``settings put global airplane_mode_on 1|0`` then ``am broadcast -a
  android.intent.action.AIRPLANE_MODE --ez state true|false``; SDK 28+ ``cmd connectivity
  airplane-mode enable|disable`` (Android 9's ConnectivityService shell command). SDK 24-27 (7.0
  took the shell's right to send the protected broadcast, and there is no ``cmd`` for it yet):
  :class:`StepNotPossible`. Verified by reading the setting back.
- **reboot**: adb's ``reboot:`` service (what ``adb reboot`` opens; the shell's ``reboot`` if
  the device refuses it), then the device seen to go and to come back with
  ``sys.boot_completed`` 1 and a ``debug.hostctl.boot`` marker property (set before, lost at
  boot) gone.
- **factory_reset**: a shell user cannot wipe a handset; on the emulated lab the lab's control
  channel ``reset`` does it.
"""

from __future__ import annotations

import re
import secrets
import shlex
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from .device import INJECTION_HINT, DeviceInfo, Handset, ShellResult, injection_refused
from .errors import (
    CommandError,
    DeviceError,
    DeviceGoneError,
    DeviceNotFoundError,
    DeviceStateError,
    DeviceTimeoutError,
    HostctlError,
)

__all__ = [
    "CloudState",
    "CommandRecord",
    "MICLOUD_SETTINGS",
    "MiCloudStatus",
    "StepError",
    "StepNotPossible",
    "StepResult",
    "add_contact",
    "delete_contact",
    "factory_reset",
    "lab_carrier_records",
    "lab_cloud_state",
    "micloud_login",
    "micloud_status",
    "parse_rows",
    "place_call",
    "read_micloud_screen",
    "reboot",
    "set_airplane",
]

CONTACTS = "content://com.android.contacts"
MIME_NAME = "vnd.android.cursor.item/name"
MIME_PHONE = "vnd.android.cursor.item/phone_v2"
PHONE_TYPE_MOBILE = 2
MICLOUD_SETTINGS = "com.miui.cloudservice/com.miui.cloudservice.ui.MiCloudSettingsActivity"
XIAOMI_ACCOUNT_TYPE = "com.xiaomi"
DUMP_PATH = "/data/local/tmp/hostctl-steps-ui.xml"
BOOT_MARKER = "debug.hostctl.boot"
RESET_BY_HAND = (
    "a shell user cannot factory-reset a handset: reset it by hand (Settings > Additional "
    "settings > Backup & reset > Factory data reset), then run the audit with --assume-reset"
)


class StepNotPossible(HostctlError):
    """This handset cannot do the step from adb (a real handset's reset, a sign-in without an
    account, a build that refuses the command): the audit reports NOT-TESTABLE with ``reason``."""

    def __init__(self, reason: str, *, serial: str = "", step: str = "") -> None:
        self.reason = reason
        self.serial = serial
        self.step = step
        super().__init__(reason)


class StepError(DeviceError):
    """The step ran but did not take effect: what the device said is in ``command``/``output``."""


@dataclass(frozen=True)
class CommandRecord:
    command: str
    exit_code: int | None
    output: str
    seconds: float


@dataclass
class StepResult:
    """What a step did: the commands it ran, the rows it made, what it read back (``details``)."""

    step: str
    serial: str
    ok: bool = True
    commands: list[CommandRecord] = field(default_factory=list)
    rows: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    started_at: float = 0.0  # wall clock (time.time())
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- the step runner ------------------------------------------------------------------------------

_OUTPUT_KEPT = 4000


class _Step:
    """One step on one handset: a deadline, and every command recorded as evidence."""

    def __init__(self, h: Handset, name: str, timeout: float) -> None:
        if not (timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.h = h
        self.name = name
        self.timeout = timeout
        self.t0 = time.monotonic()
        self.deadline = self.t0 + timeout
        self.result = StepResult(name, h.serial, started_at=time.time())

    def left(self, floor: float = 0.5) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            last = self.result.commands[-1] if self.result.commands else None
            raise DeviceTimeoutError(
                f"{self.h.serial}: {self.name} did not finish within {self.timeout:g} s",
                serial=self.h.serial,
                server=self.h.server,
                timeout=self.timeout,
                command=last.command if last else None,
                output=last.output if last else "",
            )
        return max(floor, remaining)

    def record(self, command: str, exit_code: int | None, output: str, t0: float) -> None:
        self.result.commands.append(
            CommandRecord(command, exit_code, output[-_OUTPUT_KEPT:], round(time.monotonic() - t0, 3))
        )

    def sh(
        self, command: str, *, check: bool = True, shown: str | None = None, timeout: float | None = None
    ) -> ShellResult:
        """Run ``command`` (``shown`` is what the evidence says was run: secrets masked)."""
        t0 = time.monotonic()
        try:
            res = self.h.shell(command, timeout=min(self.left(), timeout) if timeout else self.left())
        except DeviceError as exc:
            self.record(shown or command, exc.exit_code, exc.output, t0)
            raise
        self.record(shown or command, res.exit_code, res.output, t0)
        if check and not res.ok:
            raise self.command_error(res, shown)
        return res

    def command_error(self, res: ShellResult, shown: str | None = None, why: str = "") -> CommandError:
        cmd = shown or res.command
        return CommandError(
            f"{self.h.serial}: {self.name}: `{cmd}` {why or f'exited {res.exit_code}'}: {_tail(res.output)}",
            serial=self.h.serial,
            server=self.h.server,
            command=cmd,
            output=res.output,
            exit_code=res.exit_code,
        )

    def error(self, message: str, res: ShellResult | None = None) -> StepError:
        return StepError(
            f"{self.h.serial}: {self.name}: {message}",
            serial=self.h.serial,
            server=self.h.server,
            command=res.command if res else None,
            output=res.output if res else "",
            exit_code=res.exit_code if res else None,
        )

    def not_possible(self, reason: str) -> StepNotPossible:
        return StepNotPossible(reason, serial=self.h.serial, step=self.name)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, self.deadline - time.monotonic())))

    def done(self, **details: Any) -> StepResult:
        self.result.details.update(details)
        self.result.seconds = round(time.monotonic() - self.t0, 3)
        return self.result


def _tail(text: str, limit: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _q(text: str) -> str:
    return shlex.quote(text)


_NUMBER = re.compile(r"\+?[0-9]{3,15}")


def _check_number(number: str) -> str:
    """A dialable number (digits, an optional leading +; spaces, dashes, dots and brackets are
    dropped): it goes into shell commands and provider rows, so nothing else passes."""
    cleaned = re.sub(r"[\s().-]", "", str(number))
    if not _NUMBER.fullmatch(cleaned):
        raise ValueError(f"not a phone number: {number!r} (digits with an optional leading +, 3 to 15 digits)")
    return cleaned


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text or "")


# --- content provider rows --------------------------------------------------------------------------

_CONTENT_FAILED = re.compile(r"Error while accessing provider|\[ERROR\]|Exception|usage: adb shell content")
_DENIED = re.compile(r"SecurityException|Permission Denial|requires android\.permission", re.I)


def _content(step: _Step, command: str) -> ShellResult:
    """A ``content`` call: the tool reports some failures with exit code 0, so read its output."""
    res = step.sh(command, check=False)
    if _DENIED.search(res.output):
        raise step.not_possible(
            f"the shell user may not do `{command.split(' --', 1)[0]}` on this build: {_tail(res.output, 200)}"
        )
    if not res.ok or _CONTENT_FAILED.search(res.output):
        raise step.command_error(res, why="failed")
    return res


def parse_rows(text: str, columns: list[str]) -> list[dict[str, str | None]]:
    """``content query`` rows (``Row: N a=1, b=x, y``) for a known projection, in order; a value
    may hold ", " (each column is found by the name of the next one). ``NULL`` becomes None."""
    pattern = re.compile(r"^Row: \d+ " + ", ".join(f"{re.escape(c)}=(.*?)" for c in columns) + r"$", re.M)
    rows = []
    for m in pattern.finditer(text.replace("\r\n", "\n")):
        rows.append({c: (None if v == "NULL" else v) for c, v in zip(columns, m.groups())})
    return rows


def _int_col(row: dict[str, str | None], column: str) -> int:
    value = row[column]
    if value is None:
        raise ValueError(f"{column} is NULL in {row}")
    return int(value)


def _max_raw_contact_id(step: _Step) -> int:
    res = _content(step, f"content query --uri {CONTACTS}/raw_contacts --projection _id --sort {_q('_id DESC')}")
    ids = [int(v) for r in parse_rows(res.stdout, ["_id"]) if (v := r["_id"]) and v.isdigit()]
    return max(ids, default=0)


def add_contact(h: Handset, number: str, name: str, *, timeout: float = 20.0) -> StepResult:
    """Create a local contact ``name`` with mobile ``number`` through the contacts provider, as the
    Contacts app would; returns the raw contact's and the data rows' ids."""
    number = _check_number(number)
    if not name or any(c in name for c in "\x00\n\r"):
        raise ValueError(f"a contact name must be one non-empty line, not {name!r}")
    step = _Step(h, "add contact", timeout)
    before = _max_raw_contact_id(step)
    _content(step, f"content insert --uri {CONTACTS}/raw_contacts --bind account_type:s: --bind account_name:s:")
    res = _content(
        step,
        f"content query --uri {CONTACTS}/raw_contacts --projection _id "
        f"--where {_q(f'_id>{before}')} --sort {_q('_id ASC')}",
    )
    new = [int(v) for r in parse_rows(res.stdout, ["_id"]) if (v := r["_id"]) and v.isdigit()]
    if not new:
        raise step.error(f"the raw contact insert left no new row after _id {before}", res)
    raw_id = new[0]
    if len(new) > 1:
        step.result.notes.append(f"raw contacts {new} appeared meanwhile; this step's is the first, {raw_id}")
    try:
        for mimetype, extra in (
            (MIME_NAME, f"--bind {_q('data1:s:' + name)}"),
            (MIME_PHONE, f"--bind {_q('data1:s:' + number)} --bind data2:i:{PHONE_TYPE_MOBILE}"),
        ):
            _content(
                step,
                f"content insert --uri {CONTACTS}/data --bind raw_contact_id:i:{raw_id} "
                f"--bind mimetype:s:{mimetype} {extra}",
            )
        res = _content(
            step,
            f"content query --uri {CONTACTS}/data --projection _id:mimetype:data1 "
            f"--where {_q(f'raw_contact_id={raw_id}')}",
        )
        rows = parse_rows(res.stdout, ["_id", "mimetype", "data1"])
        by_mime = {r["mimetype"]: r for r in rows}
        phone, named = by_mime.get(MIME_PHONE), by_mime.get(MIME_NAME)
        if phone is None or _digits(phone["data1"] or "") != _digits(number) or named is None:
            raise step.error(f"raw contact {raw_id} does not read back with its name and number: {rows}", res)
    except (DeviceError, StepNotPossible):
        _delete_raw(step, raw_id, check=False)  # leave no half contact behind
        raise
    step.result.rows = {
        "raw_contact_id": raw_id,
        "data": {"name": _int_col(named, "_id"), "phone": _int_col(phone, "_id")},
    }
    return step.done(number=number, name=name, account="local (account_type and account_name empty)")


def _delete_raw(step: _Step, raw_id: int, *, check: bool = True) -> None:
    try:
        _content(
            step,
            f"content delete --uri {_q(CONTACTS + '/raw_contacts?caller_is_syncadapter=true')} "
            f"--where {_q(f'_id={raw_id}')}",
        )
    except (DeviceError, StepNotPossible):
        if check:
            raise


def delete_contact(
    h: Handset, number: str | None = None, *, raw_contact_id: int | None = None, timeout: float = 20.0
) -> StepResult:
    """Delete the contacts that have ``number`` (or the one raw contact ``raw_contact_id``), with
    their data rows. Deleting nothing is not an error (the result says so)."""
    if (number is None) == (raw_contact_id is None):
        raise ValueError("give a number or a raw_contact_id")
    step = _Step(h, "delete contact", timeout)
    if raw_contact_id is not None:
        ids = [int(raw_contact_id)]
    else:
        number = _check_number(number or "")
        res = _content(
            step,
            f"content query --uri {CONTACTS}/data --projection raw_contact_id:data1 "
            f"--where {_q(f'mimetype={chr(39)}{MIME_PHONE}{chr(39)}')}",
        )
        ids = sorted(
            {
                int(rid)
                for r in parse_rows(res.stdout, ["raw_contact_id", "data1"])
                if _digits(r["data1"] or "") == _digits(number) and (rid := r["raw_contact_id"]) and rid.isdigit()
            }
        )
    for raw_id in ids:
        _delete_raw(step, raw_id)
    if ids:
        where = "_id IN (" + ",".join(map(str, ids)) + ")"
        res = _content(
            step, f"content query --uri {CONTACTS}/raw_contacts --projection _id:deleted --where {_q(where)}"
        )
        left = parse_rows(res.stdout, ["_id", "deleted"])
        if any(r["deleted"] != "1" for r in left):
            raise step.error(f"raw contacts still there after the delete: {left}", res)
    else:
        step.result.notes.append("no contact had that number: nothing deleted")
    step.result.rows = {"deleted_raw_contact_ids": ids}
    return step.done(number=number)


# --- a call -------------------------------------------------------------------------------------------

_CALL_STATE = re.compile(r"mCallState=(\d)")


def _call_state(step: _Step) -> int | None:
    res = step.sh("dumpsys telephony.registry", check=False)
    states = [int(s) for s in _CALL_STATE.findall(res.stdout)]
    return max(states) if states else None


def _wait_call_state(step: _Step, want: Callable[[int | None], bool], seen: list, limit: float) -> int | None:
    end = min(step.deadline, time.monotonic() + limit)
    while True:
        state = _call_state(step)
        if not seen or seen[-1][1] != state:
            seen.append((round(time.monotonic() - step.t0, 3), state))
        if want(state) or time.monotonic() >= end:
            return state
        step.sleep(0.1)


def place_call(h: Handset, number: str, *, seconds: float = 3.0, timeout: float = 30.0) -> StepResult:
    """Call ``number`` (the CALL intent, as the dialer sends it), stay ``seconds`` off-hook, hang
    up with KEYCODE_ENDCALL; the call states seen are the evidence. The network side (the peer
    ringing, answering) is not checked: on the emulated lab it does not exist."""
    number = _check_number(number)
    if seconds < 0 or seconds >= timeout:
        raise ValueError(f"seconds ({seconds}) must be >= 0 and less than timeout ({timeout})")
    step = _Step(h, "call", timeout)
    probe = step.sh("input keyevent 0", check=False)  # hanging up needs input injection
    if injection_refused(probe.output):
        raise step.not_possible(f"{INJECTION_HINT} (the call could not be hung up)")
    if _airplane_setting(step) == "1":
        raise step.error("airplane mode is on: the radio cannot place a call")
    res = step.sh(f"am start -a android.intent.action.CALL -d tel:{number}", check=False)
    if _DENIED.search(res.output):
        raise step.not_possible(f"this build does not let the shell place calls: {_tail(res.output, 200)}")
    if not res.ok or "Error" in res.output:
        raise step.command_error(res, why="did not start the call")
    seen: list[tuple[float, int | None]] = []
    state = _wait_call_state(step, lambda s: s == 2, seen, 5.0)
    if state != 2:
        step.sh("input keyevent KEYCODE_ENDCALL", check=False)
        raise step.error(f"the call did not go off-hook (mCallState {state}; airplane mode or no SIM?)")
    step.sleep(seconds)
    end = step.sh("input keyevent KEYCODE_ENDCALL", check=False)
    if not end.ok:
        raise step.command_error(end, why="did not hang up (hang up by hand)")
    state = _wait_call_state(step, lambda s: s == 0, seen, 10.0)
    if state != 0:
        raise step.error(f"the call is still up after KEYCODE_ENDCALL (mCallState {state}): hang up by hand")
    held = next((t for t, s in reversed(seen) if s == 0), None)
    start = next((t for t, s in seen if s == 2), None)
    step.result.notes.append(
        "only the handset's side of the call is exercised; the peer's (ringing, "
        "answering) is not checked, and on the emulated lab it is not emulated"
    )
    return step.done(
        number=number,
        call_states=seen,
        off_hook_seconds=None if held is None or start is None else round(held - start, 3),
    )


# --- Mi Cloud -----------------------------------------------------------------------------------------

_SIGNED_IN = re.compile(r"^(?:signed in(?: as (?P<account>\S+))?|已登录)$", re.I)
_SIGN_IN = re.compile(r"^(?:sign in(?: to mi cloud| with mi account)?|log ?in|登录|登录小米帐号)$", re.I)


@dataclass
class MiCloudStatus:
    serial: str
    signed_in: bool | None  # None: neither source could tell
    account: str | None
    sources: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Node:
    text: str
    resource_id: str
    cls: str
    center: tuple[int, int]
    clickable: bool
    password: bool
    package: str


def _nodes(xml_text: str) -> list[_Node]:
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise ValueError(f"not a uiautomator dump: {exc}") from None
    out = []
    for n in root.iter("node"):
        m = re.fullmatch(r"\[(-?\d+),(-?\d+)\]\[(-?\d+),(-?\d+)\]", n.get("bounds", ""))
        if not m:
            continue
        x1, y1, x2, y2 = map(int, m.groups())
        out.append(
            _Node(
                n.get("text", ""),
                n.get("resource-id", ""),
                n.get("class", ""),
                ((x1 + x2) // 2, (y1 + y2) // 2),
                n.get("clickable") == "true",
                n.get("password") == "true",
                n.get("package", ""),
            )
        )
    return out


def read_micloud_screen(xml_text: str) -> dict[str, Any]:
    """What a Mi Cloud / Xiaomi account screen offers: ``signed_in`` (and ``account``), the
    ``sign_in`` row, or a login ``form`` (account field, password field, button)."""
    nodes = _nodes(xml_text)
    out: dict[str, Any] = {"signed_in": False, "account": None, "sign_in": None, "form": None}
    for n in nodes:
        m = _SIGNED_IN.match(n.text.strip())
        if m or (n.resource_id.endswith(":id/account") and n.text):
            out["signed_in"] = True
            out["account"] = (m.group("account") if m and "account" in m.groupdict() else None) or None
            return out
    out["sign_in"] = next(
        (n for n in nodes if n.resource_id.endswith(":id/sign_in") or (n.clickable and _SIGN_IN.match(n.text.strip()))),
        None,
    )
    fields = [n for n in nodes if n.cls.endswith("EditText")]
    secret = next((n for n in fields if n.password), None)
    user = next((n for n in fields if not n.password), None)
    button = next(
        (n for n in nodes if n.clickable and not n.cls.endswith("EditText") and _SIGN_IN.match(n.text.strip())), None
    )
    if secret is not None and user is not None and button is not None:
        out["form"] = {"account": user, "password": secret, "button": button}
        out["sign_in"] = None
    return out


def _dump(step: _Step) -> str:
    # Some Xiaomi builds kill the dump (no `<hierarchy` in what it wrote): try it again. The last
    # dump is removed first, so a killed dump cannot pass off the previous screen as this one.
    for _attempt in range(3):
        t0 = time.monotonic()
        _rm, dump, cat = step.h.batch(
            [f"rm -f {DUMP_PATH}", f"uiautomator dump {DUMP_PATH}", f"cat {DUMP_PATH}"], timeout=step.left()
        )
        step.record(f"uiautomator dump {DUMP_PATH}; cat {DUMP_PATH}", cat.exit_code, dump.output[-300:], t0)
        if cat.ok and "<hierarchy" in cat.stdout:
            return cat.stdout
    raise step.error(f"uiautomator dump failed 3 times: {_tail(dump.output + cat.output, 200)}", cat)


def _input(step: _Step, args: str, shown: str | None = None) -> None:
    res = step.sh(f"input {args}", check=False, shown=shown and f"input {shown}")
    if injection_refused(res.output):
        raise step.not_possible(INJECTION_HINT)
    if not res.ok:
        raise step.command_error(res, shown and f"input {shown}")


def _accounts(step: _Step) -> tuple[bool | None, str | None]:
    res = step.sh("dumpsys account", check=False)
    found = re.findall(r"Account \{name=([^,}]*), type=([^}]*)\}", res.stdout)
    if not found and "Accounts:" not in res.stdout:
        return None, None
    mine = [name for name, kind in found if kind.strip() == XIAOMI_ACCOUNT_TYPE]
    return bool(mine), (mine[0] if mine else None)


def micloud_status(
    h: Handset, *, ui: bool = False, component: str = MICLOUD_SETTINGS, timeout: float = 15.0
) -> MiCloudStatus:
    """Signed in to Mi Cloud or not: the ``com.xiaomi`` account in ``dumpsys account``, and with
    ``ui`` what the Mi Cloud screen shows."""
    step = _Step(h, "mi cloud status", timeout)
    signed, account = _accounts(step)
    status = MiCloudStatus(
        h.serial, signed, account, {"dumpsys account": {"xiaomi_account": account, "readable": signed is not None}}
    )
    if ui:
        step.sh(f"am start -n {component}", check=False)
        screen = read_micloud_screen(_dump(step))
        status.sources["ui"] = {"component": component, "signed_in": screen["signed_in"], "account": screen["account"]}
        if status.signed_in is None:
            status.signed_in, status.account = screen["signed_in"], screen["account"]
    return status


def micloud_login(
    h: Handset,
    *,
    account: str | None = None,
    password: str | None = None,
    component: str = MICLOUD_SETTINGS,
    timeout: float = 30.0,
) -> StepResult:
    """Sign in to Mi Cloud through Settings > Mi Cloud, as a user does. A screen that signs in at
    once (the emulated lab's test account) needs nothing; a Xiaomi account form is filled with
    ``account``/``password`` when given, else :class:`StepNotPossible` says what is missing."""
    step = _Step(h, "mi cloud login", timeout)
    res = step.sh(f"am start -n {component}", check=False)
    if not res.ok or "Error" in res.output:
        raise step.not_possible(f"no Mi Cloud settings screen ({component}) on this build: {_tail(res.output, 200)}")
    screen = read_micloud_screen(_dump(step))
    screens = ["mi cloud"]
    changed = False
    if not screen["signed_in"]:
        if screen["sign_in"] is None and screen["form"] is None:
            raise step.not_possible(f"the Mi Cloud screen ({component}) shows no sign-in row")
        if screen["sign_in"] is not None:
            _input(step, "tap %d %d" % screen["sign_in"].center)
            changed = True
        screen = _await_screen(step, screens)
        if screen["form"] is not None:
            if not account or not password:
                raise step.not_possible(
                    "Mi Cloud sign-in asks for a Xiaomi account on this handset: give the "
                    "testbed's account and password (micloud_login(account=, password=))"
                )
            _fill_form(step, screen["form"], account, password)
            changed = True
            screen = _await_screen(step, screens, want_signed_in=True)
    signed, listed = _accounts(step)
    if not screen["signed_in"] and not signed:
        raise step.error("the Mi Cloud screen does not say signed in after the sign-in")
    return step.done(
        signed_in=True,
        changed=changed,
        account=screen["account"] or listed,
        xiaomi_account_listed=signed,
        screens=screens,
        component=component,
    )


def _await_screen(step: _Step, screens: list[str], *, want_signed_in: bool = False) -> dict[str, Any]:
    """Dump until the screen settles on signed-in or a form (10 s at most within the deadline)."""
    end = min(step.deadline, time.monotonic() + 10.0)
    while True:
        screen = read_micloud_screen(_dump(step))
        if screen["signed_in"] or (screen["form"] is not None and not want_signed_in) or time.monotonic() >= end:
            screens.append("signed in" if screen["signed_in"] else "account form" if screen["form"] else "other")
            return screen
        step.sleep(0.2)


def _typed(text: str) -> str:
    """For ``input text``, which types "%s" as a space (a literal "%s" cannot be typed at all)."""
    if "%s" in text:
        raise ValueError("`input text` cannot type a literal '%s'")
    return _q(text.replace(" ", "%s"))


def _fill_form(step: _Step, form: dict[str, _Node], account: str, password: str) -> None:
    _input(step, "tap %d %d" % form["account"].center)
    _input(step, f"text {_typed(account)}")
    _input(step, "tap %d %d" % form["password"].center)
    _input(step, f"text {_typed(password)}", shown="text ***")
    _input(step, "tap %d %d" % form["button"].center)


# --- airplane mode ------------------------------------------------------------------------------------

AIRPLANE_CMD_MIN_SDK = 28  # `cmd connectivity airplane-mode`: Android 9
BROADCAST_REFUSED_MIN_SDK = 24  # 7.0: the shell may no longer send AIRPLANE_MODE


def _sdk(step: _Step) -> int | None:
    out = step.sh("getprop ro.build.version.sdk", check=False).stdout.strip()
    return int(out) if out.isdigit() else None


def _airplane_setting(step: _Step) -> str | None:
    out = step.sh("settings get global airplane_mode_on", check=False).stdout.strip()
    return None if out in ("", "null") else out


def set_airplane(h: Handset, on: bool, *, timeout: float = 20.0) -> StepResult:
    """Airplane mode on or off, the way this SDK lets the shell do it; verified by the setting."""
    step = _Step(h, "airplane " + ("on" if on else "off"), timeout)
    sdk = _sdk(step)
    before = _airplane_setting(step)
    want = "1" if on else "0"
    method = None
    if sdk is not None and sdk < 17:
        raise step.not_possible(f"airplane mode from the shell needs Android 4.2+ (SDK {sdk})")
    if sdk is None or sdk >= AIRPLANE_CMD_MIN_SDK:
        res = step.sh(f"cmd connectivity airplane-mode {'enable' if on else 'disable'}", check=False)
        if res.ok and not re.search(
            r"No shell command implementation|Unknown command|not found|Can't find", res.output
        ):
            method = "cmd connectivity airplane-mode"
    if method is None:
        step.sh(f"settings put global airplane_mode_on {want}")
        res = step.sh(
            f"am broadcast -a android.intent.action.AIRPLANE_MODE --ez state {'true' if on else 'false'}", check=False
        )
        if _DENIED.search(res.output):
            step.sh(f"settings put global airplane_mode_on {before or '0'}", check=False)  # as it was
            raise step.not_possible(
                f"Android {sdk or '?'} refuses the AIRPLANE_MODE broadcast from the shell "
                f"(7.0+) and has no `cmd connectivity airplane-mode` (9+): toggle airplane "
                "mode by hand"
            )
        if not res.ok:
            raise step.command_error(res)
        method = "settings put + am broadcast AIRPLANE_MODE"
    after = _airplane_setting(step)
    settle = min(step.deadline, time.monotonic() + 3.0)
    while after != want and time.monotonic() < settle:
        step.sleep(0.1)
        after = _airplane_setting(step)
    if after != want:
        raise step.error(f"airplane_mode_on reads {after!r} after {method}, not {want}")
    return step.done(on=on, sdk=sdk, method=method, setting_before=before, setting_after=after, changed=before != want)


# --- reboot -------------------------------------------------------------------------------------------


def _adb_reboot(step: _Step) -> str:
    """adb's ``reboot:`` service (``adb reboot``); the shell's ``reboot`` where it is refused."""
    h = step.h
    t0 = time.monotonic()
    try:
        conn = h._open("reboot:", step.deadline, "adb reboot")  # a raw service, no shell
    except (DeviceStateError, DeviceNotFoundError):
        raise
    except DeviceError as exc:
        step.record("adb reboot (reboot: service)", None, str(exc), t0)
        try:
            step.sh("reboot", check=False, timeout=5.0)
        except (DeviceGoneError, DeviceTimeoutError):
            pass  # the device went down under the command, as it should
        return "shell reboot"
    try:
        conn.conn.settimeout(min(5.0, step.left()))
        while conn.conn.recv(4096):
            pass
    except OSError:
        pass  # the transport went down with the device
    finally:
        conn.conn.close()
    step.record("adb reboot (reboot: service)", None, "", t0)
    return "adb reboot:"


def _state(h: Handset, left: float) -> str:
    try:
        return h.state(timeout=min(2.0, left))
    except DeviceNotFoundError:
        return "absent"
    except DeviceError as exc:
        return getattr(exc, "state", None) or "absent"


def _wait_back(step: _Step, marker: str | None, progress: dict[str, Any]) -> None:
    """Until the device answers with sys.boot_completed 1 (and the boot marker gone)."""
    while True:
        left = step.left()
        if _state(step.h, left) == "device":
            try:
                res = step.h.shell(f"getprop sys.boot_completed; getprop {BOOT_MARKER}", timeout=min(5.0, left))
                lines = (res.stdout.splitlines() + ["", ""])[:2]
                progress["boot_completed"] = lines[0].strip()
                if lines[0].strip() == "1" and (marker is None or lines[1].strip() != marker):
                    progress.setdefault("back_after", round(time.monotonic() - step.t0, 3))
                    return
            except (DeviceGoneError, DeviceNotFoundError, DeviceStateError, DeviceTimeoutError):
                pass
        if time.monotonic() + 0.2 >= step.deadline:
            raise DeviceTimeoutError(
                f"{step.h.serial}: did not come back from the reboot within {step.timeout:g} s (last: {progress})",
                serial=step.h.serial,
                server=step.h.server,
                timeout=step.timeout,
                command="adb reboot",
            )
        step.sleep(0.2)


def reboot(h: Handset, *, wait: bool = True, timeout: float = 90.0) -> StepResult:
    """Reboot (``adb reboot``) and, with ``wait``, return once the handset is back and booted."""
    step = _Step(h, "reboot", timeout)
    marker = secrets.token_hex(4)
    step.sh(f"setprop {BOOT_MARKER} {marker}", check=False)
    readback = step.sh(f"getprop {BOOT_MARKER}", check=False).stdout.strip()
    marker_set = readback == marker
    how = _adb_reboot(step)
    progress: dict[str, Any] = {"method": how, "boot_marker": marker_set}
    if not wait:
        return step.done(**progress, waited=False)
    end = min(step.deadline, time.monotonic() + 15.0)
    while time.monotonic() < end:  # the device must be seen to go ...
        if _state(h, step.left()) != "device":
            progress["went_away_after"] = round(time.monotonic() - step.t0, 3)
            break
        step.sleep(0.05)
    if "went_away_after" not in progress and not marker_set:
        raise step.error("the handset did not go down within 15 s of `adb reboot`")
    _wait_back(step, marker if marker_set else None, progress)  # ... and to come back
    if "went_away_after" not in progress:
        step.result.notes.append("the adb server never showed the device gone; the boot marker shows it rebooted")
    return step.done(**progress, waited=True)


# --- the emulated lab's control channel (the only place the host asks the lab) ------------------


class CloudState(TypedDict):
    """The emulated Cloud Messaging server's store (a plain dict, JSON as it is): ``retained`` is
    what it holds (``bodies``: message bodies waiting for delivery, none may remain after delivery
    or expiry; ``bytes``), ``stats`` its counters (routed_ip, stored, expired, delivered_later)."""

    serial: str
    retained: dict[str, Any]
    stats: dict[str, Any]
    ttl: float | None
    lab_pid: int | None


def _lab_of(step: _Step, home: Path | str | None, not_emulated: str) -> dict[str, Any]:
    """The running lab serving this handset, found only for a handset that reports itself as
    emulated (``Handset.info()``); StepNotPossible for anything else."""
    from .emulator.lab import default_home, running_lab

    h = step.h
    info: DeviceInfo = h.info()
    step.result.details["emulated"] = info.emulated_evidence or False
    if not info.emulated:
        raise step.not_possible(not_emulated)
    if h.server.host not in ("127.0.0.1", "localhost", "::1"):
        raise step.not_possible(
            f"the emulated lab's control channel is reached on the lab's host; the adb "
            f"server {h.server} is remote (run hostctl there)"
        )
    base = Path(home) if home is not None else default_home()
    lab = running_lab(base, h.server.port)
    serials = [x.get("serial") for x in (lab or {}).get("handsets", [])]
    if lab is None or h.serial not in serials:
        raise step.not_possible(
            f"{h.serial} is emulated ({info.emulated_evidence}) but no hostctl lab under "
            f"{base} serves adb port {h.server.port}"
        )
    return lab


def _control(step: _Step, lab: dict[str, Any], req: dict[str, Any]) -> Any:
    from .emulator.lab import LabError, control_request

    t0 = time.monotonic()
    try:
        reply = control_request(lab, req, timeout=step.left(1.0))
    except LabError as exc:
        step.record(f"lab control {req.get('cmd')}", None, str(exc), t0)
        raise StepError(
            f"{step.h.serial}: {step.name}: the lab refused `{req.get('cmd')}`: {exc}",
            serial=step.h.serial,
            server=step.h.server,
            command=f"lab control {req.get('cmd')}",
            output=str(exc),
        ) from None
    step.record(f"lab control {req.get('cmd')}", 0, "", t0)
    return reply


def factory_reset(h: Handset, *, home: Path | str | None = None, timeout: float = 90.0) -> StepResult:
    """Factory-reset the handset: only the emulated lab can (its control channel's ``reset``);
    a real handset raises StepNotPossible telling the user to reset it by hand."""
    step = _Step(h, "factory reset", timeout)
    lab = _lab_of(step, home, RESET_BY_HAND)
    reply = _control(step, lab, {"cmd": "reset", "serial": h.serial})
    progress: dict[str, Any] = {}
    _wait_back(step, None, progress)
    step.result.notes.append("reset through the emulated lab's control channel (no adb command can do it)")
    return step.done(lab_pid=lab.get("pid"), handset=reply, **progress)


def lab_cloud_state(h: Handset, *, home: Path | str | None = None, timeout: float = 15.0) -> CloudState:
    """What the emulated Cloud Messaging server's store holds now (the no-retention check)."""
    step = _Step(h, "cloud state", timeout)
    lab = _lab_of(step, home, "no-retention can only be inspected on the emulated server")
    reply = _control(step, lab, {"cmd": "cloud"})
    retained = dict(reply.get("retained") or {})
    retained.setdefault("bodies", retained.get("messages", 0))
    return CloudState(
        serial=h.serial,
        retained=retained,
        stats=dict(reply.get("stats") or {}),
        ttl=reply.get("ttl"),
        lab_pid=lab.get("pid"),
    )


def lab_carrier_records(
    h: Handset, *, home: Path | str | None = None, since: float = 0.0, number: str | None = None, timeout: float = 15.0
) -> list[dict[str, Any]]:
    """The emulated carrier's SMS records (to or from ``number``, since a wall-clock time)."""
    step = _Step(h, "carrier records", timeout)
    lab = _lab_of(step, home, "the carrier's records exist only on the emulated lab")
    req: dict[str, Any] = {"cmd": "carrier", "since": since}
    if number:
        req["number"] = _check_number(number)
    return list(_control(step, lab, req))
