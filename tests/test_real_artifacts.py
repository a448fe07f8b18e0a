"""Contract tests: the host-side parsers on real artifacts (tests/fixtures/real/, provenance in its
README): MIUI Mms' own resources, a real Android Settings uiautomator dump, real content query rows, a real
Parcel reply, real getprop output and real INJECT_EVENTS refusals."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest

from hostctl.device import injection_refused, parse_getprop
from hostctl.identity import validate
from hostctl.messages import parse_content_rows
from hostctl.miui_ui import SwitchNotFound, parse_compose, parse_consent, parse_switches, sim_of_title
from hostctl.mms_strings import locale_of_props, mms_strings, strings_for_locale
from hostctl.parcel import decode_parcel

REAL = Path(__file__).parent / "fixtures" / "real"
ANDROID = "{http://schemas.android.com/apk/res/android}"
LOCALE_FILES = {
    "en": "miui_mms_strings_default.xml",
    "zh-CN": "miui_mms_strings-zh-rCN.xml",
    "zh-TW": "miui_mms_strings-zh-rTW.xml",
}


def real_strings(locale: str) -> dict[str, str]:
    """The app's strings straight from the fixture (not from our table)."""
    text = (REAL / LOCALE_FILES[locale]).read_text(encoding="utf-8")
    # aapt's unescaping: \" and \' stand for the character
    return {
        m.group(1): re.sub(r"\\(.)", r"\1", m.group(2))
        for m in re.finditer(r'<string name="([^"]+)">([^<]*)</string>', text)
    }


def widget_attrs() -> dict[str, str]:
    """AOSP preference_widget_checkbox.xml's CheckBox: its id and that it takes no tap."""
    root = ET.parse(REAL / "aosp_preference_widget_checkbox.xml").getroot()
    return {
        "id": root.get(f"{ANDROID}id").replace("@+android:id/", "android:id/"),
        "clickable": root.get(f"{ANDROID}clickable"),
        "focusable": root.get(f"{ANDROID}focusable"),
    }


def node(text="", rid="", cls="android.widget.TextView", bounds=(0, 0, 720, 1280), children="", **flags) -> str:
    attrs = {"checkable": "false", "checked": "false", "clickable": "false", "focusable": "false", **flags}
    b = "[{},{}][{},{}]".format(*bounds)
    head = (
        f'<node index="0" text={quoteattr(text)} resource-id="{rid}" class="{cls}" package="com.android.mms" '
        f'content-desc="" ' + " ".join(f'{k}="{v}"' for k, v in attrs.items()) + f' bounds="{b}"'
    )
    return head + (f">{children}</node>" if children else " />")


def dump_from_resources(locale: str, sims: int, checked: dict[int, bool], *, flat: bool = False) -> str:
    """A Messaging > Settings dump built from the real resources: preferences.xml's pref_key_mx_msg
    category (title @string/mx_msg) and the CheckBoxPreferences that apply to the SIM count (the
    activity removes the others), each an AOSP preference row with title, summary and the widget
    as preference_widget_checkbox.xml declares it. ``flat``: the rows' nodes without nesting, as
    some vendors' dumps come."""
    strings = real_strings(locale)
    prefs = ET.parse(REAL / "miui_mms_preferences.xml").getroot()
    cat = next(c for c in prefs if c.get(f"{ANDROID}key") == "pref_key_mx_msg")
    keep = {"pref_key_enable_mx_switch"} if sims == 1 else {"pref_key_enable_mx1_switch", "pref_key_enable_mx2_switch"}
    w = widget_attrs()

    def res(ref: str) -> str:
        return strings[ref.removeprefix("@string/")]

    rows, top = [node(res(cat.get(f"{ANDROID}title")), "android:id/title", bounds=(0, 200, 720, 260))], 262
    for i, pref in enumerate(p for p in cat if p.tag == "CheckBoxPreference" and p.get(f"{ANDROID}key") in keep):
        b = (0, top, 720, top + 150)
        title = node(res(pref.get(f"{ANDROID}title")), "android:id/title", bounds=(40, top + 10, 560, top + 70))
        summary = node(res(pref.get(f"{ANDROID}summary")), "android:id/summary", bounds=(40, top + 75, 560, top + 140))
        box = node(
            "",
            w["id"],
            "android.widget.CheckBox",
            (600, top + 40, 680, top + 110),
            checkable="true",
            checked=str(checked.get(i + 1, False)).lower(),
            clickable=w["clickable"],
            focusable=w["focusable"],
        )
        if flat:
            rows += [title, summary, box]
        else:
            rows.append(
                node(
                    cls="android.widget.LinearLayout",
                    bounds=b,
                    clickable="true",
                    focusable="true",
                    children=node(
                        cls="android.widget.RelativeLayout", bounds=(40, top, 560, top + 150), children=title + summary
                    )
                    + node(
                        rid="android:id/widget_frame",
                        cls="android.widget.LinearLayout",
                        bounds=(580, top, 720, top + 150),
                        children=box,
                    ),
                )
            )
        top += 152
    return (
        "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?><hierarchy rotation=\"0\">"
        + node(
            cls="android.widget.FrameLayout",
            children=node(strings["preferences_title"], bounds=(0, 60, 720, 180))
            + node(
                rid="android:id/list", cls="android.widget.ListView", bounds=(0, 190, 720, 1280), children="".join(rows)
            ),
        )
        + "</hierarchy>"
    )


