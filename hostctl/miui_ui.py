"""MIUI Messaging's own screens, read from a ``uiautomator dump``: the Mi Message switches, the
activation consent dialog and the compose screen's Mi Message hint.

Everything here works on the structure and the strings of the real app, not on names of our own:

- Messaging > Settings (``com.android.mms/.ui.MessagingPreferenceActivity``) holds the switches as
  ``CheckBoxPreference`` rows (``res/xml/preferences.xml`` of MIUI Mms: keys
  ``pref_key_enable_mx_switch`` for a single-SIM phone, ``pref_key_enable_mx1_switch`` /
  ``pref_key_enable_mx2_switch`` for dual-SIM). A row is a layout holding a title TextView
  (``android:id/title``), a summary TextView (``android:id/summary``) and, in its widget frame, an
  untitled, non-clickable ``android:id/checkbox`` (AOSP ``preference.xml`` and
  ``preference_widget_checkbox.xml``); the row takes the tap. So a switch is found by its title,
  and its checkable widget is the one inside the same row (the title's nearest ancestor holding a
  checkable node and no other title), or, when the dump flattens the row, the checkable node that
  shares the title's line.
- Titles are matched against the app's own strings (``hostctl/data/miui_mms_strings.json``,
  extracted from the decompiled app's ``res/values*/strings.xml`` in every locale it ships). A
  title names its SIM in its own words ("Mi Message SIM slot 1", "免费网络短信(SIM卡1)",
  "Mi Message SIM 1"); the single-SIM title ("Mi Message", "MIUI免费网络短信") names none, and the
  rows' order gives it.
- Turning a SIM on asks first (``MessagingPreferenceActivity.a(CheckBoxPreference, int)`` ->
  ``com/android/mms/util/bl.smali`` ``a(Activity, int, int, boolean, bw)`` ->
  ``com/xiaomi/mms/c/f.smali``, a ``miui.app.AlertDialog``): a SIM never activated gets the
  activation consent (title ``dialog_title_mx_rcs``, message ``dialog_message_mx``: activation
  sends a chargeable SMS), an activated SIM the data notice (title ``networking_allow_title``,
  message ``mx_activate_network_allow_notice``); both have the positive button
  ``mx_btn_enable_now`` and the negative ``android.R.string.cancel``. MIUI's AlertDialog names its
  title ``miui:id/alertTitle`` and its message ``miui:id/message`` (``bl.smali`` reads
  ``miui.R.id.message``); the buttons are ``android:id/button1`` / ``button2``. A dialog is taken
  for this consent only when both its title and its positive button are the app's words: a
  generic "Allow" elsewhere is never tapped.
- The compose screen has no presence view: the editor's hint says whether the recipient is
  reachable over Mi Message (``msg_type_hint_mx``) or not (``msg_type_hint_sms``). An empty
  EditText reports its hint as its text to accessibility (AOSP ``TextView.getTextForAccessibility``).
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from .mms_strings import mms_strings, strings_for_locale

__all__ = [
    "ComposeHint",
    "ConsentDialog",
    "MxSwitch",
    "SwitchNotFound",
    "mms_strings",
    "parse_compose",
    "parse_consent",
    "parse_switches",
    "sim_of_title",
    "strings_for_locale",
    "titles_seen",
]

SEND_BUTTON_ID = "com.android.mms:id/send_button"
EDITOR_ID = "com.android.mms:id/embedded_text_editor"
POSITIVE_ID, NEGATIVE_ID = "android:id/button1", "android:id/button2"
MESSAGE_IDS = ("miui:id/message", "android:id/message")  # miui.app.AlertDialog, AOSP AlertDialog
# The two dialogs MessagingPreferenceActivity shows before turning a SIM on (com/xiaomi/mms/c/f.smali):
# (title, message) string names; both accept with mx_btn_enable_now.
CONSENT_DIALOGS = (
    ("dialog_title_mx_rcs", "dialog_message_mx"),
    ("networking_allow_title", "mx_activate_network_allow_notice"),
)
CONSENT_ACCEPT = "mx_btn_enable_now"


class SwitchNotFound(ValueError):
    """No Mi Message switch on the screen; ``titles`` are the row titles that were there."""

    def __init__(self, message: str, titles: list[str]) -> None:
        super().__init__(message)
        self.titles = titles


def _norm(text: str) -> str:
    """Compare titles the way a reader would: NFKC (full-width brackets and digits), single spaces."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()


