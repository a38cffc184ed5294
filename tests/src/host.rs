//! [`TestHost`]: the real Switchyard server on `127.0.0.1:0`, serving a private plugins folder,
//! inside a log span of its own.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use switchyard_host::config::TlsFiles;
use switchyard_host::config::pubsub::PubSubConfig;
use switchyard_host::topics::redis::PubSubStats;
use switchyard_host::{HostConfig, HostStats, Limits, Runtime, Server};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::metrics::Samples;
use crate::{built_plugin, logs};

/// Debounce used by test hosts: short, so reload tests are quick, but long enough to merge the
/// events of one file copy.
const TEST_RELOAD_DEBOUNCE: Duration = Duration::from_millis(50);
/// How long [`TestHost::websocket_connection`] waits for the accepted line.
const LOG_WAIT: Duration = Duration::from_secs(10);
/// How often [`TestHost::wait_for_log`] looks again.
const LOG_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// One engine for the whole test process: engines are expensive, and each reserves a pool.
fn shared_runtime() -> Arc<Runtime> {
    static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| Arc::new(runtime(&Limits::default())))
        .clone()
}

/// Compiles `plugins` (built plugin names) into the shared runtime's artifact cache, so test
/// hosts that serve them load them from there. A Python plugin takes seconds to compile, and
/// tests starting at once would otherwise each compile it, all together, on a busy machine.
pub(crate) fn precompile(plugins: &[&str]) {
    let runtime = shared_runtime();
    for name in plugins {
        switchyard_host::plugin::LoadedPlugin::load(&runtime, &built_plugin(name))
            .unwrap_or_else(|err| panic!("compiling {name}: {err}"));
    }
}

/// A runtime for `limits` that keeps compiled plugins in [`artifact_cache_dir`]: a Python
/// plugin (~18 MB, its interpreter included) takes tens of seconds to compile on a busy
/// machine, and every test host would otherwise compile it again.
fn runtime(limits: &Limits) -> Runtime {
    Runtime::new(limits)
        .expect("creating a runtime")
        .with_artifact_cache(&artifact_cache_dir())
        .expect("opening the test hosts' artifact cache")
}

/// `target/test-plugins/compiled`, beside the built plugins; it outlives a test run, so an
/// unchanged plugin is compiled once per engine configuration.
fn artifact_cache_dir() -> PathBuf {
    let built = PathBuf::from(env!("SWITCHYARD_TEST_PLUGINS"));
    // `<target>/test-plugins/wasm32-wasip2/plugin` → `<target>/test-plugins/compiled`.
    built
        .ancestors()
        .nth(2)
        .map_or_else(|| built.join("compiled"), |root| root.join("compiled"))
}

/// In a plugin list, `"<built> as <name>"` installs built plugin `<built>` as `<name>.wasm`
/// (e.g. `"chat-py as chat"`, so the Python chat serves the Rust chat's route).
pub const INSTALLED_AS: &str = " as ";

/// A running host with its own plugins folder, stopped when dropped.
pub struct TestHost {
    /// Where the host accepts connections.
    pub addr: std::net::SocketAddr,
    /// Where its admin listener (`/metrics`, `/healthz`, `/readyz`) accepts: every test host
    /// has one, as an operator's would.
    pub admin: std::net::SocketAddr,
    /// Marker found in every log line this host writes.
    log_marker: String,
    /// Owns the folder; removed when the host is dropped.
    _dir: tempfile::TempDir,
    /// The plugins folder: `_dir` itself, or a subfolder of it when a test deletes and
    /// recreates the folder (its parent must stay for the host to see it come back).
    plugins: PathBuf,
    stats: Arc<HostStats>,
    pubsub: Arc<PubSubStats>,
    stop: Option<oneshot::Sender<()>>,
    /// The serving task; it ends once a stopped host has drained.
    serving: Option<JoinHandle<()>>,
}

impl TestHost {
    /// Starts a host serving the named built plugins (each as `<name>.wasm`, or as
    /// [`INSTALLED_AS`] says).
    pub async fn start(plugins: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("creating a plugins folder");
        copy_built_plugins(dir.path(), plugins);
        Self::start_in(dir).await
    }

    /// Starts a host serving whatever `dir` already holds.
    pub async fn start_in(dir: tempfile::TempDir) -> Self {
        Self::start_with(dir, None).await
    }

    /// Starts a host with the named built plugins in a `plugins` subfolder of a private folder,
    /// so the test can delete and recreate the plugins folder itself.
    pub async fn start_nested(plugins: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("creating a private folder");
        let folder = dir.path().join("plugins");
        std::fs::create_dir(&folder).expect("creating the plugins folder");
        copy_built_plugins(&folder, plugins);
        Self::start_serving(dir, folder, None).await
    }

    /// Starts a host with the named built plugins, `(name, toml)` sidecars beside them, and
    /// host-wide `limits` (which need an engine of their own; `None` shares the default one).
    pub async fn start_configured(
        plugins: &[&str],
        sidecars: &[(&str, &str)],
        limits: Option<Limits>,
    ) -> Self {
        let dir = plugins_folder(plugins, sidecars);
        Self::start_with(dir, limits).await
    }

