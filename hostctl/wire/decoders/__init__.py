"""Decoders as a stack of layers (STYLE.md): each module registers itself with
`hostctl.wire.decoders.registry.REGISTRY`; importing this package registers them all.

=============  ===========================================  ==============================
layer          claimed by                                   decoded messages (chain)
=============  ===========================================  ==============================
tls            a TLS record header                          none (opaque without keys)
http2          client preface, ALPN ``h2``, Upgrade h2c     ``h2-header``, ``h2-data[>coding]``
http1          request / status line (after <=16 stray      ``http-body[>coding]``
               bytes), ports 80, 8080, 8000, 3128
xmpp           ``<?xml`` / ``<stream:stream``, port 5222    ``xmpp>zlib`` after XEP-0138
zlib-stream    a zlib / gzip header at a stream's start     ``zlib`` / ``gzip``
websocket      Upgrade websocket + 101                      ``websocket[>permessage-deflate]``
(walkers)      every decoded message, at its end            ``...>protobuf-varint``, ``...>gzip``
=============  ===========================================  ==============================

The entry point for a byte stream is `hostctl.wire.analysis.Connection`.
"""

from hostctl.wire.decoders import http1, http2, protobuf, text, websocket  # noqa: F401  (registration)
from hostctl.wire.decoders.base import LIMITS, Limits, Notes, Out
from hostctl.wire.decoders.registry import REGISTRY, Registry

__all__ = ["LIMITS", "REGISTRY", "Limits", "Notes", "Out", "Registry"]
