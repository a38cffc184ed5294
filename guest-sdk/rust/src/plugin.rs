//! The [`Plugin`] trait, and the adapter that [`export!`](crate::export) puts behind it.

#[cfg(feature = "raw-upgrade")]
use std::future::Future;
use std::marker::PhantomData;

use crate::bindings::exports::switchyard::plugin::events::Guest as EventsGuest;
use crate::bindings::exports::switchyard::plugin::handler::Guest as HandlerGuest;
use crate::bindings::switchyard::plugin::types::{
    Message as WitMessage, Outgoing as WitOutgoing, Request as WitRequest,
};
use crate::managed::{Connection, Message};
use crate::{Outgoing, Request};
#[cfg(feature = "raw-upgrade")]
use {
    crate::Session,
    crate::bindings::exports::switchyard::plugin::raw_upgrade::Guest as RawUpgradeGuest,
    crate::bindings::wit_stream, wit_bindgen::StreamReader,
};

/// What a plugin implements; export the type with [`export!`](crate::export).
///
/// Each request gets a fresh instance, so there is no `self`: state lives in the session's
/// future, in a managed connection's attachment, or nowhere.
///
/// Without the SDK's `raw-upgrade` feature a plugin answers with responses and managed
/// WebSockets; with it, it may also answer with an [`Upgrade`](crate::Upgrade) and implements
/// `upgrade` (the host runs such plugins on an engine with component-model concurrency, which
/// makes every event call a little dearer).
///
/// A plugin that answers with a managed WebSocket ([`managed::accept`](crate::managed::accept))
/// implements the `on_*` events; the defaults do nothing. Each event may run on a fresh
/// instance (see [`managed`](crate::managed) on hibernation).
pub trait Plugin: 'static {
    /// Answers one request: a complete [`Response`](crate::Response), a managed WebSocket, or
    /// (with the `raw-upgrade` feature) an [`Upgrade`](crate::Upgrade) to another protocol.
    ///
    /// A panic here traps the instance and the host answers 500.
    fn handle(request: Request) -> Outgoing;

    /// Runs an upgraded session, after `handle` answered this `request` with an upgrade and the
    /// host switched protocols.
    ///
    /// Write it as `async fn upgrade(request: Request, session: Session)`. The session ends,
    /// and the host closes the connection, when the returned future drops the session (or its
    /// writer half). The default ends the session at once, which suits plugins that never
    /// upgrade. Only with the SDK's `raw-upgrade` feature.
    #[cfg(feature = "raw-upgrade")]
    fn upgrade(request: Request, session: Session) -> impl Future<Output = ()> + 'static {
        async move {
            drop(session);
            drop(request);
        }
    }

    /// A managed WebSocket is open: the `101` is sent and the accepted topics are joined. Runs
    /// on the instance that answered `handle`.
    fn on_open(connection: Connection) {
        let _ = connection;
    }

    /// A complete message arrived on a managed WebSocket.
    fn on_message(connection: Connection, message: Message) {
        let _ = (connection, message);
    }

    /// A managed WebSocket has closed with the client's `code` and `reason` (1005: none given;
    /// 1006: gone without a close frame). It has left its topics and can no longer be sent to.
    fn on_close(connection: Connection, code: u16, reason: String) {
        let _ = (connection, code, reason);
    }
}

/// Implements the generated `Guest` trait for any [`Plugin`].
///
/// Not public API: [`export!`](crate::export) names it through a type alias, because the
/// generated export macro takes an identifier.
#[doc(hidden)]
pub struct Exported<P>(PhantomData<P>);

impl<P: Plugin> HandlerGuest for Exported<P> {
    fn handle(request: WitRequest) -> WitOutgoing {
        flush_stdout_on_panic();
        let outgoing = P::handle(request.into()).into();
        flush_stdout();
        outgoing
    }
}

#[cfg(feature = "raw-upgrade")]
impl<P: Plugin> RawUpgradeGuest for Exported<P> {
    async fn upgrade(request: WitRequest, input: StreamReader<u8>) -> StreamReader<u8> {
        let (output, returned) = wit_stream::new::<u8>();
        // The host pipes the returned stream to the client only once this export has returned
        // it, so the session cannot run inside this call: it runs as a task of the same
        // component-model task, and ends when it drops `output`.
        let session = Session::new(input, output);
        drop(wit_bindgen::spawn_local(async move {
            P::upgrade(request.into(), session).await;
            flush_stdout();
        }));
        returned
    }
}

impl<P: Plugin> EventsGuest for Exported<P> {
    fn on_open(connection: u64) {
        flush_stdout_on_panic();
        P::on_open(Connection::from_id(connection));
        flush_stdout();
    }

    fn on_message(connection: u64, message: WitMessage) {
        flush_stdout_on_panic();
        P::on_message(Connection::from_id(connection), message.into());
        flush_stdout();
    }

    fn on_close(connection: u64, code: u16, reason: String) {
        flush_stdout_on_panic();
        P::on_close(Connection::from_id(connection), code, reason);
        flush_stdout();
    }
}

/// Makes a panic flush stdout before the instance traps, so what the plugin printed without a
/// final newline just before it panicked is logged too. Installed once per instance, keeping
/// std's own hook (which writes the panic message to stderr) after the flush.
fn flush_stdout_on_panic() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush_stdout();
            report(info);
        }));
    });
}

/// Hands what `print!` left in std's line buffer to the host, which logs it. A plugin is not a
/// program that exits, so std never flushes stdout on its own: output without a final newline
/// would otherwise be lost with the instance. (stderr is not buffered.)
fn flush_stdout() {
    // Writing to the host's log does not fail; if it did there would be nowhere to say so.
    let _ = std::io::Write::flush(&mut std::io::stdout());
}
