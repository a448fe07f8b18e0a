"""An emulated lab: N virtual handsets, each an adbd on 127.0.0.1 with a Frida portal and app
processes, attached to the real adb server on one port.

A lab is addressed by its adb server port. Its files live in ``<home>/labs/<adb_port>/``:
``lab.json`` (what ``status`` prints, the daemon pid and the control endpoint) and one state
directory per handset under ``handsets/<label>/`` that survives restarts (settings, SMS rows,
files, identity, and the adbd port, reused so the serial stays the same).

Each handset's apps reach the Cloud Messaging service through the handset's wire tap
(``wiretap.py``): every byte they exchange is written to ``handsets/<label>/wire.pcapng`` (the
previous run's in ``wire.1.pcapng``), with synthetic addresses (handset N = 10.64.0.N, the Xiaomi
hosts in 198.18.0.0/15) and the nominal server ports. The control channel starts and stops live
captures of a handset into a file (``capture-start`` with serial, absolute path, optional link
type ethernet/raw/sll and max_seconds; ``capture-stop`` with the id it returned; ``captures``
lists them); ``hostctl capture --source lab`` uses them. Handsets whose build can run it (API 21+)
have PCAPdroid installed as a user app (``pcapdroid.py``); rooted builds have tcpdump.

The control command ``cloud`` answers what the Cloud Messaging service's store holds
(``retained()``: message bodies waiting, never any after delivery or expiry) and its counters, for
the audit's no-retention check (``hostctl.steps.lab_cloud_state``); ``reset`` factory-resets a
handset. A ``reboot`` asked through adb (the shell's ``reboot`` or adbd's ``reboot:`` service,
which is what ``adb reboot`` opens) power-cycles the handset (``LabHandset.reboot``).

The boot report waits for connectivity, as MIUI's does: a handset whose apps start in airplane
mode sends it when the radio comes back (once per boot), so a trace can attach first.

Everything here runs on one asyncio loop; blocking Frida calls go to worker threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from . import pcapdroid, screens, wiretap
from .adb.server import AdbdServer
from .apps import AppProcess, AppProcessError, HandsetPortal, PortalError
from .apps import free_loopback_port as free_loopback_port  # re-exported: the lab's helpers in one place
from .carrier import Carrier, SmsRecord, SmsSegment
from .cloudmsg import CloudMessaging
from .cloudsvc import CloudService
from .console import EmulatedConsole
from .handset import CONTACT_PHONE_INSERTED, Intent, VirtualHandset
from .identity import HandsetIdentity, generate_identity
from .labca import ensure_ca
from .modem import EmulatedModem, ModemIdentity, ModemServer
from .profiles import FirmwareProfile, load_profile
from .relay import EmulatedRelay
from .shell import AndroidShell
from .userland.runtime import UserlandError
from .userland.runtime import preflight as userland_preflight

log = logging.getLogger("hostctl.emulator.lab")

FRIDA_SERVER_PORT = 27042
_E164 = re.compile(r"\+[0-9]{3,15}")  # ITU-T E.164: at most 15 digits
APP_PACKAGES = ("com.android.mms",)
# Each app's label, which Frida shows as its name (frida-ps -a "Name"): AOSP packages/apps/Mms
# res/values/strings.xml app_label "Messaging" (the launcher's title for it, handset.py)
APP_LABELS = {"com.android.mms": "Messaging"}
APP_UID_BASE = 10000
DEFAULT_ADB_PORT = 5037
LOOPBACK = "127.0.0.1"


class LabError(RuntimeError):
    """A lab could not be started, reached or changed."""


def default_home(env: Mapping[str, str] | None = None) -> Path:
    environ: Mapping[str, str] = os.environ if env is None else env
    if environ.get("HOSTCTL_HOME"):
        return Path(environ["HOSTCTL_HOME"])
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hostctl"


def lab_dir(home: Path, adb_port: int) -> Path:
    return Path(home) / "labs" / str(adb_port)


def make_private_dir(path: Path) -> Path:
    """``path`` (and missing parents) as a folder only its owner can enter (0700): a lab's
    folders hold the handsets' identifiers, the control token and the wire captures."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)  # mkdir's mode yields to the umask and leaves an existing folder alone
    return path


def open_private(path: Path, mode: str = "wb"):
    """``path`` opened for writing, created 0600 (what the lab writes about its handsets)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)  # an existing file made under a looser umask becomes private too
    return os.fdopen(fd, mode)


class _Backend:
    """The adbd's view of a handset (see adb.server.DeviceBackend)."""

    def __init__(self, lh: LabHandset) -> None:
        self._lh = lh
        self.fs = lh.handset.fs
        self.handset = lh.handset  # adbd's own services (reboot:, root:, framebuffer:) act on it

    def banner_props(self) -> dict[str, str]:
        return self._lh.handset.banner_props()

    def new_shell(self) -> AndroidShell:
        return AndroidShell(self._lh.handset)

    def tcp_target(self, port: int) -> tuple[str, int] | None:
        # Device-side ports are the handset's own: frida-server's, and what the lab published.
        if port == FRIDA_SERVER_PORT and self._lh.portal is not None and self._lh.portal.running:
            return (LOOPBACK, self._lh.portal.control_port)
        host_port = self._lh.published_ports.get(port)
        return (LOOPBACK, host_port) if host_port else None


def _identifiers(ident: HandsetIdentity) -> set[str]:
    return {v for sim in ident.sims for v in (sim.msisdn, sim.imei, sim.imsi, sim.iccid)}


