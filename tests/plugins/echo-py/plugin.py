"""Test plugin in Python: a managed WebSocket echo, the Python counterpart of the Rust `echo`,
for the benchmark's managed echo rows and the hot-reload test."""

from typing import Union

from switchyard import Backpressure, Connection, Message, Plugin, Request, Response
from switchyard import WebSocketAccept, accept_websocket, export


class Echo(Plugin):
    """Sends every message back as it came."""

    def handle(self, request: Request) -> Union[Response, WebSocketAccept]:
        return accept_websocket(request)

    def on_message(self, connection: Connection, message: Message) -> None:
        try:
            connection.send(message)
        except Backpressure:
            pass  # a client that falls behind loses the echo


export(Echo())
