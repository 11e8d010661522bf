//! The repository's own files (compose, Prometheus, Grafana, k8s), read the
//! way the tests that check them need.

use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml_ng::Value;

/// `path`, relative to the repository root.
pub fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// The file's text; panics naming the file if it cannot be read.
pub fn read_repo_file(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every non-empty YAML document of the file, with `<<` merge keys applied.
pub fn yaml_docs(path: &str) -> Vec<Value> {
    let text = read_repo_file(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let mut value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}"));
            value
                .apply_merge()
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            value
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// A YAML scalar as a string; panics on a mapping or a sequence.
pub fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// Every resource of `k8s/base` (its kustomization aside).
pub fn k8s_base_resources() -> Vec<Value> {
    let mut files: Vec<String> = std::fs::read_dir(repo_file("k8s/base"))
        .expect("k8s/base")
        .map(|entry| {
            entry
                .expect("k8s/base entry")
                .file_name()
                .to_string_lossy()
                .to_string()
        })
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|name| yaml_docs(&format!("k8s/base/{name}")))
        .collect()
}

/// The resource of `kind` named `name` among `resources`; panics if absent.
pub fn find_resource<'a>(resources: &'a [Value], kind: &str, name: &str) -> &'a Value {
    resources
        .iter()
        .find(|r| scalar(&r["kind"]) == kind && scalar(&r["metadata"]["name"]) == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}
