//! The audited tables' row layouts, written once. Each table is one typed row struct, declared in
//! [`tables!`] below; from that one declaration come the column list, the `INSERT` and `SELECT`
//! statements, the bytes the chain MACs ([`canonical`]) and the mapping of a read row back into the
//! struct. `schemas/audit.sql` holds the migrations that build these tables; a test checks that
//! what they build is exactly what is declared here, so the two cannot drift.

use rusqlite::ToSql;
use rusqlite::types::{FromSql, ToSqlOutput, ValueRef};

/// A column's SQLite type (the tables are `STRICT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColType {
    Int,
    Text,
}

impl ColType {
    #[cfg_attr(not(test), allow(dead_code))] // the schema test compares it with SQLite's word
    pub(crate) fn sql(self) -> &'static str {
        match self {
            ColType::Int => "INTEGER",
            ColType::Text => "TEXT",
        }
    }
}

/// One column of an audited table (besides `seq` and `tag`, which every audited table has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Column {
    pub name: &'static str,
    pub ty: ColType,
    pub not_null: bool,
    /// For a column added after rows were already chained: the value those rows have (its SQL
    /// `DEFAULT`, written as text; an integer column's is its decimal digits). A row holding
    /// exactly this value MACs as if the column did not exist, so rows written before the column
    /// was added still verify.
    pub added_with_default: Option<&'static str>,
}

impl Column {
    /// Whether `v` is this added column's default.
    fn holds_default(&self, v: ValRef<'_>) -> bool {
        match (self.added_with_default, v) {
            (Some(d), ValRef::Text(s)) => self.ty == ColType::Text && s == d,
            (Some(d), ValRef::Int(i)) => self.ty == ColType::Int && d.parse::<i64>() == Ok(i),
            _ => false,
        }
    }

    /// The default as SQLite reports it (`'text'` quoted, integers bare).
    #[cfg_attr(not(test), allow(dead_code))] // the schema test compares it with SQLite's
    pub(crate) fn sql_default(&self) -> Option<String> {
        self.added_with_default.map(|d| match self.ty {
            ColType::Text => format!("'{d}'"),
            ColType::Int => d.to_string(),
        })
    }
}

/// One audited table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableDef {
    pub name: &'static str,
    /// What `audit export` calls a row of it.
    pub kind: &'static str,
    /// The column whose value is the row's time (prune and `--since` use it).
    pub time_column: &'static str,
    /// Every MAC'd column, in chain order.
    pub columns: &'static [Column],
}

/// A borrowed column value: what is inserted and what is MAC'd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValRef<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

impl ToSql for ValRef<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            ValRef::Null => ValueRef::Null,
            ValRef::Int(i) => ValueRef::Integer(i),
            ValRef::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

/// An owned column value, as read back by the chain walk (which must accept whatever the file
/// holds, so it does not use the typed rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl Val {
    pub(crate) fn view(&self) -> ValRef<'_> {
        match self {
            Val::Null => ValRef::Null,
            Val::Int(i) => ValRef::Int(*i),
            Val::Text(s) => ValRef::Text(s),
        }
    }

    pub(crate) fn from_sql(v: ValueRef<'_>) -> Val {
        match v {
            ValueRef::Null => Val::Null,
            ValueRef::Integer(i) => Val::Int(i),
            ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
            // Not written by lastmile: encode so that it can never match what was MAC'd.
            ValueRef::Real(r) => Val::Text(format!("\u{0}real:{r}")),
            ValueRef::Blob(b) => Val::Text(format!("\u{0}blob:{}", super::chain::hex(b))),
        }
    }
}

impl ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// A Rust type a row field may have, and the column it makes.
pub(crate) trait ColumnValue: FromSql {
    const TYPE: ColType;
    const NOT_NULL: bool;
    fn val(&self) -> ValRef<'_>;
}

impl ColumnValue for String {
    const TYPE: ColType = ColType::Text;
    const NOT_NULL: bool = true;
    fn val(&self) -> ValRef<'_> {
        ValRef::Text(self)
    }
}

impl ColumnValue for Option<String> {
    const TYPE: ColType = ColType::Text;
    const NOT_NULL: bool = false;
    fn val(&self) -> ValRef<'_> {
        self.as_deref().map_or(ValRef::Null, ValRef::Text)
    }
}

