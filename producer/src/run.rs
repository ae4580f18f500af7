//! The producer Job: connect, make sure the topic exists, send every record
//! in per-partition batches, wait for every acknowledgement, report.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::Utc;
use common::{
    http::{Health, Sidecar},
    kafka::KafkaError,
    metrics as m,
};
use futures::{stream::FuturesUnordered, FutureExt, StreamExt};
use hdrhistogram::Histogram;
use rskafka::{
    client::{
        error::{Error as ClientError, ProtocolError},
        partition::{Compression, PartitionClient, UnknownTopicHandling},
        Client,
    },
    record::Record,
};
use tokio::{net::TcpListener, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    batcher::{Batch, Batcher, Limits, Slot, MAX_REQUESTS_PER_PARTITION},
    config::{Config, Source},
    partitioner::Partitioner,
    payload::{self, InputRecord, KeyTemplate},
    sequence::{Answer, ProducerIdAndEpoch, Verdict},
    summary::{ms, per_sec, Summary},
};

/// How long in-flight records may still be acknowledged after SIGTERM.
const DRAIN_ON_SIGNAL: Duration = Duration::from_secs(10);

/// Errors that end a run.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// The connection could not be set up.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The topic does not exist and `--create-topic` was not given.
    #[error("topic {topic:?} does not exist on {bootstrap}; create it, or pass --create-topic (PRODUCER_CREATE_TOPIC=true)")]
    TopicMissing {
        /// The topic.
        topic: String,
        /// Where we looked.
        bootstrap: String,
    },
    /// Cluster metadata or topic creation failed.
    #[error("{what} for topic {topic:?} failed: {source}")]
    Metadata {
        /// What we tried.
        what: &'static str,
        /// The topic.
        topic: String,
        /// rskafka's error.
        source: Box<ClientError>,
    },
    /// The canary could not create its balanced topic
    /// (`CANARY_TOPIC_BALANCE`) before the timeout.
    #[error("canary topic {topic:?}: {source}")]
    Placement {
        /// The topic.
        topic: String,
        /// The last failure.
        source: Box<kafka_group::admin::AdminError>,
    },
    /// `--input` could not be used.
    #[error(transparent)]
    Input(#[from] payload::InputError),
    /// The idempotent producer got no producer id.
    #[error(
        "idempotent producer: InitProducerId failed: {}",
        explain(source, true)
    )]
    Idempotence {
        /// rskafka's error.
        source: Box<ClientError>,
    },
    /// Not every record was acknowledged.
    #[error("not all records acknowledged: {acked} acknowledged, {not_acked} not acknowledged ({reason})")]
    Incomplete {
        /// Acknowledged.
        acked: u64,
        /// Not acknowledged.
        not_acked: u64,
        /// Deadline, signal, or the last error.
        reason: String,
        /// What was measured up to then.
        summary: Box<Summary>,
    },
    /// The HTTP sidecar failed.
    #[error("HTTP sidecar failed: {0}")]
    Http(#[from] std::io::Error),
}

/// Runs the Job: serves the sidecar on `listener`, sends, waits, reports.
/// Cancelling `shutdown` stops sending; records in flight get
/// [`DRAIN_ON_SIGNAL`] to be acknowledged.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Summary, ProducerError> {
    let sidecar =
        Sidecar::start(listener, "producer").map_err(|e| std::io::Error::other(e.to_string()))?;
    let health = sidecar.health.clone();

    let result = produce_all(&config, &health, &shutdown).await;

    match &result {
        Ok(s) => health.set_not_ready(format!(
            "finished: {} of {} records acknowledged",
            s.acked, s.records
        )),
        Err(e) => health.set_not_ready(format!("failed: {e}")),
    }
    if !config.metrics_grace.is_zero() && !shutdown.is_cancelled() {
        info!(
            seconds = config.metrics_grace.as_secs(),
            "serving /metrics for the grace period before exiting"
        );
        tokio::select! {
            () = tokio::time::sleep(config.metrics_grace) => {}
            () = shutdown.cancelled() => {}
        }
    }
    sidecar.stop().await;
    result
}

/// The batch, when it was sent, and the records' offsets or the error.
type Outcome = (Batch, Instant, Result<Vec<i64>, ClientError>);

