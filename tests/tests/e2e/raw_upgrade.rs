//! Non-WebSocket upgrades over raw TCP: the host is protocol-agnostic, and bytes a client sends
//! right after its request head reach the plugin.

use switchyard_tests::client::{RawConnection, get};
use switchyard_tests::{TestHost, bounded};

const KV_UPGRADE: &[u8] =
    b"GET /kv HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: kv/1\r\n\r\n";

/// The `kv` plugin switches to its own line protocol and keeps per-session state.
#[tokio::test]
async fn kv_speaks_its_line_protocol_after_the_upgrade() {
    bounded(async {
        let host = TestHost::start(&["kv"]).await;
        let mut conn = RawConnection::open(host.addr, KV_UPGRADE).await;
        let head = conn.read_head().await.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("upgrade: kv/1"), "{head}");
        assert!(head.contains("connection: upgrade"), "{head}");
        assert_eq!(conn.read_line().await, "KV/1 READY");
        conn.write("SET city Zürich\nGET city\r\nGET nothing\nKEYS\n".as_bytes())
            .await;
        assert_eq!(conn.read_line().await, "OK");
        assert_eq!(conn.read_line().await, "VALUE Zürich");
        assert_eq!(conn.read_line().await, "NIL");
        assert_eq!(conn.read_line().await, "KEYS city");
        conn.write(b"DEL city\nFROB\nQUIT\n").await;
        assert_eq!(conn.read_line().await, "DELETED 1");
        assert_eq!(conn.read_line().await, "ERR unknown command");
        assert_eq!(conn.read_line().await, "BYE");
        conn.expect_closed().await;
    })
    .await;
}

/// Without an `Upgrade: kv/1` offer the plugin answers `426` itself.
#[tokio::test]
async fn kv_without_an_upgrade_offer_is_426() {
    bounded(async {
        let host = TestHost::start(&["kv"]).await;
        let reply = get(host.addr, "/kv", &[]).await;
        assert_eq!(reply.status, 426);
        assert_eq!(reply.headers["upgrade"], "kv/1");
    })
    .await;
}

/// Bytes sent in the same write as the request head ("eagerly optimistic" clients) are the
/// first bytes the session reads.
#[tokio::test]
async fn bytes_pipelined_after_the_request_head_reach_the_session() {
    bounded(async {
        let host = TestHost::start(&["misbehave"]).await;
        let mut conn = RawConnection::open(
            host.addr,
            b"GET /misbehave/echo-raw HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: x-test\r\n\r\nearly bytes|",
        )
        .await;
        assert!(conn.read_head().await.starts_with("HTTP/1.1 101"));
        assert_eq!(conn.read_exact(12).await, b"early bytes|");
        conn.write(b"later").await;
        assert_eq!(conn.read_exact(5).await, b"later");
    })
    .await;
}

/// A client that disconnects mid-session ends the session; the host keeps serving.
#[tokio::test]
async fn client_disconnect_mid_session_ends_it() {
    bounded(async {
        let host = TestHost::start(&["kv"]).await;
        let mut conn = RawConnection::open(host.addr, KV_UPGRADE).await;
        conn.read_head().await;
        assert_eq!(conn.read_line().await, "KV/1 READY");
        drop(conn);
        host.wait_for_log(
            &["plugin=kv", "session ended"],
            std::time::Duration::from_secs(5),
        )
        .await;
        let mut again = RawConnection::open(host.addr, KV_UPGRADE).await;
        again.read_head().await;
        assert_eq!(again.read_line().await, "KV/1 READY");
    })
    .await;
}