    /// Starts a host serving the named built plugins whose topics live in `pubsub` (e.g.
    /// shared with other hosts through Redis: [`PubSubConfig::redis`]).
    pub async fn start_with_pubsub(plugins: &[&str], pubsub: PubSubConfig) -> Self {
        Self::start_with_pubsub_and_limits(plugins, pubsub, None).await
    }

    /// [`TestHost::start_with_pubsub`] with `(name, toml)` sidecars beside the plugins.
    pub async fn start_with_pubsub_and_sidecars(
        plugins: &[&str],
        sidecars: &[(&str, &str)],
        pubsub: PubSubConfig,
    ) -> Self {
        let dir = plugins_folder(plugins, sidecars);
        let folder = dir.path().to_owned();
        Self::start_serving_with(dir, folder, None, pubsub, false).await
    }

    /// [`TestHost::start_with_pubsub`] with host-wide `limits` (an engine of their own).
    pub async fn start_with_pubsub_and_limits(
        plugins: &[&str],
        pubsub: PubSubConfig,
        limits: Option<Limits>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("creating a plugins folder");
        copy_built_plugins(dir.path(), plugins);
        let folder = dir.path().to_owned();
        Self::start_serving_with(dir, folder, limits, pubsub, false).await
    }

    /// Starts a host serving the named built plugins with the access log on (`--access-log`).
    pub async fn start_with_access_log(plugins: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("creating a plugins folder");
        copy_built_plugins(dir.path(), plugins);
        let folder = dir.path().to_owned();
        Self::start_serving_with(dir, folder, None, PubSubConfig::default(), true).await
    }

    /// Starts a host serving HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with the certificate and key
    /// `tls` names, the named built plugins and `(name, toml)` sidecars beside them.
    pub async fn start_tls(plugins: &[&str], sidecars: &[(&str, &str)], tls: TlsFiles) -> Self {
        Self::start_tls_with_limits(plugins, sidecars, tls, None).await
    }

    /// [`TestHost::start_tls`] with the access log on (`--access-log`) and no sidecars.
    pub async fn start_tls_with_access_log(plugins: &[&str], tls: TlsFiles) -> Self {
        let dir = tempfile::tempdir().expect("creating a plugins folder");
        copy_built_plugins(dir.path(), plugins);
        let folder = dir.path().to_owned();
        Self::start_with_settings(dir, folder, None, PubSubConfig::default(), true, Some(tls)).await
    }

    /// [`TestHost::start_tls`] with host-wide `limits` (an engine of their own).
    pub async fn start_tls_with_limits(
        plugins: &[&str],
        sidecars: &[(&str, &str)],
        tls: TlsFiles,
        limits: Option<Limits>,
    ) -> Self {
        let dir = plugins_folder(plugins, sidecars);
        let folder = dir.path().to_owned();
        Self::start_with_settings(
            dir,
            folder,
            limits,
            PubSubConfig::default(),
            false,
            Some(tls),
        )
        .await
    }

    async fn start_with(dir: tempfile::TempDir, limits: Option<Limits>) -> Self {
        let plugins = dir.path().to_owned();
        Self::start_serving(dir, plugins, limits).await
    }

    async fn start_serving(
        dir: tempfile::TempDir,
        plugins: PathBuf,
        limits: Option<Limits>,
    ) -> Self {
        Self::start_serving_with(dir, plugins, limits, PubSubConfig::default(), false).await
    }

    async fn start_serving_with(
        dir: tempfile::TempDir,
        plugins: PathBuf,
        limits: Option<Limits>,
        pubsub: PubSubConfig,
        access_log: bool,
    ) -> Self {
        Self::start_with_settings(dir, plugins, limits, pubsub, access_log, None).await
    }

    /// Starts a host on `plugins` with every setting the other constructors choose from.
    async fn start_with_settings(
        dir: tempfile::TempDir,
        plugins: PathBuf,
        limits: Option<Limits>,
        pubsub: PubSubConfig,
        access_log: bool,
        tls: Option<TlsFiles>,
    ) -> Self {
        logs::install();
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("test_host", id);
        let mut config =
            HostConfig::new(plugins.clone(), "127.0.0.1:0".parse().expect("an address"));
        config.reload_debounce = TEST_RELOAD_DEBOUNCE;
        config.pubsub = pubsub;
        config.admin_listen = Some("127.0.0.1:0".parse().expect("an address"));
        config.access_log = access_log;
        config.tls = tls;
        let runtime = match limits {
            Some(limits) => Arc::new(runtime(&limits)),
            None => shared_runtime(),
        };
        let server = Server::start(config, runtime)
            .instrument(span.clone())
            .await
            .expect("starting the host");
        let addr = server.local_addr();
        let admin = server.admin_addr().expect("the admin listener is bound");
        let stats = server.stats();
        let pubsub = server.pubsub_stats();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(
            async move {
                let shutdown = async {
                    let _ = stopped.await;
                };
                server.run_until(shutdown).await.expect("serving");
            }
            .instrument(span),
        );
        Self {
            addr,
            admin,
            log_marker: format!("test_host{{id={id}}}"),
            _dir: dir,
            plugins,
            stats,
            pubsub,
            stop: Some(stop),
            serving: Some(serving),
        }
    }

