"""Testbed files: reading, the errors that point at the bad key and line, writing, and the
testbed `hostctl emulator up` writes for the lab it started."""

from __future__ import annotations

import io
import json
import os
import textwrap

import pytest

from hostctl.cli import Environment, ExitStatus, main
from hostctl.device import AdbAddress
from hostctl.errors import ConfigError
from hostctl.lab.console import Console
from hostctl.lab.relay import Relay
from hostctl.testbed import (
    CaptureSpec,
    Testbed,
    dump_testbed,
    load_testbed,
    load_testbeds,
    parse_testbeds,
    write_testbed,
)
from tests.conftest import free_port

ENV = {"ANDROID_ADB_SERVER_PORT": "5099"}

RACK = textwrap.dedent("""\
    testbeds:
      - name: rack-a
        handsets:
          - serial: 4d00c0ffee
            label: sender
            adb: 10.0.0.5:5037
            sims:
              - {slot: 0, number: +8613800000001, iccid: 89860012345678901238, operator: CHINA MOBILE}
              - slot: 1
                number: "+86 138 0000 0003"
                imsi: 460001234567890
                imei: 864804021234562
            capture: pcapdroid
            frida: {server: /data/local/tmp/frida-server, processes: [com.android.mms, com.xiaomi.xmsf]}
            console: /dev/ttyUSB1
            relay_channel: 1
          - serial: 00123
            label: receiver
            sims: [{number: "+8613800000002"}]
            capture: {source: "host:wlan0", filter: "tcp port 5222"}
            relay_channel: 2
        modem: {port: /dev/ttyUSB0, number: "+8613900000000", pin: 0000}
        relay: {port: /dev/ttyUSB2, channels: 4}
        params: {sms_timeout: 60, hosts: [app.chat.xiaomi.net]}
      - name: desk
        handsets:
          - {serial: abc, label: only, sims: [{number: "+14155550100"}]}
    """)


