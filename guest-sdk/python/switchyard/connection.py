"""Managed WebSocket connections (:class:`Connection`), topics (:func:`publish`), and the
exceptions the host's refusals raise (:class:`Error` and its subclasses).

A message is ``str`` (a text message) or ``bytes`` (a binary one), both ways.
"""

from __future__ import annotations

from typing import Callable, Dict, TypeVar, Union

from componentize_py_types import Err
from wit_world.imports import connections as _connections
from wit_world.imports import topics as _topics
from wit_world.imports import types as _types

#: A WebSocket data message: ``str`` for text, ``bytes`` for binary.
Message = Union[str, bytes]

T = TypeVar("T")


class Error(Exception):
    """The host refused a call on a connection or topic. Catch a subclass to tell which way."""

    #: What the host said, in words.
    description = "the host refused the call"

    def __init__(self) -> None:
        super().__init__(self.description)


class UnknownConnection(Error):
    """The connection has closed, or was never this plugin's."""

    description = "the connection is closed or not this plugin's"


class TooLarge(Error):
    """The message, attachment or close reason is longer than the host allows."""

    description = "longer than the host allows"


class Backpressure(Error):
    """The connection's outbound buffer is full: the message was not queued."""

    description = "the connection's outbound buffer is full"


class InvalidTopic(Error):
    """The topic name is empty or longer than the host allows."""

    description = "the topic name is empty or too long"


class TooManyTopics(Error):
    """The connection already belongs to as many topics as the host allows."""

    description = "the connection belongs to too many topics"


class InvalidCloseCode(Error):
    """A server may not send that close code (RFC 6455 section 7.4)."""

    description = "a server may not send that close code"


_ERRORS: Dict[_types.Error, type] = {
    _types.Error.UNKNOWN_CONNECTION: UnknownConnection,
    _types.Error.TOO_LARGE: TooLarge,
    _types.Error.BACKPRESSURE: Backpressure,
    _types.Error.INVALID_TOPIC: InvalidTopic,
    _types.Error.TOO_MANY_TOPICS: TooManyTopics,
    _types.Error.INVALID_CLOSE_CODE: InvalidCloseCode,
}


def _call(host_function: Callable[..., T], *args: object) -> T:
    """Calls a host function, turning its `error` into the matching :class:`Error`."""
    try:
        return host_function(*args)
    except Err as refused:
        raise _ERRORS.get(refused.value, Error)() from None


def _to_wit(message: Message) -> _types.Message:
    if isinstance(message, str):
        return _types.Message_Text(message)
    if isinstance(message, (bytes, bytearray, memoryview)):
        return _types.Message_Binary(bytes(message))
    raise TypeError(f"a message is str (text) or bytes (binary), not {type(message).__name__}")


def _from_wit(message: _types.Message) -> Message:
    if isinstance(message, _types.Message_Text):
        return message.value
    return bytes(message.value)


class Connection:
    """A managed WebSocket connection of this plugin.

    It is only a number: every call goes to the host, which keeps the connection (its socket,
    attachment and topics) whether or not an instance is alive. Calls on a connection that has
    closed raise :class:`UnknownConnection`.
    """

    __slots__ = ("id",)

    def __init__(self, id: int) -> None:
        #: The host's number for this connection; unique while the host runs.
        self.id: int = id

    def send(self, message: Message) -> None:
        """Queues ``message`` (``str``: text, ``bytes``: binary) for the client. Never waits:
        a full outbound buffer raises :class:`Backpressure`."""
        _call(_connections.send, self.id, _to_wit(message))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Closes the connection with ``code`` and ``reason`` (at most 123 bytes) once what is
        queued has been written; ``on_close`` follows."""
        _call(_connections.close, self.id, code, reason)

    def attachment(self) -> bytes:
        """The bytes the host keeps for this connection; they outlive the instance."""
        return bytes(_call(_connections.attachment, self.id))

    def set_attachment(self, attachment: Union[bytes, str]) -> None:
        """Replaces the connection's attachment (:class:`TooLarge` over the host's limit)."""
        data = attachment.encode("utf-8") if isinstance(attachment, str) else bytes(attachment)
        _call(_connections.set_attachment, self.id, data)

    def subscribe(self, topic: str) -> None:
        """Makes the connection receive what is published to ``topic`` from now on."""
        _call(_connections.subscribe, self.id, topic)

    def unsubscribe(self, topic: str) -> None:
        """Stops the connection receiving ``topic``; not being subscribed is not an error."""
        _call(_connections.unsubscribe, self.id, topic)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Connection) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"Connection({self.id})"


def publish(topic: str, message: Message) -> None:
    """Sends ``message`` to every connection subscribed to ``topic`` (this plugin's topic of
    that name), at most once each and in the order published. Never waits; works from every
    method, so a plain HTTP ``handle`` can notify WebSocket clients."""
    _call(_topics.publish, topic, _to_wit(message))
