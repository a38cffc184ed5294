//! Routing and the path a plugin sees agree, whatever spelling the client uses: requests are
//! routed on the normalised path (dot segments removed, unreserved escapes decoded, slashes
//! merged), the plugin is given that same path, and a path that climbs above the root is `400`.

use switchyard_tests::client::get;
use switchyard_tests::{TestHost, bounded};

/// `misbehave` at `/` (it answers `404 unknown misbehave case` to paths it does not know) and
/// `hello` at `/hello` (it answers with the path it saw).
async fn host_with_a_root_plugin() -> TestHost {
    TestHost::start_configured(
        &["hello", "misbehave"],
        &[("misbehave", "route = \"/\"\n")],
        None,
    )
    .await
}

/// Dot segments are resolved before routing: the request reaches the plugin its normalised
/// path names, and that plugin sees the normalised path.
#[tokio::test]
async fn dot_segments_are_resolved_before_routing() {
    bounded(async {
        let host = host_with_a_root_plugin().await;
        let reply = get(host.addr, "/xyz/../hello?q=1", &[]).await;
        assert_eq!(reply.status, 200);
        assert!(
            reply.text().contains("path: /hello?q=1\n"),
            "{}",
            reply.text()
        );
        let reply = get(host.addr, "/hello/../misbehave/ok", &[]).await;
        assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "ok"));
        let reply = get(host.addr, "/hello/./a/../b", &[]).await;
        assert!(
            reply.text().contains("path: /hello/b\n"),
            "{}",
            reply.text()
        );
    })
    .await;
}

/// Percent-encoded unreserved characters are decoded (`/hel%6co` is `/hello`), empty segments
/// merged; other escapes are kept, so `%2F` never becomes a separator.
#[tokio::test]
async fn equivalent_spellings_reach_the_same_plugin() {
    bounded(async {
        let host = host_with_a_root_plugin().await;
        for spelling in ["/hel%6co", "/hel%6Co/", "//hello", "/%68ello//x"] {
            let reply = get(host.addr, spelling, &[]).await;
            assert_eq!(reply.status, 200, "{spelling}");
            assert!(
                reply.text().contains("path: /hello"),
                "{spelling}: {}",
                reply.text()
            );
        }
        let reply = get(host.addr, "/hello%2Fx", &[]).await;
        assert_eq!(reply.status, 404, "an encoded slash is part of the segment");
    })
    .await;
}

/// A path that climbs above the root, in any spelling, or a malformed escape, is `400` and
/// reaches no plugin.
#[tokio::test]
async fn climbing_above_the_root_is_a_bad_request() {
    bounded(async {
        let host = host_with_a_root_plugin().await;
        for path in [
            "/..",
            "/../hello",
            "/hello/../../x",
            "/%2e%2e/hello",
            "/%2E./x",
            "/a%zz",
        ] {
            let reply = get(host.addr, path, &[]).await;
            assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        }
    })
    .await;
}
