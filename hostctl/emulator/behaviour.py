"""Firmware behaviour: what a MIUI build's Messaging app sends, to where, and when, as data.

A profile's ``behaviour:`` mapping is parsed into a :class:`Behaviour`; the emulated Messaging app
asks it ``requests_for(event, ctx)`` whenever something happens on the handset (boot, a contact
added, an SMS sent, a Cloud Messaging send...) and puts the requests it gets on the wire. The
renderer is pure: no sockets, files or clocks of its own (the context carries the time and the
random source), so tests and the future wire analyser can recompute every field.

Schema (``*`` = required; ``{}`` or no ``behaviour:`` at all = the build sends nothing)::

    behaviour:
      cloud_messaging_default: on | off   # must agree with default_settings.secure
                                          # .cloud_messaging_on (default: taken from it)
      endpoints:                          # default: the three below. When given, it must
        NAME:                             # name at least account, chat and resolver
          host*: str                      #   account:  api.account.xiaomi.com 443 tls
          port*: int                      #   chat:     app.chat.xiaomi.net 5222 tls
          transport*: tls | http | h2 | h2c | wss | ws   # resolver: resolver.msg.xiaomi.net 80 http
                                          #   tls/http: HTTP/1.1 over TLS / in the clear;
                                          #   h2: HTTP/2 over TLS, ALPN "h2" (RFC 9113 3.2);
                                          #   h2c: HTTP/2 in the clear, prior knowledge (3.3);
                                          #   wss/ws: one WebSocket message per request after
                                          #   an HTTP/1.1 Upgrade (RFC 6455), over TLS / clear
          path: str                       #   "/..." (default: none, "")
          encoding: identity | gzip | deflate | permessage-deflate
                                          #   HTTP (tls, http, h2, h2c): the request body's
                                          #   Content-Encoding (RFC 9110 8.4.1; default
                                          #   identity), e.g. a build that gzips its reports
                                          #   (wire-check's http-body>gzip / h2-data>gzip);
                                          #   WebSocket (wss, ws): identity or
                                          #   permessage-deflate (RFC 7692) offered and used
      keys:                               # key material for the aes-* protections
        NAME:
          secret*: str                    #   the build secret
          per_sim: bool                   #   default true: one key per SIM (see "Keys")
          iv: hex                         #   16 bytes (32 hex digits): the hard-coded IV that
                                          #   aes-cbc-fixed-iv needs
          size: 16 | 24 | 32              #   AES key length in bytes (default 16, AES-128)
      events:
        EVENT:                            # boot, contact_added, conversation_opened, sms_sent,
          - endpoint*: NAME               # sms_received, call, micloud_login, cm_enabled,
            method: str                   # registration, presence_lookup, message_send.
            path: str                     # A list of requests; [] (or null) = nothing sent.
            sims: active | all            # method: the verb the app puts on the wire (HTTP
            when:                         #   method, or the chat channel's stanza kind);
              cm: on | off | any          #   default POST. path: default the endpoint's.
              micloud_login: true | false | any   # sims: one request for the SIM the event
            fields*:                      #   happened on (default), or one per SIM.
              FIELD:                      # when: the request is sent only in that state
                source*: SOURCE           #   (default any / any).
                value: str                # (literal only)
                protection*: PROTECTION | [PROTECTION, ...]
                key: NAME                 # (aes-* protections only: one of keys)

Sources: ``imei``, ``imsi``, ``iccid``, ``msisdn``, ``carrier`` (the SIM's operator name) of the
request's SIM; ``device_model``, ``miui_version``; ``timestamp`` (milliseconds since the epoch, as
Java's ``System.currentTimeMillis``); ``literal`` (its ``value``); and the event's own data, only
where the event has it: ``contact_number`` (contact_added, presence_lookup: the number created or
looked up), ``peer_number`` (conversation_opened, sms_sent, sms_received, call, message_send: the
other party) and ``message_text`` (sms_sent, sms_received, message_send).

Protections (``plain``, ``hex``, ``base64``, ``url``, ``utf16le``/``utf16be``, the digests and
``*-base64`` digests, ``aes-cbc-fixed-iv``, ``aes-gcm-random-nonce``) are defined, both
directions side by side, in :mod:`hostctl.model.protections`, which the wire analyser imports
too; a list applies its steps in order, e.g. ``[sha1, base64]`` is the Base64 of the hex
digest's text.

Keys: with ``per_sim`` the key is the first ``size`` bytes of SHA-256 over the UTF-8 text
``secret + ":" + imsi`` (the IMSI of the request's SIM); without it, of SHA-256 over ``secret``.
The emulated Cloud Messaging server gets the same keys from the lab (:meth:`key_material`); on
MIUI the per-SIM secret is shared with the server when the SIM is activated.

A request's field values are text; a step whose bytes are not UTF-8 (UTF-16 of non-ASCII text)
keeps them with ``surrogateescape``, and :meth:`Request.field_bytes` gives the exact bytes.

Errors name the file and the key path, e.g.
``profile x.yaml: behaviour.events.boot[0].fields.imei.protection: unknown protection 'rot13'
(known: plain, hex, ...)``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hostctl.model.protections import (
    KEYED,
    PROTECTIONS,
    KeyMaterial,
    ProtectionError,
    cipher_recipe,
    derive_key,
    matches,
    protect,
    unprotect,
)

__all__ = [
    "DEFAULT_ENDPOINTS",
    "EVENTS",
    "EVENT_DATA",
    "PROTECTIONS",
    "SOURCES",
    "Behaviour",
    "Endpoint",
    "EventContext",
    "FieldSpec",
    "KeyMaterial",
    "KeySpec",
    "ProtectionError",
    "RenderError",
    "Request",
    "RequestRule",
    "cipher_recipe",
    "derive_key",
    "matches",
    "parse_behaviour",
    "protect",
    "unprotect",
]

EVENTS = (
    "boot",
    "contact_added",
    "conversation_opened",
    "sms_sent",
    "sms_received",
    "call",
    "micloud_login",
    "cm_enabled",
    "registration",
    "presence_lookup",
    "message_send",
)

_SIM_SOURCES = ("imei", "imsi", "iccid", "msisdn", "carrier")
_EVENT_DATA = ("contact_number", "peer_number", "message_text")
SOURCES = (
    *_SIM_SOURCES,
    "contact_number",
    "peer_number",
    "literal",
    "message_text",
    "device_model",
    "miui_version",
    "timestamp",
)

# Which events carry which of the event's own data (every other source is always available).
EVENT_DATA: dict[str, frozenset[str]] = {
    "contact_added": frozenset({"contact_number"}),
    "presence_lookup": frozenset({"contact_number"}),
    "conversation_opened": frozenset({"peer_number"}),
    "call": frozenset({"peer_number"}),
    "sms_sent": frozenset({"peer_number", "message_text"}),
    "sms_received": frozenset({"peer_number", "message_text"}),
    "message_send": frozenset({"peer_number", "message_text"}),
}

_KEYED = KEYED

_TRANSPORTS = ("tls", "http", "h2", "h2c", "wss", "ws")
TLS_TRANSPORTS = frozenset({"tls", "h2", "wss"})
# which encodings each kind of transport can carry: HTTP bodies a Content-Encoding, WebSocket
# messages the one compression extension RFC 7692 defines
_ENCODINGS_FOR = {
    "tls": ("identity", "gzip", "deflate"),
    "http": ("identity", "gzip", "deflate"),
    "h2": ("identity", "gzip", "deflate"),
    "h2c": ("identity", "gzip", "deflate"),
    "wss": ("identity", "permessage-deflate"),
    "ws": ("identity", "permessage-deflate"),
}
_REQUIRED_ENDPOINTS = ("account", "chat", "resolver")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


class RenderError(ValueError):
    """An event whose requests need something the context does not carry."""


# --- the parsed model ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    host: str
    port: int
    transport: str  # "tls" | "http" | "h2" | "h2c" | "wss" | "ws"
    path: str = ""
    encoding: str = "identity"  # the request body's Content-Encoding (WebSocket: the extension)


DEFAULT_ENDPOINTS: dict[str, Endpoint] = {
    "account": Endpoint("account", "api.account.xiaomi.com", 443, "tls"),
    "chat": Endpoint("chat", "app.chat.xiaomi.net", 5222, "tls"),
    "resolver": Endpoint("resolver", "resolver.msg.xiaomi.net", 80, "http"),
}


@dataclass(frozen=True, slots=True)
class KeySpec:
    name: str
    secret: str
    per_sim: bool = True
    iv: bytes | None = None
    size: int = 16


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    source: str
    protection: tuple[str, ...]
    key: str | None = None
    value: str | None = None  # literal only


@dataclass(frozen=True, slots=True)
class RequestRule:
    endpoint: str
    fields: tuple[FieldSpec, ...]
    method: str = "POST"
    path: str | None = None  # None: the endpoint's
    cm: bool | None = None  # None: any
    micloud_login: bool | None = None
    all_sims: bool = False

    def applies(self, cm_on: bool, micloud_login: bool) -> bool:
        return (self.cm is None or self.cm == cm_on) and (
            self.micloud_login is None or self.micloud_login == micloud_login
        )


@dataclass(frozen=True)
class Request:
    """One request the app sends: where, how, and each field protected (``fields``) and before
    protection (``plaintext``, the oracle tests and the wire analyser compare against)."""

    event: str
    endpoint: str
    host: str
    port: int
    transport: str
    method: str
    path: str
    fields: dict[str, str]
    plaintext: dict[str, str]
    protections: dict[str, tuple[str, ...]]
    keys: dict[str, str]  # field -> key name, for keyed protections
    slot: int | None = None  # the SIM whose identity and key it used
    encoding: str = "identity"  # the body's Content-Encoding (the endpoint's)

    @property
    def tls(self) -> bool:
        return self.transport in TLS_TRANSPORTS

    def field_bytes(self, name: str) -> bytes:
        """The exact bytes of a field (its text with surrogate-escaped non-UTF-8 bytes undone)."""
        return self.fields[name].encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class EventContext:
    """What the app knows when an event happens. ``sims`` are the handset's SIM identities
    (objects with imei, imsi, iccid, msisdn and operator_name, e.g. ``SimIdentity``); ``slot``
    is the SIM the event happened on. ``random(n)`` gives n random bytes (nonces)."""

    sims: tuple[Any, ...] = ()
    slot: int = 0
    cm_on: bool = False
    micloud_login: bool = False
    contact_number: str | None = None
    peer_number: str | None = None
    message_text: str | None = None
    device_model: str | None = None
    miui_version: str | None = None
    now_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    random: Callable[[int], bytes] = os.urandom

    @classmethod
    def for_handset(cls, profile: Any, identity: Any, **kwargs: Any) -> EventContext:
        """A context for a handset of ``profile`` (a FirmwareProfile) with ``identity`` (a
        HandsetIdentity): its SIMs, model and MIUI version (``V5 4.8.10``); the rest as given."""
        version = " ".join(v for v in (profile.miui_version_name, profile.build_incremental) if v)
        kwargs.setdefault("device_model", profile.product.model)
        kwargs.setdefault("miui_version", version)
        return cls(sims=tuple(identity.sims), **kwargs)


@dataclass(frozen=True)
class Behaviour:
    cloud_messaging_default: bool = False
    endpoints: dict[str, Endpoint] = field(default_factory=lambda: dict(DEFAULT_ENDPOINTS))
    keys: dict[str, KeySpec] = field(default_factory=dict)
    events: dict[str, tuple[RequestRule, ...]] = field(default_factory=dict)

    @property
    def sends_nothing(self) -> bool:
        return not any(self.events.values())

    def key_material(self, name: str, sim: Any | None) -> KeyMaterial:
        """The key ``name`` for ``sim`` (anything with an ``imsi``), as :func:`derive_key` says."""
        if name not in self.keys:
            raise RenderError(f"unknown key {name!r} (known: {', '.join(self.keys) or 'none'})")
        spec = self.keys[name]
        imsi = None
        if spec.per_sim:
            if sim is None or not getattr(sim, "imsi", None):
                raise RenderError(f"key {name} is per SIM, and there is no SIM with an IMSI")
            imsi = sim.imsi
        return KeyMaterial(derive_key(spec.secret, imsi, spec.size), spec.iv)

    def requests_for(self, event: str, ctx: EventContext) -> list[Request]:
        """The requests the build sends when ``event`` happens in the state ``ctx`` describes."""
        if event not in EVENTS:
            raise RenderError(f"unknown event {event!r} (known: {', '.join(EVENTS)})")
        if ctx.sims and not 0 <= ctx.slot < len(ctx.sims):
            raise RenderError(f"slot {ctx.slot} names no SIM (the context has {len(ctx.sims)})")
        out = []
        for i, rule in enumerate(self.events.get(event, ())):
            if not rule.applies(ctx.cm_on, ctx.micloud_login):
                continue
            if rule.all_sims:
                sims = list(enumerate(ctx.sims))
            else:
                sims = [(ctx.slot, ctx.sims[ctx.slot] if ctx.sims else None)]
            for slot, sim in sims:
                out.append(self._render(event, i, rule, ctx, slot if sim is not None else None, sim))
        return out

    def _render(
        self, event: str, index: int, rule: RequestRule, ctx: EventContext, slot: int | None, sim: Any
    ) -> Request:
        ep = self.endpoints[rule.endpoint]
        fields, plain, prots, keys = {}, {}, {}, {}
        for f in rule.fields:
            where = f"{event}[{index}].fields.{f.name}"
            value = _source_value(f, ctx, sim, where)
            material = None
            if f.key is not None:
                try:
                    material = self.key_material(f.key, sim)
                except RenderError as exc:
                    raise RenderError(f"{where}: {exc}") from None
                keys[f.name] = f.key
            try:
                fields[f.name] = protect(value, f.protection, material, random=ctx.random)
            except ProtectionError as exc:
                raise RenderError(f"{where}: {exc}") from None
            plain[f.name] = value
            prots[f.name] = f.protection
        path = rule.path if rule.path is not None else ep.path
        return Request(
            event=event,
            endpoint=ep.name,
            host=ep.host,
            port=ep.port,
            transport=ep.transport,
            method=rule.method,
            path=path,
            fields=fields,
            plaintext=plain,
            protections=prots,
            keys=keys,
            slot=slot,
            encoding=ep.encoding,
        )


def _source_value(f: FieldSpec, ctx: EventContext, sim: Any, where: str) -> str:
    source = f.source
    if source == "literal":
        return f.value or ""
    if source == "timestamp":
        return str(ctx.now_ms)
    if source in _SIM_SOURCES:
        if sim is None:
            raise RenderError(f"{where}: source {source}: the context has no SIM")
        value = sim.operator_name if source == "carrier" else getattr(sim, source)
    else:
        value = getattr(ctx, source)
    if value is None:
        raise RenderError(f"{where}: source {source}: the context has no {source}")
    return str(value)


# --- parsing ------------------------------------------------------------------------------------


class _Checker:
    """Builds ProfileErrors that name the file and the key path under ``behaviour``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> Exception:
        from .profiles import ProfileError  # profiles imports this module

        return ProfileError(f"profile {self.source}: {path}: {message}")

    def mapping(self, value: Any, path: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected mapping, got {value!r}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(f"{path}.{key}", "keys must be strings")
        return value

    def keys(self, data: dict, allowed: Iterable[str], required: Iterable[str], path: str) -> None:
        allowed = tuple(allowed)
        for key in data:
            if key not in allowed:
                raise self.fail(f"{path}.{key}", f"unknown key (known: {', '.join(allowed)})")
        for key in required:
            if key not in data:
                raise self.fail(f"{path}.{key}", "missing required key")

    def string(self, value: Any, path: str) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(path, f"expected string, got {value!r}")
        return str(value)

    def name(self, value: str, path: str) -> str:
        if not _NAME.fullmatch(value):
            raise self.fail(path, f"not a name: {value!r} (letters, digits, _ . -)")
        return value

    def choice(self, value: Any, options: Mapping[Any, Any], path: str, shown: str) -> Any:
        # YAML 1.1 reads on/off/yes/no/true/false as booleans: options list both spellings
        if isinstance(value, (str, bool)) and value in options:
            return options[value]
        raise self.fail(path, f"expected {shown}, got {value!r}")


_ON_OFF = {"on": True, "off": False, True: True, False: False}
_ON_OFF_ANY = {**_ON_OFF, "any": None}
_BOOL_ANY = {True: True, False: False, "true": True, "false": False, "any": None}


def parse_behaviour(
    data: Any, source: str, *, cloud_messaging_on: bool | None = None, setting_source: str | None = None
) -> Behaviour:
    """A profile's ``behaviour:`` mapping as a :class:`Behaviour` (ProfileError naming the key
    otherwise). ``source`` names the file in messages. ``cloud_messaging_on`` is the profile's
    default setting, which ``cloud_messaging_default`` must agree with, and ``setting_source``
    the file that set it when another (through ``extends``)."""
    c = _Checker(source)
    top = c.mapping({} if data is None else data, "behaviour")
    c.keys(top, ("cloud_messaging_default", "endpoints", "keys", "events"), (), "behaviour")

    cm_default = cloud_messaging_on
    if "cloud_messaging_default" in top:
        cm_default = c.choice(top["cloud_messaging_default"], _ON_OFF, "behaviour.cloud_messaging_default", "on or off")
        if cloud_messaging_on is not None and cm_default != cloud_messaging_on:
            where = f" in {setting_source}" if setting_source not in (None, source) else ""
            raise c.fail(
                "behaviour.cloud_messaging_default",
                f"{'on' if cm_default else 'off'}, but default_settings.secure."
                f'cloud_messaging_on is "{int(cloud_messaging_on)}"{where} (they '
                "must agree)",
            )

    endpoints = _parse_endpoints(c, top.get("endpoints"))
    keys = _parse_keys(c, top.get("keys"))
    raw_events = top.get("events")
    events = c.mapping({} if raw_events is None else raw_events, "behaviour.events")
    parsed: dict[str, tuple[RequestRule, ...]] = {}
    for event, rules in events.items():
        path = f"behaviour.events.{event}"
        if event not in EVENTS:
            raise c.fail(path, f"unknown event (known: {', '.join(EVENTS)})")
        if rules is None:
            rules = []
        if not isinstance(rules, list):
            raise c.fail(path, f"expected a list of requests, got {rules!r}")
        parsed[event] = tuple(_parse_rule(c, r, f"{path}[{i}]", event, endpoints, keys) for i, r in enumerate(rules))
    return Behaviour(cloud_messaging_default=bool(cm_default), endpoints=endpoints, keys=keys, events=parsed)


def _parse_endpoints(c: _Checker, raw: Any) -> dict[str, Endpoint]:
    if raw is None:
        return dict(DEFAULT_ENDPOINTS)
    table = c.mapping(raw, "behaviour.endpoints")
    out = {}
    for name, spec in table.items():
        path = f"behaviour.endpoints.{name}"
        c.name(name, path)
        spec = c.mapping(spec, path)
        c.keys(spec, ("host", "port", "transport", "path", "encoding"), ("host", "port", "transport"), path)
        host = c.string(spec["host"], f"{path}.host")
        if not _HOST.fullmatch(host):
            raise c.fail(f"{path}.host", f"not a host name: {host!r}")
        port = spec["port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise c.fail(f"{path}.port", f"expected a port 1-65535, got {port!r}")
        transport = c.choice(
            spec["transport"], {t: t for t in _TRANSPORTS}, f"{path}.transport", ", ".join(_TRANSPORTS)
        )
        allowed = _ENCODINGS_FOR[transport]
        encoding = c.choice(
            spec.get("encoding", "identity"),
            {e: e for e in allowed},
            f"{path}.encoding",
            f"{', '.join(allowed)} (for transport {transport})",
        )
        out[name] = Endpoint(
            name, host, port, transport, _parse_path(c, spec.get("path"), f"{path}.path") or "", encoding
        )
    for name in _REQUIRED_ENDPOINTS:
        if name not in out:
            raise c.fail(
                f"behaviour.endpoints.{name}",
                f"missing required endpoint (every build names {', '.join(_REQUIRED_ENDPOINTS)})",
            )
    return out


def _parse_path(c: _Checker, raw: Any, path: str) -> str | None:
    if raw is None:
        return None
    value = c.string(raw, path)
    if not value.startswith("/") or any(ch.isspace() for ch in value):
        raise c.fail(path, f"expected a path starting with / and without spaces, got {value!r}")
    return value


def _parse_keys(c: _Checker, raw: Any) -> dict[str, KeySpec]:
    table = c.mapping({} if raw is None else raw, "behaviour.keys")
    out = {}
    for name, spec in table.items():
        path = f"behaviour.keys.{name}"
        c.name(name, path)
        spec = c.mapping(spec, path)
        c.keys(spec, ("secret", "per_sim", "iv", "size"), ("secret",), path)
        secret = c.string(spec["secret"], f"{path}.secret")
        if not secret:
            raise c.fail(f"{path}.secret", "must not be empty")
        per_sim = spec.get("per_sim", True)
        if not isinstance(per_sim, bool):
            raise c.fail(f"{path}.per_sim", f"expected boolean, got {per_sim!r}")
        size = spec.get("size", 16)
        if isinstance(size, bool) or size not in (16, 24, 32):
            raise c.fail(f"{path}.size", f"expected 16, 24 or 32, got {size!r}")
        iv = None
        if spec.get("iv") is not None:
            text = c.string(spec["iv"], f"{path}.iv")
            if not re.fullmatch(r"[0-9A-Fa-f]{32}", text):
                raise c.fail(f"{path}.iv", f"expected 32 hex digits (16 bytes), got {text!r}")
            iv = bytes.fromhex(text)
        out[name] = KeySpec(name, secret, per_sim, iv, size)
    return out


def _parse_rule(
    c: _Checker, raw: Any, path: str, event: str, endpoints: dict[str, Endpoint], keys: dict[str, KeySpec]
) -> RequestRule:
    rule = c.mapping(raw, path)
    c.keys(rule, ("endpoint", "method", "path", "sims", "when", "fields"), ("endpoint", "fields"), path)
    endpoint = c.string(rule["endpoint"], f"{path}.endpoint")
    if endpoint not in endpoints:
        raise c.fail(f"{path}.endpoint", f"unknown endpoint {endpoint!r} (known: {', '.join(endpoints)})")
    method = c.string(rule.get("method", "POST"), f"{path}.method")
    if not _METHOD.fullmatch(method):
        raise c.fail(f"{path}.method", f"not a method name: {method!r}")
    sims = c.choice(rule.get("sims", "active"), {"active": False, "all": True}, f"{path}.sims", "active or all")
    when = c.mapping({} if rule.get("when") is None else rule["when"], f"{path}.when")
    c.keys(when, ("cm", "micloud_login"), (), f"{path}.when")
    cm = c.choice(when.get("cm", "any"), _ON_OFF_ANY, f"{path}.when.cm", "on, off or any")
    login = c.choice(when.get("micloud_login", "any"), _BOOL_ANY, f"{path}.when.micloud_login", "true, false or any")
    fields = c.mapping(rule["fields"], f"{path}.fields")
    if not fields:
        raise c.fail(f"{path}.fields", "a request carries at least one field")
    specs = tuple(_parse_field(c, name, spec, f"{path}.fields.{name}", event, keys) for name, spec in fields.items())
    return RequestRule(
        endpoint=endpoint,
        fields=specs,
        method=method,
        path=_parse_path(c, rule.get("path"), f"{path}.path"),
        cm=cm,
        micloud_login=login,
        all_sims=sims,
    )


def _parse_field(c: _Checker, name: str, raw: Any, path: str, event: str, keys: dict[str, KeySpec]) -> FieldSpec:
    c.name(name, path)
    spec = c.mapping(raw, path)
    c.keys(spec, ("source", "value", "protection", "key"), ("source", "protection"), path)
    source = c.string(spec["source"], f"{path}.source")
    if source not in SOURCES:
        raise c.fail(f"{path}.source", f"unknown source {source!r} (known: {', '.join(SOURCES)})")
    if source in _EVENT_DATA and source not in EVENT_DATA.get(event, ()):
        having = [e for e in EVENTS if source in EVENT_DATA.get(e, ())]
        raise c.fail(f"{path}.source", f"event {event} has no {source} (only {', '.join(having)} do)")
    value = None
    if source == "literal":
        if "value" not in spec:
            raise c.fail(f"{path}.value", "missing required key (source literal)")
        value = c.string(spec["value"], f"{path}.value")
    elif "value" in spec:
        raise c.fail(f"{path}.value", f"only a literal has a value (source is {source})")

    raw_prot = spec["protection"]
    if isinstance(raw_prot, list):
        if not raw_prot:
            raise c.fail(f"{path}.protection", "an empty list (use plain)")
        steps = tuple(_parse_step(c, s, f"{path}.protection[{i}]") for i, s in enumerate(raw_prot))
    else:
        steps = (_parse_step(c, raw_prot, f"{path}.protection"),)

    keyed = [s for s in steps if s in _KEYED]
    key = spec.get("key")
    if keyed:
        if key is None:
            raise c.fail(
                f"{path}.key",
                f"missing required key ({keyed[0]} needs one of behaviour.keys: {', '.join(keys) or 'none defined'})",
            )
        key = c.string(key, f"{path}.key")
        if key not in keys:
            raise c.fail(f"{path}.key", f"unknown key {key!r} (known: {', '.join(keys) or 'none defined'})")
        if "aes-cbc-fixed-iv" in keyed and keys[key].iv is None:
            raise c.fail(f"{path}.key", f"aes-cbc-fixed-iv needs a fixed IV, and behaviour.keys.{key} has no iv")
    elif key is not None:
        raise c.fail(f"{path}.key", "only aes-* protections take a key")
    return FieldSpec(name=name, source=source, protection=steps, key=key, value=value)


def _parse_step(c: _Checker, raw: Any, path: str) -> str:
    step = c.string(raw, path)
    if step not in PROTECTIONS:
        raise c.fail(path, f"unknown protection {step!r} (known: {', '.join(PROTECTIONS)})")
    return step