@lru_cache(maxsize=1)
def _title_table() -> dict[str, int | None]:
    """Every locale's switch titles -> the SIM they name (None: the single-SIM row)."""
    out: dict[str, int | None] = {}
    for strings in mms_strings()["locales"].values():
        for name, sim in (("mx_enable", None), ("mx_on_sim_1", 1), ("mx_on_sim_2", 2)):
            if name in strings:
                out.setdefault(_norm(strings[name]), sim)
    return out


@lru_cache(maxsize=1)
def _hint_table() -> dict[str, bool]:
    """Editor hints -> reachable over Mi Message. The compose screen (``com/android/mms/ui/fh.smali``)
    sets ``msg_type_hint_mx`` or ``msg_type_hint_sms``, or their ``_omit`` short forms when MIUI's
    font scale mode is 11 (large text)."""
    out: dict[str, bool] = {}
    for strings in mms_strings()["locales"].values():
        for name in ("msg_type_hint_sms", "msg_type_hint_sms_omit"):
            if name in strings:
                out.setdefault(_norm(strings[name]), False)
    for strings in mms_strings()["locales"].values():
        for name in ("msg_type_hint_mx", "msg_type_hint_mx_omit"):
            if name in strings:
                out[_norm(strings[name])] = True  # an MX hint wins a clash
    return out


@lru_cache(maxsize=1)
def _consent_table() -> tuple[dict[str, str], set[str]]:
    """Consent dialog titles (-> the string name) and accept-button texts, every locale."""
    titles: dict[str, str] = {}
    accepts: set[str] = set()
    for strings in mms_strings()["locales"].values():
        for title, _message in CONSENT_DIALOGS:
            if title in strings:
                titles.setdefault(_norm(strings[title]), title)
        if CONSENT_ACCEPT in strings:
            accepts.add(_norm(strings[CONSENT_ACCEPT]))
    return titles, accepts


# A SIM named in a title's own words, for a build whose strings are not in the table yet:
# "SIM slot 1", "SIM 1", "SIM卡1", "SIM ranura 1", "卡1".
_SIM_WORDS = re.compile(r"(?:sim\s*(?:slot|card|卡|ranura|-?karte)?\s*|卡\s*)([12])(?!\d)", re.I)


def sim_of_title(title: str) -> int | None:
    """The SIM a switch title names (1-based), from the app's strings or the title's own words."""
    n = _norm(title)
    if n in _title_table():
        return _title_table()[n]
    m = _SIM_WORDS.search(unicodedata.normalize("NFKC", title))
    return int(m.group(1)) if m else None


def _is_switch_title(title: str) -> bool:
    return _norm(title) in _title_table()


# --- the dump as a tree -------------------------------------------------------------------------


def _root(xml_text: str) -> ET.Element:
    try:
        return ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise ValueError(f"not a uiautomator dump: {exc}") from None


def _bounds(el: ET.Element) -> tuple[int, int, int, int] | None:
    m = re.fullmatch(r"\[(-?\d+),(-?\d+)\]\[(-?\d+),(-?\d+)\]", el.get("bounds", ""))
    return tuple(map(int, m.groups())) if m else None  # type: ignore[return-value]


def _center(el: ET.Element) -> tuple[int, int]:
    b = _bounds(el)
    if b is None:
        raise ValueError(f"node without bounds: {el.attrib}")
    return (b[0] + b[2]) // 2, (b[1] + b[3]) // 2


def _parents(root: ET.Element) -> dict[ET.Element, ET.Element]:
    return {child: parent for parent in root.iter() for child in parent}


def _is_title_node(el: ET.Element) -> bool:
    """A TextView that titles something: a preference title, or any text node when the dump has
    no ids (some vendors' dumps)."""
    rid = el.get("resource-id", "")
    return bool(el.get("text", "").strip()) and (rid == "android:id/title" or rid == "" or rid.endswith(":id/title"))


