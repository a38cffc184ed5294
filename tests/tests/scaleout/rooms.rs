//! One chat room over two hosts: members on host A and host B, each connected to its own host,
//! hear each other's messages, joins and leaves, and posts made on either host — each exactly
//! once, and each publisher's messages in the order it sent them.

use std::collections::HashMap;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

use switchyard_tests::bounded;

use crate::cluster::{Cluster, ready};
use crate::member::{connect, expect_nothing_more, join, joined, left, message, next_event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_hosts_are_one_room() {
    if !ready("one-room") {
        return;
    }
    bounded(async {
        let cluster = Cluster::start("one-room").await;
        let [a, b] = cluster.hosts();
        let room = "lobby";
        let mut ann = join(a, room, "ann", &[a, b]).await;
        let mut bob = connect(b, room, "bob").await;
        // Bob's join is published on B and told to Ann on A.
        ann.expect(&joined(room, "bob")).await;
        bob.hear_probes_via(&[a, b]).await;

        ann.say("hello from A").await;
        for member in [&mut ann, &mut bob] {
            member.expect(&message(room, "ann", "hello from A")).await;
        }
        bob.say("hello from B").await;
        for member in [&mut ann, &mut bob] {
            member.expect(&message(room, "bob", "hello from B")).await;
        }
        for (via, text) in [(a, "posted on A"), (b, "posted on B")] {
            crate::member::post_to_room(via, room, text).await;
            for member in [&mut ann, &mut bob] {
                member.expect(&message(room, "server", text)).await;
            }
        }
        // Nothing was delivered twice: a marker posted on either host comes next.
        expect_nothing_more(&mut [&mut ann, &mut bob], b, "marker via B").await;
        expect_nothing_more(&mut [&mut ann, &mut bob], a, "marker via A").await;

        bob.leave().await;
        ann.expect(&left(room, "bob")).await;
        expect_nothing_more(&mut [&mut ann], b, "after bob left").await;
        // Both hosts really served a member each.
        assert_eq!(
            cluster.a.lines_containing("name=ann").len(),
            1,
            "{}",
            cluster.a.log()
        );
        assert_eq!(
            cluster.b.lines_containing("name=bob").len(),
            1,
            "{}",
            cluster.b.log()
        );
    })
    .await;
}

/// Messages each of the four members sends.
const BURST: usize = 100;

/// Four members, two per host, all sending at once: every member gets every message exactly
/// once, and each sender's messages in the order sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_arrives_once_and_in_order_on_both_hosts() {
    if !ready("exactly-once") {
        return;
    }
    bounded(async {
        let cluster = Cluster::start("exactly-once").await;
        let [a, b] = cluster.hosts();
        let room = "burst";
        let names = ["a1", "a2", "b1", "b2"];
        let mut members = Vec::new();
        for (name, host) in names.iter().zip([a, a, b, b]) {
            members.push(join(host, room, name, &[a, b]).await);
        }
        // Everyone is in; from now on, read and send at once (a member that only sent would
        // fall behind on what it receives).
        let mut readers = Vec::new();
        let mut writers = Vec::new();
        for member in members {
            let name = member.name.clone();
            let (mut sink, mut stream) = member.socket.split();
            readers.push(tokio::spawn(async move {
                let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
                let mut events = Vec::new();
                let expected = names.len() * BURST;
                while events.len() < expected {
                    let event = next_event(&mut stream, &name).await;
                    let parsed: serde_json::Value =
                        serde_json::from_str(&event).expect("a JSON event");
                    if parsed["type"] == "message" {
                        let from = parsed["from"].as_str().unwrap_or_default().to_owned();
                        let number = parsed["text"]
                            .as_str()
                            .and_then(|text| text.rsplit(' ').next())
                            .and_then(|n| n.parse().ok())
                            .unwrap_or_else(|| panic!("{name} got {event}"));
                        seen.entry(from).or_default().push(number);
                        events.push(event);
                    }
                }
                (name, seen, stream)
            }));
            let sender = member.name.clone();
            writers.push(tokio::spawn(async move {
                for n in 0..BURST {
                    sink.send(Message::text(format!("{sender} says {n}")))
                        .await
                        .expect("sending");
                }
                sink
            }));
        }
        let mut sinks = Vec::new();
        for writer in writers {
            sinks.push(writer.await.expect("a writer"));
        }
        let in_order: Vec<usize> = (0..BURST).collect();
        let mut streams = Vec::new();
        for reader in readers {
            let (name, seen, stream) = reader.await.expect("a reader");
            for sender in names {
                assert_eq!(
                    seen.get(sender),
                    Some(&in_order),
                    "what {name} got from {sender}"
                );
            }
            streams.push((name, stream));
        }
        // Nothing more: a marker posted on each host is every member's next event.
        for (via, marker) in [(a, "end via A"), (b, "end via B")] {
            crate::member::post_to_room(via, room, marker).await;
            for (name, stream) in &mut streams {
                let got = next_event(stream, name).await;
                assert_eq!(got, message(room, "server", marker), "what {name} got");
            }
        }
        drop(sinks);
    })
    .await;
}
