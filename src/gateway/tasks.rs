//! Tasks: a child that answers a call with a task gets lastmile's own task id in front of its
//! own, and every later request about that task is lastmile's to authorize.
//!
//! Both generations are spoken. 2025-11-25 (experimental tasks): the call's result is
//! `{"task": {"taskId", …}}`; then `tasks/get`, `tasks/result`, `tasks/list`, `tasks/cancel`,
//! `notifications/tasks/status`. 2026-07-28 (the tasks extension): the result is
//! `{"resultType": "task", "taskId", …}`; then `tasks/get` (with the result once completed),
//! `tasks/update`, `tasks/cancel`, `notifications/tasks`.
//!
//! The id the client sees is `lmt-` and 128 random bits; it names no child and cannot be guessed.
//! The map from it to (server, the child's id, the identity that created it, the execution id of
//! the call) belongs to one session: another session's id, a forged one or the child's own are
//! the same "unknown task", and never reach a child. Each request passes the gate (a live token,
//! the tasks bucket) first, goes to the owning child as bytes with the child's id, comes back
//! scrubbed with the ids rewritten, and leaves an audit row bound to the call's execution id. A
//! child's status notification is not passed on: it names a task by the child's id, which a
//! sibling could name too, so it only makes lastmile read that task of this session again from
//! the child that owns it, and the client hears that state.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::EXECUTION_ID_META;
use super::call::{INVALID_PARAMS, mcp_error_line, speaks_2026, strip_lifecycle_meta};
use super::front::{Front, error_line, response_line};
use super::gate::Refused;
use super::session::ClientSession;
use crate::audit::{ExecStatus, ExecutionId, ExecutionRecord, SessionIdentity, new_execution_id};
use crate::downstream::{Child, ProgressRoute, RawOutcome};
use crate::identity::RateBucket;
use crate::secrets::scrub_text;
use crate::wire::{Envelope, Kind, RawObject, json_string};

/// The prefix of the task ids lastmile hands out.
pub(crate) const TASK_ID_PREFIX: &str = "lmt-";
/// How many tasks one session keeps; past it the oldest is forgotten.
const MAX_TASKS: usize = 4096;
/// How many status notifications may wait for the answer that names their task.
const MAX_PARKED: usize = 64;
/// How long such a notification waits.
const PARK_FOR: Duration = Duration::from_secs(5);
/// How many pages of a child's `tasks/list` are read.
const MAX_LIST_PAGES: usize = 32;

/// The requests about tasks that lastmile routes, both generations.
pub(crate) fn is_task_method(method: &str) -> bool {
    matches!(
        method,
        "tasks/get" | "tasks/result" | "tasks/list" | "tasks/cancel" | "tasks/update"
    )
}

/// Who may use a task: the identity (subject and tier) that created it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Owner {
    subject: Option<String>,
    tier: crate::config::Tier,
}

impl Owner {
    pub(crate) fn of(who: &SessionIdentity) -> Self {
        Owner {
            subject: who.subject.clone(),
            tier: who.tier,
        }
    }
}

/// One task a child created for this session.
#[derive(Debug)]
pub(crate) struct TaskEntry {
    /// The hub slot of the child that owns it.
    pub(crate) slot: usize,
    /// That child's server name.
    pub(crate) server: String,
    /// The child's own task id.
    pub(crate) child_id: String,
    owner: Owner,
    /// The execution id of the call that created it.
    pub(crate) execution_id: ExecutionId,
}

/// One session's tasks, by lastmile's id.
#[derive(Default)]
pub(crate) struct TaskMap {
    inner: Mutex<Inner>,
    /// Status notifications that overtook the answer creating their task (they travel apart).
    parked: Mutex<VecDeque<Parked>>,
    /// Tasks being read again after a notification: id → read once more when done.
    refreshing: Mutex<HashMap<String, bool>>,
}

struct Parked {
    at: Instant,
    child_id: String,
    method: String,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Arc<TaskEntry>>,
    order: VecDeque<String>,
}