class LabHandset:
    """One emulated handset of a lab: its state, its adbd and its app processes."""

    def __init__(self, lab: Lab, label: str, profile: FirmwareProfile, *, index: int | None = None) -> None:
        self.lab = lab
        self.label = label
        self.index = index if index is not None else int(re.sub(r"\D", "", label) or 1)
        if lab.config.pcapdroid and profile.sdk >= pcapdroid.MIN_SDK:
            # the lab installs PCAPdroid as a user app (/data/app), not as part of the firmware
            profile = replace(profile, packages={**profile.packages, pcapdroid.PACKAGE: pcapdroid.APK_PATH})
        self.profile = profile
        self.state_dir = lab.dir / "handsets" / label
        make_private_dir(self.state_dir.parent)
        make_private_dir(self.state_dir)  # IMEI, IMSI, ICCID and numbers live in here
        self.handset = VirtualHandset(
            label=label, profile=profile, state_dir=self.state_dir, identity=self._new_identity(lab, label, profile)
        )
        with contextlib.suppress(OSError):
            (self.state_dir / "identity.json").chmod(0o600)
        if profile.su and lab.config.tcpdump:  # rooted lab handsets carry tcpdump, as real ones do
            binary = self.handset.fs.root / "system/xbin/tcpdump"
            if not binary.exists():
                binary.parent.mkdir(parents=True, exist_ok=True)
                binary.write_bytes(b"\x7fELF")
                binary.chmod(0o755)
        self.tap: wiretap.WireTap | None = None
        self._boot_pending = False  # the boot report waits for the radio (airplane mode)
        self.pcapdroid = pcapdroid.PcapdroidApp(self) if self.handset.package_installed(pcapdroid.PACKAGE) else None
        lab.taken_identifiers |= _identifiers(self.handset.identity)
        self.adbd = AdbdServer(_Backend(self), port=self._saved_port(), name=label, features=profile.adbd_features)
        self.portal: HandsetPortal | None = None
        self.apps: dict[str, AppProcess] = {}
        self.published_ports: dict[int, int] = {}
        self.powered = False
        self.power_listeners: list[Any] = []  # callback(on: bool): the UART console's
        self.lines = [_SimLine(self, sim.slot) for sim in self.handset.identity.sims]
        self.emitted: list[Any] = []  # every request the build was made to send (test oracle)
        for sim in self.handset.identity.sims:
            lab.carrier.provision(sim.msisdn, sim.imsi)
        self.micloud_logged_in = screens.micloud_account(self.handset) is not None
        self._reboot_task: asyncio.Task | None = None
        self.handset.add_intent_listener(self._on_intent)

    # -- identity ---------------------------------------------------------------------------
    def _new_identity(self, lab: Lab, label: str, profile: FirmwareProfile) -> HandsetIdentity | None:
        """A fresh handset's SIMs and IMEIs: seeded by lab and label (so two labs differ), and
        re-seeded until no number or IMEI repeats one already in this lab (the carrier routes
        by number). None keeps the identity saved in the state directory."""
        if (self.state_dir / "identity.json").exists():
            return None
        for attempt in range(1000):
            seed = f"lab{lab.adb_port}/{label}" + (f"#{attempt}" if attempt else "")
            ident = generate_identity(
                seed, sim_count=profile.sim_count, mcc_mnc=profile.mcc_mnc, operator_name=profile.operator_name
            )
            if not lab.taken_identifiers & _identifiers(ident):
                return ident
        raise LabError(f"{label}: could not draw a SIM identity unique in this lab")

    @property
    def identity(self) -> HandsetIdentity:
        return self.handset.identity

    @property
    def port(self) -> int:
        return self.adbd.port

    @property
    def serial(self) -> str:
        return f"{LOOPBACK}:{self.adbd.port}"

    def _saved_port(self) -> int:
        try:
            port = int((self.state_dir / "adbd.port").read_text())
        except (OSError, ValueError):
            return 0
        with socket.socket() as s:  # reuse it only if still free
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                return 0
        return port

    def info(self) -> dict[str, Any]:
        ident = self.handset.identity
        return {
            "serial": self.serial,
            "label": self.label,
            "number": ident.sims[0].msisdn if ident.sims else None,
            "numbers": [s.msisdn for s in ident.sims],
            "imeis": [s.imei for s in ident.sims],
            "profile": self.profile.name,
            "model": self.handset.getprop("ro.product.model"),
            "adbd_port": self.adbd.port,
            "frida_portal_port": self.portal.control_port if self.portal and self.portal.running else None,
            "apps": {pkg: app.pid for pkg, app in self.apps.items() if app.alive},
            "powered": self.powered,
            "state_dir": str(self.state_dir),
            "wire": self.tap.info() if self.tap is not None else None,
        }

    # -- the wire tap -------------------------------------------------------------------------
    def _tap_routes(self) -> list[wiretap.Route]:
        """Each host of the service's resolver map, relayed to the service, shown on the wire with
        the nominal port of the build's endpoint for that service (443, 5222, 80)."""
        from .behaviour import DEFAULT_ENDPOINTS

        cloud = self.lab.cloud
        assert cloud is not None
        service_of = {port: name for name, port in cloud.ports.items()}
        endpoints = getattr(self.profile.behaviour, "endpoints", None) or DEFAULT_ENDPOINTS
        routes = []
        for host, target in cloud.hosts().items():
            service = service_of.get(target[1], "")
            endpoint = endpoints.get(service) or DEFAULT_ENDPOINTS.get(service)
            nominal = endpoint.port if endpoint is not None else 443
            routes.append(wiretap.Route(host, target, nominal))
        return routes

    def _socket_owner(self, client_port: int, tap_port: int) -> tuple[int, str, int] | None:
        procs = {p.pid: p for p in self.handset.processes()}
        candidates = [
            (app.pid, pkg, procs[app.pid].uid if app.pid in procs else -1)
            for pkg, app in self.apps.items()
            if app.alive and app.pid
        ]
        return wiretap.socket_owner(client_port, tap_port, candidates)

    async def start_tap(self) -> None:
        """The handset's own tap in front of the service (see wiretap): its apps resolve the
        Xiaomi hosts to the tap's ports."""
        if self.lab.cloud is None or self.tap is not None:
            return
        tap = wiretap.WireTap(
            self.label,
            wiretap.handset_address(self.index),
            self._tap_routes(),
            state_dir=self.state_dir,
            owner=self._socket_owner,
        )
        await tap.start()
        self.tap = tap
        wiretap.register(self.handset, tap)

    async def stop_tap(self) -> None:
        tap, self.tap = self.tap, None
        wiretap.register(self.handset, None)
        if tap is not None:
            await tap.stop()

    # -- power ------------------------------------------------------------------------------
    async def power_on(self, *, with_apps: bool = True) -> None:
        if self.powered:
            return
        await self.adbd.start()
        (self.state_dir / "adbd.port").write_text(str(self.adbd.port))
        self.powered = True
        if self.lab._adb_watch is not None:
            # off for longer than adb's reconnect attempts last (AOSP adb transport.cpp,
            # ReconnectHandler; 62 s measured with the adbutils wheel's adb 36), the server has
            # dropped the device: connect it again, as one does for a network handset
            await asyncio.to_thread(self.lab._adb_reattach, self)
        self.radio_changed()
        self._power_changed(True)
        if with_apps:
            await self.start_apps()

    # -- radio ------------------------------------------------------------------------------
    @property
    def airplane(self) -> bool:
        return self.handset.settings_get("global", "airplane_mode_on") == "1"

    def radio_changed(self) -> None:
        """Register the SIMs with the carrier when powered and not in airplane mode, else not
        (what the modem does when power or ``AIRPLANE_MODE`` changes)."""
        on_air = self.powered and not self.airplane
        app = self.apps.get("com.android.mms")
        if app is not None and app.alive:  # the app's data connection follows the radio
            with contextlib.suppress(AppProcessError):
                app.notify("radio", on=on_air)
        for line in self.lines:
            number = line.number
            if on_air and not self.lab.carrier.attached(number):
                self.lab.carrier.attach(number, line, line.sim.imsi)
            elif not on_air:
                self.lab.carrier.detach(number)
        if on_air and self._boot_pending:  # what waited for connectivity at boot
            self._boot_pending = False
            log.info("%s: radio on: the deferred boot report goes out", self.label)
            self.emit("boot")
            self._activate_enabled()

    def _on_intent(self, intent: Intent) -> int | None:
        if intent.kind == "broadcast" and intent.action == "android.intent.action.AIRPLANE_MODE":
            self.radio_changed()
        # the protocol steps (hostctl.steps): a new contact's number, a call, a Mi Cloud sign-in,
        # a reboot asked through adb, and what a factory reset forgets
        if intent.kind == "provider" and intent.action == CONTACT_PHONE_INSERTED:
            self.add_contact(str(intent.extras.get("number", "")), str(intent.extras.get("name", "")))
        if intent.kind == "call" and intent.action == "started":
            self.place_call(str(intent.extras.get("number", "")))
        if intent.kind == "app" and intent.action == screens.MICLOUD_LOGIN:
            self.micloud_login()
        if intent.kind == "reboot":
            self._schedule_reboot(poweroff=bool(intent.extras.get("poweroff")))
        if intent.kind == "factory-reset":
            self.micloud_logged_in = False
        if intent.kind == "app" and intent.action == screens.PRESENCE_COMMAND:
            self.emit("conversation_opened", peer_number=intent.extras.get("to"))
            self.emit("presence_lookup", contact_number=intent.extras.get("to"))
        if intent.kind == "app" and intent.action == screens.SEND_COMMAND:
            self.emit("message_send", peer_number=intent.extras.get("to"), message_text=intent.extras.get("text"))
        if intent.kind == "app" and intent.action in (screens.SEND_COMMAND, screens.PRESENCE_COMMAND):
            app = self.apps.get("com.android.mms")
            if app is not None and app.alive:
                cmd = "mx_send" if intent.action == screens.SEND_COMMAND else "compose_presence"
                slot = int(intent.extras.get("sim", 0))
                to = str(intent.extras.get("to", ""))
                extras = dict(intent.extras, wire_to=self.wire("number", to, slot))
                extras["encrypt_to"] = self.wire_recipe("number", to, slot, extras["wire_to"])
                if "text" in extras:
                    extras["wire_text"] = self.wire("body", str(extras["text"]), slot)
                    extras["encrypt_text"] = self.wire_recipe("body", str(extras["text"]), slot, extras["wire_text"])
                with contextlib.suppress(AppProcessError):
                    app.notify(cmd, **extras)
        if intent.kind == "service" and intent.component == screens.MX_SERVICE and intent.action == screens.ENABLE_MX:
            self.emit("cm_enabled", slot=int(intent.extras.get("sim_index", 0)))
        if intent.kind == "service" and intent.component == screens.MX_SERVICE:
            app = self.apps.get("com.android.mms")
            if app is not None and app.alive:  # the service runs in the app; do not wait for it
                cmd = "mx_enable" if intent.action == screens.ENABLE_MX else "mx_disable"
                with contextlib.suppress(AppProcessError):
                    app.notify(cmd, sim_index=int(intent.extras.get("sim_index", 0)))
        return None

    # -- what the firmware sends (the profile's behaviour) ------------------------------------
    micloud_logged_in = False

    def emit(self, event: str, *, slot: int = 0, **ctx: Any) -> list[Any]:
        """Render the build's requests for ``event`` and have the Messaging app send them.
        Returns the rendered requests (what a test compares with what the service received)."""
        from .behaviour import EventContext

        behaviour = self.profile.behaviour
        if not hasattr(behaviour, "requests_for") or not self.powered:
            return []
        cm_on = any(screens.sim_enabled(self.handset, i) for i in range(len(self.handset.identity.sims)))
        context = EventContext.for_handset(
            self.profile, self.handset.identity, slot=slot, cm_on=cm_on, micloud_login=self.micloud_logged_in, **ctx
        )
        requests = behaviour.requests_for(event, context)
        app = self.apps.get("com.android.mms")
        if requests and app is not None and app.alive:
            self.emitted.extend(requests)
            with contextlib.suppress(AppProcessError):
                app.notify(
                    "emit",
                    requests=[
                        {
                            "event": r.event,
                            "endpoint": r.endpoint,
                            "host": r.host,
                            "transport": r.transport,
                            "method": r.method,
                            "path": r.path,
                            "fields": r.fields,
                            "slot": r.slot,
                            "encoding": getattr(r, "encoding", "identity"),
                            "encrypt": self._recipes(behaviour, r),
                            **({"pylibs": _protocol_libs()} if r.transport in ("h2", "h2c", "wss", "ws") else {}),
                        }
                        for r in requests
                    ],
                )
        return requests

    def _recipes(self, behaviour: Any, r: Any) -> dict[str, Any]:
        """The fields of request ``r`` the app encrypts itself (its platform's AES, where the
        agent's cipher hooks see it), with what it needs to."""
        from .behaviour import cipher_recipe

        out = {}
        sims = self.handset.identity.sims
        for name, key_name in r.keys.items():
            sim = sims[r.slot] if r.slot is not None and r.slot < len(sims) else None
            recipe = cipher_recipe(
                r.plaintext[name], r.protections[name], behaviour.key_material(key_name, sim), r.fields[name]
            )
            if recipe is not None:
                out[name] = recipe
        return out

    def wire_recipe(self, kind: str, value: str, slot: int, protected: str) -> dict[str, str] | None:
        """How the app computes :meth:`wire`'s answer itself (None when it is not one AES step)."""
        from .behaviour import cipher_recipe

        spec = self._wire_field(kind)
        if spec is None or not value:
            return None
        f, behaviour = spec
        return cipher_recipe(value, f.protection, self._wire_key(f, behaviour, slot), protected)

    # the rule field whose protection the build also gives its own frames: numbers it looks up or
    # sends to, and message bodies
    _WIRE_FIELDS: ClassVar[dict[str, tuple[str, str]]] = {
        "number": ("presence_lookup", "contact_number"),
        "body": ("message_send", "message_text"),
    }

    def _wire_field(self, kind: str) -> tuple[Any, Any] | None:
        """(field spec, this build's behaviour) when the build protects ``kind``; None if plain."""
        event, source = self._WIRE_FIELDS[kind]
        behaviour = self.profile.behaviour
        for rule in getattr(behaviour, "events", {}).get(event, ()):
            for f in rule.fields:
                if f.source == source:
                    return None if tuple(f.protection) == ("plain",) else (f, behaviour)
        return None

    def _wire_key(self, f: Any, behaviour: Any, slot: int) -> Any:
        return behaviour.key_material(f.key, self.handset.identity.sims[slot]) if f.key else None

    def wire(self, kind: str, value: str, slot: int = 0) -> str:
        """A number (``kind`` "number") or message body ("body") as this build puts it in its own
        frames: plain, or e.g. AES-CBC / AES-GCM with the SIM's key on the 2014-08-10 OTA, so
        nothing the app sends carries it in clear when the build says it must not."""
        from .behaviour import protect

        spec = self._wire_field(kind)
        if spec is None or not value:
            return value
        f, behaviour = spec
        return protect(value, f.protection, self._wire_key(f, behaviour, slot))

    def unwire(self, kind: str, value: str, slot: int = 0) -> str | None:
        """The inverse, for whoever holds the build's keys (the service, the receiving app);
        None if ``value`` is not this build's writing."""
        from .behaviour import ProtectionError, unprotect

        spec = self._wire_field(kind)
        if spec is None:
            return value
        f, behaviour = spec
        try:
            return unprotect(value, f.protection, self._wire_key(f, behaviour, slot))
        except (ProtectionError, ValueError):
            return None

    def add_contact(self, number: str, name: str = "") -> list[Any]:
        """A contact is created (the Contacts app): what the build sends about it, and the
        Messaging app's presence look-up of the new number."""
        app = self.apps.get("com.android.mms")
        if app is not None and app.alive:  # the app looks the new contact up
            with contextlib.suppress(AppProcessError):
                app.notify("presence", number=self.wire("number", number), sim=0)
        return self.emit("contact_added", contact_number=number) + self.emit("presence_lookup", contact_number=number)

    def place_call(self, number: str) -> list[Any]:
        """A voice call to ``number``: what the build reports about it (the 2014 builds: nothing)."""
        return self.emit("call", peer_number=number)

    def micloud_login(self) -> list[Any]:
        """The user signs in to Mi Cloud."""
        self.micloud_logged_in = True
        return self.emit("micloud_login")

    def _app_call(self, msg: dict[str, Any]) -> Any:
        """What an app process asks of Android (the framework and providers), by ``op``."""
        op = msg.get("op")
        h = self.handset
        if op == "event":
            return len(self.emit(str(msg["event"]), slot=int(msg.get("slot") or 0)))
        if op == "identity":
            sim = h.identity.sims[int(msg.get("sim", 0))]
            return {"msisdn": sim.msisdn, "imei": sim.imei, "imsi": sim.imsi, "iccid": sim.iccid}
        if op == "send_sms":
            row, records = self.send_sms(
                str(msg["to"]), str(msg["text"]), slot=int(msg.get("slot", 0)), row=msg.get("row")
            )
            return {"row": row, "status": [r.status for r in records]}
        if op == "sms_insert":
            # the app process speaks SIM slots; MIUI's rows keep the subscription id in sim_id
            values = dict(msg["values"])
            if values.get("sim_id") is not None:
                values["sim_id"] = h.profile.sub_id(int(values["sim_id"]))
            return h.sms_insert(values)
        if op == "sms_update":
            return h.sms_update(dict(msg["values"]), f"content://sms/{int(msg['row'])}")
        if op == "pref_mx":
            screens.record_login(
                h,
                int(msg["sim"]),
                mid=str(msg["mid"]),
                st=str(msg["st"]),
                sec=str(msg["sec"]),
                enabled=bool(msg.get("enabled", True)),
            )
            return True
        if op == "unwire_body":  # an MX body from ``sender``: its build's key is the sender SIM's
            value = str(msg["value"])
            line = self.lab.line_of(str(msg.get("sender") or ""))
            plain = line[0].unwire("body", value, line[1]) if line else None
            return value if plain is None else plain
        if op == "compose_presence":
            screens.show_presence(h, str(msg["to"]), msg.get("online"))
            return True
        if op == "broadcast":
            return h.broadcast(
                Intent(kind="broadcast", action=str(msg["action"]), extras=dict(msg.get("extras") or {}))
            )
        raise ValueError(f"unknown op {op!r}")

    def send_sms(
        self, to: str, text: str, *, slot: int = 0, status_report: bool = False, row: int | None = None
    ) -> tuple[int, list[SmsRecord]]:
        """What SmsManager.sendMultipartTextMessage does for an app: split, submit each part to
        the carrier, and (as the default SMS app) write the sent row. Returns (row id, records)."""
        from ..sms import split_message
        from .carrier import normalise_number

        sim = self.handset.identity.sims[slot]
        if not self.powered or self.airplane:
            row = self.handset.sms_insert(
                {
                    "address": to,
                    "body": text,
                    "type": 5,
                    "sim_id": self.handset.profile.sub_id(slot),
                    "error_code": 1,
                    "status": 64,
                }
            )  # RESULT_ERROR_RADIO_OFF
            return row, []
        recipient = normalise_number(to, _country_code(sim.msisdn))
        # as the Messaging app does: an outbox row first, moved to sent (or failed) when the
        # radio has sent every part; a delivery report then updates its status
        values = {
            "address": to,
            "body": text,
            "type": 4,
            "sim_id": self.handset.profile.sub_id(slot),
            "mx_status": 0,
            "status": 32 if status_report else -1,
            "date_sent": int(time.time() * 1000),
        }
        if row is None:
            row = self.handset.sms_insert(values)
        else:  # an existing row (an MX message MIUI resends as SMS) becomes this SMS
            self.handset.sms_update(values, f"content://sms/{row}")
        ref = self.lab.next_concat_ref()
        records = []
        for part in split_message(text, reference=ref):
            mr = self.lab.next_message_ref()
            self.lines[slot].sent_rows[mr] = row
            records.append(
                self.lab.carrier.submit(
                    SmsSegment(
                        sender=sim.msisdn,
                        recipient=recipient,
                        text=part.text,
                        coding=part.coding,
                        concat=part.concat,
                        status_report=status_report,
                        message_ref=mr,
                    ),
                    self.lines[slot],
                )
            )
        ok = all(r.status != "failed" for r in records)
        self.handset.sms_update(
            {"type": 2} if ok else {"type": 5, "status": 64, "error_code": 1}, f"content://sms/{row}"
        )
        if ok and recipient != (self.lab.cloud.cm.gateway if self.lab.cloud else None):
            self.emit("sms_sent", slot=slot, peer_number=recipient, message_text=text)
        return row, records

    async def start_apps(self) -> None:
        self.portal = HandsetPortal(name=self.label)
        try:
            await asyncio.to_thread(self.portal.start)
        except PortalError as exc:
            raise LabError(f"{self.label}: Frida portal did not start: {exc}") from exc
        await asyncio.gather(*(self._start_app(pkg) for pkg in APP_PACKAGES))
        if self.airplane:
            # MIUI's boot report (and a default-on activation) waits for connectivity: it goes
            # out when the radio comes back (radio_changed), once per boot; meanwhile a trace
            # can attach
            self._boot_pending = True
            self.handset.log("I", "MiuiReport", "boot report deferred: no connectivity (airplane mode)")
        else:
            await asyncio.to_thread(self.emit, "boot")  # what the build reports when it comes up
            self._activate_enabled()

    def _activate_enabled(self) -> None:
        """Cloud Messaging on (by default on some builds): the app activates and binds each
        enabled SIM at boot, once it has connectivity (activation needs the SMS round trip)."""
        app = self.apps.get("com.android.mms")
        for sim in range(len(self.handset.identity.sims)):
            if app is not None and screens.sim_enabled(self.handset, sim):
                with contextlib.suppress(AppProcessError):
                    app.notify("mx_enable", sim_index=sim)

    async def _start_app(self, package: str) -> None:
        env = {}
        if self.lab.cloud is not None:  # the handset's resolver (its tap, if any) and trust store
            hosts = (
                self.tap.hosts_env()
                if self.tap is not None
                else {h: f"{a}:{p}" for h, (a, p) in self.lab.cloud.hosts().items()}
            )
            env = {"HOSTCTL_HOSTS": json.dumps(hosts), "HOSTCTL_CA": str(self.lab.cloud.ca.ca_cert)}
        if self.portal is None:  # start_apps() starts it first
            raise LabError(f"{self.label}: app {package} needs the handset's Frida portal, which is not running")
        app = AppProcess(
            package=package,
            portal=self.portal,
            state_dir=self.state_dir / "apps",
            log_port=self.lab.log_port,
            env=env,
            label=APP_LABELS.get(package),
        )
        app.on_call = self._app_call
        try:
            await asyncio.to_thread(app.start)
        except AppProcessError as exc:
            raise LabError(f"{self.label}: app {package} did not start: {exc}") from exc
        pid = app.pid
        if pid is None:  # start() returned, so the process was spawned
            raise LabError(f"{self.label}: app {package} started without a process id")
        self.apps[package] = app
        self.handset.register_process(package, pid, APP_UID_BASE + len(self.apps))
        self.lab._pids[pid] = self

    async def power_off(self) -> None:
        """Pull the plug: adbd stops (the host sees the device go offline), apps die."""
        if self.powered:
            self._power_changed(False)
        self.powered = False
        self._boot_pending = False
        if self.pcapdroid is not None:
            self.pcapdroid.power_off()
        self.radio_changed()
        await self.adbd.stop()
        for app in self.apps.values():
            if app.pid:
                self.handset.unregister_process(app.pid)
                self.lab._pids.pop(app.pid, None)
            await asyncio.to_thread(app.stop)
        self.apps.clear()
        if self.portal is not None:
            await asyncio.to_thread(self.portal.stop)
            self.portal = None

    def _power_changed(self, on: bool) -> None:
        for listener in list(self.power_listeners):
            try:
                listener(on)
            except Exception:
                log.exception("%s: power listener", self.label)

    REBOOT_OFF_SECONDS = 0.0  # extra dark time; the host sees it go anyway (adbd closes)

    def _schedule_reboot(self, *, poweroff: bool) -> None:
        """From the shell's ``reboot``: power-cycle soon, after the command's
        stream has closed, as a real handset goes down a moment after sys.powerctl is set."""
        loop = self.lab._loop
        if loop is None or (self._reboot_task is not None and not self._reboot_task.done()):
            return

        def start() -> None:
            self._reboot_task = loop.create_task(self.reboot(poweroff=poweroff, delay=0.2))

        loop.call_soon_threadsafe(start)

    async def reboot(self, *, poweroff: bool = False, delay: float = 0.0) -> None:
        """Power off (the adb server sees the device go), lose the runtime state, and come back:
        adbd first with ``sys.boot_completed`` 0, then the apps, then ``sys.boot_completed`` 1."""
        await asyncio.sleep(delay)
        lock = self.lab._power_lock or asyncio.Lock()
        async with lock:
            await self.power_off()
            self.handset.lose_runtime_state()
            if not poweroff:
                await asyncio.sleep(self.REBOOT_OFF_SECONDS)
                self.handset.setprop("sys.boot_completed", "0")
                await self.power_on(with_apps=False)
                if self.lab.config.with_apps:
                    await self.start_apps()
                self.handset.setprop("sys.boot_completed", "1")
        with contextlib.suppress(OSError):
            self.lab._write_lab_file()

    async def factory_reset(self) -> None:
        was_on = self.powered
        await self.power_off()
        self.handset.factory_reset()
        if was_on:
            await self.power_on()

    def close(self) -> None:
        wiretap.register(self.handset, None)
        with contextlib.suppress(Exception):
            self.handset.close()


