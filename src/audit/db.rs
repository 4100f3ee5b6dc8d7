//! Opening the audit database: pragmas (WAL, `synchronous=NORMAL`, busy timeout), versioned
//! migrations from `schemas/audit.sql` keyed on `PRAGMA user_version`, and the mapping of SQLite's
//! failures to named [`AuditError`]s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{AuditError, files};

/// The schema, one `-- migration: N` block per version.
pub(crate) const SCHEMA_SQL: &str = include_str!("../../schemas/audit.sql");

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 4;

/// How long a statement waits for another connection's lock before failing as locked.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The audit database's file name inside a profile's data folder.
pub const DB_FILE_NAME: &str = "audit.db";

/// The audit database of a profile whose data folder is `data_dir`.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DB_FILE_NAME)
}

/// The migration blocks of [`SCHEMA_SQL`], in order: `(version, sql)`. A block starts at a line
/// that begins with `-- migration: N`; text before the first block is the header.
pub(crate) fn migrations() -> Vec<(u32, &'static str)> {
    const MARK: &str = "-- migration: ";
    let mut out: Vec<(u32, usize, usize)> = Vec::new();
    let mut offset = 0usize;
    for line in SCHEMA_SQL.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix(MARK) {
            if let Some(last) = out.last_mut() {
                last.2 = offset;
            }
            let version = rest.trim().parse::<u32>().unwrap_or(0);
            out.push((version, offset + line.len(), SCHEMA_SQL.len()));
        }
        offset += line.len();
    }
    out.into_iter()
        .map(|(v, from, to)| (v, &SCHEMA_SQL[from..to]))
        .collect()
}

/// How to open the database.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenOptions {
    /// Create the file (and its folder) if missing. Readers (`audit query`) do not.
    pub create: bool,
    pub busy_timeout: Duration,
    /// Open read-only (tests of the read-only path).
    pub read_only: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            create: true,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            read_only: false,
        }
    }
}

/// Map a SQLite failure on `path` to a named error.
pub(crate) fn classify(path: &Path, e: rusqlite::Error) -> AuditError {
    use rusqlite::ErrorCode as C;
    let path = path.to_path_buf();
    match e.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked) => AuditError::Locked { path },
        Some(C::ReadOnly | C::PermissionDenied) => AuditError::ReadOnly { path },
        Some(C::DatabaseCorrupt | C::NotADatabase) => AuditError::Corrupt {
            path,
            detail: e.to_string(),
        },
        Some(C::CannotOpen) => AuditError::CannotOpen {
            path,
            detail: e.to_string(),
        },
        Some(C::DiskFull) => AuditError::DiskFull { path },
        _ => AuditError::Sqlite {
            path,
            detail: e.to_string(),
        },
    }
}

