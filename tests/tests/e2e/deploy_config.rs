//! The compose files, the Prometheus configs and the Kubernetes manifests
//! agree with the services' own defaults: ports, environment variable names,
//! queue names, upstream URLs, health paths.

use std::collections::BTreeSet;

use e2e_tests::repo::{find_resource, k8s_base_resources, read_repo_file, scalar as s, yaml_docs};
use serde_yaml_ng::Value;
use shared::{
    amqp::{DEFAULT_RESULT_QUEUE, DEFAULT_TASK_QUEUE},
    http::{HEALTH_PATH, READY_PATH},
};

struct Service {
    name: &'static str,
    port: u16,
    vars: &'static [&'static str],
    needs_broker: bool,
}

const SERVICES: [Service; 4] = [
    Service {
        name: "gateway",
        port: gateway::config::DEFAULT_PORT,
        vars: gateway::config::ENV_VARS,
        needs_broker: false,
    },
    Service {
        name: "backend",
        port: backend::config::DEFAULT_PORT,
        vars: backend::config::ENV_VARS,
        needs_broker: true,
    },
    Service {
        name: "product",
        port: product::config::DEFAULT_PORT,
        vars: product::config::ENV_VARS,
        needs_broker: false,
    },
    Service {
        name: "worker",
        port: worker::config::DEFAULT_PORT,
        vars: worker::config::ENV_VARS,
        needs_broker: true,
    },
];

fn port_of(name: &str) -> u16 {
    SERVICES.iter().find(|s| s.name == name).unwrap().port
}

fn variables_of(service: &Service) -> BTreeSet<&'static str> {
    let broker: &[&str] = if service.needs_broker {
        shared::amqp::BrokerSettings::ENV_VARS
    } else {
        &[]
    };
    service
        .vars
        .iter()
        .chain(broker)
        .chain(shared::telemetry::ENV_VARS)
        .copied()
        .collect()
}

