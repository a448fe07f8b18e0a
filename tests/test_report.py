"""The audit's report: the schema and its validator, report.json, junit.xml, report.html and the
terminal summary, rendered from hand-made documents (no lab needed)."""

from __future__ import annotations

import copy
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from hostctl.report import (CHECK_IDS, CHECKS, MAX_LANES, MAX_MARKERS, SCHEMA, STATUSES, VERDICTS, ReportError,
                            canonical, read_json, render_html, render_json, render_junit, summary_of,
                            summary_table, validate_report, write_html, write_json, write_junit)

EXPECTED_IDS = ("opt-in-default", "no-identifiers-before-opt-in", "ip-when-online", "sms-fallback-when-offline",
                "presence-lookup-minimal", "phone-numbers-encrypted", "content-encrypted", "transport-secure",
                "imsi-after-login", "no-retention", "tls-plaintext-agrees")
HOSTILE = '<script>alert("x")</script>&amp; \x1b[31mred\x1b[0m \x00\u202e'
FAIL_IDS = ("opt-in-default", "no-identifiers-before-opt-in", "phone-numbers-encrypted", "transport-secure")
NT_IDS = ("no-retention",)


def _ev(**kw):
    base = {"file": None, "flow": None, "offset": None, "row": None, "event": None, "host": None,
            "identifier": None, "form": None, "text": ""}
    return {**base, **kw}


def make_doc(timeline=None) -> dict:
    """A complete, valid report as the audit would produce it (the 2014-07 firmware: some FAILs)."""
    checks = []
    for c in CHECKS:
        status = "FAIL" if c.id in FAIL_IDS else "NOT-TESTABLE" if c.id in NT_IDS else "PASS"
        evidence, warnings = [], []
        if c.id == "no-identifiers-before-opt-in":
            evidence = [_ev(file="handsets/hs1/capture.pcapng", flow=3, offset=412, host="api.account.xiaomi.com",
                            identifier="imei", form="ascii", text="POST /pass/register imei=864804021234562"),
                        _ev(file="handsets/hs1/agent.jsonl", event=17, host="api.account.xiaomi.com",
                            identifier="number:hs1", form="base64", text=HOSTILE)]
        elif status == "FAIL":
            evidence = [_ev(file="handsets/hs1/capture.pcapng", flow=5, offset=0, host="resolver.msg.xiaomi.net",
                            text="GET http://resolver.msg.xiaomi.net/gslb/?ver=3.0&phone=%2B8613800000001")]
        elif c.id == "ip-when-online":
            evidence = [_ev(file="handsets/hs1/messages.json", row=42, text="mx_status=17 type=2")]
        if c.id == "phone-numbers-encrypted":
            warnings = ["deterministic encryption: pid is the same ciphertext in 2 sessions (AES/CBC, fixed IV)"]
        checks.append({"id": c.id, "title": c.title, "claim": c.claim, "status": status,
                       "reason": ("emulator only: the real server cannot be inspected" if status == "NOT-TESTABLE"
                                  else f"{c.id} evaluated"),
                       "evidence": evidence, "warnings": warnings, "handsets": ["hs1", "hs2"]})
    if timeline is None:
        timeline = [
            {"t": 0.5, "handset": "hs1", "host": "api.account.xiaomi.com", "kind": "connection", "flow": 3,
             "identifier": None, "form": None, "verdict": None, "tls": "TLSv1.2"},
            {"t": 0.9, "handset": "hs1", "host": "api.account.xiaomi.com", "kind": "sighting", "flow": 3,
             "identifier": "imei", "form": "ascii", "verdict": "in-clear", "tls": "TLSv1.2"},
            {"t": 1.2, "handset": "hs1", "host": "resolver.msg.xiaomi.net", "kind": "connection", "flow": 5,
             "identifier": None, "form": None, "verdict": None, "tls": None},
            {"t": 1.3, "handset": "hs1", "host": "resolver.msg.xiaomi.net", "kind": "sighting", "flow": 5,
             "identifier": "number:hs1", "form": "url", "verdict": "encoded", "tls": None},
            {"t": 2.0, "handset": "hs1", "host": "api.account.xiaomi.com", "kind": "sighting", "flow": 3,
             "identifier": "imsi", "form": "sha1-hex", "verdict": "hashed", "tls": "TLSv1.2"},
            {"t": 3.5, "handset": "hs2", "host": "app.chat.xiaomi.net", "kind": "connection", "flow": 9,
             "identifier": None, "form": None, "verdict": None, "tls": "TLSv1.3"},
            {"t": 4.0, "handset": "hs2", "host": "app.chat.xiaomi.net", "kind": "sighting", "flow": 9,
             "identifier": "number:hs2", "form": "aes-cbc", "verdict": "encrypted-deterministic", "tls": "TLSv1.3"},
            {"t": 4.2, "handset": "hs2", "host": "app.chat.xiaomi.net", "kind": "sighting", "flow": 9,
             "identifier": "number:hs1", "form": "aes-gcm", "verdict": "encrypted", "tls": "TLSv1.3"},
        ]
    return {
        "schema": SCHEMA,
        "run": {"id": "lab/20250131T091502Z", "testbed": "lab", "started": "2025-01-31T09:15:02Z",
                "finished": "2025-01-31T09:15:20Z", "complete": True, "interrupted": False, "redacted": False,
                "hostctl": "0.1.0", "profile": "miui-v5-2014-07",
                "argv": ["hostctl", "audit", "--emulator", "--profile", "miui-v5-2014-07"],
                "status": "complete", "host_faults": []},
        "handsets": [
            {"label": "hs1", "serial": "emulator-5554", "model": "RedMi 1S", "miui": "V5", "emulated": True,
             "sims": [{"slot": 0, "number": "+8613800000001", "imsi": "460001234567890",
                       "iccid": "89860012345678901238", "operator": "CHINA MOBILE"}],
             "imeis": ["864804021234562"]},
            {"label": "hs2", "serial": "emulator-5556", "model": "RedMi 1S", "miui": "V5", "emulated": True,
             "sims": [{"slot": 0, "number": "+8613800000002", "imsi": None, "iccid": None, "operator": None}],
             "imeis": []},
        ],
        "phases": [{"name": "boot", "started": "2025-01-31T09:15:02Z", "seconds": 1.5, "status": "ok", "notes": []},
                   {"name": "call", "started": "2025-01-31T09:15:04Z", "seconds": 0.0, "status": "skipped",
                    "notes": ["the testbed has no call path"]}],
        "checks": checks,
        "warnings": ["1 opaque value repeats across sessions (deterministic encryption?)"],
        "timeline": timeline,
        "summary": summary_of(checks),
        "exit_status": 1,
    }


