//! Serves one HTTP request: find the plugin for its path, read the body, instantiate the plugin,
//! call `handle`, and send its response, or switch protocols and start the upgraded session.
//! Every failure becomes a precise log line and the right status; nothing here can take the
//! host down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body as _, Incoming};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use tracing::Instrument as _;

use crate::config::Limits;
use crate::engine::bindings::{self, Outgoing};
use crate::http::admission::HostStats;
use crate::http::connect;
use crate::http::guest_response::{self, Body, host_response};
use crate::http::intake;
use crate::http::request_path;
use crate::http::transport::Transport;
use crate::http::upgrade::{self, ClientOffer, UpgradeRefused, tokens};
use crate::observe::access_log;
use crate::observe::metrics;
use crate::plugins::plugin::{LoadedPlugin, PluginInstance};
use crate::plugins::registry::Registry;
use crate::ratelimit::{HostWarnings, limited_warn};
use crate::session::managed::imports::RealtimeCtx;
use crate::session::managed::registry::{Connection, ConnectionLimits, Hub};
use crate::session::managed::{self};
use crate::session::{self, SessionContext};
use crate::topics::Outbox;

/// What a client is told to wait before retrying a request refused for lack of capacity.
const RETRY_AFTER_SECS: &str = "1";

/// What every request needs: the route table, the limits, the live counts, and the hooks
/// sessions use to be tracked and shut down.
pub(crate) struct Dispatcher {
    pub(crate) registry: Arc<Registry>,
    pub(crate) limits: Limits,
    pub(crate) stats: Arc<HostStats>,
    pub(crate) sessions: session::SessionHooks,
    /// Warnings clients can provoke at will, logged at a bounded rate.
    pub(crate) warnings: HostWarnings,
    /// Every plugin's managed WebSocket connections and topics.
    pub(crate) hub: Arc<Hub>,
    /// What every managed WebSocket's task shares.
    pub(crate) managed: Arc<managed::Hooks>,
    /// The span the server was started in, which managed WebSockets' spans descend from.
    pub(crate) host_span: tracing::Span,
    /// Whether to write an access-log line per request (`--access-log`).
    pub(crate) access_log: bool,
}

impl Dispatcher {
    /// Answers `request`. Never fails: errors are answered with a status.
    pub(crate) async fn serve(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let started = Instant::now();
        // Kept only when the access log wants them: the request itself is consumed.
        let logged = self.access_log.then(|| {
            (
                request.method().clone(),
                request.uri().clone(),
                request.version(),
            )
        });
        let (response, served) = self.route(request).await;
        let status = response.status().as_u16();
        let bytes_out = response.body().size_hint().exact().unwrap_or(0);
        if let Some((plugin, _)) = &served {
            let metrics = plugin.metrics();
            metrics.count_response(status);
            metrics::add(&metrics.bytes_out, bytes_out);
        }
        if let Some((method, uri, version)) = logged {
            access_log::request(&access_log::RequestLine {
                method: method.as_str(),
                path: uri.path(),
                status,
                plugin: served
                    .as_ref()
                    .map(|(plugin, _)| (plugin.name(), plugin.version())),
                version,
                duration: started.elapsed(),
                bytes_in: served.as_ref().map_or(0, |(_, bytes_in)| *bytes_in),
                bytes_out,
            });
        }
        Ok(response)
    }

