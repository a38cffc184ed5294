//! Plugins that break the contract: every fault gets the right status and a log line naming the
//! plugin, its version and the path, and the host keeps serving.

use std::time::Duration;

use switchyard_tests::client::{RawConnection, get, misbehave_upgrade};
use switchyard_tests::{TestHost, bounded};

const LOG_WAIT: Duration = Duration::from_secs(5);

/// A panic in `handle` is a `500`, logged with plugin, version and path; the next request works.
#[tokio::test]
async fn trap_in_handle_is_a_500_and_the_host_keeps_serving() {
    bounded(async {
        let host = TestHost::start(&["misbehave", "hello"]).await;
        assert_eq!(
            get(host.addr, "/misbehave/trap-handle", &[]).await.status,
            500
        );
        let line = host
            .wait_for_log(
                &[
                    "plugin=misbehave",
                    "path=/misbehave/trap-handle",
                    "trapped in handle",
                ],
                LOG_WAIT,
            )
            .await;
        assert!(line.contains("version="), "{line}");
        assert_eq!(get(host.addr, "/misbehave/ok", &[]).await.status, 200);
        assert_eq!(get(host.addr, "/hello", &[]).await.status, 200);
    })
    .await;
}

/// Invalid header names, header values and statuses from a guest become `500`s.
#[tokio::test]
async fn invalid_guest_responses_are_500s() {
    bounded(async {
        let host = TestHost::start(&["misbehave"]).await;
        for case in ["bad-header-name", "bad-header-value", "bad-status"] {
            let path = format!("/misbehave/{case}");
            assert_eq!(get(host.addr, &path, &[]).await.status, 500, "{case}");
            host.wait_for_log(
                &[
                    "plugin=misbehave",
                    &format!("path={path}"),
                    "invalid response",
                ],
                LOG_WAIT,
            )
            .await;
        }
    })
    .await;
}

/// A plugin that answers an upgrade to a client that did not ask for one gets a `502`, never
/// a `101`.
#[tokio::test]
async fn upgrade_to_a_client_that_did_not_ask_is_a_502() {
    bounded(async {
        let host = TestHost::start(&["misbehave"]).await;
        let reply = get(host.addr, "/misbehave/upgrade-on-plain", &[]).await;
        assert_eq!(reply.status, 502);
        host.wait_for_log(
            &["plugin=misbehave", "upgrade refused", "did not ask"],
            LOG_WAIT,
        )
        .await;
    })
    .await;
}

/// An upgrade to a protocol the client did not offer, or with a status other than 101, is a
/// `502`.
#[tokio::test]
async fn upgrade_to_an_unoffered_protocol_or_status_is_a_502() {
    bounded(async {
        let host = TestHost::start(&["misbehave"]).await;
        let offer = [("connection", "upgrade"), ("upgrade", "x-test")];
        let reply = get(host.addr, "/misbehave/upgrade-wrong-token", &offer).await;
        assert_eq!(reply.status, 502);
        host.wait_for_log(&["not-offered", "did not offer"], LOG_WAIT)
            .await;
        let reply = get(host.addr, "/misbehave/upgrade-status-200", &offer).await;
        assert_eq!(reply.status, 502);
        host.wait_for_log(&["upgrade status is 200"], LOG_WAIT)
            .await;
    })
    .await;
}

/// A panic inside an upgraded session closes that connection only.
#[tokio::test]
async fn trap_in_upgrade_closes_only_that_connection() {
    bounded(async {
        let host = TestHost::start(&["misbehave", "hello"]).await;
        let mut conn = RawConnection::open(
            host.addr,
            b"GET /misbehave/upgrade-then-trap HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: x-test\r\n\r\n",
        )
        .await;
        assert!(conn.read_head().await.starts_with("HTTP/1.1 101"));
        conn.write(b"boom").await;
        conn.expect_closed().await;
        host.wait_for_log(&["plugin=misbehave", "trapped in upgrade"], LOG_WAIT).await;
        assert_eq!(get(host.addr, "/hello", &[]).await.status, 200);
    })
    .await;
}

