//! Subscriptions to URIs no server listed (the conformance suite's resources-subscribe): routed by
//! template, else to the one permitted server that offers subscriptions, else a clear error.

use serde_json::json;

use crate::util::*;

#[tokio::test]
async fn a_subscription_to_an_unlisted_uri_goes_to_the_one_server_that_offers_them() {
    let w = World::new();
    w.fixture("fx", &[], "");
    w.fixture("plain", &["--no-resources"], "");
    let mut raw = RawClient::start(&w);
    raw.initialize("2025-11-25").await;
    for (id, method) in [(2, "resources/subscribe"), (3, "resources/unsubscribe")] {
        let (answer, _) = raw
            .request(id, method, json!({"uri": "test://not-listed-anywhere"}))
            .await;
        assert!(answer.get("result").is_some(), "{method}: {answer}");
    }
    assert!(raw.finish().await.success());
}

#[tokio::test]
async fn with_several_subscribable_servers_an_unlisted_uri_gets_a_clear_error() {
    let w = World::new();
    w.fixture("one", &[], "");
    w.fixture("two", &[], "");
    let mut raw = RawClient::start(&w);
    raw.initialize("2025-11-25").await;
    // A URI one template matches still goes to its server.
    let (answer, _) = raw
        .request(
            2,
            "resources/subscribe",
            json!({"uri": "fixture://two/item/7"}),
        )
        .await;
    assert!(answer.get("result").is_some(), "{answer}");
    let (answer, _) = raw
        .request(3, "resources/subscribe", json!({"uri": "test://nowhere"}))
        .await;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("one, two"), "{answer}");
    assert!(
        message.contains("2 servers offer subscriptions"),
        "{answer}"
    );
    assert!(raw.finish().await.success());
}
