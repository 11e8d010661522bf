//! `<binary> --healthcheck`, the container HEALTHCHECK of images that have no
//! curl or shell: exit 0 while the service on the configured port is healthy.

use std::process::Command;

use e2e_tests::{
    platform::{bin_dir, free_port},
    Service, ServiceProcess,
};

fn healthcheck(port: u16) -> bool {
    Command::new(bin_dir().join("product"))
        .arg("--healthcheck")
        .env("PORT", port.to_string())
        .output()
        .expect("run product --healthcheck")
        .status
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_flag_probes_the_service_on_its_configured_port() {
    let product = ServiceProcess::start(
        Service::Product,
        &[("OTEL_SDK_DISABLED".into(), "true".into())],
        "healthcheck",
    )
    .await;
    assert!(
        healthcheck(product.port()),
        "healthy service reported unhealthy"
    );
    assert!(!healthcheck(free_port()), "nothing listening, yet healthy");
}
