//! The plain-HTTP path: request in (method, path and query, headers, body), response out.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use switchyard_tests::client::{get, send};
use switchyard_tests::{TestHost, bounded};

/// `hello` sees the method, the path with its query and a header, and its status, headers and
/// body reach the client unchanged.
#[tokio::test]
async fn hello_answers_with_what_it_was_sent() {
    bounded(async {
        let host = TestHost::start(&["hello"]).await;
        let reply = get(
            host.addr,
            "/hello/world?x=1",
            &[("user-agent", "switchyard-test/1")],
        )
        .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["x-plugin"], "hello");
        let text = reply.text();
        assert!(text.contains("method: GET"), "{text}");
        assert!(text.contains("path: /hello/world?x=1"), "{text}");
        assert!(text.contains("user-agent: switchyard-test/1"), "{text}");
    })
    .await;
}

/// A request body reaches the plugin whole.
#[tokio::test]
async fn request_body_reaches_the_plugin() {
    bounded(async {
        let host = TestHost::start(&["hello"]).await;
        let body = Bytes::from(vec![b'z'; 100_000]);
        let request = Request::post("/hello")
            .header("host", host.addr.to_string())
            .body(Full::new(body))
            .unwrap();
        let reply = send(host.addr, request).await;
        assert_eq!(reply.status, 200);
        assert!(reply.text().contains("method: POST"), "{}", reply.text());
        assert!(
            reply.text().contains("body: 100000 bytes"),
            "{}",
            reply.text()
        );
    })
    .await;
}

/// A path no plugin serves is `404`, including one that only shares a name prefix.
#[tokio::test]
async fn unknown_routes_are_not_found() {
    bounded(async {
        let host = TestHost::start(&["hello"]).await;
        assert_eq!(get(host.addr, "/nope", &[]).await.status, 404);
        assert_eq!(get(host.addr, "/hellothere", &[]).await.status, 404);
        assert_eq!(get(host.addr, "/hello/", &[]).await.status, 200);
    })
    .await;
}

/// A sidecar `<name>.toml` moves the plugin to another route.
#[tokio::test]
async fn sidecar_overrides_the_route() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            switchyard_tests::built_plugin("hello"),
            dir.path().join("hello.wasm"),
        )
        .unwrap();
        std::fs::write(dir.path().join("hello.toml"), "route = \"/api/greet\"\n").unwrap();
        let host = TestHost::start_in(dir).await;
        assert_eq!(get(host.addr, "/api/greet/x", &[]).await.status, 200);
        assert_eq!(get(host.addr, "/hello", &[]).await.status, 404);
    })
    .await;
}

/// Guest stdout and stderr land in the host log, tagged with the plugin's name.
#[tokio::test]
async fn guest_output_is_logged_under_the_plugin_name() {
    bounded(async {
        let host = TestHost::start(&["misbehave"]).await;
        assert_eq!(get(host.addr, "/misbehave/print", &[]).await.status, 200);
        let timeout = std::time::Duration::from_secs(5);
        host.wait_for_log(&["plugin=misbehave", "stream=stdout"], timeout)
            .await;
        host.wait_for_log(&["plugin=misbehave", "stream=stderr"], timeout)
            .await;
    })
    .await;
}
