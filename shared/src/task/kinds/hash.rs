//! `hash`: SHA-256 of `payload.data`; each further round (`payload.rounds`,
//! 1 by default) hashes the previous raw 32-byte digest. Answers
//! `{"sha256": "<64 hex>"}`. CPU work: it runs on the blocking thread pool,
//! never on the thread that runs the consumers.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use super::{whole_number, Cancelled, Kind};

/// Most SHA-256 rounds a `hash` task may ask for.
pub const HASH_MAX_ROUNDS: u64 = 100_000;

/// The `hash` task type.
pub struct Hash;

/// What to hash, how often.
#[derive(Debug)]
pub struct HashPayload {
    data: String,
    rounds: u64,
}

impl Kind for Hash {
    const NAME: &'static str = "hash";
    type Payload = HashPayload;

    fn parse(payload: &Value) -> Result<HashPayload, String> {
        let data = payload
            .get("data")
            .and_then(Value::as_str)
            .ok_or("hash needs \"data\" as a string")?
            .to_string();
        let rounds = match payload.get("rounds") {
            None => 1,
            Some(rounds) => whole_number(rounds)
                .filter(|r| (1..=HASH_MAX_ROUNDS).contains(r))
                .ok_or_else(|| {
                    format!("\"rounds\" must be an integer from 1 to {HASH_MAX_ROUNDS}")
                })?,
        };
        Ok(HashPayload { data, rounds })
    }

    fn payload_schema() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "data",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("What to hash (its UTF-8 bytes).")),
            )
            .required("data")
            .property(
                "rounds",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(HASH_MAX_ROUNDS))
                    .default(Some(1.into()))
                    .description(Some("How many times to hash (1 by default).")),
            )
            .build()
    }

    async fn run(payload: HashPayload) -> Result<Value, Cancelled> {
        tokio::task::spawn_blocking(move || json!({"sha256": hash_rounds(&payload.data, payload.rounds)}))
            .await
            .map_err(|e| Cancelled(e.to_string()))
    }
}

/// SHA-256 of `data`, then of each previous raw digest, `rounds` times in
/// all; the final digest as 64 hex characters.
pub fn hash_rounds(data: &str, rounds: u64) -> String {
    let mut digest = Sha256::digest(data.as_bytes());
    for _ in 1..rounds {
        digest = Sha256::digest(digest);
    }
    hex::encode(digest)
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
