//! What Grafana shows, checked against a real Prometheus. The services run
//! with the compose file's environment; Prometheus scrapes them and RabbitMQ
//! with the job names and paths of compose/prometheus/prometheus.yml and the
//! flags of the compose file. After real traffic, every query of the
//! provisioned dashboard returns the series that traffic implies, the
//! latency exemplars name traces the services exported, the Jaeger
//! datasource's trace-to-metrics queries (with `$__tags` rendered as Grafana
//! renders it) find the metrics of each span's service, and every series
//! links to a Jaeger search that finds spans.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant, SystemTime},
};

use e2e_tests::{
    broker::amqp_host,
    platform::{bin_dir, ADDRESS_VARIABLES},
    prometheus::{Prometheus, Sample},
    repo::{read_repo_file, scalar, yaml_docs},
    DbKind, Platform, PlatformOptions, ReceivedSpan, Service, ServiceProcess, SpanKind,
};
use serde_json::json;
use serde_yaml_ng::{Mapping, Value};

/// How long one Prometheus check may wait: well within the dashboard's
/// one-minute rate windows, which the checks run inside of.
const WAIT: Duration = Duration::from_secs(20);

/// The checks of rate()/increase() series run within this much of the last
/// traffic, or the one-minute windows lose it and they prove nothing.
const RATE_CHECKS_WITHIN: Duration = Duration::from_secs(50);

/// The port of RabbitMQ's Prometheus plugin beside the test broker.
fn rabbitmq_metrics_target() -> String {
    let host = amqp_host();
    let host = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    format!("{host}:15692")
}

/// compose/prometheus/prometheus.yml with each job's targets replaced by
/// this test's processes: job names, metrics paths and everything else stay.
fn prometheus_config(services: &[&ServiceProcess]) -> Value {
    let mut config = yaml_docs("compose/prometheus/prometheus.yml").remove(0);
    config["global"]["scrape_interval"] = "1s".into();
    config["global"]["evaluation_interval"] = "1s".into();
    let jobs = config["scrape_configs"]
        .as_sequence_mut()
        .expect("scrape_configs");
    for job in jobs {
        let name = scalar(&job["job_name"]);
        let target = if name == "rabbitmq" {
            rabbitmq_metrics_target()
        } else {
            let service = services
                .iter()
                .find(|s| s.service.service_name() == name)
                .unwrap_or_else(|| panic!("job {name} is no service's service.name"));
            format!("127.0.0.1:{}", service.port())
        };
        let job = job.as_mapping_mut().expect("scrape config");
        job.remove("dns_sd_configs");
        let mut statics = Mapping::new();
        statics.insert("targets".into(), Value::Sequence(vec![target.into()]));
        job.insert(
            "static_configs".into(),
            Value::Sequence(vec![Value::Mapping(statics)]),
        );
    }
    config
}

/// The compose file's Prometheus flags, but for the ones that name files and
/// addresses (the test sets those itself).
fn compose_prometheus_flags() -> Vec<String> {
    let compose = yaml_docs("compose/docker-compose.yml").remove(0);
    compose["services"]["prometheus"]["command"]
        .as_sequence()
        .expect("prometheus command")
        .iter()
        .map(scalar)
        .filter(|flag| {
            !["--config.file", "--storage.", "--web.listen-address"]
                .iter()
                .any(|p| flag.starts_with(p))
        })
        .collect()
}

/// A panel of the provisioned dashboard: its queries and its data links.
struct Panel {
    title: String,
    exprs: Vec<String>,
    links: Vec<String>,
}