impl TaskMap {
    /// Remember a child's task; returns lastmile's id for it.
    pub(crate) fn register(
        &self,
        slot: usize,
        server: &str,
        child_id: &str,
        who: &SessionIdentity,
        execution_id: ExecutionId,
    ) -> String {
        let id = format!("{TASK_ID_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let entry = Arc::new(TaskEntry {
            slot,
            server: server.to_owned(),
            child_id: child_id.to_owned(),
            owner: Owner::of(who),
            execution_id,
        });
        if let Ok(mut inner) = self.inner.lock() {
            while inner.order.len() >= MAX_TASKS {
                if let Some(old) = inner.order.pop_front() {
                    inner.by_id.remove(&old);
                }
            }
            inner.order.push_back(id.clone());
            inner.by_id.insert(id.clone(), entry);
        }
        id
    }

    /// The task `id` names, if this session created it as `owner`.
    pub(crate) fn lookup(&self, id: &str, owner: &Owner) -> Option<Arc<TaskEntry>> {
        let inner = self.inner.lock().ok()?;
        let entry = inner.by_id.get(id)?;
        (entry.owner == *owner).then(|| Arc::clone(entry))
    }

    /// Every task `owner` created, oldest first, with lastmile's ids.
    pub(crate) fn owned(&self, owner: &Owner) -> Vec<(String, Arc<TaskEntry>)> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        inner
            .order
            .iter()
            .filter_map(|id| {
                let e = inner.by_id.get(id)?;
                (e.owner == *owner).then(|| (id.clone(), Arc::clone(e)))
            })
            .collect()
    }

    /// Every task of `owner` with this child id (two children may use the same id, and a
    /// notification does not say which child sent it).
    fn matching(&self, child_id: &str, owner: &Owner) -> Vec<(String, Arc<TaskEntry>)> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        inner
            .by_id
            .iter()
            .filter(|(_, e)| e.child_id == child_id && e.owner == *owner)
            .map(|(id, e)| (id.clone(), Arc::clone(e)))
            .collect()
    }

    /// Remember, a short while, that a task not (yet) known changed.
    fn park(&self, child_id: String, method: String) {
        let Ok(mut parked) = self.parked.lock() else {
            return;
        };
        parked.retain(|p| p.at.elapsed() < PARK_FOR);
        if parked.len() >= MAX_PARKED {
            parked.pop_front();
        }
        parked.push_back(Parked {
            at: Instant::now(),
            child_id,
            method,
        });
    }

    /// Whether a child's task id changed before it was known: the notification's method.
    fn unpark(&self, child_id: &str) -> Option<String> {
        let mut parked = self.parked.lock().ok()?;
        let mut method = None;
        parked.retain(|p| {
            if p.child_id == child_id && p.at.elapsed() < PARK_FOR {
                method = Some(p.method.clone());
                return false;
            }
            p.at.elapsed() < PARK_FOR
        });
        method
    }

    /// Start reading task `id` again; false if a read is under way (it is then read once more
    /// after that one).
    fn begin_refresh(&self, id: &str) -> bool {
        let Ok(mut m) = self.refreshing.lock() else {
            return false;
        };
        match m.get_mut(id) {
            Some(again) => {
                *again = true;
                false
            }
            None => {
                m.insert(id.to_owned(), false);
                true
            }
        }
    }

    /// A read of task `id` ended; true if it must be read once more.
    fn end_refresh(&self, id: &str) -> bool {
        let Ok(mut m) = self.refreshing.lock() else {
            return false;
        };
        if m.get(id) == Some(&true) {
            m.insert(id.to_owned(), false);
            return true;
        }
        m.remove(id);
        false
    }
}

/// A child announced that a task changed: the notification's method and the tasks of this
/// session it may be about.
pub(crate) struct Refresh {
    method: String,
    tasks: Vec<(String, Arc<TaskEntry>)>,
}