/// Builds record `seq` from the input file or as a demo record; again, the
/// same way, for a retry, so nothing is kept twice while in flight.
struct Records<'a> {
    config: &'a Config,
    input: Option<Vec<InputRecord>>,
    key_template: Option<&'a KeyTemplate>,
    record_size: usize,
}

impl Records<'_> {
    fn key(&self, seq: u64) -> Option<Vec<u8>> {
        match &self.input {
            Some(input) => input.get(seq as usize).and_then(|r| r.key.clone()),
            None => self
                .key_template
                .map(|t| t.render(seq, &self.config.run_id)),
        }
    }

    fn build(&self, seq: u64, key: Option<Vec<u8>>, span: &tracing::Span) -> Record {
        // One clock read for both the demo record's `sent_at` and the record
        // timestamp.
        let now = Utc::now();
        let value = match &self.input {
            Some(input) => input
                .get(seq as usize)
                .map(|r| r.value.clone())
                .unwrap_or_default(),
            None => payload::demo_value(&self.config.run_id, seq, now, self.record_size),
        };
        let mut headers = BTreeMap::new();
        if !span.is_disabled() {
            common::trace::inject(span, &mut headers);
        }
        Record {
            key,
            value: Some(value),
            headers,
            timestamp: now,
        }
    }
}

