//! `db_client_operation_duration_seconds` (the conventions'
//! `db.client.operation.duration`) and the connection-pool gauges, read from
//! the pools at scrape time.

use std::time::Duration;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{exemplar::HistogramWithExemplars, family::Family, gauge::ConstGauge},
    registry::{Registry, Unit},
};
use sqlx::AnyPool;
use tracing::Span;

use super::{DbSystem, Statement};
use crate::metrics::{trace_exemplar_of, LatencyHistogram, TraceExemplar};

/// Labels of the operation duration histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DbOperationLabels {
    /// `sqlite` or `postgresql`.
    pub db_system_name: String,
    /// `SELECT`, `INSERT`, ...
    pub db_operation_name: String,
    /// The table.
    pub db_collection_name: String,
}

/// Buckets (seconds): statements take from tens of microseconds (SQLite) to
/// the timeout.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

fn histogram() -> HistogramWithExemplars<TraceExemplar> {
    HistogramWithExemplars::new(BUCKETS.into_iter())
}

/// The statement durations of one database handle.
#[derive(Clone)]
pub(super) struct DbMetrics {
    duration: LatencyHistogram<DbOperationLabels>,
}

impl DbMetrics {
    pub(super) fn new() -> Self {
        Self {
            duration: Family::new_with_constructor(histogram),
        }
    }

    pub(super) fn observe(
        &self,
        system: DbSystem,
        statement: &Statement,
        elapsed: Duration,
        span: &Span,
    ) {
        self.duration
            .get_or_create(&DbOperationLabels {
                db_system_name: system.as_str().to_string(),
                db_operation_name: statement.operation.to_string(),
                db_collection_name: statement.collection.to_string(),
            })
            .observe(elapsed.as_secs_f64(), trace_exemplar_of(span), None);
    }

    pub(super) fn register(&self, registry: &mut Registry, pools: PoolGauges) {
        registry.register_with_unit(
            "db_client_operation_duration",
            "Duration of database statements",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register_collector(Box::new(pools));
    }
}

/// The pools by name (`read`/`write` for SQLite, `main` for PostgreSQL).
#[derive(Debug, Clone)]
pub(super) struct PoolGauges {
    pub(super) pools: Vec<(&'static str, AnyPool, u32)>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabels {
    db_client_connection_pool_name: String,
    db_client_connection_state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    db_client_connection_pool_name: String,
}

impl Collector for PoolGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut count = encoder.encode_descriptor(
                "db_client_connection_count",
                "Open connections by state (idle, used)",
                None,
                ConstGauge::new(0i64).metric_type(),
            )?;
            for (name, pool, _) in &self.pools {
                let idle = pool.num_idle() as i64;
                let open = i64::from(pool.size());
                for (state, value) in [("idle", idle), ("used", (open - idle).max(0))] {
                    let labels = PoolStateLabels {
                        db_client_connection_pool_name: (*name).to_string(),
                        db_client_connection_state: state.to_string(),
                    };
                    ConstGauge::new(value).encode(count.encode_family(&labels)?)?;
                }
            }
        }
        let mut max = encoder.encode_descriptor(
            "db_client_connection_max",
            "The most connections each pool opens",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for (name, _, limit) in &self.pools {
            let labels = PoolLabels {
                db_client_connection_pool_name: (*name).to_string(),
            };
            ConstGauge::new(i64::from(*limit)).encode(max.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
