"""Each of the audit's checks on an Evidence built by hand (no testbed, no lab): where it must
FAIL, where it must PASS, and where it must be NOT-TESTABLE; and the fail-closed rule that a
host fault keeps a check from PASS and makes its NOT-TESTABLE the host's (exit 4).

The wire facts below have the shape hostctl.wire.check's report gives (``findings`` with
direction/host/kind/ts/source; ``flows``; ``agent_events`` counting the agent's ``ssl`` events):
see tests/test_wire_*.py for how a capture becomes them."""

from __future__ import annotations

import pytest

from hostctl.audit.checks import CHECKS, NEED_KINDS, modules
from hostctl.audit.checks import (content_encrypted, imsi_after_login, ip_when_online, no_identifiers_before_opt_in,
                                  no_retention, opt_in_default, phone_numbers_encrypted, presence_lookup_minimal,
                                  sms_fallback_when_offline, tls_plaintext_agrees, transport_secure)
from hostctl.audit.evidence import AgentWrite, Evidence, HandsetEvidence
from hostctl.audit.record import CheckRecord, NotTestable, Status
from hostctl.audit.run import judge
from hostctl.report import CHECK_IDS, CHECKS as REPORT_CHECKS

T0 = 1_700_000_000.0
OPT_IN = T0 + 100
LOGIN = T0 + 60
NUM1, NUM2 = "+8613800000001", "+8613800000002"


def finding(kind: str, *, ts: float, host: str = "api.account.xiaomi.com", identifier: str | None = None,
            value: str = "x", verdict: str = "in-clear", source: str = "agent", direction: str = "out") -> dict:
    return {"kind": kind, "ts": ts, "host": host, "identifier": identifier or kind, "value": value,
            "verdict": verdict, "form": "ascii", "layer": "http", "direction": direction, "source": source,
            "flow": 3 if source == "wire" else None, "offset": 12 if source == "wire" else None,
            "event": 7 if source == "agent" else None}


def wire(findings=(), *, ssl: int = 5, flows=(), captures=1, **more) -> dict:
    return {"findings": list(findings), "agent_events": [{"events": {"ssl": ssl}}], "flows": list(flows),
            "captures": [{"file": "wire.pcapng"}] * captures, **more}


def hs(label: str = "hs1", w: dict | None = None, **kw) -> HandsetEvidence:
    return HandsetEvidence(label=label, serial=f"s-{label}", numbers=(NUM1 if label == "hs1" else NUM2,),
                           capture_file=f"handsets/{label}/wire.pcapng", events_file=f"handsets/{label}/trace/events.jsonl",
                           wire=w, **kw)


def evidence(*handsets: HandsetEvidence, **facts) -> Evidence:
    base = dict(started=T0, opt_in_at=OPT_IN, login={"hs1": LOGIN})
    base.update(facts)
    return Evidence(handsets=handsets or (hs(w=wire()),), **base)


def verdict(check, ev: Evidence) -> CheckRecord:
    try:
        return check.evaluate(ev)
    except NotTestable as nt:
        return CheckRecord.not_testable(nt)


def assert_status(rec: CheckRecord, status: Status, *words: str) -> None:
    assert rec.status is status, (rec.status, rec.reason)
    for w in words:
        assert w in rec.reason, (w, rec.reason)
    if status is Status.FAIL:
        assert rec.evidence and all(e.text for e in rec.evidence)


# -- the registry ---------------------------------------------------------------------------------
def test_the_registry_is_the_report_s_table_in_order():
    ms = modules()
    assert tuple(m.__name__.rsplit(".", 1)[1] for m in ms) == CHECKS
    assert tuple(m.ID for m in ms) == CHECK_IDS == tuple(c.id for c in REPORT_CHECKS)
    for m in ms:
        assert m.CLAIM and m.TITLE and m.READS and set(m.NEEDS) <= set(NEED_KINDS), m.__name__
        assert m.ID.replace("-", "_") == m.__name__.rsplit(".", 1)[1]