    /// Routes `request` to its plugin and answers it; says which plugin answered and how many
    /// body bytes it was given, for the metrics and the access log.
    async fn route(
        &self,
        mut request: Request<Incoming>,
    ) -> (Response<Body>, Option<(Arc<LoadedPlugin>, u64)>) {
        if let Some(refused) = intake::check_head(&request, &self.limits) {
            return (refused, None);
        }
        // An HTTP/2 extended CONNECT reaches the plugin as the HTTP/1.1 upgrade it stands for.
        let connect_protocol = match connect::rewrite(&mut request) {
            Ok(protocol) => protocol,
            Err(refused) => return (*refused, None),
        };
        // Routing and the plugin both use the normalised path, so they cannot disagree.
        let path = match request_path::normalize(request.uri().path()) {
            Ok(path) => path,
            Err(err) => {
                tracing::debug!(target = %request.uri(), "bad request path: {err}");
                return (
                    host_response(StatusCode::BAD_REQUEST, &err.to_string()),
                    None,
                );
            }
        };
        let Some(plugin) = self.registry.route(&path) else {
            return (
                host_response(StatusCode::NOT_FOUND, "no plugin serves this path"),
                None,
            );
        };
        // Must be taken before the body is consumed: it owns the connection after a 101.
        let on_upgrade = hyper::upgrade::on(&mut request);
        let (parts, body) = request.into_parts();
        let path = match parts.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        // Every line logged for this request, including its session and the guest's own
        // output, names the plugin, its version and the path.
        let span = tracing::info_span!(
            "request",
            plugin = %plugin.name(),
            version = %plugin.version(),
            path = %path,
            http = ?parts.version,
            connect_protocol = tracing::field::Empty,
        );
        if let Some(protocol) = &connect_protocol {
            span.record("connect_protocol", protocol.as_str());
        }
        let answered = async {
            let body = match intake::read_body(body, &self.limits).await {
                Ok(body) => body,
                Err(response) => return (response, 0),
            };
            let bytes_in = body.len() as u64;
            metrics::add(&plugin.metrics().bytes_in, bytes_in);
            let offer = ClientOffer::from_request(&parts);
            let request = guest_request(&parts, path, body);
            let response = self
                .answer(plugin.clone(), request, &parts, offer, on_upgrade)
                .await;
            (response, bytes_in)
        };
        let (response, bytes_in) = answered.instrument(span).await;
        let response = match connect_protocol {
            Some(_) => connect::answer(response),
            None => response,
        };
        (response, Some((plugin, bytes_in)))
    }

    /// Runs the plugin's `handle` and turns its answer into the response.
    async fn answer(
        &self,
        plugin: Arc<LoadedPlugin>,
        request: bindings::Request,
        parts: &Parts,
        offer: Option<ClientOffer>,
        on_upgrade: hyper::upgrade::OnUpgrade,
    ) -> Response<Body> {
        // A client asking to upgrade needs a session slot; refuse before running guest code.
        // One offering a WebSocket may get a managed one instead, which needs no session slot:
        // its slot is taken once the plugin has answered, and it is refused here only if
        // neither kind has room.
        let offers_websocket = offer
            .as_ref()
            .is_some_and(|offer| offer.offers("websocket"));
        let permit = match offer {
            Some(_) if !offers_websocket => {
                match self.stats.admit_session(&plugin, self.limits.max_sessions) {
                    Ok(permit) => Some(permit),
                    Err(refused) => {
                        limited_warn!(self.warnings.refused_upgrades, "upgrade refused: {refused}");
                        return busy();
                    }
                }
            }
            _ => None,
        };
        if offers_websocket
            && self.stats.live_sessions() >= self.limits.max_sessions
            && self.stats.live_websockets() >= self.limits.max_websockets
        {
            limited_warn!(
                self.warnings.refused_upgrades,
                "upgrade refused: the host-wide limits of {} live sessions and {} managed WebSockets are reached",
                self.limits.max_sessions,
                self.limits.max_websockets
            );
            return busy();
        }
        // Held until `handle` has answered: a session does not count as a request.
        let _request_slot = match self.stats.admit_request(&plugin) {
            Ok(slot) => slot,
            Err(refused) => {
                limited_warn!(self.warnings.busy, "request refused: {refused}");
                return busy();
            }
        };
        let realtime = RealtimeCtx::new(
            self.hub.scope(plugin.name()),
            plugin.limits(),
            plugin.metrics_handle(),
        );
        let mut instance = match plugin
            .instantiate_with(&self.stats.instances, realtime)
            .await
        {
            Ok(instance) => instance,
            Err(err) if err.is::<wasmtime::PoolConcurrencyLimitError>() => {
                limited_warn!(self.warnings.busy, "no free plugin instance: {err}");
                return busy();
            }
            Err(err) => {
                tracing::error!("instantiating the plugin failed: {err:#}");
                return host_response(StatusCode::INTERNAL_SERVER_ERROR, "plugin failed");
            }
        };
        let outgoing = match call_handle(&plugin, &mut instance, &request).await {
            Ok(outgoing) => outgoing,
            Err(response) => return response,
        };
        match outgoing {
            Outgoing::Response(response) => {
                guest_response::into_http(response).unwrap_or_else(|invalid| {
                    tracing::error!("plugin returned an invalid response: {invalid}");
                    host_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "plugin returned an invalid response",
                    )
                })
            }
            Outgoing::Websocket(accept) => {
                self.accept_websocket(plugin, instance, parts, accept, on_upgrade)
            }
            Outgoing::ProtocolUpgrade(_) if !plugin.takes_raw_upgrades() => {
                self.bad_upgrade(UpgradeRefused::NotARawPlugin)
            }
            Outgoing::ProtocolUpgrade(upgrade) => {
                let permit = match (permit, &offer) {
                    (Some(permit), _) => Some(permit),
                    // A WebSocket offer answered with a raw upgrade takes its session slot now.
                    (None, Some(_)) => {
                        match self.stats.admit_session(&plugin, self.limits.max_sessions) {
                            Ok(permit) => Some(permit),
                            Err(refused) => {
                                limited_warn!(
                                    self.warnings.refused_upgrades,
                                    "upgrade refused: {refused}"
                                );
                                return busy();
                            }
                        }
                    }
                    (None, None) => None,
                };
                let allowed = plugin.limits().allowed_upgrades.as_deref();
                // `accept` succeeds only for a client that offered an upgrade, and such a
                // client was given a permit above.
                match (upgrade::accept(offer.as_ref(), allowed, upgrade), permit) {
                    (Ok(switching), Some(permit)) => {
                        let context = SessionContext {
                            plugin,
                            _permit: permit,
                            shutdown: self.sessions.shutdown.clone(),
                            access_log: self.access_log,
                        };
                        log_session_start(parts);
                        let session = session::run(instance, request, on_upgrade, context);
                        self.sessions.spawn(session.in_current_span());
                        switching
                    }
                    (Ok(_), None) => self.bad_upgrade(UpgradeRefused::NotRequested),
                    (Err(refused), _) => self.bad_upgrade(refused),
                }
            }
        }
    }
}

