"""The modem driver (hostctl.lab.modem) against the emulated modem, over its TCP URL and its pty,
and against scripted ports for what a well-behaved modem never does."""

from __future__ import annotations

import threading
import time
from datetime import UTC

import pytest

from hostctl.emulator.at import ModemIdentity
from hostctl.emulator.carrier import Carrier
from hostctl.emulator.lab import LabConfig, LabThread
from hostctl.emulator.modem import EmulatedModem, ModemServer
from hostctl.lab.modem import (
    CmeError,
    CmsError,
    Modem,
    ModemGoneError,
    ModemOpenError,
    ModemProtocolError,
    ModemTimeoutError,
)
from tests.conftest import free_port, wait_for


@pytest.fixture(scope="module")
def mlab(tmp_path_factory):
    """One handset and the modem; no adb (the acceptance tests use adb)."""
    home = tmp_path_factory.mktemp("modem-lab")
    with LabThread(LabConfig(adb_port=free_port(), handsets=1, home=home, with_apps=False, connect=False)) as lt:
        yield lt


@pytest.fixture
def modem(mlab):
    with Modem.open(mlab.lab.modem_info()["url"], timeout=5) as m:
        m.delete_all()
        yield m


def inbox_rows(lh) -> list[tuple[str, str]]:
    cols, rows = lh.handset.sms_query("content://sms/inbox")
    a, b = cols.index("address"), cols.index("body")
    return [(r[a], r[b]) for r in rows]


def test_identify_over_url_and_pty(mlab):
    info = mlab.lab.modem_info()
    for port in (info["url"], info["pty"]):
        with Modem.open(port, timeout=5) as m:
            ident = m.identify()
            assert (ident.manufacturer, ident.imei, ident.imsi, ident.number) == (
                "hostctl",
                info["imei"],
                info["imsi"],
                info["number"],
            )
            assert ident.sim == "READY" and ident.registration.registered and ident.signal.dbm == -71
            assert ident.iccid == info["iccid"]


def test_text_and_pdu_sends_reach_the_handset_with_the_extension_table(mlab, modem):
    lh = mlab.lab.handsets[0]
    number = lh.identity.sims[0].msisdn
    before = len(inbox_rows(lh))
    assert len(modem.send_sms(number, "text mode {ok}", mode="text")) == 1
    assert len(modem.send_sms(number, "pdu mode: €5 [x] ^_^ ~\\|", mode="pdu")) == 1
    rows = wait_for(lambda: inbox_rows(lh)[before:] if len(inbox_rows(lh)) >= before + 2 else None)
    modem_number = mlab.lab.modem_info()["number"]
    assert (modem_number, "text mode {ok}") in rows and (modem_number, "pdu mode: €5 [x] ^_^ ~\\|") in rows


def test_400_characters_arrive_at_the_handset_as_one_message(mlab, modem):
    lh = mlab.lab.handsets[0]
    text = "".join(chr(ord("a") + i % 26) for i in range(400))
    refs = modem.send_sms(lh.identity.sims[0].msisdn, text)
    assert len(refs) == 3  # 153 + 153 + 94 septets
    wait_for(lambda: (mlab.lab.modem_info()["number"], text) in inbox_rows(lh))


def test_400_characters_from_the_handset_arrive_as_one_concatenated_message(mlab, modem):
    lh = mlab.lab.handsets[0]
    text = "".join(str(i % 10) for i in range(400))
    lh.send_sms(mlab.lab.modem_info()["number"], text)
    sms = modem.wait_message(timeout=5)
    assert sms.text == text and sms.complete and len(sms.parts) == 3
    assert sms.sender == lh.identity.sims[0].msisdn
    assert [m.text for m in modem.inbox()] == [text]


def test_ucs2_round_trip_with_a_surrogate_pair(mlab, modem):
    lh = mlab.lab.handsets[0]
    text = "云消息 测试 😀 " * 8  # 104 UTF-16 units: two UCS-2 parts
    modem.send_sms(lh.identity.sims[0].msisdn, text)
    wait_for(lambda: (mlab.lab.modem_info()["number"], text) in inbox_rows(lh))
    lh.send_sms(mlab.lab.modem_info()["number"], text)
    sms = modem.wait_message(timeout=5)
    assert sms.text == text and all(p.message.coding == "ucs2" for p in sms.parts)
    single = modem.send_sms(lh.identity.sims[0].msisdn, "短信", mode="text")
    assert len(single) == 1
    wait_for(lambda: (mlab.lab.modem_info()["number"], "短信") in inbox_rows(lh))


def test_delivery_report_for_each_part(mlab, modem):
    refs = modem.send_sms(mlab.lab.handsets[0].identity.sims[0].msisdn, "report " * 30, status_report=True)
    reports = [modem.wait_status_report(mr, timeout=5) for mr in refs]
    assert [r.message_ref for r in reports] == refs and all(r.delivered for r in reports)


