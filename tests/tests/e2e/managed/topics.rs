//! Topics and addressing: a publish reaches every subscriber of the topic once, in the
//! publisher's order, from any export (also a plain HTTP `handle`); topics and connections
//! belong to the plugin that made them.

use bytes::Bytes;
use futures_util::SinkExt as _;
use http_body_util::Full;
use hyper::Request;
use tokio_tungstenite::tungstenite::Message;

use switchyard_tests::client::send;
use switchyard_tests::{TestHost, bounded};

use super::{Client, ask, open, text};

/// `POST <path>` with `body`; the status and body.
async fn post(host: &TestHost, path: &str, body: &str) -> (u16, String) {
    let request = Request::post(path)
        .header("host", host.addr.to_string())
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let reply = send(host.addr, request).await;
    (reply.status.as_u16(), reply.text().trim().to_owned())
}

/// Opens `count` connections to `path` subscribed to `topic`.
async fn subscribers(host: &TestHost, path: &str, topic: &str, count: usize) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..count {
        let (client, _) = open(host, &format!("{path}?topic={topic}")).await;
        clients.push(client);
    }
    clients
}

/// One publish reaches every subscriber of the topic, the publisher too while subscribed, and
/// nobody else.
#[tokio::test]
async fn a_publish_reaches_every_subscriber() {
    bounded(async {
        let host = TestHost::start(&["managed"]).await;
        let mut members = subscribers(&host, "/managed", "room", 5).await;
        let (mut outsider, _) = open(&host, "/managed?topic=other").await;
        let (mut publisher, _) = open(&host, "/managed").await;
        assert_eq!(ask(&mut publisher, "sub:room").await, "subscribed:room");
        assert_eq!(ask(&mut publisher, "pub:room:hello all").await, "hello all");
        for member in &mut members {
            assert_eq!(text(member).await, "hello all");
        }
        assert_eq!(ask(&mut publisher, "unsub:room").await, "unsubscribed:room");
        publisher
            .send(Message::text("pub:room:second"))
            .await
            .unwrap();
        for member in &mut members {
            assert_eq!(text(member).await, "second");
        }
        // Neither the outsider nor the publisher that left got it: their next message is the
        // answer to their next command.
        assert_eq!(ask(&mut publisher, "echo:mine").await, "mine");
        assert_eq!(ask(&mut outsider, "echo:mine").await, "mine");
    })
    .await;
}

/// Messages from one publisher reach each subscriber in the order they were published, none
/// lost while the subscriber keeps up.
#[tokio::test]
async fn order_is_kept_per_publisher() {
    bounded(async {
        let host = TestHost::start(&["managed"]).await;
        let mut members = subscribers(&host, "/managed", "feed", 3).await;
        let (mut publisher, _) = open(&host, "/managed").await;
        assert_eq!(
            ask(&mut publisher, "pubmany:feed:500:0").await,
            "published:500"
        );
        for member in &mut members {
            for i in 0..500 {
                assert_eq!(text(member).await, format!("{i}:"));
            }
        }
    })
    .await;
}

/// A plain HTTP request's `handle` can publish (a backend notifying WebSocket clients) and
/// send to one connection by its number.
#[tokio::test]
async fn http_handle_publishes_and_sends() {
    bounded(async {
        let host = TestHost::start(&["managed"]).await;
        let mut members = subscribers(&host, "/managed", "news", 2).await;
        assert_eq!(
            post(&host, "/managed/publish/news", "from the backend").await,
            (202, "done".to_owned())
        );
        for member in &mut members {
            assert_eq!(text(member).await, "from the backend");
        }
        let (mut target, id) = open(&host, "/managed").await;
        assert_eq!(
            post(&host, &format!("/managed/send/{id}"), "just you")
                .await
                .0,
            202
        );
        assert_eq!(text(&mut target).await, "just you");
        assert_eq!(
            post(&host, "/managed/send/999999", "nobody").await,
            (409, "error:unknown-connection".to_owned())
        );
        assert_eq!(
            post(&host, "/managed/publish/", "no topic").await,
            (409, "error:invalid-topic".to_owned())
        );
    })
    .await;
}

/// Topics and connections are the plugin's own: the same plugin installed under another name
/// has other topics of the same names, and cannot address the first one's connections.
#[tokio::test]
async fn plugins_cannot_reach_each_others_topics_or_connections() {
    bounded(async {
        let host = TestHost::start(&["managed"]).await;
        host.install_plugin("managed", "other");
        host.wait_for_log(&["plugin=other", "serving plugin"], super::LOG_WAIT)
            .await;
        let (mut mine, my_id) = open(&host, "/managed?topic=room").await;
        let (mut theirs, their_id) = open(&host, "/other?topic=room").await;
        // A publish to "room" of `other` does not reach `managed`'s "room".
        assert_eq!(ask(&mut theirs, "pub:room:theirs").await, "theirs");
        assert_eq!(ask(&mut mine, "echo:nothing else").await, "nothing else");
        // Neither reaches the other's connection by its number, from an event or from handle.
        assert_eq!(
            ask(&mut theirs, &format!("send-to:{my_id}:psst")).await,
            "error:unknown-connection"
        );
        assert_eq!(
            post(&host, &format!("/other/send/{my_id}"), "psst").await.0,
            409
        );
        // Within one plugin, a connection reaches another.
        let (mut sibling, _) = open(&host, "/other").await;
        assert_eq!(
            ask(&mut sibling, &format!("send-to:{their_id}:hi")).await,
            "sent"
        );
        assert_eq!(text(&mut theirs).await, "hi");
        assert_eq!(ask(&mut mine, "echo:still nothing").await, "still nothing");
    })
    .await;
}

/// A connection may join only so many topics, and topic names are bounded.
#[tokio::test]
async fn topic_limits() {
    bounded(async {
        let sidecar = "[limits]\nmax_topics_per_connection = 2\nmax_topic_bytes = 8\n";
        let host = TestHost::start_configured(&["managed"], &[("managed", sidecar)], None).await;
        let (mut client, _) = open(&host, "/managed").await;
        assert_eq!(ask(&mut client, "sub:a").await, "subscribed:a");
        assert_eq!(ask(&mut client, "sub:b").await, "subscribed:b");
        assert_eq!(
            ask(&mut client, "sub:a").await,
            "subscribed:a",
            "already in: fine"
        );
        assert_eq!(ask(&mut client, "sub:c").await, "error:too-many-topics");
        assert_eq!(ask(&mut client, "unsub:b").await, "unsubscribed:b");
        assert_eq!(
            ask(&mut client, "sub:123456789").await,
            "error:invalid-topic"
        );
        assert_eq!(
            ask(&mut client, "sub:12345678").await,
            "subscribed:12345678"
        );
        assert_eq!(ask(&mut client, "pub::x").await, "error:invalid-topic");
    })
    .await;
}
