//! [`Cluster`]: one test's processes — a redis-server and two hosts (A and B) serving the
//! `chat` example with `--pubsub` pointing at it and a prefix of the test's own.

use std::net::SocketAddr;
use std::time::Duration;

use switchyard_tests::host_process::{HostProcess, switchyard_binary};
use switchyard_tests::redis::RedisServer;
use switchyard_tests::services::scaleout_tools_ready;

/// What a host logs when its link to the broker comes up (and after it came back).
pub(crate) const DELIVERY_UP: &str = "pubsub: cross-host delivery up";
/// What a host logs when its link to the broker goes (or cannot be made at start).
pub(crate) const DELIVERY_DOWN: &str = "pubsub: cross-host delivery down";
/// How long a host may take to report a change of the broker's state. Generous: this checks
/// behaviour; the 5-second recovery target is checked separately, from the client's side.
pub(crate) const STATE_CHANGE_WITHIN: Duration = Duration::from_secs(15);

/// Whether test `test` can run: redis-server and nginx are installed (else it is skipped,
/// loudly, or fails if run-all.sh said they were). Also builds the `switchyard` binary, which
/// can take minutes the first time: outside the time limit of the test itself.
pub(crate) fn ready(test: &str) -> bool {
    if !scaleout_tools_ready(test) {
        return false;
    }
    switchyard_binary();
    true
}

/// Redis and hosts A and B, all stopped when dropped.
pub(crate) struct Cluster {
    pub(crate) redis: RedisServer,
    pub(crate) a: HostProcess,
    pub(crate) b: HostProcess,
}

impl Cluster {
    /// Starts Redis, then hosts A and B, and waits until both report cross-host delivery up.
    pub(crate) async fn start(test: &str) -> Self {
        let redis = RedisServer::start().expect("redis-server is installed");
        let cluster = Self::with_hosts(redis, test);
        cluster
            .a
            .wait_for_log(DELIVERY_UP, STATE_CHANGE_WITHIN)
            .await;
        cluster
            .b
            .wait_for_log(DELIVERY_UP, STATE_CHANGE_WITHIN)
            .await;
        cluster
    }

    /// Starts hosts A and B pointed at a Redis that is not running yet.
    pub(crate) fn start_without_redis(test: &str) -> Self {
        let redis = RedisServer::not_started().expect("redis-server is installed");
        Self::with_hosts(redis, test)
    }

    fn with_hosts(redis: RedisServer, test: &str) -> Self {
        // A prefix per test: the deployments of tests running at once never share channels,
        // even if they shared a Redis.
        let prefix = format!("switchyard-test-{test}");
        let args = ["--pubsub-prefix", prefix.as_str()];
        let a = HostProcess::start(&["chat"], &redis.url(), &args);
        let b = HostProcess::start(&["chat"], &redis.url(), &args);
        Self { redis, a, b }
    }

    /// Both hosts' addresses, A first.
    pub(crate) fn hosts(&self) -> [SocketAddr; 2] {
        [self.a.addr(), self.b.addr()]
    }
}