/// A child's `notifications/tasks` or `notifications/tasks/status` on its way to the client.
/// Its content is not trusted — any child could name a sibling's task id and make up a result
/// for it — so it only says which tasks of this session to read again from the children that
/// own them ([`refresh`]). `None` when it names none (yet: it may have overtaken the answer that
/// creates its task, so it is remembered a short while).
pub(crate) fn notification(session: &ClientSession, line: &[u8]) -> Option<Refresh> {
    let envelope = Envelope::parse(line).ok()?;
    let method = envelope.method()?.into_owned();
    let params = envelope.params().ok()??;
    let child_id = params.get_str("taskId")?.into_owned();
    let owner = Owner::of(&session.gate().who);
    let tasks = session.tasks().matching(&child_id, &owner);
    if tasks.is_empty() {
        session.tasks().park(child_id, method);
        return None;
    }
    Some(Refresh { method, tasks })
}

/// Read each task of `refresh` from the child that owns it and tell the client its state, under
/// lastmile's id, scrubbed.
pub(crate) async fn refresh(front: Arc<Front>, refresh: Refresh) {
    let cancel = front.token();
    for (id, entry) in &refresh.tasks {
        if !front.session.tasks().begin_refresh(id) {
            continue;
        }
        loop {
            if let Some(line) = read_state(&front, &refresh.method, id, entry, &cancel).await
                && front.session.gate().live().is_ok()
            {
                front.out.send(line).await;
            }
            if !front.session.tasks().end_refresh(id) {
                break;
            }
        }
    }
}

/// A task's state as the status notification `method`, from the child that owns it.
async fn read_state(
    front: &Front,
    method: &str,
    id: &str,
    entry: &TaskEntry,
    cancel: &CancellationToken,
) -> Option<Vec<u8>> {
    let child = front.hub.slots[entry.slot].running_child().ok()?;
    let mut params = RawObject::default();
    params.set("taskId", json_string(&entry.child_id));
    let Answer::Result(mut state, _) = forward(
        front,
        &child,
        entry.slot,
        "tasks/get",
        &mut params,
        None,
        cancel,
    )
    .await
    else {
        return None;
    };
    if let Value::Object(map) = &mut state {
        map.remove("resultType");
        map.remove("_meta");
    }
    rewrite_ids(&mut state, &entry.child_id, id);
    if state["taskId"].as_str() != Some(id) {
        return None;
    }
    let note = serde_json::json!({"jsonrpc": "2.0", "method": method, "params": state});
    serde_json::to_vec(&note).ok()
}

/// After the answer that created task `id`: if its child announced a change before that answer
/// was read, the client hears of it now.
pub(crate) async fn overtaken(front: &Arc<Front>, id: &str) {
    let owner = Owner::of(&front.session.gate().who);
    let Some(entry) = front.session.tasks().lookup(id, &owner) else {
        return;
    };
    if let Some(method) = front.session.tasks().unpark(&entry.child_id) {
        let tasks = vec![(id.to_owned(), entry)];
        refresh(Arc::clone(front), Refresh { method, tasks }).await;
    }
}

/// A child answered a call with a task: register it and put lastmile's id in the (scrubbed)
/// result. `Ok(None)` when the result is not a task; `Err` when it is one without a string id.
pub(crate) fn adopt(
    session: &ClientSession,
    slot: usize,
    server: &str,
    execution_id: ExecutionId,
    result: &mut RawObject<'_>,
) -> Result<Option<String>, ()> {
    let who = &session.gate().who;
    // 2026-07-28: the task's fields at the top level.
    if result.get_str("resultType").as_deref() == Some("task") {
        let child_id = result.get_str("taskId").ok_or(())?.into_owned();
        let id = session
            .tasks()
            .register(slot, server, &child_id, who, execution_id);
        result.set("taskId", json_string(&id));
        return Ok(Some(id));
    }
    // 2025-11-25: `{"task": {...}}`.
    let Some(task) = result.get("task") else {
        return Ok(None);
    };
    let Ok(mut task) = RawObject::parse(task) else {
        return Ok(None);
    };
    let Some(child_id) = task.get_str("taskId").map(|t| t.into_owned()) else {
        return Ok(None);
    };
    let id = session
        .tasks()
        .register(slot, server, &child_id, who, execution_id);
    task.set("taskId", json_string(&id));
    let text = task.to_json();
    result.set("task", text);
    Ok(Some(id))
}