def test_not_testable_always_says_why():
    with pytest.raises(ValueError):
        NotTestable("  ")
    with pytest.raises(ValueError):
        CheckRecord(Status.FAIL, "no evidence named")


# -- opt-in-default -------------------------------------------------------------------------------
OFF = {"enabled": False, "sims": [{"enabled": False}], "sources": {"setting": "0"}}
ON = {"enabled": True, "sims": [{"enabled": True}], "sources": {"setting": "1"}}
RESET = {"hs1": "factory reset by the lab"}


def test_opt_in_default():
    ok = evidence(cm_default={"hs1": OFF}, reset=RESET)
    assert_status(verdict(opt_in_default, ok), Status.PASS)
    assert_status(verdict(opt_in_default, evidence(cm_default={"hs1": ON}, reset=RESET)), Status.FAIL, "hs1")
    flow = {"id": 4, "host": "app.chat.xiaomi.net", "first_ts": T0 + 5, "protocol": {"name": "tls"}}
    rec = verdict(opt_in_default, evidence(hs(w=wire(flows=[flow])), cm_default={"hs1": OFF}, reset=RESET))
    assert_status(rec, Status.FAIL)
    assert rec.evidence[0].flow == 4 and rec.evidence[0].file == "handsets/hs1/wire.pcapng"
    bind = AgentWrite(line=9, ts=T0 + 5, sni="app.chat.xiaomi.net", head=b'{"type":"bind","token":"t"}')
    rec = verdict(opt_in_default, evidence(hs(w=wire(), agent_writes=(bind,)), cm_default={"hs1": OFF}, reset=RESET))
    assert_status(rec, Status.FAIL)
    assert rec.evidence[0].event == 9 and rec.evidence[0].file == "handsets/hs1/trace/events.jsonl"
    late = AgentWrite(line=9, ts=OPT_IN + 1, sni="app.chat.xiaomi.net", head=b'{"type":"bind"}')
    assert_status(verdict(opt_in_default, evidence(hs(w=wire(), agent_writes=(late,)), cm_default={"hs1": OFF},
                                                   reset=RESET)), Status.PASS)
    assert_status(verdict(opt_in_default, evidence(cm_default={"hs1": OFF})), Status.NOT_TESTABLE, "--assume-reset")
    assert_status(verdict(opt_in_default, evidence()), Status.NOT_TESTABLE, "could not be read")
    # off by the setting, but no recorder saw the traffic: not a PASS
    assert_status(verdict(opt_in_default, evidence(hs(w=None), cm_default={"hs1": OFF}, reset=RESET)),
                  Status.NOT_TESTABLE, "no capture or trace")


# -- no-identifiers-before-opt-in -----------------------------------------------------------------
def test_no_identifiers_before_opt_in():
    early = finding("imei", ts=T0 + 10, identifier="imei hs1")
    rec = verdict(no_identifiers_before_opt_in, evidence(hs(w=wire([early]))))
    assert_status(rec, Status.FAIL, "imei hs1", "api.account.xiaomi.com")
    assert rec.evidence[0].event == 7
    after = finding("imei", ts=OPT_IN + 5)
    assert_status(verdict(no_identifiers_before_opt_in, evidence(hs(w=wire([after])))), Status.PASS)
    # after this handset's Mi Cloud login: imsi-after-login's to judge
    post_login = finding("imsi", ts=LOGIN + 1)
    assert_status(verdict(no_identifiers_before_opt_in, evidence(hs(w=wire([post_login])))), Status.PASS)
    to_others = finding("imei", ts=T0 + 10, host="example.org")
    assert_status(verdict(no_identifiers_before_opt_in, evidence(hs(w=wire([to_others])))), Status.PASS)
    assert_status(verdict(no_identifiers_before_opt_in, evidence(hs(w=wire(ssl=0)))), Status.NOT_TESTABLE,
                  "TLS plaintext")
    rec = verdict(no_identifiers_before_opt_in, evidence(hs(w=None, trace_error="trace did not start: no agent",
                                                            capture_error="capture did not start: no tcpdump")))
    assert_status(rec, Status.NOT_TESTABLE, "no agent", "no tcpdump")
    rec = verdict(no_identifiers_before_opt_in, evidence(hs(w=None)))
    assert rec.reason == "no capture or trace was recorded"          # never "...: ; "


