"""Managed WebSockets: :func:`accept_websocket` checks a handshake and answers with a
:class:`WebSocketAccept`, after which the host runs the framing and calls the plugin's
``on_open``, ``on_message`` and ``on_close``.

The checks, their order and the refusals are those of the Rust SDK's ``managed::accept``: ``405``
for a method other than ``GET``, ``400`` without ``connection: upgrade`` or
``upgrade: websocket``, ``426`` for a missing or other version than 13, ``400`` for a missing or
malformed ``sec-websocket-key``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Iterable, List, Optional, Tuple, Union

from .http import Headers, Request, Response, _as_bytes


class WebSocketAccept:
    """A managed WebSocket, as ``handle`` answers it: what the host needs to open it."""

    __slots__ = ("protocol", "headers", "topics", "attachment")

    def __init__(
        self,
        protocol: Optional[str] = None,
        headers: Optional[Headers] = None,
        topics: Iterable[str] = (),
        attachment: Union[bytes, str] = b"",
    ) -> None:
        #: The chosen subprotocol, if any.
        self.protocol: Optional[str] = protocol
        #: Extra response header fields (the handshake's own are the host's).
        self.headers: Headers = list(headers or [])
        #: Topics the connection joins before its first event.
        self.topics: List[str] = list(topics)
        #: The connection's first attachment.
        self.attachment: bytes = _as_bytes(attachment)

    def header(self, name: str, value: Union[str, bytes]) -> "WebSocketAccept":
        """Adds a response header field and returns the answer, for chaining."""
        self.headers.append((name.lower(), _as_bytes(value)))
        return self

    def __repr__(self) -> str:
        return f"WebSocketAccept(protocol={self.protocol!r}, topics={self.topics!r})"


def accept_websocket(
    request: Request,
    protocols: Iterable[str] = (),
    topics: Iterable[str] = (),
    attachment: Union[bytes, str] = b"",
    headers: Optional[Iterable[Tuple[str, Union[str, bytes]]]] = None,
) -> Union[WebSocketAccept, Response]:
    """Accepts a WebSocket handshake for the host to run, or answers why not.

    Returns a :class:`WebSocketAccept` (the handshake is sound) or the :class:`Response` to send
    instead; either is a valid return value of ``handle``. Of ``protocols``, in that order of
    preference, the first the client offered in ``sec-websocket-protocol`` is chosen; the
    connection joins ``topics`` and gets ``attachment`` before its first event.
    """
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    offered = request.header_tokens("sec-websocket-protocol")
    chosen = next((protocol for protocol in protocols if protocol in offered), None)
    extra = [(name.lower(), _as_bytes(value)) for name, value in headers or ()]
    return WebSocketAccept(chosen, extra, topics, attachment)


def _refusal(request: Request) -> Optional[Response]:
    """The answer to a request that is not a sound WebSocket handshake, or ``None``."""
    if request.method != "GET":
        return Response.text(405, "websocket handshake must be GET\n").header("allow", "GET")
    if not any(token.lower() == "upgrade" for token in request.header_tokens("connection")):
        return Response.text(400, "missing `connection: upgrade`\n")
    if not any(token.lower() == "websocket" for token in request.header_tokens("upgrade")):
        return Response.text(400, "missing `upgrade: websocket`\n")
    if b", ".join(request.header_values("sec-websocket-version")) != b"13":
        return Response.text(426, "websocket version 13 required\n").header(
            "sec-websocket-version", "13"
        )
    keys = request.header_values("sec-websocket-key")
    if not keys:
        return Response.text(400, "missing sec-websocket-key\n")
    try:
        key = base64.b64decode(b", ".join(keys), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 16:
        return Response.text(400, "invalid sec-websocket-key\n")
    return None