fn dashboard_panels() -> Vec<Panel> {
    let dashboard: serde_json::Value = serde_json::from_str(&read_repo_file(
        "compose/grafana/dashboards/async-micro.json",
    ))
    .expect("dashboard JSON");
    let strings = |values: &serde_json::Value, key: &str| -> Vec<String> {
        values
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v[key].as_str().expect(key).to_string())
            .collect()
    };
    let panels: Vec<Panel> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        // Rows only group the panels below them.
        .filter(|panel| panel["type"] != "row")
        .map(|panel| Panel {
            title: panel["title"].as_str().unwrap_or("").to_string(),
            exprs: strings(&panel["targets"], "expr"),
            links: strings(&panel["fieldConfig"]["defaults"]["links"], "url"),
        })
        .collect();
    for panel in &panels {
        for expr in &panel.exprs {
            assert!(
                !expr.contains('$'),
                "{expr}: substitute its Grafana variables in this test"
            );
        }
    }
    panels
}

/// Every query of the provisioned dashboard, with its panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let queries: Vec<(String, String)> = dashboard_panels()
        .into_iter()
        .flat_map(|panel| {
            let title = panel.title;
            panel.exprs.into_iter().map(move |e| (title.clone(), e))
        })
        .collect();
    assert!(!queries.is_empty());
    queries
}

/// Grafana's `$__tags` for `span` under the datasource's `(tag, label)`
/// mapping, as the Jaeger datasource shows the span: its tags, and its
/// process tags, which are the resource attributes but service.name
/// (Jaeger's API moves that one to `serviceName`).
fn grafana_tags(span: &ReceivedSpan, mapping: &[(String, String)]) -> String {
    let process = span.resource.iter().filter(|(k, _)| *k != "service.name");
    let all: Vec<(&String, &String)> = process.chain(span.attributes.iter()).collect();
    mapping
        .iter()
        .filter_map(|(key, label)| {
            let (_, value) = all.iter().find(|(k, _)| *k == key)?;
            Some(format!("{label}=\"{value}\""))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each service's environment in compose/docker-compose.yml, `${VAR:-x}`
/// taken as `x`, but for the variables that name other containers or the
/// port, which the test platform sets itself.
fn compose_environment() -> Vec<(Service, String, String)> {
    let compose = yaml_docs("compose/docker-compose.yml").remove(0);
    let mut out = Vec::new();
    for service in Service::ALL {
        let env = compose["services"][service.binary()]["environment"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{}: no environment", service.binary()));
        for (name, value) in env {
            let (name, value) = (scalar(name), scalar(value));
            if ADDRESS_VARIABLES.contains(&name.as_str()) {
                continue;
            }
            let value = match value.strip_prefix("${") {
                Some(rest) => rest
                    .strip_suffix('}')
                    .and_then(|inner| inner.split_once(":-"))
                    .unwrap_or_else(|| panic!("{name}={value}: ${{VAR:-default}} expected"))
                    .1
                    .to_string(),
                None => value,
            };
            out.push((service, name, value));
        }
    }
    out
}

/// A Jaeger UI search link (`/search?service=..&operation=..&tags=..`), as
/// Jaeger would run it.
#[derive(Debug)]
struct JaegerSearch {
    service: String,
    operation: Option<String>,
    tags: Vec<(String, String)>,
    min_duration_s: Option<f64>,
}

impl JaegerSearch {
    /// The link `template` of a panel, for the series `sample` a user
    /// clicked on (Grafana's `${__field.labels.*}` and `${__value.raw}`).
    fn for_series(template: &str, sample: &Sample) -> Self {
        let mut url = template.replace("${__value.raw}", &sample.value.to_string());
        for (name, value) in &sample.labels {
            url = url.replace(&format!("${{__field.labels.{name}}}"), value);
        }
        assert!(!url.contains("${"), "{url}: a variable the series lacks");
        let url = reqwest::Url::parse(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(url.path(), "/search", "{url}");
        let param = |key: &str| {
            url.query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        };
        let tags: serde_json::Map<String, serde_json::Value> = param("tags")
            .map(|tags| serde_json::from_str(&tags).expect("tags are a JSON object"))
            .unwrap_or_default();
        Self {
            service: param("service").expect("a Jaeger search needs a service"),
            operation: param("operation"),
            tags: tags
                .into_iter()
                .map(|(k, v)| (k, v.as_str().expect("tag values are strings").into()))
                .collect(),
            min_duration_s: param("minDuration").map(|d| {
                d.strip_suffix('s')
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("minDuration {d}: seconds expected"))
            }),
        }
    }

    fn finds(&self, span: &ReceivedSpan) -> bool {
        let duration_s = span.end_ns.saturating_sub(span.start_ns) as f64 / 1e9;
        span.service == self.service
            && self.operation.as_ref().is_none_or(|op| *op == span.name)
            && self.tags.iter().all(|(key, value)| match key.as_str() {
                // Jaeger marks spans with an ERROR status `error=true`.
                "error" => span.is_error() == (value == "true"),
                _ => span.attr(key) == Some(value.as_str()),
            })
            && self.min_duration_s.is_none_or(|min| duration_s >= min)
    }
}

/// The one dashboard query that reads `metric`.
fn query_of<'a>(queries: &'a [(String, String)], metric: &str) -> &'a str {
    query_where(queries, metric, |expr| expr.contains(metric))
}

/// The one dashboard query (`what`) for which `pick` holds.
fn query_where<'a>(
    queries: &'a [(String, String)],
    what: &str,
    pick: impl Fn(&str) -> bool,
) -> &'a str {
    let found: Vec<_> = queries.iter().filter(|(_, expr)| pick(expr)).collect();
    assert_eq!(found.len(), 1, "queries for {what}: {found:?}");
    &found[0].1
}