def write(tmp_path, text: str, name: str = "lab.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_rack_file_reads_into_typed_specs(tmp_path):
    path = write(tmp_path, RACK)
    tb = load_testbed(path, "rack-a", env=ENV)
    assert tb.name == "rack-a" and tb.labels == ["sender", "receiver"] and tb.source == str(path)
    sender, receiver = tb.handset("sender"), tb.handset("receiver")
    assert sender.adb == AdbAddress("10.0.0.5", 5037)
    assert receiver.adb == AdbAddress("127.0.0.1", 5099)  # the environment's adb server
    # unquoted identifiers keep the file's own text: the +, the leading zeros
    assert receiver.serial == "00123"
    assert [s.number for s in sender.sims] == ["+8613800000001", "+8613800000003"]
    assert sender.number == "+8613800000001" and sender.sim(1).imsi == "460001234567890"
    assert sender.sims[0].iccid == "89860012345678901238" and sender.sims[0].operator == "CHINA MOBILE"
    assert receiver.sims[0].slot == 0  # from the entry's index
    assert sender.capture == CaptureSpec("pcapdroid")
    assert receiver.capture == CaptureSpec("host", interface="wlan0", filter="tcp port 5222")
    assert sender.frida.processes == ("com.android.mms", "com.xiaomi.xmsf") and sender.frida.port == 27042
    assert sender.console.port == "/dev/ttyUSB1" and sender.console.baudrate == 115200
    assert tb.modem.pin == "0000" and tb.modem.number == "+8613900000000"
    assert tb.param("sms_timeout") == 60 and tb.param("missing", 5) == 5
    assert tb.identifiers() == {
        "msisdn": ["+8613800000001", "+8613800000003", "+8613800000002", "+8613900000000"],
        "iccid": ["89860012345678901238"],
        "imsi": ["460001234567890"],
        "imei": ["864804021234562"],
    }
    assert tb.warnings == ()
    assert tb.handset("4d00c0ffee") is sender  # by serial too
    with pytest.raises(ConfigError, match="no handset labelled 'peer'.*sender, receiver"):
        tb.handset("peer")
    assert [t.name for t in load_testbeds(path, env=ENV)] == ["rack-a", "desk"]


def test_specs_are_the_controllers_own_config(tmp_path):
    tb = parse_testbeds(RACK.replace("/dev/ttyUSB2", "loop://").replace("/dev/ttyUSB1", "loop://"), env=ENV)[0]
    relay = Relay.create(tb.relay.controller_config(tb.handset("receiver").relay_channel))
    try:
        assert relay.info()["channel"] == 2 and relay.info()["channels"] == 4
    finally:
        relay.destroy()
    console = Console.create(tb.handset("sender").console.controller_config("sender", tmp_path))
    try:
        assert console.info()["out"] == str(tmp_path / "console-sender.log")
    finally:
        console.destroy()


def test_capture_specs_build_the_capture_sources():
    capture = pytest.importorskip("hostctl.capture")
    tb = parse_testbeds(
        RACK.replace("capture: pcapdroid", "capture: {source: pcapdroid, options: {pcapng: true}}"), env=ENV
    )[0]
    pcapdroid, host = (h.capture for h in tb)
    assert (host.spec, host.source_options()) == ("host:wlan0", {"bpf": "tcp port 5222"})
    assert capture.source_for(pcapdroid.spec, **pcapdroid.source_options()).pcapng is True
    assert capture.source_for(host.spec, **host.source_options()).bpf == "tcp port 5222"
    dump = CaptureSpec("tcpdump", interface="wlan0", filter="port 443")
    assert capture.source_for(dump.spec, **dump.source_options()).interface == "wlan0"


def test_which_testbed_of_a_file(tmp_path):
    path = write(tmp_path, RACK)
    with pytest.raises(ConfigError) as info:
        load_testbed(path, env=ENV)
    assert str(info.value) == f"{path}: testbeds: lists 2 testbeds (rack-a, desk): say which one to use"
    with pytest.raises(ConfigError, match=r"no testbed named 'rack-b' \(have: rack-a, desk\)"):
        load_testbed(path, "rack-b", env=ENV)
    single = write(
        tmp_path,
        "name: desk\nhandsets:\n  - {serial: abc, label: only, sims: [{number: '+14155550100'}]}\n",
        "one.yaml",
    )
    assert load_testbed(single, env=ENV) == load_testbed(path, "desk", env=ENV)


# (edit of RACK, expected "line: key path: problem")
BAD = [
    (
        ("label: receiver", "lable: receiver"),
        "18: testbeds[0].handsets[1].lable: unknown key; did you mean 'label'? (known: adb, capture, console, "
        "frida, label, relay_channel, serial, sims)",
    ),
    (
        ('"+8613800000002"', "'12'"),
        "19: testbeds[0].handsets[1].sims[0].number: '12' is not an E.164 number (+, country code, subscriber "
        "number, e.g. '+8613800000001')",
    ),
    (
        ('number: "+86 138 0000 0003"', 'numbr: "+86"'),
        "10: testbeds[0].handsets[0].sims[1].numbr: unknown key; did you mean 'number'? (known: iccid, imei, "
        "imsi, number, operator, slot)",
    ),
    (
        ("serial: 00123", "serial: 4d00c0ffee\n        adb: 10.0.0.5:5037"),
        "17: testbeds[0].handsets[1].serial: serial '4d00c0ffee' on adb server 10.0.0.5:5037 is already used by "
        "testbeds[0].handsets[0].serial (line 4)",
    ),
    (
        ("label: receiver", "label: sender"),
        "18: testbeds[0].handsets[1].label: label 'sender' is already used by testbeds[0].handsets[0].label (line 5)",
    ),
    (
        ('"+8613900000000"', '"+8613800000002"'),
        "22: testbeds[0].modem.number: number '+8613800000002' is already used by "
        "testbeds[0].handsets[1].sims[0].number (line 19)",
    ),
    (
        ("relay_channel: 2", "relay_channel: 1"),
        "21: testbeds[0].handsets[1].relay_channel: relay channel 1 is already used by "
        "testbeds[0].handsets[0].relay_channel (line 16)",
    ),
    (
        ("relay_channel: 2", "relay_channel: 5"),
        "21: testbeds[0].handsets[1].relay_channel: must be between 1 and 4 (the relay's channels), not 5",
    ),
    (("channels: 4", "channels: four"), "23: testbeds[0].relay.channels: must be an integer, not 'four'"),
    (
        ("- slot: 1", "- slot: 0"),
        "9: testbeds[0].handsets[0].sims[1].slot: SIM slot 0 is already used by testbeds[0].handsets[0].sims[0].slot "
        "(line 8)",
    ),
    (
        ("imei: 864804021234562", "imei: 864804021234567"),
        "12: testbeds[0].handsets[0].sims[1].imei: '864804021234567' is not an IMEI (its check digit fails Luhn)",
    ),
    (
        ("imsi: 460001234567890", "imsi: 46000x"),
        "11: testbeds[0].handsets[0].sims[1].imsi: '46000x' is not an IMSI (6-15 digits)",
    ),
    (
        ("capture: pcapdroid", "capture: pcapdriod"),
        "13: testbeds[0].handsets[0].capture: 'pcapdriod' is not a capture source (lab, pcapdroid, tcpdump, "
        "host:IFACE or none); did you mean 'pcapdroid'?",
    ),
    (
        ('source: "host:wlan0"', "source: host"),
        "20: testbeds[0].handsets[1].capture.source: a host capture needs the interface: host:IFACE",
    ),
    (
        ("- serial: 00123\n        label: receiver", "- label: receiver"),
        "17: testbeds[0].handsets[1].serial: is required",
    ),
    (
        ("adb: 10.0.0.5:5037", "adb: 10.0.0.5:port"),
        "6: testbeds[0].handsets[0].adb: not an adb server address: '10.0.0.5:port' (expected HOST:PORT or PORT)",
    ),
    (
        ("label: receiver", "label: ../receiver"),
        "18: testbeds[0].handsets[1].label: '../receiver' is not a usable label (letters, digits, '.', '_', '-'; "
        "it names a folder)",
    ),
    (("pin: 0000", "pin: 12"), "22: testbeds[0].modem.pin: '12' is not a SIM PIN (4-8 digits)"),
    (
        ("console: /dev/ttyUSB1", "console: {port: /dev/ttyUSB1, baud: 9600}"),
        "15: testbeds[0].handsets[0].console.baud: unknown key; did you mean 'baudrate'? (known: baudrate, port)",
    ),
    (
        ("params: {", "parms: {"),
        "24: testbeds[0].parms: unknown key; did you mean 'params'? (known: emulator, handsets, modem, name, params, "
        "relay)",
    ),
    (
        ("label: receiver", "label: receiver\n        label: peer"),
        "19: testbeds[0].handsets[1].label: appears twice in this mapping (first on line 18)",
    ),
    (
        ("label: receiver", "label: [receiver"),
        "19: not valid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence)",
    ),
    (
        ("- name: desk", "- name: rack-a"),
        "25: testbeds[1].name: testbed name 'rack-a' is already used by testbeds[0] (line 2)",
    ),
    (
        ("    relay: {port: /dev/ttyUSB2, channels: 4}\n", ""),
        "16: testbeds[0].handsets[0].relay_channel: needs a `relay:` entry in the testbed",
    ),
]


@pytest.mark.parametrize(
    "edit, expected", BAD, ids=[e[1].split(":")[1].strip() + "@" + e[1].split(":")[0] for e in BAD]
)
def test_errors_name_the_file_line_and_key_path(tmp_path, edit, expected):
    old, new = edit
    assert old in RACK
    path = write(tmp_path, RACK.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_testbeds(path, env=ENV)
    assert str(info.value) == f"{path}:{expected}"
    line, key = expected.split(":")[:2]
    assert info.value.line == int(line) and info.value.source == str(path)
    if "YAML" not in expected:
        assert info.value.key == key.strip()


def test_iccid_oddities_are_warnings_with_their_line(tmp_path):
    text = RACK.replace("89860012345678901238", "89860012345678901234").replace(
        '{number: "+8613800000002"}', '{number: "+8613800000002", iccid: "98860012345678901234"}'
    )
    tb = load_testbed(write(tmp_path, text), "rack-a", env=ENV)
    assert [(w.key, w.line) for w in tb.warnings] == [
        ("testbeds[0].handsets[0].sims[0].iccid", 8),
        ("testbeds[0].handsets[1].sims[0].iccid", 19),
    ]
    assert "fails the Luhn check" in str(tb.warnings[0]) and "does not start with 89" in str(tb.warnings[1])
    assert str(tb.warnings[0]).startswith(f"{tmp_path / 'lab.yaml'}:8: testbeds[0].handsets[0].sims[0].iccid: ")


def test_anchors_and_merge_keys_share_settings_and_keep_lines():
    text = textwrap.dedent("""\
        x-phone: &phone
          adb: 10.0.0.5:5037
          capture: pcapdroid
        testbeds:
          - name: r
            handsets:
              - <<: *phone
                serial: a
                label: one
                sims: [{number: "+8613800000001"}]
              - <<: *phone
                serial: b
                label: two
                capture: tcpdump
                sims: [{number: "+8613800000002"}]
        """)
    one, two = parse_testbeds(text, env={})[0].handsets
    assert one.adb == two.adb == AdbAddress("10.0.0.5", 5037)
    assert (one.capture.source, two.capture.source) == ("pcapdroid", "tcpdump")  # the entry's own wins
    with pytest.raises(ConfigError) as info:
        parse_testbeds(text.replace("capture: pcapdroid", "captur: pcapdroid"), source="t.yaml", env={})
    assert str(info.value).startswith("t.yaml:3: testbeds[0].handsets[0].captur: unknown key; did you mean 'capture'?")


def test_odd_files_are_config_errors_not_tracebacks(tmp_path):
    cases = {
        "": "is empty",
        "- a\n- b\n": "must be a mapping, not a list",
        "testbed:\n  - name: x\n": "found 'testbed'; did you mean 'testbeds'?",
        "testbeds: []\n": "testbeds: lists no testbed",
        "name: x\nhandsets: {serial: a}\n": "handsets: must be a list, not a mapping",
        "name: x\nhandsets:\n  - {serial: a, label: b, sims: [{number: '+8613800000001'}], 3: x}\n": "keys must be strings",
    }
    for text, fragment in cases.items():
        with pytest.raises(ConfigError) as info:
            parse_testbeds(text, source="t.yaml", env=ENV)
        assert fragment in str(info.value) and str(info.value).startswith("t.yaml"), (text, str(info.value))
    with pytest.raises(ConfigError, match="no such testbed file"):
        load_testbed(tmp_path / "nope.yaml")
    # plain data (no YAML nodes): the same checks, no line numbers
    with pytest.raises(ConfigError) as info:
        Testbed.from_dict({"name": "x", "handsets": [{"serial": "a", "label": "b", "sims": [{"number": 12}]}]}, env=ENV)
    assert (
        str(info.value) == "<dict>: handsets[0].sims[0].number: '12' is not an E.164 number (+, country code, "
        "subscriber number, e.g. '+8613800000001') (write it in quotes: YAML reads +... as an integer)"
    )
    assert info.value.line is None


def test_dump_and_load_round_trip(tmp_path):
    for tb in load_testbeds(write(tmp_path, RACK), env=ENV):
        text = dump_testbed(tb, comment="written by a test\nsecond line")
        assert text.startswith("# written by a test\n# second line\ntestbeds:\n")
        assert parse_testbeds(text, env={})[0] == tb  # adb written out: no env needed
        path = write_testbed(tb, tmp_path / "out" / f"{tb.name}.yaml")
        assert load_testbed(path, env={}) == tb
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["desk.yaml", "rack-a.yaml"]  # no temp files


# --- the emulated lab's testbed ------------------------------------------------------------------


def cli(env_vars, *argv):
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), Environment(stdout=out, stderr=err, vars=env_vars))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def lab_env(tmp_path):
    from hostctl.emulator.lab import kill_adb_server

    port = free_port()
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(port), HOSTCTL_HOME=str(tmp_path / "home"))
    yield port, env
    cli(env, "emulator", "down")
    kill_adb_server(port)


