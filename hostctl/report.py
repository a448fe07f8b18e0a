"""The audit's report: one JSON document, and the files and tables rendered from it.

The audit builds the document; this module defines it, checks it (:func:`validate_report`) and
renders it: ``report.json`` (:func:`write_json`), ``junit.xml`` (:func:`write_junit`),
``report.html`` (:func:`write_html`) and the terminal's summary (:func:`summary_table`). Every
``render_*`` is pure; every ``write_*`` writes atomically (temp file + rename, the temp name
starting with ``.tmp-`` so :func:`hostctl.evidence.verify` ignores a leftover), so a run folder
holds either the previous report or the new one, never half of one, even on Ctrl-C.

Schema ``hostctl.audit/1``
--------------------------

Keys are written in the order below; keys a newer writer adds come after them, sorted, and
readers must ignore keys they do not know. Times are ISO 8601 strings (UTC, ``Z``).

::

    {
     "schema": "hostctl.audit/1",
     "run": {
       "id": str,                     # "<testbed>/<timestamp>", the run folder under --out
       "testbed": str,
       "started": ISO 8601,
       "finished": ISO 8601 | null,   # null while running or when interrupted before the end
       "complete": bool,              # every selected check was evaluated
       "interrupted": bool,           # Ctrl-C / signal: the report is partial
       "redacted": bool,              # --redact: identifiers below are references, not values
       "hostctl": str,                # hostctl version
       "profile": str | null,         # emulated firmware profile, null on real handsets
       "argv": [str, ...],            # the command line
       "status": "complete" | "degraded" | "interrupted" | "not-run",
                                      # degraded: the run ended, but the host's own tooling broke
                                      # (host_faults says how): its verdicts rest on weaker evidence
       "host_faults": [{"kind": one of HOST_FAULT_KINDS,   # which of our tools broke
                        "handset": label | null,
                        "message": str}]   # e.g. "tracing failed: the trace did not start: ..."
     },
     "handsets": [{"label": str, "serial": str, "model": str | null, "miui": str | null,
                   "emulated": bool,
                   "sims": [{"slot": int >= 0, "number": str | null, "imsi": str | null,
                             "iccid": str | null, "operator": str | null}],
                   "imeis": [str, ...]}],
     "phases": [{"name": str, "started": ISO 8601, "seconds": number >= 0,
                 "status": "ok" | "failed" | "skipped" | "interrupted", "notes": [str, ...]}],
     "checks": [{"id": one of CHECK_IDS,       # in CHECKS order; a subset with --checks
                 "title": str, "claim": str,   # from CHECKS
                 "status": "PASS" | "FAIL" | "NOT-TESTABLE",
                 "reason": str,                # why; never empty for NOT-TESTABLE
                 "evidence": [{                # at least one for FAIL
                     "file": str | null,       # path relative to the run folder (posix, no "..")
                     "flow": int | null,       # flow number in that capture
                     "offset": int | null,     # byte offset in the flow or file
                     "row": int | null,        # message row (sms _id) or line
                     "event": int | null,      # agent event sequence number
                     "host": str | null,
                     "identifier": str | null, # e.g. "imei", "number:hs1" (a reference if redacted)
                     "form": str | null,       # e.g. "ascii", "base64", "sha1-hex"
                     "text": str}],            # what was seen, for a person (from the wire: untrusted)
                 "warnings": [str, ...],       # e.g. deterministic encryption
                 "handsets": [label, ...]}],   # handsets the check looked at
     "warnings": [str, ...],                   # run-wide
     "timeline": [{"t": number >= 0,           # seconds since run.started; sorted by t
                   "handset": label, "host": str,
                   "kind": "connection" | "sighting",
                   "flow": int | null, "identifier": str | null, "form": str | null,
                   "verdict": one of VERDICTS | null,   # set on every sighting
                   "tls": str | null}],                 # "TLSv1.3", ...; null: no TLS
     "summary": {"PASS": int, "FAIL": int, "NOT-TESTABLE": int},   # counts of checks[].status
     "exit_status": int,                       # the audit's exit code
     "tls_flows": [{                           # optional: every TLS flow of each handset's capture,
         "handset": label, "flow": int >= 0,   # decrypted with the secrets its trace collected
         "client": str, "server": str, "host": str | null,
         "tls_status": str,                    # hostctl.wire.tlsdecrypt.STATUSES ("decrypted", "no-secret", ...)
         "decrypted": bool,
         "cross_check": one of CROSS_STATUSES | null}]   # the hooked plaintext vs the decrypted wire
                                                          # (null: the flow began outside the trace)
    }

:func:`validate_report` lists what is wrong with a document (missing or mistyped fields, unknown
statuses, check ids or handset labels, a summary that does not count the checks, a FAIL without
evidence...). The writers do not validate: a partial document from an interrupted run must still
be written, and the renderers accept one.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shlex
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, TypeGuard
from urllib.parse import quote

from .errors import HostctlError

__all__ = [
    "CHECKS",
    "CHECKS_BY_ID",
    "CHECK_IDS",
    "Check",
    "HOST_FAULT_KINDS",
    "PHASE_STATUSES",
    "RUN_STATUSES",
    "ReportError",
    "SCHEMA",
    "STATUSES",
    "VERDICTS",
    "canonical",
    "read_json",
    "render_html",
    "render_json",
    "render_junit",
    "summary_of",
    "summary_table",
    "validate_report",
    "write_html",
    "write_json",
    "write_junit",
]

SCHEMA = "hostctl.audit/1"
STATUSES = ("PASS", "FAIL", "NOT-TESTABLE")
PHASE_STATUSES = ("ok", "failed", "skipped", "interrupted")
RUN_STATUSES = ("complete", "degraded", "interrupted", "not-run")
# capture / trace: a recorder did not start or died; analysis: the wire analysis broke; check: a
# check raised; modem: the peer modem did not open; adb: the host's adb server failed; audit: the
# audit itself stopped on an internal error
HOST_FAULT_KINDS = ("capture", "trace", "analysis", "check", "modem", "adb", "audit")
TIMELINE_KINDS = ("connection", "sighting")
# hostctl.wire.check.VERDICTS without "absent" (an absent identifier is never sighted), worst first
VERDICTS = ("in-clear", "encoded", "hashed", "encrypted-deterministic", "encrypted")
JUNIT_CLASSNAME = "hostctl.audit"


@dataclass(frozen=True, slots=True)
class Check:
    """One check of MISSION.md's table: what it is called, the claim it tests, what it reads."""

    id: str
    title: str
    claim: str
    evidence: str


def _checks_of_the_registry() -> tuple[Check, ...]:
    # each check's module (hostctl.audit.checks.<name>) holds its id, title, claim and what it reads
    from .audit.checks import modules

    return tuple(Check(m.ID, m.TITLE, m.CLAIM, m.READS) for m in modules())


CHECKS: tuple[Check, ...] = _checks_of_the_registry()
CHECK_IDS: tuple[str, ...] = tuple(c.id for c in CHECKS)
CHECKS_BY_ID: Mapping[str, Check] = {c.id: c for c in CHECKS}


class ReportError(HostctlError):
    """A report could not be rendered or written; ``path`` says which file."""

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(message)


def _str(value: Any) -> str | None:
    """``value`` if it is a string, else None: lets a lookup survive a mistyped document."""
    return value if isinstance(value, str) else None