#[test]
fn compose_services_use_the_services_ports_variables_and_queue() {
    let compose = &yaml_docs("compose/docker-compose.yml")[0];
    let services = &compose["services"];
    for service in &SERVICES {
        let def = &services[service.name];
        assert!(def.is_mapping(), "compose has no {}", service.name);
        let env = def["environment"]
            .as_mapping()
            .expect("environment mapping");
        let allowed = variables_of(service);
        for (key, value) in env {
            let key = s(key);
            assert!(
                allowed.contains(key.as_str()),
                "{}: {key} is not a variable the service reads",
                service.name
            );
            if key == "PORT" {
                assert_eq!(s(value), service.port.to_string(), "{} PORT", service.name);
            }
            if key == "TASK_QUEUE" {
                assert_eq!(s(value), DEFAULT_TASK_QUEUE);
            }
            if key == "AMQP_URL" {
                assert!(s(value).contains("@rabbitmq:5672/"), "{}", s(value));
            }
        }
        assert_eq!(
            s(&def["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]),
            "http://jaeger:4317"
        );
        assert_eq!(s(&def["environment"]["JAEGER_AGENT_HOST"]), "jaeger");
        assert_eq!(s(&def["build"]["args"]["SERVICE"]), service.name);
        let networks: Vec<String> = def["networks"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(s)
            .collect();
        assert_eq!(networks, ["microservices-network"]);
        if service.needs_broker {
            assert_eq!(
                s(&def["depends_on"]["rabbitmq"]["condition"]),
                "service_healthy"
            );
        }
        assert_eq!(
            s(&def["depends_on"]["jaeger"]["condition"]),
            "service_healthy"
        );
        // Only the gateway is published on the host.
        let published = def.get("ports").is_some();
        assert_eq!(
            published,
            service.name == "gateway",
            "{} ports",
            service.name
        );
    }
}

#[test]
fn compose_exposes_only_the_gateway_which_waits_for_its_upstreams() {
    let compose = &yaml_docs("compose/docker-compose.yml")[0];
    let services = &compose["services"];
    let gateway = &services["gateway"];
    assert_eq!(
        s(&gateway["ports"][0]),
        format!("{0}:{0}", port_of("gateway"))
    );
    assert_eq!(
        s(&gateway["environment"]["BACKEND_URL"]),
        format!("http://backend:{}", port_of("backend"))
    );
    assert_eq!(
        s(&gateway["environment"]["PRODUCT_URL"]),
        format!("http://product:{}", port_of("product"))
    );
    for upstream in ["backend", "product"] {
        assert_eq!(
            s(&gateway["depends_on"][upstream]["condition"]),
            "service_healthy"
        );
    }
    assert!(services["worker"]["environment"]
        .get("WORKER_CONCURRENCY")
        .is_some());
    assert!(
        services["worker"].get("container_name").is_none(),
        "--scale needs no fixed name"
    );
}

#[test]
fn compose_publishes_jaeger_grafana_and_rabbitmq_with_healthchecks() {
    let compose = &yaml_docs("compose/docker-compose.yml")[0];
    let services = &compose["services"];
    let ports = |name: &str| -> Vec<String> {
        services[name]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(s)
            .collect()
    };
    let jaeger = ports("jaeger");
    for port in [
        "4317:4317",
        "4318:4318",
        "16686:16686",
        "6831:6831/udp",
        "6832:6832/udp",
        "5778:5778",
        "14268:14268",
        "14250:14250",
    ] {
        assert!(
            jaeger.iter().any(|p| p == port),
            "jaeger does not publish {port}"
        );
    }
    assert!(s(&services["jaeger"]["image"]).starts_with("jaegertracing/jaeger:2."));
    assert_eq!(ports("grafana"), ["3001:3000"]);
    assert!(ports("rabbitmq").contains(&"15672:15672".to_string()));
    assert!(services["rabbitmq"].get("healthcheck").is_some());
    // Jaeger's healthcheck asks the port its config serves health on.
    let jaeger_config = &yaml_docs("compose/jaeger/config.yaml")[0];
    let health_port = s(&jaeger_config["extensions"]["healthcheckv2"]["http"]["endpoint"])
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let probe: Vec<String> = services["jaeger"]["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    assert!(
        probe
            .last()
            .unwrap()
            .contains(&format!(":{health_port}/status")),
        "{probe:?}"
    );
}

#[test]
fn the_dev_compose_file_serves_the_services_running_on_the_host() {
    let compose = &yaml_docs("compose/docker-compose.dev.yml")[0];
    let services = compose["services"].as_mapping().unwrap();
    for service in &SERVICES {
        assert!(
            !services.contains_key(service.name),
            "dev runs {} from cargo",
            service.name
        );
    }
    let published = |name: &str| -> Vec<String> {
        compose["services"][name]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(s)
            .collect()
    };
    // The services' defaults: AMQP on localhost:5672, OTLP on localhost:4317.
    assert!(shared::amqp::DEFAULT_AMQP_URL.contains("localhost:5672"));
    assert!(published("rabbitmq").contains(&"5672:5672".to_string()));
    assert!(published("jaeger").contains(&"4317:4317".to_string()));
    assert!(published("grafana").contains(&"3001:3000".to_string()));
}

fn scrape_targets(path: &str) -> Vec<(String, String)> {
    let config = &yaml_docs(path)[0];
    let mut out = Vec::new();
    for job in config["scrape_configs"].as_sequence().unwrap() {
        let name = s(&job["job_name"]);
        if let Some(statics) = job.get("static_configs") {
            for target in statics[0]["targets"].as_sequence().unwrap() {
                out.push((name.clone(), s(target)));
            }
        }
        if let Some(dns) = job.get("dns_sd_configs") {
            out.push((
                name.clone(),
                format!("{}:{}", s(&dns[0]["names"][0]), s(&dns[0]["port"])),
            ));
        }
    }
    out
}

#[test]
fn prometheus_scrapes_every_service_on_its_port_under_its_service_name() {
    for (path, host) in [
        ("compose/prometheus/prometheus.yml", None),
        (
            "compose/prometheus/prometheus.dev.yml",
            Some("host.docker.internal"),
        ),
    ] {
        let targets = scrape_targets(path);
        for service in &SERVICES {
            let job = format!("{}-service", service.name);
            let expected = format!("{}:{}", host.unwrap_or(service.name), service.port);
            assert!(
                targets.iter().any(|(j, t)| *j == job && *t == expected),
                "{path}: no job {job} scraping {expected}: {targets:?}"
            );
        }
        assert!(targets.iter().any(|(j, _)| j == "rabbitmq"), "{path}");
    }
}

/// The services that keep their data in PostgreSQL, each in a database named
/// after it on the one CloudNativePG cluster.
const DATABASE_SERVICES: [&str; 2] = ["backend", "product"];

/// Whether `resource` is a `kind` of the API group `group`.
fn is_kind(resource: &Value, group: &str, kind: &str) -> bool {
    s(&resource["kind"]) == kind && s(&resource["apiVersion"]).starts_with(&format!("{group}/"))
}

/// The one resource of `kind` from the API group `group`.
fn the_only<'a>(resources: &'a [Value], group: &str, kind: &str) -> &'a Value {
    let found: Vec<&Value> = resources
        .iter()
        .filter(|r| is_kind(r, group, kind))
        .collect();
    assert_eq!(found.len(), 1, "one {kind} of {group}");
    found[0]
}

/// The container's `env` entry called `name`.
fn env_entry<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|e| s(&e["name"]) == name)
}

