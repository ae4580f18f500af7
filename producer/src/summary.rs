//! What a run achieved: the [`Summary`] a Job prints and returns, shared by
//! the send loop ([`crate::run`]) and the continuous canary ([`crate::canary`]).

use std::{collections::BTreeMap, time::Duration};

use tracing::info;

/// What a run achieved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Topic written.
    pub topic: String,
    /// Run id of the demo records.
    pub run_id: String,
    /// Records to send.
    pub records: u64,
    /// Records acknowledged.
    pub acked: u64,
    /// Records given up on.
    pub failed: u64,
    /// Records sent again after an error (without idempotence each may
    /// have been written twice).
    pub retries: u64,
    /// With idempotence (`PRODUCER_IDEMPOTENCE`, the default): the producer
    /// id from `InitProducerId` (the last one, if the epoch ran out).
    pub producer_id: Option<i64>,
    /// Its epoch at the end.
    pub producer_epoch: Option<i16>,
    /// Epoch bumps after the broker lost or refused sequence numbers.
    pub epoch_bumps: u64,
    /// Why records were sent again: the broker's error (`NotEnoughReplicas`,
    /// `NotLeaderOrFollower`, ...) or `connection`, `timeout`, ... → records.
    pub retry_reasons: BTreeMap<String, u64>,
    /// Key+value+header bytes acknowledged.
    pub bytes: u64,
    /// From the first send to the last acknowledgement.
    pub elapsed: Duration,
    /// Acknowledgement latency, 50th percentile.
    pub ack_p50: Duration,
    /// 99th percentile.
    pub ack_p99: Duration,
    /// Maximum.
    pub ack_max: Duration,
    /// Acknowledged records per partition.
    pub per_partition: BTreeMap<i32, u64>,
}

impl Summary {
    /// Records per second over `elapsed`.
    fn records_per_sec(&self) -> f64 {
        per_sec(self.acked as f64, self.elapsed)
    }

    /// Megabytes (10^6) per second over `elapsed`.
    fn mb_per_sec(&self) -> f64 {
        per_sec(self.bytes as f64 / 1e6, self.elapsed)
    }

    /// `reason=records,…`, most records first; empty without retries.
    pub fn retry_reasons_text(&self) -> String {
        let mut reasons: Vec<(&String, &u64)> = self.retry_reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        reasons
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Logs the summary as one line.
    pub fn log(&self) {
        info!(
            topic = %self.topic,
            run_id = %self.run_id,
            records = self.records,
            acked = self.acked,
            not_acked = self.records.saturating_sub(self.acked),
            retries = self.retries,
            idempotent = self.producer_id.is_some(),
            producer_id = self.producer_id,
            producer_epoch = self.producer_epoch,
            epoch_bumps = self.epoch_bumps,
            retry_reasons = %self.retry_reasons_text(),
            bytes = self.bytes,
            seconds = format_args!("{:.3}", self.elapsed.as_secs_f64()),
            records_per_sec = format_args!("{:.0}", self.records_per_sec()),
            mb_per_sec = format_args!("{:.2}", self.mb_per_sec()),
            ack_p50_ms = format_args!("{:.2}", ms(self.ack_p50)),
            ack_p99_ms = format_args!("{:.2}", ms(self.ack_p99)),
            ack_max_ms = format_args!("{:.2}", ms(self.ack_max)),
            "summary"
        );
    }
}

pub(crate) fn per_sec(x: f64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        x / d.as_secs_f64()
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