# -- ip-when-online -------------------------------------------------------------------------------
SMS_ROW = {"serial": "s-hs1", "to": NUM2, "route": "sms", "fallback": False,
           "evidence": {"sender": {"id": 7, "type": 2, "mx_status": 0}, "receiver": {"id": 3}}}
IP_ROW = dict(SMS_ROW, route="ip", evidence={"sender": {"id": 8, "type": 2, "mx_status": 17}, "receiver": {"id": 4}})
TWO = (hs("hs1", wire()), hs("hs2", wire()))


def test_ip_when_online():
    rec = verdict(ip_when_online, evidence(*TWO, send_online=IP_ROW, receiver_presence_before_send={"online": True}))
    assert_status(rec, Status.PASS, "mx_status 17")
    assert [e.file for e in rec.evidence] == ["handsets/hs1/messages.json", "handsets/hs2/messages.json"]
    assert_status(verdict(ip_when_online, evidence(*TWO, send_online=SMS_ROW)), Status.FAIL, "'sms'")
    carried = dict(IP_ROW, evidence=dict(IP_ROW["evidence"], carrier=[{"text": "x"}]))
    assert_status(verdict(ip_when_online, evidence(*TWO, send_online=carried)), Status.FAIL, "carrier")
    lost = dict(IP_ROW, evidence={"sender": {"id": 8, "mx_status": 17}, "receiver": None})
    assert_status(verdict(ip_when_online, evidence(*TWO, send_online=lost)), Status.FAIL, "never got it")
    assert_status(verdict(ip_when_online, evidence(*TWO, send_online_skipped="needs a second handset")),
                  Status.NOT_TESTABLE, "second handset")
    # the premise (receiver online) never held: a timing matter, not the claim's verdict
    rec = verdict(ip_when_online, evidence(*TWO, send_online=SMS_ROW, receiver_presence_before_send={"online": False}))
    assert_status(rec, Status.NOT_TESTABLE, "never showed online")


# -- sms-fallback-when-offline --------------------------------------------------------------------
def test_sms_fallback_when_offline():
    assert_status(verdict(sms_fallback_when_offline, evidence(*TWO, send_offline=SMS_ROW)), Status.PASS)
    assert_status(verdict(sms_fallback_when_offline, evidence(*TWO, send_offline=IP_ROW)), Status.FAIL, "'ip'")
    to_modem = dict(SMS_ROW, to="+8613900000009", evidence=dict(SMS_ROW["evidence"], modem=None))
    assert_status(verdict(sms_fallback_when_offline, evidence(*TWO, send_modem=to_modem, modem_present=True)),
                  Status.FAIL, "modem received nothing")
    got = dict(to_modem, evidence=dict(SMS_ROW["evidence"], modem={"text": "x"}))
    rec = verdict(sms_fallback_when_offline, evidence(*TWO, send_modem=got, modem_present=True,
                                                      send_offline_skipped="hs2 could not be taken offline"))
    assert_status(rec, Status.PASS, "not run: hs2 could not be taken offline")
    assert_status(verdict(sms_fallback_when_offline, evidence(*TWO)), Status.NOT_TESTABLE, "no send")


# -- presence-lookup-minimal ----------------------------------------------------------------------
def test_presence_lookup_minimal():
    looks = [{"number": NUM2, "from": T0 + 200, "to": T0 + 201, "handset": "hs1", "result": None}]
    own = finding("msisdn", ts=T0 + 200.5, value=NUM2, identifier="number hs2")
    assert_status(verdict(presence_lookup_minimal, evidence(hs(w=wire([own])), lookups=looks)), Status.PASS, "1 look-up")
    extra = finding("imei", ts=T0 + 200.5, identifier="imei hs1")
    assert_status(verdict(presence_lookup_minimal, evidence(hs(w=wire([own, extra])), lookups=looks)),
                  Status.FAIL, "imei hs1")
    outside = finding("imei", ts=T0 + 150)
    assert_status(verdict(presence_lookup_minimal, evidence(hs(w=wire([outside])), lookups=looks)), Status.PASS)
    assert_status(verdict(presence_lookup_minimal, evidence()), Status.NOT_TESTABLE, "no presence look-up")
    assert_status(verdict(presence_lookup_minimal, evidence(hs(w=wire(ssl=0)), lookups=looks)), Status.NOT_TESTABLE,
                  "TLS plaintext")