/// Replace every `taskId` member equal to `from` with `to`, at any depth.
fn rewrite_ids(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(s) if key == "taskId" && s == from => *s = to.to_owned(),
                    _ => rewrite_ids(v, from, to),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_ids(v, from, to)),
        _ => {}
    }
}

/// Whether a line the face writes is a task status notification.
pub(crate) fn is_task_notification(line: &[u8]) -> bool {
    Envelope::parse(line).is_ok_and(|e| {
        e.kind() == Kind::Notification
            && e.method()
                .is_some_and(|m| m == "notifications/tasks" || m == "notifications/tasks/status")
    })
}

/// Run one `tasks/*` request to its answer (none when the client cancelled it).
pub(crate) async fn handle(front: Arc<Front>, line: Bytes) {
    let Ok(envelope) = Envelope::parse(&line) else {
        return;
    };
    let (Some(id), Some(method)) = (
        envelope.id().map(str::to_owned),
        envelope.method().map(|m| m.into_owned()),
    ) else {
        return;
    };
    let cancel = front.begin(&id);
    let answer = Request {
        front: &front,
        id: &id,
        method: &method,
        cancel: &cancel,
    }
    .run(&envelope)
    .await;
    front.end(&id);
    if let Some(answer) = answer {
        front.out.send(answer).await;
    }
}

struct Request<'a> {
    front: &'a Front,
    /// The client's id, raw JSON text.
    id: &'a str,
    method: &'a str,
    cancel: &'a CancellationToken,
}

/// How a request to a child ended, for the client and the audit row.
enum Answer {
    /// The child's result (scrubbed), with the redactions made.
    Result(Value, usize),
    /// The child's JSON-RPC error (scrubbed), with the redactions made.
    Error(Value, usize),
    /// No answer: lastmile's account of why (scrubbed), and its status.
    Failed(String, ExecStatus),
    /// The client cancelled.
    Cancelled,
}

