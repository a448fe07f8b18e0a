"""The screens that hold MIUI's Cloud Messaging switch, and what turning it does.

Two paths lead to the switch:

- Messaging > Settings (``MMS_SETTINGS``, ``com.android.mms/.ui.MessagingPreferenceActivity``), drawn
  from the decompiled MIUI Mms resources (``res/xml/preferences.xml``, ``res/values*/strings.xml``,
  AOSP's preference row layout): the ``mx_msg`` category, one ``CheckBoxPreference`` row per SIM
  (``pref_key_enable_mx_switch`` on a single-SIM phone, ``..._mx1_`` / ``..._mx2_switch`` on a
  dual-SIM one), each a clickable row with ``android:id/title``, ``android:id/summary`` and an
  untitled, non-clickable ``android:id/checkbox``; the strings follow the handset's locale (its
  props). Enabling a SIM first shows a dialog (cancel leaves it off): the activation consent for
  a SIM never activated, the data notice for one that was (``com/xiaomi/mms/c/f.smali``).
- Settings > Mi Cloud > Cloud Messaging (``SETTINGS`` -> ``MICLOUD`` -> ``MICLOUD_CM``): unverified
  (Xiaomi's 2014 announcement names it; no screen of it is published): it shows the same rows.

Turning a row does what the Messaging app does: it writes ``Settings.Secure cloud_messaging_on`` (1
while any SIM is on), records the SIM's ``enabled`` in the app's ``pref_mx`` SharedPreferences
(``pref_mx_account_info`` JSON, ``pref_key_enable_mx``), and starts ``MxActivateService`` with
``ENABLE_MX``/``DISABLE_MX`` (extras ``sim_index``, ``extra_manually``) from inside the app, where
the permission holds. The service (the app process) does activation and the channel, and answers
with the ``ENBALE_RESULT`` (sic) broadcast. The compose screen shows no presence view: its editor
hint reads ``msg_type_hint_mx`` when the recipient is reachable over Mi Message, else
``msg_type_hint_sms``; the send button is ``com.android.mms:id/send_button`` (``send_sms``).

Also here: the Mi Cloud screen's account row ("Sign in", ``com.miui.cloudservice:id/sign_in``:
a tap signs in with the lab's test Xiaomi account, kept as an account of type ``com.xiaomi``
that ``dumpsys account`` lists, and tells the lab with ``MICLOUD_LOGIN``), and the in-call
screen an ``android.intent.action.CALL`` to ``tel:`` opens (its "End call" button, like
KEYCODE_ENDCALL, hangs up).
"""

from __future__ import annotations

import hashlib
import json
import re
from html import escape, unescape
from typing import TYPE_CHECKING

from ..mms_strings import locale_of_props, strings_for_locale
from .handset import SCREEN_H, SCREEN_W, Intent, View

if TYPE_CHECKING:
    from .handset import VirtualHandset

__all__ = [
    "IN_CALL",
    "MICLOUD",
    "MICLOUD_CM",
    "MICLOUD_LOGIN",
    "MMS_SETTINGS",
    "SETTINGS",
    "XIAOMI_ACCOUNT_TYPE",
    "install",
    "micloud_account",
    "pref_mx",
    "set_cloud_messaging",
]

SETTINGS = "com.android.settings/com.android.settings.MainSettings"
MICLOUD = "com.miui.cloudservice/com.miui.cloudservice.ui.MiCloudSettingsActivity"
MICLOUD_CM = "com.miui.cloudservice/com.miui.cloudservice.ui.MiCloudMessagingActivity"
MMS_SETTINGS = "com.android.mms/com.android.mms.ui.MessagingPreferenceActivity"
COMPOSE = "com.android.mms/com.android.mms.ui.ComposeMessageActivity"
SEND_COMMAND = "hostctl.emulator.MMS_SEND"  # what the Send button asks of the app process
PRESENCE_COMMAND = "hostctl.emulator.MMS_PRESENCE"  # what opening a conversation asks of it
MX_SERVICE = "com.android.mms/com.xiaomi.mms.transaction.MxActivateService"
ENABLE_MX = "com.xiaomi.mms.action.ENABLE_MX"
DISABLE_MX = "com.xiaomi.mms.action.DISABLE_MX"
PREFS = "/data/data/com.android.mms/shared_prefs/pref_mx.xml"
ROW_H = 112
MICLOUD_LOGIN = "hostctl.emulator.MICLOUD_LOGIN"  # what signing in tells the lab
XIAOMI_ACCOUNT_TYPE = "com.xiaomi"
ACCOUNT_PREFS = "/data/data/com.xiaomi.account/shared_prefs/passport.xml"
CALL_ACTION = "android.intent.action.CALL"
IN_CALL = "com.android.phone/com.android.phone.InCallScreen"


