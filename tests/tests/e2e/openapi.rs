//! The HTTP API as a contract: schemathesis (from PyPI) generates requests
//! from the document the gateway serves at `/api/openapi.json`, sends them
//! to the live stack and checks every answer against the document.

use std::process::Command;

use e2e_tests::Platform;

/// Examples per operation: enough to reach every documented error of the
/// validation, bounded for a 2-core CI machine.
const EXAMPLES_PER_OPERATION: &str = "30";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_the_live_stack_matches_the_openapi_document() {
    let platform = Platform::start("openapi").await;
    let schema = platform.url("/api/openapi.json");
    let report = platform.gateway.log_path.with_file_name("schemathesis");
    std::fs::create_dir_all(&report).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("st")
            // Its cache of found crashes goes next to the logs, not into the tree.
            .current_dir(&report)
            .args(["run", &schema])
            .args(["--checks", "all"])
            .args(["--max-examples", EXAMPLES_PER_OPERATION])
            // Reproducible: the same requests on every run.
            .args(["--seed", "20261201"])
            .args(["--workers", "1", "--request-timeout", "10", "--no-color"])
            .args(["--report", "ndjson", "--report-dir", "."])
            .output()
            .expect("schemathesis (`st`; scripts/ensure-python-deps.sh installs it)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found answers that do not match the document:\n{stdout}\n{}\ngateway log: {}",
        String::from_utf8_lossy(&output.stderr),
        platform.gateway.log_path.display()
    );
    // It found and tested the four operations.
    let tested = stdout
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("Tested:"));
    assert_eq!(tested, Some("Tested: 4"), "{stdout}");
}
