"""Testbed files: the handsets and lab gear one run drives, named in one YAML file.

A testbed file says which handsets a run uses (by serial, on which adb server), what each one is
called in the run (its label), its SIMs, how its traffic is captured, and the lab's serial gear:
the GSM modem that plays the peer phone, the relay board that powers handsets, the UART consoles.
``hostctl audit --testbed FILE``, ``pytest hw_tests --testbed FILE`` and the library
(:func:`load_testbed`) read the same file; ``hostctl emulator up`` writes one for the emulated lab
it started (``<lab dir>/testbed.yaml``, or ``--testbed-out FILE``).

Format
------

Either a list of testbeds under ``testbeds:`` (a rack's file; pick one by name)::

    testbeds:
      - name: rack-a                       # required; letters, digits, . _ - (names the run folder)
        handsets:
          - serial: 4d00c0ffee             # required; the serial `adb devices` shows
            label: sender                  # required; unique; how runs and reports name it
            adb: 10.0.0.5:5037             # adb server HOST:PORT or PORT (default: the
                                           #   environment's, ADB_SERVER_SOCKET or
                                           #   ANDROID_ADB_SERVER_ADDRESS/ANDROID_ADB_SERVER_PORT)
            sims:                          # one entry per SIM slot in use
              - slot: 0                    # default: the entry's index
                number: "+8613800000001"   # required; E.164: +, country code, number (spaces,
                                           #   dashes allowed: "+86 138 0000 0001")
                iccid: "89860012345678901238"   # optional; 18-22 digits (89... and Luhn: warned)
                operator: CHINA MOBILE     # optional
                imsi: "460001234567890"    # optional; 6-15 digits
                imei: "864804021234562"    # optional; the slot's IMEI, 15 digits passing Luhn
            capture: pcapdroid             # how its traffic is captured (below)
            frida: {server: /data/local/tmp/frida-server, port: 27042, processes: [com.android.mms]}
                                           # all optional; `frida:` alone means the defaults shown
            console: {port: /dev/ttyUSB1, baudrate: 115200}   # or just the port
            relay_channel: 1               # the relay that switches this handset's power
        modem: {port: /dev/ttyUSB0, number: "+8613900000000", baudrate: 115200, pin: "1234"}
        relay: {port: /dev/ttyUSB2, channels: 4, baudrate: 9600}
        params: {settle: 0.5}              # settings for the run (strings as keys): `settle` and
                                           #   `sms_timeout` are seconds (numbers); others free-form
        emulator: {adb_port: 5037, lab_dir: ..., profile: ...}   # only in files `emulator up` writes

``capture`` is a source name or a mapping ``{source, interface, filter, options: {...}}``:
``lab`` (the emulated lab's wire tap), ``pcapdroid`` (the PCAPdroid app on the handset: no root),
``tcpdump`` (tcpdump on a rooted handset; ``interface`` optional), ``host:IFACE`` (a capture on
the lab host's interface, e.g. the Wi-Fi access point's the handset uses), ``none``. ``filter``
is a BPF expression (tcpdump, host); ``options`` are the source's own settings, the keyword
arguments of ``hostctl.capture.source_for`` (e.g. ``{pcapng: true, app_filter: com.android.mms}``
for PCAPdroid): ``CaptureSpec.spec`` and ``CaptureSpec.source_options()`` give both. Serial ports
are device paths or pyserial URLs; the speed key is ``baudrate`` everywhere.

or one testbed mapping at the top level of the file (``name: ...`` with the same keys). A file
with several testbeds needs the name of the one to use; a file with one needs none. Top-level
keys starting with ``x-`` are ignored: a place for YAML anchors that entries merge in
(``x-phone: &phone {adb: 10.0.0.5:5037, capture: pcapdroid}``, then ``- <<: *phone``).

Rules, checked when the file is read (each failure is one :class:`~hostctl.errors.ConfigError`
naming the file, the line and the key path, e.g. ``lab.yaml:14:
testbeds[0].handsets[1].sims[0].number: '12' is not an E.164 number``):

- every mapping accepts only the keys above; an unknown key is an error that suggests the
  closest known one (``lable`` -> ``label``);
- types: strings, integers, mappings and lists where shown; identifiers (serial, numbers, ICCID,
  IMSI, IMEI, PIN) may be written unquoted: the file's own text is used, so ``+86...`` and
  leading zeros survive YAML's number parsing;
- labels are unique in a testbed, serials unique per adb server, numbers, ICCIDs, IMSIs and IMEIs
  unique across handsets and the modem, SIM slots unique per handset, relay channels unique and
  within the relay's ``channels``; ``relay_channel`` needs a ``relay``;
- warnings (kept in :attr:`Testbed.warnings`, not errors): an ICCID that does not start with 89 or
  fails the Luhn check.

The serial-gear specs give the controllers' own config (``hostctl.lab``):
:meth:`RelaySpec.controller_config` and :meth:`ConsoleSpec.controller_config` return the mappings
``Relay.create`` and ``Console.create`` take, :meth:`ModemSpec.controller_config` the arguments of
``Modem.open``.

API: :func:`load_testbed` (a path), :func:`parse_testbeds` (text), :meth:`Testbed.from_dict`,
:func:`dump_testbed` / :func:`write_testbed` (YAML that loads back to an equal testbed),
:func:`testbed_for_lab` (the testbed of a running emulated lab).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from .emulator.identity import luhn_ok
from .errors import ConfigError

if TYPE_CHECKING:
    from .device import AdbAddress

_T = TypeVar("_T")
_D = TypeVar("_D")

__all__ = [
    "CAPTURE_SOURCES",
    "CaptureSpec",
    "ConfigError",
    "ConfigWarning",
    "ConsoleSpec",
    "EmulatorSpec",
    "FridaSpec",
    "HandsetSpec",
    "ModemSpec",
    "RelaySpec",
    "SimSpec",
    "Testbed",
    "dump_testbed",
    "dump_testbeds",
    "load_testbed",
    "load_testbeds",
    "parse_testbeds",
    "testbed_for_lab",
    "write_testbed",
]

CAPTURE_SOURCES = ("lab", "pcapdroid", "tcpdump", "host", "none")
FRIDA_PORT = 27042
MODEM_BAUDRATE = 115200
CONSOLE_BAUDRATE = 115200  # hostctl.lab.console.DEFAULT_BAUDRATE
RELAY_BAUDRATE = 9600  # hostctl.lab.relay.DEFAULT_BAUDRATE
MAX_SIM_SLOTS = 8

# params the run reads, typed (seconds); any other key is kept as written, for the tests' own use
PARAM_SECONDS: dict[str, tuple[float, float]] = {
    "settle": (0.0, 600.0),  # how long the audit lets traffic go out after a step
    "sms_timeout": (0.0, 3600.0),
}

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_NUMBER_SEPARATORS = re.compile(r"[\s().-]")


# --- the testbed, typed ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigWarning:
    """Something in the file that is allowed but probably wrong (a non-89 ICCID, a Luhn miss)."""

    key: str
    problem: str
    source: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = (self.source or "<config>") + (f":{self.line}" if self.line else "")
        return f"{where}: {self.key}: {self.problem}"


@dataclass(frozen=True, slots=True)
class SimSpec:
    """One SIM slot in use: its number (E.164) and what else the lab knows about the card."""

    slot: int
    number: str
    iccid: str | None = None
    operator: str | None = None
    imsi: str | None = None
    imei: str | None = None


@dataclass(frozen=True, slots=True)
class CaptureSpec:
    """Where a handset's traffic is captured: ``lab`` (the emulated lab's wire tap),
    ``pcapdroid`` (the PCAPdroid app on the handset), ``tcpdump`` (tcpdump on a rooted handset),
    ``host`` (a capture on the lab host's ``interface``, e.g. the Wi-Fi access point's), or
    ``none``. ``options`` are the source's own settings, passed through unread."""

    source: str
    interface: str | None = None
    filter: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        """The name ``hostctl.capture.source_for`` takes: ``lab``, ``pcapdroid``, ``host:IFACE``..."""
        return f"host:{self.interface}" if self.source == "host" else self.source

    def source_options(self) -> dict[str, Any]:
        """The keyword arguments of ``source_for(self.spec, ...)``: the options, the filter as
        ``bpf``, tcpdump's interface."""
        opts = dict(self.options)
        if self.filter is not None:
            opts["bpf"] = self.filter
        if self.source == "tcpdump" and self.interface is not None:
            opts["interface"] = self.interface
        return opts