def test_emulator_up_writes_a_testbed_that_describes_the_lab(lab_env, tmp_path):
    from hostctl.device import Handset
    from hostctl.identity import read_identity
    from hostctl.lab.modem import Modem

    port, env = lab_env
    out_file = tmp_path / "mine" / "lab.yaml"
    st, out, err = cli(
        env,
        "emulator",
        "up",
        "--detach",
        "--no-apps",
        "--handsets",
        "2",
        "--profile",
        "miui-v5-2014-07",
        "--testbed-out",
        str(out_file),
        "--json",
    )
    assert st == ExitStatus.OK, err
    status = json.loads(out)
    assert status["testbed"] == str(out_file)
    default = tmp_path / "home" / "labs" / str(port) / "testbed.yaml"
    assert out_file.read_text() == default.read_text()
    assert out_file.read_text().startswith(f"# The emulated lab on adb port {port}")

    tb = load_testbed(out_file, env={})
    assert tb.name == f"emulator-{port}"
    assert tb.emulator.adb_port == port and tb.emulator.profile == "miui-v5-2014-07"
    assert tb.emulator.lab_dir == str(default.parent)
    assert tb.labels == ["hs1", "hs2"]
    assert [h.serial for h in tb] == [h["serial"] for h in status["handsets"]]
    for h, info in zip(tb, status["handsets"]):
        assert h.adb == AdbAddress("127.0.0.1", port)
        assert [s.number for s in h.sims] == info["numbers"] and [s.imei for s in h.sims] == info["imeis"]
        assert h.capture == CaptureSpec("lab")
        assert h.console.port == status["consoles"][h.label]["pty"]
        assert h.relay_channel == int(
            next(ch for ch, c in status["relay"]["channels"].items() if c["handset"] == h.label)
        )
        # what the handset itself reports over adb, reached by the testbed's serial and server
        ident = read_identity(Handset(h.serial, h.adb), timeout=20)
        assert [(s.slot, s.msisdn, s.iccid, s.imsi, s.sim_operator) for s in ident.slots] == [
            (s.slot, s.number, s.iccid, s.imsi, s.operator) for s in h.sims
        ]
    assert tb.relay.port == status["relay"]["pty"] and tb.relay.channels == 2
    assert (tb.modem.port, tb.modem.number, tb.modem.imsi) == (
        status["modem"]["pty"],
        status["modem"]["number"],
        status["modem"]["imsi"],
    )
    with Modem.open(
        tb.modem.port, **{k: v for k, v in tb.modem.controller_config().items() if k != "port"}, timeout=10
    ) as modem:
        assert (modem.identify().number, modem.identify().iccid) == (tb.modem.number, tb.modem.iccid)
    relay = Relay.create(tb.relay.controller_config(1))
    relay.destroy()

    st, out, _ = cli(env, "emulator", "status", "--json")
    assert st == ExitStatus.OK and json.loads(out)["testbed"] == str(default)
    st, out, _ = cli(env, "emulator", "status")
    assert f"testbed: {default}" in out

    # the lab's own file goes with the lab (its ptys are gone); the one asked for stays
    assert cli(env, "emulator", "down")[0] == ExitStatus.OK
    assert not default.exists() and out_file.exists()


