//! The catalog cache: what each server offered the last time it started, so that the client's
//! first `tools/list` is answered at once while the children start in the background (Claude's
//! first turn then already offers every tool).
//!
//! One file per server in the profile's data folder (`catalogs/NAME.json`, folder 0700, files
//! 0600, written atomically). An entry is used only when its key matches: a hash of the server
//! file's definition, the program its command resolves to, the names of the secrets it receives
//! and the client capabilities the child is started with — any change there may change what the
//! child offers. The catalog is written *after* the session's redactor has scrubbed it: the
//! cache never holds a secret (names that held one are stored scrubbed; calls for them wait for
//! the child, whose live catalog routes them).

use std::path::{Path, PathBuf};

use rmcp::model::ClientCapabilities;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Catalog;
use crate::config::Server;
use crate::util::{create_private, write_atomic};

/// Bumped when the file layout changes: older entries are then ignored.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Entry {
    format: u32,
    key: String,
    catalog: Catalog,
}

/// The profile's catalog cache, and the record of each server's last start beside it.
#[derive(Debug, Clone)]
pub struct CatalogCache {
    dir: PathBuf,
    starts: Option<PathBuf>,
}

/// One server's last start, as `lastmile servers list` shows it (`servers/NAME.status.json`).
#[derive(Serialize)]
struct StartRecord<'a> {
    at_ms: i64,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

impl CatalogCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        CatalogCache { dir, starts: None }
    }

    /// Also record each server's last start in `dir` (created on first write).
    pub fn with_start_records(mut self, dir: PathBuf) -> Self {
        self.starts = Some(dir);
        self
    }

    /// Record that `server` started (`reason` is `None`) or failed to, with `reason` (already
    /// scrubbed: it may quote the child).
    pub fn record_start(&self, server: &str, reason: Option<&str>) -> std::io::Result<()> {
        let Some(dir) = &self.starts else {
            return Ok(());
        };
        crate::config::perms::create_private_dir(dir)?;
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let record = StartRecord {
            at_ms,
            ok: reason.is_none(),
            reason,
        };
        let bytes = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
        write_atomic(&dir.join(format!("{server}.status.json")), &bytes, None)
    }

    /// The key of `server` started for a client with `caps` (see the module docs).
    pub fn key(server: &Server, caps: &ClientCapabilities) -> String {
        let mut h = Sha256::new();
        h.update(FORMAT.to_le_bytes());
        h.update(serde_json::to_vec(&server.def).unwrap_or_default());
        let base = server.path.parent().unwrap_or(Path::new("."));
        let program = super::resolve_program(
            &server.def.command,
            base,
            std::env::var_os("PATH").as_deref(),
        )
        .map(|p| p.display().to_string())
        .unwrap_or_default();
        h.update([0]);
        h.update(program.as_bytes());
        h.update([0]);
        h.update(serde_json::to_vec(caps).unwrap_or_default());
        h.update([0]);
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn path(&self, server: &str) -> PathBuf {
        self.dir.join(format!("{server}.json"))
    }

    /// The cached catalog of `server`, if one was written under `key`.
    pub fn load(&self, server: &str, key: &str) -> Option<Catalog> {
        let bytes = std::fs::read(self.path(server)).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        (entry.format == FORMAT && entry.key == key).then_some(entry.catalog)
    }

    /// Write `catalog` (already scrubbed) for `server` under `key`: a temporary file with mode
    /// 0600 renamed over the old one, so a reader never sees half a file.
    pub fn store(&self, server: &str, key: &str, catalog: &Catalog) -> std::io::Result<()> {
        crate::config::perms::create_private_dir(&self.dir)?;
        let entry = Entry {
            format: FORMAT,
            key: key.to_string(),
            catalog: catalog.clone(),
        };
        let bytes = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        write_atomic(&self.path(server), &bytes, None)
    }
}

/// What lastmile knows of a server's manners across sessions, under a key of its definition
/// and program alone (whatever client it served): that it started, and whether it ever sent
/// the client a request of its own (roots, sampling, elicitation). Such a request cannot
/// travel on 2026-07-28, so a session with that server is offered only the 2025 versions.
impl CatalogCache {
    /// The key of what is known of `server`: its definition and program, no client.
    pub fn manners_key(server: &Server) -> String {
        Self::key(server, &ClientCapabilities::default())
    }

    fn manners_path(&self, server: &str, key: &str, what: &str) -> PathBuf {
        let short = key.get(..16).unwrap_or(key);
        self.dir.join(format!("{server}.{short}.{what}"))
    }

    /// Remember that `server` (under its manners key) started and served.
    pub fn mark_started(&self, server: &str, key: &str) -> std::io::Result<()> {
        crate::config::perms::create_private_dir(&self.dir)?;
        let path = self.manners_path(server, key, "started");
        if path.exists() {
            return Ok(());
        }
        create_private(&path, false).map(drop)
    }