@dataclass(frozen=True, slots=True)
class FridaSpec:
    """How to reach the handset's frida-server: ``server`` is its path on the handset (to start it
    when it is not running), ``port`` its device-side port, ``processes`` what to attach to."""

    server: str | None = None
    port: int = FRIDA_PORT
    processes: tuple[str, ...] = ("com.android.mms",)


@dataclass(frozen=True, slots=True)
class ConsoleSpec:
    """A handset's UART console."""

    port: str
    baudrate: int = CONSOLE_BAUDRATE

    def controller_config(self, label: str, evidence_dir: str | Path) -> dict[str, Any]:
        """``hostctl.lab.console.Console.create``'s config, recording into ``evidence_dir``."""
        return {"port": self.port, "baudrate": self.baudrate, "label": label, "evidence_dir": str(evidence_dir)}


@dataclass(frozen=True, slots=True)
class HandsetSpec:
    """One handset of the testbed."""

    serial: str
    label: str
    adb: AdbAddress
    sims: tuple[SimSpec, ...] = ()
    capture: CaptureSpec | None = None
    frida: FridaSpec | None = None
    console: ConsoleSpec | None = None
    relay_channel: int | None = None

    @property
    def number(self) -> str | None:
        """The phone number of the first SIM listed (the one a run sends from by default)."""
        return self.sims[0].number if self.sims else None

    def sim(self, slot: int) -> SimSpec:
        for sim in self.sims:
            if sim.slot == slot:
                return sim
        raise ConfigError(
            f"{self.label}.sims",
            f"has no SIM in slot {slot} (slots: {', '.join(str(s.slot) for s in self.sims) or 'none'})",
            source="testbed",
        )


