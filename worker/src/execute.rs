//! What each task type does. Pure functions, so they are easy to test; the
//! [`crate::actors::TaskExecutor`] decides where they run.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// `hash`: SHA-256 of `data`; each further round hashes the previous raw
/// 32-byte digest. Returns the final digest as 64 hex characters.
pub fn hash_rounds(data: &str, rounds: u64) -> String {
    let mut digest = Sha256::digest(data.as_bytes());
    for _ in 1..rounds {
        digest = Sha256::digest(digest);
    }
    hex::encode(digest)
}

/// The result body of a `hash` task.
pub fn hash_result(data: &str, rounds: u64) -> Value {
    json!({"sha256": hash_rounds(data, rounds)})
}

/// The result body of a `sleep` task.
pub fn sleep_result(ms: u64) -> Value {
    json!({"slept_ms": ms})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_round_is_plain_sha256() {
        assert_eq!(
            hash_rounds("abc", 1),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn further_rounds_hash_the_raw_digest() {
        let once = Sha256::digest(b"abc");
        assert_eq!(hash_rounds("abc", 2), hex::encode(Sha256::digest(once)));
    }
}
