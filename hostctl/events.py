"""The agent's event schema, typed on the host: one frozen dataclass per event kind.

The agent (``agent/src/events.ts``) sends each event as one Frida message: a JSON object with
``v`` (the schema version, :data:`SCHEMA_VERSION`), ``kind``, ``seq``, ``t`` (agent wall clock,
ms), ``pid``, ``tid``, the kind's fields, and ``parts`` describing the binary payloads that travel
as the message's data (captured bytes concatenated, never stringified). :func:`from_agent` checks
and splits that; the tracer adds what only the host knows (which app, when it arrived) and its
own kinds (attach, detach, the gap while an app restarted, start and stop of the trace).

On disk a trace is JSON Lines, one event per line (:func:`to_json` / :func:`from_json`,
:class:`EventWriter`, :func:`read_jsonl`): the common header ``v, kind, source, app, pid, tid,
seq, host_ts, agent_ts`` (seconds since the epoch, host and agent clocks), then the kind's fields;
payloads are ``{"length": bytes the call handled, "size": bytes captured, "base64": ...}`` and
addresses ``{"ip", "port"}`` or ``{"path"}``.

Every error is an :class:`EventError` that names the line, or the kind and sequence number.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import threading
import types
import typing
from collections import Counter
from collections.abc import Iterator, Mapping
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

from .errors import HostctlError

__all__ = [
    "SCHEMA_VERSION",
    "AgentError",
    "AgentStart",
    "AgentStop",
    "Attached",
    "CipherOp",
    "Connect",
    "CipherOperation",
    "Detached",
    "Endpoint",
    "Event",
    "EventError",
    "EventWriter",
    "EvpCipher",
    "Gap",
    "HookStatus",
    "IdentifierRead",
    "InvalidMessage",
    "Missing",
    "MxCall",
    "Payload",
    "SmsSend",
    "SocketData",
    "SslData",
    "TlsSecret",
    "TraceNote",
    "TraceStart",
    "TraceStop",
    "cipher_operations",
    "from_agent",
    "from_json",
    "keylog_lines",
    "kinds",
    "read_events",
    "read_jsonl",
    "to_json",
]

SCHEMA_VERSION = 2
# Trace files this host reads: version 1 is version 2 without the tls-secret kind.
READABLE_VERSIONS = (1, 2)


class EventError(HostctlError):
    """An event that does not follow the schema; the message names where it came from."""


# --- value types ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A socket address: IP and port, or a UNIX socket path (``@name``: abstract namespace)."""

    ip: str | None = None
    port: int | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.path is None and (self.ip is None or self.port is None):
            raise ValueError("an endpoint is ip and port, or a path")

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        return f"[{self.ip}]:{self.port}" if ":" in (self.ip or "") else f"{self.ip}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path} if self.path is not None else {"ip": self.ip, "port": self.port}

    @classmethod
    def from_json(cls, obj: Any) -> Endpoint:
        if not isinstance(obj, dict):
            raise ValueError(f"an endpoint must be an object, not {type(obj).__name__}")
        if "path" in obj:
            return cls(path=_typed(obj["path"], str, "path"))
        return cls(ip=_typed(obj.get("ip"), str, "ip"), port=_typed(obj.get("port"), int, "port"))


@dataclass(frozen=True, slots=True)
class Payload:
    """Bytes a hooked call handled: ``data`` as captured, ``length`` as handled (the agent cuts
    captures at its limit, so ``length`` may exceed ``len(data)``)."""

    data: bytes
    length: int

    def __post_init__(self) -> None:
        if self.length < len(self.data):
            raise ValueError(f"payload of {len(self.data)} bytes claims a length of {self.length}")

    @property
    def truncated(self) -> bool:
        return self.length > len(self.data)

    def __bytes__(self) -> bytes:
        return self.data

    def to_json(self) -> dict[str, Any]:
        return {"length": self.length, "size": len(self.data), "base64": base64.b64encode(self.data).decode("ascii")}

    @classmethod
    def from_json(cls, obj: Any) -> Payload:
        if not isinstance(obj, dict):
            raise ValueError(f"a payload must be an object, not {type(obj).__name__}")
        try:
            data = base64.b64decode(_typed(obj.get("base64"), str, "base64"), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"payload base64: {exc}") from None
        size = obj.get("size", len(data))
        if size != len(data):
            raise ValueError(f"payload size {size} but {len(data)} bytes of base64")
        return cls(data=data, length=_typed(obj.get("length"), int, "length"))


