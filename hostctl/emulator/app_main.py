"""Entry point of one emulated Android app process (e.g. ``com.android.mms``).

The lab (``hostctl.emulator.apps.AppProcess``) runs this file as a script, by path, with
``python -S -I`` through a hard link of the interpreter named after the package, so that
``/proc/PID/exe`` ends in the package name -- that basename is the process name Frida's agent
reports when it joins the handset's portal. The file therefore imports the standard library only
(and little of it): it must not need ``hostctl`` on ``sys.path`` and should stay small in memory.

Command line: ``app_main.py package=NAME ctl=FD [log=PORT] [tag=TAG]``.

Behaviour:

* Every ~200 ms it sends one "logd" datagram with ``socket.sendto`` to ``127.0.0.1:PORT``:
  ``I/<tag>(<pid>): heartbeat``. Without a log port the datagrams go to a private UDP sink that
  the process drains itself, so native ``sendto`` hooks always see traffic.
* Control channel: the inherited stream socket ``ctl`` carries JSON lines. At start the app writes
  ``{"event": "ready", "pid": N, "package": NAME}``. Each request ``{"id": I, "cmd": C, ...}`` gets
  one reply ``{"id": I, "ok": true, "result": ...}`` or ``{"id": I, "ok": false, "error": ...}``,
  and every line received also produces one logd datagram. New behaviour is added by registering a
  function in ``COMMANDS`` (``fn(app, request) -> result``).
* End of file on the control channel means the lab is gone: the process exits. (No
  PR_SET_PDEATHSIG: it fires when the lab *thread* that forked us exits, not the lab process.)
* Under Yama ptrace_scope 1 the app allows any process to ptrace it (PR_SET_PTRACER_ANY), as
  Frida's injector is not its ancestor.
"""

import json
import os
import select
import socket

# loaded at start (and used by the TLS clients below), as an Android app maps its TLS library
# when it starts: a tracer that attaches before the first connection (frida-trace -i
# 'SSL_write*') finds libssl
import ssl
import sys
import time
from urllib.parse import quote

HEARTBEAT_INTERVAL = 0.2
MAX_LINE = 1 << 20


