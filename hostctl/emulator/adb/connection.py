"""The device side of an ADB transport, as a state machine with no I/O inside.

Bytes from the host go in with ``receive_data``; what happened comes out of ``next_event``; what
must go back to the host is taken with ``data_to_send``. The driver answers events by calling
``accept``/``refuse`` (an OPEN), ``ack`` (data it has consumed), ``write`` and ``close``.

Flow control, per stream and direction:
- classic: one WRTE in flight; the next waits for the peer's empty OKAY.
- delayed_ack (only when both sides advertise it): OPEN's arg1 is the opener's receive window, our
  OKAY to the OPEN carries our window as a uint32 payload, and each later OKAY carries the number
  of bytes the receiver consumed. A sender never has more than the window outstanding.
A WRTE never carries more than the negotiated maxdata.
"""

from __future__ import annotations

import enum
import os
import struct
from dataclasses import dataclass, field

from . import auth
from .packets import (
    MAX_PAYLOAD,
    VERSION_MIN,
    VERSION_SKIP_CHECKSUM,
    Command,
    Packet,
    PacketReader,
    ProtocolError,
)

DEFAULT_FEATURES = ("shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir", "sendrecv_v2", "delayed_ack")
# The first SDK whose adbd advertised each feature this emulated adbd implements. Sources: AOSP
# system/core adb/transport.cpp (``kFeatureShell2``/``kFeatureCmd`` are the only features of the
# nougat-release adbd; ``kFeatureStat2`` joins in oreo-release; ``kFeatureLs2`` and
# ``kFeatureFixedPushMkdir`` in pie-release) and packages/modules/adb transport.cpp
# (``kFeatureSendRecv2`` in android11-release, ``kFeatureDelayedAck`` in android12-release).
# Before 7.0 there is no feature at all: KitKat's and Lollipop's adb.c ``fill_connect_data``
# writes ``device::ro.product.name=..;ro.product.model=..;ro.product.device=..;`` and nothing
# else, so a 4.4/5.0 handset must not advertise ``cmd`` (adb 36 would run ``cmd package
# install`` there and get ``cmd: not found``) nor ``shell_v2``.
FEATURE_SINCE_SDK = {"shell_v2": 24, "cmd": 24, "stat_v2": 26, "ls_v2": 28, "fixed_push_mkdir": 28,
                     "sendrecv_v2": 30, "delayed_ack": 31}
DELAYED_ACK = "delayed_ack"
U32 = struct.Struct("<I")


# --- events (what happened) -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Connected:
    version: int
    max_payload: int
    host_features: frozenset[str]


@dataclass(frozen=True, slots=True)
class AuthKeyOffered:
    """The host offered a public key we did not know (the "Allow USB debugging?" moment)."""
    public_key: bytes
    accepted: bool


@dataclass(frozen=True, slots=True)
class OpenRequested:
    stream_id: int
    service: str


@dataclass(frozen=True, slots=True)
class DataReceived:
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The host closed the stream; the driver stops its service. Nothing more may be written."""
    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamDrained:
    """Queued data was handed to the host; ``pending`` bytes remain queued on the stream."""
    stream_id: int
    pending: int


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The host accepted a stream we opened (``open``): data may flow."""
    stream_id: int


Event = StreamOpened | Connected | AuthKeyOffered | OpenRequested | DataReceived | StreamClosed | StreamDrained


class State(enum.Enum):
    WAIT_CNXN = "wait-cnxn"
    WAIT_AUTH = "wait-auth"
    CONNECTED = "connected"
    ERROR = "error"


@dataclass(slots=True)
class _Stream:
    local_id: int
    remote_id: int
    accepted: bool = False
    out: bytearray = field(default_factory=bytearray)
    in_flight: bool = False          # classic mode: a WRTE awaits its OKAY
    send_window: int = 0             # delayed_ack: bytes we may still send
    recv_window: int = 0             # delayed_ack: bytes the host may still send us
    unacked_in: int = 0              # classic: 1 while a received WRTE awaits our OKAY
    closing: bool = False
    opening: bool = False            # we sent OPEN (a reverse connection); the host has not answered


