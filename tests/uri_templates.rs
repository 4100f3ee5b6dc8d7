//! Resource URIs against templates (#9, point 7): long and pathological URIs are answered at
//! once, and RFC 6570 operator expressions may expand to nothing.

use std::time::Duration;

use rmcp::model::ReadResourceRequestParams;

use crate::util::*;

const TEMPLATE: &str = "fixture://repo/{owner}/{repo}/contents{/path*}";

async fn read(s: &Session, uri: String) -> Result<String, String> {
    match s
        .client()
        .read_resource(ReadResourceRequestParams::new(uri))
        .await
    {
        Ok(r) => Ok(serde_json::to_string(&r.contents).unwrap_or_default()),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn pathological_and_oversized_uris_are_answered_and_normal_ones_still_route() {
    let w = World::new();
    w.fixture("repo", &["--template", TEMPLATE], "");
    let s = w.serve().await;
    assert!(!s.tool_names().await.is_empty());

    // The old matcher tried every split: seconds per request for this one, minutes for the
    // mebibyte one, with the runtime's workers held. The limits below are a hundred times what
    // the linear matcher needs on a slow debug build; they only stop a hung test.
    let almost_8k = format!("fixture://repo/{}", "a/".repeat(4_000));
    let mebibyte = format!("fixture://repo/{}", "a/".repeat(1 << 19));
    let outcome = tokio::time::timeout(Duration::from_secs(60), async {
        let (a, b, tools) = tokio::join!(
            read(&s, almost_8k.clone()),
            read(&s, mebibyte.clone()),
            s.tool_names(),
        );
        (a, b, tools)
    })
    .await
    .expect("pathological URIs stalled the gateway");
    let (a, b, tools) = outcome;
    assert!(!tools.is_empty());
    // Neither matches the template (no `/contents`), and the mebibyte one is over the limit:
    // both are unknown, as a URI nothing offers.
    for (uri, answer) in [(&almost_8k, a), (&mebibyte, b)] {
        let e = answer.expect_err("no server offers it");
        assert!(e.contains("unknown resource"), "{}: {e:.200}", uri.len());
    }

    // Normal URIs still reach the child, an empty `{/path*}` included (RFC 6570: an undefined
    // variable expands to nothing).
    let file = read(&s, "fixture://repo/o/r/contents/src/main.rs".into())
        .await
        .expect("routed");
    assert!(file.contains("o/r/contents/src/main.rs of repo"), "{file}");
    let root = read(&s, "fixture://repo/o/r/contents".into())
        .await
        .expect("an empty path expansion is routed");
    assert!(root.contains("o/r/contents of repo"), "{root}");
    let long = format!("fixture://repo/o/r/contents/{}", "b/".repeat(3_000));
    assert!(read(&s, long).await.is_ok());
    s.close().await;
}
