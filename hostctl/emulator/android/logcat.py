"""logcat's ``-v`` formats: system/core/liblog/logprint.cpp (``android_log_formatLogLine``;
4.4's logprint.c has the same layouts for brief/process/tag/thread/raw/time/threadtime/long).
Modifiers (``year``, ``epoch``, ``uid``, ...) came in 7.0; ``epoch`` prints seconds since 1970."""

from __future__ import annotations

import datetime as _dt

FORMATS = ("brief", "process", "tag", "thread", "raw", "time", "threadtime", "long")
MODIFIERS = ("color", "descriptive", "epoch", "monotonic", "printable", "uid", "usec", "UTC",
             "year", "zone", "nsec")
BUFFERS = ("main", "system", "radio", "events", "crash", "all", "default", "kernel", "security", "stats")


def _stamp(t: float, mods: set[str]) -> str:
    """logprint.cpp ``android_log_formatLogLine``: ``epoch`` is ``%19lld`` seconds (right-aligned
    in 19 columns), else strftime ``%m-%d %H:%M:%S`` (``%Y-`` first with ``year``); then
    ``.%09ld`` (nsec), ``.%06ld`` (usec) or ``.%03ld``; ``zone`` appends strftime `` %z``."""
    secs = int(t)
    nsec = min(round((t - secs) * 1_000_000_000), 999_999_999)
    if "epoch" in mods:
        text, dt = f"{secs:>19d}", None
    else:
        dt = _dt.datetime.fromtimestamp(t, _dt.UTC if "UTC" in mods else None).astimezone(
            _dt.UTC if "UTC" in mods else None)
        text = dt.strftime("%Y-%m-%d %H:%M:%S" if "year" in mods else "%m-%d %H:%M:%S")
    if "nsec" in mods:
        text += f".{nsec:09d}"
    elif "usec" in mods:
        text += f".{nsec // 1000:06d}"
    else:
        text += f".{nsec // 1_000_000:03d}"
    if "zone" in mods and dt is not None:
        text += dt.strftime(" %z")
    return text


def format_entry(e, fmt: str = "threadtime", mods: set[str] | frozenset = frozenset()) -> str:
    """One entry (``time pid tid priority tag message``) in FORMAT, one output line per message line."""
    ts = _stamp(e.time, set(mods))
    lines = e.message.split("\n") or [""]
    if fmt == "long":
        return f"[ {ts} {e.pid:5d}:{e.tid:5d} {e.priority}/{e.tag} ]\n" + "\n".join(lines) + "\n"
    out = []
    for line in lines:
        if fmt == "brief":
            out.append(f"{e.priority}/{e.tag:<8}({e.pid:5d}): {line}")
        elif fmt == "time":
            out.append(f"{ts} {e.priority}/{e.tag:<8}({e.pid:5d}): {line}")
        elif fmt == "tag":
            out.append(f"{e.priority}/{e.tag:<8}: {line}")
        elif fmt == "thread":
            out.append(f"{e.priority}({e.pid:5d}:{e.tid:5d}) {line}")
        elif fmt == "process":
            out.append(f"{e.priority}({e.pid:5d}) {line}  ({e.tag})")
        elif fmt == "raw":
            out.append(line)
        else:
            out.append(f"{ts} {e.pid:5d} {e.tid:5d} {e.priority} {e.tag:<8}: {line}")
    return "\n".join(out)


def header(sdk: int, buffer: str = "main") -> str:
    return (f"--------- beginning of {buffer}" if sdk >= 21 else f"--------- beginning of /dev/log/{buffer}")


def parse_since(value: str, now: float) -> float | None:
    """``-t``/``-T`` with a time instead of a count (logcat.cpp: ``'MM-DD hh:mm:ss.mmm'``,
    ``'YYYY-MM-DD hh:mm:ss.mmm'`` or ``sssss.mmm`` since the epoch); None if it is neither."""
    text = value.strip()
    try:
        if text.replace(".", "", 1).isdigit() and "." in text:
            return float(text)
    except ValueError:
        return None
    year = _dt.datetime.fromtimestamp(now).year
    for fmt, prefix in (("%Y-%m-%d %H:%M:%S.%f", ""), ("%Y-%m-%d %H:%M:%S.%f", f"{year}-"),
                        ("%Y-%m-%d %H:%M:%S", f"{year}-")):
        try:
            return _dt.datetime.strptime(prefix + text, fmt).timestamp()
        except ValueError:
            continue
    return None
