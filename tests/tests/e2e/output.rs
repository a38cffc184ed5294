//! What a plugin and its clients can make the host log: a plugin's output is logged whole (even
//! without a final newline) but at a bounded rate, and warnings a client can provoke at will are
//! aggregated rather than repeated.

use std::time::{Duration, Instant};

use switchyard_host::config::{
    GUEST_LOG_BURST, GUEST_LOG_LINES_PER_SEC, HOST_WARNINGS_BURST, HOST_WARNINGS_PER_SEC,
};
use switchyard_tests::client::get;
use switchyard_tests::{TestHost, bounded};

const LOG_WAIT: Duration = Duration::from_secs(5);
/// Lines `log-flood` writes (see the misbehave plugin).
const FLOOD_LINES: u64 = 20_000;

/// Output without a final newline is logged when the instance ends, inside the request's span.
#[tokio::test]
async fn output_without_a_final_newline_is_logged() {
    bounded(async {
        let host = TestHost::start(&["misbehave"]).await;
        let reply = get(host.addr, "/misbehave/print-no-newline", &[]).await;
        assert_eq!(reply.status, 200);
        for (stream, text) in [
            ("stream=stdout", "misbehave: stdout without a newline"),
            ("stream=stderr", "misbehave: stderr without a newline"),
        ] {
            host.wait_for_log(
                &[
                    "plugin=misbehave",
                    "path=/misbehave/print-no-newline",
                    stream,
                    text,
                ],
                LOG_WAIT,
            )
            .await;
        }
    })
    .await;
}

/// What a plugin printed without a newline just before it panicked is logged too: the panic
/// flushes stdout before the instance traps.
#[tokio::test]
async fn output_just_before_a_panic_is_logged() {
    bounded(async {
        let host = TestHost::start(&["misbehave"]).await;
        let reply = get(host.addr, "/misbehave/trap-handle", &[]).await;
        assert_eq!(reply.status, 500);
        host.wait_for_log(
            &[
                "plugin=misbehave",
                "path=/misbehave/trap-handle",
                "stream=stdout",
                "misbehave: last words",
            ],
            LOG_WAIT,
        )
        .await;
    })
    .await;
}

/// A request writing 20,000 lines gets its burst and rate logged; the rest are dropped, and a
/// line says how many, so that logged plus dropped is every line written.
#[tokio::test]
async fn a_log_flood_is_cut_and_counted() {
    bounded(async {
        let host = TestHost::start(&["misbehave"]).await;
        let started = Instant::now();
        assert_eq!(
            get(host.addr, "/misbehave/log-flood", &[]).await.status,
            200
        );
        let elapsed = started.elapsed();
        host.wait_for_log(&["plugin=misbehave", "lines dropped"], LOG_WAIT)
            .await;
        let lines = host.log_lines();
        let logged = lines
            .iter()
            .filter(|line| line.contains("misbehave: flood line"))
            .count() as u64;
        let dropped: u64 = lines
            .iter()
            .filter(|line| line.contains("lines dropped"))
            .filter_map(|line| field(line, "dropped="))
            .sum();
        let allowed = u64::from(GUEST_LOG_BURST)
            + u64::from(GUEST_LOG_LINES_PER_SEC) * (elapsed.as_secs() + 1);
        println!("log flood: {logged} lines logged, {dropped} dropped in {elapsed:?}");
        assert!(logged <= allowed, "{logged} lines logged in {elapsed:?}");
        assert!(logged >= u64::from(GUEST_LOG_BURST), "{logged}");
        assert_eq!(logged + dropped, FLOOD_LINES);
    })
    .await;
}

/// 300 upgrades refused the same way give a handful of warnings (not 300), and the later ones
/// say how many like them were not logged.
#[tokio::test]
async fn repeated_refused_upgrades_are_aggregated() {
    bounded(async {
        let host = TestHost::start(&["misbehave"]).await;
        let offer = [("connection", "upgrade"), ("upgrade", "x-test")];
        let started = Instant::now();
        for _ in 0..300 {
            let reply = get(host.addr, "/misbehave/upgrade-wrong-token", &offer).await;
            assert_eq!(reply.status, 502);
        }
        // Once the rate lets one more through, the next warning says how many were left out.
        tokio::time::sleep(Duration::from_millis(
            1_000 / u64::from(HOST_WARNINGS_PER_SEC) + 50,
        ))
        .await;
        let reply = get(host.addr, "/misbehave/upgrade-wrong-token", &offer).await;
        assert_eq!(reply.status, 502);
        let warnings = host
            .log_lines()
            .into_iter()
            .filter(|line| line.contains("upgrade refused"))
            .collect::<Vec<_>>();
        let elapsed = started.elapsed();
        let allowed = u64::from(HOST_WARNINGS_BURST)
            + u64::from(HOST_WARNINGS_PER_SEC) * (elapsed.as_secs() + 1);
        println!(
            "301 refused upgrades in {elapsed:?}: {} warnings",
            warnings.len()
        );
        assert!(
            warnings.len() as u64 <= allowed,
            "{} warnings in {elapsed:?}",
            warnings.len()
        );
        let not_logged: u64 = warnings
            .iter()
            .filter_map(|line| field(line, "suppressed="))
            .sum();
        assert!(not_logged > 0, "{warnings:#?}");
        assert!(warnings.len() as u64 + not_logged <= 301, "{warnings:#?}");
    })
    .await;
}

/// The number after `name` in a log line (a structured field such as `dropped=12`).
fn field(line: &str, name: &str) -> Option<u64> {
    let rest = &line[line.find(name)? + name.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