/// A corrupt `.wasm` at start-up is logged with its file name and skipped; the others serve.
#[tokio::test]
async fn corrupt_plugin_at_startup_is_skipped_with_a_reason() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("broken.wasm"), b"definitely not wasm").unwrap();
        std::fs::copy(
            switchyard_tests::built_plugin("hello"),
            dir.path().join("hello.wasm"),
        )
        .unwrap();
        let host = TestHost::start_in(dir).await;
        let line = host
            .wait_for_log(
                &["broken.wasm", "not a valid WebAssembly component"],
                LOG_WAIT,
            )
            .await;
        assert!(line.contains("ERROR"), "{line}");
        assert_eq!(get(host.addr, "/broken", &[]).await.status, 404);
        assert_eq!(get(host.addr, "/hello", &[]).await.status, 200);
    })
    .await;
}

/// A file that is not WebAssembly, or is damaged WebAssembly, is refused in one log line (one
/// event, no line breaks) that quotes none of the file's bytes.
#[tokio::test]
async fn load_errors_are_one_line_without_file_bytes() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("notes.wasm"),
            b"root:x:0:0:root:/root:/bin/bash\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("damaged.wasm"),
            b"\0asm\x0d\0\x01\0\xff\xff\xff",
        )
        .unwrap();
        let host = TestHost::start_in(dir).await;
        for plugin in ["notes", "damaged"] {
            let line = host
                .wait_for_log(
                    &[&format!("plugin={plugin}"), "plugin not loaded"],
                    LOG_WAIT,
                )
                .await;
            assert!(!line.contains('\n'), "one line: {line}");
            assert!(!line.contains("0x72") && !line.contains("root:x"), "{line}");
        }
    })
    .await;
}

/// A plugin file or sidecar that is a symlink leading out of the plugins folder is refused
/// with a log line saying so, whatever it points to; nothing of the target reaches the log. A
/// symlink that stays inside the folder is followed.
#[tokio::test]
async fn symlinks_out_of_the_plugins_folder_are_refused() {
    bounded(async {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("passwd");
        std::fs::write(&secret, b"root:x:0:0:root:/root:/bin/bash\n").unwrap();
        let good_outside = outside.path().join("hello.wasm");
        std::fs::copy(switchyard_tests::built_plugin("hello"), &good_outside).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let link = |target: &std::path::Path, name: &str| {
            std::os::unix::fs::symlink(target, dir.path().join(name)).unwrap();
        };
        std::fs::copy(
            switchyard_tests::built_plugin("hello"),
            dir.path().join("hello.wasm"),
        )
        .unwrap();
        link(&secret, "x.wasm");
        link(&good_outside, "y.wasm");
        link(std::path::Path::new("hello.wasm"), "alias.wasm");
        std::fs::copy(
            switchyard_tests::built_plugin("hello"),
            dir.path().join("z.wasm"),
        )
        .unwrap();
        link(&secret, "z.toml");
        let host = TestHost::start_in(dir).await;
        for plugin in ["x", "y", "z"] {
            let line = host
                .wait_for_log(
                    &[
                        &format!("plugin={plugin}"),
                        "plugin not loaded",
                        "out of the plugins folder",
                    ],
                    LOG_WAIT,
                )
                .await;
            assert!(!line.contains("0x72") && !line.contains("root:x"), "{line}");
            assert_eq!(get(host.addr, &format!("/{plugin}"), &[]).await.status, 404);
        }
        assert_eq!(get(host.addr, "/alias", &[]).await.status, 200);
        assert_eq!(get(host.addr, "/hello", &[]).await.status, 200);
    })
    .await;
}

