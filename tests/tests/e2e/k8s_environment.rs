//! The services run as the Kubernetes manifests configure them: the shared
//! ConfigMap (quorum queues, JSON logs, the sampler, ...) plus each
//! Deployment's own variables. A task goes through, its trace arrives whole
//! under the manifests' service names, and every log line is JSON.

use std::time::Duration;

use e2e_tests::{
    platform::ADDRESS_VARIABLES,
    repo::{find_resource, k8s_base_resources, scalar},
    DbKind, Platform, PlatformOptions, Service,
};
use serde_json::json;

/// Each service's environment as its Deployment in k8s/base sets it, but
/// for the addresses the test platform sets itself and the Secrets.
fn k8s_environment() -> Vec<(Service, String, String)> {
    let resources = k8s_base_resources();
    let find = |kind: &str, name: &str| find_resource(&resources, kind, name);
    let mut out = Vec::new();
    for service in Service::ALL {
        let container =
            &find("Deployment", service.binary())["spec"]["template"]["spec"]["containers"][0];
        let mut env: Vec<(String, String)> = Vec::new();
        for source in container["envFrom"].as_sequence().into_iter().flatten() {
            let config_map = find("ConfigMap", &scalar(&source["configMapRef"]["name"]));
            for (name, value) in config_map["data"].as_mapping().unwrap() {
                env.push((scalar(name), scalar(value)));
            }
        }
        // `env` wins over `envFrom`, as in Kubernetes: it comes later.
        for var in container["env"].as_sequence().into_iter().flatten() {
            if let Some(value) = var.get("value") {
                env.push((scalar(&var["name"]), scalar(value)));
            }
        }
        out.extend(
            env.into_iter()
                .filter(|(name, _)| !ADDRESS_VARIABLES.contains(&name.as_str()))
                .map(|(name, value)| (service, name, value)),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_works_as_the_kubernetes_manifests_configure_it() {
    let env = k8s_environment();
    assert!(
        env.iter()
            .any(|(_, name, value)| name == "QUEUE_TYPE" && value == "quorum"),
        "the manifests no longer ask for quorum queues: update this test"
    );
    let platform = Platform::start_with(
        "k8s-env",
        PlatformOptions {
            service_env: env,
            // k8s gives backend and product PostgreSQL (CloudNativePG).
            database: DbKind::Postgres,
            ..PlatformOptions::default()
        },
    )
    .await;

    let accepted = platform
        .post_task(json!({"type": "hash", "payload": {"data": "k8s", "rounds": 10}}))
        .await;
    let id = accepted["id"].as_str().unwrap();
    let done = platform.wait_for_task(id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let trace_id = accepted["trace_id"].as_str().unwrap();
    platform
        .collector
        .wait_for_trace(trace_id, Duration::from_secs(15), |t| {
            t.has("gateway-service", "POST /api/tasks")
                && t.has("backend-service", "send task_queue")
                && t.has("worker-service", "process-task")
        })
        .await;
    assert_eq!(
        platform.vhost.queue_type("task_queue").as_deref(),
        Some("quorum")
    );
    for service in [
        &platform.gateway,
        &platform.backend,
        &platform.product,
        &platform.worker,
    ] {
        let logs = service.logs();
        assert!(!logs.is_empty(), "{:?} logged nothing", service.service);
        for line in logs.lines().filter(|l| !l.trim().is_empty()) {
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
            assert!(
                parsed.is_ok_and(|v| v.is_object()),
                "{:?}: not a JSON log line: {line}",
                service.service
            );
        }
    }
}
