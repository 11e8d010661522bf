//! A real Prometheus server scraping a test's services, so that tests can run
//! the very queries the Grafana dashboard and datasources hold.
//!
//! The binary is `$PROMETHEUS_BIN`, else `prometheus` on the `PATH` (Debian's
//! `prometheus` package, which `.ci/run` installs).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use crate::platform::free_port;

/// One sample of an instant query's result.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// Its value (`NaN` where Prometheus says so).
    pub value: f64,
}

impl Sample {
    /// A label's value, or "" if absent.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// One exemplar, with the labels of the series it was scraped with.
#[derive(Debug, Clone)]
pub struct Exemplar {
    /// The series' labels.
    pub series: BTreeMap<String, String>,
    /// The exemplar's own labels (`trace_id`, ...).
    pub labels: BTreeMap<String, String>,
}

/// A scrape target as Prometheus sees it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its job.
    pub job: String,
    /// The URL scraped.
    pub url: String,
    /// `up`, `down` or `unknown`.
    pub health: String,
    /// Why the last scrape failed, if it did.
    pub last_error: String,
}

/// A Prometheus process with its own storage; killed when dropped.
pub struct Prometheus {
    child: Child,
    url: String,
    log_path: PathBuf,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus in `dir` with `config` (a Prometheus configuration)
    /// and extra command-line `flags`, and waits until it is ready.
    pub async fn start(config: &serde_yaml_ng::Value, flags: &[String], dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("create prometheus dir");
        let config_path = dir.join("prometheus.yml");
        std::fs::write(
            &config_path,
            serde_yaml_ng::to_string(config).expect("serialize config"),
        )
        .expect("write prometheus.yml");
        let log_path = dir.join("prometheus.log");
        let log = std::fs::File::create(&log_path).expect("create prometheus log");
        let port = free_port();
        let binary = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {binary}: {e}. Install it (apt-get install prometheus) \
                     or point PROMETHEUS_BIN at a Prometheus binary"
                )
            });
        let mut prometheus = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log_path,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        };
        prometheus.wait_ready().await;
        prometheus
    }

    async fn wait_ready(&mut self) {
        let ready = format!("{}/-/ready", self.url);
        let (http, log_path) = (&self.http, &self.log_path);
        let child = &mut self.child;
        crate::eventually(
            Duration::from_secs(30),
            crate::Lazy(|| {
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                format!("prometheus ready; log:\n{log}")
            }),
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(log_path).unwrap_or_default();
                    panic!("prometheus exited ({status}):\n{log}");
                }
                let probe = http.get(&ready).send();
                async move { probe.await.is_ok_and(|r| r.status().is_success()) }
            },
        )
        .await;
    }

    /// What Prometheus logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    async fn api(&self, path: &str, params: &[(&str, String)]) -> Value {
        let response: Value = self
            .http
            .get(format!("{}/api/v1/{path}", self.url))
            .query(params)
            .send()
            .await
            .unwrap_or_else(|e| panic!("prometheus {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("prometheus {path}: {e}"));
        assert_eq!(
            response["status"], "success",
            "prometheus {path} {params:?}: {response}"
        );
        response["data"].clone()
    }

    /// Evaluates the instant query `expr` now.
    pub async fn query(&self, expr: &str) -> Vec<Sample> {
        let data = self.api("query", &[("query", expr.to_string())]).await;
        assert_eq!(data["resultType"], "vector", "{expr}: {data}");
        data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| Sample {
                labels: string_map(&r["metric"]),
                value: r["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN),
            })
            .collect()
    }

    /// Evaluates `expr` until `done` holds for its result, and returns that
    /// result; panics after `timeout` with the last result.
    pub async fn query_until(
        &self,
        expr: &str,
        timeout: Duration,
        done: impl Fn(&[Sample]) -> bool,
    ) -> Vec<Sample> {
        crate::eventually(timeout, format!("{expr} as expected"), || async {
            let result = self.query(expr).await;
            if done(&result) {
                Ok(result)
            } else {
                Err(format!("{result:?}"))
            }
        })
        .await
    }

    /// Waits until Prometheus has scraped every target after `moment`, so
    /// that what happened before it is in the TSDB.
    pub async fn wait_for_scrapes_after(&self, moment: SystemTime, timeout: Duration) {
        let moment = moment
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64();
        // A scrape's time is the timestamp of its `up` sample.
        self.query_until("min(timestamp(up))", timeout, |r| {
            r.first().is_some_and(|s| s.value > moment)
        })
        .await;
    }

    /// The exemplars of the series `selector` selects, over the last `window`.
    pub async fn exemplars(&self, selector: &str, window: Duration) -> Vec<Exemplar> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
        let start = now.saturating_sub(window);
        let data = self
            .api(
                "query_exemplars",
                &[
                    ("query", selector.to_string()),
                    ("start", format!("{:.3}", start.as_secs_f64())),
                    ("end", format!("{:.3}", now.as_secs_f64())),
                ],
            )
            .await;
        data.as_array()
            .into_iter()
            .flatten()
            .flat_map(|series| {
                let labels = string_map(&series["seriesLabels"]);
                series["exemplars"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(move |e| Exemplar {
                        series: labels.clone(),
                        labels: string_map(&e["labels"]),
                    })
            })
            .collect()
    }

    /// Waits until `count` targets are active and all of them up; panics
    /// with the targets and Prometheus's log after `timeout`.
    pub async fn wait_for_targets_up(&self, count: usize, timeout: Duration) {
        crate::eventually(
            timeout,
            crate::Lazy(|| format!("{count} targets up; log:\n{}", self.logs())),
            || async {
                let targets = self.targets().await;
                if targets.len() == count && targets.iter().all(|t| t.health == "up") {
                    Ok(())
                } else {
                    Err(format!("{targets:?}"))
                }
            },
        )
        .await;
    }

    /// Every active scrape target.
    pub async fn targets(&self) -> Vec<Target> {
        let data = self
            .api("targets", &[("state", "active".to_string())])
            .await;
        data["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| Target {
                job: t["labels"]["job"].as_str().unwrap_or_default().to_string(),
                url: t["scrapeUrl"].as_str().unwrap_or_default().to_string(),
                health: t["health"].as_str().unwrap_or_default().to_string(),
                last_error: t["lastError"].as_str().unwrap_or_default().to_string(),
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}