@pytest.mark.parametrize("locale", ["en", "zh-CN", "zh-TW"])
@pytest.mark.parametrize("flat", [False, True])
def test_switch_finder_on_dual_sim_rows_built_from_the_real_resources(locale, flat):
    xml = dump_from_resources(locale, 2, {1: False, 2: True}, flat=flat)
    s1, s2 = parse_switches(xml)
    strings = real_strings(locale)
    assert (s1.sim, s1.title, s1.checked) == (1, strings["mx_on_sim_1"], False)
    assert (s2.sim, s2.title, s2.checked) == (2, strings["mx_on_sim_2"], True)
    assert s1.widget_id == s2.widget_id == "android:id/checkbox"
    # the tap lands on SIM 1's row, above SIM 2's
    assert 262 <= s1.center[1] < 262 + 150 and 414 <= s2.center[1] < 414 + 150
    if not flat:  # the row takes the tap, not the untitled widget
        assert s1.center == (360, 262 + 75) and s1.summary == strings["mx_dspt_listview"]


@pytest.mark.parametrize("locale", ["en", "zh-CN", "zh-TW"])
@pytest.mark.parametrize("flat", [False, True])
def test_switch_finder_on_the_single_sim_row_takes_sim_1_from_the_row_order(locale, flat):
    xml = dump_from_resources(locale, 1, {1: True}, flat=flat)
    (s,) = parse_switches(xml)
    assert (s.sim, s.title, s.checked) == (1, real_strings(locale)["mx_enable"], True)
    # English titles the category and the single-SIM row alike ("Mi Message"): the header has no
    # checkable widget and is not taken for a switch
    assert sum(1 for _ in re.finditer(re.escape(f'text="{real_strings(locale)["mx_msg"]}"'), xml)) >= 1


def test_two_rows_naming_the_same_sim_are_told_apart_by_their_order():
    # MIUI's own kk-rKZ and ms-rMY strings title mx_on_sim_2 "... SIM 1" too (the table holds
    # them as the app ships them); preferences.xml lists mx1 above mx2
    for loc in ("kk-KZ", "ms-MY"):
        t = strings_for_locale(loc)
        assert sim_of_title(t["mx_on_sim_2"]) == 1
        xml = (
            dump_from_resources("en", 2, {2: True})
            .replace(real_strings("en")["mx_on_sim_1"], t["mx_on_sim_1"])
            .replace(real_strings("en")["mx_on_sim_2"], t["mx_on_sim_2"])
        )
        s1, s2 = parse_switches(xml)
        assert (s1.sim, s1.checked, s2.sim, s2.checked) == (1, False, 2, True) and s1.center[1] < s2.center[1]


def test_the_title_table_is_the_apps_own_strings():
    for locale in LOCALE_FILES:
        ours, theirs = strings_for_locale(locale), real_strings(locale)
        assert {k: ours[k] for k in theirs} == theirs
    assert mms_strings()["source"]["repository"] == "https://github.com/TTTT55/Mms"
    # other locales the app ships read their SIM from their own words
    assert [sim_of_title(strings_for_locale(loc)["mx_on_sim_2"]) for loc in ("de", "ru", "es", "ja", "ko")] == [2] * 5


REAL_ROWS = REAL / "uiautomator_settings_rows_excerpt.xml"  # a real Android Settings dump's rows


