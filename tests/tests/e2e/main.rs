//! The end-to-end tests: one test binary (one link on a 2-core machine) with a
//! module per area.
//!
//! `http_api` builds the HTTP services inside this process and tests the API
//! in milliseconds; every other module runs the service binaries as
//! processes (`e2e_tests::Platform`), for what needs a process boundary:
//! traces across services, signals, a broker or database going away.

mod http_api;

mod acknowledgements;
mod broker_loss;
mod dashboards;
mod database;
mod deploy_config;
mod export_failure;
mod healthcheck;
mod k8s_environment;
mod loadgen;
mod metrics;
mod openapi;
mod otlp_export;
mod products;
mod python_interop;
mod retries;
mod scaling;
mod shutdown;
mod storage;
mod task_trace;
mod telemetry;
mod trace_view;
