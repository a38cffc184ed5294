//! Example plugin: answers every request with a greeting that echoes what it was asked.
//!
//! `curl http://127.0.0.1:8080/hello/world?x=1` after dropping `hello.wasm` into the plugins
//! folder (build it with `cargo build --profile plugin --target wasm32-wasip2 -p hello`).

use switchyard_sdk::{Outgoing, Plugin, Request, Response};

struct Hello;

impl Plugin for Hello {
    fn handle(request: Request) -> Outgoing {
        let user_agent = request.header_str("user-agent").unwrap_or("-");
        let body = format!(
            "hello from switchyard\nmethod: {}\npath: {}\nuser-agent: {user_agent}\nbody: {} bytes\n",
            request.method(),
            request.path_with_query(),
            request.body().len(),
        );
        Response::text(200, body).header("x-plugin", "hello").into()
    }
}

switchyard_sdk::export!(Hello);