/// The values of `label` on the samples above zero.
fn values_of(samples: &[Sample], label: &str) -> BTreeSet<String> {
    samples
        .iter()
        .filter(|s| s.value > 0.0)
        .map(|s| s.label(label).to_string())
        .collect()
}

fn value_where(samples: &[Sample], label: &str, value: &str) -> f64 {
    samples
        .iter()
        .find(|s| s.label(label) == value)
        .map_or(f64::NAN, |s| s.value)
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_queries_find_the_traffic_and_its_traces_in_a_real_prometheus() {
    let compose_env = compose_environment();
    let mut platform = Platform::start_with(
        "dashboards",
        PlatformOptions {
            env: vec![
                ("TASK_RETRY_DELAY_MS".into(), "100".into()),
                ("TASK_MAX_ATTEMPTS".into(), "2".into()),
            ],
            // Configured as compose configures them, PostgreSQL included.
            service_env: compose_env.clone(),
            database: DbKind::Postgres,
            ..PlatformOptions::default()
        },
    )
    .await;
    let prometheus = prometheus_scraping(&platform).await;
    send_traffic_twice(&platform, &prometheus).await;
    the_catalog_goes_away_twice(&mut platform, &prometheus).await;
    // From here on, every rate()/increase() check must be done before the
    // traffic leaves the dashboard's [1m] windows: each wait is far shorter.
    let traffic_done = Instant::now();

    every_dashboard_query_finds_the_traffic(&platform, &prometheus, &compose_env).await;
    assert!(
        traffic_done.elapsed() < RATE_CHECKS_WITHIN,
        "the rate checks ran past the dashboard's one-minute windows"
    );
    let (prometheus_ds, jaeger_ds) = grafana_datasources();
    exemplars_open_traces_the_services_exported(&platform, &prometheus, &prometheus_ds, &jaeger_ds)
        .await;
    trace_to_metrics_queries_find_each_services_requests(&platform, &prometheus, &jaeger_ds).await;
    data_links_find_spans_of_the_traffic(&platform, &prometheus).await;
    assert!(
        traffic_done.elapsed() < RATE_CHECKS_WITHIN,
        "the data-link checks ran past the dashboard's one-minute windows"
    );
}

/// A real Prometheus with compose's job names, paths and flags, scraping the
/// four services and RabbitMQ; once every target is up.
async fn prometheus_scraping(platform: &Platform) -> Prometheus {
    let config = prometheus_config(&[
        &platform.gateway,
        &platform.backend,
        &platform.product,
        &platform.worker,
    ]);
    let prometheus = Prometheus::start(
        &config,
        &compose_prometheus_flags(),
        &bin_dir()
            .join("e2e-logs")
            .join(platform.vhost.name())
            .join("prometheus"),
    )
    .await;

    // Every target scrapes cleanly: our OpenMetrics and RabbitMQ's per-object
    // endpoint both parse. One target per job: four services and RabbitMQ.
    prometheus
        .wait_for_targets_up(5, Duration::from_secs(60))
        .await;
    prometheus
}

/// Tasks that succeed, one retried once, one dead-lettered; a 400; catalog
/// hits and a miss. rate() sees no increase in a series whose first sample is
/// already 1, so it goes twice, the second time after Prometheus has scraped
/// the first (task series start at zero instead, so the first task of a
/// type counts).
async fn send_traffic_twice(platform: &Platform, prometheus: &Prometheus) {
    for _ in 0..2 {
        for task in [
            json!({"type": "echo", "payload": {"n": 1}}),
            json!({"type": "sleep", "payload": {"ms": 20}}),
            json!({"type": "echo", "payload": {"fail_times": 1}}),
            json!({"type": "hash", "payload": {"data": "x", "fail_times": 5}}),
        ] {
            let accepted = platform.post_task(task).await;
            platform
                .wait_for_task(accepted["id"].as_str().unwrap(), Duration::from_secs(30))
                .await;
        }
        let bad = platform
            .http
            .post(platform.url("/api/tasks"))
            .json(&json!({"payload": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
        for (path, status) in [("/api/products/1", 200), ("/api/products/999", 404)] {
            let response = platform.http.get(platform.url(path)).send().await.unwrap();
            assert_eq!(response.status(), status);
        }
        prometheus
            .wait_for_scrapes_after(SystemTime::now(), WAIT)
            .await;
    }
}

/// A gateway 5xx, twice for the same reason: the catalog goes away.
async fn the_catalog_goes_away_twice(platform: &mut Platform, prometheus: &Prometheus) {
    platform.product.kill();
    for _ in 0..2 {
        let unreachable = platform
            .http
            .get(platform.url("/api/products/1"))
            .send()
            .await
            .unwrap();
        assert_eq!(unreachable.status(), 502);
        prometheus
            .wait_for_scrapes_after(SystemTime::now(), WAIT)
            .await;
    }
}

/// Every dashboard query returns data, with a number in it, and the series
/// the traffic implies once the last scrapes are in.
async fn every_dashboard_query_finds_the_traffic(
    platform: &Platform,
    prometheus: &Prometheus,
    compose_env: &[(Service, String, String)],
) {
    let queries = dashboard_queries();
    for (title, expr) in &queries {
        prometheus
            .query_until(expr, WAIT, |r| r.iter().any(|s| s.value.is_finite()))
            .await;
        eprintln!("ok  {title}: {expr}");
    }
    // ... and the series the traffic implies, once the last scrapes are in.
    let services = set(&["gateway-service", "backend-service", "product-service"]);
    let is_error_rate = |expr: &str| expr.contains(r#"=~"5..""#);
    let rate = query_where(&queries, "request rate", |expr| {
        expr.contains("http_server_request_duration_seconds_count") && !is_error_rate(expr)
    });
    prometheus
        .query_until(rate, WAIT, |r| values_of(r, "job").is_superset(&services))
        .await;
    let errors = query_where(&queries, "error rate", is_error_rate);
    prometheus
        .query_until(errors, WAIT, |r| {
            value_where(r, "job", "gateway-service") > 0.0
        })
        .await;
    for (metric, types) in [
        ("tasks_published_total", set(&["echo", "sleep", "hash"])),
        ("tasks_processed_total", set(&["echo", "sleep", "hash"])),
        ("tasks_failed_total", set(&["echo", "hash"])),
        ("tasks_retried_total", set(&["echo", "hash"])),
    ] {
        prometheus
            .query_until(query_of(&queries, metric), WAIT, |r| {
                values_of(r, "task_type") == types
            })
            .await;
    }
    prometheus
        .query_until(query_of(&queries, "tasks_dead_lettered_total"), WAIT, |r| {
            value_where(r, "reason", "max-attempts") > 0.0
        })
        .await;
    queue_and_worker_panels_find_their_series(platform, prometheus, &queries, compose_env).await;
}

/// The queue panels (this test's vhost included) and the worker panels.
async fn queue_and_worker_panels_find_their_series(
    platform: &Platform,
    prometheus: &Prometheus,
    queries: &[(String, String)],
    compose_env: &[(Service, String, String)],
) {
    // The queue panels sum over vhosts; this test's own vhost holds the two
    // dead letters and the task queue.
    prometheus
        .query_until(
            query_of(queries, "rabbitmq_queue_messages_ready"),
            WAIT,
            |r| value_where(r, "queue", "task_queue.dlq") >= 2.0,
        )
        .await;
    let vhost = platform.vhost.name();
    prometheus
        .query_until(
            &format!(r#"rabbitmq_queue_messages_ready{{vhost="{vhost}",queue="task_queue.dlq"}}"#),
            WAIT,
            |r| r.len() == 1 && r[0].value == 2.0,
        )
        .await;
    prometheus
        .query_until(
            &format!(r#"rabbitmq_queue_messages_unacked{{vhost="{vhost}",queue="task_queue"}}"#),
            WAIT,
            |r| r.len() == 1,
        )
        .await;
    prometheus
        .query_until(
            query_of(queries, "rabbitmq_queue_messages_unacked"),
            WAIT,
            |r| r.iter().any(|s| s.label("queue") == "task_queue"),
        )
        .await;
    // compose's WORKER_CONCURRENCY reached the worker
    let concurrency: f64 = compose_env
        .iter()
        .find(|(_, name, _)| name == "WORKER_CONCURRENCY")
        .map(|(_, _, value)| value.parse().unwrap())
        .unwrap();
    prometheus
        .query_until(query_of(queries, "sum(worker_consumers)"), WAIT, |r| {
            r.len() == 1 && r[0].value == concurrency
        })
        .await;
    prometheus
        .query_until(query_of(queries, "messaging_broker_connected"), WAIT, |r| {
            value_where(r, "job", "backend-service") == 1.0
                && value_where(r, "job", "worker-service") == 1.0
        })
        .await;
}

/// The Prometheus and Jaeger datasources Grafana is provisioned with.
fn grafana_datasources() -> (Value, Value) {
    let datasources =
        yaml_docs("compose/grafana/provisioning/datasources/datasources.yml").remove(0);
    let datasources = datasources["datasources"].as_sequence().unwrap();
    let prometheus_ds = datasources
        .iter()
        .find(|d| scalar(&d["type"]) == "prometheus")
        .unwrap();
    let jaeger_ds = datasources
        .iter()
        .find(|d| scalar(&d["type"]) == "jaeger")
        .unwrap();
    (prometheus_ds.clone(), jaeger_ds.clone())
}

/// A click on a latency point opens a trace the services exported, under
/// the label name the Prometheus datasource links on.
async fn exemplars_open_traces_the_services_exported(
    platform: &Platform,
    prometheus: &Prometheus,
    prometheus_ds: &Value,
    jaeger_ds: &Value,
) {
    let destination = &prometheus_ds["jsonData"]["exemplarTraceIdDestinations"][0];
    assert_eq!(
        scalar(&destination["datasourceUid"]),
        scalar(&jaeger_ds["uid"])
    );
    let trace_label = scalar(&destination["name"]);
    let http = r#"http_server_request_duration_seconds_bucket{job="gateway-service",http_route=~"/api/.*"}"#;
    let tasks = r#"task_processing_duration_seconds_bucket{job="worker-service"}"#;
    for selector in [http, tasks] {
        let exemplars = prometheus
            .exemplars(selector, Duration::from_secs(600))
            .await;
        assert!(!exemplars.is_empty(), "no exemplars for {selector}");
        for exemplar in &exemplars {
            let trace_id = &exemplar.labels[&trace_label];
            // The trace exists and is the series' own: for a latency series,
            // a request that the series' service answered with its status.
            let service = &exemplar.series["job"];
            let status = exemplar.series.get("http_response_status_code");
            platform
                .collector
                .wait_for_trace(trace_id, Duration::from_secs(10), |t| {
                    t.spans().iter().any(|s| {
                        &s.service == service
                            && status.is_none_or(|code| {
                                s.kind == SpanKind::Server
                                    && s.attr("http.response.status_code") == Some(code)
                            })
                    })
                })
                .await;
        }
    }
}

/// From a SERVER span of each service, the Jaeger datasource's queries, with
/// $__tags rendered the way Grafana renders it for that span, find that
/// service's request metrics (the error query: for the services that
/// answered 5xx).
async fn trace_to_metrics_queries_find_each_services_requests(
    platform: &Platform,
    prometheus: &Prometheus,
    jaeger_ds: &Value,
) {
    let links = &jaeger_ds["jsonData"]["tracesToMetrics"];
    let mapping: Vec<(String, String)> = links["tags"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|tag| {
            let key = scalar(&tag["key"]);
            let label = tag.get("value").map_or(key.clone(), scalar);
            (key, label)
        })
        .collect();
    let spans = platform.collector.spans();
    let is_5xx = |s: &&ReceivedSpan| {
        s.attr("http.response.status_code")
            .is_some_and(|c| c.starts_with('5'))
    };
    let mut servers = BTreeSet::new();
    for span in spans.iter().filter(|s| s.kind == SpanKind::Server) {
        if !servers.insert(span.service.as_str()) {
            continue;
        }
        let tags = grafana_tags(span, &mapping);
        assert_eq!(
            tags,
            format!("job=\"{}\"", span.service),
            "$__tags of a {} span must select its Prometheus job",
            span.service
        );
        let answered_5xx = spans
            .iter()
            .filter(|s| s.kind == SpanKind::Server && s.service == span.service)
            .any(|s| is_5xx(&s));
        for query in links["queries"].as_sequence().unwrap() {
            let template = scalar(&query["query"]);
            // Provisioning reads `$$` as a literal `$`.
            let expr = template.replace("$$", "$").replace("$__tags", &tags);
            if !template.contains("5..") || answered_5xx {
                prometheus
                    .query_until(&expr, WAIT, |r| r.iter().any(|s| s.value.is_finite()))
                    .await;
            } else {
                assert!(prometheus.query(&expr).await.is_empty(), "{expr}");
            }
        }
    }
    assert!(servers.is_superset(&["gateway-service", "backend-service", "product-service"].into()));
}

/// Every series with a value above zero has a link, on its panel, to a
/// Jaeger search that finds spans of the traffic.
async fn data_links_find_spans_of_the_traffic(platform: &Platform, prometheus: &Prometheus) {
    let spans = platform.collector.spans();
    for panel in dashboard_panels() {
        assert!(!panel.links.is_empty(), "{}: no data links", panel.title);
        let mut checked = 0;
        for expr in &panel.exprs {
            let series = prometheus.query(expr).await;
            for sample in series
                .iter()
                .filter(|s| s.value > 0.0 && s.value.is_finite())
            {
                let searches: Vec<JaegerSearch> = panel
                    .links
                    .iter()
                    .map(|link| JaegerSearch::for_series(link, sample))
                    .collect();
                assert!(
                    searches
                        .iter()
                        .any(|search| spans.iter().any(|span| search.finds(span))),
                    "{}: no link of series {:?} of {expr} finds a span: {searches:?}",
                    panel.title,
                    sample.labels
                );
                checked += 1;
            }
        }
        assert!(
            checked > 0,
            "{}: no series above zero to follow",
            panel.title
        );
    }
}