def test_the_documented_example_is_a_valid_testbed():
    import hostctl.testbed as module

    doc = module.__doc__
    start = doc.index("    testbeds:\n")
    example = textwrap.dedent(doc[start : doc.index("\n\n", start)]).replace("...", "x")
    tb = parse_testbeds(example, env={})[0]
    assert tb.warnings == () and tb.labels == ["sender"] and tb.handset("sender").relay_channel == 1


# -- bad input never reaches a crash (exit 2, a message that points at the key) --------------------
ONE = textwrap.dedent("""\
    name: bench
    handsets:
      - {serial: abc, label: hs1, sims: [{number: "+8613800000001"}]}
    params: {settle: 0.5}
    """)


@pytest.mark.parametrize(
    "text, fragment",
    [
        (ONE.replace("settle: 0.5", "settle: fast"), "params.settle: must be a number (seconds), not 'fast'"),
        (ONE.replace("settle: 0.5", "settle: true"), "params.settle: must be a number"),
        (ONE.replace("settle: 0.5", "settle: -1"), "params.settle: must be at least 0.0"),
        (ONE.replace("settle: 0.5", "settle: .inf"), "params.settle: must be at most 600.0"),
        (ONE.replace("settle: 0.5", "sms_timeout: [1]"), "params.sms_timeout: must be a number"),
        (ONE.replace("bench", "ben\x00ch"), "character '\\x00' (U+0000) is not allowed"),
        (ONE.replace("hs1", "hs\x1b[31m1"), "character '\\x1b' (U+001B) is not allowed"),
        ("name: bench\n", "handsets: a testbed needs at least one handset"),
        ("name: bench\nhandsets: []\n", "handsets: a testbed needs at least one handset"),
        ("testbeds:\n  - name: bench\n    handsets:\n", "testbeds[0].handsets: a testbed needs at least one handset"),
    ],
)
def test_bad_testbeds_are_config_errors(text, fragment):
    with pytest.raises(ConfigError) as info:
        parse_testbeds(text, source="t.yaml", env=ENV)
    assert fragment in str(info.value), str(info.value)
    assert str(info.value).startswith("t.yaml")


