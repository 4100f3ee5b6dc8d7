//! `lastmile serve` end to end: aggregation, naming, routing, isolation, shutdown, bad input.

use std::time::Duration;

use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams};
use serde_json::json;

use crate::util::*;

#[tokio::test]
async fn aggregates_three_servers_with_namespaced_names() {
    let w = World::new();
    w.fixture("alpha", &[], "")
        .fixture("beta", &[], "")
        .fixture("gamma", &[], "prefix = \"g\"");
    let s = w.serve().await;
    let names = s.tool_names().await;
    for expected in [
        "alpha__echo",
        "beta__echo",
        "g__echo",
        "alpha__env",
        "beta__crash",
        "g__progress",
    ] {
        assert!(
            names.contains(&expected.to_string()),
            "{expected} missing from {names:?}"
        );
    }
    assert_eq!(names.len(), 3 * FIXTURE_TOOLS, "{names:?}");
    for n in &names {
        assert!(
            n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{n}"
        );
    }

    // Descriptions, schemas, annotations and titles pass through unchanged.
    let tools = s.client().list_all_tools().await.unwrap();
    let echo = tools.iter().find(|t| t.name == "alpha__echo").unwrap();
    assert_eq!(echo.title.as_deref(), Some("Echo"));
    assert_eq!(echo.description.as_deref(), Some("Echo the text back."));
    assert_eq!(echo.input_schema["properties"]["text"]["type"], "string");
    assert!(echo.output_schema.is_some());
    assert_eq!(
        echo.annotations.as_ref().and_then(|a| a.read_only_hint),
        Some(true)
    );

    let prompts: Vec<String> = s
        .client()
        .list_all_prompts()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(
        prompts.contains(&"alpha__greet".to_string()) && prompts.contains(&"g__greet".to_string()),
        "{prompts:?}"
    );
    let resources: Vec<String> = s
        .client()
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri)
        .collect();
    assert!(
        resources.contains(&"fixture://beta/readme".to_string()),
        "{resources:?}"
    );
    let templates = s.client().list_all_resource_templates().await.unwrap();
    assert_eq!(templates.len(), 3);
    s.close().await;
}

#[tokio::test]
async fn calls_reach_the_right_server_and_results_come_back_unchanged() {
    let w = World::new();
    w.fixture("alpha", &[], "")
        .fixture("beta", &[], "")
        .fixture("gamma", &[], "prefix = \"g\"");
    let s = w.serve().await;
    for (tool, server) in [
        ("alpha__echo", "alpha"),
        ("beta__echo", "beta"),
        ("g__echo", "gamma"),
    ] {
        let r = s
            .call(tool, json!({ "text": format!("hi {server}") }))
            .await
            .unwrap();
        assert_eq!(text_of(&r), format!("hi {server}"));
        assert_eq!(
            r.structured_content,
            Some(json!({ "text": format!("hi {server}") }))
        );
        assert_eq!(
            r.meta.as_ref().unwrap().0["fixture/server"],
            json!(server),
            "{tool}"
        );
        assert_ne!(r.is_error, Some(true));
    }
    let r = s
        .call("beta__fail", json!({ "message": "nope" }))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert_eq!(text_of(&r), "fixture failure: nope");

    // Prompts and resources route too.
    let mut p = GetPromptRequestParams::new("g__greet");
    p.arguments = Some(as_object(json!({ "name": "Ada" })));
    let prompt = s.client().get_prompt(p).await.unwrap();
    assert!(format!("{:?}", prompt.messages).contains("Hello, Ada! (gamma)"));
    let read = s
        .client()
        .read_resource(ReadResourceRequestParams::new("fixture://beta/readme"))
        .await
        .unwrap();
    assert!(format!("{:?}", read.contents).contains("readme of beta"));
    let read = s
        .client()
        .read_resource(ReadResourceRequestParams::new("fixture://alpha/item/42"))
        .await
        .unwrap();
    assert!(format!("{:?}", read.contents).contains("item/42 of alpha"));
    s.close().await;
}