    /// Remember that `server` (under its manners key) sent the client a request of its own.
    pub fn mark_asks_client(&self, server: &str, key: &str) -> std::io::Result<()> {
        crate::config::perms::create_private_dir(&self.dir)?;
        create_private(&self.manners_path(server, key, "asks-client"), false).map(drop)
    }

    /// Remember that `server` (under its manners key) sends the client things no call asked for
    /// (log messages, resource updates, task notifications), or declared that it may.
    pub fn mark_speaks_unasked(&self, server: &str, key: &str) -> std::io::Result<()> {
        crate::config::perms::create_private_dir(&self.dir)?;
        create_private(&self.manners_path(server, key, "speaks-unasked"), false).map(drop)
    }

    /// Whether one instance of `server` may serve several identities: only when it is known,
    /// from earlier starts under `key`, never to have asked the client for anything nor sent it
    /// anything unasked — what such a child sends has no caller to be delivered to. An unknown
    /// server is not.
    pub fn quiet(&self, server: &str, key: &str) -> bool {
        self.asks_client(server, key) == Some(false)
            && !self.manners_path(server, key, "speaks-unasked").exists()
    }

    /// `None` when `server` never started under `key` (nothing is known), else whether it ever
    /// asked the client for something.
    pub fn asks_client(&self, server: &str, key: &str) -> Option<bool> {
        if !self.manners_path(server, key, "started").exists() {
            return None;
        }
        Some(self.manners_path(server, key, "asks-client").exists())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::Tool;

    fn server(dir: &Path, command: &str) -> Server {
        Server {
            name: "s".into(),
            path: dir.join("s.toml"),
            def: toml::from_str(&format!("command = {command:?}")).unwrap(),
        }
    }

    #[test]
    fn an_entry_is_used_only_under_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CatalogCache::new(dir.path().join("catalogs"));
        let s = server(dir.path(), "/bin/sh");
        let caps = ClientCapabilities::default();
        let key = CatalogCache::key(&s, &caps);
        let mut catalog = Catalog::default();
        catalog.tools.push(Tool::new(
            "t",
            "d",
            std::sync::Arc::new(serde_json::Map::new()),
        ));
        cache.store("s", &key, &catalog).unwrap();
        assert_eq!(cache.load("s", &key).unwrap().tools.len(), 1);
        // Another command, other client capabilities: another key, no entry.
        let other = CatalogCache::key(&server(dir.path(), "/bin/true"), &caps);
        assert_ne!(other, key);
        assert!(cache.load("s", &other).is_none());
        let mut roots = ClientCapabilities::default();
        roots.roots = Some(Default::default());
        assert_ne!(CatalogCache::key(&s, &roots), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.path().join("catalogs")), 0o700);
            assert_eq!(mode(&dir.path().join("catalogs/s.json")), 0o600);
        }
    }

    #[test]
    fn concurrent_writes_for_one_server_all_land_whole() {
        // HTTP sessions start the same server at once, each recording its start on its own
        // blocking thread: no write may fail or leave a temporary file behind.
        let dir = tempfile::tempdir().unwrap();
        let cache = CatalogCache::new(dir.path().join("catalogs"))
            .with_start_records(dir.path().join("servers"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let (cache, barrier) = (cache.clone(), std::sync::Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..50 {
                        cache.record_start("s", None)?;
                        cache.store("s", "k", &Catalog::default())?;
                    }
                    Ok::<(), std::io::Error>(())
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap().expect("every write lands");
        }
        let status: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("servers/s.status.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(status["ok"], true);
        assert!(cache.load("s", "k").is_some());
        for sub in ["catalogs", "servers"] {
            let left: Vec<_> = std::fs::read_dir(dir.path().join(sub))
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .filter(|n| n.to_string_lossy().ends_with(".tmp"))
                .collect();
            assert!(left.is_empty(), "temporary files left in {sub}: {left:?}");
        }
    }

    #[test]
    fn only_a_server_known_never_to_ask_nor_speak_unasked_is_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CatalogCache::new(dir.path().join("catalogs"));
        let s = server(dir.path(), "/bin/sh");
        let key = CatalogCache::manners_key(&s);
        assert!(!cache.quiet("s", &key), "unknown is not quiet");
        cache.mark_started("s", &key).unwrap();
        assert!(cache.quiet("s", &key));
        assert!(!cache.quiet("s", "another key"));
        cache.mark_speaks_unasked("s", &key).unwrap();
        assert!(!cache.quiet("s", &key));
        assert_eq!(cache.asks_client("s", &key), Some(false));

        let t = CatalogCache::new(dir.path().join("other"));
        t.mark_started("s", &key).unwrap();
        t.mark_asks_client("s", &key).unwrap();
        assert!(!t.quiet("s", &key));
    }
}
