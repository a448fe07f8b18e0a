"""The Cloud Messaging service's HTTP/2 and WebSocket ends (a build's ``transport: h2 | h2c | wss |
ws`` endpoints), spoken with python-hyper ``h2`` and ``wsproto``, the same libraries the emulated
Messaging app uses as a client.

Both hand each request to the same place HTTP/1.1 does (``CloudMessaging.http``), so a report is
observed the same way whatever carried it:

* HTTP/2 (RFC 9113): every stream is one request; its ``:authority`` is the host, ``:path`` the
  target, its DATA the body (undone from its ``content-encoding``); the reply is a JSON body.
* WebSocket (RFC 6455, with permessage-deflate per RFC 7692 when the client offers it): the
  Upgrade request's Host and target name the host and path; every message is one report, a JSON
  object of fields, answered by one text message holding the JSON reply.

Every read has IO_TIMEOUT; a body or message past MAX_BODY ends the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from typing import Any

log = logging.getLogger(__name__)
IO_TIMEOUT = 30.0
MAX_BODY = 256 * 1024
_ENDED = (asyncio.TimeoutError, ConnectionError, ssl.SSLError, OSError)


async def http2_serve(
    svc: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str, initial: bytes
) -> None:
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events
    import h2.exceptions

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    conn.initiate_connection()
    streams: dict[int, tuple[dict[bytes, bytes], bytearray]] = {}
    data = initial
    try:
        writer.write(conn.data_to_send())
        while True:
            if not data:
                data = await asyncio.wait_for(reader.read(65536), IO_TIMEOUT)
                if not data:
                    break
            events = conn.receive_data(data)
            data = b""
            ended = False
            for ev in events:
                if isinstance(ev, h2.events.RequestReceived):
                    streams[ev.stream_id] = ({bytes(k).lower(): bytes(v) for k, v in ev.headers}, bytearray())
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    body = streams.get(ev.stream_id, ({}, bytearray()))[1]
                    body += ev.data
                    if len(body) > MAX_BODY:
                        conn.reset_stream(ev.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                        streams.pop(ev.stream_id, None)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in streams:
                    headers, body = streams.pop(ev.stream_id)
                    _h2_respond(svc, conn, ev.stream_id, headers, bytes(body))
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    ended = True
            writer.write(conn.data_to_send())
            await asyncio.wait_for(writer.drain(), IO_TIMEOUT)
            if ended:
                break
    except (h2.exceptions.ProtocolError, *_ENDED) as exc:
        log.debug("%s: HTTP/2 connection ended: %s", name, exc)
    finally:
        writer.close()


def _h2_respond(svc: Any, conn: Any, stream_id: int, headers: dict[bytes, bytes], body: bytes) -> None:
    host = headers.get(b":authority", headers.get(b"host", b"")).decode("latin-1").split(":")[0]
    path, fields = svc.request_fields(headers.get(b":path", b"/").decode("latin-1"), headers, body)
    status, payload = svc.cm.http(host, headers.get(b":method", b"POST").decode("latin-1"), path, fields)
    data = json.dumps(payload).encode()
    conn.send_headers(
        stream_id,
        [
            (b":status", str(status).encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
        ],
    )
    conn.send_data(stream_id, data, end_stream=True)


async def websocket_serve(
    svc: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str, initial: bytes
) -> None:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, CloseConnection, Message, Ping, Request
    from wsproto.extensions import PerMessageDeflate
    from wsproto.utilities import RemoteProtocolError

    ws = WSConnection(ConnectionType.SERVER)
    host, path, parts = "", "/", []
    data = initial
    try:
        while True:
            if not data:
                data = await asyncio.wait_for(reader.read(65536), IO_TIMEOUT)
                if not data:
                    break
            ws.receive_data(data)
            data = b""
            closed = False
            for ev in ws.events():
                if isinstance(ev, Request):
                    host, path = ev.host.split(":")[0], ev.target
                    # accepted only when offered (wsproto's server_extensions_handshake)
                    writer.write(ws.send(AcceptConnection(extensions=[PerMessageDeflate()])))
                elif isinstance(ev, Message):
                    parts.append(ev.data if isinstance(ev.data, str) else ev.data.decode("utf-8", "replace"))
                    if sum(len(p) for p in parts) > MAX_BODY:
                        raise RemoteProtocolError("message too large")
                    if ev.message_finished:
                        writer.write(ws.send(Message(data=_ws_reply(svc, host, path, "".join(parts)))))
                        parts = []
                elif isinstance(ev, Ping):
                    writer.write(ws.send(ev.response()))
                elif isinstance(ev, CloseConnection):
                    writer.write(ws.send(ev.response()))
                    closed = True
            await asyncio.wait_for(writer.drain(), IO_TIMEOUT)
            if closed:
                break
    except (RemoteProtocolError, *_ENDED) as exc:
        log.debug("%s: WebSocket connection ended: %s", name, exc)
    finally:
        writer.close()


def _ws_reply(svc: Any, host: str, path: str, text: str) -> str:
    fields: dict[str, str] = {}
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        fields = {k: str(v) for k, v in data.items()}
    status, payload = svc.cm.http(host, "POST", path.partition("?")[0], fields)
    return json.dumps(dict(payload, status=status))
