//! Switchyard: a host for sandboxed WebAssembly plugins that answer HTTP requests and can take
//! over the connection after a protocol upgrade (WebSocket or any other `Upgrade:` token).
//!
//! # Layout
//! Each folder is one part of the architecture; a request travels through them in this order.
//! - [`config`]: settings, and every limit declared once (`config::limits`) with its flag,
//!   sidecar key, default and allowed range; the README's table is rendered from it
//!   (`config::docs`); `config::file` reads `serve --config <toml>`, whose keys are the flags.
//! - `server`: the listener (the connection limit, graceful shutdown) and `server::connection`,
//!   one hyper HTTP/1.1 connection per task with upgrades enabled (`408` to a stalled request
//!   head, `GOAWAY` to a cleartext HTTP/2 client); with `--tls-cert`, `server::tls` (rustls,
//!   ALPN, handshake limits, certificate reload) and `server::h2` (HTTP/2 with extended
//!   CONNECT) in front of it.
//! - `http`: one request, from intake to answer: `intake` (RFC 9112 checks, the body within its
//!   size and time limits), `connect` (an HTTP/2 extended CONNECT put in its HTTP/1.1 upgrade
//!   form, RFC 8441), `transport` (TLS or not, for the logs), `request_path` (the normalised
//!   path routing and the plugin share), `dispatch` (route → instantiate → `handle` → response or upgrade), `guest_response` (what a
//!   guest may answer), `upgrade` (whether an upgrade answer may become a `101`), and
//!   [`admission`] with its [`gauge`]s (live instances, sessions and `handle` calls; whether one
//!   more may start).
//! - `session`: the upgraded session on the instance that answered `handle`, and `session::pump`,
//!   the byte pump between the socket and the guest's `stream<u8>`s.
//! - `engine`: wasmtime: the two engines and their linkers ([`runtime`]: `plain` for plugins of
//!   the `plugin` world, `concurrent` for `raw-plugin`s), which one a plugin needs (`world`, from
//!   its exports), the compiled-plugin [`cache`], CPU preemption and budgets (`cpu`),
//!   per-instance sandbox state (`state`), guest stdout/stderr into the log (`guest_log`), and
//!   the WIT contract as Rust types ([`bindings`]).
//! - `plugins`: the plugins folder: one compiled [`plugin`] version, the route table that reloads
//!   swap ([`registry`]), the `loader` and the `watcher` (hot reload), and the [`sidecar`] file.
//! - [`topics`]: publish once, deliver to every subscribed connection of the same plugin: the
//!   backend trait, the in-process registry, each connection's bounded outbox, and
//!   `topics::redis`, which shares topics with other hosts through Redis (`--pubsub`).
//! - [`observe`]: what the operator sees: per-plugin and host-wide counters, rendered for
//!   Prometheus on the admin listener (`/metrics`, `/healthz`, `/readyz`), and the access log.
//! - `ratelimit`: at most so many log lines a second for what an attacker can make us log.

pub mod config;
mod engine;
mod http;
pub mod observe;
mod plugins;
mod ratelimit;
mod server;
mod session;
pub mod topics;

pub use engine::{bindings, cache, runtime};
pub use http::{admission, gauge};
pub use plugins::{plugin, registry, sidecar};

pub use admission::HostStats;
pub use config::{HostConfig, Limits, PluginLimits};
pub use engine::state::InstanceState;
pub use runtime::Runtime;
pub use server::Server;
