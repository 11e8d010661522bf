//! Task state in a real database: it survives a backend killed mid-stream
//! (SQLite by default, and PostgreSQL), is shared by backend replicas on one
//! PostgreSQL, rides out a database outage or a slow database with 503s and
//! no lost task, and every statement is a CLIENT span in the request's trace.

use std::time::{Duration, Instant};

use e2e_tests::{
    eventually,
    platform::{assert_refused_at_start, bin_dir},
    trace::{assert_attr, assert_kind},
    DbKind, Lazy, Platform, PlatformOptions, PrivatePostgres, Service, SpanKind, Trace,
};
use serde_json::{json, Value};
use sqlx::{postgres::PgConnection, Connection, Executor, Row};
use tokio::sync::watch;

const TRACE: &str = "5bf92f3577b34da6a3ce929d0e0e4736";

fn options(database: DbKind) -> PlatformOptions {
    PlatformOptions {
        database,
        ..PlatformOptions::default()
    }
}

async fn post(http: &reqwest::Client, base: &str, task: &Value) -> reqwest::Response {
    http.post(format!("{base}/api/tasks"))
        .json(task)
        .send()
        .await
        .unwrap()
}

async fn get_task(http: &reqwest::Client, base: &str, id: &str) -> (u16, Value) {
    let response = http
        .get(format!("{base}/api/tasks/{id}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until every task in `ids` is `succeeded` when read from `base`.
async fn wait_all_succeeded(
    http: &reqwest::Client,
    base: &str,
    ids: &[String],
    logs: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in ids {
        let left = deadline.saturating_duration_since(Instant::now());
        let what = Lazy(|| format!("task {id} succeeded; logs:\n{}", logs()));
        eventually(left, what, || async {
            let (status, body) = get_task(http, base, id).await;
            if status == 200 && body["status"] == "succeeded" {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        })
        .await;
    }
}

/// Posts tasks one after another through the gateway until `stop` says so;
/// returns the ids that got a 202 and how many did not.
fn post_continuously(
    http: reqwest::Client,
    base: String,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<(Vec<String>, usize)> {
    tokio::spawn(async move {
        let (mut accepted, mut refused) = (Vec::new(), 0);
        let mut n = 0u32;
        while !*stop.borrow_and_update() {
            n += 1;
            // Every third task runs a while, so that its reports come in
            // while the backend is gone.
            let task = if n.is_multiple_of(3) {
                json!({"type": "sleep", "payload": {"ms": 400}})
            } else {
                json!({"type": "echo", "payload": {"n": n}})
            };
            match http
                .post(format!("{base}/api/tasks"))
                .json(&task)
                .send()
                .await
            {
                Ok(response) if response.status() == 202 => {
                    let body: Value = response.json().await.unwrap();
                    accepted.push(body["id"].as_str().unwrap().to_string());
                }
                _ => {
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        (accepted, refused)
    })
}

async fn a_backend_killed_mid_stream_loses_no_accepted_task(database: DbKind, default_url: bool) {
    let mut options = options(database);
    if default_url {
        // No DATABASE_URL: the default file under data/ of the working directory.
        options
            .service_env
            .push((Service::Backend, "DATABASE_URL".into(), String::new()));
    }
    let mut platform = Platform::start_with("kill-backend", options).await;
    let (stop, stopped) = watch::channel(false);
    let poster = post_continuously(platform.http.clone(), platform.url(""), stopped);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    platform.backend.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    platform.backend.start_again().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.send(true).unwrap();
    let (accepted, refused) = poster.await.unwrap();

    assert!(
        accepted.len() > 20,
        "only {} tasks accepted",
        accepted.len()
    );
    assert!(refused > 0, "no POST met the dead backend");
    if default_url {
        let log_dir = platform.backend.log_path.parent().unwrap().to_path_buf();
        assert!(
            log_dir.join("data/backend.db").exists(),
            "the default database is data/backend.db of the working directory"
        );
    }
    let logs = || platform.backend.logs();
    wait_all_succeeded(&platform.http, &platform.url(""), &accepted, logs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_sqlite_file_every_accepted_task_survives_a_backend_killed_mid_stream() {
    a_backend_killed_mid_stream_loses_no_accepted_task(DbKind::Sqlite, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgresql_every_accepted_task_survives_a_backend_killed_mid_stream() {
    a_backend_killed_mid_stream_loses_no_accepted_task(DbKind::Postgres, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_on_one_postgresql_share_every_task_and_one_may_die() {
    let mut platform = Platform::start_with("replicas", options(DbKind::Postgres)).await;
    let second = platform.spawn_backend().await;
    let http = platform.http.clone();

    // Posted through the gateway's backend, readable at once through the other.
    let mut ids = Vec::new();
    for n in 0u32..12 {
        let task = if n.is_multiple_of(2) {
            json!({"type": "sleep", "payload": {"ms": 300}})
        } else {
            json!({"type": "echo", "payload": {"n": n}})
        };
        let body = platform.post_task(task).await;
        let id = body["id"].as_str().unwrap().to_string();
        let (status, seen) = get_task(&http, &second.url(), &id).await;
        assert_eq!(status, 200, "{seen}");
        assert_eq!(seen["id"], id.as_str());
        ids.push(id);
    }
    // And the other way round.
    let direct = post(
        &http,
        &second.url(),
        &json!({"type": "echo", "payload": {}}),
    )
    .await;
    assert_eq!(direct.status(), 202);
    let direct: Value = direct.json().await.unwrap();
    ids.push(direct["id"].as_str().unwrap().to_string());
    let (status, _) = get_task(&http, &platform.url(""), &ids[12]).await;
    assert_eq!(status, 200);

    // One replica dies with reports in flight; the other finishes the job.
    platform.backend.kill();
    wait_all_succeeded(&http, &second.url(), &ids, || second.logs()).await;
    let (_, hashed) = get_task(&http, &second.url(), &ids[0]).await;
    assert_eq!(hashed["result"], json!({"slept_ms": 300}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_drops_readiness_and_loses_no_task() {
    let server = PrivatePostgres::start("outage");
    server.create_database("backend").await;
    let platform = Platform::start_with(
        "db-outage",
        PlatformOptions {
            service_env: vec![
                (
                    Service::Backend,
                    "DATABASE_URL".into(),
                    server.url("backend"),
                ),
                (
                    Service::Backend,
                    "DATABASE_TIMEOUT_MS".into(),
                    "1000".into(),
                ),
            ],
            worker_concurrency: 4,
            ..PlatformOptions::default()
        },
    )
    .await;
    let http = platform.http.clone();
    let backend = platform.backend.url();

    // Work in hand when the database goes: its reports arrive during the outage.
    let mut ids = Vec::new();
    for _ in 0..4 {
        let body = platform
            .post_task(json!({"type": "sleep", "payload": {"ms": 1200}}))
            .await;
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    server.stop();
    while_the_database_is_down_posts_reads_and_readiness_answer_503(&platform, &ids[0]).await;
    // The sleeps end and report while the database is still down.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    server.start_again();
    // The pool reconnects by itself.
    let accepted: Value = eventually(
        Duration::from_secs(20),
        "a 202 after the database is back",
        || async {
            let response = post(&http, &platform.url(""), &json!({"type": "echo"})).await;
            match response.status().as_u16() {
                202 => Ok(response.json().await.unwrap()),
                status => Err(format!("{status}")),
            }
        },
    )
    .await;
    ids.push(accepted["id"].as_str().unwrap().to_string());
    wait_all_succeeded(&http, &backend, &ids, || platform.backend.logs()).await;
    let ready = http.get(format!("{backend}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let logs = platform.backend.logs();
    assert_eq!(logs.matches("database unavailable").count(), 1, "{logs}");
    assert_eq!(
        logs.matches("database available again").count(),
        1,
        "{logs}"
    );
}

/// POSTs and reads get a prompt 503 `storage_unavailable`, never a 202, and
/// the backend is not ready.
async fn while_the_database_is_down_posts_reads_and_readiness_answer_503(
    platform: &Platform,
    task_id: &str,
) {
    let http = &platform.http;
    let backend = platform.backend.url();
    for _ in 0..3 {
        let started = Instant::now();
        let response = post(http, &platform.url(""), &json!({"type": "echo"})).await;
        assert_eq!(response.status(), 503);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
    }
    let ready = http.get(format!("{backend}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["error"]["code"], "storage_unavailable");
    let (status, body) = get_task(http, &backend, task_id).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("storage_unavailable"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_database_answers_503_within_the_timeout_and_stores_nothing() {
    let platform = Platform::start_with(
        "db-slow",
        PlatformOptions {
            database: DbKind::Postgres,
            service_env: vec![(Service::Backend, "DATABASE_TIMEOUT_MS".into(), "800".into())],
            ..PlatformOptions::default()
        },
    )
    .await;
    let mut locker = PgConnection::connect(platform.backend_db.url())
        .await
        .unwrap();
    locker.execute("BEGIN").await.unwrap();
    locker
        .execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let started = Instant::now();
    let response = platform
        .http
        .post(platform.url("/api/tasks"))
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(&json!({"type": "echo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");

    locker.execute("ROLLBACK").await.unwrap();
    let accepted = platform.post_task(json!({"type": "echo"})).await;
    let stored: i64 = locker
        .fetch_one("SELECT COUNT(*) FROM tasks")
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "only the accepted task exists");
    platform
        .wait_for_task(accepted["id"].as_str().unwrap(), Duration::from_secs(20))
        .await;

    // The statement the server cancelled is an ERROR span with its SQLSTATE.
    let trace = platform
        .collector
        .wait_for_trace(TRACE, Duration::from_secs(20), |t| {
            t.has("backend-service", "INSERT tasks")
        })
        .await;
    let insert = trace.find("backend-service", "INSERT tasks");
    assert!(insert.is_error(), "{insert:?}");
    assert_attr(insert, "error.type", "57014");
    assert_attr(insert, "db.response.status_code", "57014");
}

async fn statements_are_client_spans_under_the_span_that_issued_them(database: DbKind) {
    let platform = Platform::start_with("db-spans", options(database)).await;
    let response = platform
        .http
        .post(platform.url("/api/tasks"))
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(&json!({"type": "echo", "payload": {"secret": "do-not-log-me"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    platform.wait_for_task(&id, Duration::from_secs(20)).await;
    let trace = platform
        .collector
        .wait_for_trace(TRACE, Duration::from_secs(20), |t| {
            // The worker exports its report span in its own batches.
            t.has("backend-service", "UPDATE tasks")
                && t.has("backend-service", "COMMIT")
                && t.has("worker-service", "report-status")
        })
        .await;

    let system = the_tasks_statements_are_client_spans(&platform, &trace, &id, database);
    a_product_lookup_is_a_select_under_catalog_lookup(&platform, system).await;
}

/// INSERT under `store-task`, UPDATE and COMMIT under
/// `apply-status-update`, with the database conventions' attributes and no
/// values in the query text; the `db.system.name`.
fn the_tasks_statements_are_client_spans(
    platform: &Platform,
    trace: &Trace,
    id: &str,
    database: DbKind,
) -> &'static str {
    let (system, namespace) = match database {
        DbKind::Sqlite => (
            "sqlite",
            platform
                .backend_db
                .url()
                .trim_start_matches("sqlite://")
                .to_string(),
        ),
        DbKind::Postgres => ("postgresql", platform.backend_db.name().to_string()),
    };
    let insert = trace.find("backend-service", "INSERT tasks");
    assert_kind(insert, SpanKind::Client);
    trace.assert_child_of(insert, trace.find("backend-service", "store-task"));
    assert_attr(insert, "db.system.name", system);
    assert_attr(insert, "db.namespace", &namespace);
    assert_attr(insert, "db.operation.name", "INSERT");
    assert_attr(insert, "db.collection.name", "tasks");
    let text = insert.attr("db.query.text").unwrap();
    assert!(
        text.starts_with("INSERT INTO tasks") && text.contains("$1"),
        "{text}"
    );
    for statement in trace
        .spans()
        .iter()
        .filter(|s| s.attr("db.query.text").is_some())
    {
        let text = statement.attr("db.query.text").unwrap();
        assert!(
            !text.contains(id) && !text.contains("do-not-log-me"),
            "values never go into db.query.text: {text}"
        );
    }
    match database {
        DbKind::Postgres => {
            let server = url::Url::parse(platform.backend_db.url()).unwrap();
            assert_attr(insert, "server.address", server.host_str().unwrap());
            let port = server.port().unwrap_or(5432).to_string();
            assert_attr(insert, "server.port", &port);
        }
        DbKind::Sqlite => assert_eq!(insert.attr("server.address"), None),
    }
    assert!(!insert.is_error());

    for update in trace.find_all("backend-service", "UPDATE tasks") {
        assert_kind(update, SpanKind::Client);
        let apply = trace
            .by_id(&update.parent_span_id)
            .expect("parent of UPDATE tasks");
        assert_eq!(apply.name, "apply-status-update");
        // Under the worker's report, in the task's own trace.
        let reporter = trace
            .by_id(&apply.parent_span_id)
            .expect("parent of apply-status-update");
        assert_eq!(reporter.name, "report-status");
        assert_eq!(apply.int_attr("task.attempt"), Some(1));
        assert_eq!(reporter.int_attr("task.attempt"), Some(1));
        assert_attr(update, "db.operation.name", "UPDATE");
    }
    let commit = trace.find("backend-service", "COMMIT");
    assert_kind(commit, SpanKind::Client);
    assert_eq!(
        trace.by_id(&commit.parent_span_id).unwrap().name,
        "apply-status-update"
    );
    system
}

/// A product lookup: `SELECT products`, a CLIENT span under
/// `catalog-lookup`.
async fn a_product_lookup_is_a_select_under_catalog_lookup(platform: &Platform, system: &str) {
    let response = platform
        .http
        .get(platform.url("/api/products?category=books&limit=2"))
        .header(
            "traceparent",
            "00-6bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["total"], 5);
    let products = platform
        .collector
        .wait_for_trace(
            "6bf92f3577b34da6a3ce929d0e0e4736",
            Duration::from_secs(20),
            |t| t.has("product-service", "SELECT products"),
        )
        .await;
    let select = products.find("product-service", "SELECT products");
    assert_kind(select, SpanKind::Client);
    let lookup = products.find("product-service", "catalog-lookup");
    products.assert_child_of(select, lookup);
    // Integers in the trace, not strings of digits.
    assert_eq!(lookup.int_attr("product.limit"), Some(2));
    assert_eq!(lookup.int_attr("product.offset"), Some(0));
    assert_eq!(lookup.int_attr("product.total"), Some(5));
    assert_attr(select, "db.system.name", system);
    assert_attr(select, "db.collection.name", "products");
    assert!(select
        .attr("db.query.text")
        .unwrap()
        .contains("FROM products"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_statements_are_client_spans_under_the_span_that_issued_them() {
    statements_are_client_spans_under_the_span_that_issued_them(DbKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_statements_are_client_spans_under_the_span_that_issued_them() {
    statements_are_client_spans_under_the_span_that_issued_them(DbKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_database_url_stops_the_service_with_exit_code_2_naming_the_variable() {
    let log_dir = bin_dir().join("e2e-logs").join("bad-database-url");
    let cases = [
        (Service::Backend, "mysql://app:hunter2@127.0.0.1/backend"),
        (Service::Product, "not a url"),
        // Nothing listens on port 1.
        (
            Service::Backend,
            "postgres://app:hunter2@127.0.0.1:1/backend",
        ),
        (
            Service::Product,
            "postgres://app:hunter2@127.0.0.1:1/product",
        ),
    ];
    for (service, url) in cases {
        assert_refused_at_start(service, "DATABASE_URL", url, "hunter2", &log_dir).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_past_their_retention_are_deleted_by_the_periodic_clean_up() {
    let platform = Platform::start_with(
        "retention",
        PlatformOptions {
            service_env: vec![(Service::Backend, "TASK_RETENTION".into(), "2s".into())],
            ..PlatformOptions::default()
        },
    )
    .await;
    let accepted = platform.post_task(json!({"type": "echo"})).await;
    let id = accepted["id"].as_str().unwrap();
    platform.wait_for_task(id, Duration::from_secs(20)).await;
    let gone = eventually(
        Duration::from_secs(15),
        format!("task {id} deleted"),
        || async {
            match get_task(&platform.http, &platform.url(""), id).await {
                (404, body) => Ok(body),
                (status, body) => Err(format!("{status} {body}")),
            }
        },
    )
    .await;
    assert_eq!(gone["error"]["code"], "task_not_found");
    let logs = platform.backend.logs();
    assert!(
        logs.contains("deleted tasks past their retention"),
        "{logs}"
    );
}
