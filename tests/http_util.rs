//! A small HTTP/1.1 client for the HTTP edge's tests: each request on its own connection,
//! written byte for byte (so a test controls every header, a malformed one included), and the
//! answer read to its end, or — for an event stream — event by event.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::util::World;

/// `lastmile serve --http 127.0.0.1:0`, with the address it bound.
pub struct HttpServer {
    pub addr: std::net::SocketAddr,
    child: tokio::process::Child,
    stderr: tokio::task::JoinHandle<String>,
}

impl HttpServer {
    pub async fn start(w: &World) -> Self {
        Self::start_with(w, &[]).await
    }

    pub async fn start_with(w: &World, extra: &[&str]) -> Self {
        let mut args = vec!["serve", "--http", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = w
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lastmile serve --http");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut early = String::new();
        let addr = loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("lastmile says where it listens within 30 s")
                .expect("read stderr")
                .unwrap_or_else(|| panic!("lastmile serve --http ended early: {early}"));
            early.push_str(&line);
            early.push('\n');
            if let Some(rest) = line.strip_prefix("lastmile: serving MCP at http://") {
                break rest.trim_end_matches("/mcp").parse().expect("address");
            }
        };
        let stderr = tokio::spawn(async move {
            let mut out = early;
            while let Ok(Some(line)) = lines.next_line().await {
                out.push_str(&line);
                out.push('\n');
            }
            out
        });
        HttpServer {
            addr,
            child,
            stderr,
        }
    }

    /// A request to this server with `Host` set to its address.
    pub fn request(&self, method: &str, path: &str) -> Req {
        Req {
            addr: self.addr,
            method: method.into(),
            path: path.into(),
            headers: vec![
                ("host".into(), self.addr.to_string()),
                (
                    "user-agent".into(),
                    "lastmile-tests/1.0 (integration)".into(),
                ),
            ],
            body: Vec::new(),
        }
    }

    /// `POST /mcp` with a JSON-RPC message, the headers every MCP client sends, and `extra`.
    pub async fn post(&self, message: &Value, extra: &[(&str, &str)]) -> Resp {
        let mut r = self
            .request("POST", "/mcp")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(message.to_string());
        for (k, v) in extra {
            r = r.header(k, v);
        }
        r.send().await
    }

    /// Stop (SIGTERM) and wait; returns everything it wrote on stderr.
    pub async fn stop(mut self) -> String {
        if let Some(pid) = self.child.id() {
            crate::util::terminate(pid);
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("lastmile exits on SIGTERM");
        self.stderr.await.unwrap_or_default()
    }
}

pub struct Req {
    addr: std::net::SocketAddr,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = name.to_ascii_lowercase();
        if name == "host" || name == "user-agent" {
            self.headers.retain(|(k, _)| *k != name);
        }
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    async fn write(&self) -> TcpStream {
        let mut s = TcpStream::connect(self.addr).await.expect("connect");
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            self.body.len()
        ));
        s.write_all(head.as_bytes()).await.expect("write head");
        s.write_all(&self.body).await.expect("write body");
        s
    }

    /// Send and read the whole answer (an event stream to its end).
    pub async fn send(self) -> Resp {
        let mut s = self.write().await;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
            .await
            .expect("an answer within 30 s")
            .expect("read");
        Resp::parse(&raw)
    }

    /// Send and read the head, then events one by one.
    pub async fn open(self) -> Stream {
        let s = self.write().await;
        let mut reader = BufReader::new(s);
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), reader.read_line(&mut line))
                .await
                .expect("a head within 30 s")
                .expect("read");
            if n == 0 || line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_string());
        }
        let status = head[0].split(' ').nth(1).unwrap().parse().unwrap();
        let headers = parse_headers(&head[1..]);
        Stream {
            status,
            chunked: headers
                .get("transfer-encoding")
                .is_some_and(|v| v == "chunked"),
            headers,
            reader,
            pending: String::new(),
        }
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// Everything as received (for "the secret is nowhere" checks).
    pub raw: String,
}

impl Resp {
    fn parse(raw: &[u8]) -> Self {
        let text = String::from_utf8_lossy(raw).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").expect("a head");
        let lines: Vec<String> = head.lines().map(str::to_string).collect();
        let status = lines[0].split(' ').nth(1).unwrap().parse().unwrap();
        let headers = parse_headers(&lines[1..]);
        let body = if headers
            .get("transfer-encoding")
            .is_some_and(|v| v == "chunked")
        {
            dechunk(rest)
        } else {
            rest.to_string()
        };
        Resp {
            status,
            headers,
            body,
            raw: text,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// The messages of an event stream (`data:` lines), or the JSON body as one.
    pub fn messages(&self) -> Vec<Value> {
        if self
            .headers
            .get("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
        {
            self.body
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter(|d| !d.trim().is_empty())
                .map(|d| serde_json::from_str(d.trim()).expect("JSON data"))
                .collect()
        } else {
            vec![self.json()]
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

fn parse_headers(lines: &[String]) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    headers
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n..];
        rest = rest.strip_prefix("\r\n").unwrap_or(rest);
    }
    out
}

/// An open event stream.
pub struct Stream {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    chunked: bool,
    reader: BufReader<TcpStream>,
    pending: String,
}

impl Stream {
    /// The next message (`data:` of the next event), waiting up to 10 s; `None` at its end.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let (_, Some(data)) = self.next_event().await? {
                return Some(data);
            }
        }
    }

    /// The next event, waiting up to 10 s: its id and its message (`None` for a priming event,
    /// which has no data); `None` at the stream's end. Comments (keep-alives) are skipped.
    pub async fn next_event(&mut self) -> Option<(Option<String>, Option<Value>)> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let event: String = self.pending.drain(..end + 2).collect();
                let field = |name: &str| {
                    event
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim().to_string())
                };
                let (id, data) = (field("id:"), field("data:"));
                if id.is_none() && data.is_none() {
                    continue;
                }
                let data = data
                    .filter(|d| !d.is_empty())
                    .map(|d| serde_json::from_str(&d).expect("JSON data"));
                return Some((id, data));
            }
            let more = tokio::time::timeout(Duration::from_secs(10), self.read_some())
                .await
                .ok()??;
            self.pending.push_str(&more);
        }
    }

    async fn read_some(&mut self) -> Option<String> {
        if !self.chunked {
            let mut buf = vec![0; 4096];
            let n = self.reader.read(&mut buf).await.ok()?;
            return (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let mut size = String::new();
        self.reader.read_line(&mut size).await.ok()?;
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return None;
        }
        let mut buf = vec![0; n + 2];
        self.reader.read_exact(&mut buf).await.ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

/// The JSON-RPC `initialize` request a 2025-11-25 client sends.
pub fn initialize(id: u64) -> Value {
    serde_json::json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"http-test","version":"0"}}})
}

pub fn request(id: u64, method: &str, params: Value) -> Value {
    serde_json::json!({"jsonrpc":"2.0","id":id,"method":method,"params":params})
}

/// Open a 2025 session with `auth` headers: initialize, then `notifications/initialized`.
pub async fn open_session(server: &HttpServer, auth: &[(&str, &str)]) -> String {
    let r = server.post(&initialize(1), auth).await;
    assert_eq!(r.status, 200, "initialize: {}", r.body);
    let id = r
        .header("mcp-session-id")
        .expect("initialize answers with Mcp-Session-Id")
        .to_string();
    let mut with = auth.to_vec();
    with.push(("mcp-session-id", &id));
    let n = server
        .post(
            &serde_json::json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            &with,
        )
        .await;
    assert_eq!(n.status, 202, "initialized: {}", n.body);
    id
}
