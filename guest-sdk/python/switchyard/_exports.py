"""The classes componentize-py's bindings call for the world's exports (``handler``,
``events``), dispatching to the object passed to :func:`switchyard.export`. Not public API: the
build's entry module imports ``Handler`` and ``Events`` from here."""

from __future__ import annotations

import sys

from wit_world import exports as _exports
from wit_world.imports import types as _types

from .connection import Connection, _from_wit
from .http import Request, Response
from .plugin import Plugin, exported
from .websocket import WebSocketAccept


def _plugin() -> Plugin:
    plugin = exported()
    if plugin is None:
        # The build checks this, so only a plugin that calls export() conditionally lands here.
        raise RuntimeError("plugin.py did not call switchyard.export(...)")
    return plugin


def _flush() -> None:
    """Hands what ``print`` left in Python's buffers to the host's log: an instance is dropped
    without exiting, so nothing else would."""
    sys.stdout.flush()
    sys.stderr.flush()


def _to_outgoing(answer: object) -> _types.Outgoing:
    if isinstance(answer, Response):
        return _types.Outgoing_Response(
            _types.Response(answer.status, list(answer.headers), bytes(answer.body))
        )
    if isinstance(answer, WebSocketAccept):
        return _types.Outgoing_Websocket(
            _types.WebsocketAccept(
                answer.protocol, list(answer.headers), list(answer.topics), bytes(answer.attachment)
            )
        )
    raise TypeError(
        f"handle() returned {type(answer).__name__}; it must return a switchyard.Response "
        "or the result of switchyard.accept_websocket()"
    )


class Handler(_exports.Handler):
    """The ``handler`` export."""

    def handle(self, req: _types.Request) -> _types.Outgoing:
        try:
            request = Request(req.method, req.path_with_query)
            request.headers = req.headers
            request.body = req.body
            return _to_outgoing(_plugin().handle(request))
        finally:
            _flush()


class Events(_exports.Events):
    """The ``events`` export."""

    def on_open(self, connection: int) -> None:
        try:
            handler = getattr(_plugin(), "on_open", None)
            if handler is not None:
                handler(Connection(connection))
        finally:
            _flush()

    def on_message(self, connection: int, message: _types.Message) -> None:
        try:
            handler = getattr(_plugin(), "on_message", None)
            if handler is not None:
                handler(Connection(connection), _from_wit(message))
        finally:
            _flush()

    def on_close(self, connection: int, code: int, reason: str) -> None:
        try:
            handler = getattr(_plugin(), "on_close", None)
            if handler is not None:
                handler(Connection(connection), code, reason)
        finally:
            _flush()
