//! Switchyard: a host for sandboxed WebAssembly plugins that answer HTTP requests and can take
//! over the connection after a protocol upgrade (WebSocket or any other `Upgrade:` token).
//!
//! # Layout
//! - [`config`]: settings, and every limit declared once (`config::limits`) with its flag,
//!   sidecar key, default and allowed range; the README's table is rendered from it
//!   (`config::docs`).
//! - [`server`]: the listener: the connection limit, graceful shutdown.
//! - `connection`: one hyper HTTP/1.1 connection per task, upgrades enabled; `408` to a stalled
//!   request head, `GOAWAY` to an HTTP/2 client.
//! - `intake`: what a request must satisfy before routing (RFC 9112 `Host`, transfer codings),
//!   and reading its body within its size and time limits.
//! - `dispatch`: one request → route → instantiate → `handle` → response or upgrade.
//! - `request_path`: the normalised path a request is routed on and its plugin sees.
//! - [`admission`]: live instance and session counts; whether one more session may start.
//! - [`gauge`]: the counters behind it.
//! - `cpu`: epoch-driven preemption and the CPU budgets of sessions.
//! - `upgrade`: whether a plugin's upgrade answer may become a `101` for this client.
//! - `guest_response`: validation of what a guest answers.
//! - `session`: the upgraded session on the instance that answered `handle`.
//! - `pump`: the byte pump between the socket and the guest's `stream<u8>`s.
//! - [`registry`]: the route table that reloads swap.
//! - `loader` and `watcher`: loading the plugins folder and hot reload.
//! - [`plugin`]: one compiled plugin version and its instances.
//! - [`runtime`]: the shared wasmtime engine (pooling allocator) and linker.
//! - [`cache`]: compiled plugins kept on disk between loads.
//! - `state` and `guest_log`: per-instance sandbox state; guest stdout/stderr into the log.
//! - `ratelimit`: at most so many log lines a second for what an attacker can make us log.
//! - `bindings`: the WIT contract as Rust types.

// Generated code: its docs come from the WIT comments, where there are any.
pub mod admission;
#[allow(missing_docs)]
pub mod bindings;
pub mod cache;
pub mod config;
mod connection;
mod cpu;
mod dispatch;
pub mod gauge;
mod guest_log;
mod guest_response;
mod intake;
mod loader;
pub mod plugin;
mod pump;
mod ratelimit;
pub mod registry;
mod request_path;
pub mod runtime;
mod server;
mod session;
pub mod sidecar;
mod state;
mod upgrade;
mod watcher;

pub use admission::HostStats;
pub use config::{HostConfig, Limits, PluginLimits};
pub use runtime::Runtime;
pub use server::Server;
pub use state::InstanceState;