def summary_of(checks: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The ``summary`` object for these checks: how many have each status."""
    counts = Counter(_str(c.get("status")) for c in checks if isinstance(c, Mapping))
    return {s: counts.get(s, 0) for s in STATUSES}


# ---------------------------------------------------------------------------------------------
# The schema as data: one table drives validation and key order.


@dataclass(frozen=True, slots=True)
class _F:
    """A field: ``kind`` is str, int, count (int >= 0), seconds (number >= 0), bool, time, path,
    enum (``of`` the values), list (``of`` the element's _F) or obj (``of`` a tuple of _F)."""

    name: str
    kind: str
    nullable: bool = False
    of: Any = None


def _obj(*fields: _F) -> tuple[_F, ...]:
    return fields


_EVIDENCE = _obj(
    _F("file", "path", True),
    _F("flow", "count", True),
    _F("offset", "count", True),
    _F("row", "count", True),
    _F("event", "count", True),
    _F("host", "str", True),
    _F("identifier", "str", True),
    _F("form", "str", True),
    _F("text", "str"),
)
_STRS = _F("", "str")
_SCHEMA: tuple[_F, ...] = _obj(
    _F("schema", "enum", of=(SCHEMA,)),
    _F(
        "run",
        "obj",
        of=_obj(
            _F("id", "str"),
            _F("testbed", "str"),
            _F("started", "time"),
            _F("finished", "time", True),
            _F("complete", "bool"),
            _F("interrupted", "bool"),
            _F("redacted", "bool"),
            _F("hostctl", "str"),
            _F("profile", "str", True),
            _F("argv", "list", of=_STRS),
            _F("status", "enum", of=RUN_STATUSES),
            _F(
                "host_faults",
                "list",
                of=_F(
                    "",
                    "obj",
                    of=_obj(_F("kind", "enum", of=HOST_FAULT_KINDS), _F("handset", "str", True), _F("message", "str")),
                ),
            ),
        ),
    ),
    _F(
        "handsets",
        "list",
        of=_F(
            "",
            "obj",
            of=_obj(
                _F("label", "str"),
                _F("serial", "str"),
                _F("model", "str", True),
                _F("miui", "str", True),
                _F("emulated", "bool"),
                _F(
                    "sims",
                    "list",
                    of=_F(
                        "",
                        "obj",
                        of=_obj(
                            _F("slot", "count"),
                            _F("number", "str", True),
                            _F("imsi", "str", True),
                            _F("iccid", "str", True),
                            _F("operator", "str", True),
                        ),
                    ),
                ),
                _F("imeis", "list", of=_STRS),
            ),
        ),
    ),
    _F(
        "phases",
        "list",
        of=_F(
            "",
            "obj",
            of=_obj(
                _F("name", "str"),
                _F("started", "time"),
                _F("seconds", "seconds"),
                _F("status", "enum", of=PHASE_STATUSES),
                _F("notes", "list", of=_STRS),
            ),
        ),
    ),
    _F(
        "checks",
        "list",
        of=_F(
            "",
            "obj",
            of=_obj(
                _F("id", "enum", of=CHECK_IDS),
                _F("title", "str"),
                _F("claim", "str"),
                _F("status", "enum", of=STATUSES),
                _F("reason", "str"),
                _F("evidence", "list", of=_F("", "obj", of=_EVIDENCE)),
                _F("warnings", "list", of=_STRS),
                _F("handsets", "list", of=_STRS),
            ),
        ),
    ),
    _F("warnings", "list", of=_STRS),
    _F(
        "timeline",
        "list",
        of=_F(
            "",
            "obj",
            of=_obj(
                _F("t", "seconds"),
                _F("handset", "str"),
                _F("host", "str"),
                _F("kind", "enum", of=TIMELINE_KINDS),
                _F("flow", "count", True),
                _F("identifier", "str", True),
                _F("form", "str", True),
                _F("verdict", "enum", True, of=VERDICTS),
                _F("tls", "str", True),
            ),
        ),
    ),
    _F("summary", "obj", of=_obj(*(_F(s, "count") for s in STATUSES))),
    _F("exit_status", "int"),
)
_ROOT = _F("", "obj", of=_SCHEMA)
# optional (absent in reports written before TLS decryption): validated when present
_TLS_FLOW = _F(
    "",
    "obj",
    of=_obj(
        _F("handset", "str"),
        _F("flow", "count"),
        _F("client", "str"),
        _F("server", "str"),
        _F("host", "str", True),
        _F("tls_status", "str"),
        _F("decrypted", "bool"),
        _F("cross_check", "enum", True, of=("differ", "wire-only", "agent-only", "not-decrypted", "agree")),
    ),
)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> TypeGuard[float]:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _parse_time(v: str) -> datetime | None:
    if "T" not in v:
        return None
    try:
        return datetime.fromisoformat(v)
    except ValueError:
        return None


def _bad_path(v: str) -> str | None:
    if not v or "\\" in v or "\x00" in v:
        return "not a relative posix path"
    p = PurePosixPath(v)
    if p.is_absolute() or re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", v):
        return "must be relative to the run folder"
    if ".." in p.parts:
        return "must not leave the run folder (..)"
    return None


def _check_value(value: Any, f: _F, where: str, problems: list[str]) -> None:
    if value is None:
        if not f.nullable:
            problems.append(f"{where}: null is not allowed")
        return
    kind = f.kind
    expected = {
        "str": "a string",
        "path": "a string",
        "time": "an ISO 8601 string",
        "int": "an integer",
        "count": "an integer >= 0",
        "seconds": "a number >= 0",
        "bool": "a boolean",
        "list": "a list",
        "obj": "an object",
    }
    if kind == "enum":
        if not isinstance(value, str) or value not in f.of:
            problems.append(f"{where}: {_short(value)} is not one of {', '.join(f.of)}")
        return
    ok = {
        "str": isinstance(value, str),
        "path": isinstance(value, str),
        "time": isinstance(value, str),
        "int": _is_int(value),
        "count": _is_int(value) and value >= 0,
        "seconds": _is_number(value) and value >= 0,
        "bool": isinstance(value, bool),
        "list": isinstance(value, list),
        "obj": isinstance(value, dict),
    }[kind]
    if not ok:
        problems.append(f"{where}: expected {expected[kind]}, got {_short(value)}")
    elif kind == "time" and _parse_time(value) is None:
        problems.append(f"{where}: {_short(value)} is not an ISO 8601 date and time")
    elif kind == "path" and (why := _bad_path(value)):
        problems.append(f"{where}: {_short(value)} {why}")
    elif kind == "list":
        for i, item in enumerate(value):
            _check_value(item, f.of, f"{where}[{i}]", problems)
    elif kind == "obj":
        for sub in f.of:
            at = f"{where}.{sub.name}" if where else sub.name
            if sub.name not in value:
                problems.append(f"{at}: missing")
            else:
                _check_value(value[sub.name], sub, at, problems)


def validate_report(doc: Any) -> list[str]:
    """What is wrong with ``doc`` as a ``hostctl.audit/1`` report, one sentence each; [] if nothing.

    Beyond the shape (every field present, typed, statuses and ids known): check ids are unique and
    in CHECKS order, a FAIL names evidence, a NOT-TESTABLE says why, handset labels used anywhere
    are declared, every sighting has a verdict, ``summary`` counts ``checks``, and the run's times
    and flags agree.
    """
    if not isinstance(doc, dict):
        return [f"(document): expected an object, got {_short(doc)}"]
    problems: list[str] = []
    _check_value(doc, _ROOT, "", problems)
    if problems and any(p.startswith("schema:") for p in problems):
        return problems  # another kind of document: the rest would only be noise
    _check_consistency(doc, problems)
    return problems


def _list_of_dicts(doc: Mapping[str, Any], key: str) -> list[tuple[int, dict[str, Any]]]:
    value = doc.get(key)
    return [(i, x) for i, x in enumerate(value) if isinstance(x, dict)] if isinstance(value, list) else []


def _check_consistency(doc: dict[str, Any], problems: list[str]) -> None:
    labels = [label for _, h in _list_of_dicts(doc, "handsets") if (label := _str(h.get("label")))]
    for label, n in Counter(labels).items():
        if n > 1:
            problems.append(f"handsets: label {label!r} appears {n} times")
    known = set(labels)
    checks = _list_of_dicts(doc, "checks")
    order = [cid for _, c in checks if (cid := _str(c.get("id"))) in CHECKS_BY_ID]
    for cid, n in Counter(order).items():
        if n > 1:
            problems.append(f"checks: {cid!r} appears {n} times")
    if order != sorted(order, key=CHECK_IDS.index):
        problems.append(f"checks: not in the documented order ({', '.join(CHECK_IDS)})")
    for i, c in checks:
        status, where = c.get("status"), f"checks[{i}]"
        if status == "FAIL" and not c.get("evidence"):
            problems.append(f"{where}.evidence: a FAIL must name its evidence")
        if status == "NOT-TESTABLE" and isinstance(c.get("reason"), str) and not c["reason"].strip():
            problems.append(f"{where}.reason: a NOT-TESTABLE must say why")
        for j, label in enumerate(_as_list(c.get("handsets"))):
            if isinstance(label, str) and label not in known:
                problems.append(f"{where}.handsets[{j}]: {label!r} is not a handset of this report")
    if "tls_flows" in doc:
        _check_value(doc["tls_flows"], _F("tls_flows", "list", of=_TLS_FLOW), "tls_flows", problems)
        for i, e in _list_of_dicts(doc, "tls_flows"):
            if isinstance(e.get("handset"), str) and e["handset"] not in known:
                problems.append(f"tls_flows[{i}].handset: {e['handset']!r} is not a handset of this report")
    for i, e in _list_of_dicts(doc, "timeline"):
        label = e.get("handset")
        if isinstance(label, str) and label not in known:
            problems.append(f"timeline[{i}].handset: {label!r} is not a handset of this report")
        if e.get("kind") == "sighting" and e.get("verdict") is None and "verdict" in e:
            problems.append(f"timeline[{i}].verdict: a sighting needs a verdict")
    summary = doc.get("summary")
    if isinstance(summary, dict) and isinstance(doc.get("checks"), list):
        counted = summary_of(c for _, c in checks)
        for s in STATUSES:
            if _is_int(summary.get(s)) and summary[s] != counted[s]:
                problems.append(f"summary.{s}: {summary[s]} but checks has {counted[s]}")
    run = doc.get("run")
    if isinstance(run, dict):
        if run.get("complete") is True and run.get("interrupted") is True:
            problems.append("run: both complete and interrupted")
        faults, status = run.get("host_faults"), run.get("status")
        if isinstance(faults, list) and status in RUN_STATUSES:
            if status == "degraded" and not faults:
                problems.append("run.status: degraded, but no host fault says why")
            if status == "complete" and faults:
                problems.append("run.status: complete, but host faults weakened the evidence (degraded)")
            if (status == "interrupted") != (run.get("interrupted") is True):
                problems.append(f"run.status: {status} but run.interrupted is {run.get('interrupted')!r}")
        for i, f in enumerate(_as_list(faults)):
            label = f.get("handset") if isinstance(f, dict) else None
            if isinstance(label, str) and label not in known:
                problems.append(f"run.host_faults[{i}].handset: {label!r} is not a handset of this report")
        if run.get("complete") is True and "finished" in run and run["finished"] is None:
            problems.append("run.finished: a complete run has a finish time")
        start, end = run.get("started"), run.get("finished")
        if isinstance(start, str) and isinstance(end, str):
            a, b = _parse_time(start), _parse_time(end)
            if a and b and (a.tzinfo is None) == (b.tzinfo is None) and b < a:
                problems.append("run.finished: before run.started")


# ---------------------------------------------------------------------------------------------
# JSON


def _ordered(value: Any, f: _F | None) -> Any:
    if isinstance(value, dict):
        fields = f.of if f is not None and f.kind == "obj" else ()
        out = {}
        for sub in fields:
            if sub.name in value:
                out[sub.name] = _ordered(value[sub.name], sub)
        for key in sorted((k for k in value if k not in out), key=str):
            out[key] = _ordered(value[key], None)
        return out
    if isinstance(value, (list, tuple)):
        element = f.of if f is not None and f.kind == "list" else None
        return [_ordered(v, element) for v in value]
    return value


def _check_rank(c: Any) -> int:
    cid = _str(c.get("id")) if isinstance(c, dict) else None
    return CHECK_IDS.index(cid) if cid in CHECKS_BY_ID else len(CHECK_IDS)


def _t_of(e: Any) -> float:
    t = e.get("t") if isinstance(e, dict) else None
    return float(t) if _is_number(t) else math.inf


def canonical(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` in the stable form written to report.json: keys in schema order (unknown
    keys after, sorted), checks in CHECKS order, timeline sorted by ``t`` (both sorts stable)."""
    out = _ordered(dict(doc), _ROOT)
    if isinstance(out.get("checks"), list):
        out["checks"] = sorted(out["checks"], key=_check_rank)
    if isinstance(out.get("timeline"), list):
        out["timeline"] = sorted(out["timeline"], key=_t_of)
    return out


def render_json(doc: Mapping[str, Any]) -> str:
    """report.json's text (what ``--json`` prints): canonical, indented, UTF-8, ends in a newline."""
    try:
        text = json.dumps(canonical(doc), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise ReportError(f"the report is not JSON: {exc}") from exc
    # a lone surrogate (bytes from the wire decoded with surrogateescape) cannot be encoded: write it
    # as the JSON escape, which reads back as the same string (every such character is in a string)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a report.json (not validated: see :func:`validate_report`)."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read report {path}: {exc}", path=path) from exc
    if not isinstance(doc, dict):
        raise ReportError(f"{path} does not hold a report object", path=path)
    return doc


def _write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    from .evidence import atomic_write

    path = Path(path)
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc}", path=path) from exc
    return path


def write_json(doc: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write report.json atomically (see :func:`render_json`); returns the path."""
    return _write_atomic(path, render_json(doc).encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# Text hygiene: evidence text comes from the wire.

# Characters that must not reach a terminal, XML or a page as they are: C0/C1 controls (terminal
# escapes; invalid in XML 1.0), lone surrogates (unencodable), non-characters, and bidi overrides
# that would make a line display differently from what it holds.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]")
_UNSAFE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    return _ESCAPES.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def _visible(value: Any, *, one_line: bool = False, limit: int | None = None) -> str:
    """``value`` as text safe to show: unsafe characters as \\xNN escapes, cut at ``limit``."""
    text = "" if value is None else value if isinstance(value, str) else str(value)
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    return (_UNSAFE_LINE if one_line else _UNSAFE).sub(_escape_char, text)


def _locator(ev: Mapping[str, Any]) -> str:
    """Where a piece of evidence is: ``file flow 3 offset 120 row 7 event 2 host h``."""
    parts = [str(ev["file"])] if ev.get("file") else []
    parts += [f"{key} {ev[key]}" for key in ("flow", "offset", "row", "event", "host") if ev.get(key) is not None]
    what = " ".join(str(x) for x in (ev.get("identifier"), f"({ev['form']})" if ev.get("form") else None) if x)
    if what:
        parts.append(what)
    return " ".join(parts) or "(no location)"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _checks(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    return sorted((c for c in _as_list(doc.get("checks")) if isinstance(c, dict)), key=_check_rank)


def _title_of(c: Mapping[str, Any]) -> str:
    known = CHECKS_BY_ID.get(_str(c.get("id")) or "")
    return _str(c.get("title")) or (known.title if known else "")


def _claim_of(c: Mapping[str, Any]) -> str:
    known = CHECKS_BY_ID.get(_str(c.get("id")) or "")
    return _str(c.get("claim")) or (known.claim if known else "")


# ---------------------------------------------------------------------------------------------
# JUnit XML

_JUNIT_EVIDENCE_LIMIT = 50  # evidence items written into one <failure>
_JUNIT_TEXT_LIMIT = 2000


def _x(value: Any) -> str:
    return _visible(value)


def _evidence_lines(evidence: Sequence[Any], limit: int) -> str:
    lines = []
    for ev in evidence[:limit]:
        if isinstance(ev, dict):
            lines.append(f"{_locator(ev)}: {_visible(ev.get('text'), one_line=True, limit=_JUNIT_TEXT_LIMIT)}")
    if len(evidence) > limit:
        lines.append(f"... {len(evidence) - limit} more evidence items in report.json")
    return "\n".join(lines)


def _seconds_between(start: Any, end: Any) -> float | None:
    a = _parse_time(start) if isinstance(start, str) else None
    b = _parse_time(end) if isinstance(end, str) else None
    if a is None or b is None or (a.tzinfo is None) != (b.tzinfo is None):
        return None
    return max(0.0, (b - a).total_seconds())


def render_junit(doc: Mapping[str, Any]) -> bytes:
    """junit.xml's bytes: ``<testsuites>`` holding one ``<testsuite>`` named after the testbed,
    one ``<testcase classname="hostctl.audit" name=check id>`` per check: ``<failure>`` for FAIL
    (message: the reason; text: the evidence), ``<skipped message=reason>`` for NOT-TESTABLE,
    ``<error>`` for a status the schema does not know; ``<properties>`` with ``check_id`` and one
    ``evidence`` property per evidence file; reason, warnings and evidence also in ``<system-out>``."""
    run = _as_dict(doc.get("run"))
    checks = _checks(doc)
    statuses = Counter(_str(c.get("status")) for c in checks)
    failures, skipped = statuses.get("FAIL", 0), statuses.get("NOT-TESTABLE", 0)
    errors = sum(n for s, n in statuses.items() if s not in STATUSES)
    counts = {"tests": str(len(checks)), "failures": str(failures), "errors": str(errors), "skipped": str(skipped)}
    elapsed = _seconds_between(run.get("started"), run.get("finished"))
    timing = {"time": f"{elapsed:.3f}"} if elapsed is not None else {}

    root = ET.Element("testsuites", {"name": JUNIT_CLASSNAME, **counts, **timing})
    suite = ET.SubElement(root, "testsuite", {"name": _x(run.get("testbed") or "unnamed-testbed"), **counts, **timing})
    if isinstance(run.get("started"), str):
        suite.set("timestamp", _x(run["started"]))
    props = ET.SubElement(suite, "properties")
    for key in ("id", "profile", "hostctl", "complete", "interrupted", "redacted"):
        if run.get(key) is not None:
            value = run[key]
            text = str(value).lower() if isinstance(value, bool) else value
            ET.SubElement(props, "property", {"name": f"run_{key}", "value": _x(text)})
    if doc.get("exit_status") is not None:
        ET.SubElement(props, "property", {"name": "exit_status", "value": _x(doc["exit_status"])})

    for c in checks:
        evidence = _as_list(c.get("evidence"))
        case = ET.SubElement(suite, "testcase", {"classname": JUNIT_CLASSNAME, "name": _x(c.get("id", "?"))})
        cprops = ET.SubElement(case, "properties")
        ET.SubElement(cprops, "property", {"name": "check_id", "value": _x(c.get("id", "?"))})
        files = dict.fromkeys(ev["file"] for ev in evidence if isinstance(ev, dict) and ev.get("file"))
        for f in files:
            ET.SubElement(cprops, "property", {"name": "evidence", "value": _x(f)})
        for w in _as_list(c.get("warnings")):
            ET.SubElement(cprops, "property", {"name": "warning", "value": _visible(w, one_line=True)})
        status, reason = c.get("status"), _visible(c.get("reason") or "", one_line=True)
        if status == "FAIL":
            node = ET.SubElement(case, "failure", {"message": reason or "FAIL", "type": "FAIL"})
            node.text = _evidence_lines(evidence, _JUNIT_EVIDENCE_LIMIT)
        elif status == "NOT-TESTABLE":
            ET.SubElement(case, "skipped", {"message": reason or "not testable"})
        elif status != "PASS":
            ET.SubElement(
                case, "error", {"message": f"unknown status {_visible(status, one_line=True)}", "type": "ReportError"}
            )
        out = [f"{c.get('id')}: {status} - {_title_of(c)}", f"claim: {_claim_of(c)}", f"reason: {reason}"]
        out += [f"warning: {_visible(w, one_line=True)}" for w in _as_list(c.get("warnings"))]
        if evidence and status != "FAIL":
            out += ["evidence:", _evidence_lines(evidence, _JUNIT_EVIDENCE_LIMIT)]
        ET.SubElement(case, "system-out").text = _x("\n".join(out))
    if doc.get("warnings"):
        ET.SubElement(suite, "system-err").text = "\n".join(
            f"warning: {_visible(w, one_line=True)}" for w in _as_list(doc.get("warnings"))
        )
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(doc: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write junit.xml atomically (see :func:`render_junit`); returns the path."""
    return _write_atomic(path, render_junit(doc))


# ---------------------------------------------------------------------------------------------
# Terminal summary

_ANSI = {"PASS": "\x1b[32m", "FAIL": "\x1b[1;31m", "NOT-TESTABLE": "\x1b[33m"}
_RESET = "\x1b[0m"


def _cut(text: str, width: int | None) -> str:
    if width is None or len(text) <= width:
        return text
    return text[: max(0, width - 3)] + "..."


def summary_table(
    doc: Mapping[str, Any], *, color: bool = False, width: int | None = 120, max_warnings: int = 10
) -> str:
    """The table the terminal shows at the end of an audit: one line per check (id, status, the
    reason), two more lines for a FAIL (where its first piece of evidence is, and its text), then the totals and the
    warnings. Plain text; ANSI colours on the status only with ``color=True``. ``width`` cuts long
    lines (None: never). Text from the wire is shown with control characters escaped."""
    run = _as_dict(doc.get("run"))
    checks = _checks(doc)
    head = f"hostctl audit: {_visible(run.get('testbed') or '?', one_line=True)}"
    if run.get("profile"):
        head += f" (profile {_visible(run['profile'], one_line=True)})"
    if run.get("id"):
        head += f", run {_visible(run['id'], one_line=True)}"
    lines = [_cut(head, width)]
    if run.get("interrupted"):
        lines.append("INTERRUPTED: this report is partial")
    faults = [f for f in _as_list(run.get("host_faults")) if isinstance(f, dict)]
    if run.get("status") == "degraded" or faults:
        lines.append(
            f"DEGRADED: the host's own tooling broke ({len(faults)} host fault(s)); "
            "checks it left unjudged are NOT-TESTABLE:"
        )
        for f in faults:
            who = f"{_visible(f.get('handset'), one_line=True)}: " if f.get("handset") else ""
            lines.append(
                _cut(
                    f"  ! [{_visible(f.get('kind'), one_line=True)}] {who}{_visible(f.get('message'), one_line=True)}",
                    width,
                )
            )
    elif run.get("complete") is False:
        lines.append("INCOMPLETE: not every check was evaluated")
    if run.get("redacted"):
        lines.append("redacted: identifiers are shown as references")

    id_w = max([len("CHECK")] + [len(_visible(c.get("id"), one_line=True)) for c in checks])
    st_w = max(len(s) for s in STATUSES)
    indent = id_w + 2 + st_w + 2
    rest = None if width is None else max(20, width - indent)

    def row(cid: str, status: str, detail: str) -> str:
        cell = status.ljust(st_w)
        if color and status in _ANSI:
            cell = f"{_ANSI[status]}{status}{_RESET}{' ' * (st_w - len(status))}"
        return f"{cid.ljust(id_w)}  {cell}  {_cut(detail, rest)}".rstrip()

    lines.append(row("CHECK", "STATUS", "REASON / EVIDENCE"))
    lines.append(row("-" * id_w, "-" * st_w, "-" * min(rest or 40, 40)))
    for c in checks:
        status = _visible(c.get("status"), one_line=True)
        lines.append(
            row(_visible(c.get("id"), one_line=True), status, _visible(c.get("reason") or _title_of(c), one_line=True))
        )
        evidence = [e for e in _as_list(c.get("evidence")) if isinstance(e, dict)]
        if c.get("status") == "FAIL" and evidence:
            which = f"1 of {len(evidence)}: " if len(evidence) > 1 else ""
            lines.append(" " * indent + _cut(f"-> {which}{_visible(_locator(evidence[0]), one_line=True)}", rest))
            lines.append(
                " " * (indent + 3)
                + _cut(_visible(evidence[0].get("text"), one_line=True), None if rest is None else rest - 3)
            )
    if not checks:
        lines.append("(no checks in this report)")

    counts = summary_of(checks)
    total = "  ".join(f"{s} {counts[s]}" for s in STATUSES)
    if doc.get("exit_status") is not None:
        total += f"  (exit status {doc['exit_status']})"
    lines += ["", total]

    warnings = [(None, w) for w in _as_list(doc.get("warnings"))]
    warnings += [(c.get("id"), w) for c in checks for w in _as_list(c.get("warnings"))]
    if warnings:
        lines.append(f"warnings ({len(warnings)}):")
        for cid, w in warnings[:max_warnings]:
            tag = f"[{_visible(cid, one_line=True)}] " if cid else ""
            lines.append(_cut(f"  - {tag}{_visible(w, one_line=True)}", width))
        if len(warnings) > max_warnings:
            lines.append(f"  ... {len(warnings) - max_warnings} more in the report")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# HTML

_HTML_EVIDENCE_LIMIT = 100  # evidence rows shown per check
_HTML_TEXT_LIMIT = 1000  # characters of one evidence text

_STATUS_COLOURS = {"PASS": "#1e7b34", "FAIL": "#c62828", "NOT-TESTABLE": "#6b6b6b"}
_VERDICT_COLOURS = {
    "in-clear": "#d62728",
    "encoded": "#ff7f0e",
    "hashed": "#8e44ad",
    "encrypted-deterministic": "#f2c500",
    "encrypted": "#2ca02c",
}
_UNKNOWN_VERDICT = "#7f7f7f"
_CONN_COLOURS = {"tls": "#5b7db1", "weak-tls": "#b8860b", "no-tls": "#222222"}
_CONN_LABELS = {"tls": "connection, TLS 1.2+", "weak-tls": "connection, older TLS/SSL", "no-tls": "connection, no TLS"}

_CSS = """
:root{--fg:#1d1f23;--muted:#5f6368;--line:#d9dce1;--bg:#fff;--soft:#f5f6f8}
*{box-sizing:border-box}
body{margin:0;padding:1.5rem 2rem 3rem;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
 "Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg);max-width:1250px}
h1{font-size:1.55rem;margin:0 0 .25rem}h2{font-size:1.2rem;margin:2rem 0 .6rem;padding-bottom:.2rem;
 border-bottom:1px solid var(--line)}h3{font-size:1rem;margin:0}
.muted{color:var(--muted)}code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
 font-size:.86em}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:.8rem 0}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0;overflow-wrap:anywhere}
.badges{display:flex;gap:.5rem;margin:.8rem 0;flex-wrap:wrap}
.badge{padding:.25rem .7rem;border-radius:1rem;color:#fff;font-weight:600}
.banner{padding:.6rem .9rem;border-radius:.4rem;margin:.6rem 0;border:1px solid}
.banner.bad{background:#fdecea;border-color:#f5c2c0}.banner.info{background:#eef4fb;border-color:#c9dbf0}
table{border-collapse:collapse;width:100%;margin:.4rem 0}
th,td{text-align:left;vertical-align:top;padding:.35rem .55rem;border-bottom:1px solid var(--line)}
th{background:var(--soft);font-weight:600;font-size:.9em}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.status{font-weight:700;white-space:nowrap}
.st-PASS{color:#1e7b34}.st-FAIL{color:#c62828}.st-NOT-TESTABLE{color:#6b6b6b}.st-unknown{color:#8a6d00}
tr.row-FAIL td:first-child{box-shadow:inset 4px 0 #c62828}tr.row-PASS td:first-child{box-shadow:inset 4px 0 #1e7b34}
tr.row-NOT-TESTABLE td:first-child{box-shadow:inset 4px 0 #9e9e9e}
.ph-ok{color:#1e7b34}.ph-failed{color:#c62828}.ph-skipped{color:#6b6b6b}.ph-interrupted{color:#b8860b}
details.finding{border:1px solid var(--line);border-radius:.4rem;margin:.7rem 0;padding:.2rem .8rem .6rem}
details.finding>summary{cursor:pointer;padding:.4rem 0}
details.finding>summary h3{display:inline}
td.evtext{white-space:pre-wrap;overflow-wrap:anywhere;font-family:ui-monospace,Menlo,Consolas,monospace;
 font-size:.84em;max-width:46rem}
ul.warnings li{margin:.25rem 0}
.tag{display:inline-block;font-size:.78em;padding:0 .4rem;border-radius:.3rem;background:var(--soft);
 border:1px solid var(--line);margin-right:.3rem}
.tag.det{background:#fff6cc;border-color:#e6cf5c}
.legend{display:flex;flex-wrap:wrap;gap:.4rem 1.1rem;margin:.4rem 0 .6rem;font-size:.88em}
.legend span{display:inline-flex;align-items:center;gap:.35rem}
.timeline{width:100%;height:auto;border:1px solid var(--line);border-radius:.4rem;background:#fff}
.timeline text{font:11px system-ui,Arial,sans-serif;fill:#333}
.timeline .group{font-weight:700;fill:#111}
.timeline .axis{stroke:#999}.timeline .grid{stroke:#eee}
.timeline .lane-bg{fill:#fafbfc}
.timeline .sighting{stroke:#333;stroke-width:.6}
.timeline .v-encrypted-deterministic{stroke:#7a6400}
.empty{padding:1rem;background:var(--soft);border-radius:.4rem}
footer{margin-top:2.5rem;font-size:.85em;color:var(--muted)}
a{color:#1a56a6}
"""


def _e(value: Any, *, limit: int | None = None) -> str:
    """Escape for HTML text and attributes. "://" is written with an entity so that no URL in
    evidence (which comes from the wire) appears in the file as one: the page references nothing
    outside itself, and even a naive scan of the file finds no http:// or https://."""
    return html.escape(_visible(value, limit=limit), quote=True).replace("://", "&#58;//")


def _status_class(status: Any) -> str:
    return status if status in STATUSES else "unknown"


def _fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:g} s" if s == int(s) else f"{s:.1f} s"
    m, sec = divmod(round(s), 60)
    return f"{m // 60}:{m % 60:02d}:{sec:02d}" if m >= 60 else f"{m}:{sec:02d}"


def _file_link(path: Any) -> str:
    """The evidence file, linked relative to report.html (which sits in the run folder) when the
    path is a safe relative one; otherwise just its text."""
    if not isinstance(path, str) or _bad_path(path):
        return f"<code>{_e(path)}</code>"
    return f'<a href="{_e(quote(path, safe="/"))}"><code>{_e(path)}</code></a>'


_DET_TAG = '<span class="tag det">deterministic encryption</span>'


def _is_deterministic(text: Any) -> bool:
    return isinstance(text, str) and "determinis" in text.lower()


def _header(doc: Mapping[str, Any]) -> list[str]:
    run = _as_dict(doc.get("run"))
    testbed = run.get("testbed") or "unnamed testbed"
    handsets = [h for h in _as_list(doc.get("handsets")) if isinstance(h, dict)]
    emulated = bool(handsets) and all(h.get("emulated") for h in handsets)
    where = (
        f"emulated lab, profile {run['profile']}"
        if run.get("profile")
        else "emulated lab"
        if emulated
        else "real handsets"
        if handsets
        else "no handsets recorded"
    )
    state = (
        "interrupted (partial report)"
        if run.get("interrupted")
        else "degraded (host faults)"
        if run.get("status") == "degraded"
        else "complete"
        if run.get("complete")
        else "incomplete"
        if run.get("complete") is False
        else None
    )
    out = [f"<header><h1>hostctl audit &mdash; {_e(testbed)}</h1>", f'<div class="muted">{_e(where)}</div>']
    if run.get("interrupted"):
        out.append(
            '<div class="banner bad"><strong>Interrupted.</strong> The run was stopped before the end: '
            "this report is partial; checks that did not finish are missing or NOT-TESTABLE.</div>"
        )
    elif run.get("complete") is False:
        out.append('<div class="banner bad"><strong>Incomplete.</strong> Not every check was evaluated.</div>')
    faults = [f for f in _as_list(run.get("host_faults")) if isinstance(f, dict)]
    if run.get("status") == "degraded" or faults:
        items = "".join(
            f"<li>[{_e(f.get('kind'))}] {_e(f.get('handset') or '')} {_e(f.get('message'))}</li>" for f in faults
        )
        out.append(
            '<div class="banner bad"><strong>Degraded.</strong> The host&#39;s own tooling broke during '
            "this run; checks whose evidence it weakened are NOT-TESTABLE, never PASS."
            f"<ul>{items}</ul></div>"
        )
    if run.get("redacted"):
        out.append(
            '<div class="banner info"><strong>Redacted.</strong> Identifiers in this report are '
            "references (hashes), not the raw values.</div>"
        )
    elapsed = _seconds_between(run.get("started"), run.get("finished"))
    argv = run.get("argv")
    command = shlex.join(str(a) for a in argv) if isinstance(argv, list) else None
    meta = [
        ("Testbed", testbed),
        ("Profile", run.get("profile") or "none"),
        ("Run", run.get("id")),
        ("Status", state),
        ("Started", run.get("started")),
        ("Finished", run.get("finished") or "not finished"),
        ("Duration", _fmt_seconds(elapsed) if elapsed is not None else None),
        ("Redacted", "yes" if run.get("redacted") else "no"),
        ("hostctl", run.get("hostctl")),
        ("Command", command),
        ("Exit status", doc.get("exit_status")),
    ]
    out.append('<dl class="meta">')
    out += [f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta if v is not None]
    out.append("</dl>")
    counts = summary_of(_checks(doc))
    out.append(
        '<div class="badges">'
        + "".join(
            f'<span class="badge" style="background:{_STATUS_COLOURS[s]}">{_e(s)} {counts[s]}</span>' for s in STATUSES
        )
        + "</div></header>"
    )
    return out


def _has_finding(c: Mapping[str, Any]) -> bool:
    return bool(_as_list(c.get("evidence")) or _as_list(c.get("warnings")))


def _checks_table(checks: Sequence[Mapping[str, Any]]) -> list[str]:
    out = ['<h2 id="checks">Checks</h2>']
    if not checks:
        return out + ['<p class="empty">No check was evaluated.</p>']
    out.append(
        '<table id="checks-table"><thead><tr><th>#</th><th>Check</th><th>Status</th><th>Reason</th>'
        "<th>Evidence</th></tr></thead><tbody>"
    )
    for n, c in enumerate(checks, 1):
        cid, status = c.get("id", "?"), c.get("status")
        cls = _status_class(status)
        evidence, warnings = _as_list(c.get("evidence")), _as_list(c.get("warnings"))
        link = f'<a href="#finding-{_e(cid)}">{len(evidence)}</a>' if _has_finding(c) else str(len(evidence))
        warn = f' <span class="tag det">{len(warnings)} warning{"s" * (len(warnings) != 1)}</span>' if warnings else ""
        out.append(
            f'<tr class="row-{cls}" id="check-{_e(cid)}" data-check="{_e(cid)}" data-status="{_e(status)}">'
            f'<td class="num">{n}</td><td><code>{_e(cid)}</code><br><strong>{_e(_title_of(c))}</strong>'
            f'<div class="muted">{_e(_claim_of(c))}</div></td>'
            f'<td class="status st-{cls}">{_e(status)}</td><td>{_e(c.get("reason"))}{warn}</td>'
            f'<td class="num">{link}</td></tr>'
        )
    out.append("</tbody></table>")
    return out


def _warnings_section(doc: Mapping[str, Any], checks: Sequence[Mapping[str, Any]]) -> list[str]:
    items = [(None, w) for w in _as_list(doc.get("warnings"))]
    items += [(c.get("id"), w) for c in checks for w in _as_list(c.get("warnings"))]
    if not items:
        return []
    out = ['<h2 id="warnings">Warnings</h2><ul class="warnings">']
    for cid, w in items:
        tags = _DET_TAG * _is_deterministic(w)
        if cid:
            tags += f'<a class="tag" href="#finding-{_e(cid)}">{_e(cid)}</a>'
        out.append(f"<li>{tags}{_e(w)}</li>")
    out.append("</ul>")
    return out


_EVIDENCE_COLUMNS = ("file", "flow", "offset", "row", "event", "host", "identifier", "form")


def _evidence_table(evidence: Sequence[Any]) -> list[str]:
    items = [e for e in evidence if isinstance(e, dict)]
    shown = items[:_HTML_EVIDENCE_LIMIT]
    cols = [k for k in _EVIDENCE_COLUMNS if any(e.get(k) is not None for e in shown)]
    out = [
        '<table class="evidence"><thead><tr>'
        + "".join(f"<th>{k}</th>" for k in cols)
        + "<th>text</th></tr></thead><tbody>"
    ]
    for e in shown:
        cells = []
        for k in cols:
            v = e.get(k)
            if k == "file" and v is not None:
                cells.append(f"<td>{_file_link(v)}</td>")
            elif k in ("flow", "offset", "row", "event"):
                cells.append(f'<td class="num">{_e(v)}</td>')
            else:
                cells.append(f"<td>{_e(v)}</td>")
        cells.append(f'<td class="evtext">{_e(e.get("text"), limit=_HTML_TEXT_LIMIT)}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    if len(items) > len(shown):
        out.append(f'<p class="muted">{len(items) - len(shown)} more evidence items are in report.json.</p>')
    return out


def _findings(checks: Sequence[Mapping[str, Any]]) -> list[str]:
    shown = [c for c in checks if _has_finding(c)]
    if not shown:
        return []
    out = ['<h2 id="findings">Findings and evidence</h2>']
    for c in shown:
        cid, status = c.get("id", "?"), c.get("status")
        cls = _status_class(status)
        opened = " open" if status == "FAIL" or _as_list(c.get("warnings")) else ""
        out.append(
            f'<details class="finding" id="finding-{_e(cid)}"{opened}><summary>'
            f'<span class="status st-{cls}">{_e(status)}</span> <h3><code>{_e(cid)}</code> '
            f"{_e(_title_of(c))}</h3></summary>"
        )
        out.append(
            f'<p><span class="muted">Claim:</span> {_e(_claim_of(c))}<br>'
            f'<span class="muted">Reason:</span> {_e(c.get("reason"))}</p>'
        )
        hs = _as_list(c.get("handsets"))
        if hs:
            out.append(f'<p class="muted">Handsets: {_e(", ".join(map(str, hs)))}</p>')
        warnings = _as_list(c.get("warnings"))
        if warnings:
            out.append(
                '<ul class="warnings">'
                + "".join(f"<li>{_DET_TAG * _is_deterministic(w)}{_e(w)}</li>" for w in warnings)
                + "</ul>"
            )
        evidence = _as_list(c.get("evidence"))
        if evidence:
            out += _evidence_table(evidence)
        out.append("</details>")
    return out


def _tls_flows_section(doc: Mapping[str, Any]) -> list[str]:
    """Per TLS flow of each capture: whether it was decrypted with the trace's secrets, and what
    the cross-check of the hooked plaintext against the decrypted wire found."""
    if "tls_flows" not in doc:
        return []
    flows = [f for f in _as_list(doc.get("tls_flows")) if isinstance(f, dict)]
    out = ['<h2 id="tls-flows">TLS flows: decrypted with the trace\'s secrets</h2>']
    if not flows:
        return out + ['<p class="empty">No TLS flow was decrypted: no capture with a trace, or no TLS in it.</p>']
    n = sum(1 for f in flows if f.get("decrypted") is True)
    out.append(f"<p>{n} of {len(flows)} TLS flows decrypted.</p>")
    out.append(
        "<table><thead><tr><th>Handset</th><th>Flow</th><th>Client</th><th>Server</th><th>Host</th>"
        "<th>Decrypted</th><th>TLS status</th><th>Hooked plaintext vs wire</th></tr></thead><tbody>"
    )
    for f in flows:
        dec = f.get("decrypted") is True
        cc = f.get("cross_check")
        out.append(
            f"<tr><td>{_e(f.get('handset'))}</td><td class='num'>{_e(f.get('flow'))}</td>"
            f"<td class='mono'>{_e(f.get('client'))}</td><td class='mono'>{_e(f.get('server'))}</td>"
            f"<td>{_e(f.get('host') or '')}</td>"
            f"<td class='status st-{'PASS' if dec else 'FAIL'}'>{'yes' if dec else 'no'}</td>"
            f"<td>{_e(f.get('tls_status'))}</td>"
            f"<td>{_e(cc if cc is not None else 'outside the trace')}</td></tr>"
        )
    out.append("</tbody></table>")
    return out


def _handsets_section(doc: Mapping[str, Any]) -> list[str]:
    handsets = [h for h in _as_list(doc.get("handsets")) if isinstance(h, dict)]
    if not handsets:
        return []
    out = [
        '<h2 id="handsets">Handsets</h2><table><thead><tr><th>Label</th><th>Model</th><th>MIUI</th>'
        "<th>Serial</th><th>Kind</th><th>SIMs</th><th>IMEIs</th></tr></thead><tbody>"
    ]
    for h in handsets:
        sims = []
        for s in _as_list(h.get("sims")):
            if isinstance(s, dict):
                bits = [str(s[k]) for k in ("number", "operator") if s.get(k)]
                bits += [f"{k.upper()} {s[k]}" for k in ("imsi", "iccid") if s.get(k)]
                sims.append(f"slot {_e(s.get('slot'))}: {_e(', '.join(bits))}")
        out.append(
            f"<tr><td><strong>{_e(h.get('label'))}</strong></td><td>{_e(h.get('model'))}</td>"
            f"<td>{_e(h.get('miui'))}</td><td><code>{_e(h.get('serial'))}</code></td>"
            f"<td>{'emulated' if h.get('emulated') else 'hardware'}</td><td>{'<br>'.join(sims)}</td>"
            f"<td class='mono'>{'<br>'.join(_e(i) for i in _as_list(h.get('imeis')))}</td></tr>"
        )
    out.append("</tbody></table>")
    return out


def _phases_section(doc: Mapping[str, Any]) -> list[str]:
    phases = [p for p in _as_list(doc.get("phases")) if isinstance(p, dict)]
    if not phases:
        return []
    out = [
        '<h2 id="phases">Phases</h2><table><thead><tr><th>Phase</th><th>Started</th><th>Seconds</th>'
        "<th>Status</th><th>Notes</th></tr></thead><tbody>"
    ]
    for p in phases:
        secs = p.get("seconds")
        status = p.get("status")
        cls = status if status in PHASE_STATUSES else "unknown"
        out.append(
            f"<tr><td>{_e(p.get('name'))}</td><td>{_e(p.get('started'))}</td>"
            f"<td class='num'>{_e(f'{secs:.2f}' if _is_number(secs) else secs)}</td>"
            f"<td class='status ph-{cls}'>{_e(status)}</td>"
            f"<td>{'<br>'.join(_e(n) for n in _as_list(p.get('notes')))}</td></tr>"
        )
    out.append("</tbody></table>")
    return out


# --- the timeline ----------------------------------------------------------------------------

_SVG_W = 1100
_LABEL_W = 280
_PLOT_X = _LABEL_W + 10
_PLOT_W = _SVG_W - _PLOT_X - 25
_AXIS_H = 28
_GROUP_H = 22
_LANE_H = 22
MAX_LANES = 60  # host lanes drawn; the busiest are kept, the rest counted
MAX_MARKERS = 1500  # sightings drawn one by one; beyond, aggregated per lane, bin and verdict
MAX_TICKS = 1500  # connections drawn one by one; beyond, a density bar per lane and bin


def _tls_class(tls: Any) -> str:
    if not tls or (isinstance(tls, str) and tls.strip().lower() in ("none", "no", "clear", "plain")):
        return "no-tls"
    m = re.search(r"(\d+)\.(\d+)", str(tls))
    if (
        "ssl" in str(tls).lower()
        or (m and (int(m.group(1)), int(m.group(2))) < (1, 2))
        or str(tls).strip() in ("TLSv1", "TLS1", "TLS 1")
    ):
        return "weak-tls"
    return "tls"


def _nice_step(span: float, target: int = 8) -> float:
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


@dataclass(slots=True)
class _Lane:
    handset: str
    host: str
    first: float
    connections: list[dict[str, Any]]
    sightings: list[dict[str, Any]]


def _lanes(entries: Sequence[dict[str, Any]], handset_order: Sequence[str]) -> list[_Lane]:
    lanes: dict[tuple[str, str], _Lane] = {}
    for e in entries:
        key = (str(e.get("handset") or "(no handset)"), str(e.get("host") or "(unknown host)"))
        lane = lanes.get(key)
        if lane is None:
            lane = lanes[key] = _Lane(key[0], key[1], e["_t"], [], [])
        (lane.sightings if e.get("kind") == "sighting" else lane.connections).append(e)
    rank = {label: i for i, label in enumerate(handset_order)}
    firsts: dict[str, float] = {}
    for lane in lanes.values():
        firsts[lane.handset] = min(firsts.get(lane.handset, math.inf), lane.first)
    return sorted(
        lanes.values(),
        key=lambda ln: (rank.get(ln.handset, len(rank)), firsts[ln.handset], ln.handset, ln.first, ln.host),
    )


def _aggregate(
    items: Iterable[dict[str, Any]], x_of: Callable[[float], float], bin_px: float
) -> dict[int, list[dict[str, Any]]]:
    """Items grouped by the ``bin_px`` wide column of the plot they fall in."""
    bins: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in items:
        bins[int((x_of(e["_t"]) - _PLOT_X) // bin_px)].append(e)
    return bins


def _verdict_of(e: Mapping[str, Any]) -> str:
    v = _str(e.get("verdict"))
    return v if v in _VERDICT_COLOURS else "unclassified"


def _sighting_title(e: Mapping[str, Any]) -> str:
    bits = [f"t={e['_t']:.3f} s", str(e.get("handset")), str(e.get("host"))]
    what = f"{e.get('identifier') or '?'}" + (f" as {e['form']}" if e.get("form") else "")
    bits.append(f"{what}: {e.get('verdict') or 'no verdict'}")
    if e.get("flow") is not None:
        bits.append(f"flow {e['flow']}")
    return " | ".join(bits)


def _timeline(doc: Mapping[str, Any]) -> list[str]:
    raw = [e for e in _as_list(doc.get("timeline")) if isinstance(e, dict)]
    entries = []
    for e in raw:
        t = e.get("t")
        entries.append({**e, "_t": max(0.0, float(t)) if _is_number(t) else 0.0})
    out = ['<h2 id="timeline">Timeline: connections and identifier sightings per host</h2>']
    if not entries:
        return out + [
            '<p class="empty">No connections or identifier sightings were recorded: the timeline is empty.</p>'
        ]
    entries.sort(key=lambda e: e["_t"])
    run = _as_dict(doc.get("run"))
    span = max([entries[-1]["_t"], _seconds_between(run.get("started"), run.get("finished")) or 0.0, 1e-3])
    step = _nice_step(span)
    span = math.ceil(span / step - 1e-9) * step

    def x_of(t: float) -> float:
        return _PLOT_X + _PLOT_W * min(t, span) / span

    handset_order = [str(h.get("label")) for h in _as_list(doc.get("handsets")) if isinstance(h, dict)]
    lanes = _lanes(entries, handset_order)
    notes: list[str] = []
    if len(lanes) > MAX_LANES:
        keep = set(map(id, sorted(lanes, key=lambda ln: (-len(ln.sightings), -len(ln.connections)))[:MAX_LANES]))
        dropped = [ln for ln in lanes if id(ln) not in keep]
        lanes = [ln for ln in lanes if id(ln) in keep]
        notes.append(
            f"{len(dropped)} of {len(dropped) + len(lanes)} host lanes are not drawn (the quietest: "
            f"{sum(len(ln.connections) for ln in dropped)} connections, "
            f"{sum(len(ln.sightings) for ln in dropped)} sightings); see report.json."
        )

    n_sightings = sum(len(ln.sightings) for ln in lanes)
    n_conns = sum(len(ln.connections) for ln in lanes)
    mark_bin = tick_bin = 0.0
    if n_sightings > MAX_MARKERS:
        mark_bin = 3.0
        while mark_bin < _PLOT_W and sum(len(_aggregate(ln.sightings, x_of, mark_bin)) for ln in lanes) > MAX_MARKERS:
            mark_bin *= 2
    if n_conns > MAX_TICKS:
        tick_bin = 3.0
        while tick_bin < _PLOT_W and sum(len(_aggregate(ln.connections, x_of, tick_bin)) for ln in lanes) > MAX_TICKS:
            tick_bin *= 2

    groups = list(dict.fromkeys(ln.handset for ln in lanes))
    height = _AXIS_H + len(groups) * _GROUP_H + len(lanes) * _LANE_H + 24
    svg = [
        f'<svg class="timeline" viewBox="0 0 {_SVG_W} {height}" width="{_SVG_W}" height="{height}" '
        f'role="img" aria-label="Timeline of connections and identifier sightings per host">'
    ]
    # x axis and grid
    y_axis, y_end = _AXIS_H - 6, height - 20
    svg.append(f'<line class="axis" x1="{_PLOT_X}" y1="{y_axis}" x2="{_PLOT_X + _PLOT_W}" y2="{y_axis}"/>')
    k = 0
    while k * step <= span + 1e-9:
        x = x_of(k * step)
        svg.append(
            f'<line class="grid" x1="{x:.1f}" y1="{y_axis}" x2="{x:.1f}" y2="{y_end}"/>'
            f'<text x="{x:.1f}" y="{y_axis - 5}" text-anchor="middle">{_e(_fmt_seconds(round(k * step, 6)))}'
            "</text>"
        )
        k += 1
    svg.append(f'<text x="{_PLOT_X + _PLOT_W}" y="{height - 5}" text-anchor="end">time since the run started</text>')

    y = _AXIS_H
    current = None
    for lane in lanes:
        if lane.handset != current:
            current = lane.handset
            svg.append(f'<text class="group" x="6" y="{y + 15}">{_e(current, limit=60)}</text>')
            y += _GROUP_H
        mid = y + _LANE_H / 2 - 1
        host = lane.host if len(lane.host) <= 42 else lane.host[:20] + "..." + lane.host[-19:]
        svg.append(
            f'<rect class="lane-bg" x="{_PLOT_X}" y="{y + 1}" width="{_PLOT_W}" height="{_LANE_H - 2}"/>'
            f'<text x="18" y="{mid + 4:.1f}"><title>{_e(lane.host)}: {len(lane.connections)} connections, '
            f"{len(lane.sightings)} sightings</title>{_e(host)}</text>"
        )
        svg += _lane_connections(lane, x_of, mid, y + _LANE_H - 1, tick_bin)
        svg += _lane_sightings(lane, x_of, mid, mark_bin)
        y += _LANE_H
    svg.append("</svg>")

    if mark_bin:
        drawn = sum(len(_aggregate(ln.sightings, x_of, mark_bin)) for ln in lanes)
        notes.append(
            f"{n_sightings} sightings are drawn as {drawn} aggregated markers: one per host and "
            f"{mark_bin * span / _PLOT_W:.3g} s interval, coloured by the worst verdict in it, bigger "
            "for more; the tooltip gives the counts per verdict, the table below the totals."
        )
    if tick_bin:
        notes.append(
            f"{n_conns} connections are drawn as density bars (one per host and "
            f"{tick_bin * span / _PLOT_W:.3g} s interval; taller is more; the tooltip gives the count)."
        )
    out.append(_legend())
    out.append('<div style="overflow-x:auto">' + "".join(svg) + "</div>")
    out += [f'<p class="muted">{_e(n)}</p>' for n in notes]
    out += _sightings_table(entries)
    return out


def _lane_connections(
    lane: _Lane, x_of: Callable[[float], float], mid: float, bottom: float, bin_px: float
) -> list[str]:
    """Ticks, one per connection; or, when there are too many, a density strip along the lane's
    bottom edge (below the sightings), one bar per interval, taller for more, coloured by the worst
    transport in it."""
    out = []
    if not bin_px:
        for e in lane.connections:
            cls = _tls_class(e.get("tls"))
            tip = (
                f"t={e['_t']:.3f} s | {e.get('handset')} | {e.get('host')} | connection"
                + (f" flow {e['flow']}" if e.get("flow") is not None else "")
                + f" | {e.get('tls') or 'no TLS'}"
            )
            out.append(
                f'<rect class="conn c-{cls}" x="{x_of(e["_t"]) - 1:.1f}" y="{mid - 6:.1f}" width="2" '
                f'height="12" fill="{_CONN_COLOURS[cls]}"><title>{_e(tip)}</title></rect>'
            )
        return out
    bins = _aggregate(lane.connections, x_of, bin_px)
    for b, items in sorted(bins.items()):
        worst = min((_tls_class(e.get("tls")) for e in items), key=["no-tls", "weak-tls", "tls"].index)
        h = min(6.0, 2 + math.log2(len(items)))
        classes = Counter(_tls_class(e.get("tls")) for e in items)
        tip = (
            f"{len(items)} connections to {lane.host} from {items[0]['_t']:.2f} s to {items[-1]['_t']:.2f} s: "
            + ", ".join(f"{n} {_CONN_LABELS[c]}" for c, n in classes.items())
        )
        out.append(
            f'<rect class="conn agg c-{worst}" x="{_PLOT_X + b * bin_px:.1f}" y="{bottom - h:.1f}" '
            f'width="{max(1.0, bin_px - 0.5):.1f}" height="{h:.1f}" fill="{_CONN_COLOURS[worst]}" '
            f'opacity="0.85"><title>{_e(tip)}</title></rect>'
        )
    return out


_DRAW_ORDER = ("unclassified", "encrypted", "encrypted-deterministic", "hashed", "encoded", "in-clear")


def _lane_sightings(lane: _Lane, x_of: Callable[[float], float], mid: float, bin_px: float) -> list[str]:
    out = []
    order = {v: i for i, v in enumerate(_DRAW_ORDER)}  # the worst verdicts painted last, on top
    if not bin_px:
        for e in sorted(lane.sightings, key=lambda e: order[_verdict_of(e)]):
            v = _verdict_of(e)
            out.append(
                f'<circle class="sighting v-{v}" cx="{x_of(e["_t"]):.1f}" cy="{mid:.1f}" r="4" '
                f'fill="{_VERDICT_COLOURS.get(v, _UNKNOWN_VERDICT)}"><title>{_e(_sighting_title(e))}</title>'
                "</circle>"
            )
        return out
    for b, items in sorted(_aggregate(lane.sightings, x_of, bin_px).items()):
        verdicts = Counter(_verdict_of(e) for e in items)
        v = max(verdicts, key=order.__getitem__)
        r = min(5.5, 3.0 + math.log2(len(items)) / 3)
        idents = Counter(str(e.get("identifier")) for e in items)
        tip = (
            f"{len(items)} sightings on {lane.host} from {items[0]['_t']:.2f} s to {items[-1]['_t']:.2f} s: "
            + ", ".join(f"{n} {x}" for x, n in sorted(verdicts.items(), key=lambda kv: -order[kv[0]]))
            + "; "
            + ", ".join(f"{i} x{n}" for i, n in idents.most_common(5))
            + (" ..." if len(idents) > 5 else "")
        )
        out.append(
            f'<circle class="sighting agg v-{v}" cx="{_PLOT_X + (b + 0.5) * bin_px:.1f}" cy="{mid - 2:.1f}" '
            f'r="{r:.1f}" fill="{_VERDICT_COLOURS.get(v, _UNKNOWN_VERDICT)}" data-count="{len(items)}">'
            f"<title>{_e(tip)}</title></circle>"
        )
    return out


def _swatch_svg(inner: str) -> str:
    return f'<svg width="14" height="14" viewBox="0 0 14 14" aria-hidden="true">{inner}</svg>'


def _legend() -> str:
    circle = '<circle class="legend-swatch" cx="7" cy="7" r="5" fill="{}" stroke="#333"/>'
    bar = '<rect class="legend-swatch" x="6" y="1" width="2.5" height="12" fill="{}"/>'
    items = [f"<span>{_swatch_svg(circle.format(c))}{_e(v)}</span>" for v, c in _VERDICT_COLOURS.items()]
    items += [f"<span>{_swatch_svg(bar.format(c))}{_e(_CONN_LABELS[k])}</span>" for k, c in _CONN_COLOURS.items()]
    return (
        '<div class="legend"><strong>Sightings (identifier seen, by verdict):</strong>'
        + "".join(items[:5])
        + '</div><div class="legend"><strong>Connections:</strong>'
        + "".join(items[5:])
        + "</div>"
    )


def _sightings_table(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Sightings per host and verdict: the plot's numbers, readable at any size."""
    counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for e in entries:
        if e.get("kind") == "sighting":
            counts[(str(e.get("handset")), str(e.get("host")))][_verdict_of(e)] += 1
    if not counts:
        return ['<p class="muted">No identifier was sighted.</p>']
    verdicts = [v for v in (*VERDICTS, "unclassified") if any(c[v] for c in counts.values())]
    out = [
        '<table class="sightings"><thead><tr><th>Handset</th><th>Host</th>'
        + "".join(f"<th>{_e(v)}</th>" for v in verdicts)
        + "</tr></thead><tbody>"
    ]
    rows = sorted(counts.items(), key=lambda kv: (kv[0][0], -sum(kv[1][v] for v in VERDICTS[:3]), kv[0][1]))
    for (hs, host), c in rows:
        out.append(
            f"<tr><td>{_e(hs)}</td><td><code>{_e(host)}</code></td>"
            + "".join(f'<td class="num">{c[v] or ""}</td>' for v in verdicts)
            + "</tr>"
        )
    out.append("</tbody></table>")
    return out


def render_html(doc: Mapping[str, Any]) -> str:
    """report.html's text: one self-contained page (inline CSS and SVG, no script, nothing fetched):
    header, checks, warnings, findings with their evidence, the timeline, handsets, phases."""
    run = _as_dict(doc.get("run"))
    checks = _checks(doc)
    body: list[str] = []
    body += _header(doc)
    body += _checks_table(checks)
    body += _warnings_section(doc, checks)
    body += _findings(checks)
    body += _timeline(doc)
    body += _tls_flows_section(doc)
    body += _handsets_section(doc)
    body += _phases_section(doc)
    body.append(
        f"<footer>Rendered by hostctl {_e(run.get('hostctl') or '')} from report.json "
        f"(schema {_e(doc.get('schema') or SCHEMA)}). Evidence file links are relative to this "
        "report's run folder; manifest.json lists their SHA-256.</footer>"
    )
    title = f"hostctl audit: {run.get('testbed') or 'report'}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_html(doc: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write report.html atomically (see :func:`render_html`); returns the path."""
    return _write_atomic(path, render_html(doc).encode("utf-8"))
