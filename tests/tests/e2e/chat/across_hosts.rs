//! The chat with its members on two hosts that share topics through a real `redis-server`
//! (`--pubsub redis://…`): one room across hosts, each message once to everyone, a Redis
//! subscription per topic and host (not per member), and the broker's faults: absent at start,
//! killed and restarted mid-session, garbage published on a room's channel.
//!
//! Every test runs against the Rust and the Python chat (see `both_chats!`), and skips, saying
//! so, when `redis-server` is not installed.

use std::time::Duration;

use futures_util::StreamExt as _;
use tokio_tungstenite::tungstenite::Message;

use switchyard_host::Limits;
use switchyard_host::config::pubsub::PubSubConfig;
use switchyard_tests::redis::RedisServer;
use switchyard_tests::{TestHost, bounded, eventually};

use super::{
    Chat, Member, connect, connect_slow, expect_nothing_more, is_probe, join, joined, left,
    message, numbered, subscribed,
};

/// How long a host may take to connect to Redis, or to notice it went away. Generous: this
/// checks behaviour; the benchmark measures how fast delivery resumes.
const LINK_WITHIN: Duration = Duration::from_secs(15);

/// Two hosts serving the chat, both connected to `redis`.
async fn hosts_on(redis: &RedisServer, chat: Chat) -> (TestHost, TestHost) {
    let config = PubSubConfig::redis(&redis.url()).expect("a Redis URL");
    let a = TestHost::start_with_pubsub(&[chat.plugin()], config.clone()).await;
    let b = TestHost::start_with_pubsub(&[chat.plugin()], config).await;
    wait_until_up(&a, &b).await;
    (a, b)
}

async fn wait_until_up(a: &TestHost, b: &TestHost) {
    eventually("both hosts connected to Redis", LINK_WITHIN, || {
        a.pubsub_stats().is_up() && b.pubsub_stats().is_up()
    })
    .await;
}

/// Connects `name` to `room` on `home` and returns once a message posted on `other` reaches
/// it: the room is then one room across the two hosts.
async fn join_across(home: &TestHost, other: &TestHost, room: &str, name: &str) -> Member {
    let socket = connect(home, room, name).await;
    subscribed(other, room, name, socket).await
}

/// A message said on either host reaches the members on both, the sender's own host without a
/// round trip through Redis, each exactly once.
async fn members_on_two_hosts_share_a_room_and_get_each_message_once(chat: Chat) {
    bounded(async {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let (a, b) = hosts_on(&redis, chat).await;
        let mut ada = join(&a, "lobby", "ada").await;
        let mut bob = join_across(&b, &a, "lobby", "bob").await;
        // Bob's join was published on B, before Bob was subscribed.
        ada.expect(&joined("lobby", "bob")).await;

        // (Messages of different publishers have no order between them, so one at a time.)
        ada.say("hello from A").await;
        for member in [&mut ada, &mut bob] {
            member
                .expect(&message("lobby", "ada", "hello from A"))
                .await;
        }
        bob.say("hello from B").await;
        for member in [&mut ada, &mut bob] {
            member
                .expect(&message("lobby", "bob", "hello from B"))
                .await;
        }
        // Nothing came twice: a marker posted on each host is each member's next event.
        expect_nothing_more(&a, &mut [&mut ada, &mut bob]).await;
        expect_nothing_more(&b, &mut [&mut ada, &mut bob]).await;

        let (on_a, on_b) = (a.pubsub_stats().counts(), b.pubsub_stats().counts());
        // A published Ada's join, the probes, her message and a marker; B received them all
        // except her join (B had no member then, so no subscription).
        assert!(on_a.published >= 3, "{on_a:?}");
        assert!(on_b.received >= 3, "{on_b:?}");
        assert!(
            on_a.received >= 3,
            "Bob's join, message and B's marker: {on_a:?}"
        );
        assert_eq!(on_a.dropped + on_b.dropped, 0, "{on_a:?} {on_b:?}");
        assert_eq!(on_a.rejected + on_b.rejected, 0, "{on_a:?} {on_b:?}");
    })
    .await;
}