class App:
    def __init__(self, package, ctl_fd, log_port, tag):
        self.package = package
        self.pid = os.getpid()
        self.tag = tag
        self.ctl = socket.socket(fileno=ctl_fd)
        self.ctl.setblocking(True)
        self.log = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # bound to loopback before its first sendto, which would otherwise bind it to 0.0.0.0
        # (an unbound UDP socket gets INADDR_ANY, ip(7)) and expose it on every interface
        self.log.bind(("127.0.0.1", 0))
        self.sink = None
        if log_port:
            self.log_addr = ("127.0.0.1", log_port)
        else:
            self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sink.bind(("127.0.0.1", 0))
            self.sink.setblocking(False)
            self.log_addr = self.sink.getsockname()
        self.log.setblocking(False)
        self.buf = b""
        self.running = True
        self.next_call = 1
        self.answers = {}  # call number -> the lab's answer, until its caller takes it
        self.channels = {}  # sim -> {"sock", "buf", "number"}: Cloud Messaging channels
        self.hosts = json.loads(os.environ.get("HOSTCTL_HOSTS") or "{}")
        self.outgoing = {}  # MX message id -> its row, for the receipts
        self.logins = {}  # sim -> {"mid", "st", "number"} of activated SIMs
        self.frame_ids = 0
        self.ca = os.environ.get("HOSTCTL_CA") or ""

    # -- logd ---------------------------------------------------------------------------------
    def logd(self, message, level="I", tag=None):
        line = "%s/%s(%d): %s" % (level, tag or self.tag, self.pid, message)
        try:
            self.log.sendto(line.encode("utf-8", "replace"), self.log_addr)
        except OSError:
            pass  # logd gone or its buffer full: Android drops log lines too
        if self.sink is not None:
            try:
                while True:
                    self.sink.recv(65536)
            except OSError:
                pass

    # -- control channel ----------------------------------------------------------------------
    def write(self, obj):
        self.ctl.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def on_readable(self):
        data = self.ctl.recv(65536)
        if not data:
            self.running = False
            return
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if line.strip():
                if line.lstrip().startswith(b'{"reply"'):
                    msg = json.loads(line)
                    self.answers[msg["reply"]] = msg  # late answer to a call that timed out
                    continue
                self.handle(line)
        if len(self.buf) > MAX_LINE:
            self.buf = b""

    def call(self, op, timeout=15.0, **fields):
        """Ask the handset (the lab) to do something an app asks Android for: write a provider
        row, send an SMS, broadcast. Requests that arrive meanwhile are served in between (and
        may make calls of their own: answers are matched by call number, never lost)."""
        cid = self.next_call
        self.next_call += 1
        self.write(dict(fields, call=cid, op=op))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cid in self.answers:
                msg = self.answers.pop(cid)
                if not msg.get("ok"):
                    raise RuntimeError("%s: %s" % (op, msg.get("error")))
                return msg.get("result")
            if b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if not line.strip():
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if isinstance(msg, dict) and "reply" in msg:
                    self.answers[msg["reply"]] = msg
                else:
                    self.handle(line)
                continue
            readable, _, _ = select.select([self.ctl], [], [], max(0.0, deadline - time.monotonic()))
            if readable:
                data = self.ctl.recv(65536)
                if not data:
                    self.running = False
                    raise RuntimeError("%s: the lab went away" % op)
                self.buf += data
        raise RuntimeError("%s: no answer from the lab in %.0f s" % (op, timeout))

    def handle(self, line):
        rid = None
        req = None
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("request must be a JSON object")
            rid = req.get("id")
            fn = COMMANDS.get(req["cmd"]) if "cmd" in req else None
            if fn is None:
                raise ValueError("unknown command: %r" % (req.get("cmd"),))
            reply = {"id": rid, "ok": True, "result": fn(self, req)}
        except Exception as e:  # noqa: BLE001 - the app never dies of a bad request
            reply = {"id": rid, "ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        if not (isinstance(reply.get("result"), dict) and reply["result"].get("logged")):
            self.logd("heartbeat")
        if not (isinstance(req, dict) and req.get("noreply")) or not reply["ok"]:
            self.write(reply)

    # -- main loop ----------------------------------------------------------------------------
    def run(self):
        self.write({"event": "ready", "pid": self.pid, "package": self.package})
        next_beat = time.monotonic()
        while self.running:
            now = time.monotonic()
            if now >= next_beat:
                self.logd("heartbeat")
                next_beat = max(next_beat + HEARTBEAT_INTERVAL, now)
            socks = [self.ctl] + [ch["sock"] for ch in self.channels.values()]
            try:
                readable, _, _ = select.select(socks, [], [], max(0.0, next_beat - now))
            except (InterruptedError, ValueError):
                continue
            for sock in readable:
                if sock is self.ctl:
                    try:
                        self.on_readable()
                    except OSError:
                        self.running = False
                else:
                    channel_readable(self, sock)
        return 0


def cmd_ping(app, req):
    return {"pong": True, "pid": app.pid, "package": app.package}


def cmd_log(app, req):
    app.logd(str(req.get("msg", "")), str(req.get("level", "I"))[:1] or "I", req.get("tag"))
    return {"logged": True}


def cmd_exit(app, req):
    app.running = False
    return {"exiting": True}


# --- Cloud Messaging (MxActivateService / MxMessageService) ---------------------------------
# Network I/O goes through the system's OpenSSL (the ssl module), so Frida's SSL hooks see it.

ACCOUNT_HOST = "api.account.xiaomi.com"
CHAT_HOST = "app.chat.xiaomi.net"


def tls_connect(app, host, timeout=10.0):
    """A TLS connection to a Xiaomi host, found through the lab's resolver map; SNI and the
    certificate check use the real name."""

    addr = app.hosts.get(host)
    if not addr:
        raise RuntimeError("cannot resolve %s" % host)
    ip, port = addr.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=app.ca or None)
    raw = socket.create_connection((ip, int(port)), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=host)


def https(app, method, path, fields, host=ACCOUNT_HOST, tls=True, encoding="identity"):
    if tls:
        sock = tls_connect(app, host)
    else:
        ip, port = app.hosts[host].rsplit(":", 1)
        sock = socket.create_connection((ip, int(port)), timeout=10)
    try:
        body = json.dumps(fields).encode()
        coding = ""
        if encoding in ("gzip", "deflate"):  # the build compresses its report bodies
            import gzip
            import zlib

            body = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
            coding = "Content-Encoding: %s\r\n" % encoding
        sock.sendall(
            (
                "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%s"
                "Content-Length: %d\r\nConnection: close\r\n\r\n" % (method, path, host, coding, len(body))
            ).encode()
            + body
        )
        reply = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    finally:
        sock.close()
    _head, _, payload = reply.partition(b"\r\n\r\n")
    return json.loads(payload or b"{}")