class DeviceConnection:
    """One host connection to an emulated adbd."""

    def __init__(
        self,
        banner: str,
        *,
        features: tuple[str, ...] = DEFAULT_FEATURES,
        max_payload: int = MAX_PAYLOAD,
        recv_window: int = 4 * MAX_PAYLOAD,
        auth_keys: auth.KeyStore | None = None,
        max_version: int = VERSION_SKIP_CHECKSUM,
    ) -> None:
        self.banner = banner
        self.max_version = max_version   # a pre-9.0 adbd speaks 0x01000000 (payload checksums)
        self.features = tuple(features)
        self.local_max_payload = max_payload
        self.recv_window_size = recv_window
        self.auth_keys = auth_keys       # None: no AUTH (the default)
        self.state = State.WAIT_CNXN
        self.version = VERSION_SKIP_CHECKSUM
        self.max_payload = max_payload
        self.host_features: frozenset[str] = frozenset()
        self.delayed_ack = False
        self._reader = PacketReader()
        self._events: list[Event] = []
        self._out: list[bytes] = []
        self._streams: dict[int, _Stream] = {}
        self._by_remote: dict[int, int] = {}
        self._next_id = 1
        self._token = b""
        self.error: ProtocolError | None = None

    # --- input ------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the host. Raises ProtocolError; the connection is then unusable."""
        if self.state is State.ERROR:
            raise ProtocolError("connection already failed", side="local")
        self._reader.feed(data)
        try:
            while (packet := self._reader.next_packet()) is not None:
                self._handle(packet)
        except ProtocolError as exc:
            self.state = State.ERROR
            self.error = exc
            raise

    def next_event(self) -> Event | None:
        return self._events.pop(0) if self._events else None

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    # --- driver commands --------------------------------------------------------------------

    def accept(self, stream_id: int) -> None:
        st = self._stream(stream_id)
        if st.accepted:
            raise ProtocolError(f"stream {stream_id} already accepted", side="local")
        st.accepted = True
        payload = U32.pack(st.recv_window) if self.delayed_ack else b""
        self._send(Command.OKAY, st.local_id, st.remote_id, payload)
        self._pump(st)

    def open(self, service: str) -> int:
        """Open a stream to the host (adbd does for ``reverse`` connections): OPEN(our id,
        [our window], service). The host answers OKAY (``StreamOpened``) or CLSE (``StreamClosed``)."""
        if self.state is not State.CONNECTED:
            raise ProtocolError("open before the connection is up", side="local")
        sid = self._next_id
        self._next_id += 1
        st = _Stream(sid, 0, opening=True)
        if self.delayed_ack:
            st.recv_window = self.recv_window_size
        self._streams[sid] = st
        self._send(Command.OPEN, sid, self.recv_window_size if self.delayed_ack else 0,
                   service.encode() + b"\0")
        return sid

    def refuse(self, stream_id: int) -> None:
        """Refuse an OPEN, as adbd does for a service it cannot start: CLSE with local id 0."""
        st = self._streams.pop(stream_id, None)
        if st is None:
            return
        self._by_remote.pop(st.remote_id, None)
        self._send(Command.CLSE, 0, st.remote_id)

    def ack(self, stream_id: int, nbytes: int) -> None:
        """Tell the host we consumed ``nbytes`` of what it wrote, so it may send more."""
        st = self._streams.get(stream_id)
        if st is None:
            return  # closed meanwhile: nothing to acknowledge
        if self.delayed_ack:
            st.recv_window += nbytes
            self._send(Command.OKAY, st.local_id, st.remote_id, U32.pack(nbytes))
        elif st.unacked_in:
            st.unacked_in = 0
            self._send(Command.OKAY, st.local_id, st.remote_id)

    def write(self, stream_id: int, data: bytes) -> None:
        st = self._stream(stream_id)
        if st.closing:
            raise ProtocolError(f"write to stream {stream_id} after close", side="local")
        st.out += data
        self._pump(st)

    def pending(self, stream_id: int) -> int:
        """Bytes queued on the stream and not yet handed to the host (0 for unknown streams)."""
        st = self._streams.get(stream_id)
        return len(st.out) if st else 0

    def close(self, stream_id: int) -> None:
        """Close after everything queued has been sent (CLSE follows the last WRTE)."""
        st = self._streams.get(stream_id)
        if st is None or st.closing:
            return
        st.closing = True
        self._pump(st)

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._streams

    # --- packet handling --------------------------------------------------------------------

    def _handle(self, p: Packet) -> None:
        handler = _HANDLERS[self.state].get(p.command)
        if handler is None:
            raise ProtocolError(f"{p.command.name} not allowed in state {self.state.value}")
        handler(self, p)

    def _on_cnxn(self, p: Packet) -> None:
        if p.arg0 < VERSION_MIN:
            raise ProtocolError(f"CNXN version 0x{p.arg0:08x} is older than 0x{VERSION_MIN:08x}")
        if p.arg1 < 256:
            raise ProtocolError(f"CNXN maxdata {p.arg1} is too small")
        # A CNXN on a live connection is the host starting over: drop every stream.
        for sid in list(self._streams):
            self._streams.pop(sid)
            self._events.append(StreamClosed(sid))
        self._by_remote.clear()
        self.version = min(p.arg0, self.max_version)
        self.max_payload = min(p.arg1, self.local_max_payload)
        self.host_features = _parse_features(p.payload)
        self.delayed_ack = DELAYED_ACK in self.host_features and DELAYED_ACK in self.features
        if self.auth_keys is None:
            self._complete_connect()
        else:
            self.state = State.WAIT_AUTH
            self._send_token()

    def _on_auth(self, p: Packet) -> None:
        if p.arg0 == auth.AUTH_SIGNATURE:
            if self.auth_keys is not None and self.auth_keys.verify(self._token, p.payload):
                self._complete_connect()
            else:
                self._send_token()  # adbd answers a bad signature with a fresh token
        elif p.arg0 == auth.AUTH_RSAPUBLICKEY:
            assert self.auth_keys is not None
            key = p.payload.rstrip(b"\0")
            accepted = self.auth_keys.offer(key)
            self._events.append(AuthKeyOffered(key, accepted))
            if accepted:
                self._complete_connect()
        else:
            raise ProtocolError(f"AUTH type {p.arg0} is not valid from a host")

    def _on_open(self, p: Packet) -> None:
        if p.arg0 == 0:
            raise ProtocolError("OPEN with local-id 0")
        if p.arg0 in self._by_remote:
            raise ProtocolError(f"OPEN reuses live remote id {p.arg0}")
        if not p.payload:
            raise ProtocolError("OPEN without a service name")
        service = p.payload.split(b"\0", 1)[0].decode("utf-8", "replace")
        sid = self._next_id
        self._next_id += 1
        st = _Stream(sid, p.arg0)
        if self.delayed_ack:
            st.send_window = p.arg1
            st.recv_window = self.recv_window_size
        self._streams[sid] = st
        self._by_remote[p.arg0] = sid
        self._events.append(OpenRequested(sid, service))

    def _on_okay(self, p: Packet) -> None:
        st = self._streams.get(p.arg1)
        if st is not None and st.opening and p.arg0 != 0:
            st.opening, st.accepted, st.remote_id = False, True, p.arg0
            self._by_remote[p.arg0] = st.local_id
            self._events.append(StreamOpened(st.local_id))
        if st is None or st.remote_id != p.arg0:
            return  # an OKAY for a stream we already closed: ignored, as adbd does
        if self.delayed_ack:
            if len(p.payload) != 4:
                raise ProtocolError(f"delayed_ack OKAY must carry 4 bytes, got {len(p.payload)}")
            st.send_window += U32.unpack(p.payload)[0]
        else:
            if p.payload:
                raise ProtocolError("OKAY with a payload but delayed_ack was not negotiated")
            # The host also sends an OKAY when its end becomes writable again after backing up
            # (adb's "ready" notification), so an OKAY with nothing in flight is not a fault.
            st.in_flight = False
        self._pump(st)

    def _on_wrte(self, p: Packet) -> None:
        st = self._streams.get(p.arg1)
        if st is None or st.remote_id != p.arg0:
            # Data for a stream that is gone: tell the host it is closed.
            self._send(Command.CLSE, 0, p.arg0)
            return
        if not st.accepted:
            raise ProtocolError(f"WRTE on stream {st.local_id} before it was accepted")
        if self.delayed_ack:
            if len(p.payload) > st.recv_window:
                raise ProtocolError(f"WRTE of {len(p.payload)} bytes exceeds window {st.recv_window}")
            st.recv_window -= len(p.payload)
        else:
            if st.unacked_in:
                raise ProtocolError(f"second WRTE on stream {st.local_id} before our OKAY")
            st.unacked_in = 1
        if st.closing:
            self.ack(st.local_id, len(p.payload))  # we are closing: consume and drop
            return
        self._events.append(DataReceived(st.local_id, p.payload))

    def _on_clse(self, p: Packet) -> None:
        # CLSE(sender's id or 0, our id); an id that maps to nothing is ignored (protocol.txt).
        st = self._streams.get(p.arg1)
        if st is None or (p.arg0 != 0 and p.arg0 != st.remote_id):
            return
        self._drop(st)
        self._events.append(StreamClosed(st.local_id))

    # --- helpers ----------------------------------------------------------------------------

    def _complete_connect(self) -> None:
        self.state = State.CONNECTED
        self._reader.max_payload = self.max_payload
        self._send(Command.CNXN, self.version, self.local_max_payload, self.banner.encode())
        self._events.append(Connected(self.version, self.max_payload, self.host_features))

    def _send_token(self) -> None:
        self._token = os.urandom(auth.TOKEN_SIZE)
        self._send(Command.AUTH, auth.AUTH_TOKEN, 0, self._token)

    def _stream(self, stream_id: int) -> _Stream:
        st = self._streams.get(stream_id)
        if st is None:
            raise ProtocolError(f"no open stream {stream_id}", side="local")
        return st

    def _pump(self, st: _Stream) -> None:
        """Send what flow control allows; finish a close once the queue is empty."""
        if not st.accepted:
            return
        sent = False
        while st.out:
            if self.delayed_ack:
                budget = min(self.max_payload, st.send_window)
            else:
                budget = 0 if st.in_flight else self.max_payload
            if budget <= 0:
                break
            chunk = bytes(st.out[:budget])
            del st.out[:budget]
            self._send(Command.WRTE, st.local_id, st.remote_id, chunk)
            sent = True
            if self.delayed_ack:
                st.send_window -= len(chunk)
            else:
                st.in_flight = True
        if not st.out and st.closing:
            self._send(Command.CLSE, st.local_id, st.remote_id)
            self._drop(st)
        elif sent:
            self._events.append(StreamDrained(st.local_id, len(st.out)))

    def _drop(self, st: _Stream) -> None:
        self._streams.pop(st.local_id, None)
        self._by_remote.pop(st.remote_id, None)

    def _send(self, command: Command, arg0: int, arg1: int, payload: bytes = b"") -> None:
        packet = Packet(command, arg0, arg1, payload)
        self._out.append(packet.encode(checksum=self.version < VERSION_SKIP_CHECKSUM))