@dataclass(frozen=True, slots=True)
class ModemSpec:
    """The lab's GSM modem: the peer phone the handsets text and call."""

    port: str
    number: str
    baudrate: int = MODEM_BAUDRATE
    pin: str | None = None
    iccid: str | None = None
    imsi: str | None = None
    imei: str | None = None

    def controller_config(self) -> dict[str, Any]:
        """The keyword arguments of ``hostctl.lab.modem.Modem.open`` (with ``port``)."""
        return {"port": self.port, "baudrate": self.baudrate}


@dataclass(frozen=True, slots=True)
class RelaySpec:
    """The relay board that switches the handsets' power."""

    port: str
    channels: int | None = None
    baudrate: int = RELAY_BAUDRATE
    off_seconds: float | None = None

    def controller_config(self, channel: int) -> dict[str, Any]:
        """``hostctl.lab.relay.Relay.create``'s config for one handset's channel."""
        config: dict[str, Any] = {"port": self.port, "channel": channel, "baudrate": self.baudrate}
        if self.channels is not None:
            config["channels"] = self.channels
        if self.off_seconds is not None:
            config["off_seconds"] = self.off_seconds
        return config


@dataclass(frozen=True, slots=True)
class EmulatorSpec:
    """Present when the testbed is an emulated lab (``hostctl emulator up`` writes it)."""

    adb_port: int
    lab_dir: str | None = None
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class Testbed:
    """A named testbed: handsets (by label), the modem, the relay, parameters."""

    __test__ = False  # not a pytest test class, whatever its name

    name: str
    handsets: tuple[HandsetSpec, ...] = ()
    modem: ModemSpec | None = None
    relay: RelaySpec | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    emulator: EmulatorSpec | None = None
    source: str | None = field(default=None, compare=False)
    warnings: tuple[ConfigWarning, ...] = field(default=(), compare=False)

    @property
    def labels(self) -> list[str]:
        return [h.label for h in self.handsets]

    def handset(self, label: str) -> HandsetSpec:
        """The handset with this label (or, failing that, this serial)."""
        for h in self.handsets:
            if h.label == label:
                return h
        for h in self.handsets:
            if h.serial == label:
                return h
        raise ConfigError(
            "handsets",
            f"testbed {self.name!r} has no handset labelled {label!r} (labels: {', '.join(self.labels) or 'none'})",
            source=self.source or "testbed",
        )

    def __iter__(self) -> Iterator[HandsetSpec]:
        return iter(self.handsets)

    def param(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)

    def identifiers(self) -> dict[str, list[str]]:
        """Every identifier the file names, by kind (``msisdn``, ``iccid``, ``imsi``, ``imei``):
        what a redactor or an identifier scan starts from."""
        out: dict[str, list[str]] = {"msisdn": [], "iccid": [], "imsi": [], "imei": []}
        sims: list[Any] = [s for h in self.handsets for s in h.sims]
        if self.modem is not None:
            sims.append(self.modem)
        for s in sims:
            for kind, value in (("msisdn", s.number), ("iccid", s.iccid), ("imsi", s.imsi), ("imei", s.imei)):
                if value and value not in out[kind]:
                    out[kind].append(value)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The testbed as the file's plain data (what :func:`dump_testbed` writes)."""
        out: dict[str, Any] = {"name": self.name, "handsets": [_handset_dict(h) for h in self.handsets]}
        if self.modem is not None:
            out["modem"] = _plain(self.modem)
        if self.relay is not None:
            out["relay"] = _plain(self.relay)
        if self.params:
            out["params"] = copy.deepcopy(dict(self.params))
        if self.emulator is not None:
            out["emulator"] = _plain(self.emulator)
        return out

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>", env: Mapping[str, str] | None = None) -> Testbed:
        """One testbed from plain data (the mapping of one testbed, no ``testbeds:`` list)."""
        ctx = _Ctx(source, env)
        return _testbed(_At(data, "", None, ctx), ctx)


def _plain(spec: Any) -> dict[str, Any]:
    out = {}
    for name in spec.__dataclass_fields__:
        value = getattr(spec, name)
        if value is None:
            continue
        out[name] = list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, Mapping) else value
    return out


def _handset_dict(h: HandsetSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"serial": h.serial, "label": h.label, "adb": str(h.adb), "sims": [_plain(s) for s in h.sims]}
    if h.capture is not None:
        cap = _plain(h.capture)
        if not cap.get("options"):
            cap.pop("options", None)
        out["capture"] = cap["source"] if list(cap) == ["source"] else cap
    if h.frida is not None:
        out["frida"] = _plain(h.frida)
    if h.console is not None:
        out["console"] = _plain(h.console)
    if h.relay_channel is not None:
        out["relay_channel"] = h.relay_channel
    return out


# --- reading ---------------------------------------------------------------------------------


