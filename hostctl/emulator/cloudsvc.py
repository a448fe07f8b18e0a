"""The Cloud Messaging service on loopback: TLS for the account host and the chat channel, plain
HTTP for the resolver, around the state machine in ``cloudmsg``. The two HTTP hosts also speak
HTTP/2 (ALPN ``h2`` on TLS, prior knowledge in the clear) and WebSocket after an HTTP/1.1 Upgrade,
for builds whose profile endpoints use them (``cloudsvc_h2ws``).

Each endpoint listens on its own 127.0.0.1 port; the lab's resolver map (``hosts()``) tells the
emulated handsets which port answers for which Xiaomi host name, so TLS SNI, certificate checks and
Host headers on the wire carry the real names.

Clients come and go at any moment, slow or gone: a frame for a client whose TLS session is
closing (its end closed, seen by the TLS layer before its handler has read that far) is dropped
rather than written, since asyncio's TLS transport drops such writes and logs each one ("SSL
connection is closed", sslproto.py ``_write_appdata``); a client that does not read is
dropped after IO_TIMEOUT; and a handler cancelled by ``stop()`` ends quietly (a
``client_connected_cb`` task that ends cancelled makes asyncio 3.11 log "Exception in callback"
from its done-callback, which calls ``task.exception()`` on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import re
import ssl
from typing import Any
from urllib.parse import parse_qsl

import h11

from .cloudmsg import ACCOUNT_HOST, CHAT_HOST, RESOLVER_HOST, CloudMessaging, Delivery, ProtocolError, parse_line
from .cloudsvc_h2ws import http2_serve, websocket_serve
from .labca import LabCA

__all__ = ["CloudService"]

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"
MAX_LINE = 64 * 1024
MAX_BODY = 256 * 1024
IO_TIMEOUT = 30.0
HIGH_WATER = 256 << 10  # bytes queued for one client before its senders wait


class CloudService:
    def __init__(self, cm: CloudMessaging, ca: LabCA, *, tick: float = 0.25) -> None:
        self.cm = cm
        self.ca = ca
        self.tick_interval = tick
        self._servers: list[asyncio.base_events.Server] = []
        self._writers: dict[int, asyncio.StreamWriter] = {}
        self._handlers: set[asyncio.Task] = set()
        self._conn_ids = itertools.count(1)
        self._ticker: asyncio.Task | None = None
        self.ports: dict[str, int] = {}

    def hosts(self) -> dict[str, tuple[str, int]]:
        """The resolver map: Xiaomi host name -> (address, port) of the service answering it."""
        return {
            ACCOUNT_HOST: (LOOPBACK, self.ports["account"]),
            CHAT_HOST: (LOOPBACK, self.ports["chat"]),
            "app.chat.global.xiaomi.net": (LOOPBACK, self.ports["chat"]),
            RESOLVER_HOST: (LOOPBACK, self.ports["resolver"]),
        }

    async def start(self) -> None:
        tls = self.ca.server_context()
        https = self.ca.server_context()
        https.set_alpn_protocols(["h2", "http/1.1"])  # RFC 7301: a client offering h2 gets HTTP/2
        for name, handler, ctx in (
            ("account", self._http, https),
            ("chat", self._chat, tls),
            ("resolver", self._http, None),
        ):
            server = await asyncio.start_server(
                functools.partial(self._handle, handler, name=name),
                LOOPBACK,
                0,
                ssl=ctx,
                limit=MAX_LINE,
                ssl_handshake_timeout=10 if ctx else None,
            )
            self._servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]
        self._ticker = asyncio.create_task(self._tick_loop())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for server in self._servers:
            server.close()
        for w in list(self._writers.values()):
            w.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        self._servers.clear()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            self._send(self.cm.tick())  # receipts are small; a full queue is handled by its sender

    async def _handle(
        self, handler: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str
    ) -> None:
        """One connection's handler, ended quietly when the service stops (see the module doc)."""
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await handler(reader, writer, name)
        except asyncio.CancelledError:
            writer.close()
        except Exception:  # one client's fault must not reach asyncio's log as a traceback
            log.exception("%s: a connection's handler failed", name)
            writer.close()
        finally:
            if task is not None:
                self._handlers.discard(task)

    # -- chat channel ---------------------------------------------------------------------------

    def _send(self, deliveries: list[Delivery]) -> list[asyncio.StreamWriter]:
        """Queue the frames; returns the writers past the high-water mark (their reader is slow)."""
        full = []
        for d in deliveries:
            w = self._writers.get(d.conn)
            if w is not None and _writable(w):
                w.write(d.line())
                if d.frame.get("type") == "closed":
                    w.close()
                elif w.transport.get_write_buffer_size() > HIGH_WATER:
                    full.append(w)
        return full

    async def _wait_for(self, full: list[asyncio.StreamWriter]) -> None:
        """Back-pressure: the sender waits while a receiver's queue drains; a receiver that does
        not read for IO_TIMEOUT is dropped, so no client can grow the service's memory."""
        for w in full:
            try:
                await asyncio.wait_for(w.drain(), IO_TIMEOUT)
            except (TimeoutError, ConnectionError, OSError):
                log.info("chat: dropping a client that does not read")
                w.close()

    async def _chat(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _name: str) -> None:
        conn = next(self._conn_ids)
        self._writers[conn] = writer
        self.cm.open(conn)
        try:
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), timeout=300)
                except (asyncio.LimitOverrunError, ValueError):
                    writer.write(b'{"type":"error","error":"frame too long"}\n')
                    break
                if not line:
                    break
                try:
                    out = self.cm.receive(conn, parse_line(line))
                except ProtocolError as exc:
                    out = [Delivery(conn, {"type": "error", "error": str(exc)})]
                full = self._send(out)
                if full:
                    await self._wait_for(full)
        except (TimeoutError, ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            self._writers.pop(conn, None)
            self._send(self.cm.close(conn))
            writer.close()

    # -- HTTP (account over TLS, resolver in the clear): HTTP/1.1, HTTP/2, WebSocket ------------------

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str) -> None:
        """Which protocol the client speaks: HTTP/2 when TLS's ALPN chose "h2" or the connection
        opens with the HTTP/2 client preface (h2c with prior knowledge, RFC 9113 3.3); WebSocket
        when the first request asks to upgrade to it (RFC 6455 4.1); else HTTP/1.1."""
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            await http2_serve(self, reader, writer, name, b"")
            return
        try:
            kind, initial = await _sniff(reader)
        except (TimeoutError, ConnectionError, ssl.SSLError, OSError) as exc:
            log.debug("%s: connection ended before its first request: %s", name, exc)
            writer.close()
            return
        if kind == "h2":
            await http2_serve(self, reader, writer, name, initial)
        elif kind == "websocket":
            await websocket_serve(self, reader, writer, name, initial)
        else:
            await self._http1(reader, writer, name, initial)

    def request_fields(self, target: str, headers: dict[bytes, bytes], body: bytes) -> tuple[str, dict[str, str]]:
        """The path and the fields of a request: its query, and its body undone from its
        Content-Encoding (JSON object or form)."""
        path, _, query = target.partition("?")
        fields = dict(parse_qsl(query))
        ctype = headers.get(b"content-type", b"")
        body = _decoded(body, headers.get(b"content-encoding", b""))
        if body:
            if ctype.startswith(b"application/json"):
                with contextlib.suppress(ValueError):
                    data = json.loads(body)
                    if isinstance(data, dict):
                        fields.update({k: str(v) for k, v in data.items()})
            else:
                fields.update(parse_qsl(body.decode("utf-8", "replace")))
        return path, fields

    async def _http1(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str, initial: bytes = b""
    ) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_LINE)
        if initial:
            conn.receive_data(initial)
        try:
            while True:
                request, body = await self._read_request(reader, conn)
                if request is None:
                    break
                host = dict(request.headers).get(b"host", b"").decode("latin-1").split(":")[0]
                path, fields = self.request_fields(request.target.decode("latin-1"), dict(request.headers), body)
                status, payload = self.cm.http(host, request.method.decode(), path, fields)
                data = json.dumps(payload).encode()
                writer.write(
                    conn.send(
                        h11.Response(
                            status_code=status,
                            headers=[("content-type", "application/json"), ("content-length", str(len(data)))],
                        )
                    )
                )
                writer.write(conn.send(h11.Data(data=data)))
                writer.write(conn.send(h11.EndOfMessage()))
                await asyncio.wait_for(writer.drain(), IO_TIMEOUT)
                if conn.our_state is h11.MUST_CLOSE:
                    break
                conn.start_next_cycle()
        except (TimeoutError, h11.RemoteProtocolError, ConnectionError, ssl.SSLError, OSError) as exc:
            log.debug("%s: HTTP connection ended: %s", name, exc)
        finally:
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader, conn: h11.Connection) -> tuple[Any, bytes]:
        request = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(65536), IO_TIMEOUT)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise h11.RemoteProtocolError("body too large")
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 3.4
_WS_UPGRADE = re.compile(rb"\r\nupgrade:[ \t]*websocket[ \t]*\r\n", re.IGNORECASE)


