//! broker-ceiling: what RabbitMQ itself sustains on this machine with the
//! platform's guarantees (durable queue, persistent messages, publisher
//! confirms, manual acks), measured with a bare lapin publisher and consumer
//! and nothing else: the ceiling the worker and `POST /api/tasks` are
//! measured against (BENCHMARKS.md).
//!
//! ```text
//! broker-ceiling --amqp amqp://guest:guest@127.0.0.1:5672/%2f --messages 50000
//! ```
//!
//! Prints one JSON object: messages per second publishing alone (256
//! confirms in flight), consuming alone (prefetch 200, one ack each), the
//! same acknowledging every 16th delivery with `multiple` (as the worker
//! does when deliveries settle together), both at once, publishing one
//! message at a time (waiting for each confirm), and 64 publishers at once,
//! each waiting for its confirm before it publishes again, with the time
//! from each publish to its confirm (p50/p99): what 64 connections of
//! `POST /api/tasks` wait for at the least.

use std::{
    process::ExitCode,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, ConnectionProperties,
};

/// Confirms awaited at once when publishing in a pipeline.
const IN_FLIGHT: usize = 256;
/// Publishers at once for the confirm latency: as many as the connections
/// of the POST benchmarks.
const LATENCY_PUBLISHERS: usize = 64;
/// Unacknowledged deliveries per consumer.
const PREFETCH: u16 = 200;
/// Deliveries per acknowledgement when consuming with grouped acks.
const GROUPED_ACKS: usize = 16;

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut url = "amqp://guest:guest@127.0.0.1:5672/%2f".to_string();
    let mut messages = 50_000usize;
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--amqp", Some(value)) => url = value,
            ("--messages", Some(value)) => match value.parse() {
                Ok(n) if n > 0 => messages = n,
                _ => return usage(&format!("--messages {value}")),
            },
            _ => return usage(&flag),
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("broker-ceiling: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(measure(&url, messages)) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("broker-ceiling: {err}");
            ExitCode::FAILURE
        }
    }
}

fn usage(what: &str) -> ExitCode {
    eprintln!(
        "broker-ceiling: bad argument {what}\nusage: broker-ceiling [--amqp URL] [--messages N]"
    );
    ExitCode::from(2)
}

async fn measure(url: &str, messages: usize) -> Result<serde_json::Value, Error> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let queue = format!("broker-ceiling-{}", std::process::id());
    let publisher = confirming_channel(&connection, &queue).await?;
    let body = br#"{"id":"00000000-0000-0000-0000-000000000000","type":"echo","payload":{"n":1}}"#;

    let (publish_alone, _) = rate(
        messages,
        publish(&publisher, &queue, body, messages, IN_FLIGHT),
    )
    .await?;
    let (consume_alone, ()) = rate(messages, consume(&connection, &queue, messages, 1)).await?;
    let (consume_grouped, ()) = {
        publish(&publisher, &queue, body, messages, IN_FLIGHT).await?;
        rate(
            messages,
            consume(&connection, &queue, messages, GROUPED_ACKS),
        )
        .await?
    };
    let together = {
        let started = Instant::now();
        let (published, consumed) = tokio::join!(
            publish(&publisher, &queue, body, messages, IN_FLIGHT),
            consume(&connection, &queue, messages, 1)
        );
        published?;
        consumed?;
        messages as f64 / started.elapsed().as_secs_f64()
    };
    let (one_at_a_time, _) = {
        let n = (messages / 10).max(1);
        let measured = rate(n, publish(&publisher, &queue, body, n, 1)).await?;
        // Leave the queue empty.
        consume(&connection, &queue, n, 1).await?;
        measured
    };
    let (with_latency, mut latencies) = {
        // As many as the other modes: the broker's rare stalls belong in a p99.
        let measured = rate(
            messages,
            publish_concurrently(&publisher, &queue, body, messages),
        )
        .await?;
        consume(&connection, &queue, messages, GROUPED_ACKS).await?;
        measured
    };
    latencies.sort_unstable();
    publisher
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    let _ = connection.close(200, "done".into()).await;
    Ok(serde_json::json!({
        "messages": messages,
        "publish_alone_per_s": publish_alone.round(),
        "consume_alone_per_s": consume_alone.round(),
        "consume_grouped_acks_per_s": consume_grouped.round(),
        "grouped_acks": GROUPED_ACKS,
        "publish_and_consume_per_s": together.round(),
        "publish_one_at_a_time_per_s": one_at_a_time.round(),
        "confirms_in_flight": IN_FLIGHT,
        "prefetch": PREFETCH,
        "latency_publishers": LATENCY_PUBLISHERS,
        "publish_latency_run_per_s": with_latency.round(),
        "confirm_p50_ms": percentile_ms(&latencies, 0.50),
        "confirm_p99_ms": percentile_ms(&latencies, 0.99),
    }))
}