@dataclass(frozen=True, slots=True)
class Missing:
    """A hook the agent could not place: ``target`` (``native:lib!sym``, ``java:Class.method``)
    and why."""

    target: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "reason": self.reason}

    @classmethod
    def from_json(cls, obj: Any) -> Missing:
        if not isinstance(obj, dict):
            raise ValueError("a missing hook must be an object")
        return cls(target=_typed(obj.get("target"), str, "target"), reason=_typed(obj.get("reason"), str, "reason"))


_VALUE_TYPES = (Endpoint, Payload, Missing)


def _typed(value: Any, kind: type, name: str) -> Any:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ValueError(f"{name}: expected {kind.__name__}, got {type(value).__name__} {value!r:.60}")
    return value


# --- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """What every event carries. ``host_ts``: when the host received (or made) it; ``agent_ts``:
    the agent's clock when it happened (seconds since the epoch); ``seq``: the agent's counter,
    from 1 for each loaded agent (a hole is a lost event)."""

    KIND: ClassVar[str] = ""
    SOURCE: ClassVar[str] = "agent"

    app: str
    pid: int | None = None
    host_ts: float
    agent_ts: float | None = None
    seq: int | None = None
    tid: int | None = None

    @property
    def kind(self) -> str:
        return self.KIND

    def payloads(self) -> dict[str, Payload]:
        """Every binary payload of the event by name (what an identifier scan reads)."""
        out: dict[str, Payload] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Payload):
                out[f.name] = value
        blobs = getattr(self, "blobs", None)
        if blobs:
            out.update(blobs)
        return out


# agent kinds


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStart(Event):
    KIND: ClassVar[str] = "agent-start"
    process: str
    arch: str
    platform: str
    frida: str
    runtime: str
    java: bool
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class HookStatus(Event):
    """Cumulative: the last one received is the agent's whole state."""

    KIND: ClassVar[str] = "hook-status"
    hooked: tuple[str, ...]
    missing: tuple[Missing, ...]
    java: bool
    reason: str = ""

    def missing_targets(self) -> dict[str, str]:
        return {m.target: m.reason for m in self.missing}


@dataclass(frozen=True, slots=True, kw_only=True)
class SslData(Event):
    """Plaintext handed to (``out``) or returned by (``in``) a TLS library."""

    KIND: ClassVar[str] = "ssl"
    fn: str
    direction: str
    module: str
    ssl: str | None = None
    fd: int
    socket_type: str | None = None
    local: Endpoint | None = None
    peer: Endpoint | None = None
    sni: str | None = None
    length: int
    data: Payload


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSecret(Event):
    """One TLS secret as a line of the NSS key log format (``CLIENT_RANDOM`` for TLS 1.2; the
    handshake, traffic and exporter secrets of TLS 1.3), from the library that made it.

    ``via``: ``keylog-callback`` (the library's own SSL_CTX_set_keylog_callback line) or
    ``session`` (the master key read from the session after a handshake: OpenSSL 1.1.0).
    ``client_random`` and ``secret`` are lower-case hex, as in the key log."""

    KIND: ClassVar[str] = "tls-secret"
    label: str
    client_random: str
    secret: str
    module: str
    via: str = "keylog-callback"
    ssl: str | None = None
    fd: int | None = None
    socket_type: str | None = None
    local: Endpoint | None = None
    peer: Endpoint | None = None
    sni: str | None = None

    def __post_init__(self) -> None:
        if not (_is_hex(self.client_random) and len(self.client_random) == 64):
            raise ValueError(f"client_random must be 64 hex digits, not {self.client_random!r}")
        if not (_is_hex(self.secret) and 32 <= len(self.secret) <= 192):
            raise ValueError("secret must be hex")
        if not self.label.replace("_", "").isalnum():
            raise ValueError(f"label {self.label!r} is not a key log label")

    def keylog_line(self) -> str:
        """The line as an NSS key log file holds it (no newline)."""
        return f"{self.label} {self.client_random} {self.secret}"


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdef" for c in text)