impl ColumnValue for i64 {
    const TYPE: ColType = ColType::Int;
    const NOT_NULL: bool = true;
    fn val(&self) -> ValRef<'_> {
        ValRef::Int(*self)
    }
}

impl ColumnValue for Option<i64> {
    const TYPE: ColType = ColType::Int;
    const NOT_NULL: bool = false;
    fn val(&self) -> ValRef<'_> {
        self.map_or(ValRef::Null, ValRef::Int)
    }
}

/// A column holding one of a few fixed words (a tier, a transport, a status): the writer stores
/// the `&'static str` without allocating; a row read back owns its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Label(std::borrow::Cow<'static, str>);

impl Label {
    pub(crate) fn into_string(self) -> String {
        self.0.into_owned()
    }
}

impl From<&'static str> for Label {
    fn from(word: &'static str) -> Self {
        Label(std::borrow::Cow::Borrowed(word))
    }
}

impl FromSql for Label {
    fn column_result(value: ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        String::column_result(value).map(|s| Label(std::borrow::Cow::Owned(s)))
    }
}

impl ColumnValue for Label {
    const TYPE: ColType = ColType::Text;
    const NOT_NULL: bool = true;
    fn val(&self) -> ValRef<'_> {
        ValRef::Text(&self.0)
    }
}

/// Declares the audited tables: for each, a row struct whose fields are its columns in chain order.
macro_rules! tables {
    ($(
        $(#[$doc:meta])*
        $variant:ident($row:ident) = $name:literal, kind $kind:literal, time $time:ident {
            $( $(#[$cdoc:meta])* $col:ident : $ty:ty $(= added with default $default:literal)? ),+ $(,)?
        }
    )+) => {
        /// The audited tables. They share one chain: `seq` is unique across all of them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Table { $($variant),+ }

        impl Table {
            pub(crate) const ALL: [Table; [$(Table::$variant),+].len()] = [$(Table::$variant),+];

            pub(crate) fn def(self) -> &'static TableDef {
                match self { $(Table::$variant => &$row::DEF),+ }
            }
        }

        $(
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq, Eq)]
            pub(crate) struct $row { $( $(#[$cdoc])* pub $col: $ty, )+ }

            impl $row {
                pub(crate) const DEF: TableDef = TableDef {
                    name: $name,
                    kind: $kind,
                    time_column: stringify!($time),
                    columns: &[$(Column {
                        name: stringify!($col),
                        ty: <$ty as ColumnValue>::TYPE,
                        not_null: <$ty as ColumnValue>::NOT_NULL,
                        added_with_default: tables!(@default $($default)?),
                    }),+],
                };

                /// The column values, in chain order, appended to `out` (a buffer the writer
                /// reuses for every row).
                pub(crate) fn push_values<'a>(&'a self, out: &mut Vec<ValRef<'a>>) {
                    $(out.push(self.$col.val());)+
                }

                /// Read a row selected with [`TableDef::select_columns`], its first column at `first`.
                #[allow(unused_assignments, dead_code)] // not every table is read back typed
                pub(crate) fn from_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Self> {
                    let mut i = first;
                    Ok($row { $($col: { let v = r.get(i)?; i += 1; v },)+ })
                }
            }
        )+
    };
    (@default) => { None };
    (@default $d:literal) => { Some($d) };
}

tables! {
    /// One request the gateway answered or refused: a tool call, or any other forwarded request.
    Executions(ExecRow) = "tool_executions", kind "tool_execution", time started_at_ms {
        /// UUID v7, made before the call and sent to the client.
        execution_id: String,
        started_at_ms: i64,
        finished_at_ms: i64,
        duration_us: i64,
        session_id: String,
        /// The token's id, never the token.
        jti: Option<String>,
        subject: Option<String>,
        tier: Label,
        transport: Label,
        server: String,
        /// The target: the tool's name on its server, a prompt's name, or a resource URI.
        tool: String,
        /// JSON, scrubbed by the caller (tool calls only).
        arguments: Option<String>,
        status: Label,
        error: Option<String>,
        redactions: i64,
        /// The MCP method (`tools/call`, `resources/read`, ...); added in schema version 3.
        method: String = added with default "tools/call",
    }

    /// Session events, append-only.
    Sessions(SessionRow) = "sessions", kind "session", time at_ms {
        session_id: String,
        event: String,
        reason: Option<String>,
        mode: String,
        subject: Option<String>,
        tier: Option<String>,
        jti: Option<String>,
        expires_at_ms: Option<i64>,
        transport: String,
        at_ms: i64,
    }

    /// Requests the HTTP edge turned away.
    Edge(EdgeRow) = "edge_events", kind "edge_event", time at_ms {
        at_ms: i64,
        check_name: String,
        reason: String,
        method: String,
        path: String,
        user_agent: Option<String>,
        remote_addr: Option<String>,
        requests_per_minute: Option<i64>,
        /// How many denials the row stands for (a flood collapsed); added in schema version 4.
        count: i64 = added with default "1",
    }
}

impl Table {
    pub(crate) fn name(self) -> &'static str {
        self.def().name
    }

    pub(crate) fn columns(self) -> &'static [Column] {
        self.def().columns
    }

    /// `col, col, ...` in chain order.
    pub(crate) fn select_columns(self) -> String {
        let names: Vec<&str> = self.columns().iter().map(|c| c.name).collect();
        names.join(", ")
    }

    /// The table's position in [`Table::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn insert_sql(self) -> String {
        let n = self.columns().len();
        let marks: Vec<String> = (1..=n + 2).map(|i| format!("?{i}")).collect();
        format!(
            "INSERT INTO {} (seq, {}, tag) VALUES ({})",
            self.name(),
            self.select_columns(),
            marks.join(", ")
        )
    }

    /// Every row: `seq`, the columns in chain order, `tag`.
    pub(crate) fn select_sql(self) -> String {
        format!(
            "SELECT seq, {}, tag FROM {} ORDER BY seq",
            self.select_columns(),
            self.name()
        )
    }
}

