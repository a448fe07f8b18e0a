"""Firmware behaviour: the schema's errors name the key, the two shipped builds send what they are
documented to send (checked against independent recomputation: hashlib, and AES with the
documented key and IV through `cryptography` directly), gating by Cloud Messaging and Mi Cloud
state, and a new build described in a file renders without code changes."""

from __future__ import annotations

import base64
import hashlib
import itertools
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hostctl.emulator.behaviour import (
    EVENTS,
    PROTECTIONS,
    Behaviour,
    EventContext,
    KeyMaterial,
    ProtectionError,
    RenderError,
    matches,
    parse_behaviour,
    protect,
    unprotect,
)
from hostctl.emulator.identity import generate_identity
from hostctl.emulator.profiles import ProfileError, list_profiles, load_profile

PROFILES = Path(__file__).parents[1] / "hostctl/emulator/profiles"
JULY, OTA = "miui-v5-2014-07", "miui-v5-2014-08-10"
CONTACT, PEER, TEXT = "+8613912345678", "+8613787654321", "明天见 see you at 8"
IDENTITY = generate_identity("behaviour-test", sim_count=2, mcc_mnc="46000", operator_name="CHINA MOBILE")


def _raw(name: str) -> dict:
    return yaml.safe_load((PROFILES / f"{name}.yaml").read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: dict, name: str = "miui-x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _ctx(profile, *, cm: bool = True, login: bool = False, slot: int = 0, seed: int = 0, **kw) -> EventContext:
    counter = itertools.count(seed * 1000)

    def random(n: int) -> bytes:  # a different nonce every call, reproducible
        return hashlib.sha256(str(next(counter)).encode()).digest()[:n]

    kw.setdefault("contact_number", CONTACT)
    kw.setdefault("peer_number", PEER)
    kw.setdefault("message_text", TEXT)
    return EventContext.for_handset(
        profile, IDENTITY, slot=slot, cm_on=cm, micloud_login=login, now_ms=1407639761000, random=random, **kw
    )


# --- independent oracles: the documented key derivation and the ciphers, without the module ---


def _key(secret: str, imsi: str | None, size: int = 16) -> bytes:
    text = secret if imsi is None else f"{secret}:{imsi}"
    return hashlib.sha256(text.encode("utf-8")).digest()[:size]


def _cbc_decrypt(text: str, key: bytes, iv: bytes) -> str:
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = dec.update(base64.b64decode(text, validate=True)) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")


def _gcm_decrypt(text: str, key: bytes) -> str:
    raw = base64.b64decode(text, validate=True)
    return AESGCM(key).decrypt(raw[:12], raw[12:], None).decode("utf-8")


MIUI_VERSION = {JULY: "V5 4.7.4", OTA: "V5 4.8.10"}  # version name + incremental


def _source_value(source: str, ctx: EventContext, slot: int, literal: str | None = None, profile: str = JULY) -> str:
    sim = IDENTITY.sims[slot]
    return {
        "imei": sim.imei,
        "imsi": sim.imsi,
        "iccid": sim.iccid,
        "msisdn": sim.msisdn,
        "carrier": sim.operator_name,
        "contact_number": ctx.contact_number,
        "peer_number": ctx.peer_number,
        "message_text": ctx.message_text,
        "device_model": "HM 1S",
        "timestamp": "1407639761000",
        "miui_version": MIUI_VERSION[profile],
        "literal": literal,
    }[source]


# --- the two shipped builds, event by event ----------------------------------------------------
# (endpoint, method, path, which SIMs, {field: (source, protection)}) per event, with Cloud
# Messaging on and logged into Mi Cloud (every gate open). "all" = one request per SIM.

P = "plain"
CBC, GCM = "aes-cbc-fixed-iv", "aes-gcm-random-nonce"
ACCOUNT = ("api.account.xiaomi.com", 443, "tls")
CHAT = ("app.chat.xiaomi.net", 5222, "tls")
RESOLVER = ("resolver.msg.xiaomi.net", 80, "http")
_REPORT = {
    "carrier": ("carrier", P),
    "imei": ("imei", P),
    "phone": ("msisdn", P),
    "model": ("device_model", P),
    "miui": ("miui_version", P),
    "ts": ("timestamp", P),
}
_LIST = {"list": ("literal", P)}

EXPECTED = {
    JULY: {
        "boot": [
            (ACCOUNT, "POST", "/device/report", "all", _REPORT),
            (ACCOUNT, "POST", "/device/report", "all", {"imei": ("imei", P), "imsi": ("imsi", P)}),
            (RESOLVER, "GET", "/gslb/", "active", _LIST),
        ],
        "registration": [(CHAT, "BIND", "", "active", {"phone": ("msisdn", P), "imei": ("imei", P)})],
        "cm_enabled": [
            (
                ACCOUNT,
                "POST",
                "/mx/activate",
                "active",
                {"phone": ("msisdn", P), "imei": ("imei", P), "carrier": ("carrier", P)},
            )
        ],
        "micloud_login": [
            (
                ACCOUNT,
                "POST",
                "/device/bind",
                "active",
                {"imei": ("imei", P), "imsi": ("imsi", P), "phone": ("msisdn", P)},
            )
        ],
        "contact_added": [
            (ACCOUNT, "POST", "/contacts/report", "active", {"phone": ("msisdn", P), "contact": ("contact_number", P)})
        ],
        "conversation_opened": [
            (ACCOUNT, "POST", "/contacts/report", "active", {"phone": ("msisdn", P), "contact": ("peer_number", P)})
        ],
        "sms_sent": [(ACCOUNT, "POST", "/sms/report", "active", {"phone": ("msisdn", P), "peer": ("peer_number", P)})],
        "sms_received": [
            (ACCOUNT, "POST", "/sms/report", "active", {"phone": ("msisdn", P), "peer": ("peer_number", P)})
        ],
        "call": [],
        "presence_lookup": [(CHAT, "PRESENCE", "", "active", {"number": ("contact_number", P)})],
        "message_send": [
            (
                CHAT,
                "MESSAGE",
                "",
                "active",
                {"from": ("msisdn", P), "to": ("peer_number", P), "body": ("message_text", P), "ts": ("timestamp", P)},
            )
        ],
    },
    OTA: {
        "boot": [
            (RESOLVER, "GET", "/gslb/", "active", _LIST),
            (CHAT, "BIND", "", "active", {"pid": ("msisdn", CBC), "imei": ("imei", P)}),
        ],
        "registration": [(CHAT, "BIND", "", "active", {"pid": ("msisdn", CBC), "imei": ("imei", P)})],
        "cm_enabled": [
            (
                ACCOUNT,
                "POST",
                "/mx/activate",
                "active",
                {"pid": ("msisdn", CBC), "imei": ("imei", P), "carrier": ("carrier", P)},
            )
        ],
        "micloud_login": [(ACCOUNT, "POST", "/device/bind", "active", {"pid": ("msisdn", CBC), "imsi": ("imsi", P)})],
        "contact_added": [(CHAT, "PRESENCE", "", "active", {"number": ("contact_number", CBC)})],
        "conversation_opened": [(CHAT, "PRESENCE", "", "active", {"number": ("peer_number", CBC)})],
        "sms_sent": [(CHAT, "PRESENCE", "", "active", {"number": ("peer_number", CBC)})],
        "sms_received": [(CHAT, "PRESENCE", "", "active", {"number": ("peer_number", CBC)})],
        "call": [],
        "presence_lookup": [(CHAT, "PRESENCE", "", "active", {"number": ("contact_number", CBC)})],
        "message_send": [
            (
                CHAT,
                "MESSAGE",
                "",
                "active",
                {
                    "from": ("msisdn", CBC),
                    "to": ("peer_number", CBC),
                    "body": ("message_text", GCM),
                    "ts": ("timestamp", P),
                },
            )
        ],
    },
}


def _ota_keys() -> tuple[str, bytes, str]:
    """The OTA's number secret, fixed IV and content secret, read from the YAML itself."""
    keys = _raw(OTA)["behaviour"]["keys"]
    return keys["number"]["secret"], bytes.fromhex(keys["number"]["iv"]), keys["content"]["secret"]


def _check_field(
    name: str, got: str, source: str, protection: str, ctx: EventContext, slot: int, literal: str | None, profile: str
) -> None:
    want = _source_value(source, ctx, slot, literal, profile)
    imsi = IDENTITY.sims[slot].imsi
    if protection == P:
        assert got == want, name
    elif protection == CBC:
        secret, iv, _ = _ota_keys()
        assert got != want and want not in got
        assert _cbc_decrypt(got, _key(secret, imsi), iv) == want, name
    elif protection == GCM:
        _, _, secret = _ota_keys()
        assert _gcm_decrypt(got, _key(secret, imsi)) == want, name
    else:
        raise AssertionError(protection)


@pytest.mark.parametrize("name", [JULY, OTA])
@pytest.mark.parametrize("slot", [0, 1])
def test_every_event_renders_exactly_the_documented_fields(name: str, slot: int) -> None:
    profile = load_profile(name)
    ctx = _ctx(profile, cm=True, login=True, slot=slot)
    assert set(profile.behaviour.events) == set(EVENTS)  # every event is described
    for event in EVENTS:
        got = profile.behaviour.requests_for(event, ctx)
        want = []
        for where, method, path, sims, fields in EXPECTED[name][event]:
            for s in [0, 1] if sims == "all" else [slot]:
                want.append((where, method, path, s, fields))
        assert len(got) == len(want), event
        for req, (where, method, path, s, fields) in zip(got, want):
            assert (req.host, req.port, req.transport) == where, event
            assert (req.event, req.method, req.path, req.slot) == (event, method, path, s)
            assert list(req.fields) == list(fields), event
            for field_name, (source, protection) in fields.items():
                assert req.protections[field_name] == (protection,)
                literal = "app.chat.xiaomi.net" if source == "literal" else None
                _check_field(f"{event}.{field_name}", req.fields[field_name], source, protection, ctx, s, literal, name)
                assert req.plaintext[field_name] == _source_value(source, ctx, s, literal, name)
            assert req.keys == {f: ("content" if p == GCM else "number") for f, (_, p) in fields.items() if p != P}


def test_ota_number_encryption_is_deterministic_per_sim_and_content_is_not() -> None:
    ota = load_profile(OTA)
    b = ota.behaviour
    one, two = (b.requests_for("presence_lookup", _ctx(ota, seed=i))[0] for i in (1, 2))
    assert one.fields["number"] == two.fields["number"]  # linkable: the audit warns
    other_sim = b.requests_for("presence_lookup", _ctx(ota, slot=1))[0]
    assert other_sim.fields["number"] != one.fields["number"]  # a key per SIM
    m1, m2 = (b.requests_for("message_send", _ctx(ota, seed=i))[0] for i in (1, 2))
    assert m1.fields["body"] != m2.fields["body"]  # a fresh nonce each time
    assert m1.fields["to"] == m2.fields["to"] and m1.fields["from"] == m2.fields["from"]
    _, _, content = _ota_keys()
    key = _key(content, IDENTITY.sims[0].imsi)
    assert _gcm_decrypt(m1.fields["body"], key) == _gcm_decrypt(m2.fields["body"], key) == TEXT
    # the module's own helpers agree with the oracle
    km = b.key_material("number", IDENTITY.sims[0])
    assert unprotect(one.fields["number"], CBC, km) == CONTACT
    assert matches(TEXT, m1.fields["body"], GCM, b.key_material("content", IDENTITY.sims[0]))


def test_ota_sends_no_number_readable_or_merely_encoded() -> None:
    ota = load_profile(OTA)
    numbers = [CONTACT, PEER] + [s.msisdn for s in IDENTITY.sims]
    forms = set()
    for n in numbers:
        for v in (n, n.lstrip("+"), n[-11:]):
            forms |= {
                v,
                v.encode().hex(),
                base64.b64encode(v.encode()).decode(),
                quote(v),
                hashlib.md5(v.encode()).hexdigest(),
                hashlib.sha1(v.encode()).hexdigest(),
                hashlib.sha256(v.encode()).hexdigest(),
            }
    for event, cm, login in itertools.product(EVENTS, (True, False), (True, False)):
        for req in ota.behaviour.requests_for(event, _ctx(ota, cm=cm, login=login)):
            for value in req.fields.values():
                assert not any(f in value for f in forms), (event, value)
            assert TEXT not in "".join(req.fields.values())


# --- gating -------------------------------------------------------------------------------------


def test_ota_sends_nothing_before_opt_in() -> None:
    ota = load_profile(OTA)
    assert ota.behaviour.cloud_messaging_default is False and not ota.cloud_messaging_default
    for event, login in itertools.product(EVENTS, (True, False)):
        assert ota.behaviour.requests_for(event, _ctx(ota, cm=False, login=login)) == [], event
    # after opt-in: micloud_login (the IMSI) still waits for the login itself
    assert ota.behaviour.requests_for("micloud_login", _ctx(ota, cm=True, login=False)) == []
    assert len(ota.behaviour.requests_for("micloud_login", _ctx(ota, cm=True, login=True))) == 1


def test_july_reports_at_boot_without_sign_up_and_the_imsi_only_after_login() -> None:
    july = load_profile(JULY)
    assert july.behaviour.cloud_messaging_default is True and july.cloud_messaging_default
    boot = july.behaviour.requests_for("boot", _ctx(july, cm=False, login=False))
    assert [r.host for r in boot] == ["api.account.xiaomi.com"] * 2  # one report per SIM
    for req, sim in zip(boot, IDENTITY.sims):
        assert (req.fields["imei"], req.fields["phone"], req.fields["carrier"]) == (
            sim.imei,
            sim.msisdn,
            "CHINA MOBILE",
        )
    imsis = {s.imsi for s in IDENTITY.sims}
    for event, cm in itertools.product(EVENTS, (True, False)):
        for req in july.behaviour.requests_for(event, _ctx(july, cm=cm, login=False)):
            assert not imsis & set(req.plaintext.values()), event
    logged_in = july.behaviour.requests_for("boot", _ctx(july, cm=False, login=True))
    assert {r.fields.get("imsi") for r in logged_in} >= imsis
    # the channel's traffic needs the switch on; the account reports do not
    for event in ("registration", "presence_lookup", "message_send"):
        assert july.behaviour.requests_for(event, _ctx(july, cm=False)) == []
        assert july.behaviour.requests_for(event, _ctx(july, cm=True))
    for event in ("contact_added", "sms_sent", "sms_received", "conversation_opened"):
        assert july.behaviour.requests_for(event, _ctx(july, cm=False))
    assert [r.host for r in july.behaviour.requests_for("boot", _ctx(july, cm=True))][-1] == "resolver.msg.xiaomi.net"


def test_other_profiles_send_nothing_and_agree_with_their_settings() -> None:
    for name in list_profiles():
        p = load_profile(name)
        assert p.behaviour.cloud_messaging_default == p.cloud_messaging_default, name
        assert set(p.behaviour.endpoints) >= {"account", "chat", "resolver"}
        if name not in (JULY, OTA):
            assert p.behaviour.sends_nothing, name
            for event in EVENTS:
                assert p.behaviour.requests_for(event, _ctx(p, login=True)) == []


# --- inheritance --------------------------------------------------------------------------------


def test_a_child_inherits_behaviour_whole_or_replaces_it_whole(tmp_path: Path) -> None:
    july = load_profile(JULY)
    same = load_profile(_write(tmp_path, {"extends": JULY, "name": "same"}, "same.yaml"))
    assert same.behaviour == july.behaviour
    # the OTA's file names only what it sends: nothing of the July build's survives
    ota = load_profile(OTA)
    assert ota.behaviour.keys and not july.behaviour.keys
    assert ota.behaviour.events["contact_added"][0].endpoint == "chat"
    child = {
        "extends": JULY,
        "name": "mini",
        "behaviour": {
            "events": {"boot": [{"endpoint": "account", "fields": {"imei": {"source": "imei", "protection": "md5"}}}]}
        },
    }
    mini = load_profile(_write(tmp_path, child, "mini.yaml"))
    assert set(mini.behaviour.events) == {"boot"}
    assert mini.behaviour.requests_for("sms_sent", _ctx(mini)) == []
    assert mini.behaviour.cloud_messaging_default is True  # from the inherited setting
    gone = load_profile(_write(tmp_path, {"extends": JULY, "name": "g", "behaviour": None}, "g.yaml"))
    assert gone.behaviour.sends_nothing


# --- schema errors name the key -----------------------------------------------------------------


def _boot_field(**spec) -> dict:
    return {"events": {"boot": [{"endpoint": "account", "fields": {"x": spec}}]}}


_F = "behaviour.events.boot[0]"
_OTA_B = {k: v for k, v in _raw(OTA)["behaviour"].items() if k != "cloud_messaging_default"}


@pytest.mark.parametrize(
    "behaviour, message",
    [
        (
            _boot_field(source="imei", protection="rot13"),
            f"{_F}.fields.x.protection: unknown protection 'rot13' (known: {', '.join(PROTECTIONS)})",
        ),
        (
            _boot_field(source="imei", protection=["sha1", "rot13"]),
            f"{_F}.fields.x.protection[1]: unknown protection 'rot13'",
        ),
        (_boot_field(source="imei", protection=[]), f"{_F}.fields.x.protection: an empty list"),
        (
            _boot_field(source="imeii", protection="plain"),
            f"{_F}.fields.x.source: unknown source 'imeii' (known: imei, imsi, iccid,",
        ),
        (
            _boot_field(source="peer_number", protection="plain"),
            f"{_F}.fields.x.source: event boot has no peer_number (only conversation_opened, sms_sent, "
            "sms_received, call, message_send do)",
        ),
        (
            _boot_field(source="literal", protection="plain"),
            f"{_F}.fields.x.value: missing required key (source literal)",
        ),
        (
            _boot_field(source="imei", value="1", protection="plain"),
            f"{_F}.fields.x.value: only a literal has a value (source is imei)",
        ),
        (
            _boot_field(source="imei", protection="plain", colour="red"),
            f"{_F}.fields.x.colour: unknown key (known: source, value, protection, key)",
        ),
        (_boot_field(protection="plain"), f"{_F}.fields.x.source: missing required key"),
        (
            _boot_field(source="msisdn", protection="aes-cbc-fixed-iv"),
            f"{_F}.fields.x.key: missing required key (aes-cbc-fixed-iv needs one of behaviour.keys: none defined)",
        ),
        (
            {
                **_OTA_B,
                "events": {
                    "boot": [
                        {"endpoint": "chat", "fields": {"x": {"source": "msisdn", "protection": CBC, "key": "nope"}}}
                    ]
                },
            },
            f"{_F}.fields.x.key: unknown key 'nope' (known: number, content)",
        ),
        (
            {
                **_OTA_B,
                "events": {
                    "boot": [
                        {"endpoint": "chat", "fields": {"x": {"source": "msisdn", "protection": CBC, "key": "content"}}}
                    ]
                },
            },
            f"{_F}.fields.x.key: aes-cbc-fixed-iv needs a fixed IV, and behaviour.keys.content has no iv",
        ),
        (
            _boot_field(source="imei", protection="sha1", key="number"),
            f"{_F}.fields.x.key: only aes-* protections take a key",
        ),
        (
            {"keys": {"k": {"secret": "s", "iv": "0102"}}},
            "behaviour.keys.k.iv: expected 32 hex digits (16 bytes), got '0102'",
        ),
        ({"keys": {"k": {"secret": "s", "size": 20}}}, "behaviour.keys.k.size: expected 16, 24 or 32"),
        ({"keys": {"k": {"iv": "00" * 16}}}, "behaviour.keys.k.secret: missing required key"),
        ({"keys": {"k": {"secret": "s", "per_sim": "yes"}}}, "behaviour.keys.k.per_sim: expected boolean, got 'yes'"),
        ({"events": {"reboot": []}}, "behaviour.events.reboot: unknown event (known: boot, "),
        ({"events": {"boot": {"endpoint": "account"}}}, "behaviour.events.boot: expected a list"),
        (
            {"events": {"boot": [{"endpoint": "mixin", "fields": {}}]}},
            f"{_F}.endpoint: unknown endpoint 'mixin' (known: account, chat, resolver)",
        ),
        (
            {"events": {"boot": [{"endpoint": "account", "fields": {}}]}},
            f"{_F}.fields: a request carries at least one field",
        ),
        ({"events": {"boot": [{"endpoint": "account", "send": "imei", "fields": {}}]}}, f"{_F}.send: unknown key"),
        ({"events": {"boot": [{"fields": {}}]}}, f"{_F}.endpoint: missing required key"),
        (
            {
                "events": {
                    "boot": [
                        {**_boot_field(source="imei", protection="plain")["events"]["boot"][0], "when": {"cm": "maybe"}}
                    ]
                }
            },
            f"{_F}.when.cm: expected on, off or any, got 'maybe'",
        ),
        (
            {
                "events": {
                    "boot": [
                        {
                            **_boot_field(source="imei", protection="plain")["events"]["boot"][0],
                            "when": {"micloud_login": "sometimes"},
                        }
                    ]
                }
            },
            f"{_F}.when.micloud_login: expected true, false or any, got 'sometimes'",
        ),
        (
            {
                "events": {
                    "boot": [
                        {**_boot_field(source="imei", protection="plain")["events"]["boot"][0], "when": {"sim": 1}}
                    ]
                }
            },
            f"{_F}.when.sim: unknown key",
        ),
        (
            {
                "events": {
                    "boot": [{**_boot_field(source="imei", protection="plain")["events"]["boot"][0], "sims": "both"}]
                }
            },
            f"{_F}.sims: expected active or all, got 'both'",
        ),
        (
            {
                "events": {
                    "boot": [{**_boot_field(source="imei", protection="plain")["events"]["boot"][0], "path": "report"}]
                }
            },
            f"{_F}.path: expected a path starting with /",
        ),
        (
            {
                "events": {
                    "boot": [
                        {**_boot_field(source="imei", protection="plain")["events"]["boot"][0], "method": "GET /x"}
                    ]
                }
            },
            f"{_F}.method: not a method name: 'GET /x'",
        ),
        (
            {"endpoints": {"account": {"host": "a.b", "port": 443, "transport": "tls"}}},
            "behaviour.endpoints.chat: missing required endpoint",
        ),
        (
            {"endpoints": {**_OTA_B["endpoints"], "account": {"host": "a.b", "port": 443, "transport": "udp"}}},
            "behaviour.endpoints.account.transport: expected tls, http, h2, h2c, wss, ws, got 'udp'",
        ),
        (
            {"endpoints": {**_OTA_B["endpoints"], "account": {"host": "a.b", "port": 70000, "transport": "tls"}}},
            "behaviour.endpoints.account.port: expected a port 1-65535, got 70000",
        ),
        (
            {"endpoints": {**_OTA_B["endpoints"], "account": {"host": "a b", "port": 1, "transport": "tls"}}},
            "behaviour.endpoints.account.host: not a host name: 'a b'",
        ),
        (
            {"endpoints": {**_OTA_B["endpoints"], "account": {"port": 1, "transport": "tls"}}},
            "behaviour.endpoints.account.host: missing required key",
        ),
        ({"evnts": {}}, "behaviour.evnts: unknown key (known: cloud_messaging_default, endpoints, "),
        ({"cloud_messaging_default": "maybe"}, "behaviour.cloud_messaging_default: expected on or off, got 'maybe'"),
        (
            {"cloud_messaging_default": False},
            "behaviour.cloud_messaging_default: off, but default_settings.secure.cloud_messaging_on is "
            '"1" (they must agree)',
        ),
        (["boot"], "behaviour: expected mapping, got ['boot']"),
    ],
)
def test_schema_errors_name_the_key(tmp_path: Path, behaviour, message: str) -> None:
    data = _raw(JULY)
    data["behaviour"] = behaviour
    with pytest.raises(ProfileError) as err:
        load_profile(_write(tmp_path, data))
    assert str(err.value).startswith(f"profile miui-x.yaml: {message}"), str(err.value)


def test_errors_in_yaml_text_and_through_extends_blame_the_right_file(tmp_path: Path) -> None:
    july_text = (PROFILES / f"{JULY}.yaml").read_text(encoding="utf-8")
    bad = july_text.replace(
        "imei: {source: imei, protection: plain}\n          phone",
        "imei: {source: imei, protection: rot13}\n          phone",
        1,
    )
    assert bad != july_text
    (tmp_path / "bad-parent.yaml").write_text(bad, encoding="utf-8")
    with pytest.raises(
        ProfileError,
        match=r"^profile bad-parent.yaml: behaviour.events.boot\[0\]"
        r".fields.imei.protection: unknown protection 'rot13' "
        r"\(known: plain, hex,",
    ):
        load_profile(tmp_path / "bad-parent.yaml")
    # inherited unchanged: blamed on the parent that wrote it
    _write(tmp_path, {"extends": "bad-parent.yaml", "name": "kid"}, "kid.yaml")
    with pytest.raises(ProfileError, match=r"^profile bad-parent.yaml: behaviour.events.boot\[0\]"):
        load_profile(tmp_path / "kid.yaml")
    # a child whose setting contradicts the inherited behaviour: both files are named
    _write(
        tmp_path,
        {"extends": JULY, "name": "off", "default_settings": {"secure": {"cloud_messaging_on": "0"}}},
        "off.yaml",
    )
    with pytest.raises(
        ProfileError,
        match=r"^profile miui-v5-2014-07.yaml: behaviour."
        r"cloud_messaging_default: on, but default_settings."
        r"secure.cloud_messaging_on is \"0\" in off.yaml",
    ):
        load_profile(tmp_path / "off.yaml")
    # YAML's on/off spellings and quoted strings both work
    text = july_text.replace("cloud_messaging_default: on", 'cloud_messaging_default: "on"')
    (tmp_path / "quoted.yaml").write_text(text, encoding="utf-8")
    assert load_profile(tmp_path / "quoted.yaml").behaviour == load_profile(JULY).behaviour


def test_parse_behaviour_directly() -> None:
    b = parse_behaviour({}, "x.yaml")
    assert b == Behaviour() and b.sends_nothing and b.cloud_messaging_default is False
    assert parse_behaviour(None, "x.yaml", cloud_messaging_on=True).cloud_messaging_default
    with pytest.raises(ProfileError, match=r"^profile x.yaml: behaviour.events.call\[0\]"):
        parse_behaviour({"events": {"call": [3]}}, "x.yaml")


# --- a new build, described in a file, no code changed ------------------------------------------

NEW_BUILD = """
extends: miui-v5-2014-08-10
name: miui-v6-lab-build
default_settings:
  secure:
    cloud_messaging_on: "1"
behaviour:
  cloud_messaging_default: on
  endpoints:
    account: {host: api.account.xiaomi.com, port: 443, transport: tls}
    chat: {host: app.chat.global.xiaomi.net, port: 5222, transport: tls}
    resolver: {host: resolver.msg.xiaomi.net, port: 80, transport: http}
    mixin: {host: mixin.xiaomi.net, port: 8080, transport: http, path: /stat}
  keys:
    device: {secret: lab-build-secret, per_sim: false, size: 32}
  events:
    call:
      - endpoint: mixin
        method: PUT
        when: {cm: any, micloud_login: false}
        fields:
          peer_sha1_b64: {source: peer_number, protection: [sha1, base64]}
          peer_md5: {source: peer_number, protection: md5-base64}
          iccid: {source: iccid, protection: hex}
          imsi: {source: imsi, protection: sha256}
          carrier: {source: carrier, protection: url}
          model: {source: device_model, protection: utf16le}
          ver: {source: miui_version, protection: [utf16be, base64]}
          app: {source: literal, value: "mms 6.0", protection: url}
          peer_box: {source: peer_number, protection: [aes-gcm-random-nonce, url], key: device}
    sms_received:
      - endpoint: chat
        sims: all
        fields:
          text_md5: {source: message_text, protection: md5}
"""


def test_a_new_build_in_a_file_renders_its_events(tmp_path: Path) -> None:
    path = tmp_path / "lab-build.yaml"
    path.write_text(NEW_BUILD, encoding="utf-8")
    p = load_profile(path)
    assert p.name == "miui-v6-lab-build" and p.behaviour.cloud_messaging_default is True
    ctx = _ctx(p, cm=False, login=False)
    [req] = p.behaviour.requests_for("call", ctx)
    assert (req.host, req.port, req.transport, req.method, req.path) == (
        "mixin.xiaomi.net",
        8080,
        "http",
        "PUT",
        "/stat",
    )
    sim = IDENTITY.sims[0]
    f = req.fields
    assert f["peer_sha1_b64"] == base64.b64encode(hashlib.sha1(PEER.encode()).hexdigest().encode()).decode()
    assert f["peer_md5"] == base64.b64encode(hashlib.md5(PEER.encode()).digest()).decode()
    assert f["iccid"] == sim.iccid.encode().hex()
    assert f["imsi"] == hashlib.sha256(sim.imsi.encode()).hexdigest()
    assert f["carrier"] == "CHINA%20MOBILE"
    assert req.field_bytes("model") == "HM 1S".encode("utf-16-le")
    assert base64.b64decode(f["ver"]) == "V5 4.8.10".encode("utf-16-be")
    assert f["app"] == "mms%206.0" and req.plaintext["app"] == "mms 6.0"
    box = base64.b64decode(f["peer_box"].replace("%2B", "+").replace("%2F", "/").replace("%3D", "="))
    key = _key("lab-build-secret", None, 32)
    assert AESGCM(key).decrypt(box[:12], box[12:], None).decode() == PEER
    assert p.behaviour.requests_for("call", _ctx(p, login=True)) == []
    # per SIM, and the chat host this build names
    got = p.behaviour.requests_for("sms_received", _ctx(p, cm=True))
    assert [(r.host, r.slot) for r in got] == [("app.chat.global.xiaomi.net", 0), ("app.chat.global.xiaomi.net", 1)]
    assert got[0].fields["text_md5"] == hashlib.md5(TEXT.encode()).hexdigest()
    assert p.behaviour.requests_for("boot", _ctx(p)) == []  # not described: nothing


# --- rendering errors ---------------------------------------------------------------------------


def test_render_errors_say_what_is_missing() -> None:
    ota = load_profile(OTA)
    with pytest.raises(RenderError, match="unknown event 'reboot'"):
        ota.behaviour.requests_for("reboot", _ctx(ota))
    with pytest.raises(
        RenderError,
        match=r"presence_lookup\[0\].fields.number: source "
        r"contact_number: the context has no contact_number",
    ):
        ota.behaviour.requests_for("presence_lookup", _ctx(ota, contact_number=None))
    with pytest.raises(RenderError, match="slot 2 names no SIM"):
        ota.behaviour.requests_for("boot", _ctx(ota, slot=2))
    no_sim = EventContext(cm_on=True, contact_number=CONTACT)
    with pytest.raises(
        RenderError,
        match=r"presence_lookup\[0\].fields.number: key number is "
        r"per SIM, and there is no SIM",
    ):
        ota.behaviour.requests_for("presence_lookup", no_sim)
    with pytest.raises(
        RenderError,
        match=r"boot\[1\].fields.pid: source msisdn: the context "
        r"has no SIM",
    ):
        ota.behaviour.requests_for("boot", EventContext(cm_on=True))
    assert isinstance(RenderError("x"), ValueError)


# --- protect / unprotect / matches --------------------------------------------------------------

KM = KeyMaterial(bytes(range(16)), b"0102030405060708")
_REVERSIBLE = ["plain", "hex", "base64", "url", "utf16le", "utf16be", CBC, GCM]


def test_protect_known_answers() -> None:
    v = "+8613800138000"
    assert protect(v, "plain") == v
    assert protect(v, "hex") == v.encode().hex()
    assert protect(v, "base64") == base64.b64encode(v.encode()).decode()
    assert protect(v, "url") == "%2B8613800138000"
    for d in ("md5", "sha1", "sha256"):
        assert protect(v, d) == hashlib.new(d, v.encode()).hexdigest()
        assert protect(v, f"{d}-base64") == base64.b64encode(hashlib.new(d, v.encode()).digest()).decode()
    assert protect(v, ["sha1", "base64"]) == base64.b64encode(hashlib.sha1(v.encode()).hexdigest().encode()).decode()
    assert _cbc_decrypt(protect(v, CBC, KM), KM.key, KM.iv) == v
    assert protect(v, CBC, KM) == protect(v, CBC, KM)
    assert protect(v, GCM, KM) != protect(v, GCM, KM)
    assert _gcm_decrypt(protect(v, GCM, KM), KM.key) == v


def test_protect_errors() -> None:
    with pytest.raises(ProtectionError, match="unknown protection 'rot13'"):
        protect("1", "rot13")
    with pytest.raises(ProtectionError, match="needs key material"):
        protect("1", CBC)
    with pytest.raises(ProtectionError, match="needs a fixed IV"):
        protect("1", CBC, KeyMaterial(bytes(16)))
    with pytest.raises(ProtectionError, match="is one-way"):
        unprotect(protect("1", "sha1"), "sha1")
    with pytest.raises(ProtectionError, match="authentication failed"):
        unprotect(protect("1", GCM, KM), GCM, KeyMaterial(bytes(16)))
    with pytest.raises(ProtectionError, match="bad padding|blocks"):
        unprotect(protect("12345", CBC, KM), CBC, KeyMaterial(bytes(16), bytes(16)))
    with pytest.raises(ProtectionError, match="not Base64"):
        unprotect("***", CBC, KM)
    with pytest.raises(ProtectionError, match="16, 24 or 32"):
        KeyMaterial(b"short")
    with pytest.raises(ProtectionError, match="random source gave 3 bytes"):
        protect("1", GCM, KM, random=lambda n: b"abc")


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=40), chain=st.lists(st.sampled_from(_REVERSIBLE), min_size=1, max_size=3))
def test_reversible_chains_round_trip(value: str, chain: list[str]) -> None:
    # utf16 steps need their input to be UTF-8 text; any earlier step outputs ASCII or the text
    try:
        protected = protect(value, chain, KM)
    except ProtectionError:
        assert any(s.startswith("utf16") for s in chain[1:])
        return
    assert unprotect(protected, chain, KM) == value
    assert matches(value, protected, chain, KM)
    assert not matches(value + "x", protected, chain, KM)


@settings(max_examples=100, deadline=None)
@given(value=st.text(max_size=30), chain=st.lists(st.sampled_from(PROTECTIONS), min_size=1, max_size=3))
@example(value="", chain=[GCM, "md5", GCM])  # a digest between two random steps: skipped
def test_matches_every_chain_with_a_random_step_last_or_none(value: str, chain: list[str]) -> None:
    # matches() can only undo a random step: every step after the first random one must be
    # reversible, or the output depends on randomness that cannot be recomputed
    first_random = min((i for i, s in enumerate(chain) if s == GCM), default=None)
    if first_random is not None and any(s not in _REVERSIBLE for s in chain[first_random + 1 :]):
        return
    try:
        protected = protect(value, chain, KM)
    except ProtectionError:
        return
    assert matches(value, protected, chain, KM)
    assert not matches(value + "0", protected, chain, KM)