def micloud_account(handset: VirtualHandset) -> str | None:
    """The Xiaomi account the handset is signed in with (a factory reset wipes it), or None."""
    try:
        text = handset.fs.host_path(ACCOUNT_PREFS).read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.search(r'<string name="userId">(\d+)</string>', text)
    return m.group(1) if m else None


def lab_account(handset: VirtualHandset) -> str:
    """The lab's test Xiaomi account for this handset (a numeric Mi account id, as MIUI's are)."""
    digest = hashlib.sha256(f"micloud:{handset.label}".encode()).hexdigest()
    return str(1_000_000_000 + int(digest[:8], 16) % 900_000_000)


def sign_in(handset: VirtualHandset, account: str | None = None) -> str:
    """Sign in to Mi Cloud (the account is kept by com.xiaomi.account) and tell the lab."""
    account = account or lab_account(handset)
    path = handset.fs.host_path(ACCOUNT_PREFS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "<?xml version='1.0' encoding='utf-8' standalone='yes' ?>\n<map>\n"
        f'    <string name="userId">{account}</string>\n</map>\n',
        encoding="utf-8",
    )
    handset.log("I", "MiCloudService", f"signed in to Mi Cloud as {account}")
    handset._deliver(Intent(kind="app", action=MICLOUD_LOGIN, component=MICLOUD, extras={"account": account}))
    handset.refresh_screen()
    return account


def pref_mx(handset: VirtualHandset) -> dict:
    """The app's pref_mx SharedPreferences: {"pref_mx_account_info": {...}, "pref_key_enable_mx": bool}."""
    try:
        text = handset.fs.host_path(PREFS).read_text(encoding="utf-8")
    except OSError:
        return {"pref_mx_account_info": {"logins": []}, "pref_key_enable_mx": False}
    info = re.search(r'<string name="pref_mx_account_info">(.*?)</string>', text, re.S)
    enabled = re.search(r'<boolean name="pref_key_enable_mx" value="(true|false)"', text)
    return {
        "pref_mx_account_info": json.loads(unescape(info.group(1))) if info else {"logins": []},
        "pref_key_enable_mx": bool(enabled and enabled.group(1) == "true"),
    }


def _write_prefs(handset: VirtualHandset, prefs: dict) -> None:
    info = escape(json.dumps(prefs["pref_mx_account_info"], separators=(",", ":")))
    path = handset.fs.host_path(PREFS)
    path.parent.mkdir(parents=True, exist_ok=True)
    enabled = str(prefs["pref_key_enable_mx"]).lower()
    path.write_text(
        "<?xml version='1.0' encoding='utf-8' standalone='yes' ?>\n<map>\n"
        f'    <string name="pref_mx_account_info">{info}</string>\n'
        f'    <boolean name="pref_key_enable_mx" value="{enabled}" />\n'
        "</map>\n",
        encoding="utf-8",
    )


def _find_login(logins: list, sim: int) -> dict | None:
    return next((e for e in logins if e.get("sim_id") == sim), None)


def _login(prefs: dict, sim: int) -> dict:
    """The SIM's entry in ``pref_mx_account_info.logins``, added (not yet activated) if absent."""
    logins = prefs["pref_mx_account_info"].setdefault("logins", [])
    entry = _find_login(logins, sim)
    if entry is None:
        entry = {"mid": "", "sim_id": sim, "st": "", "sec": "", "enabled": False}
        logins.append(entry)
    return entry


def record_login(handset: VirtualHandset, sim: int, *, mid: str, st: str, sec: str, enabled: bool = True) -> None:
    """What MxActivateService keeps after an activation: the SIM's login in ``pref_mx``."""
    prefs = pref_mx(handset)
    _login(prefs, sim).update({"mid": mid, "st": st, "sec": sec, "enabled": enabled})
    _write_prefs(handset, prefs)


