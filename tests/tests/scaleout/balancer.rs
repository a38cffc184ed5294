//! The chat through a stock load balancer: nginx, configured from the file the README shows,
//! spreads members over hosts A and B, and they are one room all the same.

use switchyard_tests::bounded;
use switchyard_tests::nginx::{CONFIG_TEMPLATE, Nginx};

use crate::cluster::{Cluster, ready};
use crate::member::{Member, connect, expect_nothing_more, joined, message, post_to_room};

/// Members connected through nginx at most before both hosts must have got one.
const MAX_MEMBERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_behind_nginx_land_on_both_hosts_and_share_the_room() {
    if !ready("nginx") {
        return;
    }
    bounded(async {
        let cluster = Cluster::start("nginx").await;
        let nginx = Nginx::start(&cluster.hosts());
        let lb = nginx.addr();
        let room = "behind-nginx";
        // nginx takes turns over the hosts (posts take turns too), so keep adding members
        // until each host has logged accepting at least one.
        let mut members: Vec<Member> = Vec::new();
        let mut on = [0usize; 2];
        while on.contains(&0) {
            assert!(
                members.len() < MAX_MEMBERS,
                "nginx sent {MAX_MEMBERS} members to one host only; nginx's log:\n{}",
                nginx.error_log()
            );
            let name = format!("m{}", members.len());
            let mut member = connect(lb, room, &name).await;
            // Through nginx, a probe may land on either host: hearing a few means it is in.
            member.hear_probes_via(&[lb, lb]).await;
            for (index, host) in [&cluster.a, &cluster.b].into_iter().enumerate() {
                on[index] += host
                    .lines_containing(&format!("name={name}"))
                    .iter()
                    .filter(|line| line.contains("websocket accepted"))
                    .count();
            }
            // Earlier members hear of the newcomer, whichever host each is on.
            for earlier in &mut members {
                earlier.expect(&joined(room, &name)).await;
            }
            members.push(member);
        }
        // Each member's message reaches every member once, whichever hosts they are on.
        let names: Vec<String> = members.iter().map(|member| member.name.clone()).collect();
        for index in 0..members.len() {
            let text = format!("hello from {}", names[index]);
            members[index].say(&text).await;
            for member in &mut members {
                member.expect(&message(room, &names[index], &text)).await;
            }
        }
        post_to_room(lb, room, "posted through nginx").await;
        for member in &mut members {
            member
                .expect(&message(room, "server", "posted through nginx"))
                .await;
        }
        let mut everyone: Vec<&mut Member> = members.iter_mut().collect();
        expect_nothing_more(&mut everyone, cluster.a.addr(), "nothing else via A").await;
        expect_nothing_more(&mut everyone, cluster.b.addr(), "nothing else via B").await;
    })
    .await;
}

/// The README's "Several hosts" section shows the very nginx configuration these tests run.
#[test]
fn the_readme_shows_the_tested_nginx_configuration() {
    let tested = std::fs::read_to_string(CONFIG_TEMPLATE).expect("reading the template");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("reading the README");
    let section = readme
        .split("\n## Several hosts")
        .nth(1)
        .expect("the README has a \"Several hosts\" section");
    let block = section
        .split("```nginx\n")
        .nth(1)
        .and_then(|rest| rest.split("```\n").next())
        .expect("the section shows an nginx configuration");
    assert_eq!(
        block, tested,
        "the README's nginx configuration differs from {CONFIG_TEMPLATE}, which the tests run"
    );
}
