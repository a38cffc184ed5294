"""Requests and complete responses: :class:`Request` and :class:`Response`.

Header fields are kept as the contract carries them: ``(name, value)`` pairs in order, names
lower-case ASCII, values bytes (HTTP allows bytes that are not UTF-8).
"""

from __future__ import annotations

import json as _json
from typing import Any, Iterable, List, Optional, Tuple, Union

#: The ``content-type`` that :meth:`Response.text` sets.
TEXT_PLAIN = "text/plain; charset=utf-8"
#: The ``content-type`` that :meth:`Response.json` sets.
APPLICATION_JSON = "application/json"

Headers = List[Tuple[str, bytes]]


def _as_bytes(value: Union[str, bytes, bytearray]) -> bytes:
    """Text as UTF-8, bytes as they are."""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def _values(headers: Headers, name: str) -> List[bytes]:
    wanted = name.lower()
    return [value for field, value in headers if field.lower() == wanted]


def _tokens(headers: Headers, name: str) -> List[str]:
    """The comma-separated tokens of every field called ``name``, trimmed, empty ones skipped;
    values that are not UTF-8 hold no tokens."""
    tokens: List[str] = []
    for value in _values(headers, name):
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            continue
        tokens.extend(token.strip() for token in text.split(",") if token.strip())
    return tokens


class Request:
    """One HTTP request as the client sent it, with its whole body.

    Header lookups ignore case. Build one with ``Request("GET", "/path")`` to unit-test a
    plugin's ``handle`` outside the host.
    """

    __slots__ = ("method", "path_with_query", "headers", "body")

    def __init__(
        self,
        method: str,
        path_with_query: str,
        headers: Optional[Iterable[Tuple[str, Union[str, bytes]]]] = None,
        body: Union[str, bytes] = b"",
    ) -> None:
        #: The method, e.g. ``"GET"``.
        self.method: str = method
        #: The request target as sent: path and query, e.g. ``"/echo/room?x=1"``.
        self.path_with_query: str = path_with_query
        #: Every header field as ``(name, value)``, in the order the client sent them.
        self.headers: Headers = [(name.lower(), _as_bytes(value)) for name, value in headers or ()]
        #: The whole request body.
        self.body: bytes = _as_bytes(body)

    @property
    def path(self) -> str:
        """The path without the query: ``/echo/room`` for ``/echo/room?x=1``."""
        return self.path_with_query.split("?", 1)[0]

    @property
    def query(self) -> Optional[str]:
        """The query after ``?``, if there is one: ``x=1`` for ``/echo/room?x=1``."""
        parts = self.path_with_query.split("?", 1)
        return parts[1] if len(parts) == 2 else None

    def header(self, name: str) -> Optional[bytes]:
        """The value of the first header field called ``name`` (any case), or ``None``."""
        values = _values(self.headers, name)
        return values[0] if values else None

    def header_str(self, name: str) -> Optional[str]:
        """The value of the first header field called ``name``, if there is one and it is
        UTF-8."""
        value = self.header(name)
        if value is None:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def header_values(self, name: str) -> List[bytes]:
        """Every value of the header fields called ``name``, in order."""
        return _values(self.headers, name)

    def header_tokens(self, name: str) -> List[str]:
        """The comma-separated tokens of every header field called ``name``, trimmed:
        ``Connection: keep-alive, Upgrade`` gives ``["keep-alive", "Upgrade"]``."""
        return _tokens(self.headers, name)

    def text(self) -> str:
        """The body as UTF-8 text (raises ``UnicodeDecodeError`` if it is not)."""
        return self.body.decode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON (raises ``ValueError`` if it is not)."""
        return _json.loads(self.body)

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.path_with_query!r}, {len(self.body)} body bytes)"


class Response:
    """A complete HTTP response: status, header fields and the whole body.

    Build it by chaining::

        Response(201).header("location", "/kv/a").with_body("created\\n")

    The host frames the body, so do not set ``transfer-encoding``; a ``content-length``, if
    set, must match the body. The host refuses statuses outside 200-599 and malformed header
    fields (the client then gets ``500``).
    """

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, body: Union[str, bytes] = b"", headers: Optional[Headers] = None) -> None:
        #: The status code.
        self.status: int = status
        #: Header fields as ``(name, value)``, in the order they were added.
        self.headers: Headers = list(headers or [])
        #: The body.
        self.body: bytes = _as_bytes(body)

    @classmethod
    def text(cls, status: int, text: str) -> "Response":
        """A ``text/plain; charset=utf-8`` response with ``text`` as its body."""
        return cls(status, text).header("content-type", TEXT_PLAIN)

    @classmethod
    def json(cls, status: int, value: Any) -> "Response":
        """An ``application/json`` response with ``value`` encoded compactly as its body."""
        body = _json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return cls(status, body).header("content-type", APPLICATION_JSON)

    def header(self, name: str, value: Union[str, bytes]) -> "Response":
        """Adds a header field (the name is stored lower-case; repeated names are all sent)
        and returns the response, for chaining."""
        self.headers.append((name.lower(), _as_bytes(value)))
        return self

    def with_body(self, body: Union[str, bytes]) -> "Response":
        """Replaces the body (text is sent as UTF-8) and returns the response."""
        self.body = _as_bytes(body)
        return self

    def header_value(self, name: str) -> Optional[bytes]:
        """The value of the first header field called ``name`` (any case), or ``None``."""
        values = _values(self.headers, name)
        return values[0] if values else None

    def __repr__(self) -> str:
        return f"Response({self.status}, {len(self.body)} body bytes)"
