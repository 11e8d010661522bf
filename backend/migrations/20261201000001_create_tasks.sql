-- Every task the backend accepted and where it stands. Times are Unix
-- milliseconds; `result` is the task's JSON result as text. Written in the
-- SQL that SQLite and PostgreSQL both take (SQLite reads BIGINT as INTEGER
-- and has no JSON column type).
CREATE TABLE tasks (
    id         TEXT   NOT NULL PRIMARY KEY,
    type       TEXT   NOT NULL,
    status     TEXT   NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    result     TEXT,
    error      TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The retention clean-up deletes the oldest first.
CREATE INDEX tasks_created_at ON tasks (created_at);
