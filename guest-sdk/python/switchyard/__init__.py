"""The guest SDK for Switchyard plugins written in Python.

A plugin is a class with a ``handle(request)`` method (and, for managed WebSockets,
``on_open``, ``on_message`` and ``on_close``), exported once with :func:`export`::

    from switchyard import Plugin, Request, Response, export

    class Hello(Plugin):
        def handle(self, request: Request) -> Response:
            return Response.text(200, f"hello, {request.path}\\n")

    export(Hello())

Build it with ``guest-sdk/python/build <plugin-dir> <out.wasm>`` (the folder holds
``plugin.py``) and drop the ``.wasm`` into the host's plugins folder. The host runs it exactly
as it runs a Rust plugin: a fresh instance per request, the same sandbox and limits.

Managed WebSockets: ``handle`` answers with :func:`accept_websocket`; the host runs the framing
and calls the ``on_*`` methods with a :class:`Connection`. Idle connections *hibernate*: their
instance is dropped and the next event runs on a fresh one, so module globals and attributes of
the plugin object do not survive between events. What an event needs to know about its
connection belongs in the connection's attachment (:meth:`Connection.attachment`).

Layout:

- ``switchyard.http``: :class:`Request` and :class:`Response`.
- ``switchyard.websocket``: :func:`accept_websocket` and :class:`WebSocketAccept`.
- ``switchyard.connection``: :class:`Connection`, :func:`publish` and the :class:`Error`
  exceptions the host's refusals raise.
- ``switchyard.plugin``: :class:`Plugin` and :func:`export`.
- ``switchyard._exports``: the classes componentize-py's bindings call (not public API).
"""

from .connection import (
    Backpressure,
    Connection,
    Error,
    InvalidCloseCode,
    InvalidTopic,
    Message,
    TooLarge,
    TooManyTopics,
    UnknownConnection,
    publish,
)
from .http import Request, Response
from .plugin import Plugin, export
from .websocket import WebSocketAccept, accept_websocket

__all__ = [
    "Backpressure",
    "Connection",
    "Error",
    "InvalidCloseCode",
    "InvalidTopic",
    "Message",
    "Plugin",
    "Request",
    "Response",
    "TooLarge",
    "TooManyTopics",
    "UnknownConnection",
    "WebSocketAccept",
    "accept_websocket",
    "export",
    "publish",
]