/// The Elasticsearch settings of the storage that a Jaeger v2 config names.
fn elasticsearch_storage<'a>(config: &'a Value, storage: &Value) -> &'a Value {
    let settings =
        &config["extensions"]["jaeger_storage"]["backends"][s(storage).as_str()]["elasticsearch"];
    assert!(
        settings.is_mapping(),
        "no Elasticsearch storage {storage:?}"
    );
    settings
}

#[test]
fn the_kubernetes_config_map_holds_the_queues_and_only_variables_a_service_reads() {
    let resources = k8s_base_resources();
    let config = find_resource(&resources, "ConfigMap", "async-micro-config");
    let config_keys: Vec<String> = config["data"].as_mapping().unwrap().keys().map(s).collect();
    for key in &config_keys {
        let used_somewhere = SERVICES
            .iter()
            .any(|s| variables_of(s).contains(key.as_str()));
        assert!(used_somewhere, "ConfigMap key {key} is read by no service");
    }
    assert_eq!(s(&config["data"]["TASK_QUEUE"]), DEFAULT_TASK_QUEUE);
    assert_eq!(s(&config["data"]["RESULT_QUEUE"]), DEFAULT_RESULT_QUEUE);
    assert_eq!(s(&config["data"]["QUEUE_TYPE"]), "quorum");
    assert_eq!(
        s(&config["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"]),
        "http://otel-collector:4317"
    );
}

#[test]
fn kubernetes_deployments_use_the_services_ports_variables_probes_and_resources() {
    let resources = k8s_base_resources();
    let find = |kind: &str, name: &str| find_resource(&resources, kind, name);
    for service in &SERVICES {
        let deployment = find("Deployment", service.name);
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            s(&container["ports"][0]["containerPort"]),
            service.port.to_string()
        );
        let allowed = variables_of(service);
        for env in container["env"].as_sequence().unwrap() {
            let name = s(&env["name"]);
            // Helper variables that only compose AMQP_URL from the operator's secret.
            if name.starts_with("RABBITMQ_") {
                continue;
            }
            assert!(
                allowed.contains(name.as_str()),
                "{}: {name} is not read",
                service.name
            );
            if name == "PORT" {
                assert_eq!(s(&env["value"]), service.port.to_string());
            }
            if name == "OTEL_SERVICE_NAME" {
                assert_eq!(s(&env["value"]), format!("{}-service", service.name));
            }
        }
        let needs_database = DATABASE_SERVICES.contains(&service.name);
        // Ready only while the broker or the database is reachable.
        let ready = if service.needs_broker || needs_database {
            READY_PATH
        } else {
            HEALTH_PATH
        };
        assert_eq!(
            s(&container["readinessProbe"]["httpGet"]["path"]),
            ready,
            "{} readiness",
            service.name
        );
        assert_eq!(
            s(&container["livenessProbe"]["httpGet"]["path"]),
            HEALTH_PATH
        );
        for limit in ["requests", "limits"] {
            let cpu = &container["resources"][limit]["cpu"];
            assert!(
                cpu.is_string() || cpu.is_number(),
                "{} {limit}",
                service.name
            );
        }
        let svc = find("Service", service.name);
        assert_eq!(
            s(&svc["spec"]["ports"][0]["port"]),
            service.port.to_string()
        );
    }
}