# --- the table of checks and the schema ------------------------------------------------------

def test_checks_table_has_the_eleven_checks_in_mission_order():
    assert CHECK_IDS == EXPECTED_IDS
    for c in CHECKS:
        assert c.title and c.claim and c.evidence


def test_timeline_verdicts_are_the_wire_checks_without_absent():
    wire = pytest.importorskip("hostctl.wire.check")
    assert VERDICTS == tuple(v for v in wire.VERDICTS if v != "absent")


def test_sample_document_is_valid():
    assert validate_report(make_doc()) == []


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["run"].pop("started"), "run.started: missing"),
    (lambda d: d["checks"][2].update(status="MAYBE"), "checks[2].status: 'MAYBE' is not one of PASS, FAIL"),
    (lambda d: d["checks"][0].update(id="opt-out"), "checks[0].id: 'opt-out' is not one of"),
    (lambda d: d["checks"][0].pop("evidence"), "checks[0].evidence: missing"),
    (lambda d: d["checks"][0].update(evidence=[]), "checks[0].evidence: a FAIL must name its evidence"),
    (lambda d: d["checks"][9].update(reason=" "), "checks[9].reason: a NOT-TESTABLE must say why"),
    (lambda d: d["summary"].update(PASS=9), "summary.PASS: 9 but checks has 6"),
    (lambda d: d["run"].update(complete="yes"), "run.complete: expected a boolean"),
    (lambda d: d.update(exit_status=True), "exit_status: expected an integer"),
    (lambda d: d["run"].update(started="yesterday"), "run.started: 'yesterday' is not an ISO 8601"),
    (lambda d: d["checks"][1]["evidence"][0].update(file="/etc/passwd"), "must be relative to the run folder"),
    (lambda d: d["checks"][1]["evidence"][0].update(file="../x.pcapng"), "must not leave the run folder"),
    (lambda d: d["checks"][1]["evidence"][0].update(flow=-1), "flow: expected an integer >= 0"),
    (lambda d: d["timeline"][0].update(handset="hs9"), "timeline[0].handset: 'hs9' is not a handset"),
    (lambda d: d["timeline"][1].update(verdict=None), "timeline[1].verdict: a sighting needs a verdict"),
    (lambda d: d["timeline"][1].update(verdict="rot13"), "timeline[1].verdict: 'rot13' is not one of"),
    (lambda d: d["timeline"][1].update(kind="dns"), "timeline[1].kind: 'dns' is not one of"),
    (lambda d: d["phases"][0].update(status="done"), "phases[0].status: 'done' is not one of"),
    (lambda d: d["checks"].reverse(), "checks: not in the documented order"),
    (lambda d: d["checks"].insert(10, copy.deepcopy(d["checks"][9])), "checks: 'no-retention' appears 2 times"),
    (lambda d: d["run"].update(interrupted=True), "run: both complete and interrupted"),
    (lambda d: d["run"].update(finished="2025-01-31T09:00:00Z"), "run.finished: before run.started"),
    (lambda d: d["handsets"][0]["sims"][0].pop("iccid"), "handsets[0].sims[0].iccid: missing"),
])
def test_validator_names_the_problem(mutate, expected):
    doc = make_doc()
    mutate(doc)
    problems = validate_report(doc)
    assert any(expected in p for p in problems), problems