def _checkables(el: ET.Element) -> Iterator[ET.Element]:
    return (n for n in el.iter("node") if n.get("checkable") == "true")


def titles_seen(xml_text: str) -> list[str]:
    """The row titles on the screen (what an error shows when no switch matched)."""
    root = _root(xml_text)
    ids = [
        n.get("text", "")
        for n in root.iter("node")
        if n.get("resource-id", "") == "android:id/title" and n.get("text", "").strip()
    ]
    return ids or [n.get("text", "") for n in root.iter("node") if n.get("text", "").strip()][:40]


@dataclass(frozen=True)
class MxSwitch:
    sim: int  # 1-based SIM slot, as the title names it (or the row order)
    checked: bool
    center: tuple[int, int]  # where to tap: the row (which takes the tap) or the widget
    title: str
    summary: str
    widget_id: str  # the checkable node's resource-id (android:id/checkbox on MIUI)


def _row_of(title: ET.Element, parents: dict[ET.Element, ET.Element]) -> ET.Element | None:
    """The title's row: its nearest ancestor that holds a checkable node and no other title."""
    node = parents.get(title)
    while node is not None and node.tag == "node":
        if any(True for _ in _checkables(node)):
            rid = title.get("resource-id", "")
            others = [
                n
                for n in node.iter("node")
                if n is not title
                and n.get("text", "").strip()
                and ((rid and n.get("resource-id") == rid) or _is_switch_title(n.get("text", "")))
            ]
            return node if not others else None
        node = parents.get(node)
    return None


def _band(title: ET.Element, root: ET.Element, parents: dict[ET.Element, ET.Element]) -> tuple[int, int] | None:
    """The vertical span of a title's row when the widget is not inside it: the nearest clickable
    ancestor holding no other title (the row, as AOSP lays it out), else from the title's top to
    the next title's top below it."""
    tb = _bounds(title)
    if tb is None:
        return None
    node = parents.get(title)
    while node is not None and node.tag == "node":
        if any(n is not title and _is_title_node(n) for n in node.iter("node")):
            break
        b = _bounds(node)
        if node.get("clickable") == "true" and b is not None:
            return b[1], b[3]
        node = parents.get(node)
    below = sorted(
        b[1]
        for n in root.iter("node")
        if n is not title and _is_title_node(n) and (b := _bounds(n)) is not None and b[1] > tb[1]
    )
    return tb[1], below[0] if below else tb[3] + 4 * (tb[3] - tb[1])