def _country_code(e164: str) -> str:
    """The country calling code of an E.164 number of this lab's numbering plan."""
    from .identity import _COUNTRIES

    digits = e164.lstrip("+")
    for cc in sorted({c for c, _, _ in _COUNTRIES.values()}, key=len, reverse=True):
        if digits.startswith(cc):
            return cc
    return digits[:2]


class _Gateway:
    """The Cloud Messaging service's SMS gateway number, as a carrier subscriber."""

    def __init__(self, cm: CloudMessaging) -> None:
        self.cm = cm

    def sms_deliver(self, segment: SmsSegment) -> bool:
        self.cm.gateway_sms(segment.sender, segment.text)
        return True

    def sms_status_report(self, record: SmsRecord) -> None:
        return None


class _SimLine:
    """One SIM of a lab handset, as the carrier sees it."""

    def __init__(self, lh: LabHandset, slot: int) -> None:
        self.lh = lh
        self.slot = slot
        self.sent_rows: dict[int, int] = {}  # TP-MR -> the sent row it belongs to

    @property
    def sim(self):
        return self.lh.handset.identity.sims[self.slot]

    @property
    def number(self) -> str:
        return self.sim.msisdn

    def sms_deliver(self, segment: SmsSegment) -> bool:
        if not self.lh.powered or self.lh.airplane:
            return False
        if self.lh.handset.receive_sms(segment, self.slot) is not None:
            self.lh.emit("sms_received", slot=self.slot, peer_number=segment.sender, message_text=segment.text)
        return True

    def sms_status_report(self, record: SmsRecord) -> None:
        row = self.sent_rows.get(record.segment.message_ref)
        if row is not None:  # Telephony's status column: 0 complete, 64 failed
            status = 0 if record.status == "delivered" else 64
            self.lh.handset.sms_update({"status": status}, f"content://sms/{row}")


