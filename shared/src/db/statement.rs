//! One SQL statement, run as a CLIENT span that follows the stable
//! OpenTelemetry database conventions.

use std::time::Instant;

use opentelemetry::trace::{SpanContext, Status};
use sqlx::{
    any::{AnyArguments, AnyRow},
    query::Query,
    Any, Encode, Executor, Type,
};
use tracing::{field::Empty, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{Database, DbError};
use crate::telemetry::InSpan as _;

/// A statement the code runs: its text (parameterised: `$1`, `$2`, ...; the
/// same text works on SQLite and PostgreSQL) and what the span says about it.
/// Declared as constants next to the code that owns the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statement {
    /// `db.operation.name`: `SELECT`, `INSERT`, `UPDATE`, `DELETE`, ...
    pub operation: &'static str,
    /// `db.collection.name`: the table (empty when there is none).
    pub collection: &'static str,
    /// `db.query.text`: the SQL, placeholders and never values.
    pub text: &'static str,
}

impl Statement {
    /// A statement whose text is built at run time (e.g. a multi-row INSERT
    /// for a batch size), kept for the life of the process: build each one
    /// once (there must be few of them) and reuse it.
    pub fn leak(operation: &'static str, collection: &'static str, text: String) -> &'static Self {
        Box::leak(Box::new(Self {
            operation,
            collection,
            text: Box::leak(text.into_boxed_str()),
        }))
    }

    /// The span name: `{operation} {collection}`, or the operation alone.
    pub fn span_name(&self) -> String {
        if self.collection.is_empty() {
            self.operation.to_string()
        } else {
            [self.operation, self.collection].join(" ")
        }
    }
}

/// A [`Statement`] with its arguments bound, ready to run on a pool or a
/// transaction (`db.query(&DELETE).bind(id).execute(db.writer())`).
pub struct TracedQuery<'d> {
    db: &'d Database,
    statement: &'static Statement,
    query: Query<'static, Any, AnyArguments>,
    links: Vec<SpanContext>,
}

impl<'d> TracedQuery<'d> {
    pub(super) fn new(db: &'d Database, statement: &'static Statement) -> Self {
        Self {
            db,
            statement,
            query: sqlx::query(statement.text),
            links: Vec::new(),
        }
    }

    /// Links the statement's span to other spans it serves too: one statement
    /// that does the work of several traces (a batch) is a child of one of
    /// them and linked to the others.
    pub fn linked_to(mut self, spans: Vec<SpanContext>) -> Self {
        self.links = spans;
        self
    }

    /// Binds the next `$n` argument.
    pub fn bind<T>(mut self, value: T) -> Self
    where
        T: 'static + Send + Encode<'static, Any> + Type<Any>,
    {
        self.query = self.query.bind(value);
        self
    }

    /// Runs it; the rows it changed.
    pub async fn execute<'c, E>(self, executor: E) -> Result<u64, DbError>
    where
        E: Executor<'c, Database = Any>,
    {
        self.run(|query| async move { query.execute(executor).await.map(|r| r.rows_affected()) })
            .await
    }

    /// Runs it; the first row, if any.
    pub async fn fetch_optional<'c, E>(self, executor: E) -> Result<Option<AnyRow>, DbError>
    where
        E: Executor<'c, Database = Any>,
    {
        self.run(|query| query.fetch_optional(executor)).await
    }

    /// Runs it; every row.
    pub async fn fetch_all<'c, E>(self, executor: E) -> Result<Vec<AnyRow>, DbError>
    where
        E: Executor<'c, Database = Any>,
    {
        self.run(|query| query.fetch_all(executor)).await
    }

    async fn run<T, F>(
        self,
        operation: impl FnOnce(Query<'static, Any, AnyArguments>) -> F,
    ) -> Result<T, DbError>
    where
        F: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        let Self {
            db,
            statement,
            query,
            links,
        } = self;
        db.traced(statement, links, operation(query)).await
    }
}

impl Database {
    /// Starts a query of `statement`; bind its arguments, then run it.
    pub fn query(&self, statement: &'static Statement) -> TracedQuery<'_> {
        TracedQuery::new(self, statement)
    }

    /// The CLIENT span of one statement, a child of the current span.
    pub(super) fn client_span(&self, statement: &Statement) -> Span {
        let target = &self.inner.target;
        let span = tracing::info_span!(
            "db",
            otel.name = statement.span_name().as_str(),
            otel.kind = "client",
            db.system.name = target.system.as_str(),
            db.namespace = target.namespace.as_str(),
            db.operation.name = statement.operation,
            db.collection.name = Empty,
            db.query.text = statement.text,
            server.address = Empty,
            server.port = Empty,
            db.response.status_code = Empty,
            error.type = Empty,
        );
        if !statement.collection.is_empty() {
            span.record("db.collection.name", statement.collection);
        }
        if let Some((host, port)) = &target.server {
            span.record("server.address", host.as_str());
            span.record("server.port", i64::from(*port));
        }
        span
    }

    /// Runs `operation` inside the CLIENT span of `statement`, bounded by the
    /// timeout, timed in the duration histogram; failures mark the span and
    /// may mark the database unavailable.
    pub(super) async fn traced<T>(
        &self,
        statement: &'static Statement,
        links: Vec<SpanContext>,
        operation: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, DbError> {
        let span = self.client_span(statement);
        for link in links {
            span.add_link(link);
        }
        let started = Instant::now();
        // Awaited inside the block so that a timed-out operation is also
        // dropped inside the span: sqlx logs a statement (a slow one at WARN)
        // when its logger drops.
        let bounded = async { tokio::time::timeout(self.inner.client_timeout, operation).await };
        let result = match bounded.in_span(&span).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(DbError::from(err)),
            Err(_) => Err(DbError::Timeout(self.inner.client_timeout)),
        };
        self.inner.metrics.observe(
            self.inner.target.system,
            statement,
            started.elapsed(),
            &span,
        );
        match &result {
            Ok(_) => self.observe_success(),
            Err(err) => {
                span.record("error.type", err.error_type().as_ref());
                if let Some(code) = err.sqlstate() {
                    span.record("db.response.status_code", code.as_str());
                }
                span.set_status(Status::error(err.to_string()));
                self.observe_failure(err);
            }
        }
        result
    }
}