class _Ctx:
    """What one read shares: the file's name, the environment (adb default), the warnings."""

    def __init__(self, source: str, env: Mapping[str, str] | None) -> None:
        self.source = source
        self.env = os.environ if env is None else env
        self.warnings: list[ConfigWarning] = []
        self._default_adb: Any = None

    def default_adb(self, at: _At) -> AdbAddress:
        from .device import servers_from_env

        if self._default_adb is None:
            try:
                self._default_adb = servers_from_env(self.env)[0]
            except ValueError as exc:
                raise at.fail(f"no adb server given and the environment's is not usable: {exc}") from None
        return self._default_adb


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        type(None): "empty",
    }.get(type(value), type(value).__name__)


class _At:
    """A value of the file with its key path, and its YAML node when read from text (for the
    line number and the value's own text)."""

    __slots__ = ("ctx", "key_node", "node", "path", "value")

    def __init__(
        self, value: Any, path: str, node: yaml.Node | None, ctx: _Ctx, key_node: yaml.Node | None = None
    ) -> None:
        self.value, self.path, self.node, self.ctx, self.key_node = value, path, node, ctx, key_node

    @property
    def line(self) -> int | None:
        return self.node.start_mark.line + 1 if self.node is not None else None

    def fail(self, problem: str, *, path: str | None = None, node: yaml.Node | None = None) -> ConfigError:
        node = node if node is not None else self.node
        return ConfigError(
            self.path if path is None else path,
            problem,
            source=self.ctx.source,
            line=node.start_mark.line + 1 if node is not None else None,
        )

    def warn(self, problem: str) -> None:
        self.ctx.warnings.append(ConfigWarning(self.path, problem, self.ctx.source, self.line))

    # -- typed reads ------------------------------------------------------------------------
    def raw(self) -> str:
        """The scalar as written: ``+8613800000001`` stays that even though YAML reads an int."""
        if isinstance(self.node, yaml.ScalarNode) and not isinstance(self.value, (bool, type(None))):
            return self.node.value
        if isinstance(self.value, (str, int)) and not isinstance(self.value, bool):
            return str(self.value)
        raise self.fail(f"must be a string, not {_type(self.value)}")

    def text(self) -> str:
        if not isinstance(self.value, str) or not self.value.strip():
            raise self.fail(f"must be a non-empty string, not {self.value!r}")
        return self.value

    def name(self, what: str) -> str:
        value = self.raw()
        if not _NAME.fullmatch(value):
            raise self.fail(f"{value!r} is not a usable {what} (letters, digits, '.', '_', '-'; it names a folder)")
        return value

    def integer(self, low: int | None = None, high: int | None = None) -> int:
        value = self.value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"must be an integer, not {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise self.fail(f"must be {bounds}, not {value}")
        return value

    def number(self, low: float = 0.0, high: float | None = None) -> float:
        value = self.value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise self.fail(f"must be a number (seconds), not {value!r}")
        if value < low:
            raise self.fail(f"must be at least {low}, not {value}")
        if high is not None and value > high:
            raise self.fail(f"must be at most {high}, not {value}")
        return float(value)

    def digits(self, what: str, low: int, high: int) -> str:
        value = self.raw().strip()
        if not value.isdigit() or not low <= len(value) <= high:
            raise self.fail(
                f"{value!r} is not {what} ({low}-{high} digits)"
                if low != high
                else f"{value!r} is not {what} ({low} digits)"
            )
        return value

    def e164(self) -> str:
        raw = self.raw()
        value = _NUMBER_SEPARATORS.sub("", raw)
        if not _E164.fullmatch(value):
            hint = (
                " (write it in quotes: YAML reads +... as an integer)"
                if isinstance(self.value, int) and self.node is None
                else ""
            )
            raise self.fail(
                f"{raw!r} is not an E.164 number (+, country code, subscriber number, e.g. '+8613800000001'){hint}"
            )
        return value

    def strings(self) -> tuple[str, ...]:
        if isinstance(self.value, str):
            return (self.text(),)
        return tuple(item.text() for item in self.items())

    def items(self) -> list[_At]:
        if not isinstance(self.value, list):
            raise self.fail(f"must be a list, not {_type(self.value)}")
        nodes = self.node.value if isinstance(self.node, yaml.SequenceNode) else [None] * len(self.value)
        return [_At(v, _join(self.path, i), n, self.ctx) for i, (v, n) in enumerate(zip(self.value, nodes))]

    def mapping(self, keys: Sequence[str]) -> _Map:
        return _Map(self, keys)