class _LogSink(asyncio.DatagramProtocol):
    """The lab's "logd": app processes send ``P/TAG(PID): message`` datagrams here."""

    LINE = re.compile(r"^([VDIWEF])/([^(]*)\(\s*(\d+)\):\s?(.*)$", re.S)

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def datagram_received(self, data: bytes, addr: Any) -> None:
        m = self.LINE.match(data.decode("utf-8", "replace").rstrip("\n"))
        if not m:
            return
        prio, tag, pid, msg = m.groups()
        lh = self.lab._pids.get(int(pid))
        if lh is not None:
            lh.handset.log(prio, tag.strip(), msg, pid=int(pid))


def _protocol_libs() -> list[str]:
    """The directories holding h2 (with hpack, hyperframe) and wsproto (with h11): the Messaging
    app runs with ``python -S -I`` and imports them from here when a build speaks HTTP/2 or
    WebSocket (see ``app_main.http2`` / ``websocket``)."""
    import h2
    import h11
    import hpack
    import hyperframe
    import wsproto

    dirs = set()
    for m in (h2, h11, hpack, hyperframe, wsproto):
        if m.__file__ is None:  # a namespace package: no folder to hand the app
            raise RuntimeError(f"{m.__name__} is installed without a file; reinstall it")
        dirs.add(str(Path(m.__file__).resolve().parent.parent))
    return sorted(dirs)


