"""MIUI Mms' own strings, per locale, as data (``hostctl/data/miui_mms_strings.json``).

The table was extracted from the decompiled MIUI Mms 11.0.0.1 resources (its ``source`` key names
the repository, commit and paths): every ``res/values[-<qualifier>]/strings.xml`` of the app, for the
names the Cloud Messaging screens use. The emulated screens draw with it and the host matches with
it, so a new MIUI wording is one more entry in the file, not code.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources

__all__ = ["locale_of_props", "mms_strings", "strings_for_locale"]


@lru_cache(maxsize=1)
def mms_strings() -> dict:
    """The app's strings: {"source": ..., "locales": {qualifier: {name: text}}, ...}."""
    return json.loads(resources.files("hostctl").joinpath("data/miui_mms_strings.json").read_text(encoding="utf-8"))


def _qualifiers(locale: str) -> list[str]:
    """Android's resource fall-back for a BCP-47-ish tag ("zh-CN", "zh_TW", "en"): values-zh-rCN,
    values-zh, values."""
    parts = re.split(r"[-_]", locale.strip()) if locale.strip() else []
    out = []
    if len(parts) >= 2 and parts[1]:
        region = parts[-1] if len(parts[-1]) == 2 else parts[1]
        out.append(f"{parts[0].lower()}-r{region.upper()}")
    if parts:
        out.append(parts[0].lower())
    return out + [""]


def strings_for_locale(locale: str) -> dict[str, str]:
    """The strings the app shows in ``locale``, resolved as Android resolves resources (a name
    missing from the specific locale falls back to the language, then to the default)."""
    table = mms_strings()
    merged: dict[str, str] = {}
    for q in reversed(_qualifiers(locale)):
        merged.update(table["locales"].get(q, {}))
    cancel = table["android_cancel"]
    merged["android_cancel"] = next((cancel[q] for q in _qualifiers(locale) if q in cancel), cancel[""])
    return merged


def locale_of_props(props: dict[str, str]) -> str:
    """The UI locale a handset runs in, from its props as Android reads them: persist.sys.locale
    (5.0+), persist.sys.language/country (up to 4.4), then the build's ro.product.locale or
    ro.product.locale.language/region; "en-US" when none is set."""
    for tag in (
        props.get("persist.sys.locale", ""),
        "-".join(v for v in (props.get("persist.sys.language", ""), props.get("persist.sys.country", "")) if v),
        props.get("ro.product.locale", ""),
        "-".join(
            v for v in (props.get("ro.product.locale.language", ""), props.get("ro.product.locale.region", "")) if v
        ),
    ):
        if tag.strip():
            return tag.strip()
    return "en-US"