async fn produce_all(
    config: &Config,
    health: &Health,
    shutdown: &CancellationToken,
) -> Result<Summary, ProducerError> {
    let started = Instant::now();
    let deadline = started + config.timeout;

    let input = match &config.source {
        Source::Input { path, key_field } => Some(read_input(path, key_field.as_deref()).await?),
        Source::Demo { .. } => None,
    };
    let total = match (&config.source, &input) {
        (_, Some(recs)) => recs.len() as u64,
        (Source::Demo { count, .. }, None) => *count,
        (Source::Input { .. }, None) => 0,
    };
    let mut summary = Summary {
        topic: config.topic.clone(),
        run_id: config.run_id.clone(),
        records: total,
        ..Summary::default()
    };
    let incomplete = |summary: &Summary, reason: String| ProducerError::Incomplete {
        acked: summary.acked,
        not_acked: summary.records.saturating_sub(summary.acked),
        reason,
        summary: Box::new(summary.clone()),
    };

    // The Job names its record count, the canary (which has none) its rate.
    let (what, records, rate) = if config.continuous {
        ("connecting (continuous canary)", None, config.rate)
    } else {
        ("connecting", Some(total), None)
    };
    info!(
        topic = %config.topic,
        bootstrap = %config.kafka.bootstrap.join(","),
        security_protocol = %config.kafka.security_protocol,
        rate,
        records,
        run_id = %config.run_id,
        "{what}"
    );
    let remaining = deadline.saturating_duration_since(Instant::now());
    // Every failure (wrong password, unknown CA, …) is retried with growing
    // backoff until the timeout; /readyz shows the latest one meanwhile.
    let on_failure = |e: &KafkaError| {
        health.beat();
        health.set_not_ready(e.to_string());
    };
    let client = tokio::select! {
        c = config.kafka.connect_retrying(remaining, on_failure) => c?,
        () = shutdown.cancelled() => return Err(incomplete(&summary, "shutdown requested while connecting".to_owned())),
    };
    health.beat();
    // Canary mode reads the metadata itself (leadership metrics, new
    // partitions) and, with CANARY_TOPIC_BALANCE, creates the topic.
    let mut reconciler = if config.continuous {
        let admin = kafka_group::admin::AdminClient::new(
            config.kafka.connection_config()?,
            config.kafka.bootstrap.clone(),
        );
        let mut r = crate::canary::reconcile::Reconciler::new(config, admin);
        r.create_if_missing(deadline, shutdown)
            .await
            .map_err(|e| ProducerError::Placement {
                topic: config.topic.clone(),
                source: Box::new(e),
            })?;
        Some(r)
    } else {
        None
    };
    let partitions = tokio::select! {
        p = ensure_topic(&client, config, deadline) => p?,
        () = shutdown.cancelled() => return Err(incomplete(&summary, "shutdown requested while reading metadata".to_owned())),
    };
    let producers = tokio::select! {
        p = partition_producers(&client, config, &partitions, deadline) => p?,
        () = shutdown.cancelled() => return Err(incomplete(&summary, "shutdown requested while reading metadata".to_owned())),
    };
    let idempotent = if config.idempotence {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let id = tokio::select! {
            id = tokio::time::timeout(remaining, client.init_producer_id()) => match id {
                Ok(Ok(id)) => id,
                Ok(Err(e)) => return Err(ProducerError::Idempotence { source: Box::new(e) }),
                Err(_) => return Err(ProducerError::Idempotence { source: Box::new(ClientError::Timeout) }),
            },
            () = shutdown.cancelled() => return Err(incomplete(&summary, "shutdown requested while getting a producer id".to_owned())),
        };
        info!(
            producer_id = id.id,
            producer_epoch = id.epoch,
            "idempotent producer"
        );
        Some(id)
    } else {
        info!("idempotence off (PRODUCER_IDEMPOTENCE=false): a retried batch may be written twice");
        None
    };
    health.set_ready();
    info!(topic = %config.topic, partitions = partitions.len(), "metadata known; sending");
    if let (Some(reconciler), Some(rate), Source::Demo { record_size, .. }) =
        (reconciler.take(), config.rate, &config.source)
    {
        let appeared = reconciler.partitions();
        let metadata = tokio::spawn(reconciler.run(shutdown.clone()));
        let s = crate::canary::produce_forever(
            config,
            crate::canary::Connected {
                client: Arc::new(client),
                producers,
                idempotent,
            },
            appeared,
            rate,
            *record_size,
            shutdown,
        )
        .await;
        if let Err(e) = metadata.await {
            warn!(error = %e, "canary metadata task failed");
        }
        return match s.records - s.acked {
            0 => Ok(s),
            n => Err(incomplete(
                &s,
                format!("stopped with {n} canary record(s) not acknowledged"),
            )),
        };
    }

    let topic = config.topic.clone();
    m::init_producer(&topic);
    let sent_counter = metrics::counter!(m::PRODUCER_RECORDS_SENT, "topic" => topic.clone());
    let bytes_counter = metrics::counter!(m::PRODUCER_BYTES_SENT, "topic" => topic.clone());
    let pending_gauge = metrics::gauge!(m::PRODUCER_RECORDS_PENDING, "topic" => topic.clone());
    let ack_hist = m::RecordHistogram::new(
        metrics::histogram!(m::PRODUCER_ACK_LATENCY, "topic" => topic.clone()),
    );
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
        .map_err(|e| std::io::Error::other(e.to_string()))?;

    let mut partitioner = Partitioner::new(partitions.len() as i32);
    let records = Records {
        config,
        input,
        key_template: match &config.source {
            Source::Demo { key, .. } => key.as_ref(),
            Source::Input { .. } => None,
        },
        record_size: match &config.source {
            Source::Demo { record_size, .. } => *record_size,
            Source::Input { .. } => 0,
        },
    };

    let server_address = config.kafka.server_address();
    let mut in_flight: FuturesUnordered<futures::future::BoxFuture<'static, Outcome>> =
        FuturesUnordered::new();
    let mut batcher = Batcher::new(
        Limits {
            linger: config.linger,
            max_batch_bytes: config.max_batch_bytes,
            max_in_flight: config.max_in_flight,
            max_in_flight_bytes: config.max_in_flight_bytes,
            max_requests_per_partition: MAX_REQUESTS_PER_PARTITION,
        },
        idempotent,
    );
    // After 32767 epoch bumps: the request for a new producer id.
    let mut new_producer_id: Option<
        futures::future::BoxFuture<'_, Result<ProducerIdAndEpoch, ClientError>>,
    > = None;
    // Sends are failing and being retried: /readyz says why until one succeeds.
    let mut retrying = false;
    let mut next_seq: u64 = 0;
    let mut stop_reason: Option<String> = None;
    let mut last_error: Option<String> = None;
    // The error that made records fail, which the final reason names
    // rather than a later error that was retried.
    let mut failure: Option<String> = None;
    let mut progress = tokio::time::interval_at(
        Instant::now() + config.progress_every,
        config.progress_every,
    );
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    // Pinned once and reset: a new timer per loop turn showed in profiles.
    let give_up = tokio::time::sleep_until(deadline);
    tokio::pin!(give_up);
    let wake_timer = tokio::time::sleep_until(deadline);
    tokio::pin!(wake_timer);
    let send_started = Instant::now();

    loop {
        // Hand records over, up to the in-flight limits, honouring the rate.
        let mut rate_wait: Option<Instant> = None;
        let now = Instant::now();
        while stop_reason.is_none() && next_seq < total && batcher.has_room() {
            if let Some(rate) = config.rate {
                let due = send_started + Duration::from_secs_f64(next_seq as f64 / rate);
                if due > now {
                    rate_wait = Some(due);
                    break;
                }
            }
            let seq = next_seq;
            next_seq += 1;
            let key = records.key(seq);
            let partition_idx = partitioner.choose(key.as_deref());
            let partition = partitions
                .get(partition_idx as usize)
                .copied()
                .unwrap_or(partition_idx);
            let span = send_span(&config.topic, partition, key.as_deref(), &server_address);
            let record = records.build(seq, key, &span);
            let bytes = record.approximate_size();
            let slot = Slot {
                seq,
                handed_over: now,
                span,
            };
            batcher.add(partition, slot, record, bytes);
        }
        // Waiting for more records only makes sense while more can come.
        let no_more = next_seq >= total || stop_reason.is_some();
        batcher.close(
            now,
            no_more || (!batcher.has_room() && in_flight.is_empty()),
        );

        // Send what may go: per partition in order, at most
        // MAX_REQUESTS_PER_PARTITION requests on the wire.
        let sendable =
            batcher.take_sendable(now, |s| records.build(s.seq, records.key(s.seq), &s.span));
        for batch in sendable {
            match producers.get(&batch.partition) {
                Some(client) => {
                    in_flight.push(Box::pin(send(
                        client.clone(),
                        batch,
                        config.compression,
                        config.kafka.request_timeout,
                    )));
                }
                None => {
                    // Cannot happen: partitions come from the same metadata.
                    summary.failed += batch.slots.len() as u64;
                    batcher.settled(&batch);
                }
            }
        }
        pending_gauge.set(batcher.outstanding() as f64);

        if batcher.outstanding() == 0 && no_more {
            break;
        }
        if new_producer_id.is_none() && matches!(batcher.producer(), Some((None, _))) {
            info!("producer epoch exhausted: asking for a new producer id");
            new_producer_id = Some(Box::pin(client.init_producer_id()));
        }
        let wake = rate_wait
            .into_iter()
            .chain(batcher.next_deadline(now))
            .min();
        if let Some(w) = wake {
            wake_timer.as_mut().reset(w);
        }

        tokio::select! {
            Some(first) = in_flight.next(), if !in_flight.is_empty() => {
                // Take every completion that is ready now, then refill once.
                let mut done = vec![first];
                while let Some(Some(o)) = in_flight.next().now_or_never() {
                    done.push(o);
                }
                let now = Instant::now();
                for (batch, sent_at, result) in done {
                    let n = batch.slots.len();
                    let answer = match &result {
                        Ok(_) => Answer::Written,
                        Err(e) => Answer::of(e),
                    };
                    let may_retry = stop_reason.is_none() && now < deadline;
                    let verdict = batcher.judge(&batch, answer, may_retry);
                    let first_seq = batch.slots.first().map_or(0, |s| s.seq);
                    if let Err(e) = &result {
                        let kind = error_kind(e);
                        metrics::counter!(m::PRODUCER_ERRORS, "topic" => topic.clone(), "kind" => kind).increment(1);
                        let message = explain(e, idempotent.is_some());
                        match verdict {
                            Verdict::Acked => info!(partition = batch.partition, records = n, first_seq, error = %message, "acknowledged: the broker had written these records before"),
                            Verdict::Retry => {
                                debug!(partition = batch.partition, records = n, first_seq, attempts = batch.attempts + 1, sent_ms = format_args!("{:.1}", ms(now.saturating_duration_since(sent_at))), error = %message, "send failed; will retry");
                                // Each time: the reason may change (leader gone, then too few replicas).
                                retrying = true;
                                health.set_not_ready(format!("retrying sends to partition {}: {message}", batch.partition));
                                *summary.retry_reasons.entry(reason_of(e)).or_default() += n as u64;
                            }
                            Verdict::Fail => {
                                warn!(partition = batch.partition, records = n, first_seq, kind, error = %message, "records not acknowledged");
                                failure = Some(message.clone());
                            }
                        }
                        last_error = Some(message);
                    }
                    match verdict {
                        Verdict::Acked => {
                            let offsets = result.as_deref().unwrap_or_default();
                            for (i, slot) in batch.slots.iter().enumerate() {
                                if let Some(offset) = offsets.get(i) {
                                    slot.span.record("messaging.kafka.offset", offset);
                                }
                                let latency = now.saturating_duration_since(slot.handed_over);
                                ack_hist.record(latency.as_secs_f64());
                                let _ = latencies.record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1));
                            }
                            summary.acked += n as u64;
                            summary.bytes += batch.bytes as u64;
                            *summary.per_partition.entry(batch.partition).or_default() += n as u64;
                            sent_counter.increment(n as u64);
                            bytes_counter.increment(batch.bytes as u64);
                            batcher.settled(&batch);
                            if retrying {
                                retrying = false;
                                health.set_ready();
                            }
                        }
                        Verdict::Retry => {
                            summary.retries += n as u64;
                            let attempts = batch.attempts + 1;
                            batcher.retry(batch, now + backoff_for(config, attempts));
                        }
                        Verdict::Fail => {
                            summary.failed += n as u64;
                            batcher.settled(&batch);
                        }
                    }
                }
            }
            id = async { new_producer_id.as_mut().expect("guarded").await }, if new_producer_id.is_some() => {
                new_producer_id = None;
                match id {
                    Ok(id) => {
                        info!(producer_id = id.id, producer_epoch = id.epoch, "new producer id");
                        batcher.set_producer(id);
                    }
                    Err(e) => {
                        let message = explain(&e, true);
                        warn!(error = %message, "no new producer id; records not yet sent cannot be sent");
                        last_error = Some(format!("InitProducerId: {message}"));
                        stop_reason = Some("no new producer id after the epoch ran out".to_owned());
                        break;
                    }
                }
            }
            () = &mut wake_timer, if wake.is_some() => {}
            _ = progress.tick() => {
                info!(
                    topic = %topic,
                    sent = next_seq,
                    acked = summary.acked,
                    in_flight = batcher.outstanding(),
                    records_per_sec = format_args!("{:.0}", per_sec(summary.acked as f64, send_started.elapsed())),
                    "progress"
                );
            }
            _ = beat.tick() => {}
            () = &mut give_up => {
                let reason = if stop_reason.is_some() {
                    format!("drain after shutdown request took longer than {DRAIN_ON_SIGNAL:?}")
                } else {
                    format!("timeout of {}s reached", config.timeout.as_secs())
                };
                stop_reason = Some(reason);
                break;
            }
            () = shutdown.cancelled(), if stop_reason.is_none() => {
                info!(in_flight = batcher.outstanding(), "shutdown requested: no new records; waiting for acknowledgements in flight");
                stop_reason = Some("shutdown requested".to_owned());
                // Records waiting to be sent again are given up; the rest
                // were handed over and go out now.
                batcher.drop_retries();
                let drain_until = deadline.min(Instant::now() + DRAIN_ON_SIGNAL);
                give_up.as_mut().reset(drain_until);
            }
        }
        health.beat();
    }
    pending_gauge.set(0.0);

    if let Some((producer, bumps)) = batcher.producer() {
        summary.producer_id = producer.or(idempotent).map(|p| p.id);
        summary.producer_epoch = producer.map(|p| p.epoch);
        summary.epoch_bumps = bumps;
    }
    summary.elapsed = send_started.elapsed();
    summary.ack_p50 = Duration::from_micros(latencies.value_at_quantile(0.5));
    summary.ack_p99 = Duration::from_micros(latencies.value_at_quantile(0.99));
    summary.ack_max = Duration::from_micros(latencies.max());

    if summary.acked == summary.records {
        Ok(summary)
    } else {
        let reason = match (stop_reason, failure.or(last_error)) {
            (Some(r), Some(e)) => format!("{r}; last error: {e}"),
            (Some(r), None) => r,
            (None, Some(e)) => format!("last error: {e}"),
            (None, None) => "unknown".to_owned(),
        };
        Err(incomplete(&summary, reason))
    }
}