def test_a_real_vendor_dump_without_mi_message_fails_listing_the_titles_it_saw():
    xml = REAL_ROWS.read_text(encoding="utf-8")
    with pytest.raises(SwitchNotFound) as exc:
        parse_switches(xml)
    assert exc.value.titles == ["Network & internet", "Bluetooth & devices", "Display & brightness"]
    assert "'Network & internet', 'Bluetooth & devices', 'Display & brightness'" in str(exc.value)
    assert "miui_mms_strings.json" in str(exc.value)
    assert parse_consent(xml) is None
    assert parse_compose(xml).online is None


def _with_widget(xml: str, title: str, new_title: str, widget: str, *, flat: bool) -> str:
    """The real dump with one row retitled and a checkable widget added: inside the row (in an
    android:id/widget_frame, as AOSP's preference.xml puts it) or, ``flat``, as a sibling of the
    rows at the list's level (as some vendors' dumps come), on the row's line."""
    root = ET.fromstring(xml)
    parents = {c: p for p in root.iter() for c in p}
    t = next(n for n in root.iter("node") if n.get("text") == title)
    t.set("text", new_title)
    row = parents[parents[t]]
    x1, y1, x2, y2 = map(int, re.findall(r"-?\d+", row.get("bounds")))
    box = ET.fromstring(
        node(
            "",
            widget,
            "android.widget.CheckBox",
            (940, y1 + 80, 1030, y2 - 80),
            checkable="true",
            checked="true",
            clickable="false",
        )
    )
    if flat:
        parents[row].append(box)
    else:
        frame = ET.fromstring(
            node(rid="android:id/widget_frame", cls="android.widget.LinearLayout", bounds=(900, y1, 1080, y2))
        )
        frame.append(box)
        row.append(frame)
    return ET.tostring(root, encoding="unicode")