def keylog_lines(events: typing.Iterable[Event]) -> list[str]:
    """The NSS key log of a stream of events: one line per distinct TLS secret, in order."""
    return list(dict.fromkeys(e.keylog_line() for e in events if isinstance(e, TlsSecret)))


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketData(Event):
    """Bytes through a socket call (send, sendto, write on a socket, recv, recvfrom)."""

    KIND: ClassVar[str] = "socket"
    fn: str
    direction: str
    fd: int
    socket_type: str | None = None
    local: Endpoint | None = None
    peer: Endpoint | None = None
    length: int
    data: Payload


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect(Event):
    """connect(): ``ret`` -1 with ``errno`` 115 (EINPROGRESS) is a non-blocking connect under way."""

    KIND: ClassVar[str] = "connect"
    fn: str = "connect"
    fd: int
    socket_type: str | None = None
    peer: Endpoint | None = None
    local: Endpoint | None = None
    ret: int
    errno: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentifierRead(Event):
    """An app read a device or subscriber identifier (which API, the value, who called)."""

    KIND: ClassVar[str] = "identifier-read"
    api: str
    class_name: str
    method: str
    identifier: str
    args: tuple[Any, ...] = ()
    value: Any = None
    caller: str | None = None
    stack: tuple[str, ...] = ()
    blobs: Mapping[str, Payload] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class CipherOp(Event):
    """javax.crypto.Cipher: ``op`` init (key, iv, mode) or update/final (input, output)."""

    KIND: ClassVar[str] = "cipher"
    op: str
    api: str
    algorithm: str
    mode: str | None = None
    cipher_id: int | None = None
    key_class: str | None = None
    caller: str | None = None
    stack: tuple[str, ...] = ()
    key: Payload | None = None
    iv: Payload | None = None
    input: Payload | None = None
    output: Payload | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EvpCipher(Event):
    """OpenSSL/BoringSSL EVP cipher calls (opt-in): ``op`` init (cipher, direction, key, iv) or
    update/final (input, output; ``aad``: an update without output, AEAD additional data)."""

    KIND: ClassVar[str] = "evp"
    fn: str
    op: str
    module: str
    ctx: str
    cipher: str | None = None
    encrypt: bool | None = None
    aad: bool = False
    key: Payload | None = None
    iv: Payload | None = None
    input: Payload | None = None
    output: Payload | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsSend(Event):
    KIND: ClassVar[str] = "sms-send"
    api: str
    destination: str | None = None
    service_center: str | None = None
    text: str | None = None
    text_parts: int | None = None
    caller: str | None = None
    stack: tuple[str, ...] = ()
    data: Payload | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MxCall(Event):
    """A call into one of MIUI Messaging's com.xiaomi.mms.transaction.Mx* classes."""

    KIND: ClassVar[str] = "mx-call"
    class_name: str
    method: str
    args: tuple[Any, ...] = ()
    ret: Any = None
    caller: str | None = None
    blobs: Mapping[str, Payload] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentError(Event):
    """A hook's own code failed (the app went on); repeats of one site are suppressed."""

    KIND: ClassVar[str] = "agent-error"
    where: str
    error: str
    repeats_suppressed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStop(Event):
    KIND: ClassVar[str] = "agent-stop"
    events: int
    errors: int = 0


# host kinds


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceStart(Event):
    KIND: ClassVar[str] = "trace-start"
    SOURCE: ClassVar[str] = "host"
    serial: str
    device: str
    frida: str
    apps: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION


