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

    /// Messages ready in `queue` of this vhost.
    pub fn queue_depth(&self, queue: &str) -> Option<u64> {
        let output = Command::new("rabbitmqctl")
            .args(["list_queues", "-q", "-p", &self.name, "name", "messages"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| {
                let mut cols = line.split_whitespace();
                (cols.next()? == queue).then(|| cols.next()?.parse().ok())?
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
