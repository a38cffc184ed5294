"""The chat's rules, pure so they can be tried outside the host: what a path points at, which
rooms and names are allowed, what a member may say, the attachment format and the JSON events.
Each mirrors its counterpart in the Rust ``chat`` (``input.rs``, ``said.rs``, ``member.rs``,
``event.rs``) exactly, down to the texts of the refusals."""

import json
import unicodedata
from typing import Optional, Tuple, Union

#: The longest room name, in bytes (rooms are ASCII).
MAX_ROOM = 32
#: The longest member name, in characters (Unicode scalar values).
MAX_NAME_CHARS = 32
#: The name messages posted over HTTP come from; no member may take it.
SERVER_NAME = "server"
#: The longest message, in bytes of UTF-8, from a member or posted over HTTP.
MAX_TEXT_BYTES = 4096
#: Close code for a binary message: "unsupported data" (RFC 6455 section 7.4.1).
CLOSE_BINARY = 1003
#: Close code for a message over MAX_TEXT_BYTES: "message too big".
CLOSE_TOO_BIG = 1009
#: Close code when the plugin cannot go on with a connection: "internal error".
CLOSE_INTERNAL = 1011
#: The first byte of the attachment's format (the Rust chat's format 1).
FORMAT = 1

_ROOM_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class InputError(Exception):
    """A room or name broke a rule; the text is the body of the ``400``."""


def target(path: str) -> Tuple[str, str]:
    """``("page", "")`` for ``/<mount>`` (a trailing slash allowed), ``("room", <room>)`` for
    ``/<mount>/<room>``, ``("unknown", "")`` for anything else."""
    if path.endswith("/"):
        path = path[:-1]
    segments = path.split("/")[1:]
    if len(segments) == 1:
        return ("page", "")
    if len(segments) == 2:
        return ("room", segments[1])
    return ("unknown", "")


def room(room: str) -> str:
    """Checks a room name: 1 to MAX_ROOM of ``[A-Za-z0-9_-]``."""
    if 1 <= len(room) <= MAX_ROOM and all(c in _ROOM_CHARACTERS for c in room):
        return room
    raise InputError(
        f"the room must be 1 to {MAX_ROOM} characters of A-Z, a-z, 0-9, '_' and '-'"
    )


def name(query: Optional[str]) -> str:
    """The member name from a query string: the first ``name`` parameter, decoded as a form
    encodes it, then checked."""
    value = None
    for pair in (query or "").split("&"):
        key, _, raw = pair.partition("=")
        if _decode_or_none(key) == "name":
            value = raw
            break
    missing = f"add your name to the address: ?name=<1 to {MAX_NAME_CHARS} characters>"
    if value is None:
        raise InputError(missing)
    decoded = _decode(value)
    if decoded == "":
        raise InputError(missing)
    if len(decoded) > MAX_NAME_CHARS:
        raise InputError(f"the name is longer than {MAX_NAME_CHARS} characters")
    if any(unicodedata.category(c) == "Cc" for c in decoded):
        raise InputError("the name must not contain control characters")
    trimmed = decoded.strip()
    if trimmed == "":
        raise InputError("the name must not be only spaces")
    if _ascii_lower(trimmed) == SERVER_NAME:
        raise InputError(f"the name '{SERVER_NAME}' is reserved for messages posted over HTTP")
    return decoded


def _ascii_lower(text: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in text)


def _decode(component: str) -> str:
    """Decodes one query component: ``+`` is a space and ``%XX`` a byte; the bytes must be
    UTF-8."""
    decoded = _decode_or_none(component)
    if decoded is None:
        raise InputError("the name is not valid percent-encoded UTF-8 (use encodeURIComponent)")
    return decoded


def _decode_or_none(component: str) -> Optional[str]:
    data = bytearray()
    raw = component.encode("utf-8")
    index = 0
    while index < len(raw):
        byte = raw[index]
        index += 1
        if byte == ord("+"):
            data.append(ord(" "))
        elif byte == ord("%"):
            digits = raw[index : index + 2]
            index += 2
            if len(digits) != 2 or not all(chr(d) in "0123456789abcdefABCDEF" for d in digits):
                return None
            data.append(int(digits, 16))
        else:
            data.append(byte)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def refusal(message: Union[str, bytes]) -> Optional[Tuple[int, str]]:
    """Why a member's message closes its connection, as ``(code, reason)``, or ``None``."""
    if not isinstance(message, str):
        return (CLOSE_BINARY, "chat takes text messages only")
    if len(message.encode("utf-8")) > MAX_TEXT_BYTES:
        return (CLOSE_TOO_BIG, "a message is at most 4096 bytes")
    return None


def from_post(body: bytes) -> Union[str, Tuple[int, str]]:
    """The text of a ``POST`` body, or the ``(status, body)`` to answer instead."""
    if len(body) > MAX_TEXT_BYTES:
        return (413, "a message is at most 4096 bytes\n")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return (400, "the message must be UTF-8 text\n")


def to_attachment(room: str, name: str) -> bytes:
    """Format 1: the format byte, the room, ``\\n``, the name."""
    return bytes([FORMAT]) + room.encode("utf-8") + b"\n" + name.encode("utf-8")


def from_attachment(data: bytes) -> Optional[Tuple[str, str]]:
    """The ``(room, name)`` an attachment stands for; ``None`` if this version did not write
    it."""
    if not data or data[0] != FORMAT:
        return None
    try:
        text = data[1:].decode("utf-8")
    except UnicodeDecodeError:
        return None
    room, newline, name = text.partition("\n")
    if not newline:
        return None
    return (room, name)


def event(kind: str, room: str, sender: str, text: Optional[str] = None) -> str:
    """An event as members receive it, keys in this order, no spaces, e.g.
    ``{"type":"message","room":"lobby","from":"ada","text":"hi"}``. Python's encoder escapes
    strings exactly as serde_json does (RFC 8259's required escapes, lower-case ``\\u00xx``)."""
    def string(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)

    fields = f'{{"type":{string(kind)},"room":{string(room)},"from":{string(sender)}'
    if text is not None:
        fields += f',"text":{string(text)}'
    return fields + "}"
