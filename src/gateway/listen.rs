//! 2026-07-28 toward the client: `subscriptions/listen` and the `server/discover` answer.
//!
//! On 2026-07-28 a client opts in to notifications with `subscriptions/listen`: list changes of
//! tools, prompts and resources, and updates of the resources it names. lastmile acknowledges
//! the subset it honours (`notifications/subscriptions/acknowledged`, the first message tagged
//! with the subscription's id), subscribes to each named resource at the child that serves it
//! (through the typed face, so the gate and the audit see it), and from then on fans in the list
//! changes and resource updates of every child, each copy tagged with
//! `_meta["io.modelcontextprotocol/subscriptionId"]`. A notification no subscription asked for
//! is not sent to a 2026-07-28 client at all. The client ends a subscription with
//! `notifications/cancelled` naming the listen request.
//!
//! `server/discover` is answered by the typed face; the front removes 2026-07-28 from its
//! `supportedVersions` unless the session loses nothing on it (see
//! [`super::hub::Hub::lossless_on_2026`]), so a client that speaks both falls back to
//! `initialize` and the children's requests to the client keep working.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::call::mcp_error_line;
use super::front::{Front, error_line, response_line};
use super::gate::Refused;
use crate::audit::{ExecStatus, ExecutionRecord, new_execution_id};
use crate::identity::RateBucket;
use crate::wire::{Envelope, RawObject, json_string};

/// The `_meta` key that ties a notification to its subscription.
pub(crate) const SUBSCRIPTION_ID_META: &str = "io.modelcontextprotocol/subscriptionId";
/// The protocol version that cannot carry requests from server to client.
pub(crate) const V_2026_07_28: &str = "2026-07-28";

/// Which notifications a subscription carries (the spec's `SubscriptionFilter`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Filter {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    tools_list_changed: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    prompts_list_changed: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    resources_list_changed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    resource_subscriptions: Vec<String>,
}

/// One open subscription.
#[derive(Debug, Clone)]
pub(crate) struct Listen {
    /// The listen request's id (raw JSON text): the subscription id.
    id: String,
    filter: Filter,
}

impl Filter {
    /// Whether a notification (method, and the URI of a resource update) belongs here.
    fn wants(&self, method: &str, uri: Option<&str>) -> bool {
        match method {
            "notifications/tools/list_changed" => self.tools_list_changed,
            "notifications/prompts/list_changed" => self.prompts_list_changed,
            "notifications/resources/list_changed" => self.resources_list_changed,
            "notifications/resources/updated" => {
                uri.is_some_and(|u| self.resource_subscriptions.iter().any(|s| s == u))
            }
            _ => false,
        }
    }
}

/// Whether a notification is one that, on 2026-07-28, travels only on a subscription.
pub(crate) fn is_subscription_kind(method: &str) -> bool {
    matches!(
        method,
        "notifications/tools/list_changed"
            | "notifications/prompts/list_changed"
            | "notifications/resources/list_changed"
            | "notifications/resources/updated"
    )
}

/// The copies of a notification for the subscriptions that asked for it, each tagged.
pub(crate) fn fan_out(listens: &[Listen], line: &[u8]) -> Vec<Vec<u8>> {
    let Ok(envelope) = Envelope::parse(line) else {
        return Vec::new();
    };
    let Some(method) = envelope.method().map(|m| m.into_owned()) else {
        return Vec::new();
    };
    let params = envelope.params().ok().flatten().unwrap_or_default();
    let uri = params.get_str("uri").map(|u| u.into_owned());
    listens
        .iter()
        .filter(|l| l.filter.wants(&method, uri.as_deref()))
        .map(|l| notification(&method, params.clone(), &l.id))
        .collect()
}

/// A notification `method` with `params`, tagged with subscription `id`.
fn notification(method: &str, mut params: RawObject<'_>, id: &str) -> Vec<u8> {
    let meta_text = params.get("_meta").map(str::to_owned);
    let mut meta = meta_text
        .as_deref()
        .and_then(|t| RawObject::parse(t).ok())
        .unwrap_or_default();
    meta.set(SUBSCRIPTION_ID_META, id.to_owned());
    let meta = meta.to_json();
    params.set("_meta", meta);
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"method\":");
    out.extend_from_slice(json_string(method).as_bytes());
    out.extend_from_slice(b",\"params\":");
    params.write(&mut out);
    out.push(b'}');
    out
}