def test_validator_on_something_else():
    assert validate_report([]) == ["(document): expected an object, got []"]
    assert validate_report({"schema": "hostctl.manifest"})[0].startswith("schema: 'hostctl.manifest' is not one of")


def test_validator_accepts_a_subset_of_checks_and_unknown_extra_keys():
    doc = make_doc()
    doc["checks"] = [c for c in doc["checks"] if c["id"] in ("ip-when-online", "content-encrypted")]
    doc["summary"] = summary_of(doc["checks"])
    doc["future"] = {"anything": 1}
    doc["run"]["extra"] = "x"
    assert validate_report(doc) == []


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, path + (i,))


@pytest.mark.parametrize("junk", [[], {}, 1.5, None, True, "x"], ids=repr)
def test_nothing_crashes_on_a_mistyped_field(junk):
    """Every field in turn replaced by a value of the wrong type: the validator reports it (or
    accepts it where it fits) and the renderers still render; nothing raises."""
    base = make_doc()
    for path in list(_paths(base))[1:]:
        doc = make_doc()
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = junk
        problems = validate_report(doc)
        original = base
        for key in path:
            original = original[key]
        if isinstance(junk, (list, dict)) and not isinstance(original, (list, dict)):
            assert problems, path                  # no scalar field takes a list or an object
        render_html(doc)
        ET.fromstring(render_junit(doc))
        summary_table(doc)


# --- report.json -----------------------------------------------------------------------------

def test_json_round_trip_is_stable_and_ordered(tmp_path):
    doc = make_doc()
    doc["checks"].reverse()                   # canonical puts them back in CHECKS order
    doc["timeline"].reverse()                 # ... and the timeline in time order
    doc["zz_extra"] = 1
    path = write_json(doc, tmp_path / "report.json")
    back = read_json(path)
    assert back == canonical(doc)
    assert validate_report(back) == []
    assert list(back) == ["schema", "run", "handsets", "phases", "checks", "warnings", "timeline", "summary",
                          "exit_status", "zz_extra"]
    assert list(back["run"]) == ["id", "testbed", "started", "finished", "complete", "interrupted", "redacted",
                                 "hostctl", "profile", "argv", "status", "host_faults"]
    assert list(back["checks"][0]) == ["id", "title", "claim", "status", "reason", "evidence", "warnings",
                                       "handsets"]
    assert list(back["checks"][1]["evidence"][0]) == ["file", "flow", "offset", "row", "event", "host",
                                                      "identifier", "form", "text"]
    assert [c["id"] for c in back["checks"]] == list(CHECK_IDS)
    assert [e["t"] for e in back["timeline"]] == sorted(e["t"] for e in doc["timeline"])
    assert back["checks"][1]["evidence"][1]["text"] == HOSTILE      # JSON keeps the exact bytes seen
    first = path.read_bytes()
    write_json(back, path)                    # rewriting what was read gives the same bytes
    assert path.read_bytes() == first == render_json(doc).encode()
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]   # no temp file left


