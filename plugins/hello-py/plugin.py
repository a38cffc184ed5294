"""Example plugin in Python: answers every request with a greeting that echoes what it was
asked, like the Rust `hello`.

Build it with ``guest-sdk/python/build plugins/hello-py plugins/hello-py.wasm`` and
``curl http://127.0.0.1:8080/hello-py/world?x=1``.
"""

from switchyard import Plugin, Request, Response, export


class Hello(Plugin):
    """Says hello, and what the request was."""

    def handle(self, request: Request) -> Response:
        user_agent = request.header_str("user-agent") or "-"
        body = (
            "hello from switchyard\n"
            f"method: {request.method}\n"
            f"path: {request.path_with_query}\n"
            f"user-agent: {user_agent}\n"
            f"body: {len(request.body)} bytes\n"
        )
        return Response.text(200, body).header("x-plugin", "hello-py")


export(Hello())
