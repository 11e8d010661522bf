//! The load generator against the real stack, for a few seconds per
//! scenario: it runs, the platform answers every iteration, and the summary
//! it writes holds what the benchmarks read.

use std::process::Command;

use e2e_tests::{platform::bin_dir, Platform};
use serde_json::Value;

fn loadgen(platform: &Platform, args: &[&str]) -> Value {
    let json = bin_dir()
        .join("e2e-logs")
        .join(platform.vhost.name())
        .join(format!("loadgen-{}.json", args[0]));
    let output = Command::new(bin_dir().join("loadgen"))
        .args(args)
        .args(["--host", &platform.gateway.url(), "--duration", "2s"])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run loadgen (cargo build --workspace --bins builds it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "loadgen {args:?}:\n{stdout}\n{stderr}"
    );
    // The live progress line and the table.
    assert!(stderr.contains("iterations"), "{stderr}");
    assert!(stdout.contains("p99 ms"), "{stdout}");
    serde_json::from_slice(&std::fs::read(&json).expect("summary JSON")).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_against_the_platform_without_errors() {
    let platform = Platform::start("loadgen").await;
    for args in [
        vec!["post-tasks", "--users", "4", "--follow-every", "10"],
        vec!["products", "--users", "4"],
        vec!["mixed", "--users", "4"],
        vec!["e2e", "--rate", "50", "--users", "8"],
    ] {
        let summary = loadgen(&platform, &args);
        let scenario = args[0];
        assert_eq!(summary["scenario"], scenario);
        assert!(summary["iterations"].as_u64().unwrap() > 5, "{summary}");
        assert_eq!(summary["failed_iterations"], 0, "{summary}");
        let requests = summary["requests"].as_array().unwrap();
        assert!(!requests.is_empty(), "{summary}");
        for request in requests {
            assert!(
                request["errors"].as_object().unwrap().is_empty(),
                "{summary}"
            );
            assert!(request["latency"]["p99_ms"].as_f64().unwrap() >= 0.0);
        }
        if scenario != "products" {
            let e2e = &summary["end_to_end"];
            assert!(e2e["succeeded"].as_u64().unwrap() > 0, "{summary}");
            assert_eq!(e2e["unfinished"], 0, "{summary}");
        }
    }
    let fixed = loadgen(&platform, &["e2e", "--rate", "50", "--users", "8"]);
    assert_eq!(fixed["mode"], "fixed-rate");
    let rate = fixed["iterations_per_second"].as_f64().unwrap();
    assert!(
        (25.0..=75.0).contains(&rate),
        "50/s asked, {rate}/s run: {fixed}"
    );
}

#[test]
fn broker_ceiling_measures_every_mode_and_leaves_its_queue_deleted() {
    let vhost = e2e_tests::broker::TestVhost::create("ceiling");
    let output = Command::new(bin_dir().join("broker-ceiling"))
        .args(["--amqp", &vhost.amqp_url(), "--messages", "400"])
        .output()
        .expect("run broker-ceiling (cargo build --workspace --bins builds it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_str(&stdout).expect("one JSON object");
    for mode in [
        "publish_alone_per_s",
        "consume_alone_per_s",
        "consume_grouped_acks_per_s",
        "publish_and_consume_per_s",
        "publish_one_at_a_time_per_s",
        "publish_latency_run_per_s",
    ] {
        assert!(
            result[mode].as_f64().unwrap_or(0.0) > 0.0,
            "{mode}: {result}"
        );
    }
    let p50 = result["confirm_p50_ms"].as_f64().unwrap_or(0.0);
    let p99 = result["confirm_p99_ms"].as_f64().unwrap_or(0.0);
    assert!(p50 > 0.0 && p99 >= p50, "confirm latency: {result}");
    // The queue it declared is deleted at the end.
    let queues = Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "-p", vhost.name(), "name"])
        .output()
        .expect("rabbitmqctl");
    assert!(
        String::from_utf8_lossy(&queues.stdout).trim().is_empty(),
        "{}",
        String::from_utf8_lossy(&queues.stdout)
    );
}