/// One attempt; retries are the run loop's (rskafka's own `produce` would
/// retry inside, out of order and beyond the batcher's bounds).
async fn send(
    client: Arc<PartitionClient>,
    mut batch: Batch,
    compression: Compression,
    timeout: Duration,
) -> Outcome {
    let sent_at = Instant::now();
    let records = std::mem::take(&mut batch.records);
    let result = client
        .produce_once(records, compression, batch.sequence, timeout)
        .await;
    (batch, sent_at, result)
}

/// The OpenTelemetry `send {topic}` span for one record (messaging
/// semantic conventions); a disabled span when tracing is off.
fn send_span(
    topic: &str,
    partition: i32,
    key: Option<&[u8]>,
    server_address: &str,
) -> tracing::Span {
    if !common::trace::enabled() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        target: common::trace::SPAN_TARGET,
        "send",
        "otel.name" = %format_args!("send {topic}"),
        "otel.kind" = "producer",
        "messaging.system" = "kafka",
        "messaging.operation.type" = "send",
        "messaging.operation.name" = "send",
        "messaging.destination.name" = topic,
        "messaging.destination.partition.id" = %partition,
        "messaging.kafka.message.key" = common::trace::printable_key(key),
        "messaging.kafka.offset" = tracing::field::Empty,
        "server.address" = server_address,
    )
}