/// Messages per second of `work`, and what it returned.
async fn rate<T>(
    messages: usize,
    work: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<(f64, T), Error> {
    let started = Instant::now();
    let output = work.await?;
    Ok((messages as f64 / started.elapsed().as_secs_f64(), output))
}

/// The `q` quantile of `sorted`, in milliseconds to 0.01.
fn percentile_ms(sorted: &[Duration], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return 0.0;
    };
    let at = (last as f64 * q).round() as usize;
    (sorted[at].as_secs_f64() * 100_000.0).round() / 100.0
}

async fn confirming_channel(connection: &Connection, queue: &str) -> Result<Channel, Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(channel)
}

/// Publishes `count` persistent messages, keeping `in_flight` confirms
/// outstanding; fails on a nack.
async fn publish(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    count: usize,
    in_flight: usize,
) -> Result<(), Error> {
    let mut pending = futures_util::stream::FuturesOrdered::new();
    for _ in 0..count {
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        pending.push_back(confirm);
        if pending.len() >= in_flight {
            if let Some(confirmed) = pending.next().await {
                if !confirmed?.is_ack() {
                    return Err("the broker nacked a message".into());
                }
            }
        }
    }
    while let Some(confirmed) = pending.next().await {
        if !confirmed?.is_ack() {
            return Err("the broker nacked a message".into());
        }
    }
    Ok(())
}

/// Publishes `count` messages from [`LATENCY_PUBLISHERS`] publishers at
/// once on one channel, each waiting for its confirm before the next, with
/// the options the backend publishes a task with (`mandatory`, a message id,
/// a content type, trace and attempt headers). Returns each message's time
/// from its publish to its confirm.
async fn publish_concurrently(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    count: usize,
) -> Result<Vec<Duration>, Error> {
    let left = AtomicUsize::new(count);
    let publisher = || async {
        let mut latencies = Vec::new();
        while left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            let mut headers = FieldTable::default();
            headers.insert(
                "traceparent".into(),
                AMQPValue::LongString(
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
                ),
            );
            headers.insert("x-attempt".into(), AMQPValue::LongUInt(1));
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id("00000000-0000-0000-0000-000000000000".into())
                .with_headers(headers);
            let sent = Instant::now();
            let confirmed = channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body,
                    properties,
                )
                .await?
                .await?;
            if !confirmed.is_ack() {
                return Err::<_, Error>("the broker nacked a message".into());
            }
            latencies.push(sent.elapsed());
        }
        Ok(latencies)
    };
    let each =
        futures_util::future::try_join_all((0..LATENCY_PUBLISHERS).map(|_| publisher())).await?;
    Ok(each.concat())
}

/// Consumes and acknowledges `count` messages: one ack each (`every` 1),
/// or every `every`-th delivery (and the last) with `multiple`.
async fn consume(
    connection: &Connection,
    queue: &str,
    count: usize,
    every: usize,
) -> Result<(), Error> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions { global: false })
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "broker-ceiling".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut received = 0;
    while received < count {
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .map_err(|_| "no delivery for 30 s")?
            .ok_or("the consumer ended")??;
        received += 1;
        if received % every == 0 || received == count {
            let multiple = every > 1;
            delivery.ack(BasicAckOptions { multiple }).await?;
        }
    }
    channel.close(200, "done".into()).await?;
    Ok(())
}
