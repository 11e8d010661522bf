//! Starting the services as real processes, wired to one another, to the
//! test's vhost and to the in-process OTLP receiver.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU16, Ordering},
    time::{Duration, Instant},
};

use crate::{
    broker::TestVhost,
    collector::OtlpCollector,
    database::{DbKind, TestDatabase},
};

/// One of the four services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The public entry.
    Gateway,
    /// Tasks.
    Backend,
    /// Catalog.
    Product,
    /// Task execution.
    Worker,
}

impl Service {
    /// All four.
    pub const ALL: [Self; 4] = [Self::Gateway, Self::Backend, Self::Product, Self::Worker];

    /// The binary name.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Backend => "backend",
            Self::Product => "product",
            Self::Worker => "worker",
        }
    }

    /// The default `service.name`.
    pub fn service_name(self) -> &'static str {
        match self {
            Self::Gateway => "gateway-service",
            Self::Backend => "backend-service",
            Self::Product => "product-service",
            Self::Worker => "worker-service",
        }
    }
}

/// Variables that address other processes, or the port: the test platform
/// sets them itself, so tests that run the services with a deployment file's
/// environment leave them out.
pub const ADDRESS_VARIABLES: [&str; 6] = [
    "PORT",
    "AMQP_URL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "BACKEND_URL",
    "PRODUCT_URL",
    "DATABASE_URL",
];

/// Variables that would leak from the developer's shell into a service.
const SCRUBBED: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SDK_DISABLED",
    "JAEGER_AGENT_HOST",
    "JAEGER_AGENT_PORT",
    "LOG_FORMAT",
    "RUST_LOG",
    "PORT",
    "AMQP_URL",
    "TASK_QUEUE",
    "RESULT_QUEUE",
    "BACKEND_URL",
    "PRODUCT_URL",
    "WORKER_CONCURRENCY",
    "WORKER_PREFETCH",
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_TIMEOUT_MS",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
    "TASK_RETENTION",
];

/// A running service process; killed when dropped.
pub struct ServiceProcess {
    /// Which service.
    pub service: Service,
    /// Its HTTP port, once it said which (it starts on port 0).
    port: std::cell::OnceCell<u16>,
    /// Where its stdout and stderr go.
    pub log_path: PathBuf,
    child: Child,
    env: Vec<(String, String)>,
    log_dir: PathBuf,
    starts: u32,
}

impl ServiceProcess {
    /// Starts `service` with `env` (on top of a scrubbed environment) on port
    /// 0: it binds a free port itself and logs which ([`port`](Self::port)
    /// reads it). Logs go to `log_dir/<binary>.log`; `log_dir` is also its
    /// working directory (where a default SQLite file would go).
    pub fn spawn(service: Service, env: &[(String, String)], log_dir: &std::path::Path) -> Self {
        std::fs::create_dir_all(log_dir).expect("create log dir");
        let log_path = log_dir.join(format!("{}.log", service.binary()));
        // A default SQLite file left in a reused directory by an earlier run
        // must not leak into this one.
        for suffix in ["", "-wal", "-shm", ".migrate-lock"] {
            let _ =
                std::fs::remove_file(log_dir.join(format!("data/{}.db{suffix}", service.binary())));
        }
        let child = Self::start_child(service, 0, env, log_dir, &log_path);
        Self {
            service,
            port: std::cell::OnceCell::new(),
            log_path,
            child,
            env: env.to_vec(),
            log_dir: log_dir.to_path_buf(),
            starts: 1,
        }
    }

    /// Starts `service` on its own (not part of a [`Platform`]) with `env`,
    /// logging under `e2e-logs/<label>/`, and waits until it is healthy.
    pub async fn start(service: Service, env: &[(String, String)], label: &str) -> Self {
        let mut process = Self::spawn(service, env, &bin_dir().join("e2e-logs").join(label));
        process.wait_healthy().await;
        process
    }

    /// Starts the binary again, on the same port with the same environment
    /// and working directory, after the process has exited (or was killed),
    /// logging to `<binary>.<n>.log`; waits until it is healthy.
    pub async fn start_again(&mut self) {
        assert!(
            matches!(self.child.try_wait(), Ok(Some(_))),
            "{} is still running",
            self.service.binary()
        );
        let port = self.port();
        self.starts += 1;
        self.log_path = self
            .log_dir
            .join(format!("{}.{}.log", self.service.binary(), self.starts));
        self.child =
            Self::start_child(self.service, port, &self.env, &self.log_dir, &self.log_path);
        self.wait_healthy().await;
    }

