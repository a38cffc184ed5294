//! End-to-end tests: the real host on `127.0.0.1:0`, plugins compiled from source by the build
//! script, and real clients (hyper, tokio-tungstenite, raw TCP, rustls, the `h2` crate, curl).

mod cache;
mod chat;
mod conformance;
mod engines;
mod faults;
mod h2;
mod http;
mod limits;
mod managed;
mod observe;
mod output;
mod python;
mod raw_upgrade;
mod reload;
mod routing;
mod settings;
mod tls;
mod websocket;