@dataclass
class LabConfig:
    adb_port: int = DEFAULT_ADB_PORT
    handsets: int = 2
    profile: str = "miui-v5-2014-08-10"
    home: Path | None = None
    with_apps: bool = True
    connect: bool = True  # run `adb connect` for each handset
    connect_timeout: float = 10.0
    modem: bool = True  # a GSM modem on the carrier, served on a pty and a TCP port
    relay: bool = True  # a serial relay board on a pty/TCP port: channel N powers handset N
    consoles: bool = True  # a UART console per handset on a pty/TCP port, streaming its log
    cloud: bool = True  # the Cloud Messaging service (TLS on loopback, lab CA)
    wiretap: bool = True  # a wire tap per handset in front of the service (wiretap.py)
    pcapdroid: bool = True  # install PCAPdroid (a user app) on handsets whose build can run it
    tcpdump: bool = True  # /system/xbin/tcpdump on rooted builds (profile `su`)


class Lab:
    """A running emulated lab (inside the current process's event loop)."""

    def __init__(self, config: LabConfig) -> None:
        self.config = config
        self.home = Path(config.home) if config.home else default_home()
        self.dir = lab_dir(self.home, config.adb_port)
        self.handsets: list[LabHandset] = []
        self._pids: dict[int, LabHandset] = {}
        self.taken_identifiers: set[str] = set()
        self.log_port = 0
        self._log_transport: asyncio.DatagramTransport | None = None
        self._control: asyncio.base_events.Server | None = None
        self.control_port = 0
        self.token = secrets.token_hex(16)
        self.started_adb_server = False
        self.stopped = asyncio.Event()
        self._adb_watch: asyncio.Task | None = None  # re-attaches what a restarted adb server forgot
        self.carrier = Carrier()
        self.modem: EmulatedModem | None = None
        self.cloud: CloudService | None = None
        self.modem_server: ModemServer | None = None
        self.relay: EmulatedRelay | None = None
        self.relay_server: ModemServer | None = None
        self.consoles: dict[str, tuple[EmulatedConsole, ModemServer]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._power_lock: asyncio.Lock | None = None
        self._concat_ref = 0
        self._message_ref = 0
        self.captures: dict[str, _Capture] = {}  # live capture-start subscriptions
        self.finished_captures: dict[str, dict[str, Any]] = {}
        self._capture_ids = 0

    def next_concat_ref(self) -> int:
        self._concat_ref = (self._concat_ref + 1) % 256
        return self._concat_ref

    def next_message_ref(self) -> int:
        self._message_ref = (self._message_ref + 1) % 256
        return self._message_ref

    @property
    def adb_port(self) -> int:
        return self.config.adb_port

    async def start(self) -> None:
        if not 1 <= self.config.handsets <= 256:
            raise LabError(f"--handsets must be between 1 and 256, not {self.config.handsets}")
        make_private_dir(self.dir)
        existing = running_lab(self.home, self.adb_port)
        if existing is not None and existing.get("pid") != os.getpid():
            raise LabError(f"a lab is already running on adb port {self.adb_port} (pid {existing['pid']})")
        await asyncio.to_thread(clear_stale_lab, self.home, self.adb_port)
        profile = load_profile(self.config.profile)
        try:  # the handsets' shell runs in a sandbox: say what to install or enable, up front
            userland_preflight()
        except UserlandError as exc:
            raise LabError(str(exc)) from exc
        loop = self._loop = asyncio.get_running_loop()
        self._power_lock = asyncio.Lock()
        self._log_transport, _ = await loop.create_datagram_endpoint(lambda: _LogSink(self), local_addr=(LOOPBACK, 0))
        self.log_port = self._log_transport.get_extra_info("sockname")[1]
        self.handsets = [LabHandset(self, f"hs{i + 1}", profile, index=i + 1) for i in range(self.config.handsets)]
        try:
            if self.config.cloud:
                await self._start_cloud()
                if self.config.wiretap:
                    await asyncio.gather(*(h.start_tap() for h in self.handsets))
            if self.config.modem:
                self._start_modem(profile)
            if self.config.consoles:
                self._start_consoles()
            adb_ready = (
                asyncio.ensure_future(asyncio.to_thread(self._ensure_adb_server)) if self.config.connect else None
            )
            await asyncio.gather(*(h.power_on(with_apps=False) for h in self.handsets))
            if adb_ready is not None:
                await adb_ready
                await asyncio.gather(*(asyncio.to_thread(self._adb_connect, h) for h in self.handsets))
            if self.config.with_apps:
                await asyncio.gather(*(h.start_apps() for h in self.handsets))
            if self.config.relay:
                self._start_relay()
            await self._start_control()
            if self.config.connect:
                self._adb_watch = loop.create_task(self._watch_adb(), name=f"adb-watch-{self.adb_port}")
            self._write_lab_file()
        except BaseException:
            await self.stop()
            raise

    async def _start_cloud(self) -> None:
        """Xiaomi's service as the lab runs it: TLS with the lab CA, and its SMS gateway number
        on the carrier (activation SMS arrive there)."""
        self.cloud = CloudService(CloudMessaging(resolve_number=self._resolve_number), ensure_ca(self.dir / "ca"))
        await self.cloud.start()
        self.carrier.attach(self.cloud.cm.gateway, _Gateway(self.cloud.cm))

    def line_of(self, number: str) -> tuple[LabHandset, int] | None:
        """The handset and slot whose SIM has this number."""
        for h in self.handsets:
            for sim in h.handset.identity.sims:
                if sim.msisdn == number:
                    return h, sim.slot
        return None

    def _resolve_number(self, value: str, sender: str | None) -> str:
        """A number as the sender's build wrote it in a frame, back to E.164 (the service holds
        the builds' keys, as Xiaomi's does)."""
        # E.164 is "+" and digits only; a protected number's Base64 may begin with "+" too (one
        # in 64), so the test is the whole form, not the first character: that case once left a
        # number unresolved, its owner "offline" and the audit's ip-when-online verdict flipping
        line = self.line_of(sender) if sender is not None and not _E164.fullmatch(value) else None
        if line is None:
            return value
        plain = line[0].unwire("number", value, line[1])
        return plain if plain and _E164.fullmatch(plain) else value

    def cloud_info(self) -> dict[str, Any] | None:
        if self.cloud is None:
            return None
        return {
            "hosts": {host: f"{addr}:{port}" for host, (addr, port) in self.cloud.hosts().items()},
            "ca": str(self.cloud.ca.ca_cert),
            "gateway": self.cloud.cm.gateway,
        }

    def _start_modem(self, profile: FirmwareProfile) -> None:
        """The lab's modem: its own SIM (unique in the lab, like a handset's), on the carrier."""
        for attempt in range(1000):
            seed = f"lab{self.adb_port}/modem" + (f"#{attempt}" if attempt else "")
            ident = generate_identity(seed, sim_count=1, mcc_mnc=profile.mcc_mnc, operator_name=profile.operator_name)
            if not self.taken_identifiers & _identifiers(ident):
                break
        else:
            raise LabError("could not draw a SIM identity for the modem unique in this lab")
        self.taken_identifiers |= _identifiers(ident)
        sim = ident.sims[0]
        identity = ModemIdentity(
            imei=sim.imei,
            imsi=sim.imsi,
            iccid=sim.iccid,
            number=sim.msisdn,
            operator=sim.operator_name or "OPERATOR",
            operator_short=(sim.operator_name or "OP").split()[0][:8],
            mcc_mnc=sim.mcc_mnc,
            smsc=self.carrier.smsc,
        )
        self.modem = EmulatedModem(identity, self.carrier, country_code=_country_code(sim.msisdn))
        try:
            self.modem_server = ModemServer(self.modem).start()
        except OSError as exc:
            raise LabError(f"the modem could not be served on a pty: {exc}") from exc
        self.modem.attach()

    # -- relay board and UART consoles ------------------------------------------------------
    def _start_relay(self) -> None:
        """One board with a relay per handset: channel N is handset N's power."""
        self.relay = EmulatedRelay(len(self.handsets), self._relay_switched)
        try:
            self.relay_server = ModemServer(self.relay).start()
        except OSError as exc:
            raise LabError(f"the relay board could not be served on a pty: {exc}") from exc

    def _relay_switched(self, channel: int, on: bool) -> None:
        """From the relay server's thread: switch the handset on the lab's loop, in order."""
        if self._loop is None or not 1 <= channel <= len(self.handsets):
            return
        future = asyncio.run_coroutine_threadsafe(self._relay_power(self.handsets[channel - 1], on), self._loop)

        def report(f: concurrent.futures.Future[None]) -> None:
            if f.exception():
                log.error("relay %d %s failed: %s", channel, "on" if on else "off", f.exception())

        future.add_done_callback(report)

    async def _relay_power(self, lh: LabHandset, on: bool) -> None:
        assert self._power_lock is not None
        async with self._power_lock:  # off then on, never both at once
            if on:
                await lh.power_on(with_apps=self.config.with_apps)
            else:
                await lh.power_off()

    def _start_consoles(self) -> None:
        for lh in self.handsets:
            console = EmulatedConsole(lh.label, lh.handset.getprop("ro.product.model") or "", lh.handset, lh.powered)
            lh.power_listeners.append(console.power)
            try:
                server = ModemServer(console).start()
            except OSError as exc:
                console.close()
                raise LabError(f"{lh.label}: the UART console could not be served on a pty: {exc}") from exc
            self.consoles[lh.label] = (console, server)

    def relay_info(self) -> dict[str, Any] | None:
        if self.relay is None or self.relay_server is None:
            return None
        states = self.relay.states()
        return {
            "pty": self.relay_server.pty_path,
            "url": self.relay_server.url,
            "channels": {
                str(ch): {"handset": lh.label, "serial": lh.serial, "on": states.get(ch)}
                for ch, lh in enumerate(self.handsets, 1)
            },
        }

    def consoles_info(self) -> dict[str, Any]:
        return {label: {"pty": server.pty_path, "url": server.url} for label, (_, server) in self.consoles.items()}

    def _stop_serial_twins(self) -> None:
        if self.relay_server is not None:
            with contextlib.suppress(Exception):
                self.relay_server.stop()
            self.relay_server = None
        for label, (console, server) in list(self.consoles.items()):
            with contextlib.suppress(Exception):
                server.stop()
            with contextlib.suppress(Exception):
                console.close()
            lh = next((h for h in self.handsets if h.label == label), None)
            if lh is not None and console.power in lh.power_listeners:
                lh.power_listeners.remove(console.power)
        self.consoles.clear()

    def modem_info(self) -> dict[str, Any] | None:
        if self.modem is None or self.modem_server is None:
            return None
        return dict(self.modem.info(), pty=self.modem_server.pty_path, url=self.modem_server.url)

    async def stop(self) -> None:
        watch, self._adb_watch = self._adb_watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watch
        self._stop_serial_twins()
        for cap_id in list(self.captures):
            with contextlib.suppress(Exception):
                self.capture_stop(cap_id)
        for h in self.handsets:
            with contextlib.suppress(Exception):
                await h.stop_tap()
        if self.cloud is not None:
            self.carrier.detach(self.cloud.cm.gateway)
            with contextlib.suppress(Exception):
                await self.cloud.stop()
            self.cloud = None
        if self.modem_server is not None:
            with contextlib.suppress(Exception):
                if self.modem is not None:
                    self.modem.detach()
            with contextlib.suppress(Exception):
                self.modem_server.stop()
            self.modem_server = None
        for h in self.handsets:
            with contextlib.suppress(Exception):
                await h.power_off()
            if self.config.connect:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._adb_disconnect, h)
            h.close()
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._log_transport is not None:
            self._log_transport.close()
            self._log_transport = None
        if self.started_adb_server:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(kill_adb_server, self.adb_port)
        with contextlib.suppress(OSError):
            lab_file(self.home, self.adb_port).unlink()
        self.stopped.set()

    def find(self, key: str) -> LabHandset:
        for h in self.handsets:
            if key in (h.serial, h.label, str(h.port)):
                return h
        raise LabError(
            f"no handset {key!r} in the lab on adb port {self.adb_port} "
            f"(have: {', '.join(h.serial for h in self.handsets)})"
        )

    def status(self) -> dict[str, Any]:
        return {
            "adb_port": self.adb_port,
            "pid": os.getpid(),
            "profile": self.config.profile,
            "home": str(self.home),
            "handsets": [h.info() for h in self.handsets],
            "modem": self.modem_info(),
            "relay": self.relay_info(),
            "consoles": self.consoles_info(),
            "cloud": self.cloud_info(),
        }

    # -- adb --------------------------------------------------------------------------------
    def _ensure_adb_server(self) -> None:
        self.started_adb_server = ensure_adb_server(self.adb_port)

    def _adb_connect(self, h: LabHandset) -> None:
        import adbutils

        client = adbutils.AdbClient(host=LOOPBACK, port=self.adb_port, socket_timeout=self.config.connect_timeout)
        try:
            out = client.connect(h.serial, timeout=self.config.connect_timeout)
        except adbutils.AdbError as exc:
            raise LabError(f"adb connect {h.serial} failed: {exc}") from exc
        if "connected" not in out:
            raise LabError(f"adb connect {h.serial}: {out.strip()}")
        wait_for_device(self.adb_port, h.serial, self.config.connect_timeout)

    ADB_WATCH_RETRY = 0.25  # seconds between tries to reach an adb server that went away

    async def _watch_adb(self) -> None:
        """Re-attach what the adb server forgot. A TCP device lives in the adb server's memory
        only: a restarted server knows none of them (a USB handset, by contrast, is found again
        by the server's own USB scan). The lab holds adb's ``host:track-devices`` stream open
        (SERVICES.TXT in AOSP packages/modules/adb); when it ends the server has gone, and the
        first listing of the server that answers next is checked: every powered handset it does
        not list is connected again. Later listings are left alone, so an ``adb disconnect`` a
        user types sticks, as it does with hardware."""
        while True:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, self.adb_port), 5)
            except (TimeoutError, OSError):
                await asyncio.sleep(self.ADB_WATCH_RETRY)
                continue
            try:
                request = b"host:track-devices"
                writer.write(b"%04x" % len(request) + request)
                await writer.drain()
                if await asyncio.wait_for(reader.readexactly(4), 5) != b"OKAY":
                    raise ValueError("the adb server refused host:track-devices")
                size = int(await asyncio.wait_for(reader.readexactly(4), 5), 16)
                listing = (await asyncio.wait_for(reader.readexactly(size), 5)).decode(errors="replace")
                listed = {line.split("\t")[0] for line in listing.splitlines() if line.strip()}
                forgotten = [h for h in self.handsets if h.powered and h.serial not in listed]
                if forgotten:
                    log.info(
                        "adb server on port %d does not list %s: connecting them again",
                        self.adb_port,
                        ", ".join(h.serial for h in forgotten),
                    )
                    await asyncio.gather(*(asyncio.to_thread(self._adb_reattach, h) for h in forgotten))
                while await reader.read(65536):  # later changes: nothing to do until it ends
                    pass
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                log.debug("adb watch on port %d: %s", self.adb_port, exc)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop already closed under it
                    writer.close()
            await asyncio.sleep(self.ADB_WATCH_RETRY)

    def _adb_reattach(self, h: LabHandset) -> None:
        """``adb connect`` handset ``h`` unless its adb server lists it (in any state: an
        ``offline`` one is being reconnected by the server itself). Never raises: a failure is
        logged, and the handset stays absent, as a real one would."""
        import adbutils

        client = adbutils.AdbClient(host=LOOPBACK, port=self.adb_port, socket_timeout=self.config.connect_timeout)
        try:
            if any(d.serial == h.serial for d in client.list()):
                return
            out = client.connect(h.serial, timeout=self.config.connect_timeout)
            log.info("%s: %s", h.label, out.strip())
        except (adbutils.AdbError, OSError) as exc:
            log.warning("%s: adb connect %s failed: %s", h.label, h.serial, exc)

    def _adb_disconnect(self, h: LabHandset) -> None:
        import adbutils

        client = adbutils.AdbClient(host=LOOPBACK, port=self.adb_port, socket_timeout=5)
        with contextlib.suppress(adbutils.AdbError, OSError):
            client.disconnect(h.serial)

    # -- control endpoint (for `hostctl emulator status|down|reset` from other processes) -----
    async def _start_control(self) -> None:
        self._control = await asyncio.start_server(self._serve_control, LOOPBACK, 0)
        self.control_port = self._control.sockets[0].getsockname()[1]

    async def _serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            try:
                req = json.loads(line)
                if not isinstance(req, dict) or req.get("token") != self.token:
                    raise LabError("bad or missing token")
                reply = {"ok": True, "result": await self.handle_request(req)}
            except (LabError, ValueError, KeyError) as exc:
                reply = {"ok": False, "error": str(exc)}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def handle_request(self, req: dict[str, Any]) -> Any:
        cmd = req.get("cmd")
        if cmd == "status":
            return self.status()
        if cmd == "down":
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self.stop()))
            return {"stopping": True}
        if cmd == "reset":
            h = self.find(str(req["serial"]))
            await h.factory_reset()
            return h.info()
        if cmd == "carrier":  # what the carrier saw (to or from a number, since a time)
            number = req.get("number")
            since = float(req.get("since") or 0)
            return [r.to_json() for r in self.carrier.records(number) if r.submitted_at >= since]
        if cmd == "cloud":  # the Cloud Messaging store, for the no-retention check
            if self.cloud is None:
                raise LabError("this lab runs without the Cloud Messaging service")
            cm = self.cloud.cm
            return {"retained": cm.retained(), "stats": dict(cm.stats), "ttl": cm.ttl}
        if cmd == "power":
            h = self.find(str(req["serial"]))
            await (h.power_on() if req.get("on") else h.power_off())
            self._write_lab_file()
            return h.info()
        if cmd == "capture-start":
            return self.capture_start(
                self.find(str(req["serial"])),
                str(req["path"]),
                linktype=req.get("linktype"),
                max_seconds=req.get("max_seconds"),
                fmt=str(req.get("format") or "pcapng"),
            )
        if cmd == "capture-stop":
            return self.capture_stop(str(req["id"]))
        if cmd == "captures":
            return {
                "live": [c.info() for c in self.captures.values()],
                "finished": list(self.finished_captures.values()),
            }
        raise LabError(f"unknown control command {cmd!r}")

    # -- live captures from the wire taps (capture-start / capture-stop) --------------------------
    def capture_start(
        self, h: LabHandset, path: str, *, linktype: Any = None, max_seconds: Any = None, fmt: str = "pcapng"
    ) -> dict[str, Any]:
        """Write handset ``h``'s traffic from now on to ``path`` (a new file on this host); a
        connection already open starts with a synthetic handshake. ``max_seconds`` (default one
        day) ends it by itself, so a client that dies cannot leave it running."""
        if h.tap is None:
            raise LabError(
                f"{h.label} ({h.serial}) has no wire tap: this lab runs without the Cloud "
                "Messaging service or with the tap off"
            )
        target = Path(path)
        if not target.is_absolute():
            raise LabError(f"capture path must be absolute (the lab writes it): {path!r}")
        if not target.parent.is_dir():
            raise LabError(f"capture path {path!r}: no directory {str(target.parent)!r}")
        lt = _linktype(linktype)
        seconds = 86400.0 if max_seconds is None else float(max_seconds)
        if not 0 < seconds <= 7 * 86400:
            raise LabError(f"max_seconds must be in (0, 604800], not {max_seconds!r}")
        self._capture_ids += 1
        cap_id = f"cap{self._capture_ids}"
        try:
            sink = wiretap.open_file_sink(
                target,
                fmt=fmt,
                linktype=lt,
                names=h.tap.names(),
                name=cap_id,
                comment=f"hostctl lab capture {cap_id} of handset {h.label} "
                f"({h.serial}, synthetic address {h.tap.address})",
                interface_name=f"{h.label}-tap",
            )
        except (OSError, ValueError) as exc:
            raise LabError(f"capture path {path!r}: {exc}") from None
        cap = _Capture(cap_id, h, target, sink, lt, fmt, time.time())
        h.tap.subscribe(sink)
        self.captures[cap_id] = cap
        if self._loop is not None:
            cap.timer = self._loop.call_later(seconds, self._capture_expired, cap_id)
        return cap.info()

    def _capture_expired(self, cap_id: str) -> None:
        if cap_id in self.captures:
            log.info("capture %s reached its time limit", cap_id)
            self.capture_stop(cap_id, reason="expired")

    def capture_stop(self, cap_id: str, *, reason: str = "stopped") -> dict[str, Any]:
        cap = self.captures.pop(cap_id, None)
        if cap is None:
            if cap_id in self.finished_captures:
                return self.finished_captures[cap_id]
            raise LabError(f"no capture {cap_id!r} (live: {', '.join(self.captures) or 'none'})")
        if cap.timer is not None:
            cap.timer.cancel()
        stats = cap.lh.tap.unsubscribe(cap.sink) if cap.lh.tap is not None else cap.sink.stats()
        cap.sink.close()
        result = dict(
            cap.info(),
            **stats,
            stopped_at=time.time(),
            ended=reason,
            bytes=cap.path.stat().st_size if cap.path.exists() else 0,
        )
        self.finished_captures[cap_id] = result
        while len(self.finished_captures) > 100:
            self.finished_captures.pop(next(iter(self.finished_captures)))
        return result

    def _write_lab_file(self) -> None:
        data = self.status()
        data.update(control_port=self.control_port, token=self.token, process_start=process_start(os.getpid()))
        path = lab_file(self.home, self.adb_port)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the token
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
        os.replace(tmp, path)