/// The retry backoff between the configured bounds.
fn backoff_for(config: &Config, attempts: u32) -> Duration {
    config.kafka.retry_backoff().jittered(attempts)
}

/// A small, fixed set of labels for `kafka_producer_errors_total`.
fn error_kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::Connection(_) => "connection",
        ClientError::Request(_) => "request",
        ClientError::ServerError { .. } => "broker",
        ClientError::RetryFailed(_) => "retries_exhausted",
        ClientError::Timeout => "timeout",
        _ => "other",
    }
}

/// A short, fixed name for why a send failed: the broker's error code or
/// the client's error kind.
fn reason_of(e: &ClientError) -> String {
    match e {
        ClientError::ServerError { protocol_error, .. } => protocol_error.to_string(),
        _ => error_kind(e).to_owned(),
    }
}

/// The error as one line; a refusal of idempotent writes says what the
/// user needs.
fn explain(e: &ClientError, idempotent: bool) -> String {
    match e {
        ClientError::ServerError {
            protocol_error: ProtocolError::ClusterAuthorizationFailed,
            ..
        } if idempotent => "the broker refused idempotent writes (ClusterAuthorizationFailed): \
             the user needs the ACL IDEMPOTENT_WRITE on the cluster, or WRITE on the topic \
             (Kafka 2.8 and later), or set PRODUCER_IDEMPOTENCE=false (retries may then write \
             records twice)"
            .to_owned(),
        _ => e.to_string(),
    }
}