def test_typed_params_are_typed():
    tb = parse_testbeds(ONE.replace("settle: 0.5", "settle: 1, sms_timeout: 60, note: free text"), env=ENV)[0]
    assert tb.params == {"settle": 1.0, "sms_timeout": 60.0, "note": "free text"}
    assert isinstance(tb.params["settle"], float)


@pytest.mark.parametrize(
    "text, fragment",
    [
        (ONE.replace("settle: 0.5", "settle: fast"), "params.settle: must be a number"),
        (ONE.replace("bench", "ben\x00ch"), "is not allowed in a testbed file"),
        ("name: bench\n", "a testbed needs at least one handset"),
    ],
)
def test_audit_refuses_a_bad_testbed_with_exit_2_before_any_run(tmp_path, text, fragment):
    path = tmp_path / "tb.yaml"
    path.write_text(text)
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), vars=dict(ENV))
    assert main(["audit", "--testbed", str(path), "--out", str(tmp_path / "runs")], env) == ExitStatus.USAGE
    err = env.stderr.getvalue()
    assert fragment in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()  # refused before a run folder was made


def _documented_example() -> str:
    import hostctl.testbed as module

    doc = module.__doc__
    start = doc.index("    testbeds:\n")
    return textwrap.dedent(doc[start : doc.index("\n\n", start)]).replace("...", "x")