def test_unallocated_number_is_a_cms_error_with_its_meaning(modem):
    with pytest.raises(CmsError) as e:
        modem.send_sms("+8613999999999", "nobody")
    assert e.value.code == 1 and e.value.meaning == "unassigned (unallocated) number"


def test_a_cmti_inside_another_commands_response_is_kept_and_the_command_succeeds():
    """A quirky modem (interleave_urcs) puts +CMTI between +CMGS: and OK: sending to its own
    number makes the network deliver while the +CMGS response is being written."""
    carrier = Carrier()
    em = EmulatedModem(ModemIdentity(number="+8613800138000"), carrier, country_code="86", interleave_urcs=True)
    server = ModemServer(em, pty=False).start()
    em.attach()
    try:
        with Modem.open(server.url, timeout=5) as m:
            m._write(b"AT+CMGF=0\r", None)  # raw: see the quirk on the wire first
            time.sleep(0.1)
            m.poll(0.2)
            refs = m.send_sms("+8613800138000", "to myself")
            assert refs == [1]
            sms = m.wait_sms(timeout=2)  # the +CMTI that came inside the response
            assert sms.text == "to myself" and sms.address == "+8613800138000"
    finally:
        server.stop()


# --- scripted ports: what the emulated modem never does ---------------------------------------


class ScriptedPort:
    """A pyserial-like port: each write gets the scripted answer for that command line."""

    def __init__(self, answers: dict[bytes, bytes], noise: bytes = b"") -> None:
        self.answers, self.rx, self.written = answers, bytearray(noise), []
        self.lock = threading.Lock()
        self.closed = False

    @property
    def in_waiting(self) -> int:
        return len(self.rx)

    def write(self, data: bytes) -> int:
        self.written.append(data)
        with self.lock:
            self.rx += self.answers.get(data, b"")
        return len(data)

    def read(self, n: int) -> bytes:
        if self.closed:
            raise OSError(5, "Input/output error")
        with self.lock:
            out = bytes(self.rx[:n])
            del self.rx[:n]
        if not out:
            time.sleep(0.01)
        return out

    def close(self) -> None:
        self.closed = True


def test_urc_between_response_lines_is_kept():
    port = ScriptedPort({b"AT+CPMS?\r": b'\r\n+CPMS: "SM",1,30,\r\n+CMTI: "SM",2\r\n"SM",1,30\r\n\r\nOK\r\n'})
    m = Modem(port, name="scripted", timeout=1)
    assert m.command("AT+CPMS?") == ['+CPMS: "SM",1,30,', '"SM",1,30']
    assert [u.line for u in m.poll()] == ['+CMTI: "SM",2']


def test_garbage_and_truncated_lines_are_typed_errors_and_nothing_read_is_lost():
    port = ScriptedPort(
        {b"AT+CSQ\r": b"\xff\xfe\r\n+CSQ: 1", b"AT+CGMI\r": b"\r\nACME\r\n\r\nOK\r\n"}, noise=b"\x00\x13garbage\r\n"
    )
    m = Modem(port, name="scripted", timeout=0.3)
    with pytest.raises(ModemTimeoutError) as e:
        m.command("AT+CSQ")
    assert e.value.lines == ["\xff\xfe"] and e.value.timeout == 0.3  # what did come, with the error
    assert any("garbage" in u for u in m.unclaimed)  # noise before it, kept aside
    port.rx += b"5,0\r\n\r\nOK\r\n"  # the rest of the answer comes late
    assert m.command("AT+CGMI") == ["ACME"]  # not mistaken for this answer...
    assert m.unclaimed[-2:] == ["+CSQ: 15,0", "OK"]  # ...and not lost
    port.answers[b"AT+CMGF=0\r"] = b"\r\nOK\r\n"
    port.answers[b"AT+CMGR=1\r"] = b"\r\n+CMGR: 0,,5\r\n07GARBAGE\r\n\r\nOK\r\n"
    with pytest.raises(ModemProtocolError):
        m.read_sms(1)


def test_cms_error_500_and_cme_errors_carry_code_and_meaning():
    port = ScriptedPort(
        {
            b"AT+CMGD=1\r": b"\r\n+CMS ERROR: 500\r\n",
            b"AT+CPIN?\r": b"\r\n+CME ERROR: 10\r\n",
            b"AT+CMGR=2\r": b"\r\n+CMS ERROR: memory failure\r\n",
            b"AT+X\r": b"\r\nERROR\r\n",
        }
    )
    m = Modem(port, name="scripted", timeout=1)
    with pytest.raises(CmsError) as e:
        m.delete_sms(1)
    assert (e.value.code, e.value.meaning, e.value.command) == (500, "unknown error", "AT+CMGD=1")
    with pytest.raises(CmeError) as e2:
        m.command("AT+CPIN?")
    assert (e2.value.code, e2.value.meaning) == (10, "SIM not inserted")
    assert m.sim_state() == "error: SIM not inserted"
    with pytest.raises(CmsError) as e3:
        m.command("AT+CMGR=2")
    assert e3.value.code is None and e3.value.meaning == "memory failure"
    with pytest.raises(Exception) as e4:
        m.command("AT+X")
    assert type(e4.value).__name__ == "ModemCommandError" and e4.value.result == "ERROR"