@dataclass(frozen=True, slots=True, kw_only=True)
class Attached(Event):
    """The agent is loaded and hooking in ``pid``; ``mode`` attach or spawn; ``note`` says why
    a spawn fell back to attach."""

    KIND: ClassVar[str] = "attach"
    SOURCE: ClassVar[str] = "host"
    mode: str
    note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Detached(Event):
    """Frida's reason: process-terminated, connection-terminated, device-lost, ..."""

    KIND: ClassVar[str] = "detach"
    SOURCE: ClassVar[str] = "host"
    reason: str
    crash: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Gap(Event):
    """A time in which the app ran (or may have) without the agent: from the detach to the
    moment the agent's hooks were back in the new process. Events in between are lost."""

    KIND: ClassVar[str] = "gap"
    SOURCE: ClassVar[str] = "host"
    start: float
    end: float
    reason: str
    old_pid: int | None = None
    new_pid: int | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceNote(Event):
    """Something the person running the trace should know (a fallback, a wait)."""

    KIND: ClassVar[str] = "note"
    SOURCE: ClassVar[str] = "host"
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidMessage(Event):
    """A message from the agent that did not follow the schema, kept as received."""

    KIND: ClassVar[str] = "invalid"
    SOURCE: ClassVar[str] = "host"
    error: str
    message: Mapping[str, Any] = field(default_factory=dict)
    data: Payload | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceStop(Event):
    KIND: ClassVar[str] = "trace-stop"
    SOURCE: ClassVar[str] = "host"
    reason: str
    events: int


_KINDS: dict[str, type[Event]] = {
    cls.KIND: cls
    for cls in (
        AgentStart,
        HookStatus,
        SslData,
        TlsSecret,
        SocketData,
        Connect,
        IdentifierRead,
        CipherOp,
        EvpCipher,
        SmsSend,
        MxCall,
        AgentError,
        AgentStop,
        TraceStart,
        Attached,
        Detached,
        Gap,
        TraceNote,
        InvalidMessage,
        TraceStop,
    )
}
_COMMON = {"app", "pid", "host_ts", "agent_ts", "seq", "tid"}


def kinds() -> dict[str, type[Event]]:
    """Event class by kind name."""
    return dict(_KINDS)


# --- conversion -----------------------------------------------------------------------------------

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _convert(value: Any, hint: Any, name: str) -> Any:
    """A JSON value as the field's declared type (the hints used in this module only)."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, name)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name}: expected a list, got {type(value).__name__}")
        return tuple(_convert(v, args[0], f"{name}[{i}]") for i, v in enumerate(value))
    if origin in (AbcMapping, dict):
        if not isinstance(value, dict):
            raise ValueError(f"{name}: expected an object, got {type(value).__name__}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, vt, f"{name}.{k}") for k, v in value.items()}
    if hint in _VALUE_TYPES:
        if isinstance(value, hint):
            return value
        try:
            return hint.from_json(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name}: {exc}") from None
    if hint in (str, int, float, bool):
        return _typed(value, hint, name)
    raise TypeError(f"{name}: no conversion for {hint!r}")


def _plain(value: Any) -> Any:
    if isinstance(value, _VALUE_TYPES):
        return value.to_json()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _build(cls: type[Event], values: Mapping[str, Any], where: str) -> Event:
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise EventError(f"{where}: {cls.KIND} event without {f.name!r}")
            continue
        try:
            kwargs[f.name] = _convert(values[f.name], hints[f.name], f.name)
        except (ValueError, TypeError) as exc:
            raise EventError(f"{where}: {cls.KIND} event: {exc}") from None
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise EventError(f"{where}: {cls.KIND} event: {exc}") from None


def _payload_fields(cls: type[Event]) -> set[str]:
    hints = _hints(cls)
    return {f.name for f in dataclasses.fields(cls) if Payload in (hints[f.name], *typing.get_args(hints[f.name]))}


def from_agent(message: object, data: bytes | None, *, app: str, host_ts: float) -> Event:
    """One agent message (the ``payload`` of a Frida ``send`` message) and its binary data, as
    an event. Checks the schema version, the kind's fields and that ``parts`` cover ``data``."""
    if not isinstance(message, Mapping):
        raise EventError(f"agent message from {app}: expected an object, got {type(message).__name__}")
    kind, seq = message.get("kind"), message.get("seq")
    where = f"agent event {kind!r} #{seq} from {app}"
    version = message.get("v")
    if version != SCHEMA_VERSION:
        raise EventError(
            f"{where}: schema version {version!r}, this host reads {SCHEMA_VERSION} "
            f"(rebuild the agent with `make agent`)"
        )
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None or cls.SOURCE != "agent":
        raise EventError(f"{where}: unknown kind")
    values: dict[str, Any] = {k: v for k, v in message.items() if k not in ("v", "kind", "t", "parts")}
    values.update(app=app, host_ts=host_ts)
    if isinstance(message.get("t"), (int, float)) and not isinstance(message.get("t"), bool):
        values["agent_ts"] = message["t"] / 1000.0
    values.update(_split_parts(cls, message.get("parts") or [], data or b"", where))
    return _build(cls, values, where)