#[tokio::test]
async fn unknown_names_get_a_clear_error_and_the_gateway_keeps_serving() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let s = w.serve().await;
    let err = s.call("alpha__nope", json!({})).await.unwrap_err();
    assert!(
        err.to_string().contains("unknown tool `alpha__nope`"),
        "{err}"
    );
    let err = s
        .client()
        .read_resource(ReadResourceRequestParams::new("fixture://zzz/x"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown resource"), "{err}");
    let r = s
        .call("alpha__echo", json!({ "text": "still here" }))
        .await
        .unwrap();
    assert_eq!(text_of(&r), "still here");
    s.close().await;
}

#[tokio::test]
async fn long_names_are_shortened_and_collisions_resolved() {
    let long = "a_really_long_tool_name_that_goes_on_and_on_well_past_the_limit_of_64";
    let w = World::new();
    w.fixture("one", &["--tool", long], "prefix = \"\"")
        .fixture("two", &[], "prefix = \"\"");
    let s = w.serve().await;
    let names = s.tool_names().await;
    assert_eq!(names.len(), 2 * FIXTURE_TOOLS + 1, "{names:?}");
    for n in &names {
        assert!(
            n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{n}"
        );
    }
    let short = names
        .iter()
        .find(|n| n.starts_with("a_really_long"))
        .expect("long tool exposed");
    assert_eq!(short.len(), 64);
    let r = s.call(short, json!({ "text": "x" })).await.unwrap();
    assert_eq!(text_of(&r), format!("{long}: x"));

    // Both servers offer `echo` under bare names: one keeps it, the other gets a hashed name.
    let echoes: Vec<&String> = names.iter().filter(|n| n.starts_with("echo")).collect();
    assert_eq!(echoes.len(), 2, "{names:?}");
    let mut servers = Vec::new();
    for e in echoes {
        let r = s.call(e, json!({ "text": "x" })).await.unwrap();
        servers.push(
            r.meta.unwrap().0["fixture/server"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    servers.sort();
    assert_eq!(servers, ["one", "two"]);
    // Deterministic: the first server by name keeps the plain name.
    let r = s.call("echo", json!({ "text": "x" })).await.unwrap();
    assert_eq!(r.meta.unwrap().0["fixture/server"], "one");
    s.close().await;
}

#[tokio::test]
async fn allow_and_deny_filter_tools() {
    let w = World::new();
    w.fixture(
        "alpha",
        &[],
        "[tools]\nallow = [\"ech*\", \"env\", \"sleep\"]\ndeny = [\"env\"]",
    );
    let s = w.serve().await;
    assert_eq!(s.tool_names().await, ["alpha__echo", "alpha__sleep"]);
    let err = s.call("alpha__env", json!({})).await.unwrap_err();
    assert!(err.to_string().contains("unknown tool"), "{err}");
    s.close().await;
}

#[tokio::test]
async fn a_broken_file_is_skipped_and_the_rest_serve() {
    let w = World::new();
    w.fixture("good", &[], "");
    w.server_file(
        "typo",
        &format!("command = {FIXTURE:?}\n\ncomand = \"x\"\n"),
    );
    w.server_file("nocmd", "args = []\n");
    w.server_file("syntax", "command = \"x\n");
    w.server_file("Bad_Name", &format!("command = {FIXTURE:?}\n"));
    let s = w.serve().await;
    assert_eq!(s.tool_names().await.len(), FIXTURE_TOOLS);
    let stderr = s.close().await;
    assert!(stderr.contains("typo.toml:3"), "{stderr}");
    assert!(stderr.contains("nocmd.toml"), "{stderr}");
    assert!(stderr.contains("syntax.toml:1"), "{stderr}");
    assert!(stderr.contains("Bad_Name.toml"), "{stderr}");
}

#[tokio::test]
async fn children_get_a_cleared_environment() {
    let w = World::new();
    w.fixture("alpha", &[], "[env]\nMODE = \"demo\"");
    let s = w
        .serve_with(|cmd| {
            cmd.env("LASTMILE_CANARY", "canary-7f3a9c")
                .env("AWS_SECRET_ACCESS_KEY", "canary-aws-1b2c");
        })
        .await;
    let r = s.call("alpha__env", json!({})).await.unwrap();
    let env = r.structured_content.unwrap()["env"]
        .as_object()
        .unwrap()
        .clone();
    let dump = format!("{env:?}");
    assert!(
        !dump.contains("canary-7f3a9c") && !dump.contains("canary-aws-1b2c"),
        "{dump}"
    );
    assert!(
        !env.contains_key("LASTMILE_CANARY") && !env.contains_key("LASTMILE_DATA_DIR"),
        "{dump}"
    );
    assert_eq!(env["MODE"], "demo");
    // The home folder is HOME on Unix, USERPROFILE on Windows.
    let home = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
    assert!(env.contains_key("PATH") && env.contains_key(home), "{dump}");
    let allowed: Vec<&str> = lastmile::downstream::BASE_ENV
        .iter()
        .copied()
        .chain(["MODE", "LASTMILE_CUSTOM_SECRETS"])
        .collect();
    // Wine adds its own variables to every process it starts, whatever the parent asked for.
    let wine = cfg!(windows) && std::env::var_os("WINECONFIGDIR").is_some();
    for k in env.keys().filter(|k| !(wine && k.starts_with("WINE"))) {
        // Windows spells some names its own way (`ComSpec`); they are the same variable.
        assert!(
            allowed.iter().any(|a| a.eq_ignore_ascii_case(k)),
            "unexpected variable {k} in the child"
        );
    }
    s.close().await;
}

// Windows has no process groups; a job object holds the tree (see no_orphans_after_a_hard_kill).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn each_child_runs_in_its_own_process_group() {
    let w = World::new();
    let pidfile = w.path("alpha.pid");
    w.fixture("alpha", &["--pid-file", pidfile.to_str().unwrap()], "");
    let s = w.serve().await;
    s.tool_names().await;
    let pid = read_pids(&pidfile).await[0];
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let pgid: u32 = fields[2].parse().unwrap();
    assert_eq!(pgid, pid, "the child leads its own process group");
    let lastmile_stat = std::fs::read_to_string(format!("/proc/{}/stat", s.pid)).unwrap();
    let lm_pgid: u32 = lastmile_stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(pgid, lm_pgid);
    s.close().await;
}

async fn stubborn_world() -> (World, std::path::PathBuf) {
    let w = World::new();
    let pidfile = w.path("stubborn.pid");
    w.fixture(
        "stubborn",
        &[
            "--ignore-eof",
            "--ignore-sigterm",
            "--spawn-grandchild",
            "--pid-file",
            pidfile.to_str().unwrap(),
        ],
        "",
    );
    w.fixture("plain", &[], "");
    (w, pidfile)
}

#[tokio::test]
async fn no_orphans_after_stdin_eof() {
    let (w, pidfile) = stubborn_world().await;
    let s = w.serve().await;
    assert_eq!(s.tool_names().await.len(), 2 * FIXTURE_TOOLS);
    let pids = read_pids(&pidfile).await;
    assert_eq!(pids.len(), 2);
    let lastmile = s.pid;
    s.close().await;
    assert!(
        eventually(Duration::from_secs(10), || !alive(lastmile)).await,
        "lastmile did not exit on EOF"
    );
    for pid in pids {
        assert!(
            eventually(Duration::from_secs(5), || !alive(pid)).await,
            "process {pid} outlived lastmile"
        );
    }
}

// Unix only: a test cannot send Windows' polite stop (a console event) to one windowless process.
#[cfg(unix)]
#[tokio::test]
async fn no_orphans_after_sigterm() {
    let (w, pidfile) = stubborn_world().await;
    let s = w.serve().await;
    s.tool_names().await;
    let pids = read_pids(&pidfile).await;
    terminate(s.pid);
    assert!(
        eventually(Duration::from_secs(10), || !alive(s.pid)).await,
        "lastmile did not exit on SIGTERM"
    );
    for pid in pids {
        assert!(
            eventually(Duration::from_secs(5), || !alive(pid)).await,
            "process {pid} outlived lastmile"
        );
    }
    s.close().await;
}

/// SIGKILL on Unix (the reaper cleans up), TerminateProcess on Windows (the job object does): the
/// child, which ignores EOF and polite stops, and its grandchild are gone either way.
#[tokio::test]
async fn no_orphans_after_sigkill() {
    let (w, pidfile) = stubborn_world().await;
    let s = w.serve().await;
    s.tool_names().await;
    let pids = read_pids(&pidfile).await;
    assert_eq!(pids.len(), 2, "the child and its grandchild");
    assert!(pids.iter().all(|p| alive(*p)), "both run before the kill");
    kill_hard(s.pid);
    assert!(eventually(Duration::from_secs(5), || !alive(s.pid)).await);
    for pid in pids {
        assert!(
            eventually(Duration::from_secs(5), || !alive(pid)).await,
            "process {pid} outlived a SIGKILLed lastmile"
        );
    }
    s.close().await;
}

#[tokio::test]
async fn failing_children_take_down_only_themselves() {
    let w = World::new();
    w.fixture("good", &[], "");
    w.fixture("nostart", &["--fail-start"], "");
    w.fixture("initexit", &["--exit-during-init"], "");
    w.fixture("garbage", &["--garbage-stdout"], "");
    w.server_file(
        "missing",
        "command = \"definitely-not-installed-xyz\"\ntiers = [\"admin\"]\n",
    );
    let s = w.serve().await;
    let names = s.tool_names().await;
    assert!(names.contains(&"good__echo".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("nostart__")
            || n.starts_with("initexit__")
            || n.starts_with("missing__")),
        "{names:?}"
    );
    // A child that prints a non-JSON line before speaking MCP is logged and still serves.
    let r = s.call("good__echo", json!({ "text": "ok" })).await.unwrap();
    assert_eq!(text_of(&r), "ok");
    let stderr = s.close().await;
    assert!(
        stderr.contains("missing") && stderr.contains("not found"),
        "{stderr}"
    );
    assert!(stderr.contains("nostart"), "{stderr}");
    assert!(stderr.contains("initexit"), "{stderr}");
}

#[tokio::test]
async fn a_child_that_crashes_mid_call_gives_an_error_naming_it() {
    let w = World::new();
    w.fixture("alpha", &[], "").fixture("beta", &[], "");
    let s = w.serve().await;
    let r = tokio::time::timeout(Duration::from_secs(5), s.call("alpha__crash", json!({})))
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(text_of(&r).contains("`alpha`"), "{}", text_of(&r));
    let r = s
        .call("beta__echo", json!({ "text": "fine" }))
        .await
        .unwrap();
    assert_eq!(text_of(&r), "fine");
    s.close().await;
}

#[tokio::test]
async fn malformed_json_rpc_from_the_client_gets_an_error_and_serving_goes_on() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let mut raw = RawClient::start(&w);
    let first = raw.initialize("2025-06-18").await;
    assert!(
        first.contains("\"id\":1") && first.contains("lastmile"),
        "{first}"
    );
    raw.send_line("this is { not json").await;
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"after garbage"}}});
    raw.send_line(&call.to_string()).await;
    let mut saw_answer = false;
    for _ in 0..10 {
        let Some(line) = raw.next_line().await else {
            break;
        };
        let v: serde_json::Value =
            serde_json::from_str(&line).expect("stdout carries JSON-RPC only");
        if v["id"] == 2 {
            assert!(line.contains("after garbage"), "{line}");
            saw_answer = true;
            break;
        }
    }
    assert!(saw_answer, "no answer after a malformed line");
    assert!(raw.finish().await.success());
}