def sim_enabled(handset: VirtualHandset, sim: int) -> bool:
    return sim_enabled_in(pref_mx(handset)["pref_mx_account_info"].get("logins", []), sim, handset)


def set_cloud_messaging(handset: VirtualHandset, on: bool, sim: int = 0, *, manually: bool = True) -> None:
    """What flipping the switch for ``sim`` does inside com.android.mms."""
    prefs = pref_mx(handset)
    _login(prefs, sim)["enabled"] = on
    logins = prefs["pref_mx_account_info"]["logins"]
    sims = len(handset.identity.sims)
    any_on = any(sim_enabled_in(logins, i, handset) for i in range(sims))
    prefs["pref_key_enable_mx"] = any_on
    _write_prefs(handset, prefs)
    handset.settings_put("secure", "cloud_messaging_on", "1" if any_on else "0")
    handset.log("I", "MxActivateService", f"{'enable' if on else 'disable'} mx for sim {sim}")
    handset._deliver(
        Intent(
            kind="service",
            action=ENABLE_MX if on else DISABLE_MX,
            component=MX_SERVICE,
            extras={"sim_index": sim, "extra_manually": manually},
        )
    )
    handset.refresh_screen()


def sim_enabled_in(logins: list, sim: int, handset: VirtualHandset) -> bool:
    """A SIM's switch: its pref_mx entry, or (never switched by hand) the build's default."""
    entry = _find_login(logins, sim)
    return bool(entry["enabled"]) if entry is not None else handset.profile.cloud_messaging_default


def _title(pkg: str, text: str) -> View:
    # the screen's title bar (no preference id: it is not a row)
    return View(cls="android.widget.TextView", text=text, package=pkg, bounds=(0, 50, SCREEN_W, 160))


def _row(
    pkg: str, i: int, text: str, *, resource_id: str, on_click=None, checkable: bool = False, checked: bool = False
) -> View:
    top = 180 + i * ROW_H
    return View(
        cls="android.widget.CheckBox" if checkable else "android.widget.TextView",
        text=text,
        package=pkg,
        resource_id=resource_id,
        clickable=True,
        focusable=True,
        checkable=checkable,
        checked=checked,
        bounds=(0, top, SCREEN_W, top + ROW_H - 2),
        on_click=on_click,
    )


def _opener(component: str):
    return lambda h, v: h.start_activity(Intent(kind="activity", component=component))


def ui_strings(h: VirtualHandset) -> dict[str, str]:
    """The app's strings in the handset's locale (its props decide; see hostctl/mms_strings.py)."""
    return strings_for_locale(locale_of_props(h.props()))


def activated(h: VirtualHandset, sim: int) -> bool:
    """The SIM went through MxActivateService's activation (its pref_mx login has a mid): the
    app's ``activate_status`` 3. Until then isMxEnabled is false and enabling asks for consent."""
    entry = _find_login(pref_mx(h)["pref_mx_account_info"].get("logins", []), sim)
    return bool(entry and entry.get("mid"))


def _pref_row(pkg: str, top: int, title: str, summary: str, *, checked: bool | None, on_click) -> View:
    """One row as AOSP's preference.xml lays it out: a clickable LinearLayout holding a
    RelativeLayout with android:id/title and android:id/summary, and the widget frame; for a
    CheckBoxPreference the frame holds preference_widget_checkbox.xml's CheckBox
    (android:id/checkbox, focusable and clickable false: the row takes the tap)."""
    bottom = top + ROW_H - 2
    text = View(
        cls="android.widget.RelativeLayout",
        package=pkg,
        bounds=(32, top + 12, 560, bottom - 12),
        children=[
            View(
                cls="android.widget.TextView",
                text=title,
                package=pkg,
                resource_id="android:id/title",
                bounds=(32, top + 12, 560, top + 56),
            ),
            View(
                cls="android.widget.TextView",
                text=summary,
                package=pkg,
                resource_id="android:id/summary",
                bounds=(32, top + 58, 560, bottom - 12),
            ),
        ],
    )
    children = [text]
    if checked is not None:
        children.append(
            View(
                cls="android.widget.LinearLayout",
                package=pkg,
                resource_id="android:id/widget_frame",
                bounds=(600, top, SCREEN_W - 16, bottom),
                children=[
                    View(
                        cls="android.widget.CheckBox",
                        package=pkg,
                        resource_id="android:id/checkbox",
                        checkable=True,
                        checked=checked,
                        bounds=(616, top + 24, 688, bottom - 24),
                        on_click=on_click,
                    )
                ],
            )
        )  # a tap there still reaches the row
    return View(
        cls="android.widget.LinearLayout",
        package=pkg,
        clickable=True,
        focusable=True,
        bounds=(0, top, SCREEN_W, bottom),
        children=children,
        on_click=on_click,
    )