/// A host subscribes to a room's channel when its first member there joins and unsubscribes
/// when its last one leaves: one subscription per room and host, whatever the members.
async fn a_host_subscribes_per_room_not_per_member(chat: Chat) {
    bounded(async {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let (a, b) = hosts_on(&redis, chat).await;
        let channel = "switchyard:chat:attic";
        assert_eq!(redis.channels(), Vec::<String>::new());

        let ada = join(&a, "attic", "ada").await;
        let mut cy = join(&a, "attic", "cy").await;
        cy.expect_nothing_more(&a).await;
        assert_eq!(redis.channels(), [channel]);
        assert_eq!(
            redis.subscribers(channel),
            1,
            "two members on A, one subscription"
        );
        let bob = join_across(&b, &a, "attic", "bob").await;
        assert_eq!(redis.subscribers(channel), 2);

        cy.expect(&joined("attic", "bob")).await;
        drop(ada);
        cy.expect(&left("attic", "ada")).await;
        assert_eq!(redis.subscribers(channel), 2, "Cy is still on A");
        drop(cy);
        eventually(
            "A unsubscribed once its last member left",
            LINK_WITHIN,
            || redis.subscribers(channel) == 1,
        )
        .await;
        assert_eq!(a.pubsub_stats().counts().subscribed, 0);
        drop(bob);
        eventually(
            "no channel left once every member left",
            LINK_WITHIN,
            || redis.channels().is_empty(),
        )
        .await;
    })
    .await;
}

/// With Redis absent at start the hosts serve their own members and say cross-host delivery is
/// down; once Redis starts they connect by themselves and the room spans both.
async fn hosts_started_before_redis_serve_locally_then_connect(chat: Chat) {
    bounded(async {
        if !RedisServer::available() {
            RedisServer::start();
            return;
        }
        let port = RedisServer::unused_port();
        let config =
            PubSubConfig::redis(&format!("redis://127.0.0.1:{port}")).expect("a Redis URL");
        let a = TestHost::start_with_pubsub(&[chat.plugin()], config.clone()).await;
        let b = TestHost::start_with_pubsub(&[chat.plugin()], config).await;
        a.wait_for_log(&["pubsub: cross-host delivery down"], LINK_WITHIN)
            .await;
        assert!(!a.pubsub_stats().is_up());

        let mut ada = join(&a, "lobby", "ada").await;
        ada.say("anyone?").await;
        ada.expect(&message("lobby", "ada", "anyone?")).await;
        assert!(
            a.pubsub_stats().counts().dropped >= 1,
            "what was meant for other hosts is counted as dropped"
        );
        // Said once per 10 s at most, with the count.
        let line = a
            .wait_for_log(&["pubsub: dropped cross-host publishes"], LINK_WITHIN)
            .await;
        assert!(line.contains("dropped="), "{line}");
        // Several attempts have failed by now; the outage was logged once.
        let down_lines = a
            .log_lines()
            .iter()
            .filter(|line| line.contains("pubsub: cross-host delivery down"))
            .count();
        assert_eq!(down_lines, 1);

        let Some(_redis) = RedisServer::start_on(port) else {
            return;
        };
        wait_until_up(&a, &b).await;
        a.wait_for_log(&["pubsub: cross-host delivery up", "topics=1"], LINK_WITHIN)
            .await;
        let mut bob = join_across(&b, &a, "lobby", "bob").await;
        ada.expect(&joined("lobby", "bob")).await;
        bob.say("here").await;
        for member in [&mut ada, &mut bob] {
            member.expect(&message("lobby", "bob", "here")).await;
        }
    })
    .await;
}

/// Redis killed mid-session: members stay connected and keep getting their own host's
/// messages; what was meant for the other host is dropped and counted. Redis restarted: the
/// hosts subscribe again by themselves and the room spans both hosts again.
async fn redis_killed_and_restarted_mid_session(chat: Chat) {
    bounded(async {
        let Some(mut redis) = RedisServer::start() else {
            return;
        };
        let (a, b) = hosts_on(&redis, chat).await;
        let mut ada = join(&a, "lobby", "ada").await;
        let mut bob = join_across(&b, &a, "lobby", "bob").await;
        ada.expect(&joined("lobby", "bob")).await;

        redis.kill();
        eventually("both hosts saw Redis go", LINK_WITHIN, || {
            !a.pubsub_stats().is_up() && !b.pubsub_stats().is_up()
        })
        .await;
        a.wait_for_log(&["pubsub: cross-host delivery down"], LINK_WITHIN)
            .await;
        let dropped = a.pubsub_stats().counts().dropped;
        ada.say("while Redis is away").await;
        ada.expect(&message("lobby", "ada", "while Redis is away"))
            .await;
        assert_eq!(a.pubsub_stats().counts().dropped, dropped + 1);

        redis.restart();
        wait_until_up(&a, &b).await;
        eventually("both hosts subscribed again", LINK_WITHIN, || {
            redis.subscribers("switchyard:chat:lobby") == 2
        })
        .await;
        ada.say("Redis is back").await;
        // Bob's next event is this one: the message said while Redis was away never came.
        for member in [&mut ada, &mut bob] {
            member
                .expect(&message("lobby", "ada", "Redis is back"))
                .await;
        }
        bob.say("welcome back").await;
        for member in [&mut ada, &mut bob] {
            member
                .expect(&message("lobby", "bob", "welcome back"))
                .await;
        }
    })
    .await;
}

