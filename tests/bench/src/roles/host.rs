//! The `host` role: Switchyard itself, in-process as its binary runs it, serving a plugins
//! folder on `127.0.0.1:0`, with limits set by their flag names (the same names as the
//! `switchyard` binary's flags, looked up in the host's one declaration of limits). It answers
//! `stats` on its stdin with its live gauges, so a section can see that sessions hibernated.
//! With `pubsub=redis://…` it shares its topics through Redis, as `--pubsub` makes the binary.

use std::collections::BTreeMap;
use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use switchyard_host::config::{TlsFiles, limits};
use switchyard_host::{HostConfig, HostStats, Limits, Runtime, Server};

use super::ServerProcess;

/// The argument that names the compiled-plugin cache folder (`cache=<dir>`); every other
/// `name=value` argument is a limit flag without its dashes.
pub(super) const CACHE_KEY: &str = "cache";
/// The argument that names the pub/sub backend (`pubsub=redis://…`), as `--pubsub` does.
pub(super) const PUBSUB_KEY: &str = "pubsub";
/// The argument that turns on the admin listener at an address (`admin=127.0.0.1:9090`), as
/// `--admin-listen` does.
pub(super) const ADMIN_KEY: &str = "admin";
/// The arguments that name the certificate and key files (`tls-cert=<pem>`, `tls-key=<pem>`),
/// as `--tls-cert` and `--tls-key` do.
pub(super) const TLS_CERT_KEY: &str = "tls-cert";
pub(super) const TLS_KEY_KEY: &str = "tls-key";
/// The question the role answers with its gauges, and the first word of its answer.
const STATS: &str = "stats";

/// What the role is told: where the plugins are, the cache folder, and limits by flag name.
pub(super) struct Settings {
    plugins_dir: PathBuf,
    cache_dir: Option<PathBuf>,
    /// `--pubsub`'s value, if given (else the default, `local`).
    pubsub: Option<String>,
    /// `--admin-listen`'s value, if given (else no admin listener).
    admin: Option<std::net::SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    limits: Vec<(String, u64)>,
}

impl Settings {
    /// Reads `<plugins dir> [cache=<dir>] [<flag>=<value>]…`.
    pub(super) fn parse(args: &[String]) -> anyhow::Result<Self> {
        let [dir, rest @ ..] = args else {
            bail!("the host role needs a plugins folder");
        };
        let mut settings = Self {
            plugins_dir: PathBuf::from(dir),
            cache_dir: None,
            pubsub: None,
            admin: None,
            tls_cert: None,
            tls_key: None,
            limits: Vec::new(),
        };
        for arg in rest {
            let (name, value) = arg
                .split_once('=')
                .with_context(|| format!("host role argument {arg:?} is not name=value"))?;
            if name == CACHE_KEY {
                settings.cache_dir = Some(PathBuf::from(value));
            } else if name == PUBSUB_KEY {
                settings.pubsub = Some(value.to_owned());
            } else if name == ADMIN_KEY {
                let addr = value
                    .parse()
                    .with_context(|| format!("--admin-listen {value:?} is not an address"))?;
                settings.admin = Some(addr);
            } else if name == TLS_CERT_KEY {
                settings.tls_cert = Some(PathBuf::from(value));
            } else if name == TLS_KEY_KEY {
                settings.tls_key = Some(PathBuf::from(value));
            } else {
                let value = value
                    .parse()
                    .with_context(|| format!("--{name} {value:?} is not a whole number"))?;
                settings.limits.push((name.to_owned(), value));
            }
        }
        Ok(settings)
    }

    /// The host's limits: the declared defaults, then every flag given, in order.
    fn limits(&self) -> anyhow::Result<Limits> {
        let mut limits = Limits::default();
        for (flag, value) in &self.limits {
            set_limit(&mut limits, flag, *value)?;
        }
        Ok(limits)
    }
}

/// Sets the limit whose flag is `--{flag}`, checked against its declared range.
fn set_limit(limits: &mut Limits, flag: &str, value: u64) -> anyhow::Result<()> {
    if let Some(limit) = limits::HOST.iter().find(|l| l.flag == Some(flag)) {
        return limit
            .try_set(limits, value, flag)
            .map_err(anyhow::Error::msg);
    }
    if let Some(limit) = limits::PLUGIN.iter().find(|l| l.flag == Some(flag)) {
        return limit
            .try_set(&mut limits.plugin, value, flag)
            .map_err(anyhow::Error::msg);
    }
    bail!(
        "the host has no limit flag --{flag} (its flags are declared in host/src/config/limits.rs)"
    )
}

