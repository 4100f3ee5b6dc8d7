-- lastmile audit database schema.
--
-- One SQLite file per profile (`audit.db` in the profile's data folder). Each `-- migration: N` block
-- upgrades a file at `PRAGMA user_version = N - 1` to version N; the blocks run in order, each in its
-- own transaction, so an older file is upgraded in place. Never edit a block that has shipped: add one.
--
-- NO COLUMN HOLDS A CREDENTIAL. There is no column for a token, a secret, an API key, a cookie or a
-- header. `jti` and `session_id` are identifiers (they name a token or session; they cannot be used to
-- authenticate). `arguments` and `error` are scrubbed by the gateway's redactor before they reach the
-- audit writer, and the writer masks anything shaped like a JWT in every text column as a second line of
-- defence. The HMAC key that chains the rows lives in the OS keyring, never in this file.
--
-- Tamper evidence: every audited row (tool_executions, sessions, edge_events) has a position `seq` in
-- one chain shared by the three tables and a `tag` = HMAC-SHA256(key, previous tag || canonical row).
-- The chain's head is vouched for outside this file: the MAC'd checkpoint `audit.head` beside it and a
-- MAC'd high-water mark in the OS keyring. The writer appends only to a database that still holds the
-- row each of them vouches for. (Version 1 had a `chain_head` cache table; nothing authenticated it and
-- version 3 drops it.)
--
-- The columns of the three audited tables are declared once, in src/audit/layout.rs; a test checks
-- that these migrations build exactly that layout.
-- Times are Unix milliseconds (UTC); durations are microseconds.

-- migration: 1

-- Small facts about the file (for example a check value that identifies the chain's key).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;

-- Where the chain ends (writer's cache; one row).
CREATE TABLE chain_head (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    tag BLOB NOT NULL
) STRICT;

-- Where the chain starts after `audit prune`: the position and tag of the last pruned row, MAC'd.
CREATE TABLE chain_anchor (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    seq          INTEGER NOT NULL,
    tag          BLOB NOT NULL,
    pruned_at_ms INTEGER NOT NULL,
    mac          BLOB NOT NULL
) STRICT;

-- One row per tool call the gateway answered (or refused).
CREATE TABLE tool_executions (
    seq            INTEGER PRIMARY KEY,           -- position in the chain
    execution_id   TEXT NOT NULL,                 -- UUID v7, made before the call, sent to the client
    started_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER NOT NULL,
    duration_us    INTEGER NOT NULL,
    session_id     TEXT NOT NULL,
    jti            TEXT,                          -- the token's id, never the token
    subject        TEXT,
    tier           TEXT NOT NULL,
    transport      TEXT NOT NULL,                 -- stdio | http
    server         TEXT NOT NULL,
    tool           TEXT NOT NULL,
    arguments      TEXT,                          -- JSON, scrubbed by the caller
    status         TEXT NOT NULL CHECK (status IN
                       ('ok', 'tool_error', 'error', 'timeout', 'cancelled', 'denied', 'rate_limited')),
    error          TEXT,                          -- scrubbed
    redactions     INTEGER NOT NULL,              -- how many secret values the redactor replaced
    tag            BLOB NOT NULL
) STRICT;

-- "What did this identity / session / token touch, and when": each is one index range scan.
CREATE INDEX tool_executions_subject ON tool_executions (subject, started_at_ms);
CREATE INDEX tool_executions_session ON tool_executions (session_id, started_at_ms);
CREATE INDEX tool_executions_jti     ON tool_executions (jti, started_at_ms);
CREATE INDEX tool_executions_started ON tool_executions (started_at_ms);
-- Not UNIQUE on purpose: no constraint may make a row impossible to store, or the writer would be
-- stuck retrying it. A repeated id (a gateway bug) is kept, visible, rather than refused.
CREATE INDEX tool_executions_execution ON tool_executions (execution_id);

-- Session events, append-only: `accepted` or `refused` when a session starts, `ended` when it ends.
CREATE TABLE sessions (
    seq           INTEGER PRIMARY KEY,
    session_id    TEXT NOT NULL,
    event         TEXT NOT NULL CHECK (event IN ('accepted', 'refused', 'ended')),
    reason        TEXT,                           -- the named reason (refusals, ends)
    mode          TEXT NOT NULL,                  -- required | optional | disabled
    subject       TEXT,
    tier          TEXT,
    jti           TEXT,
    expires_at_ms INTEGER,
    transport     TEXT NOT NULL,
    at_ms         INTEGER NOT NULL,
    tag           BLOB NOT NULL
) STRICT;

CREATE INDEX sessions_session ON sessions (session_id, at_ms);
CREATE INDEX sessions_subject ON sessions (subject, at_ms);
CREATE INDEX sessions_jti     ON sessions (jti, at_ms);
CREATE INDEX sessions_at      ON sessions (at_ms);

-- One row per session: how it started (accepted or refused, and why) and when it ended.
CREATE VIEW session_spans AS
SELECT s.session_id,
       s.event AS outcome,
       s.reason,
       s.mode,
       s.subject,
       s.tier,
       s.jti,
       s.expires_at_ms,
       s.transport,
       s.at_ms AS started_at_ms,
       (SELECT e.at_ms FROM sessions e
         WHERE e.session_id = s.session_id AND e.event = 'ended' ORDER BY e.seq LIMIT 1) AS ended_at_ms,
       (SELECT e.reason FROM sessions e
         WHERE e.session_id = s.session_id AND e.event = 'ended' ORDER BY e.seq LIMIT 1) AS end_reason
  FROM sessions s
 WHERE s.event IN ('accepted', 'refused');

-- migration: 2

-- Requests the HTTP edge turned away before they reached the gateway (scanner detector, bearer chain).
CREATE TABLE edge_events (
    seq                 INTEGER PRIMARY KEY,
    at_ms               INTEGER NOT NULL,
    check_name          TEXT NOT NULL,            -- which check fired: path, user_agent, velocity, auth, ...
    reason              TEXT NOT NULL,            -- its named reason
    method              TEXT NOT NULL,
    path                TEXT NOT NULL,            -- without the query string
    user_agent          TEXT,
    remote_addr         TEXT,
    requests_per_minute INTEGER,
    tag                 BLOB NOT NULL
) STRICT;

CREATE INDEX edge_events_at    ON edge_events (at_ms);
CREATE INDEX edge_events_check ON edge_events (check_name, at_ms);

-- migration: 3

-- Every forwarded request is audited, not only tool calls: `method` names the MCP method and `tool`
-- holds its target (tool name, prompt name or resource URI). Rows written before this column existed
-- were all `tools/call`; a row at that default MACs exactly as it did before, so they still verify.
ALTER TABLE tool_executions ADD COLUMN method TEXT NOT NULL DEFAULT 'tools/call';
CREATE INDEX tool_executions_method ON tool_executions (method, started_at_ms);

-- The writer now finds the chain's end in the rows themselves, checked against the vouched heads.
DROP TABLE chain_head;

-- migration: 4

-- The HTTP edge collapses a flood of denials (one client, one check, one window) into one row:
-- `count` is how many denials the row stands for. Rows written before were one denial each; a row
-- at that default MACs exactly as it did before, so they still verify.
ALTER TABLE edge_events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