# -- phone-numbers-encrypted ----------------------------------------------------------------------
def test_phone_numbers_encrypted():
    leak = finding("msisdn", ts=OPT_IN + 10, verdict="hashed", host="app.chat.xiaomi.net")
    assert_status(verdict(phone_numbers_encrypted, evidence(hs(w=wire([leak])))), Status.FAIL, "hashed")
    det = {"identifier": "number hs2", "fields": ["to"], "why": "same ciphertext twice"}
    rec = verdict(phone_numbers_encrypted, evidence(hs(w=wire(deterministic=[det]))))
    assert_status(rec, Status.PASS)
    assert rec.warnings and "deterministic encryption: number hs2 in field to" in rec.warnings[0]
    assert_status(verdict(phone_numbers_encrypted, evidence(hs(w=wire(ssl=0)))), Status.NOT_TESTABLE, "TLS plaintext")
    assert_status(verdict(phone_numbers_encrypted, evidence(hs(w=None))), Status.NOT_TESTABLE, "no capture")


# -- content-encrypted ----------------------------------------------------------------------------
def test_content_encrypted():
    text = finding("text", ts=OPT_IN + 10, host="app.chat.xiaomi.net")
    assert_status(verdict(content_encrypted, evidence(hs(w=wire([text])), send_online=IP_ROW)), Status.FAIL, "in-clear")
    assert_status(verdict(content_encrypted, evidence(send_online=IP_ROW)), Status.PASS)
    assert_status(verdict(content_encrypted, evidence(send_online=SMS_ROW)), Status.NOT_TESTABLE, "no message went over IP")
    assert_status(verdict(content_encrypted, evidence(hs(w=wire(ssl=0)), send_online=IP_ROW)), Status.NOT_TESTABLE)


# -- transport-secure -----------------------------------------------------------------------------
def test_transport_secure():
    assert_status(verdict(transport_secure, evidence()), Status.PASS)
    weak = wire(weak_tls=[{"flow": 2, "host": "api.xiaomi.com", "version": "TLSv1.0"}])
    rec = verdict(transport_secure, evidence(hs(w=weak)))
    assert_status(rec, Status.FAIL)
    assert rec.evidence[0].text == "api.xiaomi.com over TLSv1.0" and rec.evidence[0].flow == 2
    clear = {"flow": 5, "host": "resolver.msg.xiaomi.net", "findings": [1], "identifiers": ["imei"], "requests": []}
    assert_status(verdict(transport_secure, evidence(hs(w=wire(clear_http=[clear])))), Status.FAIL)
    harmless = dict(clear, findings=[], identifiers=[], requests=[{"method": "GET", "path": "/gslb/"}])
    rec = verdict(transport_secure, evidence(hs(w=wire(clear_http=[harmless]))))
    assert_status(rec, Status.PASS)
    assert rec.warnings == ("clear HTTP to resolver.msg.xiaomi.net (GET /gslb/): no identifier, but not TLS",)
    raw = {"id": 6, "vendor": True, "protocol": {"name": "unknown"}, "bytes": {"c2s": 40}, "server": "1.2.3.4:5222"}
    assert_status(verdict(transport_secure, evidence(hs(w=wire(flows=[raw])))), Status.FAIL)
    rec = verdict(transport_secure, evidence(hs(w=wire(captures=0), capture_error="capture did not start: x"),
                                             hs("hs2", w=None)))
    assert_status(rec, Status.NOT_TESTABLE, "no capture was recorded: capture did not start: x")
    rec = verdict(transport_secure, evidence(hs(w=None)))
    assert rec.reason == "no capture was recorded"                    # never "no capture was recorded: ; "


