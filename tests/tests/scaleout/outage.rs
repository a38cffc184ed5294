//! The broker going away: Redis killed mid-session leaves every session open and local
//! delivery working on each host; what is published for the other host meanwhile is dropped
//! (at-most-once), never delivered late; Redis restarted on the same port brings cross-host
//! delivery back within five seconds without restarting a host. A host started while Redis is
//! down serves locally and joins once Redis appears.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio_tungstenite::tungstenite::Message;

use switchyard_tests::bounded;

use crate::cluster::{Cluster, DELIVERY_DOWN, DELIVERY_UP, STATE_CHANGE_WITHIN, ready};
use crate::member::{Member, PROBE_PREFIX, expect_nothing_more, join, message, post_to_room};

/// The target: cross-host delivery resumes this soon after Redis is back.
const RESUME_WITHIN: Duration = Duration::from_secs(5);
/// How often [`wait_until_heard_across`] posts a probe.
const PROBE_EVERY: Duration = Duration::from_millis(50);

/// Posts probes through `via` until `member` (on the other host) hears one; returns how long
/// that took. Fails after `within`.
async fn wait_until_heard_across(
    member: &mut Member,
    via: SocketAddr,
    within: Duration,
) -> Duration {
    let started = tokio::time::Instant::now();
    let deadline = started + within;
    let mut round = 0usize;
    loop {
        let probe = format!("{PROBE_PREFIX}resume {round}");
        post_to_room(via, &member.room, &probe).await;
        let wait_until = (tokio::time::Instant::now() + PROBE_EVERY).min(deadline);
        while let Ok(frame) = tokio::time::timeout_at(wait_until, member.socket.next()).await {
            match frame {
                Some(Ok(Message::Text(text))) => {
                    assert!(
                        crate::member::is_probe(&text),
                        "{} got {text} while waiting for delivery to resume",
                        member.name
                    );
                    return started.elapsed();
                }
                Some(Ok(_)) => {}
                other => panic!("{}'s connection ended: {other:?}", member.name),
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} heard nothing posted on the other host within {within:?}",
            member.name
        );
        round += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_keeps_sessions_and_local_delivery_and_heals() {
    if !ready("outage") {
        return;
    }
    bounded(async {
        let mut cluster = Cluster::start("outage").await;
        let [a, b] = cluster.hosts();
        let room = "outage";
        let mut a1 = join(a, room, "a1", &[a, b]).await;
        let mut a2 = join(a, room, "a2", &[a, b]).await;
        let mut b1 = join(b, room, "b1", &[a, b]).await;
        let mut b2 = join(b, room, "b2", &[a, b]).await;
        // Each member heard of those who joined after it, and nothing else.
        a1.expect_joins(&["a2", "b1", "b2"]).await;
        a2.expect_joins(&["b1", "b2"]).await;
        b1.expect_joins(&["b2"]).await;
        expect_nothing_more(&mut [&mut a1, &mut a2, &mut b1, &mut b2], b, "before").await;

        cluster.redis.kill();
        cluster
            .a
            .wait_for_log(DELIVERY_DOWN, STATE_CHANGE_WITHIN)
            .await;
        cluster
            .b
            .wait_for_log(DELIVERY_DOWN, STATE_CHANGE_WITHIN)
            .await;

        // Every session is still open, and each host still delivers locally.
        a1.say("on A during the outage").await;
        for member in [&mut a1, &mut a2] {
            member
                .expect(&message(room, "a1", "on A during the outage"))
                .await;
        }
        b2.say("on B during the outage").await;
        for member in [&mut b1, &mut b2] {
            member
                .expect(&message(room, "b2", "on B during the outage"))
                .await;
        }
        post_to_room(a, room, "posted on A during the outage").await;
        for member in [&mut a1, &mut a2] {
            member
                .expect(&message(room, "server", "posted on A during the outage"))
                .await;
        }

        cluster.redis.restart();
        let took = wait_until_heard_across(&mut b1, a, RESUME_WITHIN).await;
        eprintln!("cross-host delivery A→B resumed {took:?} after Redis restarted");
        let took = wait_until_heard_across(&mut a1, b, RESUME_WITHIN).await;
        eprintln!("cross-host delivery B→A resumed {took:?} after Redis restarted");
        cluster
            .a
            .wait_for_log_count(DELIVERY_UP, 2, STATE_CHANGE_WITHIN)
            .await;
        cluster
            .b
            .wait_for_log_count(DELIVERY_UP, 2, STATE_CHANGE_WITHIN)
            .await;
        for member in [&mut a1, &mut a2, &mut b1, &mut b2] {
            member.hear_probes_via(&[a, b]).await;
        }

        // What was published for the other host during the outage never arrives: a message
        // sent now is everyone's next event.
        b1.say("after the outage").await;
        for member in [&mut a1, &mut a2, &mut b1, &mut b2] {
            member
                .expect(&message(room, "b1", "after the outage"))
                .await;
        }
        expect_nothing_more(&mut [&mut a1, &mut a2, &mut b1, &mut b2], a, "the end").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_started_without_redis_serve_locally_and_join_when_it_appears() {
    if !ready("late-redis") {
        return;
    }
    bounded(async {
        let mut cluster = Cluster::start_without_redis("late-redis");
        let [a, b] = cluster.hosts();
        cluster
            .a
            .wait_for_log(DELIVERY_DOWN, STATE_CHANGE_WITHIN)
            .await;
        cluster
            .b
            .wait_for_log(DELIVERY_DOWN, STATE_CHANGE_WITHIN)
            .await;
        let room = "late";
        let mut a1 = join(a, room, "a1", &[a]).await;
        let mut a2 = join(a, room, "a2", &[a]).await;
        let mut b1 = join(b, room, "b1", &[b]).await;
        a1.expect_joins(&["a2"]).await;
        a1.say("local on A").await;
        for member in [&mut a1, &mut a2] {
            member.expect(&message(room, "a1", "local on A")).await;
        }
        // b1 hears nothing of A: the marker posted on B is its next event.
        expect_nothing_more(&mut [&mut b1], b, "only B so far").await;

        cluster.redis.restart();
        let took = wait_until_heard_across(&mut b1, a, RESUME_WITHIN).await;
        eprintln!("cross-host delivery began {took:?} after Redis started");
        cluster
            .a
            .wait_for_log(DELIVERY_UP, STATE_CHANGE_WITHIN)
            .await;
        cluster
            .b
            .wait_for_log(DELIVERY_UP, STATE_CHANGE_WITHIN)
            .await;
        a2.hear_probes_via(&[b]).await;
        b1.say("hello from B").await;
        for member in [&mut a1, &mut a2, &mut b1] {
            member.expect(&message(room, "b1", "hello from B")).await;
        }
    })
    .await;
}