def _toggle(h: VirtualHandset, sim: int, pkg: str = "com.android.mms") -> None:
    """A tap on a SIM's row, as MessagingPreferenceActivity handles it (``a(CheckBoxPreference,
    int)`` in its smali): on -> off turns it off at once; off -> on always asks first
    (``bl.a(Activity, activate_status, slot, checked, ...)``): the activation consent when the SIM
    was never activated (activate_status != 3), the data notice when it was."""
    if sim_enabled(h, sim):
        set_cloud_messaging(h, False, sim)
    else:
        h.mms_dialog = {"sim": sim, "activation": not activated(h, sim), "screen": pkg}
        h.refresh_screen()


def _consent(h: VirtualHandset, pkg: str, sim: int, activation: bool = True) -> View:
    """The dialog MessagingPreferenceActivity shows before it turns a SIM on
    (``com/xiaomi/mms/c/f.smali``, a ``miui.app.AlertDialog``): for a SIM never activated, title
    ``dialog_title_mx_rcs`` and message ``dialog_message_mx`` with the two agreements (mode 0);
    for an activated SIM, title ``networking_allow_title`` and message
    ``mx_activate_network_allow_notice`` (mode 4). Positive ``mx_btn_enable_now``, negative
    ``android.R.string.cancel``. MIUI's AlertDialog ids: ``miui:id/alertTitle``,
    ``miui:id/message`` (``bl.smali`` reads ``miui.R.id.message``), buttons ``android:id/button1``
    and ``button2`` (as real MIUI dialog dumps show)."""
    t = ui_strings(h)
    if activation:
        title = t["dialog_title_mx_rcs"]
        message = t["dialog_message_mx"].replace("%1$s", t["user_agreement"]).replace("%2$s", t["privacy_policy"])
    else:
        title, message = t["networking_allow_title"], t["mx_activate_network_allow_notice"]

    def accept(hh: VirtualHandset, _v: View) -> None:
        hh.mms_dialog = None
        hh.log(
            "I",
            "MessagingPreferenceActivity",
            f"user accepted the Mi Message {'activation' if activation else 'data notice'} for sim {sim}",
        )
        set_cloud_messaging(hh, True, sim)

    def cancel(hh: VirtualHandset, _v: View) -> None:
        hh.mms_dialog = None
        hh.refresh_screen()

    return View(
        package=pkg,
        children=[
            View(
                cls="android.widget.LinearLayout",
                package=pkg,
                resource_id="miui:id/parentPanel",
                bounds=(40, 360, SCREEN_W - 40, 1000),
                children=[
                    View(
                        cls="android.widget.TextView",
                        text=title,
                        package=pkg,
                        resource_id="miui:id/alertTitle",
                        bounds=(80, 390, SCREEN_W - 80, 450),
                    ),
                    View(
                        cls="android.widget.TextView",
                        text=message,
                        package=pkg,
                        resource_id="miui:id/message",
                        bounds=(80, 470, SCREEN_W - 80, 860),
                    ),
                    View(
                        cls="android.widget.Button",
                        text=t["android_cancel"],
                        package=pkg,
                        clickable=True,
                        focusable=True,
                        resource_id="android:id/button2",
                        bounds=(80, 880, 350, 970),
                        on_click=cancel,
                    ),
                    View(
                        cls="android.widget.Button",
                        text=t["mx_btn_enable_now"],
                        package=pkg,
                        clickable=True,
                        focusable=True,
                        resource_id="android:id/button1",
                        bounds=(370, 880, SCREEN_W - 80, 970),
                        on_click=accept,
                    ),
                ],
            )
        ],
    )