#[tokio::test]
async fn logs_go_to_a_json_file_with_child_stderr_tagged() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let s = w.serve().await;
    s.tool_names().await;
    s.close().await;
    let logs = w.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("fixture alpha ready"))
        .unwrap_or_else(|| panic!("child stderr not in the log: {logs}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON lines");
    assert_eq!(v["fields"]["server"], "alpha", "{line}");
}

/// Windows, the npx way: a bare `command` resolves through PATHEXT to a `.cmd` beside an
/// extensionless shell script of the same name (as npm installs them), and the server runs
/// through it; an argument `cmd.exe` cannot be given safely is refused by name.
#[cfg(windows)]
#[tokio::test]
async fn a_batch_file_found_through_pathext_runs_and_unsafe_arguments_are_refused_by_name() {
    let w = World::new();
    let bin = w.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(
        bin.join("fixturectl"),
        "#!/bin/sh\nexec lastmile-fixture \"$@\"\n",
    )
    .unwrap();
    let fixture = std::path::absolute(FIXTURE).unwrap();
    std::fs::write(
        bin.join("fixturectl.cmd"),
        format!("@\"{}\" %*\r\n", fixture.display()),
    )
    .unwrap();
    let all_tiers = "tiers = [\"admin\"]\n";
    w.server_file(
        "viabat",
        &format!("command = \"fixturectl\"\nargs = [\"--name\", \"viabat\"]\n{all_tiers}"),
    );
    w.server_file(
        "unsafe",
        &format!("command = \"fixturectl\"\nargs = [\"--name\", \"line\\nbreak\"]\n{all_tiers}"),
    );
    let mut path = std::ffi::OsString::from(&bin);
    path.push(";");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let s = w
        .serve_with(|cmd| {
            cmd.env("PATH", path);
        })
        .await;
    let names = s.tool_names().await;
    assert_eq!(names.len(), FIXTURE_TOOLS, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("viabat__")), "{names:?}");
    let r = s
        .call("viabat__echo", json!({ "text": "via cmd" }))
        .await
        .unwrap();
    assert_eq!(text_of(&r), "via cmd");
    let stderr = s.close().await;
    assert!(stderr.contains("fixturectl.cmd"), "{stderr}");
    assert!(stderr.contains("it is a batch file"), "{stderr}");
}