impl Dispatcher {
    /// Answers a plugin's `websocket`: checks the client's handshake and the plugin's answer,
    /// admits the connection, registers it (joining its topics) and starts its task, which
    /// runs `on-open` on `instance` once the `101` is out.
    fn accept_websocket(
        &self,
        plugin: Arc<LoadedPlugin>,
        instance: PluginInstance,
        parts: &Parts,
        accept: bindings::WebsocketAccept,
        on_upgrade: hyper::upgrade::OnUpgrade,
    ) -> Response<Body> {
        let client = match managed::handshake::check_client(parts) {
            Ok(client) => client,
            Err(refusal) => {
                tracing::debug!(
                    status = refusal.status().as_u16(),
                    "the plugin accepted a WebSocket, but the request is not a valid handshake"
                );
                return *refusal;
            }
        };
        let limits = plugin.limits();
        let (switching, opening) = match managed::handshake::answer(&client, accept, limits) {
            Ok(answer) => answer,
            Err(refused) => {
                tracing::error!("plugin returned an invalid websocket answer: {refused}");
                return host_response(
                    StatusCode::BAD_GATEWAY,
                    "plugin answered with a websocket the client cannot take",
                );
            }
        };
        let websocket_slot = match self.stats.admit_websocket(self.limits.max_websockets) {
            Ok(slot) => slot,
            Err(refused) => {
                limited_warn!(self.warnings.refused_upgrades, "upgrade refused: {refused}");
                return busy();
            }
        };
        let scope = self.hub.scope(plugin.name());
        let connection = Arc::new(Connection::new(
            self.hub.next_id(),
            Arc::new(Outbox::new(limits.max_outbound_bytes, limits.overflow)),
            ConnectionLimits::from(limits),
            Bytes::from(opening.attachment),
        ));
        // Without an awake slot free, the connection hibernates right after `on-open`: a
        // burst of new connections is not refused for being awake at once.
        let awake_slot = self.managed.wake.awake.try_take(&connection);
        scope.insert(connection.clone());
        for topic in &opening.topics {
            // Within the limits, checked with the answer; the connection is not closing.
            let _ = scope.subscribe(&connection, topic);
        }
        // A span of its own under the host's, not under this request's: the request's span
        // (with its path, which a client chooses) would otherwise live as long as the
        // connection. The request's fields are logged once, when the connection opens.
        let span = tracing::info_span!(
            parent: &self.host_span,
            "websocket",
            plugin = %plugin.name(),
            connection = connection.id,
        );
        tracing::debug!(
            parent: &span,
            version = %plugin.version(),
            path = %parts.uri,
            "websocket accepted"
        );
        span.in_scope(|| log_session_start(parts));
        let accepted = managed::Accepted {
            plugin,
            instance,
            awake_slot,
            websocket_slot,
            connection,
            scope,
        };
        let task = managed::run(accepted, on_upgrade, self.managed.clone());
        self.sessions.spawn(task.instrument(span));
        switching
    }
}