impl Request<'_> {
    async fn run(&self, envelope: &Envelope<'_>) -> Option<Vec<u8>> {
        let session = &self.front.session;
        let gate = session.gate();
        // The gate comes first, even for a request that will be refused as malformed.
        let (mut params, malformed) = match envelope.params() {
            Ok(Some(p)) => (p, false),
            Ok(None) => (RawObject::default(), false),
            Err(_) => (RawObject::default(), true),
        };
        // For the audit row of a refusal: what the client named, string or not.
        let named = params
            .get_str("taskId")
            .map(|t| t.into_owned())
            .or_else(|| params.get("taskId").map(str::to_owned))
            .unwrap_or_default();
        let meta = params.get("_meta").and_then(|m| RawObject::parse(m).ok());
        let v2026 = speaks_2026(meta.as_ref());
        let client_token = meta
            .as_ref()
            .and_then(|m| m.get("progressToken").map(str::to_owned));
        drop(meta);

        if let Err(refused) = gate.admit(RateBucket::Tasks) {
            let (status, e) = match refused {
                Refused::Session(e) => (ExecStatus::Denied, e),
                Refused::RateLimited(e) => (ExecStatus::RateLimited, e),
            };
            self.record(new_execution_id(), "", &named, status, Some(&e.message), 0)
                .await;
            return Some(mcp_error_line(self.id, &e));
        }
        if malformed {
            let message = format!("{} needs a params object", self.method);
            self.record(
                new_execution_id(),
                "",
                "",
                ExecStatus::Denied,
                Some(&message),
                0,
            )
            .await;
            return Some(error_line(self.id, INVALID_PARAMS, &message));
        }
        if self.method == "tasks/list" {
            return Some(self.list(v2026).await);
        }
        let owner = Owner::of(&gate.who);
        let entry = params
            .get_str("taskId")
            .and_then(|t| session.tasks().lookup(&t, &owner));
        let Some(entry) = entry else {
            // The same answer for a forged id, the child's own and another session's.
            let (shown, _) = session.redactor().scrub(&named);
            let message = format!(
                "unknown task `{shown}`: this session has no task by that id\nhint: use the `taskId` lastmile returned (it starts with `{TASK_ID_PREFIX}`)"
            );
            self.record(
                new_execution_id(),
                "",
                &named,
                ExecStatus::Denied,
                Some("unknown task"),
                0,
            )
            .await;
            return Some(error_line(self.id, INVALID_PARAMS, &message));
        };
        let task_id = named;
        let server = entry.server.as_str();
        params.set("taskId", json_string(&entry.child_id));
        strip_lifecycle_meta(&mut params);
        let progress = client_token.map(|token| ProgressRoute {
            token,
            sink: Arc::clone(&self.front.progress),
        });
        let answer = match self.child(&entry) {
            Ok(child) => {
                self.forward(&child, entry.slot, self.method, &mut params, progress)
                    .await
            }
            Err(message) => Answer::Failed(message, ExecStatus::Error),
        };
        let (mut value, hits, ok) = match answer {
            Answer::Result(v, hits) => (v, hits, true),
            Answer::Error(v, hits) => (v, hits, false),
            Answer::Failed(message, status) => {
                self.record(
                    entry.execution_id,
                    server,
                    &task_id,
                    status,
                    Some(&message),
                    0,
                )
                .await;
                let e = rmcp::ErrorData::internal_error(message, None);
                return Some(mcp_error_line(self.id, &e));
            }
            Answer::Cancelled => {
                self.record(
                    entry.execution_id,
                    server,
                    &task_id,
                    ExecStatus::Cancelled,
                    Some("the request was cancelled by the client"),
                    0,
                )
                .await;
                return None;
            }
        };
        rewrite_ids(&mut value, &entry.child_id, &task_id);
        if !ok {
            let message = value["message"].as_str().unwrap_or_default().to_owned();
            self.record(
                entry.execution_id,
                server,
                &task_id,
                ExecStatus::Error,
                Some(&message),
                hits,
            )
            .await;
            let body = serde_json::to_vec(&value).unwrap_or_default();
            return Some(response_line(self.id, "error", |out| {
                out.extend_from_slice(&body)
            }));
        }
        // A result that carries the tool's outcome is audited as that outcome, under the
        // execution id of the call, which it carries too.
        let (status, error) = match self.method {
            "tasks/result" => {
                stamp(&mut value, entry.execution_id);
                tool_outcome(&value)
            }
            "tasks/get" => match value["status"].as_str() {
                Some("completed") => {
                    stamp(&mut value["result"], entry.execution_id);
                    tool_outcome(&value["result"])
                }
                Some("failed") => (
                    ExecStatus::Error,
                    Some(
                        value["error"]["message"]
                            .as_str()
                            .unwrap_or("the task failed")
                            .to_owned(),
                    ),
                ),
                _ => (ExecStatus::Ok, None),
            },
            _ => (ExecStatus::Ok, None),
        };
        if v2026
            && let Value::Object(map) = &mut value
            && !map.contains_key("resultType")
        {
            map.insert("resultType".into(), Value::from("complete"));
        }
        self.record(
            entry.execution_id,
            server,
            &task_id,
            status,
            error.as_deref(),
            hits,
        )
        .await;
        let body = serde_json::to_vec(&value).unwrap_or_default();
        Some(response_line(self.id, "result", |out| {
            out.extend_from_slice(&body)
        }))
    }

    /// The running child of the slot that owns `entry`, or why not (scrubbed).
    fn child(&self, entry: &TaskEntry) -> Result<Arc<Child>, String> {
        self.front.hub.slots[entry.slot]
            .running_child()
            .map_err(|m| scrub_text(self.front.session.redactor(), m))
    }

    async fn forward(
        &self,
        child: &Child,
        slot: usize,
        method: &str,
        params: &mut RawObject<'_>,
        progress: Option<ProgressRoute>,
    ) -> Answer {
        forward(
            self.front,
            child,
            slot,
            method,
            params,
            progress,
            self.cancel,
        )
        .await
    }

    /// `tasks/list`: this session's tasks, from each child that owns some of them — never a
    /// task the child lists for anyone else.
    async fn list(&self, v2026: bool) -> Vec<u8> {
        let session = &self.front.session;
        let owner = Owner::of(&session.gate().who);
        let mut by_slot: BTreeMap<usize, Vec<(String, Arc<TaskEntry>)>> = BTreeMap::new();
        // Clients that are not one principal share the owner: a task's id, which only its
        // maker was told, is the one proof of who made it, so none is listed.
        let owned = if session.pooled() {
            Vec::new()
        } else {
            session.tasks().owned(&owner)
        };
        for (id, entry) in owned {
            by_slot.entry(entry.slot).or_default().push((id, entry));
        }
        let mut tasks = Vec::new();
        let mut hits = 0;
        for (slot, owned) in by_slot {
            let Some((_, first)) = owned.first() else {
                continue;
            };
            let child = match self.child(first) {
                Ok(c) => c,
                Err(message) => {
                    tracing::debug!(server = %first.server, "tasks/list: {message}");
                    continue;
                }
            };
            let ours: HashMap<&str, &str> = owned
                .iter()
                .map(|(id, e)| (e.child_id.as_str(), id.as_str()))
                .collect();
            match self.list_child(&child, slot).await {
                Some((listed, n)) => {
                    hits += n;
                    for mut task in listed {
                        let Some(child_id) = task["taskId"].as_str().map(str::to_owned) else {
                            continue;
                        };
                        if let Some(id) = ours.get(child_id.as_str()) {
                            rewrite_ids(&mut task, &child_id, id);
                            tasks.push(task);
                        }
                    }
                }
                // A child without `tasks/list` (2026-07-28 has none): ask for each task.
                None => {
                    for (id, entry) in &owned {
                        let mut params = RawObject::default();
                        params.set("taskId", json_string(&entry.child_id));
                        if let Answer::Result(mut task, n) = self
                            .forward(&child, slot, "tasks/get", &mut params, None)
                            .await
                        {
                            hits += n;
                            if let Value::Object(map) = &mut task {
                                for payload in
                                    ["result", "error", "inputRequests", "resultType", "_meta"]
                                {
                                    map.remove(payload);
                                }
                            }
                            rewrite_ids(&mut task, &entry.child_id, id);
                            tasks.push(task);
                        }
                    }
                }
            }
        }
        let mut result = serde_json::json!({ "tasks": tasks });
        if v2026 {
            result["resultType"] = Value::from("complete");
        }
        self.record(new_execution_id(), "", "", ExecStatus::Ok, None, hits)
            .await;
        let body = serde_json::to_vec(&result).unwrap_or_default();
        response_line(self.id, "result", |out| out.extend_from_slice(&body))
    }

    /// Every task a child lists, page by page; `None` if it cannot list.
    async fn list_child(&self, child: &Child, slot: usize) -> Option<(Vec<Value>, usize)> {
        let mut out = Vec::new();
        let mut hits = 0;
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut params = RawObject::default();
            if let Some(c) = &cursor {
                params.set("cursor", json_string(c));
            }
            let Answer::Result(mut page, n) = self
                .forward(child, slot, "tasks/list", &mut params, None)
                .await
            else {
                return None;
            };
            hits += n;
            if let Some(Value::Array(items)) = page.get_mut("tasks").map(Value::take) {
                out.extend(items);
            } else {
                return None;
            }
            cursor = page["nextCursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Some((out, hits))
    }

    /// The audit row of one request: lastmile's task id as its target, never the child's.
    async fn record(
        &self,
        execution_id: ExecutionId,
        server: &str,
        target: &str,
        status: ExecStatus,
        error: Option<&str>,
        hits: usize,
    ) {
        let session = &self.front.session;
        let redactor = session.redactor();
        let (target, hits_t) = redactor.scrub(target);
        let (error, hits_e) = match error {
            Some(e) => {
                let (clean, n) = redactor.scrub(e);
                (Some(clean.into_owned()), n)
            }
            None => (None, 0),
        };
        let gate = session.gate();
        let row =
            ExecutionRecord::begin_request(execution_id, &gate.who, self.method, server, &target)
                .finish(
                    status,
                    error,
                    u32::try_from(hits + hits_t + hits_e).unwrap_or(u32::MAX),
                );
        gate.record(row).await;
    }
}