class _Map:
    """A mapping of the file that accepts only ``keys``."""

    def __init__(self, at: _At, keys: Sequence[str]) -> None:
        if not isinstance(at.value, Mapping):
            raise at.fail(f"must be a mapping, not {_type(at.value)}")
        self.at = at
        self._nodes: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        if isinstance(at.node, yaml.MappingNode):
            for knode, vnode in at.node.value:  # merge keys (<<) are flattened by now
                if isinstance(knode, yaml.ScalarNode):
                    self._nodes[knode.value] = (knode, vnode)
        for key in at.value:
            knode = self._nodes.get(str(key), (None, None))[0]
            if not isinstance(key, str):
                raise at.fail(f"keys must be strings, not {key!r}", path=_join(at.path, str(key)), node=knode)
            if key not in keys and not (at.path == "" and key.startswith("x-")):  # x-*: anchors' home
                raise at.fail(_unknown(key, keys), path=_join(at.path, key), node=knode)

    def __contains__(self, key: str) -> bool:
        return key in self.at.value

    def get(self, key: str) -> _At | None:
        if key not in self.at.value:
            return None
        knode, vnode = self._nodes.get(key, (None, None))
        return _At(self.at.value[key], _join(self.at.path, key), vnode, self.at.ctx, knode)

    def opt(self, key: str) -> _At | None:
        """The entry unless absent or empty (``key:`` or ``key: null``)."""
        at = self.get(key)
        return None if at is None or at.value is None else at

    def read(self, key: str, read: Callable[[_At], _T], default: _D) -> _T | _D:
        """``read(entry)``, or ``default`` when the entry is absent or empty (as :meth:`opt`)."""
        at = self.opt(key)
        return default if at is None else read(at)

    def req(self, key: str) -> _At:
        at = self.get(key)
        if at is None or at.value is None:
            raise self.at.fail("is required", path=_join(self.at.path, key), node=at.node if at else None)
        return at


def _unknown(key: str, keys: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6) or [k for k in keys if k.lower() == key.lower()]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key{hint} (known: {', '.join(sorted(keys))})"


_TESTBED_KEYS = ("name", "handsets", "modem", "relay", "params", "emulator")
_HANDSET_KEYS = ("serial", "label", "adb", "sims", "capture", "frida", "console", "relay_channel")
_SIM_KEYS = ("slot", "number", "iccid", "operator", "imsi", "imei")
_CAPTURE_KEYS = ("source", "interface", "filter", "options")
_FRIDA_KEYS = ("server", "port", "processes")
_CONSOLE_KEYS = ("port", "baudrate")
_MODEM_KEYS = ("port", "number", "baudrate", "pin", "iccid", "imsi", "imei")
_RELAY_KEYS = ("port", "channels", "baudrate", "off_seconds")
_EMULATOR_KEYS = ("adb_port", "lab_dir", "profile")


def _testbed(at: _At, ctx: _Ctx) -> Testbed:
    m = at.mapping(_TESTBED_KEYS)
    name = m.req("name").name("testbed name")
    relay = _relay(m.opt("relay"))
    hs_at = m.opt("handsets")
    if hs_at is None or (isinstance(hs_at.value, list) and not hs_at.value):
        where = hs_at if hs_at is not None else at
        raise where.fail(
            "a testbed needs at least one handset (handsets: - {serial: ..., label: ...})",
            path=_join(at.path, "handsets"),
        )
    handsets = tuple(_handset(h, ctx) for h in hs_at.items())
    modem = _modem(m.opt("modem"))
    params: dict[str, Any] = {}
    if (p := m.opt("params")) is not None:
        if not isinstance(p.value, Mapping):
            raise p.fail(f"must be a mapping, not {_type(p.value)}")
        for key in p.value:
            if not isinstance(key, str):
                raise p.fail(f"keys must be strings, not {key!r}", path=_join(p.path, str(key)))
        params = copy.deepcopy(dict(p.value))
        pm = p.mapping(tuple(str(k) for k in p.value))
        for key, (low, high) in PARAM_SECONDS.items():
            if (v := pm.opt(key)) is not None:
                params[key] = v.number(low, high)
    emulator = None
    if (e := m.opt("emulator")) is not None:
        em = e.mapping(_EMULATOR_KEYS)
        emulator = EmulatorSpec(
            adb_port=em.req("adb_port").integer(1, 65535),
            lab_dir=em.read("lab_dir", lambda a: a.text(), None),
            profile=em.read("profile", lambda a: a.text(), None),
        )
    _cross_check(m, handsets, modem, relay)
    return Testbed(
        name=name,
        handsets=handsets,
        modem=modem,
        relay=relay,
        params=params,
        emulator=emulator,
        source=ctx.source,
        warnings=tuple(ctx.warnings),
    )


def _handset(at: _At, ctx: _Ctx) -> HandsetSpec:
    m = at.mapping(_HANDSET_KEYS)
    serial = m.req("serial").raw().strip()
    if not serial or any(c.isspace() for c in serial):
        raise m.req("serial").fail(f"{serial!r} is not an adb serial")
    label = m.req("label").name("label")
    adb_at = m.opt("adb")
    if adb_at is None:
        adb = ctx.default_adb(at)
    else:
        from .device import AdbAddress

        try:
            adb = AdbAddress.parse(adb_at.raw())
        except ValueError as exc:
            raise adb_at.fail(str(exc)) from None
    sims = tuple(_sim(s, i) for i, s in enumerate(m.read("sims", lambda a: a.items(), [])))
    return HandsetSpec(
        serial=serial,
        label=label,
        adb=adb,
        sims=sims,
        capture=_capture(m.opt("capture")),
        frida=_frida(m.get("frida")),
        console=_console(m.opt("console")),
        relay_channel=m.read("relay_channel", lambda a: a.integer(1, 255), None),
    )