#[test]
fn kubernetes_services_with_state_use_the_cloudnativepg_database_and_keep_replicas() {
    let resources = k8s_base_resources();
    // CloudNativePG names the primary's Service and the Secret with the
    // application user's credentials after the cluster.
    let database_cluster = the_only(&resources, "postgresql.cnpg.io", "Cluster");
    let cluster_name = s(&database_cluster["metadata"]["name"]);
    let primary = format!("{cluster_name}-rw");
    let app_secret = format!("{cluster_name}-app");
    for service in SERVICES
        .iter()
        .filter(|service| DATABASE_SERVICES.contains(&service.name))
    {
        let deployment = find_resource(&resources, "Deployment", service.name);
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        // Its own database on the primary; user and password from the
        // operator's Secret (the driver reads PGUSER and PGPASSWORD).
        assert_eq!(
            env_entry(container, "DATABASE_URL").map(|e| s(&e["value"])),
            Some(format!("postgres://{primary}:5432/{}", service.name)),
            "{} DATABASE_URL",
            service.name
        );
        for (variable, key) in [("PGUSER", "username"), ("PGPASSWORD", "password")] {
            let entry = env_entry(container, variable)
                .unwrap_or_else(|| panic!("{}: no {variable}", service.name));
            let secret = &entry["valueFrom"]["secretKeyRef"];
            assert_eq!(
                s(&secret["name"]),
                app_secret,
                "{} {variable}",
                service.name
            );
            assert_eq!(s(&secret["key"]), key, "{} {variable}", service.name);
        }
        // State is in the database: several replicas, rolled rather than
        // recreated, and a PodDisruptionBudget keeps one serving through
        // node drains.
        let spec = &deployment["spec"];
        assert!(
            spec["replicas"].as_u64().unwrap() >= 2,
            "{} replicas",
            service.name
        );
        assert_ne!(
            spec["strategy"]["type"].as_str(),
            Some("Recreate"),
            "{} strategy",
            service.name
        );
        let pods = &spec["selector"]["matchLabels"];
        assert!(
            resources
                .iter()
                .any(|r| is_kind(r, "policy", "PodDisruptionBudget")
                    && r["spec"]["selector"]["matchLabels"] == *pods),
            "no PodDisruptionBudget selects {}",
            service.name
        );
    }
    // Each service's database exists and belongs to the user of the app
    // Secret: the cluster's initdb database, or a Database resource.
    let initdb = &database_cluster["spec"]["bootstrap"]["initdb"];
    let owner = s(&initdb["owner"]);
    for name in DATABASE_SERVICES {
        let declared = resources.iter().any(|r| {
            is_kind(r, "postgresql.cnpg.io", "Database")
                && s(&r["spec"]["cluster"]["name"]) == cluster_name
                && s(&r["spec"]["name"]) == name
                && s(&r["spec"]["owner"]) == owner
        });
        assert!(
            s(&initdb["database"]) == name || declared,
            "no database {name} owned by {owner} on {cluster_name}"
        );
    }
}