@dataclass
class _Capture:
    id: str
    lh: LabHandset
    path: Path
    sink: Any
    linktype: int
    format: str
    started_at: float
    timer: asyncio.TimerHandle | None = None

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "serial": self.lh.serial,
            "label": self.lh.label,
            "path": str(self.path),
            "format": self.format,
            "linktype": self.linktype,
            "started_at": self.started_at,
            "address": self.lh.tap.address if self.lh.tap else None,
            "names": self.lh.tap.names() if self.lh.tap else {},
        }


def _linktype(value: Any) -> int:
    """A link type by number or name (ethernet, raw, sll); default Ethernet."""
    if value is None or value == "":
        return wiretap.LINKTYPES["ethernet"]
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        lt = int(value)
        if lt in wiretap.LINKTYPES.values():
            return lt
    elif isinstance(value, str) and value.lower() in wiretap.LINKTYPES:
        return wiretap.LINKTYPES[value.lower()]
    raise LabError(f"link type {value!r}: use one of {', '.join(f'{k} ({v})' for k, v in wiretap.LINKTYPES.items())}")


# --- helpers shared with the CLI ---------------------------------------------------------------


def lab_file(home: Path, adb_port: int) -> Path:
    return lab_dir(home, adb_port) / "lab.json"


def read_lab_file(home: Path, adb_port: int) -> dict[str, Any] | None:
    try:
        return json.loads(lab_file(home, adb_port).read_text())
    except (OSError, ValueError):
        return None