async def _sniff(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    """Reads a clear connection's opening: ("h2", bytes) for the HTTP/2 preface, ("websocket",
    bytes) for a request head asking to upgrade to WebSocket, else ("http1", what was read)."""
    buf = b""
    while len(buf) < MAX_LINE:
        if buf.startswith(H2_PREFACE):
            return "h2", buf
        if not H2_PREFACE.startswith(buf[: len(H2_PREFACE)]) or len(buf) >= len(H2_PREFACE):
            head, sep, _ = buf.partition(b"\r\n\r\n")
            if sep:
                return ("websocket" if _WS_UPGRADE.search(head + b"\r\n") else "http1"), buf
        data = await asyncio.wait_for(reader.read(65536), IO_TIMEOUT)
        if not data:
            break
        buf += data
    return "http1", buf


def _decoded(body: bytes, coding: bytes) -> bytes:
    """A request body undone from its Content-Encoding (gzip, deflate), at most MAX_BODY bytes
    out; what does not decode is left as it came."""
    import zlib

    coding = coding.strip().lower()
    if not body or coding not in (b"gzip", b"x-gzip", b"deflate"):
        return body
    try:
        d = zlib.decompressobj(31 if coding != b"deflate" else 15)
        return d.decompress(body, MAX_BODY)
    except zlib.error:
        return body


def _writable(w: asyncio.StreamWriter) -> bool:
    """Whether a write to ``w`` would be sent: not closing, and for TLS, a session not already
    shutting down. asyncio's TLS transport says ``is_closing()`` False until our side closes it,
    though after the peer's EOF its protocol is FLUSHING / SHUTDOWN / UNWRAPPED and drops (and
    logs) every write: the same test as its ``_write_appdata`` (CPython 3.11-3.13 sslproto.py),
    read through getattr so another implementation just skips it."""
    if w.is_closing():
        return False
    state = getattr(getattr(w.transport, "_ssl_protocol", None), "_state", None)
    return getattr(state, "name", "WRAPPED") not in ("FLUSHING", "SHUTDOWN", "UNWRAPPED")


async def _serve(directory: str, ttl: float) -> None:
    """``python -m hostctl.emulator.cloudsvc DIR [TTL]``: the service alone (benchmarks); prints
    its ports and the CA path as one JSON line. Each stdin line ``SENDER TEXT`` is an SMS to the
    gateway number (what the lab's carrier delivers), answered ``true``/``false``; it runs until
    stdin closes."""
    import sys
    from pathlib import Path

    from .labca import ensure_ca

    ca = ensure_ca(Path(directory))
    svc = CloudService(CloudMessaging(ttl=ttl, observe=False), ca)
    await svc.start()
    print(json.dumps({"ports": svc.ports, "ca": str(ca.ca_cert)}), flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        sender, _, text = line.strip().partition(" ")
        print(json.dumps(svc.cm.gateway_sms(sender, text)), flush=True)
    await svc.stop()


if __name__ == "__main__":
    import sys

    asyncio.run(_serve(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 30.0))
