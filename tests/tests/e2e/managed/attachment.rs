//! A connection's attachment: set by `handle`'s answer or by the plugin later, read back in any
//! event, bounded by `max_attachment_bytes`.

use switchyard_tests::{TestHost, bounded};

use super::{ask, open};

/// The first attachment comes from the answer; a replaced one reads back as set.
#[tokio::test]
async fn the_attachment_round_trips() {
    bounded(async {
        let host = TestHost::start(&["managed"]).await;
        let (mut client, _) = open(&host, "/managed?attach=first").await;
        assert_eq!(ask(&mut client, "attachment?").await, "attachment:first");
        assert_eq!(ask(&mut client, "attach:second ✓").await, "attached");
        assert_eq!(ask(&mut client, "attachment?").await, "attachment:second ✓");
    })
    .await;
}

/// An attachment over the limit is refused with `too-large` and the old one stays; the limit
/// is the plugin's to set.
#[tokio::test]
async fn the_attachment_is_bounded() {
    bounded(async {
        let host = TestHost::start(&["managed"]).await;
        let (mut client, _) = open(&host, "/managed?attach=kept").await;
        assert_eq!(
            ask(&mut client, "attach-bytes:4097").await,
            "error:too-large"
        );
        assert_eq!(ask(&mut client, "attachment?").await, "attachment:kept");
        assert_eq!(ask(&mut client, "attach-bytes:4096").await, "attached");

        let sidecar = "[limits]\nmax_attachment_bytes = 8\n";
        let small = TestHost::start_configured(&["managed"], &[("managed", sidecar)], None).await;
        let (mut client, _) = open(&small, "/managed").await;
        assert_eq!(
            ask(&mut client, "attach:123456789").await,
            "error:too-large"
        );
        assert_eq!(ask(&mut client, "attach:12345678").await, "attached");
    })
    .await;
}