async fn read_input(
    path: &std::path::Path,
    key_field: Option<&str>,
) -> Result<Vec<InputRecord>, ProducerError> {
    let path = path.to_owned();
    let key_field = key_field.map(str::to_owned);
    let shown = path.display().to_string();
    let result = tokio::task::spawn_blocking(move || {
        if path.as_os_str() == "-" {
            payload::read_input(std::io::stdin().lock(), "-", key_field.as_deref())
        } else {
            let file = std::fs::File::open(&path).map_err(|source| payload::InputError::Read {
                path: path.display().to_string(),
                source,
            })?;
            payload::read_input(
                std::io::BufReader::new(file),
                &path.display().to_string(),
                key_field.as_deref(),
            )
        }
    })
    .await;
    match result {
        Ok(r) => Ok(r?),
        Err(e) => Err(payload::InputError::Read {
            path: shown,
            source: std::io::Error::other(e.to_string()),
        }
        .into()),
    }
}

/// Returns the topic's partition ids, creating the topic when asked to.
async fn ensure_topic(
    client: &Client,
    config: &Config,
    deadline: Instant,
) -> Result<Vec<i32>, ProducerError> {
    let metadata_err = |what, e: ClientError| ProducerError::Metadata {
        what,
        topic: config.topic.clone(),
        source: Box::new(e),
    };
    let find = || async {
        let topics = client
            .list_topics()
            .await
            .map_err(|e| metadata_err("listing topics", e))?;
        Ok::<_, ProducerError>(
            topics
                .into_iter()
                .find(|t| t.name == config.topic)
                .map(|t| t.partitions.into_iter().collect::<Vec<i32>>()),
        )
    };
    if let Some(p) = find().await?.filter(|p| !p.is_empty()) {
        return Ok(p);
    }
    // The balanced canary topic was created (or is being created by
    // another canary) before: only its metadata is awaited.
    let expected = match config.create_topic {
        _ if config.canary.balance => 1,
        Some(create) => {
            create_topic(client, config, create).await?;
            create.partitions
        }
        None => {
            return Err(ProducerError::TopicMissing {
                topic: config.topic.clone(),
                bootstrap: config.kafka.bootstrap.join(","),
            })
        }
    };
    // Metadata propagates asynchronously; wait until every partition shows.
    let mut retries = config.kafka.retry_backoff().retries();
    loop {
        if let Some(p) = find().await? {
            if p.len() as i32 >= expected {
                return Ok(p);
            }
        }
        let delay = retries.next_delay();
        if Instant::now() + delay > deadline {
            return Err(ProducerError::Incomplete {
                acked: 0,
                not_acked: 0,
                reason: format!(
                    "topic {:?} was created but its metadata did not appear before the timeout",
                    config.topic
                ),
                summary: Box::default(),
            });
        }
        tokio::time::sleep(delay).await;
    }
}

