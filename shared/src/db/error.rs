//! What can go wrong with a statement, and which failures mean "the database
//! is unavailable" (try again later) rather than "this statement is wrong".

use std::{borrow::Cow, time::Duration};

/// Why a statement did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No answer in time (a connection, or the statement itself).
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
    /// The driver or the database reported an error.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
}

impl DbError {
    /// Whether the database is down, unreachable, overloaded or too slow:
    /// nothing about the statement itself, so the same work can succeed
    /// later (HTTP 503; a status report is redelivered).
    pub fn is_unavailable(&self) -> bool {
        let err = match self {
            Self::Timeout(_) => return true,
            Self::Sqlx(err) => err,
        };
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::BeginFailed => true,
            sqlx::Error::Database(db) => {
                let sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some();
                db.code().is_some_and(|code| match sqlite {
                    true => unavailable_sqlite_code(&code),
                    false => unavailable_sqlstate(&code),
                })
            }
            _ => false,
        }
    }

    /// `error.type`: the database's own code where it gave one (SQLSTATE, or
    /// SQLite's result code), else the kind of client failure.
    pub fn error_type(&self) -> Cow<'static, str> {
        let err = match self {
            Self::Timeout(_) => return "timeout".into(),
            Self::Sqlx(err) => err,
        };
        match err {
            sqlx::Error::Database(db) => db
                .code()
                .map(|code| Cow::Owned(code.into_owned()))
                .unwrap_or("database_error".into()),
            sqlx::Error::Io(_) => "io".into(),
            sqlx::Error::Tls(_) => "tls".into(),
            sqlx::Error::Protocol(_) => "protocol".into(),
            sqlx::Error::PoolTimedOut => "pool_timed_out".into(),
            sqlx::Error::PoolClosed => "pool_closed".into(),
            sqlx::Error::WorkerCrashed => "worker_crashed".into(),
            sqlx::Error::RowNotFound => "row_not_found".into(),
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => "decode".into(),
            sqlx::Error::Encode(_) => "encode".into(),
            _ => "_OTHER".into(),
        }
    }

    /// `db.response.status_code`: the database's own error code, if any.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            Self::Sqlx(sqlx::Error::Database(db)) => db.code().map(Cow::into_owned),
            _ => None,
        }
    }
}

/// PostgreSQL SQLSTATEs that say the server cannot serve now: connection
/// exceptions (class 08), out of resources (53xxx, too many connections
/// among them), shutting down or starting up (57P01-57P03), a cancelled
/// statement (57014: `statement_timeout`), and a transaction that lost a
/// deadlock or serialization conflict (40P01, 40001: trying again works).
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || matches!(code, "57014" | "40P01" | "40001")
}

/// SQLite result codes that say the file cannot be used now: busy or locked
/// past the busy timeout (5, 6), I/O errors (10), a full disk (13), a file it
/// cannot open (14). Extended codes keep the primary code in the low byte.
fn unavailable_sqlite_code(code: &str) -> bool {
    code.parse::<i32>()
        .is_ok_and(|code| matches!(code & 0xff, 5 | 6 | 10 | 13 | 14))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_and_slowness_are_unavailability_and_bad_statements_are_not() {
        assert!(DbError::Timeout(Duration::from_secs(1)).is_unavailable());
        assert!(DbError::Sqlx(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(DbError::Sqlx(sqlx::Error::Io(
            std::io::ErrorKind::ConnectionRefused.into()
        ))
        .is_unavailable());
        assert!(!DbError::Sqlx(sqlx::Error::RowNotFound).is_unavailable());
        for code in [
            "08006", "57P01", "57P03", "57014", "53300", "40P01", "40001",
        ] {
            assert!(unavailable_sqlstate(code), "{code}");
        }
        // Five-digit SQLSTATEs that would read as SQLite busy/IO codes.
        for code in [
            "23505", "42P01", "42501", "22021", "22022", "22026", "22030",
        ] {
            assert!(!unavailable_sqlstate(code), "{code}");
        }
        for code in ["5", "517", "6", "10", "13", "14"] {
            assert!(unavailable_sqlite_code(code), "{code}");
        }
        for code in ["1", "19", "2067"] {
            assert!(!unavailable_sqlite_code(code), "{code}");
        }
    }
}