    /// Live instance and session counts.
    pub fn stats(&self) -> &HostStats {
        &self.stats
    }

    /// Counters of cross-host delivery through Redis (all zero for a `local` host).
    pub fn pubsub_stats(&self) -> &PubSubStats {
        &self.pubsub
    }

    /// Waits until no plugin instance, session or managed WebSocket is alive any more, failing
    /// after `within`: every slot an attack took must come back.
    pub async fn wait_until_idle(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.stats.live_instances() > 0
            || self.stats.live_sessions() > 0
            || self.stats.live_websockets() > 0
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "still live after {within:?}: {} instances, {} sessions, {} managed WebSockets",
                self.stats.live_instances(),
                self.stats.live_sessions(),
                self.stats.live_websockets()
            );
            tokio::time::sleep(LOG_POLL_INTERVAL).await;
        }
    }

    /// Starts the shutdown SIGTERM would start, without waiting for the drain.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts the host down as SIGTERM would and waits until it has drained.
    pub async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving.await.expect("the serving task panicked");
        }
    }

    /// The plugins folder this host watches.
    pub fn plugins_dir(&self) -> &Path {
        &self.plugins
    }

    /// Installs built plugin `built` as `<as_name>.wasm` the way users are told to: write to a
    /// temporary name, then rename into place, so the host never sees a half-written file.
    pub fn install_plugin(&self, built: &str, as_name: &str) -> PathBuf {
        let target = self.plugins.join(format!("{as_name}.wasm"));
        let staging = self.plugins.join(format!(".{as_name}.wasm.partial"));
        std::fs::copy(built_plugin(built), &staging).expect("copying a built plugin");
        std::fs::rename(&staging, &target).expect("renaming the plugin into place");
        target
    }

    /// Every log line this host has written so far.
    pub fn log_lines(&self) -> Vec<String> {
        logs::lines_containing(&self.log_marker)
    }

    /// The span field, `connection=<n>}`, that names a managed WebSocket's lines in this host's
    /// log: the first connection accepted after the host's first `since` lines whose request
    /// path (and query) ends with `path_end`. A connection's lines carry its number, not its
    /// path; the path is logged once, when the WebSocket is accepted. Panics if none is
    /// accepted within [`LOG_WAIT`].
    pub async fn websocket_connection(&self, path_end: &str, since: usize) -> String {
        let deadline = tokio::time::Instant::now() + LOG_WAIT;
        let accepted = loop {
            let found = self.log_lines().into_iter().skip(since).find(|line| {
                line.contains("websocket accepted") && line.trim_end().ends_with(path_end)
            });
            if let Some(line) = found {
                break line;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no WebSocket to a path ending {path_end:?} was accepted within {LOG_WAIT:?}"
            );
            tokio::time::sleep(LOG_POLL_INTERVAL).await;
        };
        let number: String = accepted
            .split("connection=")
            .nth(1)
            .unwrap_or_default()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert!(
            !number.is_empty(),
            "the accepted line names no connection: {accepted}"
        );
        format!("connection={number}}}")
    }

    /// Waits until this host logs a line containing every one of `needles`, and returns it.
    /// Panics with the host's log if none appears within `within`.
    pub async fn wait_for_log(&self, needles: &[&str], within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(line) = self
                .log_lines()
                .into_iter()
                .find(|line| needles.iter().all(|needle| line.contains(needle)))
            {
                return line;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line containing {needles:?} within {within:?}; the host logged:\n{}",
                self.log_lines().join("\n")
            );
            tokio::time::sleep(LOG_POLL_INTERVAL).await;
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The samples `/metrics` on the admin listener gives now.
    pub async fn metrics(&self) -> Samples {
        let reply = crate::client::get(self.admin, "/metrics", &[]).await;
        assert_eq!(reply.status, 200, "/metrics answered {}", reply.status);
        Samples::parse(&reply.text())
    }

    /// `ws://<addr><path>`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

/// Copies the named built plugins into `folder`, each as `<name>.wasm`.
pub(crate) fn copy_built_plugins(folder: &Path, plugins: &[&str]) {
    for plugin in plugins {
        let (built, name) = plugin.split_once(INSTALLED_AS).unwrap_or((plugin, plugin));
        std::fs::copy(built_plugin(built), folder.join(format!("{name}.wasm")))
            .expect("copying a built plugin");
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if std::thread::panicking() {
            eprintln!(
                "--- log of the failed test's host ---\n{}",
                self.log_lines().join("\n")
            );
        }
    }
}

/// A new plugins folder holding the named built plugins and `(name, toml)` sidecars beside them.
fn plugins_folder(plugins: &[&str], sidecars: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("creating a plugins folder");
    copy_built_plugins(dir.path(), plugins);
    for (name, toml) in sidecars {
        std::fs::write(dir.path().join(format!("{name}.toml")), toml).expect("writing a sidecar");
    }
    dir
}