# -- imsi-after-login -----------------------------------------------------------------------------
def test_imsi_after_login():
    before = finding("imsi", ts=LOGIN - 5)
    assert_status(verdict(imsi_after_login, evidence(hs(w=wire([before])))), Status.FAIL, "hs1")
    after = finding("imsi", ts=LOGIN + 5)
    rec = verdict(imsi_after_login, evidence(hs(w=wire([after]))))
    assert_status(rec, Status.PASS, "only after")
    assert rec.warnings == ("IMSI sent after Mi Cloud login to api.account.xiaomi.com",)
    assert_status(verdict(imsi_after_login, evidence()), Status.PASS, "no IMSI")
    # a handset that never logged in has no "after"
    assert_status(verdict(imsi_after_login, evidence(hs(w=wire([after])), login={})), Status.FAIL)
    assert_status(verdict(imsi_after_login, evidence(login={})), Status.NOT_TESTABLE, "could not be done")


# -- no-retention ---------------------------------------------------------------------------------
def test_no_retention():
    held = {"retained": {"messages": 2, "bytes": 40, "bodies": 2}}
    rec = verdict(no_retention, evidence(cloud_state=held, cloud_state_by="hs1"))
    assert_status(rec, Status.FAIL, "2 message bodies")
    assert rec.evidence[0].file == "handsets/hs1/steps.json"
    assert_status(verdict(no_retention, evidence(cloud_state={"retained": {"messages": 0, "bytes": 0}})), Status.PASS)
    assert_status(verdict(no_retention, evidence()), Status.NOT_TESTABLE, "emulated lab")


# -- tls-plaintext-agrees -------------------------------------------------------------------------
# HandsetEvidence.tls has the shape hostctl.audit.run.Audit._decrypt gives: the decryption counts
# and hostctl.wire.crosscheck.CrossCheck.to_json() (tests/test_tls_crosscheck.py makes real ones).
def tls_flow(flow: int, status: str = "agree", *, tls_status: str = "decrypted", evidence=()) -> dict:
    return {"flow": flow, "client": f"10.64.0.2:{40000 + flow}", "server": "198.18.0.7:443", "status": status,
            "why": f"because {status}", "tls_status": tls_status, "client_random": "ab" * 32,
            "matched_by": "client-random", "directions": [], "evidence": list(evidence)}


def tls(*flows: dict, sessions: int | None = None, agent_only=()) -> dict:
    n = len(flows) if sessions is None else sessions
    return {"decryption": {"flows": {"decrypted": n}, "sessions": n, "secrets": 5 * n},
            "flows": [{"flow": f["flow"], "client": f["client"], "server": f["server"], "tls_status": f["tls_status"],
                       "decrypted": f["tls_status"] == "decrypted", "cross_check": f["status"]} for f in flows],
            "cross_check": {"passed": all(f["status"] == "agree" for f in flows) and not agent_only,
                            "counts": {}, "flows": list(flows), "agent_only_sessions": list(agent_only)}}


def test_tls_plaintext_agrees_passes_when_every_flow_agrees():
    ev = evidence(hs("hs1", wire(), tls=tls(tls_flow(1), tls_flow(2))), hs("hs2", wire(), tls=tls(tls_flow(1))))
    rec = verdict(tls_plaintext_agrees, ev)
    assert_status(rec, Status.PASS, "(3)", "agrees byte for byte")