/// One line per session start naming how it is carried: over the HTTP/1.1 connection itself
/// or an HTTP/2 stream (RFC 8441), with or without TLS.
fn log_session_start(parts: &Parts) {
    let tls = parts
        .extensions
        .get::<Transport>()
        .is_some_and(|transport| transport.tls);
    let protocol = tokens(parts.headers.get_all(hyper::header::UPGRADE).iter())
        .next()
        .unwrap_or_default();
    tracing::info!(
        transport = Transport::session_kind(parts.version),
        tls,
        protocol,
        "session started"
    );
}

/// Calls `handle` within the plugin's deadline; a trap or an overrun becomes the response to
/// send instead.
async fn call_handle(
    plugin: &LoadedPlugin,
    instance: &mut PluginInstance,
    request: &bindings::Request,
) -> Result<Outgoing, Response<Body>> {
    let deadline = plugin.limits().handle_timeout;
    // Two guards on one deadline: the epoch callback interrupts guest code that is running past
    // it (at its next tick, however long the run queue), the timeout covers a guest that waits.
    let cpu = &mut instance.store.data_mut().cpu;
    let started = Instant::now();
    cpu.set_handle_deadline(started.checked_add(deadline));
    let answered = tokio::time::timeout(deadline, instance.handle(request)).await;
    plugin.metrics().handle.observe(started.elapsed());
    instance.store.data_mut().cpu.set_handle_deadline(None);
    match answered {
        Ok(Ok(outgoing)) => Ok(outgoing),
        Ok(Err(_interrupted)) if instance.store.data().cpu.handle_overran() => {
            Err(handle_overran(deadline))
        }
        Ok(Err(trap)) => {
            metrics::add(&plugin.metrics().traps, 1);
            let reason = if instance.store.data().memory.refused {
                " (its memory limit was reached)"
            } else {
                ""
            };
            tracing::error!("plugin trapped in handle{reason}: {trap:#}");
            Err(host_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "plugin failed",
            ))
        }
        Err(_elapsed) => Err(handle_overran(deadline)),
    }
}

/// `504`: `handle` was stopped at its deadline.
fn handle_overran(deadline: Duration) -> Response<Body> {
    tracing::error!("plugin's handle ran past its {deadline:?} deadline and was stopped");
    host_response(StatusCode::GATEWAY_TIMEOUT, "plugin took too long")
}

/// `503` with `Retry-After`: the host or plugin is at its limit, not broken.
fn busy() -> Response<Body> {
    let mut response = host_response(StatusCode::SERVICE_UNAVAILABLE, "server busy, try again");
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    response
}

impl Dispatcher {
    /// `502`: the plugin answered with an upgrade this client cannot be given. An answer HTTP
    /// does not allow is the plugin's fault (an error); the rest can be provoked by any client
    /// (a warning, rate-limited).
    fn bad_upgrade(&self, refused: UpgradeRefused) -> Response<Body> {
        if let UpgradeRefused::Invalid(invalid) = &refused {
            tracing::error!("plugin returned an invalid upgrade: {invalid}");
        } else if refused == UpgradeRefused::NotARawPlugin {
            tracing::error!("plugin returned an invalid upgrade: {refused}");
        } else {
            limited_warn!(self.warnings.refused_upgrades, "upgrade refused: {refused}");
        }
        host_response(
            StatusCode::BAD_GATEWAY,
            "plugin answered with an upgrade the client cannot take",
        )
    }
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