/// A row ready to be chained and inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PreparedRow {
    Executions(ExecRow),
    Sessions(SessionRow),
    Edge(EdgeRow),
}

impl PreparedRow {
    pub(crate) fn table(&self) -> Table {
        match self {
            PreparedRow::Executions(_) => Table::Executions,
            PreparedRow::Sessions(_) => Table::Sessions,
            PreparedRow::Edge(_) => Table::Edge,
        }
    }

    /// The column values, in chain order, appended to `out`.
    pub(crate) fn push_values<'a>(&'a self, out: &mut Vec<ValRef<'a>>) {
        match self {
            PreparedRow::Executions(r) => r.push_values(out),
            PreparedRow::Sessions(r) => r.push_values(out),
            PreparedRow::Edge(r) => r.push_values(out),
        }
    }
}

/// The bytes a row's tag covers: table, position, then each column with a type byte and length.
/// A column added later is left out while it holds the default older rows have, and otherwise
/// carries its name, so no two different rows encode alike.
pub(crate) fn canonical<'a>(
    table: Table,
    seq: i64,
    values: impl IntoIterator<Item = ValRef<'a>>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    canonical_into(&mut out, table, seq, values);
    out
}

/// [`canonical`] written into `out` (cleared first), so the writer reuses one buffer.
pub(crate) fn canonical_into<'a>(
    out: &mut Vec<u8>,
    table: Table,
    seq: i64,
    values: impl IntoIterator<Item = ValRef<'a>>,
) {
    fn value(out: &mut Vec<u8>, v: ValRef<'_>) {
        match v {
            ValRef::Null => out.push(0),
            ValRef::Int(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_be_bytes());
            }
            ValRef::Text(s) => {
                out.push(2);
                out.extend_from_slice(&(s.len() as u64).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
    out.clear();
    out.extend_from_slice(table.name().as_bytes());
    out.push(0);
    out.extend_from_slice(&seq.to_be_bytes());
    for (col, v) in table.columns().iter().zip(values) {
        match col.added_with_default {
            None => value(out, v),
            Some(_) if col.holds_default(v) => {}
            Some(_) => {
                out.push(0xff);
                out.extend_from_slice(&(col.name.len() as u64).to_be_bytes());
                out.extend_from_slice(col.name.as_bytes());
                value(out, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::db;

    /// What SQLite says a table's columns are: name → (type, not null, default).
    fn table_info(
        conn: &rusqlite::Connection,
        table: &str,
    ) -> std::collections::BTreeMap<String, (String, bool, Option<String>)> {
        let mut stmt = conn
            .prepare(&format!("PRAGMA table_info({table})"))
            .unwrap();
        stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(1)?,
                (
                    r.get::<_, String>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ),
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    fn assert_matches_layout(conn: &rusqlite::Connection) {
        for t in Table::ALL {
            let info = table_info(conn, t.name());
            let mut want = std::collections::BTreeMap::new();
            want.insert("seq".to_string(), ("INTEGER".to_string(), false, None));
            want.insert("tag".to_string(), ("BLOB".to_string(), true, None));
            for c in t.columns() {
                want.insert(
                    c.name.to_string(),
                    (c.ty.sql().to_string(), c.not_null, c.sql_default()),
                );
            }
            assert_eq!(
                info,
                want,
                "schemas/audit.sql and layout.rs disagree on {}",
                t.name()
            );
            let time = t.def().time_column;
            assert!(t.columns().iter().any(|c| c.name == time), "{time}");
        }
    }

    #[test]
    fn the_schema_builds_exactly_the_declared_layout() {
        let dir = tempfile::tempdir().unwrap();
        let conn = db::open(&dir.path().join("audit.db"), db::OpenOptions::default()).unwrap();
        assert_matches_layout(&conn);
    }

    #[test]
    fn an_upgraded_file_has_the_declared_layout_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            for (v, sql) in db::migrations().into_iter().take(2) {
                conn.execute_batch(sql).unwrap();
                conn.pragma_update(None, "user_version", v).unwrap();
            }
        }
        let conn = db::open(&path, db::OpenOptions::default()).unwrap();
        assert_matches_layout(&conn);
    }

    #[test]
    fn a_table_index_is_its_position_in_all() {
        for (i, t) in Table::ALL.iter().enumerate() {
            assert_eq!(t.index(), i);
        }
    }

    #[test]
    fn canonical_into_clears_its_reused_buffer() {
        let long = [
            ValRef::Text("a value longer than the next row's"),
            ValRef::Int(3),
        ];
        let short = [ValRef::Null];
        let mut buf = Vec::new();
        canonical_into(&mut buf, Table::Sessions, 1, long);
        assert_eq!(buf, canonical(Table::Sessions, 1, long));
        canonical_into(&mut buf, Table::Sessions, 2, short);
        assert_eq!(buf, canonical(Table::Sessions, 2, short));
    }

    #[test]
    fn a_label_is_stored_and_read_back_as_its_text() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let label = Label::from("tools/call");
        assert_eq!(label.val(), ValRef::Text("tools/call"));
        let back: Label = conn
            .query_row("SELECT ?1", [&label.val()], |r| r.get(0))
            .unwrap();
        assert_eq!(back, label);
        assert_eq!(back.into_string(), "tools/call");
    }

    #[test]
    fn canonical_separates_null_from_empty_and_int_from_text() {
        let a = canonical(Table::Sessions, 1, [ValRef::Null]);
        let b = canonical(Table::Sessions, 1, [ValRef::Text("")]);
        let c = canonical(Table::Sessions, 1, [ValRef::Int(1)]);
        let d = canonical(Table::Sessions, 1, [ValRef::Text("1")]);
        let e = canonical(Table::Sessions, 2, [ValRef::Null]);
        let f = canonical(Table::Edge, 1, [ValRef::Null]);
        let all = [a, b, c, d, e, f];
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j], "{i} vs {j}");
            }
        }
    }

    #[test]
    fn an_added_column_at_its_default_macs_as_before_and_otherwise_differently() {
        let n = Table::Executions.columns().len();
        let base: Vec<ValRef<'_>> = (0..n - 1).map(|_| ValRef::Int(7)).collect();
        let as_v2 = canonical(Table::Executions, 3, base.iter().copied());
        let with = |m: &'static str| {
            let mut v = base.clone();
            v.push(ValRef::Text(m));
            canonical(Table::Executions, 3, v)
        };
        assert_eq!(with("tools/call"), as_v2);
        // The same for an integer column: `edge_events.count`, added with default 1.
        let m = Table::Edge.columns().len();
        let edge: Vec<ValRef<'_>> = (0..m - 1).map(|_| ValRef::Int(7)).collect();
        let as_v3 = canonical(Table::Edge, 3, edge.iter().copied());
        let count = |n: i64| {
            let mut v = edge.clone();
            v.push(ValRef::Int(n));
            canonical(Table::Edge, 3, v)
        };
        assert_eq!(count(1), as_v3);
        assert_ne!(count(2), as_v3);
        assert_ne!(count(2), count(3));
        assert_ne!(with("resources/read"), as_v2);
        assert_ne!(with("resources/read"), with("prompts/get"));
    }
}
