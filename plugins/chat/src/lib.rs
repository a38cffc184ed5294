//! Example plugin: chat rooms over managed WebSockets (being written).

use switchyard_sdk::{Outgoing, Plugin, Request, Response};

struct Chat;

impl Plugin for Chat {
    fn handle(_request: Request) -> Outgoing {
        Response::text(501, "chat is being written\n").into()
    }
}

switchyard_sdk::export!(Chat);
