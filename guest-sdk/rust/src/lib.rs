//! The guest SDK for Switchyard plugins.
//!
//! A plugin is a WebAssembly component that answers HTTP requests routed to it, either with a
//! complete [`Response`] or with an [`Upgrade`] that takes over the connection (WebSocket, or any
//! protocol named in the client's `Upgrade:` header). This crate owns the WIT bindings, so a
//! plugin depends on it alone: implement [`Plugin`] and name the type in [`export!`].
//!
//! ```
//! use switchyard_sdk::{Outgoing, Plugin, Request, Response};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn handle(request: Request) -> Outgoing {
//!         Response::text(200, format!("hello, {}\n", request.path())).into()
//!     }
//! }
//!
//! switchyard_sdk::export!(Hello);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (with `lto = true` in the
//! profile: every instance then touches fewer pages) and drop the `.wasm` into the host's
//! plugins folder.
//!
//! # Upgraded sessions (the `raw-upgrade` feature)
//!
//! A plugin that takes over upgraded connections itself enables this crate's `raw-upgrade`
//! feature (`switchyard-sdk = { …, features = ["raw-upgrade"] }`), which builds it for the
//! contract's `raw-plugin` world. Without it the plugin is built for the `plugin` world
//! (responses and managed WebSockets, plain functions only), which the host runs on an engine
//! without component-model concurrency, where every event call is cheaper.
//!
//! When [`Plugin::handle`] answers with an [`Upgrade`] and the host agrees, the host calls
//! `Plugin::upgrade` on the same instance with a [`Session`]: the connection's raw bytes in
//! both directions. The session lasts until the plugin drops it. For WebSocket,
//! [`websocket::accept`] answers the handshake and [`websocket::WebSocket`] runs the framing.
//!
//! # Managed WebSockets
//!
//! For WebSocket the host can run the framing instead: `handle` answers with
//! [`managed::accept`], and the host calls [`Plugin::on_open`], [`Plugin::on_message`] and
//! [`Plugin::on_close`] with a [`Connection`] to [`Connection::send`] to, and
//! [`topics::publish`] reaches every connection subscribed to a topic. Idle connections
//! hibernate: their instance is dropped and the next event runs on a fresh one, so state an
//! event needs belongs in the connection's [attachment](Connection::attachment).
//!
//! # Layout
//!
//! - [`request`]: [`Request`], the request as the client sent it.
//! - [`response`]: [`Response`], a complete answer.
//! - [`upgrade`]: [`Upgrade`], a switch to another protocol.
//! - [`outgoing`]: [`Outgoing`], either of the two, as `handle` returns it.
//! - [`plugin`]: the [`Plugin`] trait and the adapter behind [`export!`].
//! - [`session`]: [`Session`], the bytes of an upgraded connection, and the [`Transport`] trait.
//! - [`websocket`]: the WebSocket handshake and a WebSocket over a session.
//! - [`managed`]: WebSockets the host runs: [`Connection`], [`Message`], the handshake answer.
//! - [`topics`]: [`topics::publish`] to every subscribed connection.
//! - `bindings` (hidden): the `wit_bindgen::generate!` for the `switchyard:plugin` world (or
//!   `raw-plugin`, with the `raw-upgrade` feature).

// Lets the generated bindings name this crate by its public path, which is also the path the
// export macro uses when it expands inside a plugin crate.
extern crate self as switchyard_sdk;

#[doc(hidden)]
pub mod bindings;
mod headers;
pub mod managed;
pub mod outgoing;
pub mod plugin;
pub mod request;
pub mod response;
pub mod session;
pub mod topics;
pub mod upgrade;
pub mod websocket;

#[cfg(test)]
mod testing;

pub use managed::{Connection, Message};
pub use outgoing::Outgoing;
pub use plugin::Plugin;
pub use request::Request;
pub use response::Response;
pub use session::{Closed, Session, SessionReader, SessionWriter, Transport};
pub use upgrade::Upgrade;

/// What the expansion of [`export!`] names; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::plugin::Exported;
    pub use wit_bindgen;
}

/// Exports a type implementing [`Plugin`] as this component's `switchyard:plugin/handler`.
///
/// Use it once per plugin crate, at the top level of the crate:
///
/// ```
/// # use switchyard_sdk::{Outgoing, Plugin, Request, Response};
/// struct Teapot;
///
/// impl Plugin for Teapot {
///     fn handle(_request: Request) -> Outgoing {
///         Response::text(418, "I'm a teapot\n").into()
///     }
/// }
///
/// switchyard_sdk::export!(Teapot);
/// # fn main() {}
/// ```
///
/// The type must implement [`Plugin`]; the error then names the type:
///
/// ```compile_fail
/// struct NotAPlugin;
///
/// switchyard_sdk::export!(NotAPlugin); // error: the trait `Plugin` is not implemented
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export {
    ($plugin:ty $(,)?) => {
        // The generated export macro takes an identifier, not a type path, hence the alias.
        #[doc(hidden)]
        type __SwitchyardExportedPlugin = $crate::__private::Exported<$plugin>;

        // Names the missing trait at the user's type rather than deep inside the expansion.
        const _: fn() = || {
            fn implements_plugin<P: $crate::Plugin>() {}
            implements_plugin::<$plugin>();
        };

        $crate::bindings::__export_plugin!(
            __SwitchyardExportedPlugin with_types_in $crate::bindings
        );
    };
    ($($other:tt)*) => {
        ::core::compile_error!(
            "expected `switchyard_sdk::export!(MyPlugin)`, where `MyPlugin` implements `switchyard_sdk::Plugin`"
        );
    };
}
