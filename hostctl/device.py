"""The device layer: handsets reached by serial through an adb server, local or remote.

A :class:`Handset` talks to one device through the adb server's smart-socket protocol (adbutils'
connection primitives), with a deadline on every call. It never asks whether the device is real or
emulated; :class:`DeviceInfo` reports that for reports only.

Errors are :class:`DeviceError` subclasses that carry the serial, the command, the output gathered
so far and the exit code, so a caller can keep the evidence of a half-finished command.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, TypeVar

from adbutils import AdbClient
from adbutils._adb import AdbConnection
from adbutils.errors import AdbConnectionError, AdbError, AdbTimeout

from .errors import (
    AdbServerError,
    CommandError,
    DeviceError,
    DeviceGoneError,
    DeviceNotFoundError,
    DeviceStateError,
    DeviceTimeoutError,
    HostctlError,
)

__all__ = [
    "AdbAddress",
    "AdbServerError",
    "CommandError",
    "DeviceEntry",
    "DeviceError",
    "DeviceGoneError",
    "DeviceInfo",
    "DeviceNotFoundError",
    "DeviceStateError",
    "DeviceTimeoutError",
    "Handset",
    "HostctlError",
    "InputInjection",
    "RootStatus",
    "ShellResult",
    "list_devices",
    "parse_getprop",
    "select_handset",
    "servers_from_env",
    "dump_ui",
    "injection_refused",
]

DEFAULT_TIMEOUT = 20.0  # seconds for one shell command unless the caller says otherwise
CONNECT_TIMEOUT = 3.0  # seconds to reach the adb server's port
SHELL_PACKAGE = "com.android.shell"

T = TypeVar("T")
_E = TypeVar("_E", bound="DeviceError")


# --- servers ----------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class AdbAddress:
    """Where an adb server listens: ``host:port`` (a lab with several hosts has several)."""

    host: str = "127.0.0.1"
    port: int = 5037

    @classmethod
    def parse(cls, text: str) -> AdbAddress:
        """``HOST:PORT``, ``PORT``, ``tcp:HOST:PORT`` (adb's ADB_SERVER_SOCKET), or ``[v6]:PORT``."""
        raw = text.strip()
        value = raw.removeprefix("tcp:")
        host, port = "127.0.0.1", value
        if value.startswith("["):
            host, _, port = value[1:].partition("]")
            port = port.removeprefix(":")
        elif ":" in value:
            host, _, port = value.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536 or not host:
            raise ValueError(f"not an adb server address: {raw!r} (expected HOST:PORT or PORT)")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def servers_from_env(env: Mapping[str, str]) -> list[AdbAddress]:
    """The adb server adb itself would use: ADB_SERVER_SOCKET, else ANDROID_ADB_SERVER_PORT."""
    sock = env.get("ADB_SERVER_SOCKET", "")
    if sock:
        return [AdbAddress.parse(sock)]
    host = env.get("ANDROID_ADB_SERVER_ADDRESS", "") or "127.0.0.1"
    port = env.get("ANDROID_ADB_SERVER_PORT", "") or "5037"
    return [AdbAddress.parse(f"{host}:{port}")]


class _Connection(AdbConnection):
    """adbutils' connection, with three changes for a lab tool:

    - no fallback of starting a local adb server on failure (a dead or remote server must give a
      clear error, not a surprise ``adb start-server``);
    - the connect honours the caller's deadline and reaches IPv6 servers too;
    - no 10 ms sleep on close (adbutils' uiautomator2 work-around; every request of ours reads its
      answer to the end).
    """

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self._connect_timeout = timeout
        super().__init__(host, port)

    def _safe_connect(self):
        host, port = self._AdbConnection__host, self._AdbConnection__port
        try:
            return socket.create_connection((host, port), timeout=self._connect_timeout)
        except TimeoutError as exc:
            raise AdbTimeout("connect to adb server timeout") from exc
        except OSError as exc:
            raise AdbConnectionError(f"connect to adb server failed: {exc}") from exc

    def close(self) -> None:
        sock = self.__dict__.get("_AdbConnection__conn")
        if sock is not None:
            sock.close()
            self.__dict__["_AdbConnection__conn"] = None


class _Client(AdbClient):
    def make_connection(self, timeout: float | None = None) -> AdbConnection:
        timeout = timeout or CONNECT_TIMEOUT
        conn = _Connection(self.host, self.port, timeout)
        conn.conn.settimeout(timeout)
        return conn


def _client(server: AdbAddress) -> _Client:
    return _Client(server.host, server.port)


def _remaining(deadline: float) -> float:
    return max(0.05, deadline - time.monotonic())


def _server_call(server: AdbAddress, fn: Callable[[_Client], T]) -> T:
    """Run one request against the server, turning socket failures into AdbServerError."""
    try:
        return fn(_client(server))
    except (TimeoutError, AdbTimeout) as exc:
        raise AdbServerError(server, "timed out", timed_out=True) from exc
    except AdbConnectionError as exc:
        reason = str(exc).removeprefix("connect to adb server failed: ")
        raise AdbServerError(server, reason) from exc
    except (OSError, EOFError) as exc:
        raise AdbServerError(server, f"connection dropped: {exc}") from exc


def _request(service: str) -> None:
    """adb's smart-socket requests carry a 4-hex-digit length: refuse what cannot be sent."""
    try:
        size = len(service.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError(f"the command is not valid UTF-8 text ({exc.reason} at {exc.start})") from None
    if size > 0xFFFF:
        raise ValueError(f"the command is {size} bytes; adb requests are limited to 65535")


# --- device listing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceEntry:
    """One line of ``adb devices -l`` on one server."""

    serial: str
    state: str
    server: AdbAddress
    transport_id: int | None = None
    product: str = ""
    model: str = ""
    device: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["server"] = str(self.server)
        return data


def list_devices(servers: Sequence[AdbAddress], *, timeout: float = CONNECT_TIMEOUT) -> list[DeviceEntry]:
    """Every device on every server, in server order; a dead server raises AdbServerError."""
    entries: list[DeviceEntry] = []
    for server in servers:
        infos = _server_call(server, lambda c: _list(c, timeout))
        for info in infos:
            entries.append(
                DeviceEntry(
                    serial=info.serial,
                    state=info.state,
                    server=server,
                    transport_id=info.transport_id,
                    product=info.tags.get("product", ""),
                    model=info.tags.get("model", ""),
                    device=info.tags.get("device", ""),
                )
            )
    return entries


def _list(client: _Client, timeout: float) -> list[Any]:
    with client.make_connection(timeout=timeout) as conn:
        conn.send_command("host:devices-l")
        conn.check_okay()
        text = conn.read_string_block()
    infos = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            tags = dict(p.split(":", 1) for p in parts[2:] if ":" in p)
            infos.append(_Listed(parts[0], parts[1], tags))
    return infos


@dataclass(frozen=True)
class _Listed:
    serial: str
    state: str
    tags: dict[str, str]

    @property
    def transport_id(self) -> int | None:
        value = self.tags.get("transport_id", "")
        return int(value) if value.isdigit() else None


# --- re-attaching network handsets ---------------------------------------------------------

# A serial of the form HOST:PORT is a device the server reaches over TCP (``adb connect``); the
# server keeps such devices in memory only, so a restarted server has forgotten them (a USB
# handset is found again by the server's own scan) and after about a minute offline it drops
# them (AOSP adb transport.cpp, ReconnectHandler).
_TCP_SERIAL = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(\d{1,5})$")
REATTACH_TIMEOUT = 10.0


def is_network_serial(serial: str) -> bool:
    """Whether ``serial`` names a device reached over TCP (``HOST:PORT``), which an adb server
    attaches only when asked (``adb connect``)."""
    m = _TCP_SERIAL.match(serial or "")
    return m is not None and 0 < int(m.group(1)) < 65536


def reattach(serial: str, server: AdbAddress, *, timeout: float = REATTACH_TIMEOUT) -> bool:
    """``adb connect SERIAL`` on ``server`` for a network handset it does not list, then wait
    (up to ``timeout``) until it is ``device``. True when it is; False when ``serial`` is not a
    network serial or the device did not come (the caller then reports it as not found)."""
    if not is_network_serial(serial):
        return False
    deadline = time.monotonic() + timeout

    def connect(c: _Client) -> str:
        with c.make_connection(timeout=_remaining(deadline)) as conn:
            conn.send_command(f"host:connect:{serial}")
            conn.check_okay()
            return conn.read_string_block()

    try:
        if not any(e.serial == serial for e in list_devices([server], timeout=_remaining(deadline))):
            answer = _server_call(server, connect)
            if "connected" not in answer:  # "failed to connect to ...": nothing listens there
                return False
        while time.monotonic() < deadline:
            states = {e.serial: e.state for e in list_devices([server], timeout=_remaining(deadline))}
            if states.get(serial) == "device":
                return True
            if serial not in states:
                return False
            time.sleep(0.05)
    except (AdbServerError, AdbError):
        return False
    return False


def select_handset(serial: str | None, servers: Sequence[AdbAddress], *, timeout: float = DEFAULT_TIMEOUT) -> Handset:
    """adb's convention: the named serial, else the one device attached; errors say which. A
    named network handset (``HOST:PORT``) the server has forgotten is connected again."""
    entries = list_devices(servers, timeout=min(timeout, CONNECT_TIMEOUT))
    where = ", ".join(str(s) for s in servers)
    if serial and not any(e.serial == serial for e in entries) and is_network_serial(serial):
        for server in servers:
            if reattach(serial, server, timeout=min(timeout, REATTACH_TIMEOUT)):
                entries = list_devices(servers, timeout=min(timeout, CONNECT_TIMEOUT))
                break
    if serial:
        matches = [e for e in entries if e.serial == serial]
        if not matches:
            known = ", ".join(e.serial for e in entries) or "none"
            raise DeviceNotFoundError(
                f"device {serial!r} not found on adb server {where} (attached: {known})", serial=serial
            )
        entry = matches[0]
    else:
        usable = [e for e in entries if e.state == "device"] or entries
        if not usable:
            raise DeviceNotFoundError(f"no devices attached to adb server {where}", serial="")
        if len(usable) > 1:
            raise DeviceNotFoundError(
                f"more than one device attached ({', '.join(e.serial for e in usable)}); "
                "name one with -s SERIAL or ANDROID_SERIAL",
                serial="",
            )
        entry = usable[0]
    _check_state(entry)
    return Handset(entry.serial, entry.server, timeout=timeout, transport_id=entry.transport_id)


_STATE_HINTS = {
    "unauthorized": "accept the RSA key prompt on the handset (USB debugging authorisation)",
    "offline": "replug the cable or restart adbd (adb reconnect)",
    "authorizing": "wait for the handset to finish authorising",
    "connecting": "wait for the transport to come up",
}


def _check_state(entry: DeviceEntry) -> None:
    if entry.state != "device":
        hint = _STATE_HINTS.get(entry.state, "the handset must be booted with adb enabled")
        raise DeviceStateError(
            f"device {entry.serial} is {entry.state}: {hint}",
            state=entry.state,
            serial=entry.serial,
            server=entry.server,
        )


# --- shell ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShellResult:
    """One finished shell command. ``stderr`` is separate only where the device has shell_v2."""

    command: str
    exit_code: int
    stdout: str
    stderr: str = ""

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def parse_getprop(text: str) -> dict[str, str]:
    """``getprop``'s ``[key]: [value]`` lines; values may span lines (multi-line props)."""
    props: dict[str, str] = {}
    for m in re.finditer(r"^\[([^\]\n]+)\]: \[(.*?)\]$", text.replace("\r\n", "\n"), re.M | re.S):
        props[m.group(1)] = m.group(2)
    return props


class RootStatus(str, Enum):
    ADBD = "adbd"  # adbd itself runs as root (eng/userdebug build, `adb root`)
    SU = "su"  # an su binary that granted uid 0 when asked
    SU_PRESENT = "su-present"  # an su binary exists; not asked (see probe_su)
    SU_DENIED = "su-denied"  # an su binary exists but did not grant root in time
    NONE = "none"


class InputInjection(str, Enum):
    ALLOWED = "allowed"
    BLOCKED = "blocked"  # MIUI: "USB debugging (Security settings)" is off
    UNKNOWN = "unknown"


INJECTION_HINT = (
    "MIUI blocks input injection from adb: enable Settings > Additional settings > "
    'Developer options > "USB debugging (Security settings)" (needs a SIM and a '
    "Mi account sign-in); UI automation cannot run until then"
)

# MIUI's refusal of `input` (AOSP InputManagerService): "Injecting to another application requires
# INJECT_EVENTS permission" (Android <= 12), "Injecting input events requires the caller (or the
# source of the instrumentation, if any) to have the INJECT_EVENTS permission." (13+); real outputs
# in tests/fixtures/real/inject_events_*.txt.
_INJECTION_REFUSED = re.compile(r"Injecting\b[^\n]*\brequires\b[^\n]*INJECT_EVENTS", re.I)


def injection_refused(output: str) -> bool:
    """Whether an `input` command's output is MIUI's (Android's) INJECT_EVENTS refusal."""
    return bool(_INJECTION_REFUSED.search(output)) or "INJECT_EVENTS" in output


UI_DUMP_PATH = "/data/local/tmp/hostctl-ui.xml"


def dump_ui(h: Handset, *, timeout: float | None = None, attempts: int = 3, path: str = UI_DUMP_PATH) -> str:
    """``uiautomator dump`` the screen and read it back. Some Xiaomi builds kill the dump (the
    output then lacks ``<hierarchy``): it is retried ``attempts`` times before failing with what
    the device said. The previous dump is removed first: a killed dump leaves the last screen's
    file behind, which must not be read as this screen."""
    said = ""
    for _ in range(max(1, attempts)):
        _rm, dump, cat = h.batch([f"rm -f {path}", f"uiautomator dump {path}", f"cat {path}"], timeout=timeout)
        if cat.ok and "<hierarchy" in cat.stdout:
            return cat.stdout[cat.stdout.index("<") :] if "<" in cat.stdout else cat.stdout
        said = (dump.output + cat.output).strip()
    raise CommandError(
        f"{h.serial}: uiautomator dump failed {attempts} times: {_tail(said, 200)}",
        serial=h.serial,
        command=f"uiautomator dump {path}",
        output=said,
    )


_SU_PATHS = (
    "/system/xbin/su",
    "/system/bin/su",
    "/sbin/su",
    "/su/bin/su",
    "/debug_ramdisk/su",
    "/system/sbin/su",
    "/vendor/bin/su",
)


@dataclass(frozen=True)
class DeviceInfo:
    serial: str
    server: str
    model: str
    market_name: str
    brand: str
    manufacturer: str
    device: str
    miui_version_name: str | None
    miui_version_code: int | None
    android_release: str
    sdk: int | None
    build_fingerprint: str
    build_type: str
    emulated: bool
    emulated_evidence: str
    root: RootStatus
    su_path: str | None
    input_injection: InputInjection
    input_injection_hint: str | None
    adb_features: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["root"] = self.root.value
        data["input_injection"] = self.input_injection.value
        return data


def _int_or_none(text: str) -> int | None:
    return int(text) if text.strip().lstrip("-").isdigit() else None


def emulation_evidence(props: Mapping[str, str], serial: str) -> str:
    """Why a device looks emulated ('' if it does not). For reports only; nothing branches on it."""
    if props.get("ro.hostctl.emulated") == "1":
        return "ro.hostctl.emulated=1 (hostctl emulated lab)"
    if props.get("ro.kernel.qemu") == "1" or props.get("ro.boot.qemu") == "1":
        return "ro.kernel.qemu=1 (Android emulator)"
    hardware = props.get("ro.hardware", "")
    if hardware in ("goldfish", "ranchu", "vbox86"):
        return f"ro.hardware={hardware}"
    if serial.startswith("emulator-"):
        return f"serial {serial}"
    return ""


class Handset:
    """One device on one adb server. Every call has a deadline (``timeout`` seconds).

    ``Handset("abcd1234")`` uses the server from the environment; ``server="10.0.0.5:5037"``
    reaches a remote one. Commands go to the transport id when known (one request to the server
    per command) and fall back to the serial if the device re-attached under a new id.
    """

    def __init__(
        self,
        serial: str,
        server: AdbAddress | str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport_id: int | None = None,
    ) -> None:
        if server is None:
            server = servers_from_env(os.environ)[0]
        self.serial = serial
        self.server = AdbAddress.parse(server) if isinstance(server, str) else server
        self.timeout = timeout
        self._transport_id = transport_id
        self._features: frozenset[str] | None = None

    def __repr__(self) -> str:
        return f"Handset({self.serial!r}, server={str(self.server)!r})"

    # -- transport ----------------------------------------------------------------------------

    def _error(self, cls: type[_E], message: str, **kw: Any) -> _E:
        return cls(message, serial=self.serial, server=self.server, **kw)

    def _open(self, service: str, deadline: float, command: str) -> AdbConnection:
        """A connection switched to this device's transport with ``service`` opened on it."""
        _request(service)
        fail = ""
        reattached = False
        for attempt in range(3):
            by_id = self._transport_id is not None and attempt == 0
            try:
                conn = _client(self.server).make_connection(timeout=_remaining(deadline))
            except AdbTimeout as exc:
                raise AdbServerError(self.server, "timed out", timed_out=True) from exc
            except AdbConnectionError as exc:
                raise AdbServerError(self.server, str(exc).removeprefix("connect to adb server failed: ")) from exc
            try:
                conn.send_command(
                    f"host:transport-id:{self._transport_id}" if by_id else f"host:transport:{self.serial}"
                )
                conn.check_okay()
                conn.send_command(service)
                conn.check_okay()
                if not by_id:
                    self._transport_id = None  # re-attached: stay with the serial
                return conn
            except (TimeoutError, AdbTimeout) as exc:
                conn.conn.close()
                raise self._error(
                    DeviceTimeoutError,
                    f"{self.serial}: the adb server did not open `{command}` within the deadline",
                    command=command,
                    timeout=self.timeout,
                ) from exc
            except AdbError as exc:
                conn.conn.close()
                fail = str(exc)
                if fail.startswith("Unknown data: b''"):
                    raise AdbServerError(self.server, "it closed the connection") from exc
                if by_id and ("no device with transport id" in fail or "not found" in fail):
                    continue  # re-attached under a new transport id: try by serial
                if (
                    not reattached
                    and "not found" in fail
                    and reattach(self.serial, self.server, timeout=min(REATTACH_TIMEOUT, _remaining(deadline)))
                ):
                    reattached = True  # a network handset the server had forgotten: once more
                    self._transport_id = None
                    continue
                break
            except OSError as exc:
                conn.conn.close()
                raise AdbServerError(self.server, f"connection dropped: {exc}") from exc
        return self._raise_open_failure(fail, command)

    def _raise_open_failure(self, fail: str, command: str):
        if "not found" in fail or "no devices" in fail or "no device with" in fail:
            raise self._error(
                DeviceNotFoundError,
                f"device {self.serial} not found on adb server {self.server} ({fail})",
                command=command,
            )
        for state, hint in _STATE_HINTS.items():
            if state in fail:
                raise DeviceStateError(
                    f"device {self.serial} is {state}: {hint}",
                    state=state,
                    serial=self.serial,
                    server=self.server,
                    command=command,
                )
        raise self._error(DeviceError, f"{self.serial}: adb server refused: {fail}", command=command)

    def features(self, *, timeout: float | None = None) -> frozenset[str]:
        """The ADB features the device and server share (``shell_v2``, ``cmd``, ...)."""
        if self._features is None:
            deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
            text = self._host_query("features", deadline)
            self._features = frozenset(f for f in text.strip().split(",") if f)
        return self._features

    def state(self, *, timeout: float | None = None) -> str:
        """``device``, ``offline``, ``unauthorized``, ... as the server reports it."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        return self._host_query("get-state", deadline).strip()

    def _host_query(self, what: str, deadline: float) -> str:
        def ask(c: _Client) -> str:
            with c.make_connection(timeout=_remaining(deadline)) as conn:
                conn.send_command(f"host-serial:{self.serial}:{what}")
                conn.check_okay()
                return conn.read_string_block()

        try:
            return _server_call(self.server, ask)
        except AdbServerError:
            raise
        except AdbError as exc:
            return self._raise_open_failure(str(exc), what)

    # -- shell --------------------------------------------------------------------------------

    def shell(self, command: str, *, timeout: float | None = None, check: bool = False) -> ShellResult:
        """Run ``command`` with ``sh -c`` on the device; exit code via shell_v2 or a marker.

        Raises DeviceTimeoutError after ``timeout`` seconds (the remote command is closed),
        DeviceGoneError if the device vanishes first, CommandError if ``check`` and it failed.
        """
        timeout = self.timeout if timeout is None else timeout
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        deadline = time.monotonic() + timeout
        if "shell_v2" in self.features(timeout=timeout):
            result = self._shell_v2(command, deadline, timeout)
        else:
            result = self._shell_v1(command, deadline, timeout)
        if check and not result.ok:
            raise self._error(
                CommandError,
                f"{self.serial}: `{command}` exited {result.exit_code}: {_tail(result.output)}",
                command=command,
                output=result.output,
                exit_code=result.exit_code,
            )
        return result

    def run(self, command: str, *, timeout: float | None = None) -> str:
        """stdout of a command that must succeed."""
        return self.shell(command, timeout=timeout, check=True).stdout

    def _read(
        self, conn: AdbConnection, n: int, deadline: float, command: str, got: Callable[[], str], timeout: float
    ) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timeout(command, got(), timeout)
        conn.conn.settimeout(remaining)
        try:
            return conn.conn.recv(n)
        except TimeoutError:
            raise self._timeout(command, got(), timeout) from None
        except OSError:
            return b""

    def _timeout(self, command: str, output: str, timeout: float) -> DeviceTimeoutError:
        return self._error(
            DeviceTimeoutError,
            f"{self.serial}: `{command}` did not finish within {timeout:g} s",
            command=command,
            output=output,
            timeout=timeout,
        )

    def _gone(self, command: str, output: str, deadline: float) -> DeviceGoneError:
        try:  # what the server says now, within what is left of the deadline (1 s at least)
            state = self.state(timeout=max(1.0, deadline - time.monotonic()))
            detail = f"the connection closed before the command finished (adb state now: {state})"
        except (DeviceError, AdbServerError) as exc:
            detail = f"the device disappeared ({exc})"
        return self._error(DeviceGoneError, f"{self.serial}: `{command}`: {detail}", command=command, output=output)

    def _shell_v2(self, command: str, deadline: float, timeout: float) -> ShellResult:
        conn = self._open(f"shell,v2,raw:{command}", deadline, command)
        out, err = bytearray(), bytearray()
        buf = bytearray()
        got = lambda: (out + err).decode("utf-8", "replace")  # noqa: E731
        try:
            while True:
                while len(buf) >= 5:
                    kind, length = buf[0], int.from_bytes(buf[1:5], "little")
                    if len(buf) < 5 + length:
                        break
                    payload = bytes(buf[5 : 5 + length])
                    del buf[: 5 + length]
                    if kind == 1:
                        out += payload
                    elif kind == 2:
                        err += payload
                    elif kind == 3:
                        return ShellResult(
                            command,
                            payload[0] if payload else 255,
                            out.decode("utf-8", "replace"),
                            err.decode("utf-8", "replace"),
                        )
                chunk = self._read(conn, 65536, deadline, command, got, timeout)
                if not chunk:
                    raise self._gone(command, got(), deadline)
                buf += chunk
        finally:
            conn.conn.close()

    def _shell_v1(self, command: str, deadline: float, timeout: float) -> ShellResult:
        marker = "__hostctl_exit_" + secrets.token_hex(6) + "__"
        # a subshell, so that an `exit N` in the command still lets the marker report N
        conn = self._open(f'shell:( {command}\n)\necho "{marker}$?"', deadline, command)
        data = bytearray()
        got = lambda: data.decode("utf-8", "replace")  # noqa: E731
        try:
            while True:
                chunk = self._read(conn, 65536, deadline, command, got, timeout)
                if not chunk:
                    break
                data += chunk
        finally:
            conn.conn.close()
        text = data.decode("utf-8", "replace")
        marks = list(re.finditer(re.escape(marker) + r"(\d+)\r?\n?", text))
        if not marks:
            raise self._gone(command, text, deadline)
        m = marks[-1]  # output after it (a background job's) is kept, not taken for a failure
        stdout = (text[: m.start()] + text[m.end() :]).replace("\r\n", "\n")
        return ShellResult(command, int(m.group(1)), stdout)

    def batch(self, commands: Sequence[str], *, timeout: float | None = None) -> list[ShellResult]:
        """Several commands in one shell round trip, each with its own output and exit code.

        Each runs as ``( CMD ) 2>&1`` (stderr folded into stdout); results come back in order.
        """
        if not commands:
            return []
        marker = "__hostctl_" + secrets.token_hex(6)
        script = "\n".join(f'( {cmd}\n) 2>&1; echo "\n{marker}:{i}:$?"' for i, cmd in enumerate(commands))
        result = self.shell(script, timeout=timeout)
        results: list[ShellResult] = []
        start = 0
        for m in _BATCH_MARK.finditer(result.stdout + "\n"):
            if m.group(1) != marker:
                continue
            body = result.stdout[start : m.start()]
            results.append(ShellResult(commands[int(m.group(2))], int(m.group(3)), body))
            start = m.end()
        if len(results) != len(commands):
            raise self._error(
                DeviceError,
                f"{self.serial}: a batch of {len(commands)} commands "
                f"stopped after {len(results)} (at `{commands[len(results)]}`)",
                command=script,
                output=result.output,
                exit_code=result.exit_code,
            )
        return results

    # -- properties and info ------------------------------------------------------------------

    def getprops(self, *, timeout: float | None = None) -> dict[str, str]:
        """All system properties (one ``getprop`` call)."""
        return parse_getprop(self.run("getprop", timeout=timeout))

    def root_status(self, *, probe_su: bool = False, su_timeout: float = 5.0) -> tuple[RootStatus, str | None]:
        """Whether root is available, and the su path if there is one.

        ``probe_su`` runs ``su -c id`` (it may pop a grant prompt on the handset); without it an
        su binary is reported as ``su-present``.
        """
        id_out, ls_out = self.batch(["id", "ls " + " ".join(_SU_PATHS)])
        if re.search(r"\buid=0\(", id_out.stdout):
            return RootStatus.ADBD, None
        su_path = next((p for p in _SU_PATHS if re.search(rf"^{re.escape(p)}\s*$", ls_out.stdout, re.M)), None)
        if su_path is None:
            return RootStatus.NONE, None
        if not probe_su:
            return RootStatus.SU_PRESENT, su_path
        try:
            res = self.shell(f"{su_path} -c id", timeout=su_timeout)
        except DeviceTimeoutError:
            return RootStatus.SU_DENIED, su_path
        return (RootStatus.SU if re.search(r"\buid=0\(", res.output) else RootStatus.SU_DENIED), su_path

    def input_injection(self) -> tuple[InputInjection, str | None]:
        """Try a harmless key event (KEYCODE_UNKNOWN) and read MIUI's INJECT_EVENTS refusal."""
        res = self.shell("input keyevent 0")
        if injection_refused(res.output):
            return InputInjection.BLOCKED, INJECTION_HINT
        if res.ok and "Exception" not in res.output:
            return InputInjection.ALLOWED, None
        return InputInjection.UNKNOWN, f"`input keyevent 0` said: {_tail(res.output)}"

    def info(self, *, probe_su: bool = False) -> DeviceInfo:
        props = self.getprops()
        root, su_path = self.root_status(probe_su=probe_su)
        injection, hint = self.input_injection()
        return DeviceInfo(
            serial=self.serial,
            server=str(self.server),
            model=props.get("ro.product.model", ""),
            market_name=props.get("ro.product.marketname", "") or props.get("ro.product.model", ""),
            brand=props.get("ro.product.brand", ""),
            manufacturer=props.get("ro.product.manufacturer", ""),
            device=props.get("ro.product.device", ""),
            miui_version_name=props.get("ro.miui.ui.version.name") or None,
            miui_version_code=_int_or_none(props.get("ro.miui.ui.version.code", "")),
            android_release=props.get("ro.build.version.release", ""),
            sdk=_int_or_none(props.get("ro.build.version.sdk", "")),
            build_fingerprint=props.get("ro.build.fingerprint", ""),
            build_type=props.get("ro.build.type", ""),
            emulated=bool(emulation_evidence(props, self.serial)),
            emulated_evidence=emulation_evidence(props, self.serial),
            root=root,
            su_path=su_path,
            input_injection=injection,
            input_injection_hint=hint,
            adb_features=sorted(self.features()),
        )


_BATCH_MARK = re.compile(r"\n?(__hostctl_[0-9a-f]{12}):(\d+):(\d+)\r?\n")


def _tail(text: str, limit: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def for_each(
    handsets: Iterable[Handset], fn: Callable[[Handset], T], *, workers: int = 16
) -> list[tuple[Handset, T | None, BaseException | None]]:
    """Run ``fn`` on every handset in parallel; each result or error kept, in input order."""
    items = list(handsets)
    if not items:
        return []

    def one(h: Handset) -> tuple[Handset, T | None, BaseException | None]:
        try:
            return h, fn(h), None
        except Exception as exc:  # noqa: BLE001 - kept per handset: one bad device must not hide the others
            return h, None, exc

    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(one, items))