def test_tls_plaintext_agrees_fails_naming_the_flow_and_the_record():
    wire_only = {"flow": 2, "direction": "c2s", "kind": "wire-only", "offset": 120, "length": 300,
                 "sample": "504f5354202f", "record": 5, "record_offset": 0, "wire_offset": 1890}
    ev = evidence(hs("hs1", wire(), tls=tls(tls_flow(1), tls_flow(2, "wire-only", evidence=[wire_only]))))
    rec = verdict(tls_plaintext_agrees, ev)
    assert_status(rec, Status.FAIL, "one side only")
    (loc,) = rec.evidence
    assert (loc.file, loc.flow, loc.offset, loc.record, loc.wire_offset) == ("handsets/hs1/wire.pcapng", 2, 120, 5, 1890)
    assert "flow 2" in loc.text and "wire-only 300 bytes" in loc.text and "c2s" in loc.text
    assert loc.to_json()["record"] == 5 and loc.to_json()["wire_offset"] == 1890
    # a session the hooked libraries never made secrets for, while they did for others: an unhooked stack
    rec = verdict(tls_plaintext_agrees, evidence(hs("hs1", wire(), tls=tls(
        tls_flow(1), tls_flow(3, "not-decrypted", tls_status="no-secret")))))
    assert_status(rec, Status.FAIL)
    assert rec.evidence[0].flow == 3 and "did not hook" in rec.evidence[0].text
    # plaintext the hooks saw in a session no flow carried
    rec = verdict(tls_plaintext_agrees, evidence(hs("hs1", wire(), tls=tls(tls_flow(1), agent_only=[
        {"client_random": "cd" * 32, "where": "app.chat.xiaomi.net", "events": 2, "bytes": 80}]))))
    assert_status(rec, Status.FAIL)
    assert rec.evidence[0].file == "handsets/hs1/trace/events.jsonl" and "no flow" in rec.evidence[0].text
    # a differing byte on one handset is a FAIL even when the other could not be judged
    differ = {"flow": 1, "direction": "s2c", "kind": "differ", "offset": 10, "event_seq": 44, "agent": "41",
              "wire": "61", "record": 3, "record_offset": 10, "wire_offset": 700}
    rec = verdict(tls_plaintext_agrees, evidence(hs("hs1", wire(), tls=tls(tls_flow(1, "differ", evidence=[differ]))),
                                                 hs("hs2", wire(), tls_error="no trace")))
    assert_status(rec, Status.FAIL)
    assert rec.evidence[0].event == 44 and any("hs2" in w for w in rec.warnings)


def test_tls_plaintext_agrees_is_not_testable_without_what_it_compares():
    none = evidence(hs("hs1", None, tls_error="no capture", capture_error="tcpdump did not start"))
    assert_status(verdict(tls_plaintext_agrees, none), Status.NOT_TESTABLE, "no capture", "tcpdump did not start")
    no_secret = evidence(hs("hs1", wire(), tls=tls(tls_flow(1, "not-decrypted", tls_status="no-secret"), sessions=0)))
    assert_status(verdict(tls_plaintext_agrees, no_secret), Status.NOT_TESTABLE, "no TLS secret")
    undecidable = evidence(hs("hs1", wire(), tls=tls(tls_flow(1), tls_flow(2, "not-decrypted",
                                                                           tls_status="unsupported-suite"))))
    assert_status(verdict(tls_plaintext_agrees, undecidable), Status.NOT_TESTABLE, "flow 2")
    no_flow = evidence(hs("hs1", wire(), tls=tls(sessions=3)))
    assert_status(verdict(tls_plaintext_agrees, no_flow), Status.NOT_TESTABLE, "no TLS flow")
    # one handset agrees, the other was not decrypted: not a PASS
    half = evidence(hs("hs1", wire(), tls=tls(tls_flow(1))), hs("hs2", wire(), tls_error="no trace"))
    assert_status(verdict(tls_plaintext_agrees, half), Status.NOT_TESTABLE, "hs2", "no trace")
    # decryption broke (a host fault of the analysis): NOT-TESTABLE, the host's doing
    broke = {"kind": "analysis", "handset": "hs1", "message": "decrypting the capture failed: KeyLogError: bad"}
    rec = judge(tls_plaintext_agrees, evidence(hs("hs1", wire(), tls_error=broke["message"]), host_faults=[broke]))
    assert rec.status is Status.NOT_TESTABLE and rec.host and "KeyLogError" in rec.reason
    # a trace that died misses hooked calls by itself: the flows it missed are not the app's FAIL
    died = {"kind": "trace", "handset": "hs1", "message": "tracing failed: the trace died: TransportError"}
    missed = tls(tls_flow(1), tls_flow(2, "wire-only", evidence=[{"flow": 2, "direction": "c2s", "kind": "wire-only",
                                                                   "offset": 0, "length": 9}]))
    rec = judge(tls_plaintext_agrees, evidence(hs("hs1", wire(), tls=missed), host_faults=[died]))
    assert rec.status is Status.NOT_TESTABLE and rec.host and "trace broke" in rec.reason
    assert judge(tls_plaintext_agrees, evidence(hs("hs1", wire(), tls=missed))).status is Status.FAIL
    # and a host fault of the trace keeps an agreeing run from PASS
    rec = judge(tls_plaintext_agrees, evidence(hs("hs1", wire(), tls=tls(tls_flow(1))), host_faults=[TRACE_FAULT]))
    assert rec.status is Status.NOT_TESTABLE and rec.host


