"""Test-only Python plugin that misbehaves on request, for the tests of how the host contains a
Python plugin: exceptions in each export, and reaching for what the sandbox denies.

- ``GET /<mount>/raise``: ``handle`` raises (the host answers ``500``).
- ``GET /<mount>/ws?raise=open|message|close`` (WebSocket): the named event raises; other
  events echo text messages back.
- ``GET /<mount>/file``, ``/socket``, ``/env``: tries to read a file, connect a socket or read
  the environment, and answers ``200`` saying ``denied: <why>`` or ``allowed: <what it got>``.
"""

import os
import sys
from typing import Union

# Imported here, at build time: the sandbox has no files to import a module from at run time.
try:
    import socket
except ImportError as missing:  # CPython for WASI may be built without it
    socket = None
    SOCKET_MISSING = str(missing)

from switchyard import Connection, Message, Plugin, Request, Response
from switchyard import WebSocketAccept, accept_websocket, export


class Misbehave(Plugin):
    def handle(self, request: Request) -> Union[Response, WebSocketAccept]:
        action = request.path.rsplit("/", 1)[-1]
        if action == "raise":
            print("misbehave-py: about to raise in handle", file=sys.stderr)
            raise RuntimeError("raised in handle on purpose")
        if action == "ws":
            mode = (request.query or "").partition("raise=")[2]
            return accept_websocket(request, attachment=mode)
        if action == "file":
            return Response.text(200, attempt(lambda: open("/etc/passwd").read(64)))
        if action == "listdir":
            return Response.text(200, attempt(lambda: os.listdir("/")))
        if action == "socket":
            return Response.text(200, attempt(connect))
        if action == "env":
            return Response.text(200, attempt(lambda: dict(os.environ) or fail("empty")))
        return Response.text(404, "no such misbehaviour\n")

    def on_open(self, connection: Connection) -> None:
        if connection.attachment() == b"open":
            raise RuntimeError("raised in on_open on purpose")

    def on_message(self, connection: Connection, message: Message) -> None:
        if connection.attachment() == b"message":
            raise RuntimeError("raised in on_message on purpose")
        connection.send(message)

    def on_close(self, connection: Connection, code: int, reason: str) -> None:
        if connection.attachment() == b"close":
            raise RuntimeError(f"raised in on_close on purpose (code {code})")


def connect() -> str:
    if socket is None:
        raise OSError(f"no socket module: {SOCKET_MISSING}")
    with socket.create_connection(("127.0.0.1", 80), timeout=1) as sock:
        return f"connected to {sock.getpeername()}"


def fail(why: str) -> None:
    raise OSError(why)


def attempt(action) -> str:
    try:
        return f"allowed: {action()!r}\n"
    except BaseException as error:  # noqa: BLE001  (any refusal counts, even an odd one)
        return f"denied: {type(error).__name__}: {error}\n"


export(Misbehave())