#[test]
fn kubernetes_gateway_points_at_its_upstreams_and_the_worker_autoscales() {
    let resources = k8s_base_resources();
    let find = |kind: &str, name: &str| find_resource(&resources, kind, name);
    let gateway = &find("Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0];
    let env = |c: &Value, key: &str| env_entry(c, key).map(|e| s(&e["value"]));
    assert_eq!(
        env(gateway, "BACKEND_URL").unwrap(),
        format!("http://backend:{}", port_of("backend"))
    );
    assert_eq!(
        env(gateway, "PRODUCT_URL").unwrap(),
        format!("http://product:{}", port_of("product"))
    );
    let worker = &find("Deployment", "worker")["spec"]["template"]["spec"]["containers"][0];
    assert!(env(worker, "WORKER_CONCURRENCY").is_some());
    let hpa = find("HorizontalPodAutoscaler", "worker");
    assert_eq!(s(&hpa["spec"]["scaleTargetRef"]["name"]), "worker");
    assert!(find("RabbitmqCluster", "rabbitmq")["spec"]["replicas"].is_number());
}

#[test]
fn kubernetes_runs_jaeger_v2_with_collector_and_query_apart_and_the_index_cleaner() {
    let resources = k8s_base_resources();
    let find = |kind: &str, name: &str| find_resource(&resources, kind, name);
    let env = |c: &Value, key: &str| env_entry(c, key).map(|e| s(&e["value"]));
    // Jaeger v2 through the OpenTelemetry Operator: a collector that
    // autoscales, and the query service (UI) scaled apart, both on the same
    // Elasticsearch indices, which a CronJob prunes.
    let jaeger = find("OpenTelemetryCollector", "jaeger");
    let jaeger_query = find("OpenTelemetryCollector", "jaeger-query");
    for collector in [jaeger, jaeger_query] {
        assert!(
            s(&collector["spec"]["image"]).starts_with("jaegertracing/jaeger:2."),
            "{:?}",
            collector["spec"]["image"]
        );
    }
    let jaeger_config = &jaeger["spec"]["config"];
    let query_config = &jaeger_query["spec"]["config"];
    let extensions = |config: &Value| -> Vec<String> {
        config["service"]["extensions"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(s)
            .collect()
    };
    let query_extension = "jaeger_query".to_string();
    assert!(!extensions(jaeger_config).contains(&query_extension));
    assert!(extensions(query_config).contains(&query_extension));
    assert!(
        s(&jaeger_config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]).ends_with(":4317")
    );
    let autoscaler = &jaeger["spec"]["autoscaler"];
    assert!(
        autoscaler["maxReplicas"].as_u64().unwrap() > autoscaler["minReplicas"].as_u64().unwrap()
    );
    let written = elasticsearch_storage(
        jaeger_config,
        &jaeger_config["exporters"]["jaeger_storage_exporter"]["trace_storage"],
    );
    let read = elasticsearch_storage(
        query_config,
        &query_config["extensions"]["jaeger_query"]["storage"]["traces"],
    );
    assert_eq!(read["server_urls"], written["server_urls"]);
    assert_eq!(
        read["indices"]["index_prefix"],
        written["indices"]["index_prefix"]
    );
    let cleaner = find("CronJob", "jaeger-es-index-cleaner");
    assert_eq!(s(&cleaner["spec"]["schedule"]), "55 23 * * *");
    let cleaner = &cleaner["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert!(s(&cleaner["image"]).starts_with("jaegertracing/jaeger-es-index-cleaner:"));
    // NUM_OF_DAYS, then the same Elasticsearch; the same index prefix.
    assert_eq!(s(&cleaner["args"][0]), "7");
    assert_eq!(s(&cleaner["args"][1]), s(&written["server_urls"][0]));
    assert_eq!(
        env(cleaner, "INDEX_PREFIX").unwrap(),
        s(&written["indices"]["index_prefix"])
    );
}

#[test]
fn the_kubernetes_collector_tail_samples_and_spreads_traces_over_jaegers_pods() {
    let resources = k8s_base_resources();
    let find = |kind: &str, name: &str| find_resource(&resources, kind, name);
    let jaeger = find("OpenTelemetryCollector", "jaeger");
    // The collector keeps every error trace, and a ratio of the rest.
    let collector = find("ConfigMap", "otel-collector-config");
    let collector_config: Value =
        serde_yaml_ng::from_str(&s(&collector["data"]["config.yaml"])).unwrap();
    let policies = collector_config["processors"]["tail_sampling"]["policies"]
        .as_sequence()
        .unwrap();
    assert!(policies
        .iter()
        .any(|p| s(&p["type"]) == "status_code" && p["status_code"]["status_codes"][0] == "ERROR"));
    assert!(policies.iter().any(|p| s(&p["type"]) == "probabilistic"));
    // It spreads traces over the Jaeger collector's pods through the headless
    // Service the OpenTelemetry Operator names `<name>-collector-headless`.
    let to_jaeger = &collector_config["exporters"]["loadbalancing/jaeger"]["resolver"]["dns"];
    assert_eq!(
        s(&to_jaeger["hostname"]),
        format!("{}-collector-headless", s(&jaeger["metadata"]["name"]))
    );
    assert_eq!(s(&to_jaeger["port"]), "4317");
    assert_eq!(
        collector_config["service"]["pipelines"]["traces"]["exporters"][0],
        "loadbalancing/jaeger"
    );
}

/// `(major, minor)` of a `1.89`-style version.
fn major_minor(version: &str) -> (u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

#[test]
fn the_dockerfile_builds_with_a_toolchain_the_workspace_supports() {
    let manifest = read_repo_file("Cargo.toml");
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("workspace rust-version")
        .trim_matches('"');
    let dockerfile = read_repo_file("Dockerfile");
    let builder = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .expect("a rust builder stage");
    let toolchain = builder.split(['-', ' ']).next().unwrap();
    assert!(
        major_minor(toolchain) >= major_minor(msrv),
        "the Dockerfile builds with rust {toolchain}, the workspace needs {msrv}"
    );
}

#[test]
fn the_dockerfile_copies_what_the_services_build_scripts_include() {
    // A build script's `#[path = "../dir/file.rs"]` module is outside the
    // crate: an image build without `dir` fails at the last layer.
    // And it must be there before the build that runs the scripts, with
    // nothing of it left out of the build context.
    let dockerfile = read_repo_file("Dockerfile");
    let last_build = dockerfile
        .rfind("cargo build")
        .expect("the Dockerfile builds");
    let ignored = read_repo_file(".dockerignore");
    for service in ["gateway", "backend", "product", "worker"] {
        let script = read_repo_file(&format!("{service}/build.rs"));
        for line in script.lines().filter(|l| l.starts_with("#[path = \"../")) {
            let dir = line["#[path = \"../".len()..].split('/').next().unwrap();
            let copy = dockerfile.find(&format!("COPY {dir} {dir}"));
            assert!(
                copy.is_some_and(|at| at < last_build),
                "{service}/build.rs includes ../{dir}, which the Dockerfile does not copy before it builds"
            );
            assert!(
                !ignored
                    .lines()
                    .any(|pattern| pattern.trim().starts_with(dir)),
                ".dockerignore leaves {dir} out of the build context"
            );
        }
    }
}

#[test]
fn the_dockerfile_copies_every_workspace_members_manifest() {
    // Cargo refuses a workspace with a member's manifest missing: the
    // dependency layer needs all of them, images or not.
    let manifest = read_repo_file("Cargo.toml");
    let members = manifest
        .lines()
        .find_map(|l| l.strip_prefix("members = "))
        .expect("workspace members");
    let dockerfile = read_repo_file("Dockerfile");
    for member in members
        .trim_matches(['[', ']'])
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
    {
        assert!(
            dockerfile.contains(&format!("COPY {member}/Cargo.toml {member}/")),
            "the Dockerfile does not copy {member}/Cargo.toml"
        );
    }
}
