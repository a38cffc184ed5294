"""The :class:`Plugin` base class and :func:`export`, which names the plugin object the host's
calls reach."""

from __future__ import annotations

from typing import Optional, Union

from .connection import Connection, Message
from .http import Request, Response
from .websocket import WebSocketAccept


class Plugin:
    """What a plugin implements; export one object of it with :func:`export`.

    Each request gets a fresh instance of the whole plugin, and an idle WebSocket's next event
    may run on a fresh one too (hibernation): keep nothing in attributes or globals that an
    event needs later; keep it in the connection's attachment.

    Exceptions are not caught for the plugin: one raised by ``handle`` makes the host answer
    ``500``, one raised by an ``on_*`` method closes the connection (``1011``); the traceback
    goes to the host's log under the plugin's name.
    """

    def handle(self, request: Request) -> Union[Response, WebSocketAccept]:
        """Answers one request: a complete :class:`Response`, or a managed WebSocket
        (:func:`~switchyard.accept_websocket`)."""
        raise NotImplementedError("a plugin implements handle(request)")

    def on_open(self, connection: Connection) -> None:
        """A managed WebSocket is open: the ``101`` is sent and the accepted topics are
        joined. Runs on the instance that answered ``handle``. The default does nothing."""

    def on_message(self, connection: Connection, message: Message) -> None:
        """A complete message arrived: ``str`` for text, ``bytes`` for binary. The default
        does nothing."""

    def on_close(self, connection: Connection, code: int, reason: str) -> None:
        """The connection has closed with the client's ``code`` and ``reason`` (1005: none
        given; 1006: gone without a close frame). It has left its topics and can no longer be
        sent to. The default does nothing."""


_exported: Optional[Plugin] = None


def export(plugin: Plugin) -> Plugin:
    """Makes ``plugin`` the object whose methods the host's calls reach. Call it once, at the
    top level of ``plugin.py``; returns ``plugin``. Any object with a callable ``handle``
    will do; the ``on_*`` methods are optional."""
    global _exported
    if isinstance(plugin, type):
        raise TypeError(
            f"export() takes a plugin object, not the class: export({plugin.__name__}())"
        )
    if not callable(getattr(plugin, "handle", None)):
        raise TypeError(f"{type(plugin).__name__} has no handle(request) method to export")
    if _exported is not None:
        raise RuntimeError("export() was already called: a component exports one plugin")
    _exported = plugin
    return plugin


def exported() -> Optional[Plugin]:
    """The exported plugin object, if :func:`export` was called."""
    return _exported