def test_json_keeps_undecodable_wire_bytes(tmp_path):
    doc = make_doc()
    raw = b"imei=\xff\xfe 864804021234562".decode("utf-8", "surrogateescape")   # as a capture reader decodes
    doc["checks"][1]["evidence"][0]["text"] = raw
    path = write_json(doc, tmp_path / "report.json")
    assert read_json(path)["checks"][1]["evidence"][0]["text"] == raw
    assert "\\udcff" in path.read_text(encoding="utf-8")
    assert "\\udcff" in render_html(doc) and "\\udcff" in summary_table(doc)
    ET.fromstring(render_junit(doc))


def test_json_write_failure_is_a_report_error_and_keeps_the_old_file(tmp_path):
    path = write_json(make_doc(), tmp_path / "report.json")
    before = path.read_bytes()
    bad = make_doc()
    bad["run"]["started"] = object()
    with pytest.raises(ReportError, match="not JSON"):
        write_json(bad, path)
    nan = make_doc()
    nan["timeline"][0]["t"] = float("nan")
    with pytest.raises(ReportError):
        write_json(nan, path)
    assert path.read_bytes() == before
    with pytest.raises(ReportError) as info:
        write_json(make_doc(), tmp_path / "missing-dir" / "report.json")
    assert info.value.path.endswith("report.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


# --- junit.xml -------------------------------------------------------------------------------

def test_junit_parses_back_with_counts_and_properties(tmp_path):
    doc = make_doc()
    path = write_junit(doc, tmp_path / "junit.xml")
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    assert suite.get("name") == "lab"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("errors")) == \
        (str(len(CHECK_IDS)), str(len(FAIL_IDS)), str(len(NT_IDS)), "0")
    assert float(suite.get("time")) == 18.0
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == list(CHECK_IDS)
    assert {c.get("classname") for c in cases} == {"hostctl.audit"}
    assert len(suite.findall("testcase/failure")) == len(FAIL_IDS)
    assert len(suite.findall("testcase/skipped")) == len(NT_IDS)
    by_id = {c.get("name"): c for c in cases}
    for cid, case in by_id.items():
        props = [(p.get("name"), p.get("value")) for p in case.findall("properties/property")]
        assert ("check_id", cid) in props
    props = [(p.get("name"), p.get("value")) for p in by_id["no-identifiers-before-opt-in"].findall(
        "properties/property")]
    assert ("evidence", "handsets/hs1/capture.pcapng") in props and ("evidence", "handsets/hs1/agent.jsonl") in props
    failure = by_id["no-identifiers-before-opt-in"].find("failure")
    assert failure.get("message") == "no-identifiers-before-opt-in evaluated"
    assert "handsets/hs1/capture.pcapng flow 3 offset 412 host api.account.xiaomi.com imei (ascii)" in failure.text
    assert "imei=864804021234562" in failure.text
    assert '<script>alert("x")</script>' in failure.text        # text content, escaped in the file
    assert "\x1b" not in failure.text and "\\x1b[31m" in failure.text and "\\x00" in failure.text
    assert by_id["no-retention"].find("skipped").get("message").startswith("emulator only")
    assert by_id["ip-when-online"].find("failure") is None and by_id["ip-when-online"].find("skipped") is None
    assert ("warning", doc["checks"][5]["warnings"][0]) in [
        (p.get("name"), p.get("value")) for p in by_id["phone-numbers-encrypted"].findall("properties/property")]
    run_props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert run_props["run_profile"] == "miui-v5-2014-07" and run_props["exit_status"] == "1"


def test_junit_marks_an_unknown_status_as_an_error_and_survives_a_partial_document():
    doc = make_doc()
    doc["checks"][2]["status"] = "MAYBE"
    suite = ET.fromstring(render_junit(doc)).find("testsuite")
    assert suite.get("errors") == "1"
    partial = ET.fromstring(render_junit({"schema": SCHEMA, "run": {"testbed": "rack"}, "checks": []}))
    assert partial.find("testsuite").get("name") == "rack" and partial.find("testsuite").get("tests") == "0"
    assert ET.fromstring(render_junit({})).find("testsuite") is not None