/// Send one request to a child as bytes; its answer scrubbed and parsed.
async fn forward(
    front: &Front,
    child: &Child,
    slot: usize,
    method: &str,
    params: &mut RawObject<'_>,
    progress: Option<ProgressRoute>,
    cancel: &CancellationToken,
) -> Answer {
    let hub = &front.hub;
    let slot = &hub.slots[slot];
    let server = slot.server.name.as_str();
    let redactor = front.session.redactor();
    let timeout = slot.call_timeout(&hub.defaults);
    let failed = |m: String, status| Answer::Failed(scrub_text(redactor, m), status);
    let line = match child
        .link
        .call(method, params, progress, timeout, cancel)
        .await
    {
        RawOutcome::Answered(bytes) => bytes,
        RawOutcome::Closed => {
            return failed(
                format!("server `{server}` exited or closed its connection during the request"),
                ExecStatus::Error,
            );
        }
        RawOutcome::TimedOut(d) => {
            return failed(
                format!(
                    "server `{server}` did not answer within {d:?} (call_timeout); the request was cancelled"
                ),
                ExecStatus::Timeout,
            );
        }
        RawOutcome::Cancelled => return Answer::Cancelled,
    };
    let unreadable = || {
        failed(
            format!("server `{server}` sent an answer lastmile cannot read"),
            ExecStatus::Error,
        )
    };
    let Ok(answer) = Envelope::parse(&line) else {
        return unreadable();
    };
    let (member, ok) = match (answer.member("result"), answer.member("error")) {
        (Some(r), _) => (r, true),
        (None, Some(e)) => (e, false),
        (None, None) => return unreadable(),
    };
    // Scrubbed as bytes before anything reads it.
    let (clean, hits) = redactor.scrub_bytes(member.as_bytes());
    let Ok(value) = serde_json::from_slice::<Value>(&clean) else {
        return unreadable();
    };
    if ok {
        Answer::Result(value, hits)
    } else {
        Answer::Error(value, hits)
    }
}