def _sim(at: _At, index: int) -> SimSpec:
    m = at.mapping(_SIM_KEYS)
    slot = m.read("slot", lambda a: a.integer(0, MAX_SIM_SLOTS - 1), index)
    return SimSpec(
        slot=slot,
        number=m.req("number").e164(),
        iccid=_iccid(m.opt("iccid")),
        operator=m.read("operator", lambda a: a.raw(), None),
        imsi=_imsi(m.opt("imsi")),
        imei=_imei(m.opt("imei")),
    )


def _iccid(at: _At | None) -> str | None:
    if at is None:
        return None
    value = at.raw().strip()
    digits = value[:-1] if value[-1:] in ("f", "F") else value
    if not digits.isdigit() or not 18 <= len(digits) <= 22:
        raise at.fail(f"{value!r} is not an ICCID (18-22 digits)")
    if not digits.startswith("89"):
        at.warn(f"ICCID {value!r} does not start with 89 (the telecom industry identifier)")
    elif len(digits) in (19, 20) and not luhn_ok(digits):
        at.warn(f"ICCID {value!r} fails the Luhn check (a typo?)")
    return value


def _imsi(at: _At | None) -> str | None:
    return at.digits("an IMSI", 6, 15) if at is not None else None


def _imei(at: _At | None) -> str | None:
    if at is None:
        return None
    value = at.digits("an IMEI", 15, 15)
    if not luhn_ok(value):
        raise at.fail(f"{value!r} is not an IMEI (its check digit fails Luhn)")
    return value


def _capture(at: _At | None) -> CaptureSpec | None:
    if at is None:
        return None
    interface: str | None
    flt: str | None
    options: dict[str, Any]
    if isinstance(at.value, str):
        source, interface, flt, options = at.value.strip(), None, None, {}
        src_at = at
    else:
        m = at.mapping(_CAPTURE_KEYS)
        src_at = m.req("source")
        source = src_at.text().strip()
        interface = m.read("interface", lambda a: a.text(), None)
        flt = m.read("filter", lambda a: a.text(), None)
        options = {}
        if (o := m.opt("options")) is not None:
            if not isinstance(o.value, Mapping):
                raise o.fail(f"must be a mapping, not {_type(o.value)}")
            options = copy.deepcopy(dict(o.value))
    if source.startswith("host:"):
        source, given = "host", source[5:]
        if interface is not None and interface != given:
            raise src_at.fail(f"names interface {given!r} but `interface` says {interface!r}")
        interface = given or None
    if source not in CAPTURE_SOURCES:
        close = difflib.get_close_matches(source, CAPTURE_SOURCES, n=1)
        raise src_at.fail(
            f"{source!r} is not a capture source ({', '.join(CAPTURE_SOURCES[:-2])}, "
            f"host:IFACE or none)" + (f"; did you mean {close[0]!r}?" if close else "")
        )
    if source == "host" and not interface:
        raise src_at.fail("a host capture needs the interface: host:IFACE")
    if interface is not None and source not in ("host", "tcpdump"):
        raise src_at.fail(f"{source!r} does not take an interface (host and tcpdump do)")
    if flt is not None and source not in ("host", "tcpdump"):
        raise src_at.fail(f"{source!r} does not take a filter (host and tcpdump do)")
    return CaptureSpec(source=source, interface=interface, filter=flt, options=options)


def _frida(at: _At | None) -> FridaSpec | None:
    if at is None:
        return None
    if at.value is None:  # `frida:` alone: the defaults
        return FridaSpec()
    m = at.mapping(_FRIDA_KEYS)
    return FridaSpec(
        server=m.read("server", lambda a: a.text(), None),
        port=m.read("port", lambda a: a.integer(1, 65535), FRIDA_PORT),
        processes=m.read("processes", lambda a: a.strings(), FridaSpec().processes),
    )


def _console(at: _At | None) -> ConsoleSpec | None:
    if at is None:
        return None
    if isinstance(at.value, str):
        return ConsoleSpec(port=at.text())
    m = at.mapping(_CONSOLE_KEYS)
    return ConsoleSpec(
        port=m.req("port").text(), baudrate=m.read("baudrate", lambda a: a.integer(50), CONSOLE_BAUDRATE)
    )


def _modem(at: _At | None) -> ModemSpec | None:
    if at is None:
        return None
    m = at.mapping(_MODEM_KEYS)
    pin = None
    if (p := m.opt("pin")) is not None:
        pin = p.digits("a SIM PIN", 4, 8)
    return ModemSpec(
        port=m.req("port").text(),
        number=m.req("number").e164(),
        baudrate=m.read("baudrate", lambda a: a.integer(50), MODEM_BAUDRATE),
        pin=pin,
        iccid=_iccid(m.opt("iccid")),
        imsi=_imsi(m.opt("imsi")),
        imei=_imei(m.opt("imei")),
    )


def _relay(at: _At | None) -> RelaySpec | None:
    if at is None:
        return None
    m = at.mapping(_RELAY_KEYS)
    return RelaySpec(
        port=m.req("port").text(),
        channels=m.read("channels", lambda a: a.integer(1, 255), None),
        baudrate=m.read("baudrate", lambda a: a.integer(50), RELAY_BAUDRATE),
        off_seconds=m.read("off_seconds", lambda a: a.number(), None),
    )