def _split_parts(cls: type[Event], parts: Any, data: bytes, where: str) -> dict[str, Any]:
    if not isinstance(parts, list):
        raise EventError(f"{where}: parts must be a list")
    named = _payload_fields(cls)
    has_blobs = "blobs" in {f.name for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    blobs: dict[str, Payload] = {}
    offset = 0
    for i, part in enumerate(parts):
        try:
            name = _typed(part.get("name") if isinstance(part, dict) else None, str, f"parts[{i}].name")
            size = _typed(part.get("size"), int, f"parts[{i}].size")
            length = _typed(part.get("length"), int, f"parts[{i}].length")
        except ValueError as exc:
            raise EventError(f"{where}: {exc}") from None
        if size < 0 or offset + size > len(data):
            raise EventError(
                f"{where}: part {name!r} needs bytes {offset}..{offset + size} of {len(data)} bytes of data"
            )
        try:
            payload = Payload(data=data[offset : offset + size], length=length)
        except ValueError as exc:
            raise EventError(f"{where}: part {name!r}: {exc}") from None
        offset += size
        if name in named:
            out[name] = payload
        elif has_blobs:
            blobs[name] = payload
        else:
            raise EventError(f"{where}: part {name!r} is not a payload of this kind")
    if offset != len(data):
        raise EventError(f"{where}: parts describe {offset} bytes, the message carries {len(data)}")
    if blobs:
        out["blobs"] = blobs
    return out


def to_json(event: Event) -> dict[str, Any]:
    """The event as one JSON object (one line of a trace)."""
    out: dict[str, Any] = {"v": SCHEMA_VERSION, "kind": event.KIND, "source": event.SOURCE}
    for f in dataclasses.fields(event):
        out[f.name] = _plain(getattr(event, f.name))
    return out


def from_json(obj: Any, *, where: str = "event") -> Event:
    """Inverse of :func:`to_json`."""
    if not isinstance(obj, dict):
        raise EventError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if obj.get("v") not in READABLE_VERSIONS:
        raise EventError(
            f"{where}: schema version {obj.get('v')!r}, this host reads {', '.join(map(str, READABLE_VERSIONS))}"
        )
    kind = obj.get("kind")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise EventError(f"{where}: unknown kind {obj.get('kind')!r}")
    return _build(cls, {k: v for k, v in obj.items() if k not in ("v", "kind", "source")}, where)


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[Event]:
    """The events of a trace file, in order; an EventError names the file and line."""
    for _, event in read_events(path):
        yield event


def read_events(path: str | os.PathLike[str], *, errors: list[str] | None = None) -> Iterator[tuple[int, Event]]:
    """``(line number, event)`` for each good line of a trace file. With ``errors`` given, a bad
    line is noted there (``file:line: why``) and skipped, so an analyser reads what it can;
    without, the first bad line raises EventError."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                try:
                    obj = json.loads(raw)
                except ValueError as exc:
                    raise EventError(f"{where}: not JSON ({exc})") from None
                event = from_json(obj, where=where)
            except EventError as exc:
                if errors is None:
                    raise
                errors.append(str(exc))
                continue
            yield number, event


@dataclass(frozen=True, slots=True)
class CipherOperation:
    """One use of a cipher put together from its events: the init in force (algorithm, mode,
    key, IV) and what went in and came out of the updates up to a final. ``source`` "java"
    (javax.crypto.Cipher, keyed by the object's identity) or "evp" (keyed by the EVP context).
    A Cipher used again after doFinal without a new init keeps its key and IV -- which is how a
    fixed IV shows: two operations with the same key, IV and input give the same output."""

    source: str
    app: str
    pid: int | None
    cipher_id: str
    algorithm: str | None
    mode: str | None
    key: bytes | None
    iv: bytes | None
    input: bytes
    output: bytes
    aad: bytes = b""
    caller: str | None = None
    complete: bool = True  # ended by a final (else: the trace ended, or a re-init came)
    truncated: bool = False  # some payload was cut at the agent's capture limit
    seqs: tuple[int, ...] = ()  # the agent sequence numbers of its events


def cipher_operations(events: typing.Iterable[Event]) -> Iterator[CipherOperation]:
    """The cipher operations in a stream of events (CipherOp and EvpCipher), in order of their
    final (or of the trace's end, for operations never finished)."""
    state: dict[tuple, dict[str, Any]] = {}

    def fresh(st: dict[str, Any]) -> None:
        st.update(input=bytearray(), output=bytearray(), aad=bytearray(), seqs=[], truncated=False, caller=None)

    def finish(key: tuple, st: dict[str, Any], complete: bool) -> CipherOperation:
        op = CipherOperation(
            source=key[0],
            app=key[1],
            pid=key[2],
            cipher_id=key[3],
            algorithm=st.get("algorithm"),
            mode=st.get("mode"),
            key=st.get("key"),
            iv=st.get("iv"),
            input=bytes(st["input"]),
            output=bytes(st["output"]),
            aad=bytes(st["aad"]),
            caller=st.get("caller"),
            complete=complete,
            truncated=st["truncated"],
            seqs=tuple(st["seqs"]),
        )
        fresh(st)
        return op

    for ev in events:
        if isinstance(ev, CipherOp):
            if ev.cipher_id is None:
                continue
            key = ("java", ev.app, ev.pid, str(ev.cipher_id))
            mode, aad = ev.mode, False
        elif isinstance(ev, EvpCipher):
            key = ("evp", ev.app, ev.pid, ev.ctx)
            mode = None if ev.encrypt is None else ("encrypt" if ev.encrypt else "decrypt")
            aad = ev.aad
        else:
            continue
        st = state.get(key)
        if st is None:
            st = state[key] = {}
            fresh(st)
        if ev.op == "init":
            if st["input"] or st["output"]:
                yield finish(key, st, complete=False)
            st["algorithm"] = ev.algorithm if isinstance(ev, CipherOp) else ev.cipher
            st["mode"] = mode
            if ev.key is not None:
                st["key"] = ev.key.data
            if ev.iv is not None:
                st["iv"] = ev.iv.data
            elif isinstance(ev, CipherOp):
                st["iv"] = None  # Java: an init without an IV uses none (ECB) or a fresh one
            continue
        if mode is not None:
            st["mode"] = mode
        if st.get("algorithm") is None:
            st["algorithm"] = ev.algorithm if isinstance(ev, CipherOp) else ev.cipher
        for name in ("input", "output"):
            payload = getattr(ev, name)
            if payload is not None:
                st["aad" if aad and name == "input" else name].extend(payload.data)
                st["truncated"] = st["truncated"] or payload.truncated
        st["caller"] = st["caller"] or getattr(ev, "caller", None)
        if ev.seq is not None:
            st["seqs"].append(ev.seq)
        if ev.op == "final":
            yield finish(key, st, complete=True)
    for key, st in state.items():
        if st["input"] or st["output"]:
            yield finish(key, st, complete=False)


class EventWriter:
    """Appends events to a JSONL file, one per line, from any thread; counts them by kind."""

    def __init__(self, target: str | os.PathLike[str] | IO[str]) -> None:
        if isinstance(target, (str, os.PathLike)):
            self.path: Path | None = Path(target)
            self._file: IO[str] = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - owned, closed by close()
            self._owned = True
        else:
            self.path = None
            self._file = target
            self._owned = False
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.closed = False

    def write(self, event: Event) -> None:
        line = json.dumps(to_json(event), separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            if self.closed:
                raise EventError(f"event writer for {self.path or 'stream'} is closed ({event.KIND} dropped)")
            self._file.write(line + "\n")
            self.counts[event.KIND] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def flush(self) -> None:
        with self._lock:
            if not self.closed:
                self._file.flush()

    def close(self) -> None:
        """Flush to the disk and close (a file it opened); idempotent."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._file.flush()
            if self._owned:
                try:
                    os.fsync(self._file.fileno())
                except OSError:
                    pass
                self._file.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