/// Serves until killed.
pub(super) async fn serve(settings: Settings) -> anyhow::Result<()> {
    let mut config = HostConfig::new(&settings.plugins_dir, ([127, 0, 0, 1], 0).into());
    if let Some(pubsub) = &settings.pubsub {
        config.pubsub.backend = pubsub
            .parse()
            .map_err(|err| anyhow::anyhow!("--pubsub {pubsub:?}: {err}"))?;
    }
    config.admin_listen = settings.admin;
    if let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) {
        config.tls = Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    let limits = settings.limits()?;
    let mut runtime = Runtime::new(&limits)?;
    if let Some(dir) = &settings.cache_dir {
        runtime = runtime.with_artifact_cache(dir)?;
    }
    let runtime = Arc::new(runtime);
    let server = Server::start(config, runtime).await?;
    let stats = server.stats();
    // A plain thread: reading stdin blocks, and it ends when the parent closes the pipe.
    std::thread::spawn(move || answer_questions(&stats));
    super::announce(server.local_addr())?;
    server.run_until(std::future::pending()).await
}

/// Answers `stats` lines on stdin with one line of gauges, until stdin closes.
fn answer_questions(stats: &HostStats) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { return };
        let answer = if line.trim() == STATS {
            format!(
                "{STATS} instances={} sessions={} websockets={} awake={} connections={}",
                stats.live_instances(),
                stats.live_sessions(),
                stats.live_websockets(),
                stats.awake_websockets(),
                stats.open_connections(),
            )
        } else {
            format!("{} unknown", line.trim())
        };
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "{answer}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return;
        }
    }
}

/// A host's live gauges, by name, as its `stats` answer gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Gauges(BTreeMap<String, u64>);

impl Gauges {
    /// Asks the host role in `server`.
    pub(crate) fn of(server: &mut ServerProcess) -> anyhow::Result<Self> {
        let answer = server.ask(STATS)?;
        Self::parse(&answer).with_context(|| format!("reading the host's answer {answer:?}"))
    }

    fn parse(answer: &str) -> Option<Self> {
        let mut words = answer.split_whitespace();
        if words.next() != Some(STATS) {
            return None;
        }
        words
            .map(|pair| {
                let (name, value) = pair.split_once('=')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect::<Option<_>>()
            .map(Self)
    }

    /// The gauge `name`; zero if the host has none by that name.
    pub(crate) fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Whether every managed WebSocket has hibernated: none is awake and no plugin instance
    /// is alive.
    pub(crate) fn all_hibernated(&self) -> bool {
        self.get("awake") == 0 && self.get("instances") == 0
    }

    /// All of them as `name=value`, for a table note.
    pub(crate) fn label(&self) -> String {
        let pairs: Vec<String> = self
            .0
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        pairs.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_limits_by_flag_name() {
        let args: Vec<String> = ["/p", "cache=/c", "max-sessions=20000", "memory-mib=16"]
            .map(str::to_owned)
            .to_vec();
        let settings = Settings::parse(&args).unwrap();
        assert_eq!(settings.cache_dir, Some(PathBuf::from("/c")));
        let limits = settings.limits().unwrap();
        assert_eq!(limits.max_sessions, 20_000);
        assert_eq!(limits.plugin.max_memory_bytes, 16 << 20);
        let mut limits = Limits::default();
        assert!(set_limit(&mut limits, "no-such-flag", 1).is_err());
        assert!(set_limit(&mut limits, "max-sessions", 0).is_err());
        assert!(Settings::parse(&["/p".to_owned(), "max-sessions".to_owned()]).is_err());
    }

    #[test]
    fn gauges_are_read_from_the_answer() {
        let gauges = Gauges::parse("stats instances=0 awake=0 connections=10").unwrap();
        assert!(gauges.all_hibernated());
        assert!(
            !Gauges::parse("stats instances=0 awake=1")
                .unwrap()
                .all_hibernated()
        );
        assert_eq!(gauges.get("connections"), 10);
        assert_eq!(gauges.get("nothing"), 0);
        assert_eq!(gauges.label(), "awake=0 connections=10 instances=0");
        assert!(Gauges::parse("stats instances=x").is_none());
        assert!(Gauges::parse("other instances=1").is_none());
    }
}
