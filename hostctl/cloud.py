"""Cloud Messaging on a handset, from the host: read the state, turn it on or off the way a user does.

The shell cannot start ``MxActivateService`` (it needs ``com.xiaomi.permission.CLOUD_MANAGER``), so
the switch is turned through the UI: open Messaging > Settings, find the SIM's Mi Message row in
``uiautomator dump`` (by its title in any locale MIUI ships: :mod:`hostctl.miui_ui`), tap the row,
accept the dialog MIUI shows before a SIM is turned on (the activation consent, which sends a
chargeable SMS, or for an activated SIM the data notice; only because the user asked to turn it
on; its text is kept as evidence), then verify by dumping again and by re-reading
``Settings.Secure cloud_messaging_on``. MIUI refuses input injection unless "USB debugging (Security
settings)" is on; that refusal becomes :class:`CloudMessagingError` with what to enable. Nothing
here knows whether the handset is emulated.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .device import INJECTION_HINT, UI_DUMP_PATH, Handset, dump_ui, injection_refused
from .errors import CommandError, DeviceError
from .miui_ui import MxSwitch, SwitchNotFound, parse_compose, parse_consent, parse_switches

__all__ = ["CloudMessagingError", "CmState", "MMS_SETTINGS", "cm_set", "cm_status", "parse_switches"]

MMS_SETTINGS = "com.android.mms/com.android.mms.ui.MessagingPreferenceActivity"
DUMP_PATH = UI_DUMP_PATH


class CloudMessagingError(DeviceError):
    """The switch could not be read or turned (the message says what to do)."""


@dataclass
class CmState:
    serial: str
    enabled: bool | None
    sources: dict[str, Any] = field(default_factory=dict)
    sims: list[dict[str, Any]] = field(default_factory=list)
    changed: bool = False
    consent: list[dict[str, Any]] = field(default_factory=list)  # activation dialogs shown and accepted

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _setting(h: Handset, timeout: float | None) -> str | None:
    out = h.shell("settings get secure cloud_messaging_on", timeout=timeout).stdout.strip()
    return None if out in ("", "null") else out


def cm_status(h: Handset, *, ui: bool = False, timeout: float | None = None) -> CmState:
    """The setting, and with ``ui`` the per-SIM switches as Messaging > Settings shows them."""
    setting = _setting(h, timeout)
    state = CmState(
        h.serial, None if setting is None else setting == "1", {"setting": {"secure/cloud_messaging_on": setting}}
    )
    if ui:
        notes: list[str] = []
        switches = _switches(h, timeout, notes)
        if notes:
            state.sources["notes"] = notes
        state.sims = [{"sim": s.sim, "enabled": s.checked, "title": s.title} for s in switches]
        state.sources["ui"] = {"activity": MMS_SETTINGS, "switches": len(switches)}
    return state


def _dump(h: Handset, timeout: float | None) -> str:
    try:
        return dump_ui(h, timeout=timeout)
    except CommandError as exc:
        raise CloudMessagingError(str(exc), serial=h.serial, command=exc.command, output=exc.output) from exc


def _open_settings(h: Handset, timeout: float | None) -> None:
    res = h.shell(f"am start -n {MMS_SETTINGS}", timeout=timeout)
    if "Error" in res.output:
        raise CloudMessagingError(
            f"{h.serial}: cannot open Messaging settings: {res.output.strip()[:200]}",
            serial=h.serial,
            command=res.command,
            output=res.output,
        )


def _read_switches(h: Handset, xml_text: str) -> list[MxSwitch]:
    try:
        return parse_switches(xml_text)
    except SwitchNotFound as exc:
        raise CloudMessagingError(
            f"{h.serial}: {exc}", serial=h.serial, command="uiautomator dump", output=xml_text[-2000:]
        ) from None


def _switches(h: Handset, timeout: float | None, notes: list[str] | None = None) -> list[MxSwitch]:
    """Open Messaging > Settings and read its switches. A consent dialog left on the screen (a
    ``cm on`` cut short, a user who walked away: the activity is singleTop, so opening it again
    brings the dialog back too) is cancelled first: cancel leaves the SIM as it was."""
    _open_settings(h, timeout)
    xml_text = _dump(h, timeout)
    left_over = parse_consent(xml_text)
    if left_over is not None:
        if left_over.cancel is not None:
            _tap(h, left_over.cancel, timeout)
        else:
            h.shell("input keyevent 4", timeout=timeout)
        if notes is not None:
            notes.append(f"cancelled a consent dialog left on screen: {left_over.title!r}")
        deadline = time.monotonic() + (timeout or 20.0)
        while parse_consent(xml_text := _dump(h, timeout)) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
    return _read_switches(h, xml_text)


def _tap(h: Handset, xy: tuple[int, int], timeout: float | None) -> None:
    res = h.shell(f"input tap {xy[0]} {xy[1]}", timeout=timeout)
    if injection_refused(res.output):
        raise CloudMessagingError(
            f"{h.serial}: {INJECTION_HINT}",
            serial=h.serial,
            command=res.command,
            output=res.output,
            exit_code=res.exit_code,
        )


def cm_set_frida(h: Handset, on: bool, *, sim: int | None = None, timeout: float = 20.0) -> CmState:
    """Real handsets with frida-server: start MxActivateService with ENABLE_MX/DISABLE_MX from
    inside com.android.mms (where the permission holds) and wait for its ENBALE_RESULT."""
    from .frida_identity import FridaIdentityError, call_agent

    if sim is not None:
        sims = [sim]
    else:  # every SIM slot the handset has
        from .identity import _slot_count

        sims = list(range(1, _slot_count(h.getprops(timeout=timeout)) + 1))
    results = []
    for s in sims:
        try:
            r = call_agent(
                h, "com.android.mms", "set_cloud_messaging", on, s - 1, int(timeout * 1000), timeout=timeout + 5
            )
        except FridaIdentityError as exc:
            raise CloudMessagingError(f"{h.serial}: {exc}", serial=h.serial) from exc
        if not r.get("java"):
            raise CloudMessagingError(
                f"{h.serial}: com.android.mms has no Java runtime here ({r.get('error')}); use the UI path (--via ui)",
                serial=h.serial,
            )
        if r.get("error") or not (r.get("result") or {}).get("success"):
            raise CloudMessagingError(
                f"{h.serial}: MxActivateService did not confirm: {r.get('error') or r.get('result')}", serial=h.serial
            )
        results.append({"sim": s, "enabled": on})
    setting = _setting(h, timeout)
    return CmState(
        h.serial,
        setting == "1",
        {"setting": {"secure/cloud_messaging_on": setting}, "frida": {"process": "com.android.mms"}},
        results,
        True,
    )


def cm_set(h: Handset, on: bool, *, sim: int | None = None, timeout: float = 20.0) -> CmState:
    """Turn Cloud Messaging on or off (for ``sim``, 1-based, or every SIM) through the UI, and
    verify it. Idempotent: a switch already in the wanted state is not touched. Turning on, MIUI
    asks first (the activation consent, which sends a chargeable SMS, or for an activated SIM the
    data notice); the user asked for it to be on, so it is accepted, once per SIM, and its text is
    returned in ``CmState.consent``. After each tap the screen is polled until the dialog or the
    flipped switch is drawn (a real handset draws them some time after the tap)."""
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    notes: list[str] = []
    switches = _switches(h, timeout, notes)
    targets = [s.sim for s in switches if sim is None or s.sim == sim]
    if not targets:
        raise CloudMessagingError(
            f"{h.serial}: no Cloud Messaging switch for SIM {sim} "
            f"(found SIMs {[s.sim for s in switches]}: "
            f"{', '.join(repr(s.title) for s in switches)})",
            serial=h.serial,
        )
    changed, consent = False, []
    for target in targets:
        now = (
            next(s for s in _read_switches(h, _dump(h, left())) if s.sim == target)
            if changed
            else next(s for s in switches if s.sim == target)
        )
        if now.checked == on:
            continue
        _tap(h, now.center, left())
        changed = True
        # The dialog (or the flipped switch) shows up when the app has drawn it: poll for either.
        # A dialog still on screen after its button was tapped is given until the deadline to go.
        accepted = False
        while True:
            xml_text = _dump(h, left())
            dialog = parse_consent(xml_text)
            if dialog is not None:
                if not on:
                    raise CloudMessagingError(
                        f"{h.serial}: a consent dialog appeared while turning Cloud Messaging off: {dialog.title!r}",
                        serial=h.serial,
                    )
                if not accepted:
                    consent.append(
                        {
                            "sim": target,
                            "kind": dialog.kind,
                            "title": dialog.title,
                            "message": dialog.message,
                            "accepted": dialog.accept_text,
                        }
                    )
                    _tap(h, dialog.accept, left())
                    accepted = True
            else:
                try:
                    flipped = any(s.sim == target and s.checked == on for s in parse_switches(xml_text))
                except SwitchNotFound:
                    flipped = False  # a screen in between (the dialog going, the list redrawn)
                if flipped:
                    break
            if time.monotonic() > deadline:
                what = "the consent dialog stayed on screen" if dialog is not None else "the switch did not flip"
                raise CloudMessagingError(
                    f"{h.serial}: SIM {target}: {what} within {timeout:g} s", serial=h.serial, output=xml_text[-2000:]
                )
            time.sleep(0.2)
    while True:  # verify: the switches as drawn, and the setting the app writes
        xml_text = _dump(h, left())
        if parse_consent(xml_text) is not None:
            raise CloudMessagingError(f"{h.serial}: a consent dialog is shown again", serial=h.serial)
        now_sw = _read_switches(h, xml_text)
        drawn = {s.sim: s.checked for s in now_sw}
        setting = _setting(h, left())
        if all(drawn.get(t) == on for t in targets) and (setting == "1") == (on or any(drawn.values())):
            break
        if time.monotonic() > deadline:
            raise CloudMessagingError(
                f"{h.serial}: the switch did not turn {'on' if on else 'off'} "
                f"within {timeout:g} s (switches {drawn}, setting {setting})",
                serial=h.serial,
            )
        time.sleep(0.2)
    sources: dict[str, Any] = {
        "setting": {"secure/cloud_messaging_on": setting},
        "ui": {"activity": MMS_SETTINGS, "switches": len(drawn), "consent_shown": bool(consent)},
    }
    if notes:
        sources["notes"] = notes
    return CmState(
        h.serial,
        setting == "1",
        sources,
        [{"sim": s.sim, "enabled": s.checked, "title": s.title} for s in now_sw],
        changed,
        consent,
    )


# --- sending as a user does ------------------------------------------------------------------------


@dataclass
class SendOutcome:
    serial: str
    to: str
    route: str | None  # "ip" | "sms" | "failed" | None (did not settle)
    fallback: bool  # the row went through MIUI's resend state (type 4, mx_status 1)
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _rows_after(h: Handset, after: int, timeout: float | None) -> list[Any]:
    from .messages import read_messages

    return read_messages(h, after=after, timeout=timeout)


def send_message(
    h: Handset,
    to: str,
    text: str,
    *,
    receiver: Handset | None = None,
    carrier_view: Any = None,
    modem: Any = None,
    timeout: float = 30.0,
) -> SendOutcome:
    """Trigger a send the way a user does (SENDTO intent, then Send on the compose screen), wait
    until the sender's row settles, and report the route with the evidence of both ends. A
    number or text that cannot be sent raises OutgoingError (a ValueError) before the handset
    is touched (``hostctl.sms.outgoing``)."""
    from .messages import read_messages
    from .sms.outgoing import check_number, check_text

    to = check_number(to)  # separators dropped: it goes into the smsto: URI unquoted
    check_text(text)
    deadline = time.monotonic() + timeout
    before = max((m.id for m in read_messages(h, limit=1, timeout=timeout)), default=0)
    r_before = (
        max((m.id for m in read_messages(receiver, limit=1, timeout=timeout)), default=0) if receiver is not None else 0
    )
    res = h.shell(
        f"am start -a android.intent.action.SENDTO -d smsto:{to} --es sms_body {_shell_quote(text)}", timeout=timeout
    )
    if "Error" in res.output:
        raise CloudMessagingError(
            f"{h.serial}: cannot open the compose screen: {res.output.strip()[:200]}",
            serial=h.serial,
            command=res.command,
            output=res.output,
        )
    button = parse_compose(_dump(h, timeout)).send_button  # com.android.mms:id/send_button
    if button is None:
        raise CloudMessagingError(f"{h.serial}: no Send button on the compose screen", serial=h.serial)
    _tap(h, button, timeout)
    seen: list[tuple[int, int]] = []
    row = None
    while time.monotonic() < deadline:
        mine = [m for m in _rows_after(h, before, timeout) if m.body == text]
        if mine:
            row = mine[-1]
            state = (row.type, row.mx_status)
            if not seen or seen[-1] != state:
                seen.append(state)
            if row.type == 5 or (row.type == 2 and row.mx_status in (0, 17)):
                break
        time.sleep(0.05)
    if row is None:
        route = None
    elif row.type == 5:
        route = "failed"  # the radio or the network refused it (e.g. an unallocated number)
    else:
        route = "ip" if row.mx_status in (16, 17) else "sms" if row.mx_status == 0 else None

    evidence: dict[str, Any] = {"sender": None if row is None else dict(row.to_json(), states_seen=seen)}
    if receiver is not None:
        got = None
        while time.monotonic() < deadline and got is None:
            got = next(
                (m for m in _rows_after(receiver, r_before, timeout) if m.body == text and m.direction == "in"), None
            )
            if got is None:
                time.sleep(0.05)
        evidence["receiver"] = None if got is None else got.to_json()
    if modem is not None:  # the lab's GSM modem as the peer: its own receipt of the SMS
        evidence["modem"] = _modem_receipt(modem, text, max(1.0, deadline - time.monotonic()))
    if carrier_view is not None:  # the emulated network's records (a real network shows none)
        evidence["carrier"] = _segments_of(carrier_view(), text, h_number=None)
    # the resend state if it was seen, or the mark it leaves: an SMS row that kept its mx_id
    fallback = (4, 1) in seen or (row is not None and row.route == "sms-fallback")
    return SendOutcome(h.serial, to, route, fallback, evidence)


def _segments_of(records: list[dict[str, Any]], text: str, h_number: str | None) -> list[dict[str, Any]]:
    """The carrier records that are this text: a single segment equal to it, or the parts of one
    concatenated message that join to it."""
    out = [r for r in records if r.get("concat") is None and r.get("text") == text]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("concat"):
            groups.setdefault((r["sender"], r["concat"][0]), []).append(r)
    for parts in groups.values():
        parts.sort(key=lambda r: r["concat"][2])
        if "".join(p["text"] for p in parts) == text:
            out += parts
    return out


def _modem_receipt(modem: Any, text: str, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for sms in modem.inbox():
            if sms.text == text:
                return {"sender": sms.sender, "text": sms.text, "parts": len(sms.parts)}
        modem.poll(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
    return None


@dataclass
class Presence:
    serial: str
    number: str
    online: bool | None  # None: the screen showed neither hint in time
    shown: str  # the editor hint as shown ("Mi Message", "短信", ...)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def presence(h: Handset, number: str, *, timeout: float = 15.0, settle: float = 3.0) -> Presence:
    """Open the conversation with ``number`` and read what the app shows: MIUI has no presence
    view; the compose editor's hint reads ``msg_type_hint_mx`` ("Mi Message", "免费网络短信") when
    the recipient is reachable over Mi Message and ``msg_type_hint_sms`` ("Text message", "短信")
    otherwise (or their ``_omit`` short forms in MIUI's large-text mode). The app asks the server
    when the conversation opens and sets the hint when the answer comes, so an SMS hint counts as
    offline only once it has stood for ``settle`` seconds (3 by default: a guess, no published
    timing; a Mi Message hint is taken at once). Leaves the conversation with BACK."""
    if not settle >= 0:
        raise ValueError(f"settle ({settle}) must be >= 0 seconds")  # (a longer one is cut at timeout)
    deadline = time.monotonic() + timeout
    res = h.shell(f"am start -a android.intent.action.SENDTO -d smsto:{number}", timeout=timeout)
    if "Error" in res.output:
        raise CloudMessagingError(
            f"{h.serial}: cannot open the conversation: {res.output.strip()[:200]}",
            serial=h.serial,
            command=res.command,
            output=res.output,
        )
    opened = time.monotonic()
    online, shown = None, ""
    try:
        while time.monotonic() < deadline:
            hint = parse_compose(_dump(h, max(1.0, deadline - time.monotonic())))
            online, shown = hint.online, hint.shown
            if online or (online is False and time.monotonic() - opened >= min(settle, timeout)):
                break
            time.sleep(0.1)
    finally:
        h.shell("input keyevent 4", timeout=timeout)
    return Presence(h.serial, number, online, shown)