def _cross_check(m: _Map, handsets: tuple[HandsetSpec, ...], modem: ModemSpec | None, relay: RelaySpec | None) -> None:
    """What no single entry can check: uniqueness, and relay channels against the relay."""
    seen: dict[tuple[str, Any], str] = {}
    hs_list = m.read("handsets", lambda a: a.items(), [])

    def once(kind: str, value: Any, at: _At, what: str) -> None:
        if value is None:
            return
        if (kind, value) in seen:
            raise at.fail(f"{what} is already used by {seen[kind, value]}")
        seen[kind, value] = at.path + (f" (line {at.line})" if at.line else "")

    for h, h_at in zip(handsets, hs_list):
        hm = h_at.mapping(_HANDSET_KEYS)
        once("label", h.label, hm.req("label"), f"label {h.label!r}")
        once("serial", (str(h.adb), h.serial), hm.req("serial"), f"serial {h.serial!r} on adb server {h.adb}")
        if h.relay_channel is not None:
            ch_at = hm.req("relay_channel")
            if relay is None:
                raise ch_at.fail("needs a `relay:` entry in the testbed")
            if relay.channels is not None and h.relay_channel > relay.channels:
                raise ch_at.fail(
                    f"must be between 1 and {relay.channels} (the relay's channels), not {h.relay_channel}"
                )
            once("relay_channel", h.relay_channel, ch_at, f"relay channel {h.relay_channel}")
        sim_ats = hm.read("sims", lambda a: a.items(), [])
        for sim, s_at in zip(h.sims, sim_ats):
            sm = s_at.mapping(_SIM_KEYS)
            once(f"slot/{h.label}", sim.slot, sm.get("slot") or s_at, f"SIM slot {sim.slot}")
            for kind in ("number", "iccid", "imsi", "imei"):
                once(kind, getattr(sim, kind), sm.get(kind) or s_at, f"{_WHAT[kind]} {getattr(sim, kind)!r}")
    if modem is not None:
        mm = m.req("modem").mapping(_MODEM_KEYS)
        for kind in ("number", "iccid", "imsi", "imei"):
            once(kind, getattr(modem, kind), mm.get(kind) or m.req("modem"), f"{_WHAT[kind]} {getattr(modem, kind)!r}")


_WHAT = {"number": "number", "iccid": "ICCID", "imsi": "IMSI", "imei": "IMEI"}