def test_a_finding_in_decrypted_tls_cites_flow_record_and_wire_offset():
    f = {**finding("imei", ts=T0, source="wire"), "layer": "tls-decrypted", "record": 4, "record_offset": 30,
         "wire_offset": 773}
    ev = evidence()
    loc = ev.finding(ev.handsets[0], f)
    assert (loc.file, loc.flow, loc.offset, loc.record, loc.wire_offset) == ("handsets/hs1/wire.pcapng", 3, 12, 4, 773)
    assert "record 4 at wire offset 773" in loc.text
    agent = ev.finding(ev.handsets[0], finding("imei", ts=T0))
    assert agent.record is None and "record" not in agent.to_json()


# -- failing closed -------------------------------------------------------------------------------
TRACE_FAULT = {"kind": "trace", "handset": "hs2", "message": "tracing failed: the trace did not start: no agent"}


def test_a_host_fault_in_what_a_check_needs_keeps_it_from_pass():
    ev = evidence(send_online=IP_ROW, host_faults=[TRACE_FAULT])
    rec = judge(content_encrypted, ev)                 # content-encrypted reads the TLS plaintext
    assert rec.status is Status.NOT_TESTABLE and rec.host
    assert "hs2: tracing failed" in rec.reason
    nt = judge(presence_lookup_minimal, evidence(host_faults=[TRACE_FAULT]))
    assert nt.status is Status.NOT_TESTABLE and nt.host and "no presence look-up" in nt.reason


def test_a_host_fault_must_not_degrade_what_it_does_not_touch():
    ev = evidence(*TWO, send_online=IP_ROW, host_faults=[TRACE_FAULT], cloud_state={"retained": {"messages": 0}})
    assert judge(ip_when_online, ev).status is Status.PASS            # rows over adb, no trace needed
    assert judge(transport_secure, ev).status is Status.PASS          # the capture alone
    assert judge(no_retention, ev).status is Status.PASS
    fail = judge(phone_numbers_encrypted, evidence(hs(w=wire([finding("msisdn", ts=OPT_IN)])),
                                                   host_faults=[TRACE_FAULT]))
    assert fail.status is Status.FAIL                                 # a FAIL seen stays a FAIL
    # the handset's own doing (no SSL from the app, no login) is no host fault
    rec = judge(phone_numbers_encrypted, evidence(hs(w=wire(ssl=0))))
    assert rec.status is Status.NOT_TESTABLE and not rec.host


def test_an_adb_server_fault_weakens_every_device_step():
    adb = {"kind": "adb", "handset": "hs1", "message": "send ip: AdbServerError: connection refused"}
    rec = judge(ip_when_online, evidence(*TWO, send_online=IP_ROW, host_faults=[adb]))
    assert rec.status is Status.NOT_TESTABLE and rec.host and "connection refused" in rec.reason


def test_a_check_that_raises_is_a_host_fault():
    class Broken:
        ID, NEEDS = "transport-secure", ("capture",)

        @staticmethod
        def evaluate(ev):
            raise KeyError("flows")

    said = []
    rec = judge(Broken, evidence(), on_fault=said.append)
    assert rec.status is Status.NOT_TESTABLE and rec.host and "KeyError" in rec.reason
    assert said == ["transport-secure could not be evaluated: KeyError: 'flows'"]