/// Whatever else is published on a room's channel (by anyone with access to Redis) is logged
/// and ignored: members get only real messages, and the host keeps serving.
async fn garbage_on_a_rooms_channel_is_ignored(chat: Chat) {
    bounded(async {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let (a, b) = hosts_on(&redis, chat).await;
        let mut ada = join(&a, "lobby", "ada").await;
        let mut bob = join_across(&b, &a, "lobby", "bob").await;
        ada.expect(&joined("lobby", "bob")).await;

        let envelope = |frame: &[u8]| [b"SY\x01".as_slice(), &[9; 16], frame].concat();
        let garbage: [Vec<u8>; 6] = [
            b"hello".to_vec(),
            Vec::new(),
            envelope(&[0x81, 5, b'h']),
            envelope(&[0x81, 2, 0xff, 0xfe]),
            envelope(&[0x88, 2, 0x03, 0xe8]),
            envelope(&[0x82, 0x82, 1, 2, 3, 4, 5, 6]),
        ];
        for payload in &garbage {
            redis
                .command_bytes(&[b"PUBLISH", b"switchyard:chat:lobby", payload])
                .expect("publishing garbage");
        }
        eventually("every piece of garbage refused", LINK_WITHIN, || {
            a.pubsub_stats().counts().rejected == garbage.len() as u64
                && b.pubsub_stats().counts().rejected == garbage.len() as u64
        })
        .await;
        b.wait_for_log(&["pubsub: ignored a message from Redis"], LINK_WITHIN)
            .await;
        ada.say("still one room").await;
        for member in [&mut ada, &mut bob] {
            member
                .expect(&message("lobby", "ada", "still one room"))
                .await;
        }
    })
    .await;
}

/// Two deployments with different prefixes on one Redis server are two worlds: same plugin, same
/// room name, different channels, and nothing crosses.
async fn deployments_with_different_prefixes_do_not_meet(chat: Chat) {
    bounded(async {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let deployment = |prefix: &str| PubSubConfig {
            prefix: prefix.parse().expect("a valid prefix"),
            ..PubSubConfig::redis(&redis.url()).expect("a Redis URL")
        };
        let a = TestHost::start_with_pubsub(&[chat.plugin()], deployment("blue")).await;
        let b = TestHost::start_with_pubsub(&[chat.plugin()], deployment("green")).await;
        wait_until_up(&a, &b).await;
        let mut ada = join(&a, "lobby", "ada").await;
        let mut bob = join(&b, "lobby", "bob").await;
        eventually("both rooms subscribed", LINK_WITHIN, || {
            redis.channels() == ["blue:chat:lobby", "green:chat:lobby"]
        })
        .await;

        ada.say("blue only").await;
        ada.expect(&message("lobby", "ada", "blue only")).await;
        // Bob's next event is B's own marker: neither Ada's join nor her message reached him.
        bob.expect_nothing_more(&b).await;
        assert_eq!(b.pubsub_stats().counts().received, 0);
        assert_eq!(a.pubsub_stats().counts().received, 0);
    })
    .await;
}

