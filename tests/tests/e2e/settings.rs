//! Limits that would make a plugin useless are refused when it loads, with a log line naming
//! the key, and the version that was serving keeps serving.

use std::time::Duration;

use switchyard_tests::client::get;
use switchyard_tests::{TestHost, bounded};

const LOG_WAIT: Duration = Duration::from_secs(5);

/// A memory limit smaller than the plugin's initial memory would make every request fail: the
/// plugin is refused at load with that reason instead of being reported as serving.
#[tokio::test]
async fn a_plugin_that_cannot_start_within_its_memory_limit_is_refused() {
    bounded(async {
        let host = TestHost::start_configured(
            &["hello"],
            &[("hello", "[limits]\nmemory_mib = 1\n")],
            None,
        )
        .await;
        host.wait_for_log(
            &[
                "plugin=hello",
                "plugin not loaded",
                "cannot start within its limits (memory_mib = 1)",
            ],
            LOG_WAIT,
        )
        .await;
        assert_eq!(get(host.addr, "/hello", &[]).await.status, 404);
        assert!(
            !host
                .log_lines()
                .iter()
                .any(|line| line.contains("serving plugin")),
            "a plugin that cannot start must not be reported as serving"
        );
    })
    .await;
}

/// Each out-of-range or malformed `[limits]` value is refused with its key named, and the
/// version loaded before keeps answering.
#[tokio::test]
async fn useless_sidecar_limits_are_refused_and_the_previous_version_serves_on() {
    bounded(async {
        let host = TestHost::start(&["hello"]).await;
        assert_eq!(get(host.addr, "/hello", &[]).await.status, 200);
        let sidecar = host.plugins_dir().join("hello.toml");
        for (toml, expected) in [
            (
                "[limits]\nidle_timeout_ms = 0\n",
                "idle_timeout_ms = 0 is out of range",
            ),
            (
                "[limits]\nrun_cpu_ms = 0\n",
                "run_cpu_ms = 0 is out of range",
            ),
            (
                "[limits]\nhandle_timeout_ms = 18446744073709551615\n",
                "u64 value was too large",
            ),
            (
                "[limits]\nallowed_upgrades = [\"a b\", \"\"]\n",
                "\"a b\" is not a protocol name",
            ),
        ] {
            std::fs::write(&sidecar, toml).unwrap();
            host.wait_for_log(&["plugin=hello", "plugin not loaded", expected], LOG_WAIT)
                .await;
            let reply = get(host.addr, "/hello", &[]).await;
            assert_eq!(reply.status, 200, "after {toml:?}");
        }
    })
    .await;
}