# --- HTTP/2 and WebSocket endpoints (a build's `transport: h2 | h2c | wss | ws`) -----------------
# Spoken with the real protocol libraries (python-hyper h2, wsproto), as an app would use OkHttp's
# HTTP/2 or a WebSocket client. They live in hostctl's environment, not the standard library: the
# lab sends their directories (``pylibs``) and they are imported the first time a build needs them,
# so an app that never speaks them stays as small as before.


def _use_libs(libs):
    for d in libs:
        if d not in sys.path:
            sys.path.append(d)


def _connect(app, host, tls, alpn=None, timeout=10.0):
    if not tls:
        ip, port = app.hosts[host].rsplit(":", 1)
        return socket.create_connection((ip, int(port)), timeout=timeout)
    addr = app.hosts.get(host)
    if not addr:
        raise RuntimeError("cannot resolve %s" % host)
    ip, port = addr.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=app.ca or None)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection((ip, int(port)), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=host)


def _body(fields, encoding):
    body = json.dumps(fields).encode()
    if encoding in ("gzip", "deflate"):
        import gzip
        import zlib

        body = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    return body


def http2(app, method, path, fields, host=ACCOUNT_HOST, tls=True, encoding="identity", libs=()):
    """One request on its own HTTP/2 connection: over TLS after ALPN chose "h2" (RFC 9113 3.2), or
    in the clear with prior knowledge (3.3). Returns the JSON reply."""
    _use_libs(libs)
    import h2.config
    import h2.connection
    import h2.events

    sock = _connect(app, host, tls, alpn=["h2"])
    try:
        if tls and sock.selected_alpn_protocol() != "h2":
            raise RuntimeError("%s did not negotiate h2 (ALPN %r)" % (host, sock.selected_alpn_protocol()))
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        body = _body(fields, encoding)
        sid = conn.get_next_available_stream_id()
        headers = [
            (":method", method),
            (":scheme", "https" if tls else "http"),
            (":authority", host),
            (":path", path or "/"),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
        ]
        if encoding in ("gzip", "deflate"):
            headers.append(("content-encoding", encoding))
        conn.send_headers(sid, headers)
        conn.send_data(sid, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        reply, done = b"", False
        while not done:
            data = sock.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    reply += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    done = True
                elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise RuntimeError("%s: HTTP/2 stream ended early: %s" % (host, ev))
            sock.sendall(conn.data_to_send())
        conn.close_connection()
        sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    return json.loads(reply or b"{}")


def websocket(app, path, fields, host=ACCOUNT_HOST, tls=True, deflate=False, libs=()):
    """One report as one WebSocket text message (masked, as a client's must be: RFC 6455 5.3),
    after the HTTP/1.1 Upgrade; with ``deflate`` the permessage-deflate extension is offered
    (RFC 7692) and, when accepted, compresses the message. Returns the service's JSON reply."""
    _use_libs(libs)
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, CloseConnection, Message, RejectConnection, Request, TextMessage
    from wsproto.extensions import PerMessageDeflate

    sock = _connect(app, host, tls, alpn=["http/1.1"])
    ws = WSConnection(ConnectionType.CLIENT)
    try:
        sock.sendall(
            ws.send(Request(host=host, target=path or "/", extensions=[PerMessageDeflate()] if deflate else []))
        )
        reply, text, state = None, "", "upgrading"
        while state != "closed":
            data = sock.recv(65536)
            if not data:
                break
            ws.receive_data(data)
            for ev in ws.events():
                if isinstance(ev, AcceptConnection):
                    state = "open"
                    sock.sendall(ws.send(Message(data=json.dumps(fields))))
                elif isinstance(ev, RejectConnection):
                    raise RuntimeError("%s refused the WebSocket upgrade (%s)" % (host, ev.status_code))
                elif isinstance(ev, TextMessage):
                    text += ev.data
                    if ev.message_finished:
                        reply = text
                        sock.sendall(ws.send(CloseConnection(code=1000)))
                elif isinstance(ev, CloseConnection):
                    if reply is None:  # the service closed first: answer its close
                        sock.sendall(ws.send(ev.response()))
                    state = "closed"
    finally:
        sock.close()
    return json.loads(reply or "{}")


# --- the build's own encryption (numbers, bodies) ------------------------------------------------
# The app encrypts with the platform's cipher, OpenSSL's EVP through ctypes (the libcrypto the ssl
# module already loaded), as MIUI's code does with javax.crypto over BoringSSL: Frida's EVP hooks
# see key, IV, plaintext and ciphertext. The lab sends a recipe and the text it expects; the two
# agree, and where they could not (no libcrypto) the lab's text is used and the fact logged.

_EVP: "tuple | bool | None" = None  # (libcrypto, ctypes) once loaded, False when it cannot be
EVP_CTRL_GCM_GET_TAG = 0x10


def _evp():
    global _EVP
    if _EVP is None:
        import ctypes
        import ctypes.util
        import ssl as _ssl_loaded  # noqa: F401 - makes its libcrypto the one already mapped

        lib = None
        for name in ("libcrypto.so.3", ctypes.util.find_library("crypto"), "libcrypto.so.1.1"):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None:
            _EVP = False
            return _EVP
        vp, ip = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)
        lib.EVP_CIPHER_CTX_new.restype = vp
        lib.EVP_CIPHER_CTX_free.argtypes = [vp]
        lib.EVP_get_cipherbyname.restype = vp
        lib.EVP_get_cipherbyname.argtypes = [ctypes.c_char_p]
        lib.EVP_EncryptInit_ex.argtypes = [vp, vp, vp, ctypes.c_char_p, ctypes.c_char_p]
        lib.EVP_EncryptUpdate.argtypes = [vp, ctypes.c_char_p, ip, ctypes.c_char_p, ctypes.c_int]
        lib.EVP_EncryptFinal_ex.argtypes = [vp, ctypes.c_char_p, ip]
        lib.EVP_CIPHER_CTX_ctrl.argtypes = [vp, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
        _EVP = (lib, ctypes)
    return _EVP


def evp_encrypt(cipher_name, key, iv, data):
    """AES through OpenSSL's EVP: CBC (PKCS#7 padding) gives the ciphertext, GCM nonce-free
    ciphertext plus the 16-byte tag. None when libcrypto is not there."""
    evp = _evp()
    if not evp:
        return None
    lib, ctypes = evp
    cipher = lib.EVP_get_cipherbyname(cipher_name.encode())
    if not cipher:
        return None
    ctx = lib.EVP_CIPHER_CTX_new()
    try:
        out = ctypes.create_string_buffer(len(data) + 32)
        n, m = ctypes.c_int(0), ctypes.c_int(0)
        if lib.EVP_EncryptInit_ex(ctx, cipher, None, key, iv) != 1:
            return None
        if lib.EVP_EncryptUpdate(ctx, out, ctypes.byref(n), data, len(data)) != 1:
            return None
        tail = ctypes.create_string_buffer(32)
        if lib.EVP_EncryptFinal_ex(ctx, tail, ctypes.byref(m)) != 1:
            return None
        result = out.raw[: n.value] + tail.raw[: m.value]
        if cipher_name.endswith("-gcm"):
            tag = ctypes.create_string_buffer(16)
            if lib.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1:
                return None
            result += tag.raw
        return result
    finally:
        lib.EVP_CIPHER_CTX_free(ctx)


def encrypt(app, recipe, fallback):
    """``recipe`` (from the lab) computed here; ``fallback`` when there is none or it fails."""
    if not recipe:
        return fallback
    import base64

    key, iv = bytes.fromhex(recipe["key"]), bytes.fromhex(recipe["iv"])
    raw = evp_encrypt(recipe["cipher"], key, iv, recipe["plaintext"].encode("utf-8", "surrogateescape"))
    if raw is None:
        app.logd("no libcrypto EVP for %s: using the lab's text" % recipe["cipher"], level="W", tag="MxCrypto")
        return recipe["expect"]
    text = base64.b64encode((iv if recipe["cipher"].endswith("-gcm") else b"") + raw).decode("ascii")
    if text != recipe["expect"]:
        app.logd("EVP %s disagrees with the lab's text" % recipe["cipher"], level="E", tag="MxCrypto")
        return recipe["expect"]
    return text


def channel_send(ch, frame):
    ch["sock"].sendall(json.dumps(frame, separators=(",", ":")).encode() + b"\n")


def channel_readable(app, sock):
    sim, ch = next(((k, v) for k, v in app.channels.items() if v["sock"] is sock), (None, None))
    if ch is None:
        return
    try:
        data = sock.recv(65536)
    except OSError:
        data = b""
    if not data:
        app.logd("channel of sim %s closed" % sim, tag="MxMessageService")
        app.channels.pop(sim, None)
        sock.close()
        return
    ch["buf"] += data
    for frame in frames(ch):
        handle_frame(app, sim, ch, frame)


def frames(ch):
    """The complete JSON frames in a channel's buffer, taken out of it (garbage lines skipped)."""
    while b"\n" in ch["buf"]:
        line, ch["buf"] = ch["buf"].split(b"\n", 1)
        try:
            yield json.loads(line)
        except ValueError:
            continue


def handle_frame(app, sim, ch, frame):
    """A frame the service pushed: a message for us, or a receipt for one we sent."""
    if frame.get("type") == "receipt":
        on_receipt(app, sim, frame)
    elif frame.get("type") == "message":
        # an MX message: the inbox row MIUI writes (mx_status 65537); no SMS_RECEIVED broadcast
        body = app.call("unwire_body", value=frame.get("body") or "", sender=frame.get("from"))
        app.call(
            "sms_insert",
            values={
                "address": frame.get("from"),
                "body": body,
                "type": 1,
                "mx_status": 65537,
                "mx_id": None,
                "sim_id": sim,
                "read": 0,
            },
        )
        channel_send(ch, {"type": "ack", "id": frame.get("id")})


MX_SENT, MX_DELIVERED, MX_PENDING = 16, 17, 1


def on_receipt(app, sim, frame):
    pending = app.outgoing.get(frame.get("id"))
    if pending is None:
        return
    status = frame.get("status")
    if status == "sent":
        app.call("sms_update", row=pending["row"], values={"type": 2, "mx_status": MX_SENT})
    elif status == "delivered":
        app.call("sms_update", row=pending["row"], values={"type": 2, "mx_status": MX_DELIVERED})
        app.outgoing.pop(frame.get("id"), None)
    elif status == "failed":
        app.outgoing.pop(frame.get("id"), None)
        resend_as_sms(app, pending)


def resend_as_sms(app, pending):
    """MIUI's fallback: the row waits as type 4 / mx_status 1, then goes out as an SMS."""
    app.call("sms_update", row=pending["row"], values={"type": 4, "mx_status": MX_PENDING})
    app.logd("resending %s as SMS" % pending["row"], tag="MxResendService")
    app.call("send_sms", to=pending["to"], text=pending["text"], slot=pending["sim"], row=pending["row"])


def channel_request(app, sim, frame, want, timeout=5.0):
    """Send a frame on the channel and read until the answer of type ``want`` (frames that
    come in between are handled as usual)."""
    ch = app.channels[sim]
    channel_send(ch, frame)
    sock = ch["sock"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for got in frames(ch):
            if got.get("type") == want and got.get("id") == frame.get("id"):
                return got
            handle_frame(app, sim, ch, got)
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        finally:
            sock.settimeout(None)
        if not data:
            raise RuntimeError("channel closed")
        ch["buf"] += data
    raise RuntimeError("no %s from the service in %.0f s" % (want, timeout))


def presence(app, sim, number):
    app.frame_ids += 1
    got = channel_request(
        app, sim, {"type": "presence", "id": "p%d" % app.frame_ids, "number": number}, "presence-result"
    )
    return bool(got.get("online"))


def cmd_presence(app, req):
    sim = int(req.get("sim", 0))
    if sim not in app.channels:
        return {"online": None, "reason": "Cloud Messaging is off"}
    return {"online": presence(app, sim, str(req["number"]))}  # as the build writes numbers


def cmd_emit(app, req):
    """Send what the firmware sends when an event happens (the lab renders the profile's rules):
    reports to the account host over HTTPS, look-ups to the resolver in the clear, and reports on
    the chat channel (on a short connection when none is bound)."""
    sent = 0
    for r in req.get("requests", []):
        try:
            recipes = r.get("encrypt") or {}
            if recipes:
                r = dict(r, fields={k: encrypt(app, recipes.get(k), v) for k, v in r["fields"].items()})
            if r["endpoint"] == "chat":
                frame = {"type": "report", "event": r["event"], "method": r["method"], "fields": r["fields"]}
                sim = r.get("slot") or 0
                if sim in app.channels:
                    channel_send(app.channels[sim], frame)
                else:
                    sock = tls_connect(app, r["host"])
                    sock.sendall(json.dumps(frame).encode() + b"\n")
                    sock.close()
            elif r["transport"] in ("h2", "h2c"):
                http2(
                    app,
                    r["method"] if r["method"] in ("GET", "POST", "PUT") else "POST",
                    r["path"],
                    r["fields"],
                    host=r["host"],
                    tls=r["transport"] == "h2",
                    encoding=r.get("encoding", "identity"),
                    libs=r.get("pylibs") or (),
                )
            elif r["transport"] in ("wss", "ws"):
                websocket(
                    app,
                    r["path"],
                    r["fields"],
                    host=r["host"],
                    tls=r["transport"] == "wss",
                    deflate=r.get("encoding") == "permessage-deflate",
                    libs=r.get("pylibs") or (),
                )
            else:
                https(
                    app,
                    r["method"] if r["method"] in ("GET", "POST", "PUT") else "POST",
                    r["path"],
                    r["fields"],
                    host=r["host"],
                    tls=r["transport"] == "tls",
                    encoding=r.get("encoding", "identity"),
                )
            sent += 1
        except Exception as e:  # noqa: BLE001 - a report that fails is logged, as an app would
            app.logd("report %s failed: %s" % (r.get("event"), e), level="W", tag="MiuiReport")
    return {"sent": sent}


def cmd_compose_presence(app, req):
    """A conversation was opened: look the number up and tell the screen (blue or gray)."""
    sim, to = int(req.get("sim", 0)), str(req.get("to", ""))
    wire = encrypt(app, req.get("encrypt_to"), str(req.get("wire_to") or to))  # as this build sends it
    online = presence(app, sim, wire) if sim in app.channels and to else False
    app.call("compose_presence", to=to, online=online)
    return {"online": online}


def cmd_mx_send(app, req):
    """What the compose screen's Send does: over IP when Cloud Messaging is on and the receiver
    is online (presence look-up first, as MIUI does), else as SMS; an MX message the service
    cannot deliver in time is re-sent as SMS."""
    sim, to, text = int(req.get("sim", 0)), str(req["to"]), str(req["text"])
    wire = encrypt(app, req.get("encrypt_to"), str(req.get("wire_to") or to))  # as this build sends it
    if sim in app.channels and presence(app, sim, wire):
        row = app.call(
            "sms_insert",
            values={
                "address": to,
                "body": text,
                "type": 2,
                "mx_status": MX_PENDING,
                "sim_id": sim,
                "date_sent": int(time.time() * 1000),
            },
        )
        app.frame_ids += 1
        mid = "m%d-%d" % (app.pid, app.frame_ids)
        app.outgoing[mid] = {"row": row, "to": to, "text": text, "sim": sim}
        app.call("sms_update", row=row, values={"mx_id": app.frame_ids})
        channel_send(
            app.channels[sim],
            {
                "type": "message",
                "id": mid,
                "to": wire,
                "body": encrypt(app, req.get("encrypt_text"), str(req.get("wire_text") or text)),
            },
        )
        return {"route": "ip", "row": row, "id": mid}
    if sim in app.channels:  # CM on, receiver offline: MIUI's fallback rows, then the SMS
        app.frame_ids += 1  # it was an MX message: its mx_id stays on the row it becomes
        row = app.call(
            "sms_insert",
            values={
                "address": to,
                "body": text,
                "type": 4,
                "mx_status": MX_PENDING,
                "sim_id": sim,
                "mx_id": app.frame_ids,
            },
        )
        resend_as_sms(app, {"row": row, "to": to, "text": text, "sim": sim})
        return {"route": "sms", "row": row, "fallback": True}
    sent = app.call("send_sms", to=to, text=text, slot=sim)
    return {"route": "sms", "row": sent["row"], "fallback": False}


def cmd_mx_enable(app, req):
    """ENABLE_MX: activation (token over HTTPS, proved by an SMS to the gateway), then the
    persistent channel, then the ENBALE_RESULT broadcast."""
    sim = int(req.get("sim_index", 0))
    me = app.call("identity", sim=sim)
    ok, error = True, None
    try:
        tok = https(app, "POST", "/pass/activate/token", {})  # the SMS, not the request, carries the number
        app.call("send_sms", to=tok["gateway"], text="MX activation %s" % tok["token"], slot=sim)
        creds = {}
        for _ in range(50):
            creds = https(app, "GET", "/pass/activate/status?token=" + quote(tok["token"]), {})
            if creds.get("activate_status") == 3:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("activation did not complete (status %s)" % creds.get("activate_status"))
        app.call("pref_mx", sim=sim, mid=creds["mid"], st=creds["st"], sec=creds["sec"], enabled=True)
        app.logins[sim] = {"mid": creds["mid"], "st": creds["st"], "number": me["msisdn"]}
        bind(app, sim)
        app.call("event", event="registration", slot=sim)
        app.logd("MX enabled for sim %d" % sim, tag="MxActivateService")
    except Exception as e:  # noqa: BLE001 - the result broadcast says it failed; the app lives on
        ok, error = False, "%s: %s" % (type(e).__name__, e)
        app.logd("MX enable failed for sim %d: %s" % (sim, error), level="W", tag="MxActivateService")
    app.call("broadcast", action="com.xiaomi.mms.action.ENBALE_RESULT", extras={"success": ok, "sim_index": sim})
    return {"success": ok, "error": error}


def bind(app, sim):
    """Open the persistent channel for an activated SIM and bind it."""
    login = app.logins[sim]
    sock = tls_connect(app, CHAT_HOST)
    ch = {"sock": sock, "buf": b"", "number": login["number"]}
    channel_send(ch, {"type": "bind", "mid": login["mid"], "st": login["st"]})
    sock.settimeout(10)
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise RuntimeError("channel closed during bind")
        line += chunk
    result = json.loads(line)
    if not result.get("ok"):
        sock.close()
        raise RuntimeError("bind refused: %s" % result.get("error"))
    sock.settimeout(None)
    old = app.channels.pop(sim, None)
    if old is not None:
        old["sock"].close()
    app.channels[sim] = ch


def cmd_radio(app, req):
    """Connectivity changed (airplane mode): channels drop while off and re-bind when back."""
    if not req.get("on"):
        for sim in list(app.channels):
            app.channels.pop(sim)["sock"].close()
        return {"channels": []}
    for sim in sorted(app.logins):
        if sim not in app.channels:
            try:
                bind(app, sim)
            except Exception as e:  # noqa: BLE001 - retried at the next change
                app.logd("re-bind of sim %d failed: %s" % (sim, e), level="W", tag="MxMessageService")
    return {"channels": sorted(app.channels)}


def cmd_mx_disable(app, req):
    sim = int(req.get("sim_index", 0))
    app.logins.pop(sim, None)
    ch = app.channels.pop(sim, None)
    if ch is not None:
        ch["sock"].close()
    app.call("broadcast", action="com.xiaomi.mms.action.ENBALE_RESULT", extras={"success": True, "sim_index": sim})
    return {"success": True}


def cmd_mx_state(app, req):
    return {"channels": sorted(app.channels)}


COMMANDS = {
    "ping": cmd_ping,
    "log": cmd_log,
    "exit": cmd_exit,
    "mx_enable": cmd_mx_enable,
    "mx_disable": cmd_mx_disable,
    "mx_state": cmd_mx_state,
    "mx_send": cmd_mx_send,
    "presence": cmd_presence,
    "radio": cmd_radio,
    "compose_presence": cmd_compose_presence,
    "emit": cmd_emit,
}


def parse_args(argv):
    opts = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise SystemExit("app_main: bad argument %r (want key=value)" % arg)
        opts[key] = value
    return opts


def allow_ptrace_by_anyone():
    """Under Yama ptrace_scope 1 only ancestors may ptrace us, and Frida's injector is not one."""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            if f.read().strip() != "1":
                return
    except OSError:
        return  # no Yama: nothing to do (and ctypes, ~1 MB, stays unloaded)
    try:
        import ctypes

        PR_SET_PTRACER, PR_SET_PTRACER_ANY = 0x59616D61, -1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PTRACER, ctypes.c_ulong(PR_SET_PTRACER_ANY), 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort: without it only a root tracer can attach, as before
        pass


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    allow_ptrace_by_anyone()
    package = opts["package"]
    tag = opts.get("tag") or package.rsplit(".", 1)[-1].capitalize()
    app = App(package, int(opts["ctl"]), int(opts.get("log") or 0), tag)
    return app.run()


if __name__ == "__main__":
    sys.exit(main())