def test_echo_only_port_times_out_with_a_typed_error():
    with pytest.raises(ModemTimeoutError):
        Modem.open("loop://", timeout=0.3)


def test_missing_port_and_vanishing_ports():
    with pytest.raises(ModemOpenError):
        Modem.open("/dev/hostctl-no-such-port", timeout=1)
    carrier = Carrier()
    em = EmulatedModem(ModemIdentity(), carrier, country_code="86")
    server = ModemServer(em).start()
    em.attach()
    by_url = Modem.open(server.url, timeout=2)
    by_pty = Modem.open(server.pty_path, timeout=2)  # two ports of one modem, as on USB modems
    assert by_url.identify().imei == by_pty.identify().imei == "356938035643809"
    server.stop()
    for m in (by_url, by_pty):
        with pytest.raises(ModemGoneError) as e:
            m.command("AT+CGMI")
        assert "went away" in str(e.value)
        m.close()
    closed = Modem(ScriptedPort({}), name="closed")
    closed.close()
    with pytest.raises(ModemGoneError):
        closed.command("AT")


@pytest.mark.parametrize("left", [b"ATE1V0\r", b"ATQ1\r", b"ATE1V0Q1\r"])
def test_open_restores_a_modem_left_numeric_or_quiet(mlab, left):
    import serial

    pty = mlab.lab.modem_info()["pty"]
    with serial.Serial(pty, timeout=1) as raw:  # an earlier program leaves the modem odd
        raw.write(left)
        time.sleep(0.2)
        raw.read(raw.in_waiting or 1)
    with Modem.open(pty, timeout=5) as m:
        info = m.identify()
        assert info.imei == mlab.lab.modem.identity.imei and info.manufacturer


def test_a_full_storage_lists_completely_over_the_pty(mlab):
    lh = mlab.lab.handsets[0]
    number = mlab.lab.modem_info()["number"]
    with Modem.open(mlab.lab.modem_info()["pty"], timeout=10) as m:
        m.command('AT+CPMS="MT","MT","MT"')  # SIM (30) and phone (100) storage together
        m.delete_all()

        async def flood():
            for i in range(60):
                lh.send_sms(number, f"{i:03d} " + "y" * 150)

        mlab.call(flood())
        listed = m.list_sms("ALL")
        assert len(listed) == 60  # ~25 KB of +CMGL: more than a pty buffer holds
        m.delete_all()


def test_a_surrogate_pair_split_across_parts_by_the_sender_is_joined():
    # Android 4.x split UCS-2 parts at 67 units, even inside a surrogate pair
    from datetime import datetime

    from hostctl.lab.modem import StoredSms, join_parts
    from hostctl.sms.pdu import SmsDeliver, decode, encode

    text = "x" * 66 + "\U0001f600"
    octets = text.encode("utf-16-be")
    halves = (octets[:134], octets[134:])
    parts = []
    for seq, half in enumerate(halves, 1):
        d = SmsDeliver(
            "+8613800138000",
            "",
            datetime(2024, 1, 1, tzinfo=UTC),
            coding="8bit",
            concat=(5, 2, seq),
            data=half,
        )
        hexpdu = encode(d).hex
        dcs_8bit, dcs_ucs2 = "04", "08"  # the same octets, declared UCS-2 as the phone sent them
        i = hexpdu.index("00" + dcs_8bit, 0)
        parts.append(StoredSms(seq, "REC UNREAD", decode(hexpdu[:i] + "00" + dcs_ucs2 + hexpdu[i + 4 :]), "SM"))
    (joined,) = join_parts(parts)
    assert joined.text == text and joined.complete


def test_a_two_line_urc_before_the_send_prompt_is_kept_whole():
    # a modem with +CNMI mt=2 may push a +CMT (header line + PDU line) just before the "> " prompt
    from datetime import datetime

    from hostctl.sms.pdu import SmsDeliver, encode

    incoming = encode(SmsDeliver("+8613800138000", "hi", datetime(2024, 1, 1, tzinfo=UTC), smsc="+8613800100500")).hex
    submit = "0011000B916831081083F00000A702E834"  # any SMS-SUBMIT PDU, SMSC field 00
    port = ScriptedPort(
        {
            b"AT+CMGF=0\r": b"\r\nOK\r\n",
            b"AT+CMGS=16\r": f"\r\n+CMT: ,{len(incoming) // 2 - 9}\r\n{incoming}\r\n> ".encode(),
            submit.encode() + b"\x1a": b"\r\n+CMGS: 5\r\n\r\nOK\r\n",
        }
    )
    m = Modem(port, name="scripted", timeout=1)
    assert m.send_pdu(submit, timeout=5) == 5
    (urc,) = m.poll()
    assert urc.line.startswith("+CMT:") and urc.data == incoming