def running_lab(home: Path, adb_port: int) -> dict[str, Any] | None:
    """The lab file of the lab serving this adb port, if that lab's process is alive: the same
    pid *and* the same process (its start time, see :func:`process_start`), so a pid the kernel
    has since given to an unrelated process does not pass for the lab."""
    info = read_lab_file(home, adb_port)
    if not info or not lab_process_alive(info):
        return None
    return info


def stale_lab(home: Path, adb_port: int) -> dict[str, Any] | None:
    """The lab file left on this port by a lab that is gone (killed, or its pid reused)."""
    info = read_lab_file(home, adb_port)
    return info if info and not lab_process_alive(info) else None


def clear_stale_lab(
    home: Path, adb_port: int, extra_files: tuple[str, ...] = ("testbed.yaml",)
) -> dict[str, Any] | None:
    """Remove what a lab that is gone left on this port: its handsets from the adb server (they
    would stay listed ``offline``), its lab file and ``extra_files`` of its folder. Returns the
    stale lab file, or None when there was none."""
    info = stale_lab(home, adb_port)
    if info is None:
        return None
    if adb_server_running(adb_port):
        import adbutils

        client = adbutils.AdbClient(host=LOOPBACK, port=adb_port, socket_timeout=5)
        for h in info.get("handsets") or []:
            with contextlib.suppress(adbutils.AdbError, OSError):
                client.disconnect(str(h.get("serial")))
    for name in extra_files:
        (lab_dir(home, adb_port) / name).unlink(missing_ok=True)
    lab_file(home, adb_port).unlink(missing_ok=True)
    return info