def _switches(h: VirtualHandset, pkg: str) -> View:
    """Messaging > Settings as MIUI Mms' res/xml/preferences.xml lays out its first category: the
    PreferenceCategory titled mx_msg, then pref_key_enable_mx_switch (title mx_enable) on a
    single-SIM phone or pref_key_enable_mx1_switch / mx2 (mx_on_sim_1 / mx_on_sim_2) on a dual-SIM
    one (the activity removes the others), each with summary mx_dspt_listview; the status screen
    row (pref_key_mx_status, mx_current_status) only while a SIM is on."""
    dialog = getattr(h, "mms_dialog", None)
    if dialog is not None and dialog.get("screen", pkg) == pkg:  # the dialog belongs to its screen
        return _consent(h, pkg, dialog["sim"], dialog.get("activation", True))
    t = ui_strings(h)
    sims = len(h.identity.sims)
    titles = [t["mx_enable"]] if sims == 1 else [t["mx_on_sim_1"], t["mx_on_sim_2"]][:sims]
    rows = [
        View(
            cls="android.widget.TextView",
            text=t["mx_msg"],
            package=pkg,
            resource_id="android:id/title",
            bounds=(0, 180, SCREEN_W, 240),
        )
    ]
    top = 242
    for sim, title in enumerate(titles):
        on = sim_enabled(h, sim)
        # MessagingPreferenceActivity.a(Preference, int): an activated SIM's row says whether its
        # channel is up (mx_online / mx_offline; here: whether it is on), any other the description
        summary = (t["mx_online"] if on else t["mx_offline"]) if activated(h, sim) else t["mx_dspt_listview"]
        rows.append(_pref_row(pkg, top, title, summary, checked=on, on_click=lambda hh, v, s=sim: _toggle(hh, s, pkg)))
        top += ROW_H
    if any(sim_enabled(h, s) for s in range(sims)):
        rows.append(_pref_row(pkg, top, t["mx_current_status"], "", checked=None, on_click=None))
    return View(
        package=pkg,
        children=[
            _title(pkg, t["preferences_title"]),
            View(
                cls="android.widget.ListView",
                package=pkg,
                resource_id="android:id/list",
                scrollable=True,
                focusable=True,
                bounds=(0, 170, SCREEN_W, SCREEN_H),
                children=rows,
            ),
        ],
    )


def _settings(h: VirtualHandset) -> View:
    pkg = "com.android.settings"
    return View(
        package=pkg,
        children=[
            _title(pkg, "Settings"),
            _row(pkg, 0, "Mi Cloud", resource_id=f"{pkg}:id/micloud", on_click=_opener(MICLOUD)),
            _row(pkg, 1, "Additional settings", resource_id=f"{pkg}:id/additional"),
        ],
    )


def _micloud(h: VirtualHandset) -> View:
    pkg = "com.miui.cloudservice"
    account = micloud_account(h)
    first = (
        _row(pkg, 0, f"Signed in as {account}", resource_id=f"{pkg}:id/account")
        if account
        else _row(pkg, 0, "Sign in", resource_id=f"{pkg}:id/sign_in", on_click=lambda hh, v: sign_in(hh))
    )
    return View(
        package=pkg,
        children=[
            _title(pkg, "Mi Cloud"),
            first,
            _row(pkg, 1, "Cloud Messaging", resource_id=f"{pkg}:id/cloud_messaging", on_click=_opener(MICLOUD_CM)),
            _row(pkg, 2, "Find device", resource_id=f"{pkg}:id/find_device"),
        ],
    )


def _in_call(h: VirtualHandset) -> View:
    pkg = "com.android.phone"
    shown = f"Calling {h.call_number}" if h.call_state else "Call ended"

    def hang_up(hh: VirtualHandset, _v: View) -> None:
        if hh.end_call():
            hh.go_back()

    return View(
        package=pkg,
        children=[
            View(
                cls="android.widget.TextView",
                text=shown,
                package=pkg,
                resource_id=f"{pkg}:id/callStateLabel",
                bounds=(0, 50, SCREEN_W, 160),
            ),
            View(
                cls="android.widget.ImageButton",
                content_desc="End call",
                package=pkg,
                clickable=True,
                resource_id=f"{pkg}:id/endButton",
                bounds=(260, 1060, 460, 1240),
                on_click=hang_up,
            ),
        ],
    )


def _on_call_intent(h: VirtualHandset, intent: Intent) -> None:
    data = intent.data or ""
    if intent.kind == "activity" and intent.action == CALL_ACTION and data.startswith("tel:"):
        h.start_call(data.split(":", 1)[1])


