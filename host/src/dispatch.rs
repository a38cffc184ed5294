//! Serves one HTTP request: find the plugin for its path, read the body, instantiate the plugin,
//! call `handle`, and send its response, or switch protocols and start the upgraded session.
//! Every failure becomes a precise log line and the right status; nothing here can take the
//! host down.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use tracing::Instrument as _;

use crate::bindings::{self, Outgoing};
use crate::guest_response::{self, Body, host_response};
use crate::plugin::LoadedPlugin;
use crate::registry::Registry;
use crate::session::{self, SessionLabel};
use crate::upgrade::{self, ClientOffer};

/// What every request needs: the route table and the request limits.
pub(crate) struct Dispatcher {
    pub(crate) registry: Arc<Registry>,
    pub(crate) max_request_body: usize,
}

impl Dispatcher {
    /// Answers `request`. Never fails: errors are answered with a status.
    pub(crate) async fn serve(
        self: Arc<Self>,
        mut request: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let Some(plugin) = self.registry.route(request.uri().path()) else {
            return Ok(host_response(
                StatusCode::NOT_FOUND,
                "no plugin serves this path",
            ));
        };
        // Must be taken before the body is consumed: it owns the connection after a 101.
        let on_upgrade = hyper::upgrade::on(&mut request);
        let (parts, body) = request.into_parts();
        let path = path_with_query(&parts);
        let body = match Limited::new(body, self.max_request_body).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                return Ok(host_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "request body is larger than {} bytes",
                        self.max_request_body
                    ),
                ));
            }
            Err(err) => {
                tracing::debug!(plugin = %plugin.name(), path = %path, "reading the request body failed: {err}");
                return Ok(host_response(
                    StatusCode::BAD_REQUEST,
                    "could not read the request body",
                ));
            }
        };
        let offer = ClientOffer::from_request(&parts);
        let guest_request = guest_request(&parts, path.clone(), body);
        Ok(answer(plugin, guest_request, offer, on_upgrade, path).await)
    }
}

/// Runs the plugin's `handle` and turns its answer into the response.
async fn answer(
    plugin: Arc<LoadedPlugin>,
    request: bindings::Request,
    offer: Option<ClientOffer>,
    on_upgrade: hyper::upgrade::OnUpgrade,
    path: String,
) -> Response<Body> {
    let mut instance = match plugin.instantiate().await {
        Ok(instance) => instance,
        Err(err) if err.is::<wasmtime::PoolConcurrencyLimitError>() => {
            tracing::warn!(plugin = %plugin.name(), version = %plugin.version(), path = %path, "no free plugin instance: {err}");
            return host_response(StatusCode::SERVICE_UNAVAILABLE, "server busy, try again");
        }
        Err(err) => {
            tracing::error!(plugin = %plugin.name(), version = %plugin.version(), path = %path, "instantiating the plugin failed: {err:#}");
            return host_response(StatusCode::INTERNAL_SERVER_ERROR, "plugin failed");
        }
    };
    let outgoing = match instance.handle(&request).await {
        Ok(outgoing) => outgoing,
        Err(trap) => {
            tracing::error!(plugin = %plugin.name(), version = %plugin.version(), path = %path, "plugin trapped in handle: {trap:#}");
            return host_response(StatusCode::INTERNAL_SERVER_ERROR, "plugin failed");
        }
    };
    match outgoing {
        Outgoing::Response(response) => match guest_response::into_http(response) {
            Ok(response) => response,
            Err(invalid) => {
                tracing::error!(plugin = %plugin.name(), version = %plugin.version(), path = %path, "plugin returned an invalid response: {invalid}");
                host_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "plugin returned an invalid response",
                )
            }
        },
        Outgoing::ProtocolUpgrade(upgrade) => match upgrade::accept(offer.as_ref(), upgrade) {
            Ok(switching) => {
                let label = SessionLabel { plugin, path };
                tokio::spawn(session::run(instance, request, on_upgrade, label).in_current_span());
                switching
            }
            Err(refused) => {
                tracing::warn!(plugin = %plugin.name(), version = %plugin.version(), path = %path, "upgrade refused: {refused}");
                host_response(
                    StatusCode::BAD_GATEWAY,
                    "plugin answered with an upgrade the client cannot take",
                )
            }
        },
    }
}

fn path_with_query(parts: &Parts) -> String {
    parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned())
}

/// The request as the guest sees it. Header names arrive lower-cased from hyper.
fn guest_request(parts: &Parts, path_with_query: String, body: Bytes) -> bindings::Request {
    bindings::Request {
        method: parts.method.as_str().to_owned(),
        path_with_query,
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
        body: body.to_vec(),
    }
}