def _parse_features(payload: bytes) -> frozenset[str]:
    """Features from a banner like b"host::features=shell_v2,cmd" (props separated by ';')."""
    text = payload.split(b"\0", 1)[0].decode("utf-8", "replace")
    _, _, props = text.partition("::")
    for prop in props.split(";"):
        key, _, value = prop.partition("=")
        if key == "features":
            return frozenset(f for f in value.split(",") if f)
    return frozenset()


def protocol_for_sdk(sdk: int) -> tuple[int, int]:
    """(protocol version, max payload) an adbd of SDK level SDK answers CNXN with. adb.h:
    ``A_VERSION 0x01000000`` and ``MAX_PAYLOAD 4096`` up to 6.0; 7.0 raised MAX_PAYLOAD to
    256 KiB; 9.0 added ``A_VERSION_SKIP_CHECKSUM 0x01000001`` and 1 MiB payloads."""
    if sdk >= 28:
        return VERSION_SKIP_CHECKSUM, MAX_PAYLOAD
    return VERSION_MIN, (256 * 1024 if sdk >= 24 else 4096)


def features_for_sdk(sdk: int) -> tuple[str, ...]:
    """The features an adbd of SDK level SDK advertises, among those this adbd implements."""
    return tuple(f for f in DEFAULT_FEATURES if FEATURE_SINCE_SDK[f] <= sdk)


def make_banner(props: dict[str, str], features: tuple[str, ...] = DEFAULT_FEATURES) -> str:
    """adbd's banner: ``device::ro.product.name=..;ro.product.model=..;...;features=..``."""
    def clean(v: str) -> str:
        return "".join(ch for ch in v if ch not in ":;=")

    parts = [f"{k}={clean(v)}" for k, v in props.items()]
    if not features:  # a pre-7.0 adbd (KitKat): ';'-terminated props and no features key
        return "device::" + "".join(part + ";" for part in parts)
    parts.append("features=" + ",".join(features))
    return "device::" + ";".join(parts)


_HANDLERS = {
    State.WAIT_CNXN: {Command.CNXN: DeviceConnection._on_cnxn},
    State.WAIT_AUTH: {Command.CNXN: DeviceConnection._on_cnxn, Command.AUTH: DeviceConnection._on_auth},
    State.CONNECTED: {
        Command.CNXN: DeviceConnection._on_cnxn,
        Command.OPEN: DeviceConnection._on_open,
        Command.OKAY: DeviceConnection._on_okay,
        Command.WRTE: DeviceConnection._on_wrte,
        Command.CLSE: DeviceConnection._on_clse,
    },
    State.ERROR: {},
}