/// Plugin names and sidecar routes a client could not send unencoded, or holding dot
/// segments, are refused at load with the reason; the previous version keeps serving.
#[tokio::test]
async fn unreachable_plugin_names_and_routes_are_refused_at_load() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        for name in ["hello", "a b", "ü"] {
            std::fs::copy(
                switchyard_tests::built_plugin("hello"),
                dir.path().join(format!("{name}.wasm")),
            )
            .unwrap();
        }
        let host = TestHost::start_in(dir).await;
        for name in ["a b", "ü"] {
            host.wait_for_log(
                &[&format!("{name}.wasm"), "plugin not loaded", "not allowed"],
                LOG_WAIT,
            )
            .await;
        }
        assert_eq!(get(host.addr, "/a%20b", &[]).await.status, 404);
        for route in ["/a/../hello", "/..", "/%2e%2e", "/api/", "/a//b"] {
            let sidecar = host.plugins_dir().join("hello.toml");
            std::fs::write(&sidecar, format!("route = {route:?}")).unwrap();
            let line = host
                .wait_for_log(
                    &["plugin=hello", "plugin not loaded", &format!("{route:?}")],
                    LOG_WAIT,
                )
                .await;
            assert!(!line.contains("kept_version=none"), "{line}");
            assert_eq!(get(host.addr, "/hello", &[]).await.status, 200);
        }
    })
    .await;
}

/// Answers over the host's caps (40,000 header fields, a 100 KiB header value, a 40 MiB body)
/// and answers with hop-by-hop fields are `500`s with an error line naming plugin, version and
/// path, never a panic: the host keeps serving on the same connection pool.
#[tokio::test]
async fn oversized_and_hop_by_hop_answers_are_500s() {
    bounded(async {
        let host = TestHost::start(&["misbehave", "hello"]).await;
        for (case, reason) in [
            (
                "many-headers",
                "40001 header fields, more than the 256 allowed",
            ),
            (
                "huge-header-value",
                "header fields of more than 65536 bytes",
            ),
            (
                "huge-body",
                "41943040-byte body, more than the 16777216 bytes allowed",
            ),
            ("hop-by-hop", "header \"connection\" manages the connection"),
        ] {
            let path = format!("/misbehave/{case}");
            let reply = get(host.addr, &path, &[]).await;
            assert_eq!(reply.status, 500, "{case}");
            assert!(reply.headers.get("upgrade").is_none(), "{case}");
            let line = host
                .wait_for_log(
                    &[
                        "ERROR",
                        "plugin=misbehave",
                        &format!("path={path}"),
                        "invalid response",
                        reason,
                    ],
                    LOG_WAIT,
                )
                .await;
            assert!(line.contains("version="), "{line}");
            assert_eq!(get(host.addr, "/hello", &[]).await.status, 200, "{case}");
        }
    })
    .await;
}

/// An upgrade answer with 40,000 header fields, or with fields that manage the connection, is
/// a `502` with an error line naming the plugin; no `101` goes out.
#[tokio::test]
async fn oversized_and_hop_by_hop_upgrades_are_502s() {
    bounded(async {
        let host = TestHost::start(&["misbehave", "hello"]).await;
        for (case, reason) in [
            (
                "upgrade-many-headers",
                "40001 header fields, more than the 256 allowed",
            ),
            (
                "upgrade-hop-by-hop",
                "header \"connection\" manages the connection",
            ),
        ] {
            let mut conn = RawConnection::open(host.addr, &misbehave_upgrade(case)).await;
            let head = conn.read_head().await;
            assert!(head.starts_with("HTTP/1.1 502"), "{case}: {head}");
            let path = format!("path=/misbehave/{case}");
            host.wait_for_log(
                &[
                    "ERROR",
                    "plugin=misbehave",
                    &path,
                    "invalid upgrade",
                    reason,
                ],
                LOG_WAIT,
            )
            .await;
            assert_eq!(get(host.addr, "/hello", &[]).await.status, 200, "{case}");
        }
    })
    .await;
}