/// The audit status of a tool result: a tool-level error or not.
fn tool_outcome(result: &Value) -> (ExecStatus, Option<String>) {
    if result["isError"] == Value::Bool(true) {
        let text = result["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (ExecStatus::ToolError, Some(text))
    } else {
        (ExecStatus::Ok, None)
    }
}

/// Put the call's execution id in a result's `_meta`.
fn stamp(result: &mut Value, id: ExecutionId) {
    let Value::Object(map) = result else { return };
    let meta = map
        .entry("_meta")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(meta) = meta {
        meta.insert(EXECUTION_ID_META.into(), Value::from(id.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Transport;
    use crate::config::Tier;

    /// The `_meta` key that ties a message to its task (2025-11-25).
    const RELATED_TASK_META: &str = "io.modelcontextprotocol/related-task";

    fn who(subject: &str, tier: Tier) -> SessionIdentity {
        SessionIdentity {
            session_id: "s".into(),
            jti: None,
            subject: Some(subject.into()),
            tier,
            transport: Transport::Stdio,
        }
    }

    #[test]
    fn ids_are_lastmiles_own_unguessable_and_bound_to_their_creator() {
        let map = TaskMap::default();
        let alice = who("alice", Tier::User);
        let a = map.register(0, "jobs", "task-1", &alice, new_execution_id());
        let b = map.register(0, "jobs", "task-1", &alice, new_execution_id());
        assert_ne!(a, b);
        assert!(a.starts_with(TASK_ID_PREFIX) && a.len() == TASK_ID_PREFIX.len() + 32);
        assert!(!a.contains("task-1"));
        let owner = Owner::of(&alice);
        assert_eq!(map.lookup(&a, &owner).unwrap().child_id, "task-1");
        // The child's own id, another subject, the same subject at another tier.
        assert!(map.lookup("task-1", &owner).is_none());
        assert!(
            map.lookup(&a, &Owner::of(&who("bob", Tier::User)))
                .is_none()
        );
        assert!(
            map.lookup(&a, &Owner::of(&who("alice", Tier::Admin)))
                .is_none()
        );
        // A child id names every task of the owner with it, and none of anybody else's.
        assert_eq!(map.matching("task-1", &owner).len(), 2);
        let c = map.register(1, "other", "task-9", &alice, new_execution_id());
        let found = map.matching("task-9", &owner);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, c);
        assert!(
            map.matching("task-9", &Owner::of(&who("bob", Tier::User)))
                .is_empty()
        );
        assert_eq!(map.owned(&owner).len(), 3);
    }

    #[test]
    fn the_map_forgets_the_oldest_past_its_bound() {
        let map = TaskMap::default();
        let alice = who("alice", Tier::User);
        let first = map.register(0, "jobs", "t0", &alice, new_execution_id());
        for i in 0..MAX_TASKS {
            map.register(
                0,
                "jobs",
                &format!("t{}", i + 1),
                &alice,
                new_execution_id(),
            );
        }
        assert!(map.lookup(&first, &Owner::of(&alice)).is_none());
        assert_eq!(map.owned(&Owner::of(&alice)).len(), MAX_TASKS);
    }

    #[test]
    fn a_change_before_the_task_is_known_is_remembered_once_and_reads_coalesce() {
        let map = TaskMap::default();
        map.park("task-1".into(), "notifications/tasks".into());
        assert_eq!(map.unpark("task-2"), None);
        assert_eq!(map.unpark("task-1").as_deref(), Some("notifications/tasks"));
        assert_eq!(map.unpark("task-1"), None);
        assert!(map.begin_refresh("lmt-a"));
        assert!(!map.begin_refresh("lmt-a"));
        assert!(
            map.end_refresh("lmt-a"),
            "a change during the read is read again"
        );
        assert!(!map.end_refresh("lmt-a"));
        assert!(map.begin_refresh("lmt-a"));
    }

    #[test]
    fn ids_are_rewritten_at_any_depth_and_only_where_they_match() {
        let mut v = serde_json::json!({
            "taskId": "task-1",
            "result": {"_meta": {RELATED_TASK_META: {"taskId": "task-1"}}, "content": [{"text": "task-1"}]},
            "other": {"taskId": "task-2"}
        });
        rewrite_ids(&mut v, "task-1", "lmt-x");
        assert_eq!(v["taskId"], "lmt-x");
        assert_eq!(v["result"]["_meta"][RELATED_TASK_META]["taskId"], "lmt-x");
        assert_eq!(v["result"]["content"][0]["text"], "task-1");
        assert_eq!(v["other"]["taskId"], "task-2");
    }

    #[test]
    fn both_generations_of_task_methods_are_routed() {
        for m in [
            "tasks/get",
            "tasks/result",
            "tasks/list",
            "tasks/cancel",
            "tasks/update",
        ] {
            assert!(is_task_method(m), "{m}");
        }
        assert!(!is_task_method("tasks/other"));
        assert!(is_task_notification(
            br#"{"jsonrpc":"2.0","method":"notifications/tasks/status","params":{}}"#
        ));
        assert!(is_task_notification(
            br#"{"jsonrpc":"2.0","method":"notifications/tasks","params":{}}"#
        ));
        assert!(!is_task_notification(
            br#"{"jsonrpc":"2.0","id":1,"result":{"text":"notifications/tasks"}}"#
        ));
    }
}