/// A child that lists its tools in pages is read to the last page: every tool is offered.
#[tokio::test]
async fn a_paginated_child_list_is_followed_to_the_end() {
    let w = World::new();
    // `--tool` extras come last: `lastpage` is on the last page.
    w.fixture("paged", &["--page-size", "2", "--tool", "lastpage"], "");
    w.fixture("whole", &["--tool", "lastpage"], "");
    let s = w.serve().await;
    let names = s.tool_names().await;
    let paged: Vec<&String> = names.iter().filter(|n| n.starts_with("paged__")).collect();
    let whole: Vec<&String> = names.iter().filter(|n| n.starts_with("whole__")).collect();
    assert!(whole.len() > 2, "{names:?}");
    assert_eq!(paged.len(), whole.len(), "{names:?}");
    let r = s
        .call(
            "paged__lastpage",
            json!({ "text": "from the last page too" }),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&r), "lastpage: from the last page too");
    s.close().await;
}

/// A client line over `max_message_bytes` gets a named error, and the connection goes on.
#[tokio::test]
async fn an_oversized_message_is_refused_by_name_and_serving_goes_on() {
    let w = World::new();
    w.profile_file("[auth]\nmode = \"disabled\"\n\n[defaults]\nmax_message_bytes = 4096\n");
    w.fixture("alpha", &[], "");
    let mut raw = RawClient::start(&w);
    raw.initialize("2025-11-25").await;
    let big = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text": "x".repeat(10_000)}}});
    raw.send_line(&big.to_string()).await;
    let refused = raw
        .next_line()
        .await
        .expect("an answer to the oversized line");
    let v: serde_json::Value = serde_json::from_str(&refused).unwrap();
    assert_eq!(v["error"]["code"], -32600, "{refused}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("message too large") && message.contains("4096"),
        "{refused}"
    );
    assert!(
        !refused.contains("xxxxxxxx"),
        "the line is not echoed: {refused}"
    );
    let (answer, _) = raw
        .request(
            3,
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"text": "still serving"}}),
        )
        .await;
    assert!(answer.to_string().contains("still serving"), "{answer}");
    assert!(raw.finish().await.success());
}

/// Lines written to `path` so far, once there are at least `n` (waits up to 10 s).
#[cfg(unix)]
async fn lines_of(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n || std::time::Instant::now() > deadline {
            return lines;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_piped_stdin_with_stdout_to_a_file_keeps_reading_between_messages() {
    use tokio::io::AsyncWriteExt;
    let w = World::new();
    w.fixture("alpha", &[], "");
    let out_path = w.path("out.jsonl");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = w
        .command(&["serve"])
        .stdin(std::process::Stdio::piped())
        .stdout(out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}});
    stdin
        .write_all(format!("{init}\n").as_bytes())
        .await
        .unwrap();
    // Nothing more to read until the answer is out: the next read finds an empty pipe.
    assert_eq!(lines_of(&out_path, 1).await.len(), 1);
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}\n")
        .await
        .unwrap();
    let lines = lines_of(&out_path, 2).await;
    assert_eq!(
        lines.len(),
        2,
        "the session ended after its first message: {lines:?}"
    );
    assert!(lines[1].contains("alpha__echo"), "{}", lines[1]);
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
}