/// Open (and create or upgrade) the audit database at `path`.
pub(crate) fn open(path: &Path, opts: OpenOptions) -> Result<Connection, AuditError> {
    if !opts.create && !path.exists() {
        return Err(AuditError::Missing {
            path: path.to_path_buf(),
        });
    }
    if opts.create
        && let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|e| AuditError::Io {
            path: dir.to_path_buf(),
            detail: e.to_string(),
        })?;
    }
    if !opts.read_only {
        let io = |e: std::io::Error| AuditError::Io {
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        if opts.create {
            files::create_private(path).map_err(io)?;
        }
        files::tighten_all(path).map_err(io)?;
    }
    let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    if opts.read_only {
        flags |= OpenFlags::SQLITE_OPEN_READ_ONLY;
    } else {
        flags |= OpenFlags::SQLITE_OPEN_READ_WRITE;
        if opts.create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
    }
    let err = |e| classify(path, e);
    let mut conn = Connection::open_with_flags(path, flags).map_err(err)?;
    conn.busy_timeout(opts.busy_timeout).map_err(err)?;
    // Reading the version is the first real access: a file that is not a database fails here.
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if version > SCHEMA_VERSION {
        return Err(AuditError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if !opts.read_only {
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(AuditError::Sqlite {
                path: path.to_path_buf(),
                detail: format!("cannot switch to WAL journal mode (got `{mode}`)"),
            });
        }
        if conn.is_readonly("main").map_err(err)? {
            return Err(AuditError::ReadOnly {
                path: path.to_path_buf(),
            });
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    // Rows are appended and rarely read back by the writer: a small page cache (512 KiB instead
    // of SQLite's 2 MiB) keeps the gateway's resident memory down.
    conn.pragma_update(None, "cache_size", -512).map_err(err)?;
    migrate(&mut conn, path, version)?;
    if !opts.read_only {
        // The WAL and shared-memory files exist now; an older lastmile may have made them looser.
        files::tighten_all(path).map_err(|e| AuditError::Io {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    }
    Ok(conn)
}

/// Run every migration block above `from`, each in its own transaction with its version bump.
fn migrate(conn: &mut Connection, path: &Path, from: u32) -> Result<(), AuditError> {
    let err = |e| classify(path, e);
    for (version, sql) in migrations() {
        if version <= from {
            continue;
        }
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        // Another process may have migrated while we waited for the lock.
        let now: u32 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if now >= version {
            continue;
        }
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(err)?;
        tx.commit().map_err(err)?;
        tracing::info!(path = %path.display(), version, "audit database migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> OpenOptions {
        OpenOptions {
            busy_timeout: Duration::from_millis(100),
            ..OpenOptions::default()
        }
    }

    fn version(conn: &Connection) -> u32 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn schema_has_one_block_per_version() {
        let versions: Vec<u32> = migrations().iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    }

    #[test]
    fn new_file_is_wal_at_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("audit.db");
        let conn = open(&path, opts()).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
        drop(conn);
        // Opening again is a no-op.
        let conn = open(&path, opts()).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
    }

    #[test]
    fn v1_file_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        {
            // A file as version 1 of lastmile left it, made by hand.
            let conn = Connection::open(&path).unwrap();
            let (v, sql) = migrations()[0];
            assert_eq!(v, 1);
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO sessions (seq, session_id, event, mode, transport, at_ms, tag)
                 VALUES (1, 's-old', 'accepted', 'required', 'stdio', 5, x'00')",
                [],
            )
            .unwrap();
            let edge: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'edge_events'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(edge, 0);
        }
        let conn = open(&path, opts()).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        let edge: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'edge_events'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(edge, 1);
        let kept: String = conn
            .query_row("SELECT session_id FROM sessions WHERE seq = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(kept, "s-old");
    }

    #[test]
    fn newer_schema_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        let e = open(&path, opts()).unwrap_err();
        assert!(
            matches!(
                e,
                AuditError::NewerSchema {
                    found: 99,
                    supported: SCHEMA_VERSION,
                    ..
                }
            ),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(text.contains("schema version 99"), "{text}");
        assert!(text.contains("\nhint: "), "{text}");
    }

    #[test]
    fn corrupt_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        std::fs::write(&path, vec![0x5au8; 8192]).unwrap();
        let e = open(&path, opts()).unwrap_err();
        assert!(matches!(e, AuditError::Corrupt { .. }), "{e:?}");
        assert!(e.to_string().contains("\nhint: "));
    }

    #[test]
    fn locked_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        drop(open(&path, opts()).unwrap());
        // Another "process" holds an exclusive lock.
        let holder = Connection::open(&path).unwrap();
        holder
            .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; INSERT INTO meta VALUES ('x', 'y');")
            .unwrap();
        let e = open(&path, opts()).unwrap_err();
        assert!(matches!(e, AuditError::Locked { .. }), "{e:?}");
        assert!(e.to_string().contains("locked by another process"));
    }

    #[test]
    fn read_only_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        {
            // An old file that needs a migration, opened where it cannot be written.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(migrations()[0].1).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let e = open(
            &path,
            OpenOptions {
                read_only: true,
                ..opts()
            },
        )
        .unwrap_err();
        assert!(matches!(e, AuditError::ReadOnly { .. }), "{e:?}");
        assert!(e.to_string().contains("read-only"));
    }

    #[cfg(unix)]
    #[test]
    fn write_protected_file_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        drop(open(&path, opts()).unwrap());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        if std::fs::OpenOptions::new().write(true).open(&path).is_ok() {
            // Running as root: permissions do not bind; `read_only_file_is_named` covers the path.
            return;
        }
        let e = open(&path, opts()).unwrap_err();
        assert!(matches!(e, AuditError::ReadOnly { .. }), "{e:?}");
    }

    #[test]
    fn missing_file_is_named_for_readers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let e = open(
            &path,
            OpenOptions {
                create: false,
                ..opts()
            },
        )
        .unwrap_err();
        assert!(matches!(e, AuditError::Missing { .. }), "{e:?}");
        assert!(!path.exists());
    }
}