/// Open a subscription for the client's `subscriptions/listen` request.
pub(crate) async fn listen(front: Arc<Front>, line: Bytes) {
    let Ok(envelope) = Envelope::parse(&line) else {
        return;
    };
    let Some(id) = envelope.id().map(str::to_owned) else {
        return;
    };
    let gate = front.session.gate();
    let params = envelope.params().ok().flatten().unwrap_or_default();
    let audit = |status: ExecStatus, error: Option<String>| {
        ExecutionRecord::begin_request(
            new_execution_id(),
            &gate.who,
            "subscriptions/listen",
            "",
            "",
        )
        .finish(status, error, 0)
    };
    if let Err(refused) = gate.admit(RateBucket::Reads) {
        let (status, e) = match refused {
            Refused::Session(e) => (ExecStatus::Denied, e),
            Refused::RateLimited(e) => (ExecStatus::RateLimited, e),
        };
        gate.record(audit(status, Some(e.message.to_string())))
            .await;
        front.out.send(mcp_error_line(&id, &e)).await;
        return;
    }
    let Some(requested) = params
        .get("notifications")
        .and_then(|n| serde_json::from_str::<Filter>(n).ok())
    else {
        gate.record(audit(
            ExecStatus::Error,
            Some("no `notifications` filter".into()),
        ))
        .await;
        front
            .out
            .send(error_line(
                &id,
                -32602,
                "subscriptions/listen needs `params.notifications`, a subscription filter",
            ))
            .await;
        return;
    };
    // Every list kind is honoured (lastmile announces changes of all three); a resource only
    // once the child that serves it has accepted the subscription.
    let mut accepted = Filter {
        tools_list_changed: requested.tools_list_changed,
        prompts_list_changed: requested.prompts_list_changed,
        resources_list_changed: requested.resources_list_changed,
        resource_subscriptions: Vec::new(),
    };
    gate.record(audit(ExecStatus::Ok, None)).await;
    for uri in &requested.resource_subscriptions {
        if subscribe(&front, uri, true).await {
            accepted.resource_subscriptions.push(uri.clone());
        }
    }
    let mut ack = RawObject::default();
    ack.set(
        "notifications",
        serde_json::to_string(&accepted).unwrap_or_else(|_| "{}".into()),
    );
    let mut ack_meta = RawObject::default();
    ack_meta.set(SUBSCRIPTION_ID_META, id.clone());
    ack.set("_meta", ack_meta.to_json());
    let mut line =
        b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/subscriptions/acknowledged\",\"params\":"
            .to_vec();
    ack.write(&mut line);
    line.push(b'}');
    // The acknowledgement is the first message of the subscription: it is registered only once
    // the acknowledgement is queued.
    front.out.send(line).await;
    front.add_listen(Listen {
        id,
        filter: accepted,
    });
}

/// Close a subscription: its resource subscriptions at the children end too.
pub(crate) async fn unlisten(front: Arc<Front>, listen: Listen) {
    for uri in &listen.filter.resource_subscriptions {
        subscribe(&front, uri, false).await;
    }
}

/// One resource subscription made (or ended) at the child on the client's behalf: gated and
/// audited like the client's own `resources/subscribe`. True when the child accepted it.
async fn subscribe(front: &Front, uri: &str, on: bool) -> bool {
    let gate = front.session.gate();
    let method = if on {
        "resources/subscribe"
    } else {
        "resources/unsubscribe"
    };
    let (target, hits) = front.session.redactor().scrub(uri);
    let row =
        |status: ExecStatus, error: Option<String>| {
            ExecutionRecord::begin_request(new_execution_id(), &gate.who, method, "", &target)
                .finish(status, error, u32::try_from(hits).unwrap_or(u32::MAX))
        };
    if let Err(refused) = gate.admit(RateBucket::Reads) {
        let (status, e) = match refused {
            Refused::Session(e) => (ExecStatus::Denied, e),
            Refused::RateLimited(e) => (ExecStatus::RateLimited, e),
        };
        gate.record(row(status, Some(e.message.to_string()))).await;
        return false;
    }
    match front.face.subscribe_uri(uri, on).await {
        Ok(()) => {
            gate.record(row(ExecStatus::Ok, None)).await;
            true
        }
        Err(message) => {
            tracing::info!("{method} on behalf of a subscription was refused: {message}");
            gate.record(row(ExecStatus::Error, Some(message))).await;
            false
        }
    }
}

impl Listen {
    /// The subscription's id (the listen request's id, raw JSON text).
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

/// The discover result with 2026-07-28 (and later) taken out of `supportedVersions`, or `None`
/// when the line is not a discover result.
pub(crate) fn without_2026(line: &[u8]) -> Option<Vec<u8>> {
    let envelope = Envelope::parse(line).ok()?;
    let mut result = RawObject::parse(envelope.member("result")?).ok()?;
    let versions: Vec<String> = serde_json::from_str(result.get("supportedVersions")?).ok()?;
    let kept: Vec<&String> = versions
        .iter()
        .filter(|v| v.as_str() < V_2026_07_28)
        .collect();
    result.set("supportedVersions", serde_json::to_string(&kept).ok()?);
    Some(response_line(envelope.id()?, "result", |out| {
        result.write(out)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(id: &str, filter: serde_json::Value) -> Listen {
        Listen {
            id: id.into(),
            filter: serde_json::from_value(filter).unwrap(),
        }
    }

    #[test]
    fn a_notification_reaches_each_subscription_that_asked_for_it_tagged() {
        let listens = [
            listen("1", serde_json::json!({"toolsListChanged": true})),
            listen(
                "\"b\"",
                serde_json::json!({"resourceSubscriptions": ["x://a"]}),
            ),
        ];
        let tools = br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
        let out = fan_out(&listens, tools);
        assert_eq!(out.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out[0]).unwrap();
        assert_eq!(v["params"]["_meta"][SUBSCRIPTION_ID_META], 1);

        let updated = br#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"x://a","_meta":{"k":1}}}"#;
        let out = fan_out(&listens, updated);
        assert_eq!(out.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out[0]).unwrap();
        assert_eq!(v["params"]["_meta"][SUBSCRIPTION_ID_META], "b");
        assert_eq!(v["params"]["_meta"]["k"], 1);
        assert_eq!(v["params"]["uri"], "x://a");

        let other = br#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"x://other"}}"#;
        assert!(fan_out(&listens, other).is_empty());
        let prompts = br#"{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}"#;
        assert!(fan_out(&listens, prompts).is_empty());
    }

    #[test]
    fn discover_without_2026() {
        let line = br#"{"jsonrpc":"2.0","id":3,"result":{"resultType":"complete","supportedVersions":["2026-07-28","2025-11-25","2025-06-18"],"capabilities":{}}}"#;
        let out = without_2026(line).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], 3);
        assert_eq!(
            v["result"]["supportedVersions"],
            serde_json::json!(["2025-11-25", "2025-06-18"])
        );
        assert!(without_2026(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#).is_none());
    }
}