def _compose(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """The document's data and its node tree (same objects, merge keys flattened). A YAML error
    or a repeated key is a ConfigError with the line."""
    bad = _UNPRINTABLE.search(text)
    if bad:
        # PyYAML refuses these as it opens the text (a ReaderError); say where, as for any error
        line = text.count("\n", 0, bad.start()) + 1
        raise ConfigError(
            "",
            f"not valid YAML: character {bad.group()!r} (U+{ord(bad.group()):04X}) is not allowed "
            "in a testbed file (control characters, NUL, lone surrogates)",
            source=source,
            line=line,
        )
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        raise ConfigError("", f"not valid YAML: {exc}", source=source) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _no_repeated_keys(node, source)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(
            "",
            f"not valid YAML: {exc.problem or exc}" + (f" ({exc.context})" if exc.context else ""),
            source=source,
            line=mark.line + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError("", f"not valid YAML: {exc}", source=source) from None
    finally:
        loader.dispose()
    return data, node


# what YAML 1.1's printable set leaves out (pyyaml reader.Reader.NON_PRINTABLE, plus lone surrogates)
_UNPRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _no_repeated_keys(node: yaml.Node, source: str, path: str = "", seen: set[int] | None = None) -> None:
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias: checked where it was defined
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: dict[str, int] = {}
        for knode, vnode in node.value:
            if isinstance(knode, yaml.ScalarNode) and knode.tag != "tag:yaml.org,2002:merge":
                if knode.value in keys:
                    raise ConfigError(
                        _join(path, knode.value),
                        f"appears twice in this mapping (first on line {keys[knode.value]})",
                        source=source,
                        line=knode.start_mark.line + 1,
                    )
                keys[knode.value] = knode.start_mark.line + 1
                _no_repeated_keys(vnode, source, _join(path, knode.value), seen)
            else:
                _no_repeated_keys(vnode, source, path, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _no_repeated_keys(item, source, _join(path, i), seen)


def parse_testbeds(text: str, *, source: str = "<string>", env: Mapping[str, str] | None = None) -> list[Testbed]:
    """Every testbed of a file's text (either form), validated."""
    data, node = _compose(text, source)
    ctx = _Ctx(source, env)
    root = _At(data, "", node, ctx)
    if data is None:
        raise root.fail("is empty: expected `testbeds:` or a testbed mapping with `name:`", path="")
    if isinstance(data, Mapping) and "testbeds" in data:
        m = root.mapping(("testbeds",))
        items = m.req("testbeds").items()
        if not items:
            raise m.req("testbeds").fail("lists no testbed")
        testbeds = []
        names: dict[str, str] = {}
        for item in items:
            ctx.warnings = []
            tb = _testbed(item, ctx)
            if tb.name in names:
                raise item.fail(
                    f"testbed name {tb.name!r} is already used by {names[tb.name]}", path=_join(item.path, "name")
                )
            names[tb.name] = item.path + (f" (line {item.line})" if item.line else "")
            testbeds.append(tb)
        return testbeds
    if isinstance(data, Mapping) and "name" not in data and "handsets" not in data:
        keys = [str(k) for k in data]
        close = difflib.get_close_matches(keys[0], ["testbeds", *_TESTBED_KEYS], n=1) if keys else []
        raise root.fail(
            f"expected `testbeds:` (a list) or one testbed (`name:`, `handsets:`...), "
            f"found {', '.join(map(repr, keys))}" + (f"; did you mean {close[0]!r}?" if close else ""),
            path="",
        )
    return [_testbed(root, ctx)]


def _pick(testbeds: list[Testbed], name: str | None, source: str) -> Testbed:
    if name is None:
        if len(testbeds) == 1:
            return testbeds[0]
        raise ConfigError(
            "testbeds",
            f"lists {len(testbeds)} testbeds ({', '.join(t.name for t in testbeds)}): say which one to use",
            source=source,
        )
    for tb in testbeds:
        if tb.name == name:
            return tb
    raise ConfigError(
        "testbeds", f"has no testbed named {name!r} (have: {', '.join(t.name for t in testbeds)})", source=source
    )


def load_testbeds(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> list[Testbed]:
    """Every testbed in the file at ``path``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", "no such testbed file", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read the testbed file: {exc}", source=source) from None
    return parse_testbeds(text, source=source, env=env)


def load_testbed(
    path: str | os.PathLike[str], name: str | None = None, *, env: Mapping[str, str] | None = None
) -> Testbed:
    """The testbed called ``name`` in the file at ``path`` (``name`` may be left out when the
    file holds one). ``env`` supplies the default adb server (default: ``os.environ``)."""
    return _pick(load_testbeds(path, env=env), name, str(path))


# --- writing ---------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the file's order, short lists of scalars inline."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # list items indented under their key

    def represent_list(self, data: Iterable[Any]) -> yaml.SequenceNode:
        flow = bool(data) and all(isinstance(v, (str, int, float)) for v in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _Dumper.represent_list)


def dump_testbeds(testbeds: Iterable[Testbed], *, comment: str | None = None) -> str:
    """YAML text (``testbeds:`` form) that :func:`parse_testbeds` reads back to equal testbeds."""
    text = yaml.dump(
        {"testbeds": [tb.to_dict() for tb in testbeds]},
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    if comment:
        text = "".join(f"# {line}\n".replace("# \n", "#\n") for line in comment.splitlines()) + text
    return text


def dump_testbed(testbed: Testbed, *, comment: str | None = None) -> str:
    return dump_testbeds([testbed], comment=comment)


def write_testbed(testbed: Testbed, path: str | os.PathLike[str], *, comment: str | None = None) -> Path:
    """Write the file atomically (a reader never sees half of it); parent folders are made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dump_testbed(testbed, comment=comment))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


# --- the emulated lab's testbed --------------------------------------------------------------


def testbed_for_lab(lab: Any, *, name: str | None = None) -> Testbed:
    """The testbed of a running emulated lab (``hostctl.emulator.lab.Lab``): its handsets as the
    adb server sees them (serials ``127.0.0.1:PORT``, labels ``hs1``...), each SIM's number, ICCID,
    IMSI, IMEI and operator, capture ``lab``, the modem's pty and number, the relay's pty with
    channel N wired to handset N, each console's pty, and an ``emulator`` section."""
    from .device import AdbAddress

    adb = AdbAddress("127.0.0.1", int(lab.adb_port))
    relay_info = lab.relay_info()
    consoles = lab.consoles_info()
    handsets = []
    for index, lh in enumerate(lab.handsets, 1):
        sims = tuple(
            SimSpec(
                slot=s.slot, number=s.msisdn, iccid=s.iccid, operator=s.operator_name or None, imsi=s.imsi, imei=s.imei
            )
            for s in lh.identity.sims
        )
        console = consoles.get(lh.label)
        handsets.append(
            HandsetSpec(
                serial=lh.serial,
                label=lh.label,
                adb=adb,
                sims=sims,
                capture=CaptureSpec("lab"),
                frida=FridaSpec() if lab.config.with_apps else None,
                console=ConsoleSpec(console["pty"]) if console else None,
                relay_channel=index if relay_info else None,
            )
        )
    modem = None
    if (mi := lab.modem_info()) is not None:
        modem = ModemSpec(
            port=mi["pty"], number=mi["number"], iccid=mi.get("iccid"), imsi=mi.get("imsi"), imei=mi.get("imei")
        )
    relay = RelaySpec(port=relay_info["pty"], channels=len(lab.handsets)) if relay_info else None
    return Testbed(
        name=name or f"emulator-{lab.adb_port}",
        handsets=tuple(handsets),
        modem=modem,
        relay=relay,
        emulator=EmulatorSpec(adb_port=int(lab.adb_port), lab_dir=str(lab.dir), profile=str(lab.config.profile)),
    )
