//! A RabbitMQ vhost of the test's own, removed when dropped, so that tests
//! never see each other's durable queues.

use std::process::Command;

/// Where the local broker listens.
pub fn amqp_host() -> String {
    std::env::var("TEST_AMQP_HOST").unwrap_or_else(|_| "127.0.0.1:5672".to_string())
}

/// A vhost created with `rabbitmqctl`, with full permissions for `guest`.
pub struct TestVhost {
    name: String,
}

impl TestVhost {
    /// Creates a fresh vhost named after `label`.
    pub fn create(label: &str) -> Self {
        let name = format!(
            "e2e-{label}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Self { name }
    }

    /// The vhost name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An AMQP URL for `guest` in this vhost.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}/{}", amqp_host(), self.name)
    }

    /// Closes every client connection in this vhost (a broker-side outage
    /// that touches no other test).
    pub fn close_all_connections(&self, reason: &str) {
        rabbitmqctl(&["close_all_connections", "-p", &self.name, reason]);
    }

    /// Takes `guest`'s access to this vhost away: new connections are
    /// refused. With [`close_all_connections`](Self::close_all_connections)
    /// this is a broker outage scoped to the test.
    pub fn revoke_access(&self) {
        rabbitmqctl(&["clear_permissions", "-p", &self.name, "guest"]);
    }

    /// Gives `guest` its access back.
    pub fn grant_access(&self) {
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &self.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ]);
    }

    /// The type (`classic`, `quorum`, ...) of `queue` in this vhost.
    pub fn queue_type(&self, queue: &str) -> Option<String> {
        self.queue_column(queue, "type")
    }

    /// Messages in `queue` of this vhost (ready and unacknowledged).
    pub fn queue_depth(&self, queue: &str) -> Option<u64> {
        self.queue_column(queue, "messages")?.parse().ok()
    }

    /// One `rabbitmqctl list_queues` column of `queue`, if it exists.
    fn queue_column(&self, queue: &str, column: &str) -> Option<String> {
        let output = Command::new("rabbitmqctl")
            .args(["list_queues", "-q", "-p", &self.name, "name", column])
            .output()
            .ok()?;
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| {
                let mut cols = line.split_whitespace();
                (cols.next()? == queue).then(|| cols.next().map(str::to_string))?
            })
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

fn rabbitmqctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl must be installed and RabbitMQ running (see README: Tests)");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A direct AMQP client for tests: publish raw messages, read queues.
pub mod client {
    use lapin::{
        options::{BasicGetOptions, BasicPublishOptions},
        types::{AMQPValue, FieldTable},
        BasicProperties, Connection, ConnectionProperties,
    };

    /// A message read back from a queue.
    #[derive(Debug, Clone)]
    pub struct Received {
        /// Body.
        pub body: Vec<u8>,
        /// Headers, string values as text, integers formatted.
        pub headers: std::collections::HashMap<String, String>,
    }

    /// Publishes `body` to `queue` on the default exchange, as a producer
    /// outside the platform would.
    pub async fn publish_raw(amqp_url: &str, queue: &str, body: &[u8]) {
        let connection = Connection::connect(amqp_url, ConnectionProperties::default())
            .await
            .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        let _ = connection.close(200, "done".into()).await;
    }

    /// Takes every message currently in `queue` (acknowledging them).
    pub async fn drain(amqp_url: &str, queue: &str) -> Vec<Received> {
        let connection = Connection::connect(amqp_url, ConnectionProperties::default())
            .await
            .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        let mut out = Vec::new();
        while let Ok(Some(message)) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
        {
            let headers = message
                .delivery
                .properties
                .headers()
                .clone()
                .unwrap_or_else(FieldTable::default);
            out.push(Received {
                body: message.delivery.data.clone(),
                headers: headers
                    .inner()
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            AMQPValue::LongString(s) => s.to_string(),
                            AMQPValue::ShortString(s) => s.to_string(),
                            AMQPValue::LongUInt(n) => n.to_string(),
                            AMQPValue::LongLongInt(n) => n.to_string(),
                            other => format!("{other:?}"),
                        };
                        (k.to_string(), v)
                    })
                    .collect(),
            });
        }
        let _ = connection.close(200, "done".into()).await;
        out
    }
}