/// While Redis is slow (paused here), publishes wait in the bounded queue; past its limit they
/// are dropped for the other hosts and counted, while the publisher's own host still gets
/// every one. What was queued goes out once Redis answers again.
async fn a_full_queue_drops_for_other_hosts_only(chat: Chat) {
    bounded(async {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let config = PubSubConfig::redis(&redis.url()).expect("a Redis URL");
        let limits = Limits {
            pubsub_queue_messages: 1,
            ..Limits::default()
        };
        let a =
            TestHost::start_with_pubsub_and_limits(&[chat.plugin()], config.clone(), Some(limits))
                .await;
        let b = TestHost::start_with_pubsub(&[chat.plugin()], config).await;
        wait_until_up(&a, &b).await;
        let mut ada = join(&a, "lobby", "ada").await;
        let mut bob = join_across(&b, &a, "lobby", "bob").await;
        ada.expect(&joined("lobby", "bob")).await;
        let dropped = a.pubsub_stats().counts().dropped;

        // Every command of every client waits for 2 s: the first publish is then in flight,
        // the next one waits in the queue, and the rest do not fit.
        redis
            .command(&["CLIENT", "PAUSE", "2000", "ALL"])
            .expect("pausing Redis");
        let said: Vec<String> = (1..=5).map(|n| format!("burst {n}")).collect();
        for (n, text) in said.iter().enumerate() {
            ada.say(text).await;
            ada.expect(&message("lobby", "ada", text)).await;
            if n == 0 {
                // Time for the link to take the first publish off the queue and send it.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        assert_eq!(a.pubsub_stats().counts().dropped, dropped + 3);
        bob.expect(&message("lobby", "ada", "burst 1")).await;
        bob.expect(&message("lobby", "ada", "burst 2")).await;
        bob.expect_nothing_more(&b).await;
        assert!(a.pubsub_stats().is_up(), "a slow Redis is not a lost one");
    })
    .await;
}

/// A member on another host too slow for the room, its plugin set to `overflow = "drop"`:
/// messages from the publisher's host that do not fit its outbound buffer are dropped for it
/// alone, whole, counted (`pubsub_overflowed_total`) and logged, and it stays in the room.
async fn messages_from_another_host_dropped_for_a_slow_member_are_counted(chat: Chat) {
    bounded(async {
        /// Messages said between checks of the count.
        const BATCH: usize = 16;
        /// The most messages said (~32 MB for the slow member): far more than its socket
        /// buffers and its outbound buffer hold.
        const MAX_MESSAGES: usize = 16_000;
        /// How long the slow member reads on after the last message before it is drained.
        const DRAINED_AFTER: Duration = Duration::from_millis(500);
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let config = PubSubConfig::redis(&redis.url()).expect("a Redis URL");
        let a = TestHost::start_with_pubsub(&[chat.plugin()], config.clone()).await;
        let sidecar = "overflow = \"drop\"\n[limits]\nmax_outbound_bytes = 4096\n";
        let b = TestHost::start_with_pubsub_and_sidecars(
            &[chat.plugin()],
            &[("chat", sidecar)],
            config,
        )
        .await;
        wait_until_up(&a, &b).await;

        let socket = connect_slow(&b, "lobby", "slow").await;
        let mut slow = subscribed(&a, "lobby", "slow", socket).await;
        let mut ada = join(&a, "lobby", "ada").await;
        slow.expect(&joined("lobby", "ada")).await;

        // Ada says numbered messages on A until B has dropped one for the slow member, who
        // does not read meanwhile.
        let mut sent = 0;
        while b.pubsub_stats().counts().overflowed == 0 {
            assert!(
                sent < MAX_MESSAGES,
                "B dropped nothing for the slow member after {sent} messages"
            );
            for _ in 0..BATCH {
                let text = numbered(sent);
                ada.say(&text).await;
                ada.expect(&message("lobby", "ada", &text)).await;
                sent += 1;
            }
        }
        println!("B first dropped a message for the slow member after {sent} of ~2 KiB");
        assert_eq!(
            a.pubsub_stats().counts().overflowed,
            0,
            "A has no slow member"
        );
        let exported = b
            .metrics()
            .await
            .value("switchyard_pubsub_overflowed_total", &[]);
        assert!(exported >= 1.0, "pubsub_overflowed_total is {exported}");
        b.wait_for_log(
            &[
                "pubsub: a message from another host on topic \"lobby\" of plugin \"chat\"",
                "whose outbound buffer is full",
            ],
            LINK_WITHIN,
        )
        .await;

        // What reached the slow member is whole messages, in order, some missing.
        let mut got = 0usize;
        let mut last = None;
        while let Ok(frame) = tokio::time::timeout(DRAINED_AFTER, slow.socket.next()).await {
            let text = match frame {
                Some(Ok(Message::Text(text))) if !is_probe(&text) => text,
                Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("the slow member's connection ended or broke: {other:?}"),
            };
            let n = (0..sent)
                .find(|&n| text.as_str() == message("lobby", "ada", &numbered(n)))
                .unwrap_or_else(|| panic!("not one of Ada's messages: {text}"));
            assert!(last < Some(n), "message {n} came after {last:?}");
            last = Some(n);
            got += 1;
        }
        println!("the slow member got {got} of {sent}");
        assert!(got < sent, "nothing was dropped for the slow member");

        // Still in the room: the next message reaches it.
        ada.say("after").await;
        slow.expect(&message("lobby", "ada", "after")).await;
    })
    .await;
}

both_chats!(members_on_two_hosts_share_a_room_and_get_each_message_once);
both_chats!(a_host_subscribes_per_room_not_per_member);
both_chats!(hosts_started_before_redis_serve_locally_then_connect);
both_chats!(redis_killed_and_restarted_mid_session);
both_chats!(garbage_on_a_rooms_channel_is_ignored);
both_chats!(deployments_with_different_prefixes_do_not_meet);
both_chats!(a_full_queue_drops_for_other_hosts_only);
both_chats!(messages_from_another_host_dropped_for_a_slow_member_are_counted);
