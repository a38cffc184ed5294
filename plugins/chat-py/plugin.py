"""Example plugin in Python: chat rooms over managed WebSockets, behaving exactly like the Rust
``chat`` (``plugins/chat/src/lib.rs`` documents the protocol): the same page, routes, JSON
events, statuses and close codes, and the same attachment format, so a hot reload between the
two keeps every member.

The host runs the WebSocket framing and the rooms (topics); this plugin decides who may join
and what a message looks like. It keeps nothing in memory between events: who a connection is
and which room it is in live in the connection's attachment, which outlives hibernation.

Build with ``guest-sdk/python/build plugins/chat-py plugins/chat-py.wasm`` and open
``http://127.0.0.1:8080/chat-py`` in two browser tabs. Layout: this file answers requests and
events; ``rules.py`` holds the checks on paths, names and messages and the JSON; the page is
``page.html``, a link to the Rust chat's, read at build time.
"""

import sys
from pathlib import Path
from typing import Optional, Union

from switchyard import (
    Connection,
    Error,
    Message,
    Plugin,
    Request,
    Response,
    TooLarge,
    UnknownConnection,
    WebSocketAccept,
    accept_websocket,
    export,
    publish,
)

import rules

#: The chat page, read once when the plugin is built (the top level runs at build time).
PAGE = (Path(__file__).parent / "page.html").read_bytes()
#: The page may run its own inline script and style and talk back to this host, nothing else.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'"
)


class Chat(Plugin):
    """Chat rooms: a page, WebSocket members, and messages posted over HTTP."""

    def handle(self, request: Request) -> Union[Response, WebSocketAccept]:
        kind, room = rules.target(request.path)
        if kind == "page":
            return page() if request.method == "GET" else not_allowed("GET")
        if kind == "room":
            if request.method == "GET":
                return join(room, request)
            if request.method == "POST":
                return post(room, request)
            return not_allowed("GET, POST")
        return Response.text(404, "not found: the chat page is /chat, rooms are /chat/<room>\n")

    def on_open(self, connection: Connection) -> None:
        found = member(connection)
        if found is None:
            return
        room, name = found
        # Tell those already in the room, and only then join it: the newcomer does not hear
        # of its own arrival.
        tell(room, rules.event("join", room, name))
        try:
            connection.subscribe(room)
        except Error as error:
            log(f"{name} could not join room {room}: {error}")
            close_quietly(connection, rules.CLOSE_INTERNAL, "could not join the room")

    def on_message(self, connection: Connection, message: Message) -> None:
        refusal = rules.refusal(message)
        if refusal is not None:
            close_quietly(connection, *refusal)
            return
        found = member(connection)
        if found is None:
            return
        room, name = found
        assert isinstance(message, str)
        tell(room, rules.event("message", room, name, message))

    def on_close(self, connection: Connection, code: int, reason: str) -> None:
        # The host has already taken the connection out of the room; the attachment still says
        # which room and who.
        try:
            found = rules.from_attachment(connection.attachment())
        except Error as error:
            log(f"cannot tell the room who left: connection {connection.id}'s attachment: {error}")
            return
        if found is not None:
            room, name = found
            tell(room, rules.event("leave", room, name))


def page() -> Response:
    """``GET /chat``: the page."""
    return (
        Response(200, PAGE)
        .header("content-type", "text/html; charset=utf-8")
        .header("content-security-policy", PAGE_POLICY)
        .header("x-content-type-options", "nosniff")
    )


def join(room: str, request: Request) -> Union[Response, WebSocketAccept]:
    """``GET /chat/<room>?name=<name>``: checks the room and name, then accepts the WebSocket
    with the member in its attachment. It joins the room in ``on_open``."""
    try:
        room = rules.room(room)
        name = rules.name(request.query)
    except rules.InputError as error:
        return Response.text(400, f"{error}\n")
    if not any(token.lower() == "websocket" for token in request.header_tokens("upgrade")):
        return Response.text(
            426, "this address is a chat room for WebSocket clients; open /chat in a browser\n"
        ).header("upgrade", "websocket")
    return accept_websocket(request, attachment=rules.to_attachment(room, name))


def post(room: str, request: Request) -> Response:
    """``POST /chat/<room>``: the body goes to the room from ``server``."""
    try:
        room = rules.room(room)
    except rules.InputError as error:
        return Response.text(400, f"{error}\n")
    text = rules.from_post(request.body)
    if isinstance(text, tuple):
        return Response.text(*text)
    try:
        publish(room, rules.event("message", room, rules.SERVER_NAME, text))
    except TooLarge:
        return Response.text(413, "the message is longer than the host allows\n")
    except Error as error:
        log(f"publishing to room {room} failed: {error}")
        return Response.text(500, f"could not send to room {room}: {error}\n")
    return Response.text(202, f"sent to room {room}\n")


def member(connection: Connection) -> Optional[tuple]:
    """The connection's ``(room, name)``, from its attachment. ``None`` when the connection is
    gone, or when its attachment is not one this version wrote (then the connection is closed:
    without a name and room the plugin cannot serve it)."""
    try:
        attachment = connection.attachment()
    except UnknownConnection:
        return None  # closed meanwhile: nothing left to do for it
    except Error as error:
        log(f"reading connection {connection.id}'s attachment failed: {error}")
        return None
    found = rules.from_attachment(attachment)
    if found is None:
        log(f"connection {connection.id} has an unknown attachment")
        close_quietly(connection, rules.CLOSE_INTERNAL, "unknown connection state")
    return found


def tell(room: str, event: str) -> None:
    """Sends ``event`` to everyone in ``room``. The host refuses only a topic or message it
    cannot take, which the checks on rooms and texts rule out; if it happens it is logged."""
    try:
        publish(room, event)
    except Error as error:
        log(f"publishing to room {room} failed: {error}")


def close_quietly(connection: Connection, code: int, reason: str) -> None:
    """Closes ``connection``; that fails only if it is already gone."""
    try:
        connection.close(code, reason)
    except Error:
        pass


def not_allowed(allow: str) -> Response:
    """A ``405`` naming the methods ``allow``ed."""
    return Response.text(405, f"method not allowed here; use {allow}\n").header("allow", allow)


def log(line: str) -> None:
    print(f"chat: {line}", file=sys.stderr)


export(Chat())