def _compose(h: VirtualHandset) -> View:
    pkg = "com.android.mms"
    draft = getattr(h, "compose_draft", {"to": "", "text": ""})

    def send(hh: VirtualHandset, _v: View) -> None:
        d = getattr(hh, "compose_draft", {"to": "", "text": ""})
        if d["to"] and d["text"]:
            hh._deliver(
                Intent(
                    kind="app",
                    action=SEND_COMMAND,
                    component=COMPOSE,
                    extras={"to": d["to"], "text": d["text"], "sim": 0},
                )
            )
            hh.compose_draft = {"to": d["to"], "text": ""}
            hh.refresh_screen()

    online = draft.get("online")  # what the app's presence look-up said (None: not yet)
    t = ui_strings(h)
    # No presence view: the editor's hint says it (msg_type_hint_mx / msg_type_hint_sms), and an
    # empty EditText reports its hint as its text (TextView.getTextForAccessibility).
    hint = t["msg_type_hint_mx"] if online else t["msg_type_hint_sms"]
    return View(
        package=pkg,
        children=[
            View(
                cls="android.widget.TextView",
                text=draft["to"],
                package=pkg,
                resource_id=f"{pkg}:id/recipients_editor",
                bounds=(0, 50, SCREEN_W, 160),
            ),
            View(
                cls="android.widget.EditText",
                text=draft["text"] or hint,
                package=pkg,
                focusable=True,
                resource_id=f"{pkg}:id/embedded_text_editor",
                bounds=(0, 1100, 560, 1240),
            ),
            View(
                cls="android.widget.Button",
                content_desc=t["send_sms"],
                package=pkg,
                clickable=True,
                focusable=True,
                resource_id=f"{pkg}:id/send_button",
                bounds=(560, 1100, SCREEN_W, 1240),
                on_click=send,
            ),
        ],
    )


def _on_compose_intent(h: VirtualHandset, intent: Intent) -> None:
    if intent.component == COMPOSE and intent.kind == "activity":
        to = (intent.data or "").split(":", 1)[1] if ":" in (intent.data or "") else ""
        h.compose_draft = {"to": to, "text": str(intent.extras.get("sms_body", "")), "online": None}
        # the conversation is opened: the app looks the number up (its answer comes back later)
        h._deliver(Intent(kind="app", action=PRESENCE_COMMAND, component=COMPOSE, extras={"to": to, "sim": 0}))


def show_presence(h: VirtualHandset, to: str, online: bool | None) -> None:
    """The app's presence answer for the open conversation (blue when online, gray when not)."""
    draft = getattr(h, "compose_draft", None)
    if draft is not None and draft.get("to") == to:
        draft["online"] = online
        if h.current_screen.component == COMPOSE:
            h.refresh_screen()


def _on_settings_intent(h: VirtualHandset, intent: Intent) -> None:
    """The app being stopped or wiped takes a consent dialog with it. Opening the settings again
    does not: MessagingPreferenceActivity is ``launchMode="singleTop"`` (the app's
    AndroidManifest.xml), so ``am start`` brings the same instance back, dialog and all."""
    if intent.kind in ("force-stop", "clear") and intent.package == "com.android.mms":
        h.mms_dialog = None


def install(handset: VirtualHandset) -> None:
    """Register the screens on a handset."""
    handset.add_intent_listener(lambda i: _on_settings_intent(handset, i))
    handset.register_screen(COMPOSE, _compose)
    for scheme in ("smsto", "sms"):
        handset.intent_filters[("android.intent.action.SENDTO", scheme)] = COMPOSE
    handset.add_intent_listener(lambda i: _on_compose_intent(handset, i))
    handset.intent_filters[(CALL_ACTION, "tel")] = IN_CALL
    handset.register_screen(IN_CALL, _in_call)
    handset.add_intent_listener(lambda i: _on_call_intent(handset, i))
    handset.register_screen(SETTINGS, _settings)
    handset.register_screen(MICLOUD, _micloud)
    # The Mi Cloud route is unverified (profile ui_paths.micloud): no published screen; it shows the
    # Messaging app's rows, a guess.
    handset.register_screen(MICLOUD_CM, lambda h: _switches(h, "com.miui.cloudservice"))
    handset.register_screen(MMS_SETTINGS, lambda h: _switches(h, "com.android.mms"))