def _same_line(title: ET.Element, root: ET.Element, parents: dict[ET.Element, ET.Element]) -> ET.Element | None:
    """A flattened dump (the widget is not inside the title's row): the checkable node whose
    vertical middle lies in the title's row band, the nearest to the title if several do. The
    title sits in the row's upper half and the widget is centred, so the title's own line is
    not enough."""
    band, tb = _band(title, root, parents), _bounds(title)
    if band is None or tb is None:
        return None
    mid = (tb[1] + tb[3]) // 2
    hits = [
        (abs((b[1] + b[3]) // 2 - mid), i, n)
        for i, n in enumerate(_checkables(root))
        if (b := _bounds(n)) is not None and band[0] <= (b[1] + b[3]) // 2 < band[1]
    ]
    return min(hits)[2] if hits else None


def parse_switches(xml_text: str) -> list[MxSwitch]:
    """The Mi Message switches on a Messaging > Settings dump, one per SIM, sorted by SIM.
    Raises :class:`SwitchNotFound` (with the titles it saw) when there is none."""
    root = _root(xml_text)
    parents = _parents(root)
    found: list[tuple[int | None, MxSwitch]] = []
    for el in root.iter("node"):
        if not (_is_title_node(el) and _is_switch_title(el.get("text", ""))):
            continue
        row = _row_of(el, parents)
        widget = next(_checkables(row), None) if row is not None else _same_line(el, root, parents)
        if widget is None:
            continue  # the category header ("Mi Message" is also mx_msg in English)
        tap = row if row is not None and row.get("clickable") == "true" else widget
        summary = next(
            (
                n.get("text", "")
                for n in (row.iter("node") if row is not None else ())
                if n.get("resource-id") == "android:id/summary"
            ),
            "",
        )
        sim = sim_of_title(el.get("text", ""))
        found.append(
            (
                sim,
                MxSwitch(
                    sim or 0,
                    widget.get("checked") == "true",
                    _center(tap),
                    el.get("text", ""),
                    summary,
                    widget.get("resource-id", ""),
                ),
            )
        )
    if not found:
        seen = titles_seen(xml_text)
        raise SwitchNotFound(
            "no Mi Message switch on this screen; titles seen: "
            + (", ".join(repr(t) for t in seen) or "(none)")
            + " (a new MIUI wording goes into hostctl/data/miui_mms_strings.json)",
            seen,
        )
    named = [s for s, _ in found if s]
    if len(set(named)) != len(named):
        # Two rows naming the same SIM: a translation slip in the app itself (kk-rKZ and ms-rMY
        # title mx_on_sim_2 "... SIM 1"); preferences.xml puts mx1 above mx2, so the rows' order
        # (the dump's document order) decides.
        found = [
            (i + 1, MxSwitch(i + 1, sw.checked, sw.center, sw.title, sw.summary, sw.widget_id))
            for i, (_, sw) in enumerate(found)
        ]
    out, taken = [], {s for s, _ in found if s}
    free = (n for n in range(1, len(found) + 2) if n not in taken)
    for sim, sw in found:  # a title without a SIM: the rows' order (the single-SIM row is SIM 1)
        out.append(sw if sim else MxSwitch(next(free), sw.checked, sw.center, sw.title, sw.summary, sw.widget_id))
    return sorted(out, key=lambda s: s.sim)


@dataclass(frozen=True)
class ConsentDialog:
    title: str
    message: str
    accept: tuple[int, int]
    accept_text: str
    cancel: tuple[int, int] | None
    kind: str = ""  # the title's string name: dialog_title_mx_rcs (activation) or
    # networking_allow_title (data notice for an activated SIM)


def parse_consent(xml_text: str) -> ConsentDialog | None:
    """MIUI Mms' consent dialog before a SIM is turned on, if it is on screen: a node titled with
    one of the app's consent titles AND a clickable button with ``mx_btn_enable_now``'s text."""
    root = _root(xml_text)
    titles, accepts = _consent_table()
    nodes = list(root.iter("node"))
    title = next(
        (
            n
            for n in nodes
            if _norm(n.get("text", "")) in titles
            and n.get("resource-id", "") not in ("android:id/title", "android:id/summary")
        ),
        None,
    )
    accept = next((n for n in nodes if n.get("clickable") == "true" and _norm(n.get("text", "")) in accepts), None)
    if title is None or accept is None:
        return None
    message = next((n.get("text", "") for n in nodes if n.get("resource-id") in MESSAGE_IDS), "")
    cancel = next((n for n in nodes if n.get("resource-id") == NEGATIVE_ID), None)
    return ConsentDialog(
        title.get("text", ""),
        message,
        _center(accept),
        accept.get("text", ""),
        _center(cancel) if cancel is not None else None,
        titles[_norm(title.get("text", ""))],
    )


@dataclass(frozen=True)
class ComposeHint:
    online: bool | None  # True: Mi Message hint, False: SMS hint, None: neither shown
    shown: str  # the editor's text as dumped
    send_button: tuple[int, int] | None


def parse_compose(xml_text: str) -> ComposeHint:
    """What the compose screen says about the recipient: the editor hint, and the send button."""
    root = _root(xml_text)
    nodes = list(root.iter("node"))
    editor = next((n for n in nodes if n.get("resource-id") == EDITOR_ID), None) or next(
        (n for n in nodes if n.get("class", "").endswith("EditText")), None
    )
    send = next((n for n in nodes if n.get("resource-id") == SEND_BUTTON_ID), None)
    shown = editor.get("text", "") if editor is not None else ""
    online = _hint_table().get(_norm(shown))
    if online is None and editor is not None and editor.get("hint"):
        # uiautomator of API 30+ also dumps the hint as its own attribute (`hint="..."`)
        online = _hint_table().get(_norm(editor.get("hint", "")))
        shown = editor.get("hint", "") if online is not None else shown
    return ComposeHint(online, shown, _center(send) if send is not None else None)