# --- report.html -----------------------------------------------------------------------------

class Page(HTMLParser):
    """Everything a test needs from the page: tags with attributes, text, the SVG markers."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.rows: dict[str, dict[str, str | None]] = {}
        self._row: str | None = None
        self.row_text: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "tr" and a.get("data-check"):
            self._row = a["data-check"]
            self.rows[self._row] = a
            self.row_text[self._row] = []

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._row:
            self.row_text[self._row].append(data)

    def classes(self, tag):
        return [(a.get("class") or "").split() for t, a in self.tags if t == tag]


def parse(html_text: str) -> Page:
    page = Page()
    page.feed(html_text)
    page.close()
    return page


def test_html_has_every_check_with_its_status(tmp_path):
    doc = make_doc()
    path = write_html(doc, tmp_path / "report.html")
    page = parse(path.read_text(encoding="utf-8"))
    for c in doc["checks"]:
        assert page.rows[c["id"]]["data-status"] == c["status"]
        row = "".join(page.row_text[c["id"]])
        assert c["id"] in row and c["status"] in row and c["reason"] in row
    text = "".join(page.text)
    for wanted in ("lab", "miui-v5-2014-07", "2025-01-31T09:15:02Z", "2025-01-31T09:15:20Z", "Redacted", "18 s",
                   "deterministic encryption: pid is the same ciphertext", "opaque value repeats", "RedMi 1S",
                   "the testbed has no call path"):
        assert wanted in text, wanted


def test_html_is_self_contained():
    doc = make_doc()
    html_text = render_html(doc)
    page = parse(html_text)
    tags = [t for t, _ in page.tags]
    assert "script" not in tags and "link" not in tags and "img" not in tags and "iframe" not in tags
    for tag, attrs in page.tags:
        assert "src" not in attrs, tag
        assert "xmlns" not in attrs, tag
        for name, value in attrs.items():
            assert not (value or "").lower().startswith(("http:", "https:", "//", "javascript:", "data:")), (tag, name)
    lowered = html_text.lower()
    for needle in ("<script", "<link", "http://", "https://", "url(", "@import", "@font-face"):
        assert needle not in lowered, needle
    # the URL seen on the wire is still shown to the reader, as text
    assert "GET http://resolver.msg.xiaomi.net/gslb/?ver=3.0&phone=%2B8613800000001" in "".join(page.text)


def test_html_escapes_evidence_from_the_wire():
    doc = make_doc()
    doc["run"]["testbed"] = "<b>lab</b>"
    doc["checks"][1]["reason"] = '"><img src=x onerror=alert(1)>'
    doc["timeline"][1]["identifier"] = "</title><script>alert(2)</script>"
    html_text = render_html(doc)
    page = parse(html_text)
    assert not [t for t, _ in page.tags if t in ("script", "img", "b")]
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    text = "".join(page.text)
    assert '<script>alert("x")</script>' in text                    # shown, as text
    assert "\x1b" not in html_text and "\x00" not in html_text and "\u202e" not in html_text
    assert "\\x1b[31mred" in text and "\\u202e" in text
    assert "<b>lab</b>" in text


def test_html_timeline_has_one_marker_per_sighting_coloured_by_verdict():
    doc = make_doc()
    page = parse(render_html(doc))
    markers = [c for c in page.classes("circle") if "sighting" in c]
    sightings = [e for e in doc["timeline"] if e["kind"] == "sighting"]
    assert len(markers) == len(sightings)
    assert sorted(c[1] for c in markers) == sorted(f"v-{e['verdict']}" for e in sightings)
    assert not any("agg" in c for c in markers)
    conns = [c for c in page.classes("rect") if "conn" in c]
    assert len(conns) == sum(e["kind"] == "connection" for e in doc["timeline"])
    assert ["conn", "c-no-tls"] in conns                   # the clear HTTP connection stands out
    fills = {a.get("class"): a.get("fill") for t, a in page.tags if t == "circle"}
    assert fills["sighting v-in-clear"] == "#d62728" and fills["sighting v-encrypted"] == "#2ca02c"
    text = "".join(page.text)
    for v in VERDICTS:                                      # the legend names every verdict
        assert v in text
    # tooltips say what was seen where; lanes are grouped per handset
    assert "imei as ascii: in-clear | flow 3" in text
    assert text.index("api.account.xiaomi.com") < text.index("app.chat.xiaomi.net")


def test_html_with_an_empty_timeline_and_a_partial_document():
    doc = make_doc(timeline=[])
    page = parse(render_html(doc))
    assert "the timeline is empty" in "".join(page.text)
    assert not [a for t, a in page.tags if t == "svg" and "timeline" in (a.get("class") or "")]
    partial = {"schema": SCHEMA, "run": {"testbed": "rack", "started": "2025-01-31T09:15:02Z", "finished": None,
                                          "complete": False, "interrupted": True},
               "checks": [{"id": "opt-in-default", "status": "NOT-TESTABLE", "reason": "interrupted"}]}
    text = "".join(parse(render_html(partial)).text)
    assert "Interrupted." in text and "opt-in-default" in text and "not finished" in text
    parse(render_html({}))


def _big_timeline(n_hosts: int, n: int) -> list[dict]:
    out = []
    for i in range(n):
        kind = "sighting" if i % 2 else "connection"
        out.append({"t": i * 0.01, "handset": "hs1" if i % 3 else "hs2", "host": f"h{i % n_hosts}.xiaomi.net",
                    "kind": kind, "flow": i, "identifier": "imei" if kind == "sighting" else None,
                    "form": "ascii" if kind == "sighting" else None,
                    "verdict": VERDICTS[i % len(VERDICTS)] if kind == "sighting" else None,
                    "tls": "TLSv1.2" if i % 5 else None})
    return out


def test_html_timeline_with_ten_thousand_entries_aggregates_and_says_so():
    doc = make_doc(timeline=_big_timeline(8, 10_000))
    start = time.monotonic()
    html_text = render_html(doc)
    assert time.monotonic() - start < 5
    assert len(html_text) < 3_000_000
    page = parse(html_text)
    markers = [(c, a) for t, a in page.tags if t == "circle" and "sighting" in (c := (a.get("class") or "").split())]
    assert 0 < len(markers) <= MAX_MARKERS
    assert all("agg" in c for c, _ in markers)
    assert sum(int(a["data-count"]) for _, a in markers) == 5000        # every sighting counted somewhere
    text = "".join(page.text)
    assert "5000 sightings are drawn as" in text and "5000 connections are drawn as density bars" in text


def test_html_timeline_with_too_many_hosts_counts_the_lanes_left_out():
    doc = make_doc(timeline=_big_timeline(MAX_LANES + 40, 2_000))
    text = "".join(parse(render_html(doc)).text)
    assert "host lanes are not drawn" in text and "see report.json" in text


# --- the terminal summary --------------------------------------------------------------------

def test_summary_table_lists_every_check_aligned():
    doc = make_doc()
    table = summary_table(doc)
    lines = table.splitlines()
    assert "\x1b" not in table
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in CHECK_IDS}
    assert list(rows) == list(CHECK_IDS)
    columns = {line.index(c["status"], len(c["id"])) for c in doc["checks"] for line in [rows[c["id"]]]}
    assert len(columns) == 1                                         # the status column lines up
    for c in doc["checks"]:
        assert c["status"] in rows[c["id"]].split() and c["reason"] in rows[c["id"]]
    assert "-> 1 of 2: handsets/hs1/capture.pcapng flow 3 offset 412" in table
    assert "   POST /pass/register imei=864804021234562" in table
    assert "PASS 6  FAIL 4  NOT-TESTABLE 1  (exit status 1)" in table
    assert "[phone-numbers-encrypted] deterministic encryption" in table
    assert all(len(line) <= 120 for line in lines)


def test_summary_table_colours_only_when_asked_and_escapes_the_wire():
    doc = make_doc()
    doc["checks"][1]["evidence"].reverse()            # the hostile text first
    plain = summary_table(doc)
    assert "\x1b" not in plain and "\\x1b[31mred" in plain
    coloured = summary_table(doc, color=True)
    assert "\x1b[1;31mFAIL\x1b[0m" in coloured and "\x1b[32mPASS\x1b[0m" in coloured
    assert "\x1b[31mred" not in coloured                     # only our own escapes reach the terminal
    partial = summary_table({"run": {"testbed": "rack", "interrupted": True}, "checks": []})
    assert "INTERRUPTED" in partial and "(no checks in this report)" in partial


def test_statuses_are_the_three_of_the_mission():
    assert STATUSES == ("PASS", "FAIL", "NOT-TESTABLE")


def _degraded(doc: dict) -> dict:
    doc["run"]["status"] = "degraded"
    doc["run"]["host_faults"] = [{"kind": "trace", "handset": "hs1",
                                  "message": "tracing failed: the trace did not start: agent bundle not built"}]
    return doc


def test_a_degraded_run_says_why_in_every_rendering():
    doc = _degraded(make_doc())
    assert validate_report(doc) == []
    table = summary_table(doc, width=None)
    assert "DEGRADED" in table and "[trace] hs1: tracing failed: the trace did not start" in table
    text = "".join(parse(render_html(doc)).text)
    assert "Degraded." in text and "agent bundle not built" in text


def test_run_status_and_host_faults_must_agree():
    doc = make_doc()
    doc["run"]["status"] = "degraded"
    assert validate_report(doc) == ["run.status: degraded, but no host fault says why"]
    doc = _degraded(make_doc())
    doc["run"]["status"] = "complete"
    assert validate_report(doc) == ["run.status: complete, but host faults weakened the evidence (degraded)"]
    doc = _degraded(make_doc())
    doc["run"]["host_faults"][0]["kind"] = "cosmic-rays"
    assert any("run.host_faults[0].kind" in p for p in validate_report(doc))
    doc = _degraded(make_doc())
    doc["run"]["host_faults"][0]["handset"] = "hs9"
    assert validate_report(doc) == ["run.host_faults[0].handset: 'hs9' is not a handset of this report"]
    doc = make_doc()
    doc["run"]["status"] = "interrupted"
    assert validate_report(doc) == ["run.status: interrupted but run.interrupted is False"]


# --- TLS flows: decrypted or not, per flow ---------------------------------------------------

def _tls_flows() -> list[dict]:
    return [{"handset": "hs1", "flow": 3, "client": "10.64.0.2:40003", "server": "198.18.0.7:443",
             "host": "api.account.xiaomi.com", "tls_status": "decrypted", "decrypted": True, "cross_check": "agree"},
            {"handset": "hs2", "flow": 9, "client": "10.64.0.3:40009", "server": "198.18.0.8:443", "host": None,
             "tls_status": "no-secret", "decrypted": False, "cross_check": "not-decrypted"}]


def test_report_html_shows_per_flow_whether_it_was_decrypted():
    doc = make_doc()
    assert "TLS flows" not in render_html(doc)        # a report from before decryption: no section
    doc["tls_flows"] = _tls_flows()
    assert validate_report(doc) == []
    page = render_html(doc)
    assert 'id="tls-flows"' in page and "1 of 2 TLS flows decrypted" in page
    rows = page.split('id="tls-flows"', 1)[1].split("</table>", 1)[0].split("<tr>")[2:]
    assert len(rows) == 2
    assert "api.account.xiaomi.com" in rows[0] and ">yes<" in rows[0] and "agree" in rows[0]
    assert ">no<" in rows[1] and "no-secret" in rows[1] and "not-decrypted" in rows[1]
    doc["tls_flows"] = []
    assert "No TLS flow was decrypted" in render_html(doc)


@pytest.mark.parametrize("mutate, problem", [
    (lambda f: f[0].update(handset="hs9"), "tls_flows[0].handset: 'hs9' is not a handset"),
    (lambda f: f[0].update(decrypted="yes"), "tls_flows[0].decrypted: expected a boolean"),
    (lambda f: f[1].update(cross_check="same"), "tls_flows[1].cross_check: 'same' is not one of"),
    (lambda f: f[1].pop("flow"), "tls_flows[1].flow: missing"),
])
def test_validator_checks_tls_flows_when_present(mutate, problem):
    doc = make_doc()
    doc["tls_flows"] = _tls_flows()
    mutate(doc["tls_flows"])
    assert any(p.startswith(problem) for p in validate_report(doc)), validate_report(doc)