def _bases() -> list[str]:
    """Real testbeds: the rack above, the documented example, and what `emulator up` writes."""
    written = dump_testbed(parse_testbeds(RACK, env=ENV)[0], comment="written by hostctl emulator up")
    return [RACK, _documented_example(), written, ONE]


def test_fuzzing_the_loader_gives_only_config_errors():
    """Mutated real testbeds (characters inserted, deleted, replaced, lines duplicated or swapped,
    control characters, YAML punctuation): the loader either reads a testbed or raises
    ConfigError, never anything else."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    alphabet = st.sampled_from(
        list("\x00\x01\x07\x08\x0b\x1b\x7f\x85\ufeff\u2028\ud800{}[]:,-&*!|>'\"#%@` \n\t0123456789+.aZ<")
        + ["<<: *x", "&x ", "!!python/object ", "~", "null", "1e999"]
    )
    bases = _bases()
    mutation = st.tuples(
        st.sampled_from(["insert", "delete", "replace", "dup-line", "swap-lines"]),
        st.floats(0, 1),
        st.floats(0, 1),
        alphabet,
    )

    @settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(range(len(bases))), st.lists(mutation, min_size=1, max_size=6))
    def fuzz(which, mutations):
        text = bases[which]
        for op, a, b, piece in mutations:
            i = int(a * len(text))
            if op == "insert":
                text = text[:i] + piece + text[i:]
            elif op == "delete":
                text = text[:i] + text[i + 1 + int(b * 8) :]
            elif op == "replace":
                text = text[:i] + piece + text[i + 1 :]
            else:
                lines = text.split("\n")
                j, k = int(a * (len(lines) - 1)), int(b * (len(lines) - 1))
                if op == "dup-line":
                    lines.insert(j, lines[k])
                else:
                    lines[j], lines[k] = lines[k], lines[j]
                text = "\n".join(lines)
        try:
            parse_testbeds(text, source="fuzz.yaml", env=ENV)
        except ConfigError as exc:
            assert str(exc).startswith("fuzz.yaml")

    fuzz()
