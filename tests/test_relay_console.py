"""Relay board and UART console controllers (hostctl.lab.relay / .console) and their emulated
twins (hostctl.emulator.relay / .console): frames, the board machine, the controller contract
(create from config, destroy never raising, info), recording, and a port that vanishes."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostctl.emulator.lab import LabConfig, LabThread
from hostctl.emulator.relay import Ignored, RelayBoard, Switched
from hostctl.errors import ConfigError
from hostctl.lab.console import Console, ConsoleGoneError, ConsoleOpenError, format_line
from hostctl.lab.relay import Relay, RelayGoneError, RelayOpenError, decode_frame, encode_frame
from tests.conftest import free_port, wait_for

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z (.*)$")


@pytest.fixture(scope="module")
def slab(tmp_path_factory):
    """Two handsets, their consoles and the relay board; no adb, no modem."""
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=2,
            home=tmp_path_factory.mktemp("serial-lab"),
            with_apps=False,
            connect=False,
            modem=False,
            cloud=False,
        )
    ) as lt:
        yield lt


# --- frames and the board ----------------------------------------------------------------------


def test_frames_are_the_documented_bytes():
    assert encode_frame(1, True) == bytes.fromhex("A0 01 01 A2")
    assert encode_frame(1, False) == bytes.fromhex("A0 01 00 A1")
    assert encode_frame(2, True) == bytes.fromhex("A0 02 01 A3")
    assert encode_frame(0xFF, True) == bytes.fromhex("A0 FF 01 A0")  # the checksum wraps
    assert decode_frame(bytes.fromhex("A0 01 01 A2")) == (1, True)
    for bad in (0, 256, -1, True, "1"):
        with pytest.raises(ValueError):
            encode_frame(bad, True)
    with pytest.raises(ValueError, match="checksum"):
        decode_frame(bytes.fromhex("A0 01 01 A3"))


@given(st.integers(1, 255), st.booleans())
def test_frames_round_trip(channel, on):
    assert decode_frame(encode_frame(channel, on)) == (channel, on)


def test_board_obeys_good_frames_and_ignores_bad_ones_as_real_boards_do():
    board = RelayBoard(4)
    board.receive_data(bytes.fromhex("55 A0 01 00 A1 A0 02 00 A3 A0 09 00 A9 A0 03"))
    board.receive_data(bytes.fromhex("00 A3"))  # a frame split in two
    events = []
    while (ev := board.next_event()) is not None:
        events.append(ev)
    assert events[0] == Ignored(b"\x55", "no start byte A0")
    assert events[1] == Switched(1, False)
    assert events[2].data == b"\xa0" and "checksum" in events[2].reason  # its A0 is dropped...
    assert events[3] == Ignored(b"\x02\x00\xa3", "no start byte A0")  # ...and the rest skipped
    assert isinstance(events[4], Ignored) and "no relay 9" in events[4].reason
    assert events[5] == Switched(3, False)
    assert board.states == {1: False, 2: True, 3: False, 4: True}


def test_a_stray_start_byte_does_not_swallow_the_next_frame():
    board = RelayBoard(2)
    board.receive_data(bytes.fromhex("A0 A0 01 00 A1"))  # a stray A0, then "relay 1 off"
    events = []
    while (ev := board.next_event()) is not None:
        events.append(ev)
    assert events[-1] == Switched(1, False) and board.states[1] is False


@given(st.binary(max_size=64))
def test_board_never_breaks_on_random_bytes(data):
    board = RelayBoard(8)
    board.receive_data(data)
    while (ev := board.next_event()) is not None:
        assert isinstance(ev, (Switched, Ignored))
    assert len(board._buf) < 4  # at most a frame's beginning waits


# --- the controller contract ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, key",
    [
        ({}, "port"),
        ({"port": ""}, "port"),
        ({"port": "loop://", "channel": 0}, "channel"),
        ({"port": "loop://", "channel": "1"}, "channel"),
        ({"port": "loop://", "channel": 5, "channels": 4}, "channel"),
        ({"port": "loop://", "baudrate": "fast"}, "baudrate"),
        ({"port": "loop://", "off_seconds": -1}, "off_seconds"),
        ({"port": "loop://", "chanel": 1}, "chanel"),
    ],
)
def test_relay_config_errors_name_the_key(config, key):
    with pytest.raises(ConfigError) as info:
        Relay.create(config)
    assert info.value.key == key and repr(key) in str(info.value) and "relay" in str(info.value)


@pytest.mark.parametrize(
    "config, key",
    [
        ({"evidence_dir": "/tmp"}, "port"),
        ({"port": "loop://"}, "evidence_dir"),
        ({"port": "loop://", "evidence_dir": "/tmp", "baudrate": 0}, "baudrate"),
        ({"port": "loop://", "evidence_dir": "/tmp", "label": "../x"}, "label"),
        ({"port": "loop://", "out": "/tmp/x", "colour": True}, "colour"),
    ],
)
def test_console_config_errors_name_the_key(config, key):
    with pytest.raises(ConfigError) as info:
        Console.create(config)
    assert info.value.key == key and repr(key) in str(info.value)


def test_relay_create_sends_frames_and_reports_what_it_commanded():
    relay = Relay.create({"port": "loop://", "channel": 2, "baudrate": 9600, "off_seconds": 0})
    try:
        assert relay.state() is None  # the board cannot be asked
        assert relay.cycle() == [bytes.fromhex("A0 02 00 A2"), bytes.fromhex("A0 02 01 A3")]
        assert relay._port.read(8) == bytes.fromhex("A0 02 00 A2 A0 02 01 A3")
        assert relay.off(1) == bytes.fromhex("A0 01 00 A1")
        info = relay.info()
        assert info["port"] == "loop://" and info["channel"] == 2 and info["frames_sent"] == 3
        assert info["states"] == {"1": "off", "2": "on"}
    finally:
        relay.destroy()
    relay.destroy()  # twice: still nothing raised
    with pytest.raises(RelayGoneError):
        relay.on()


def test_open_errors_are_typed(tmp_path):
    with pytest.raises(RelayOpenError, match="cannot open relay port"):
        Relay.create({"port": str(tmp_path / "ttyUSB9")})
    with pytest.raises(ConsoleOpenError, match="cannot open console port"):
        Console.create({"port": str(tmp_path / "ttyUSB9"), "evidence_dir": str(tmp_path)})


# --- against the emulated twins ----------------------------------------------------------------------


def test_relay_on_the_pty_powers_the_handset_off_and_on(slab):
    lh = slab.lab.handsets[1]
    relay_info = slab.lab.relay_info()
    assert relay_info["channels"]["2"] == {"handset": "hs2", "serial": lh.serial, "on": True}
    with Relay.create({"port": relay_info["pty"], "channel": 2}) as relay:
        relay.off()
        wait_for(lambda: not lh.powered)
        assert slab.lab.relay_info()["channels"]["2"]["on"] is False
        relay._port.write(bytes.fromhex("A0 02 01 A4"))  # bad checksum: ignored
        relay._port.write(bytes.fromhex("A0 07 01 A8"))  # no relay 7 on a 2-relay board: ignored
        wait_for(lambda: len(slab.lab.relay.ignored) >= 2)
        assert not lh.powered
        relay.cycle(off_seconds=0.1)
        wait_for(lambda: lh.powered)
    assert slab.lab.handsets[0].powered


def test_console_records_the_handsets_log_with_timestamps_into_the_evidence_folder(slab, tmp_path):
    lh = slab.lab.handsets[0]
    console = Console.create(
        {"port": slab.lab.consoles_info()["hs1"]["pty"], "evidence_dir": str(tmp_path), "label": "hs1"}
    )
    try:
        console.start()
        lh.handset.log("I", "TEST", "before\nsecond line")
        wait_for(lambda: console.info()["lines"] >= 2)
        rec = console.stop()
    finally:
        console.destroy()
    assert rec.path == str(tmp_path / "console-hs1.log") and rec.ended_by == "stopped" and rec.lines == 2
    lines = (tmp_path / "console-hs1.log").read_text().splitlines()
    texts = [LINE.match(line).group(1) for line in lines]
    assert re.fullmatch(r"\[\s*\d+\.\d{6}\] I/TEST\(\s*\d+\): before", texts[0])
    assert texts[1].endswith("I/TEST(" + texts[1].split("(")[1].split(")")[0] + "): second line")
    assert console.info()["out"] == rec.path


def test_record_for_a_duration_over_the_url(slab, tmp_path):
    import threading

    lh = slab.lab.handsets[0]
    out = tmp_path / "nested" / "hs1.log"
    timer = threading.Timer(0.3, lambda: lh.handset.log("E", "TEST", "during"))
    with Console.open(slab.lab.consoles_info()["hs1"]["url"], out) as console:
        timer.start()
        t0 = time.monotonic()
        rec = console.record(duration=1.0)
        timer.join()
    assert 0.9 < time.monotonic() - t0 < 3 and rec.ended_by == "duration"
    assert rec.to_json()["lines"] == 1 and "E/TEST" in out.read_text() and "during" in out.read_text()


def test_format_line_keeps_bad_bytes_and_drops_the_line_end():
    assert format_line(0.0, b"caf\xc3\xa9 \xff\r\n") == "1970-01-01T00:00:00.000000Z caf\u00e9 \\xff\n"


def test_a_console_port_that_vanishes_ends_cleanly_and_keeps_what_was_read(tmp_path):
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=1,
            home=tmp_path / "home",
            with_apps=False,
            connect=False,
            modem=False,
            cloud=False,
            relay=False,
        )
    ) as lt:
        lh = lt.lab.handsets[0]
        ports = lt.lab.consoles_info()["hs1"]
        consoles = {kind: Console.open(ports[kind], tmp_path / f"{kind}.log") for kind in ("pty", "url")}
        for console in consoles.values():
            console.start()
        time.sleep(0.2)
        lh.handset.log("W", "TEST", "kept")
        wait_for(lambda: all(c.info()["lines"] >= 1 for c in consoles.values()))
        lt.lab.consoles["hs1"][1].stop()  # the adapter is unplugged
        for kind, console in consoles.items():
            assert console.wait(5), kind
            rec = console.recording
            assert rec.ended_by == "port-gone" and rec.gone and rec.lines == 1, rec
            assert isinstance(console.error, ConsoleGoneError) and console.error.recording is rec
            assert "keeps the 1 line(s)" in str(console.error)
            assert "W/TEST" in (tmp_path / f"{kind}.log").read_text()
            console.destroy()  # never raises, port gone or not
            console.destroy()
            assert console.info()["ended_by"] == "port-gone"
        with pytest.raises(ConsoleGoneError):
            consoles["pty"].record(0.1)  # closed: a typed error, no traceback
    assert lt.lab.consoles == {} and lt.lab.relay is None


def test_relay_destroy_never_raises_after_the_port_vanished(tmp_path):
    with LabThread(
        LabConfig(
            adb_port=free_port(),
            handsets=1,
            home=tmp_path,
            with_apps=False,
            connect=False,
            modem=False,
            cloud=False,
            consoles=False,
        )
    ) as lt:
        relay = Relay.create({"port": lt.lab.relay_info()["url"], "timeout": 1})
        relay.on()
        lt.lab.relay_server.stop()
        with pytest.raises((RelayGoneError,)):
            for _ in range(50):  # TCP notices on a later write
                relay.on()
                time.sleep(0.02)
        relay.destroy()
        relay.destroy()
