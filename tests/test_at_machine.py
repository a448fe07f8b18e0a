"""The emulated modem's AT state machine as transcripts: these bytes in, exactly these bytes out
(V.250 command lines, TS 27.007 / 27.005 responses), and random bytes never break it."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from hostctl.emulator.at import AtMachine, ModemIdentity, RadioChanged, SubmitSms, parse_command_line, split_args
from hostctl.sms import SmsDeliver, SmsStatusReport, decode, encode

IDENT = ModemIdentity(
    imei="356938035643809", imsi="460001234567890", iccid="89860012345678901234", number="+8613800138000"
)
TS = datetime(2014, 8, 10, 12, 30, 5, tzinfo=timezone(timedelta(hours=8)))


def machine(**kw) -> AtMachine:
    m = AtMachine(IDENT, clock=lambda: 1407645005.0, **kw)
    m.receive_data(b"ATE0\r")
    m.data_to_send()
    return m


def say(m: AtMachine, data: bytes) -> bytes:
    m.receive_data(data)
    return m.data_to_send()


def test_echo_is_on_after_reset_and_echoes_the_line_as_typed():
    m = AtMachine(IDENT)
    assert say(m, b"AT\r") == b"AT\r\r\nOK\r\n"
    assert say(m, b"ATE0\r") == b"ATE0\r\r\nOK\r\n"  # echoed before it takes effect
    assert say(m, b"AT\r") == b"\r\nOK\r\n"
    assert say(m, b"ATZ\r") == b"\r\nOK\r\n"
    assert say(m, b"AT\r") == b"AT\r\r\nOK\r\n"


def test_identity_commands():
    m = machine()
    assert say(m, b"AT+CGMI\r") == b"\r\nhostctl\r\n\r\nOK\r\n"
    assert say(m, b"AT+CGSN\r") == b"\r\n356938035643809\r\n\r\nOK\r\n"
    assert say(m, b"AT+CIMI\r") == b"\r\n460001234567890\r\n\r\nOK\r\n"
    assert say(m, b"AT+CCID\r") == b"\r\n+CCID: 89860012345678901234\r\n\r\nOK\r\n"
    assert say(m, b"AT+CPIN?\r") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
    assert say(m, b"AT+CNUM\r") == b'\r\n+CNUM: "","+8613800138000",145\r\n\r\nOK\r\n'
    assert say(m, b"AT+CSQ\r") == b"\r\n+CSQ: 21,0\r\n\r\nOK\r\n"
    assert say(m, b"AT+COPS?\r") == b'\r\n+COPS: 0,0,"CHINA MOBILE",0\r\n\r\nOK\r\n'
    assert say(m, b"AT+COPS=3,2;+COPS?\r") == b'\r\n+COPS: 0,2,"46000",0\r\n\r\nOK\r\n'


def test_chained_commands_stray_nul_and_lower_case():
    m = machine()
    assert say(m, b"AT+CMEE=1;+CREG=2\r") == b"\r\nOK\r\n"
    assert say(m, b"at+creg?\x00\r") == b'\r\n+CREG: 2,1,"2A3F","0000B3C1"\r\n\r\nOK\r\n'
    assert say(m, b"AT+CMEE?;+CGMM\r") == b"\r\n+CMEE: 1\r\n\r\nEM-GSM1\r\n\r\nOK\r\n"
    assert say(m, b"ATE0V1Q0X4&C1&D2\r") == b"\r\nOK\r\n"  # basic commands concatenated
    assert say(m, b"A/") == b"\r\nOK\r\n"  # repeat the last line


def test_garbage_before_at_is_ignored_and_lines_without_at_are_not_commands():
    m = machine()
    assert say(m, b"\x1b\r") == b""
    assert say(m, b"xyz\r") == b""
    assert say(m, b"\xff\xfeAT\r") == b"\r\nOK\r\n"
    assert say(m, b"ATXX\b\b\r") == b"\r\nOK\r\n"  # backspace edits the line


def test_unknown_vendor_probes_answer_error_whatever_cmee_says():
    m = machine()
    say(m, b"AT+CMEE=1\r")
    for probe in (b"AT^SYSINFO\r", b"AT$TSSPCSW=?\r", b"AT+SYNCML=?\r", b"AT+XYZ\r", b'AT+CMGF="\r'):
        assert say(m, probe) == b"\r\nERROR\r\n"
    assert say(m, b'AT+CSCS="KOI8"\r') == b"\r\n+CME ERROR: 4\r\n"
    say(m, b"AT+CMEE=2\r")
    assert say(m, b'AT+CSCS="KOI8"\r') == b"\r\n+CME ERROR: operation not supported\r\n"
    say(m, b"AT+CMEE=0\r")
    assert say(m, b'AT+CSCS="KOI8"\r') == b"\r\nERROR\r\n"


def test_clac_lists_extended_commands():
    out = say(machine(), b"AT+CLAC\r").decode()
    listed = re.findall(r"^(AT\S+)\r$", out, re.M)
    assert {"AT+CMGS", "AT+CMGL", "AT+CPMS", "AT+CSCA", "AT+CNMI", "AT+CSDH"} <= set(listed)


def test_sms_settings_read_back():
    m = machine()
    assert say(m, b"AT+CMGF=?\r") == b"\r\n+CMGF: (0,1)\r\n\r\nOK\r\n"
    assert say(m, b'AT+CSCS="UCS2";+CSCS?\r') == b'\r\n+CSCS: "UCS2"\r\n\r\nOK\r\n'
    assert say(m, b"AT+CSCA?\r") == (
        b'\r\n+CSCA: "002B0038003600310033003800300030003100300030003500300030",145\r\n\r\nOK\r\n'
    )
    say(m, b'AT+CSCS="GSM";+CSCA="+8613800999999",145\r')
    assert say(m, b"AT+CSCA?\r") == b'\r\n+CSCA: "+8613800999999",145\r\n\r\nOK\r\n'
    assert say(m, b"AT+CSMP=49,167,0,8;+CSMP?\r") == b"\r\n+CSMP: 49,167,0,8\r\n\r\nOK\r\n"
    assert say(m, b"AT+CNMI=2,1,0,1,0;+CNMI?\r") == b"\r\n+CNMI: 2,1,0,1,0\r\n\r\nOK\r\n"
    assert say(m, b"AT+CPMS=?\r") == (b'\r\n+CPMS: ("SM","ME","MT"),("SM","ME","MT"),("SM","ME","MT")\r\n\r\nOK\r\n')
    assert say(m, b'AT+CPMS="ME","ME","ME"\r') == b"\r\n+CPMS: 0,100,0,100,0,100\r\n\r\nOK\r\n"
    assert say(m, b'AT+CPMS="XX"\r') == b"\r\n+CMS ERROR: 302\r\n"


def test_pdu_send_prompt_ctrl_z_and_the_network_answer():
    m = machine()
    assert say(m, b"AT+CMGF=0\r") == b"\r\nOK\r\n"
    assert say(m, b"AT+CMGS=23\r") == b"\r\n> "
    # [dreamfabric] "hellohello"; URCs wait while the prompt is open
    m.deliver(SmsDeliver("+8613800111111", "x", TS))
    assert say(m, b"0011000B916407281553F80000AA0AE8329BFD4697D9EC37") == b""
    assert say(m, b"\x1a") == b""
    ev = m.next_event()
    assert isinstance(ev, SubmitSms) and ev.submit.text == "hellohello" and ev.submit.message_ref == 1
    assert str(ev.submit.smsc) == "+8613800100500"
    m.submit_result(None)
    assert m.data_to_send() == b'\r\n+CMGS: 1\r\n\r\nOK\r\n\r\n+CMTI: "SM",1\r\n'


def test_pdu_send_refused_by_the_network_and_bad_pdus():
    m = machine()
    say(m, b"AT+CMGS=23\r0011000B916407281553F80000AA0AE8329BFD4697D9EC37\x1a")
    assert isinstance(m.next_event(), SubmitSms)
    m.submit_result(1)
    assert m.data_to_send() == b"\r\n+CMS ERROR: 1\r\n"
    assert (
        say(m, b"AT+CMGS=22\r0011000B916407281553F80000AA0AE8329BFD4697D9EC37\x1a") == b"\r\n> \r\n+CMS ERROR: 304\r\n"
    )  # length does not match
    assert say(m, b"AT+CMGS=5\rZZZZ\x1a") == b"\r\n> \r\n+CMS ERROR: 304\r\n"
    assert say(m, b"AT+CMGS=5\r00\x1b") == b"\r\n> \r\nOK\r\n"  # ESC cancels
    assert m.next_event() is None


def test_text_mode_send_in_ucs2_charset():
    m = machine()
    say(m, b'AT+CMGF=1;+CSCS="UCS2";+CSMP=17,167,0,8\r')
    number = "+8613800222222".encode("utf-16-be").hex().upper().encode()
    body = "日本".encode("utf-16-be").hex().upper().encode()
    assert say(m, b'AT+CMGS="' + number + b'",145\r') == b"\r\n> "
    say(m, body + b"\x1a")
    ev = m.next_event()
    assert ev.submit.text == "日本" and ev.submit.coding == "ucs2" and str(ev.submit.recipient) == "+8613800222222"


def test_received_message_listed_and_read_in_pdu_and_text_mode_with_long_headers():
    m = machine()
    msg = SmsDeliver("+8613800111111", "Hello @ €", TS, smsc="+8613800100500")
    assert m.deliver(msg)
    assert m.data_to_send() == b'\r\n+CMTI: "SM",1\r\n'
    pdu = encode(msg)
    assert say(m, b"AT+CMGL=4\r") == f"\r\n+CMGL: 1,0,,{pdu.tpdu_length}\r\n{pdu.hex}\r\n\r\nOK\r\n".encode()
    assert say(m, b"AT+CMGL=0\r") == b"\r\nOK\r\n"  # read now
    say(m, b"AT+CMGF=1;+CSDH=1\r")
    assert say(m, b"AT+CMGR=1\r") == (
        b'\r\n+CMGR: "REC READ","+8613800111111",,"14/08/10,12:30:05+32",145,4,0,0,"+8613800100500",145,9'
        b"\r\nHello @ \x80\r\n\r\nOK\r\n".replace(b"\x80", b"?")
    )  # IRA has no euro sign
    say(m, b'AT+CSCS="8859-1";+CSDH=0\r')
    assert say(m, b'AT+CMGL="ALL"\r') == (
        b'\r\n+CMGL: 1,"REC READ","+8613800111111",,"14/08/10,12:30:05+32"\r\nHello @ ?\r\n\r\nOK\r\n'
    )
    assert say(m, b"AT+CMGR=2\r") == b"\r\n+CMS ERROR: 321\r\n"
    assert say(m, b'AT+CMGD=1;+CMGL="ALL"\r') == b"\r\nOK\r\n"


def test_storage_full_refuses_delivery_and_cnmi_routes():
    m = AtMachine(IDENT, capacity={"SM": 1})
    say(m, b"ATE0\r")
    assert m.deliver(SmsDeliver("+8613800111111", "one", TS))
    assert not m.deliver(SmsDeliver("+8613800111111", "two", TS))  # the network keeps it
    say(m, b"AT+CNMI=2,2,0,1,0\r")  # route, don't store
    m.data_to_send()
    assert m.deliver(SmsDeliver("+8613800111111", "three", TS))
    out = m.data_to_send().decode()
    head, pdu = re.match(r"\r\n\+CMT: ,(\d+)\r\n([0-9A-F]+)\r\n$", out).groups()
    assert decode(pdu).text == "three"
    report = SmsStatusReport(7, "+8613800111111", TS, TS, 0)
    assert m.status_report(report)
    assert m.data_to_send() == f"\r\n+CDS: {encode(report).tpdu_length}\r\n{encode(report).hex}\r\n".encode()


def test_cfun_switches_the_radio_and_creg_follows():
    m = machine()
    say(m, b"AT+CREG=1\r")
    assert say(m, b"AT+CFUN=4\r") == b"\r\nOK\r\n"
    assert m.next_event() == RadioChanged(False)
    assert say(m, b"AT+CREG?\r") == b"\r\n+CREG: 1,0\r\n\r\nOK\r\n"
    assert say(m, b"AT+CMGS=23\r0011000B916407281553F80000AA0AE8329BFD4697D9EC37\x1a").endswith(
        b"+CMS ERROR: 331\r\n"
    )  # no network service
    assert not m.deliver(SmsDeliver("+8613800111111", "x", TS))
    say(m, b"AT+CFUN=1\r")
    assert m.next_event() == RadioChanged(True)


def test_interleaving_quirk_puts_a_urc_inside_a_response():
    m = machine(interleave_urcs=True)
    m.deliver(SmsDeliver("+8613800111111", "x", TS))
    m.data_to_send()
    m.deliver(SmsDeliver("+8613800111111", "y", TS))
    m.data_to_send()
    m._urcs.append(b'+CMTI: "SM",9')  # one still queued when the next response starts
    out = say(m, b"AT+CPMS?\r")
    assert out.startswith(b'\r\n+CPMS: "SM",2,30') and b'+CMTI: "SM",9' in out and out.endswith(b"OK\r\n")


def test_v0_numeric_results_and_quiet():
    m = machine()
    assert say(m, b"ATV0\r") == b"0\r"
    assert say(m, b"AT+CGMI\r") == b"hostctl\r\n0\r"
    assert say(m, b"AT+NOPE\r") == b"4\r"
    assert say(m, b"ATV1Q1\r") == b""
    assert say(m, b"ATQ0\r") == b"\r\nOK\r\n"


def test_parser_pieces():
    assert [(c.name, c.kind, c.args) for c in parse_command_line('+CMGS="+86;1",145;+CMGF?;E0S0=1')] == [
        ("+CMGS", "set", '"+86;1",145'),
        ("+CMGF", "read", ""),
        ("E", "exec", "0"),
        ("S0", "set", "1"),
    ]
    assert split_args('"SM" , "ME",1,,x') == ["SM", "ME", "1", None, "x"]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from(
                [
                    b"AT\r",
                    b"AT+CMGS=23\r",
                    b"\x1a",
                    b"\x1b",
                    b"AT+CMGF=1\r",
                    b"AT+CMGL=4\r",
                    b'AT+CMGS="+86138"\r',
                    b"AT+CMGR=1\r",
                    b"\r",
                    b'AT+CPMS="MT"\r',
                    b"ATV0\r",
                    b"ATZ\r",
                    b"A/",
                    b"\x00",
                ]
            ),
        ),
        max_size=30,
    )
)
def test_random_bytes_never_break_the_machine(chunks):
    m = AtMachine(IDENT)
    m.deliver(SmsDeliver("+8613800111111", "stored", TS))
    for chunk in chunks:
        m.receive_data(chunk)
        while (ev := m.next_event()) is not None:
            if isinstance(ev, SubmitSms):
                m.submit_result(None)
        m.data_to_send()
    # whatever happened, it gets back to answering a plain AT
    m.receive_data(b"\x1b\rATZ\rAT\r")
    while (ev := m.next_event()) is not None:
        if isinstance(ev, SubmitSms):
            m.submit_result(None)
    out = m.data_to_send()
    assert out.endswith(b"AT\r\r\nOK\r\n") or out.endswith(b"\r\nOK\r\n"), out[-80:]