@pytest.mark.parametrize(
    "widget", ["android:id/checkbox", "android:id/switch_widget", "com.android.settings:id/switch_widget"]
)
@pytest.mark.parametrize("flat", [False, True])
def test_switch_finder_on_a_real_vendor_rows_nesting(widget, flat):
    # The real rows (icon_frame, text_frame, title and summary in a clickable LinearLayout of a
    # RecyclerView) with MIUI's titles put in and the checkable widget added; the finder must take
    # each SIM's own widget and tap its own row.
    s = real_strings("zh-CN")
    xml = REAL_ROWS.read_text(encoding="utf-8")
    xml = _with_widget(xml, "Network & internet", s["mx_on_sim_1"], widget, flat=flat)
    xml = _with_widget(xml, "Display & brightness", s["mx_on_sim_2"], widget, flat=flat)
    s1, s2 = parse_switches(xml)
    assert (s1.sim, s1.title, s1.checked, s1.widget_id) == (1, s["mx_on_sim_1"], True, widget)
    assert (s2.sim, s2.title) == (2, s["mx_on_sim_2"])
    assert 1269 <= s1.center[1] < 1524 and 1861 <= s2.center[1] < 2087  # each on its own row
    if not flat:
        assert s1.center == (540, (1269 + 1524) // 2)  # the clickable row
        assert s1.summary == "Wi-Fi, SIM card & mobile network, Hotspot & tethering"


@pytest.mark.parametrize("locale", ["en", "zh-CN", "zh-TW"])
def test_presence_is_read_from_the_real_editor_hint_and_the_send_button_by_its_real_id(locale):
    strings = real_strings(locale)
    rid = re.search(r'android:id="@id/(\w+)"', (REAL / "miui_mms_send_button.xml").read_text()).group(1)
    assert re.search(r'android:contentDescription="@string/send_sms"', (REAL / "miui_mms_send_button.xml").read_text())
    public = (REAL / "miui_mms_public_excerpt.xml").read_text()
    assert 'type="id" name="embedded_text_editor"' in public and f'type="id" name="{rid}"' in public

    def compose(hint: str) -> str:
        return (
            "<hierarchy>"
            + node(
                cls="android.widget.FrameLayout",
                children=node(
                    hint, "com.android.mms:id/embedded_text_editor", "android.widget.EditText", (0, 1100, 560, 1240)
                )
                + node(
                    "", f"com.android.mms:id/{rid}", "android.widget.Button", (560, 1100, 720, 1240), clickable="true"
                ),
            )
            + "</hierarchy>"
        )

    on = parse_compose(compose(strings["msg_type_hint_mx"]))
    off = parse_compose(compose(strings["msg_type_hint_sms"]))
    assert (on.online, off.online) == (True, False) and on.send_button == (640, 1170)
    # MIUI's large-text mode (fh.smali: scale mode 11) shows the short forms
    assert parse_compose(compose(strings["msg_type_hint_mx_omit"])).online is True
    assert parse_compose(compose(strings["msg_type_hint_sms_omit"])).online is False
    assert parse_compose(compose("typed text")).online is None
    # a dump with the `hint` attribute (androidx.test.uiautomator's AccessibilityNodeInfoDumper
    # writes it from API 26, the platform's `uiautomator dump` from Android 16) and an empty text
    newer = compose("").replace(
        'text="" resource-id="com.android.mms:id/embedded_text_editor"',
        f'text="" hint="{strings["msg_type_hint_mx"]}" resource-id="com.android.mms:id/embedded_text_editor"',
    )
    assert (parse_compose(newer).online, parse_compose(newer).shown) == (True, strings["msg_type_hint_mx"])


def _dialog(title: str, message: str, cancel: str, accept: str, ids: str = "miui") -> str:
    """An AlertDialog as uiautomator dumps it: MIUI's (miui:id/alertTitle, miui:id/message) or AOSP's."""
    return (
        "<hierarchy>"
        + node(title, f"{ids}:id/alertTitle")
        + node(message, f"{ids}:id/message")
        + node(cancel, "android:id/button2", "android.widget.Button", (80, 880, 350, 970), clickable="true")
        + node(accept, "android:id/button1", "android.widget.Button", (370, 880, 640, 970), clickable="true")
        + "</hierarchy>"
    )


@pytest.mark.parametrize("locale", list(LOCALE_FILES))
def test_consent_dialogs_found_by_the_apps_strings_in_each_locale(locale):
    # com/xiaomi/mms/c/f.smali: mode 0 (SIM never activated) and mode 4 (activated SIM)
    s = real_strings(locale)
    for kind, message in (
        ("dialog_title_mx_rcs", "dialog_message_mx"),
        ("networking_allow_title", "mx_activate_network_allow_notice"),
    ):
        for ids in ("miui", "android"):
            d = parse_consent(_dialog(s[kind], s[message], "Cancel", s["mx_btn_enable_now"], ids))
            assert d is not None and (d.kind, d.title, d.message, d.accept_text, d.accept) == (
                kind,
                s[kind],
                s[message],
                s["mx_btn_enable_now"],
                (505, 925),
            )


def test_a_dialog_is_not_taken_for_the_consent_by_a_generic_button():
    s = real_strings("en")
    # the app's recommendation dialog (bl.smali: "Terms and Conditions" / "Allow") is not the
    # switch's consent, nor is a runtime permission dialog's "Allow", nor an untitled "Activate"
    assert parse_consent(_dialog(s["dialog_title_networking"], "...", "Cancel", s["networking_allow_continue"])) is None
    assert parse_consent(_dialog("Allow Messaging to send and view SMS messages?", "", "Deny", "Allow")) is None
    assert parse_consent(_dialog("Something else", "", "Cancel", s["mx_btn_enable_now"])) is None
    # a Settings screen whose row is titled like the English dialog ("Mi Message") has no consent
    assert parse_consent(dump_from_resources("en", 1, {})) is None


MIUI_SMS_COLUMNS = (
    "_id",
    "thread_id",
    "address",
    "person",
    "date",
    "date_sent",
    "protocol",
    "read",
    "status",
    "type",
    "reply_path_present",
    "subject",
    "body",
    "service_center",
    "locked",
    "error_code",
    "seen",
    "timed",
    "deleted",
    "sync_state",
    "marker",
    "source",
    "bind_id",
    "mx_status",
    "mx_id",
    "out_time",
    "account",
    "sim_id",
    "block_type",
    "advanced_seen",
    "b2c_ttl",
    "b2c_numbers",
    "fake_cell_type",
    "url_risky_type",
    "creator",
    "favorite_date",
    "mx_id_v2",
    "sub_id",
)


def test_real_miui_content_query_rows_parse_with_multi_line_bodies():
    assert len(MIUI_SMS_COLUMNS) == 38
    rows = parse_content_rows((REAL / "content_query_sms_miui.txt").read_text(encoding="utf-8"), MIUI_SMS_COLUMNS)
    assert [r["_id"] for r in rows] == ["8", "7", "6"]
    assert rows[0]["body"].splitlines() == [
        "Hi there",
        "Long time no talk",
        "How have you been lately",
        "Hope everything is going well with your new job",
    ]
    assert rows[1]["body"] == "Hey, are we still meeting at the café at 3 PM today?"
    assert rows[2]["body"].count("\n") == 4
    assert {(r["sim_id"], r["sub_id"], r["mx_status"], r["mx_id"], r["mx_id_v2"]) for r in rows} == {
        ("2", "-1", "0", None, None)
    }  # sim_id is the subscription id; sub_id unused (-1)


def test_real_parcel_reply_decodes_to_a_valid_imei():
    imei = decode_parcel((REAL / "parcel_iphonesubinfo1_adbkit99.txt").read_text())
    assert imei == "355490069927394"
    assert re.fullmatch(r"\d{15}", imei)


def test_real_miui_getprop():
    props = parse_getprop((REAL / "getprop_miui9_mi6_excerpt.txt").read_text(encoding="utf-8"))
    assert len(props) == 36
    assert props["ro.miui.ui.version.name"] == "V9" and props["ro.miui.ui.version.code"] == "7"
    assert props["persist.sys.language"] == "" and props["gsm.sim.state"] == "ABSENT,ABSENT"
    assert props["ro.gpu.available_frequencies"].endswith("257000000 ")
    assert locale_of_props(props) == "zh-CN"
    assert [validate("imei", props[k]) for k in ("ro.ril.miui.imei0", "ro.ril.miui.imei1", "persist.radio.imei2")] == [
        True,
        True,
        True,
    ]
    assert props["persist.radio.iccid"].split(",") == ["<null>", "89860000192008068907"]


def test_real_inject_events_refusals_are_recognised():
    for name in ("inject_events_xiaomi_android10.txt", "inject_events_xiaomi_new_wording.txt"):
        assert injection_refused((REAL / name).read_text())
    assert not injection_refused("")


class _SlowMiui:
    """A handset drawn from the real resources that, like a real phone, draws what a tap causes a
    few dumps later: the consent dialog appears on the second dump after the row's tap and is still
    there on the first dump after its button's tap."""

    serial = "slow"

    def __init__(self, locale: str = "zh-CN") -> None:
        self.locale, self.on, self.dialog, self.lag, self.taps = locale, False, False, 0, []
        self.s = real_strings(locale)

    def _screen(self) -> str:
        if self.dialog:
            return _dialog(
                self.s["dialog_title_mx_rcs"], self.s["dialog_message_mx"], "取消", self.s["mx_btn_enable_now"]
            )
        return dump_from_resources(self.locale, 1, {1: self.on})

    def shell(self, cmd, timeout=None):
        from hostctl.device import ShellResult

        if cmd.startswith("input tap "):
            x, y = map(int, cmd.split()[2:])
            self.taps.append((x, y))
            if self.dialog and (x, y) == (505, 925):  # the dialog's positive button
                self.dialog, self.on, self.lag = False, True, 1
            elif not self.dialog and not self.on:
                self.lag, self.pending = 1, True
        if cmd.startswith("settings get"):
            return ShellResult(cmd, 0, "1\n" if self.on else "0\n")
        return ShellResult(cmd, 0, "")

    def batch(self, commands, timeout=None):
        from hostctl.device import ShellResult

        shown = self._screen() if self.lag == 0 else self._previous
        if self.lag:
            self.lag -= 1
            if getattr(self, "pending", False) and self.lag == 0:
                self.pending, self.dialog = False, True
        self._previous = shown if self.lag else self._screen()
        return [ShellResult(c, 0, "") for c in commands[:-1]] + [ShellResult(commands[-1], 0, shown)]


def test_cm_on_waits_for_the_consent_a_real_phone_draws_late():
    from hostctl.cloud import cm_set

    h = _SlowMiui()
    h._previous = h._screen()
    state = cm_set(h, True, timeout=5)
    assert state.enabled is True and state.changed is True
    assert [(c["kind"], c["title"], c["accepted"]) for c in state.consent] == [
        ("dialog_title_mx_rcs", "免费发送短信", "现在开启")
    ]
    assert h.taps[-1] == (505, 925) and len(h.taps) == 2  # the row once, the button once