    fn start_child(
        service: Service,
        port: u16,
        env: &[(String, String)],
        log_dir: &std::path::Path,
        log_path: &std::path::Path,
    ) -> Child {
        let log = std::fs::File::create(log_path).expect("create log file");
        let mut command = Command::new(binary_path(service.binary()));
        for var in SCRUBBED {
            command.env_remove(var);
        }
        command
            .env("PORT", port.to_string())
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(log_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", service.binary()))
    }

    /// The port the service bound (found in `/proc`); waits up to 30 s for
    /// it to bind.
    pub fn port(&self) -> u16 {
        *self.port.get_or_init(|| {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(port) = listening_port(self.pid()) {
                    return port;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not bind a port within 30 s; log:\n{}",
                    self.service.binary(),
                    self.logs()
                );
                // A plain sleep: the child binds, not this runtime.
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the service logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until `GET /health` answers 200; panics with the logs if the
    /// process exits or 30 s pass.
    pub async fn wait_healthy(&mut self) {
        let client = reqwest::Client::new();
        let binary = self.service.binary();
        let health = format!("{}/health", self.url());
        let log_path = self.log_path.clone();
        let child = &mut self.child;
        crate::eventually(
            Duration::from_secs(30),
            crate::Lazy(|| {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                format!("{binary} healthy; log:\n{log}")
            }),
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    panic!("{binary} exited during start-up ({status}); log:\n{log}");
                }
                let probe = client.get(&health).send();
                async move { probe.await.is_ok_and(|r| r.status().is_success()) }
            },
        )
        .await;
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn terminate(&self) {
        signal(self.pid(), "TERM");
    }

    /// Sends SIGINT (Ctrl-C): also a graceful stop.
    pub fn interrupt(&self) {
        signal(self.pid(), "INT");
    }

    /// Sends SIGKILL (no chance to clean up).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = &mut self.child;
        crate::within(timeout, || {
            std::future::ready(child.try_wait().ok().flatten())
        })
        .await
    }
}

/// Starts `service` with `env` and asserts that it refuses to start with
/// exit code 2; returns what it logged.
pub async fn refused_at_start(
    service: Service,
    env: &[(String, String)],
    log_dir: &std::path::Path,
) -> String {
    let mut process = ServiceProcess::spawn(service, env, log_dir);
    let status = process
        .wait_exit(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("{env:?}: still running"));
    let logs = process.logs();
    assert_eq!(status.code(), Some(2), "{env:?}: {logs}");
    logs
}

/// Starts `service` with `name=value` (and the SDK off) and asserts that it
/// refuses to start: exit code 2, a log that names the variable, and not the
/// password `secret` the value holds.
pub async fn assert_refused_at_start(
    service: Service,
    name: &str,
    value: &str,
    secret: &str,
    log_dir: &std::path::Path,
) {
    let env = [
        (name.into(), value.into()),
        ("OTEL_SDK_DISABLED".into(), "true".into()),
    ];
    let logs = refused_at_start(service, &env, log_dir).await;
    assert!(logs.contains(name), "{name}={value}: {logs}");
    assert!(!logs.contains(secret), "the password leaked: {logs}");
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TCP port process `pid` listens on, from `/proc`: the socket inodes
/// among its file descriptors matched against the kernel's table of
/// listening sockets. Independent of what (or whether) the service logs.
fn listening_port(pid: u32) -> Option<u16> {
    let sockets: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .find_map(|line| {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            const LISTEN: &str = "0A";
            if *state != LISTEN || !sockets.contains(*inode) {
                return None;
            }
            u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
        })
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Ports for tests that need one nobody listens on (a broker or upstream that
/// is down) come from below the kernel's ephemeral range (32768 and up by
/// default), where no `bind(0)` of a service lands.
const SERVICE_PORTS: std::ops::Range<u16> = 15_000..32_000;

/// A TCP port free on loopback, never handed out twice by this process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = SERVICE_PORTS.end - SERVICE_PORTS.start;
    // Each test process starts elsewhere, should two ever run at once.
    let start = (std::process::id() % u32::from(span)) as u16;
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = SERVICE_PORTS.start + start.wrapping_add(offset) % span;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {SERVICE_PORTS:?}");
}

/// The directory the binaries were built into: this test binary lives in
/// `<target>/<profile>/deps/`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

fn binary_path(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the services first with `cargo build --workspace --bins`",
        path.display()
    );
    path
}

/// What differs between test platforms.
#[derive(Debug, Clone)]
pub struct PlatformOptions {
    /// Extra variables for every service.
    pub env: Vec<(String, String)>,
    /// Extra variables per service.
    pub service_env: Vec<(Service, String, String)>,
    /// `WORKER_CONCURRENCY`.
    pub worker_concurrency: usize,
    /// The database backend and product get (each its own).
    pub database: DbKind,
}

impl Default for PlatformOptions {
    fn default() -> Self {
        Self {
            env: Vec::new(),
            service_env: Vec::new(),
            worker_concurrency: 2,
            database: DbKind::Sqlite,
        }
    }
}

/// All four services, a vhost and an OTLP receiver for one test. Dropping it
/// stops the processes, then deletes the vhost.
pub struct Platform {
    /// The gateway process.
    pub gateway: ServiceProcess,
    /// The backend process.
    pub backend: ServiceProcess,
    /// The product process.
    pub product: ServiceProcess,
    /// The worker process.
    pub worker: ServiceProcess,
    /// The test's vhost.
    pub vhost: TestVhost,
    /// The OTLP receiver all services export to.
    pub collector: OtlpCollector,
    /// The backend's database.
    pub backend_db: TestDatabase,
    /// The product service's database.
    pub product_db: TestDatabase,
    /// An HTTP client for the test.
    pub http: reqwest::Client,
    log_dir: PathBuf,
    options: PlatformOptions,
}

impl Platform {
    /// Starts everything with default options; `label` names the vhost and
    /// the log directory.
    pub async fn start(label: &str) -> Self {
        Self::start_with(label, PlatformOptions::default()).await
    }

    /// Starts everything with `options`.
    pub async fn start_with(label: &str, options: PlatformOptions) -> Self {
        let collector = OtlpCollector::start().await;
        let vhost = TestVhost::create(label);
        let log_dir = bin_dir().join("e2e-logs").join(vhost.name());
        let backend_db = TestDatabase::create(options.database, "backend").await;
        let product_db = TestDatabase::create(options.database, "product").await;
        // A test that sets DATABASE_URL itself (empty: the default) keeps it.
        let database_env = |service: Service, db: &TestDatabase| -> Vec<(String, String)> {
            let chosen = options.env.iter().any(|(k, _)| k == "DATABASE_URL")
                || options
                    .service_env
                    .iter()
                    .any(|(s, k, _)| *s == service && k == "DATABASE_URL");
            if chosen {
                Vec::new()
            } else {
                vec![db.env()]
            }
        };

        let mut backend = spawn_service(
            Service::Backend,
            &collector,
            &vhost,
            &options,
            &database_env(Service::Backend, &backend_db),
            &log_dir,
        );
        let mut product = spawn_service(
            Service::Product,
            &collector,
            &vhost,
            &options,
            &database_env(Service::Product, &product_db),
            &log_dir,
        );
        let mut worker =
            spawn_service(Service::Worker, &collector, &vhost, &options, &[], &log_dir);
        let upstreams = [
            ("BACKEND_URL".to_string(), backend.url()),
            ("PRODUCT_URL".to_string(), product.url()),
        ];
        let mut gateway = spawn_service(
            Service::Gateway,
            &collector,
            &vhost,
            &options,
            &upstreams,
            &log_dir,
        );
        for service in [&mut backend, &mut product, &mut worker, &mut gateway] {
            service.wait_healthy().await;
        }
        Self {
            gateway,
            backend,
            product,
            worker,
            vhost,
            collector,
            backend_db,
            product_db,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            log_dir,
            options,
        }
    }

    /// Stops the four services gracefully (SIGTERM), each exporting the
    /// spans it still held on its way out; asserts each exits 0. Flush
    /// first, then assert what must not have been exported.
    pub async fn stop_gracefully(&mut self) {
        for service in [
            &mut self.gateway,
            &mut self.backend,
            &mut self.product,
            &mut self.worker,
        ] {
            service.terminate();
            let exited = service.wait_exit(Duration::from_secs(20)).await;
            assert!(
                exited.is_some_and(|s| s.success()),
                "{} {exited:?}",
                service.service.binary()
            );
        }
    }

    /// A gateway URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.gateway.url(), path)
    }

    /// Starts one more worker process on the same vhost and collector.
    pub async fn spawn_worker(&self, extra_env: &[(String, String)]) -> ServiceProcess {
        let mut worker = spawn_service(
            Service::Worker,
            &self.collector,
            &self.vhost,
            &self.options,
            extra_env,
            &self
                .log_dir
                .join(format!("worker-{}", uuid::Uuid::new_v4().simple())),
        );
        worker.wait_healthy().await;
        worker
    }

    /// Starts one more backend process on the same vhost, collector and
    /// database as the first (not behind the gateway: call it directly).
    pub async fn spawn_backend(&self) -> ServiceProcess {
        let mut backend = spawn_service(
            Service::Backend,
            &self.collector,
            &self.vhost,
            &self.options,
            &[self.backend_db.env()],
            &self
                .log_dir
                .join(format!("backend-{}", uuid::Uuid::new_v4().simple())),
        );
        backend.wait_healthy().await;
        backend
    }

    /// `POST /api/tasks` through the gateway; asserts the 202 and returns
    /// its body (`id`, `status`, `trace_id`).
    pub async fn post_task(&self, task: serde_json::Value) -> serde_json::Value {
        let response = self
            .http
            .post(self.url("/api/tasks"))
            .json(&task)
            .send()
            .await
            .expect("POST task");
        assert_eq!(response.status(), 202, "{task}");
        response.json().await.expect("202 JSON")
    }

    /// `GET /api/tasks/{id}` through the gateway.
    pub async fn get_task(&self, id: &str) -> serde_json::Value {
        self.http
            .get(self.url(&format!("/api/tasks/{id}")))
            .send()
            .await
            .expect("GET task")
            .json()
            .await
            .expect("task JSON")
    }

    /// Polls the task until `done` holds for its body, and returns the body.
    pub async fn wait_for_task_state(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        crate::eventually(
            timeout,
            crate::Lazy(|| {
                format!(
                    "task {id} in the expected state; worker log:\n{}",
                    self.worker.logs()
                )
            }),
            || async {
                let body = self.get_task(id).await;
                if done(&body) {
                    Ok(body)
                } else {
                    Err(body.to_string())
                }
            },
        )
        .await
    }

    /// Polls the task until it is `succeeded` or `failed`.
    pub async fn wait_for_task(&self, id: &str, timeout: Duration) -> serde_json::Value {
        self.wait_for_task_state(id, timeout, |t| {
            matches!(t["status"].as_str(), Some("succeeded" | "failed"))
        })
        .await
    }

    /// Waits until `queue` exists in the test's vhost (the worker declares the
    /// task queue when it subscribes; a message published to a queue that does
    /// not exist yet is dropped by the broker).
    pub async fn wait_for_queue(&self, queue: &str) {
        crate::eventually(
            Duration::from_secs(20),
            format!("queue {queue} declared"),
            || std::future::ready(self.vhost.queue_depth(queue).is_some()),
        )
        .await;
    }

    /// Polls the task until a worker has it in hand (`processing`).
    pub async fn wait_until_processing(&self, id: &str) {
        self.wait_for_task_state(id, Duration::from_secs(20), |t| t["status"] == "processing")
            .await;
    }
}

fn spawn_service(
    service: Service,
    collector: &OtlpCollector,
    vhost: &TestVhost,
    options: &PlatformOptions,
    extra: &[(String, String)],
    log_dir: &std::path::Path,
) -> ServiceProcess {
    let mut env = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
            collector.grpc_endpoint(),
        ),
        // Export quickly so tests do not wait for the 5 s default.
        ("OTEL_BSP_SCHEDULE_DELAY".to_string(), "100".to_string()),
        ("AMQP_URL".to_string(), vhost.amqp_url()),
        (
            "WORKER_CONCURRENCY".to_string(),
            options.worker_concurrency.to_string(),
        ),
    ];
    env.extend(options.env.iter().cloned());
    env.extend(
        options
            .service_env
            .iter()
            .filter(|(s, _, _)| *s == service)
            .map(|(_, k, v)| (k.clone(), v.clone())),
    );
    env.extend(extra.iter().cloned());
    ServiceProcess::spawn(service, &env, log_dir)
}