/// `--create-topic`: creates the topic, if no one did first.
async fn create_topic(
    client: &Client,
    config: &Config,
    create: crate::config::CreateTopic,
) -> Result<(), ProducerError> {
    let metadata_err = |what, e: ClientError| ProducerError::Metadata {
        what,
        topic: config.topic.clone(),
        source: Box::new(e),
    };
    info!(topic = %config.topic, partitions = create.partitions, replication_factor = create.replication_factor, "creating topic");
    let controller = client
        .controller_client()
        .map_err(|e| metadata_err("finding the controller", e))?;
    match controller
        .create_topic(
            config.topic.as_str(),
            create.partitions,
            create.replication_factor,
            10_000,
        )
        .await
    {
        Ok(()) => {}
        // Another producer (or a previous attempt) created it first.
        Err(ClientError::ServerError {
            protocol_error: ProtocolError::TopicAlreadyExists,
            ..
        }) => {}
        Err(e) => return Err(metadata_err("creating the topic", e)),
    }
    Ok(())
}

async fn partition_producers(
    client: &Client,
    config: &Config,
    partitions: &[i32],
    deadline: Instant,
) -> Result<BTreeMap<i32, Arc<PartitionClient>>, ProducerError> {
    // Concurrently: each finds its partition's leader and connects.
    let lookups = partitions.iter().map(|&p| async move {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let pc = tokio::time::timeout(
            remaining,
            client.partition_client(config.topic.as_str(), p, UnknownTopicHandling::Retry),
        )
        .await
        .map_err(|_| ProducerError::Metadata {
            what: "finding the partition leader",
            topic: config.topic.clone(),
            source: Box::new(ClientError::Timeout),
        })?
        .map_err(|e| ProducerError::Metadata {
            what: "finding the partition leader",
            topic: config.topic.clone(),
            source: Box::new(e),
        })?;
        Ok::<_, ProducerError>((p, Arc::new(pc)))
    });
    Ok(futures::future::try_join_all(lookups)
        .await?
        .into_iter()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::broker_error;

    #[test]
    fn retry_reasons_list_the_most_frequent_first() {
        let mut s = Summary::default();
        assert_eq!(s.retry_reasons_text(), "");
        s.retry_reasons.insert("connection".to_owned(), 3);
        s.retry_reasons.insert("NotEnoughReplicas".to_owned(), 120);
        s.retry_reasons.insert("NotLeaderOrFollower".to_owned(), 3);
        assert_eq!(
            s.retry_reasons_text(),
            "NotEnoughReplicas=120,NotLeaderOrFollower=3,connection=3"
        );
        assert_eq!(
            reason_of(&broker_error(ProtocolError::NotEnoughReplicas, None)),
            "NotEnoughReplicas"
        );
        assert_eq!(reason_of(&ClientError::Timeout), "timeout");
    }
}