def lab_process_alive(info: dict[str, Any]) -> bool:
    """Whether the process a lab file names is still that lab. A pid alone is not an identity
    (pids are reused); the pid plus the process's start time is, on Linux (``/proc/PID/stat``
    field 22, proc(5)). A lab file without a start time (an older lab) is checked by pid only."""
    try:
        pid = int(info.get("pid", -1))
    except (TypeError, ValueError):
        return False
    if not _pid_alive(pid):
        return False
    if _process_state(pid) == "Z":  # it has exited; its parent has not reaped it yet
        return False
    recorded = info.get("process_start")
    if recorded is None:
        return True
    now = process_start(pid)
    return now is None or str(now) == str(recorded)


def _process_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :][:1] or None


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/PID/stat`` field
    22, ``starttime`` in proc(5)); None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: the fields after it follow the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # fields[0] is field 3 (state), so field 22 is fields[19]
    except (IndexError, ValueError):
        return None


class ControlError(LabError):
    """A control request that failed; ``reason``: "timeout", "unreachable", "malformed" or
    "refused" (what a caller maps to its own exit codes)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def control_request(info: dict[str, Any], req: dict[str, Any], timeout: float = 30.0) -> Any:
    """One request on a running lab's control channel (``info`` is its lab file); ControlError
    (a LabError) when the lab cannot be reached, does not answer in time, or refuses."""
    req = dict(req, token=info.get("token"))
    try:
        with socket.create_connection((LOOPBACK, int(info["control_port"])), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(json.dumps(req).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except TimeoutError:
        raise ControlError(
            f"the lab (pid {info.get('pid')}) did not answer within {timeout:.0f} s", "timeout"
        ) from None
    except (OSError, KeyError, ValueError) as exc:
        raise ControlError(f"cannot reach the lab's control port: {exc}", "unreachable") from None
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError(
            "the lab closed the control connection without an answer" if not data else "the lab sent a malformed reply",
            "malformed",
        ) from None
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "the lab refused the request"), "refused")
    return reply["result"]


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def adb_binary() -> str:
    import adbutils

    return adbutils.adb_path()


def adb_server_running(port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"000chost:version")
            return s.recv(4) == b"OKAY"
    except OSError:
        return False


def ensure_adb_server(port: int, timeout: float = 15.0) -> bool:
    """Start the adb server (the adbutils wheel's adb) on ``port`` unless one answers there.
    Returns True when this call started it."""
    import subprocess

    if adb_server_running(port):
        return False
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(port))
    try:
        proc = subprocess.run(
            [adb_binary(), "-P", str(port), "start-server"],
            env=env,
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"adb start-server on port {port} did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0 or not adb_server_running(port):
        raise LabError(f"could not start an adb server on port {port}: {proc.stderr.decode(errors='replace').strip()}")
    return True


def kill_adb_server(port: int, timeout: float = 10.0) -> None:
    import subprocess

    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(port))
    subprocess.run(
        [adb_binary(), "-P", str(port), "kill-server"],
        env=env,
        capture_output=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def wait_for_device(adb_port: int, serial: str, timeout: float) -> None:
    """Poll the adb server until ``serial`` is in state ``device``."""
    import adbutils

    client = adbutils.AdbClient(host=LOOPBACK, port=adb_port, socket_timeout=timeout)
    deadline = time.monotonic() + timeout
    state = "absent"
    while time.monotonic() < deadline:
        try:
            states = {d.serial: d.state for d in client.list()}
        except (adbutils.AdbError, OSError) as exc:
            raise LabError(f"adb server on port {adb_port} stopped answering: {exc}") from exc
        state = states.get(serial, "absent")
        if state == "device":
            return
        time.sleep(0.02)
    raise LabError(f"{serial} did not come up as 'device' within {timeout:.0f} s (last state: {state})")


class LabThread:
    """A lab on its own event loop in a background thread: the Python API's way to run one.

    >>> with LabThread(LabConfig(adb_port=15037, handsets=2)) as lt:
    ...     serials = [h.serial for h in lt.lab.handsets]
    """

    def __init__(self, config: LabConfig) -> None:
        import threading

        self.config = config
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="hostctl-lab", daemon=True)
        self.lab = Lab(config)

    def call(self, coro: Any, timeout: float = 120.0) -> Any:
        """Run a coroutine on the lab's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> LabThread:
        self._thread.start()
        try:
            self.call(self.lab.start())
        except BaseException:
            self._shutdown()
            raise
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self.lab.stop())
        self._shutdown()

    def _shutdown(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        with contextlib.suppress(Exception):
            self.loop.close()

    def __enter__(self) -> LabThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
