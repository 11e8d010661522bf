//! `GET /api/openapi.json` against the README: every error code the README's
//! error table gives is documented, with the README's status, on the
//! operations that answer it. (What the live stack answers is checked
//! against the document by schemathesis: `openapi.rs`.)

use std::time::Duration;

use e2e_tests::{in_process, repo::read_repo_file};
use serde_json::Value;
use shared::http::ErrorCode;

/// The README's error table: (status cell, codes).
fn readme_error_table() -> Vec<(String, Vec<String>)> {
    let readme = read_repo_file("README.md");
    let table: Vec<&str> = readme
        .lines()
        .skip_while(|line| !line.starts_with("| case | status | code |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .collect();
    assert!(!table.is_empty(), "the README has an error table");
    table
        .iter()
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let codes = cells[3]
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|code| code.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                .map(str::to_string)
                .collect();
            (cells[2].to_string(), codes)
        })
        .collect()
}

/// Codes not tied to an operation: answered for any path or method.
const ROUTING_CODES: [&str; 2] = ["route_not_found", "method_not_allowed"];

#[actix_web::test]
async fn every_error_code_in_the_readme_is_documented_where_it_occurs() {
    let nowhere = "http://127.0.0.1:9";
    let gateway = in_process::gateway(nowhere, nowhere, Duration::from_secs(1));
    let response = reqwest::get(format!("{}/api/openapi.json", gateway.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        document["openapi"]
    );

    let documented: Vec<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .flat_map(|operation| operation["responses"].as_object().unwrap().iter())
        .map(|(status, response)| {
            (
                status.clone(),
                response["description"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for (status_cell, codes) in readme_error_table() {
        for code in codes {
            let parsed: ErrorCode = serde_json::from_value(Value::String(code.clone()))
                .unwrap_or_else(|_| panic!("the README names `{code}`, which is no error code"));
            let status = parsed.status().as_u16().to_string();
            assert!(
                status_cell.contains(&status),
                "README: `{code}` is {status}, not {status_cell}"
            );
            if ROUTING_CODES.contains(&code.as_str()) {
                continue;
            }
            assert!(
                documented
                    .iter()
                    .any(|(s, description)| *s == status
                        && description.contains(&format!("`{code}`"))),
                "no operation documents {status} `{code}`"
            );
        }
    }
}
