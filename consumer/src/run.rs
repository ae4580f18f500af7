//! The consumer's main loop. The group membership is a
//! [`Session`](kafka_group::session::Session): this loop starts a worker
//! per partition it is assigned and stops the ones it must give up, commits
//! what they handled (every commit interval, every
//! `CONSUMER_COMMIT_MAX_RECORDS` records, before giving partitions up, at
//! shutdown), and keeps `/healthz` and `/readyz` current. On shutdown it
//! drains, commits and leaves, bounded by the drain timeout.

use std::{
    collections::BTreeMap,
    sync::{atomic::Ordering, Arc},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::{
    http::{Health, Sidecar},
    kafka::KafkaError,
    metrics as m,
};
use futures::future::BoxFuture;
use kafka_base::backoff::Backoff;
use kafka_group::session::{
    Assigned, Offsets, PendingCommit, Revocation, Session, SessionError, SessionEvent,
    SessionSettings, TopicMetadata,
};
use rskafka::client::Client;
use tokio::{net::TcpListener, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{
    config::Config,
    handler::{Handler, RecordHandler},
    partition::{fetch_bytes_per_partition, Budget, HandledSinceCommit, Worker, WorkerSettings},
};

/// Errors that end the consumer.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The connection could not be set up.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The group protocol says stop.
    #[error(transparent)]
    Group(#[from] SessionError),
    /// Shutdown could not commit and leave within the drain timeout.
    #[error("shutdown did not finish within the drain timeout of {timeout:?}: {detail}")]
    Drain {
        /// The configured drain timeout.
        timeout: Duration,
        /// What was still pending.
        detail: String,
    },
    /// The HTTP sidecar failed.
    #[error("HTTP sidecar failed: {0}")]
    Http(#[from] std::io::Error),
}

/// Runs the consumer until `shutdown` is cancelled (Ok after a clean drain),
/// handling records with the built-in [`Handler`].
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ConsumerError> {
    let handler = Arc::new(
        Handler::new(config.group.clone(), config.log_value_max_bytes).with_canary(config.canary),
    );
    run_with_handler(config, listener, shutdown, handler).await
}

/// Runs the consumer with a custom [`RecordHandler`].
pub async fn run_with_handler(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    handler: Arc<dyn RecordHandler>,
) -> Result<(), ConsumerError> {
    let sidecar =
        Sidecar::start(listener, "consumer").map_err(|e| std::io::Error::other(e.to_string()))?;
    m::init_consumer(&config.topics);
    let health = sidecar.health.clone();

    let result = consume(&config, &health, &shutdown, handler).await;

    health.set_not_ready("shutting down");
    sidecar.stop().await;
    result
}

async fn consume(
    config: &Config,
    health: &Health,
    shutdown: &CancellationToken,
    handler: Arc<dyn RecordHandler>,
) -> Result<(), ConsumerError> {
    info!(
        group = %config.group,
        topics = %config.topics.join(","),
        bootstrap = %config.kafka.bootstrap.join(","),
        security_protocol = %config.kafka.security_protocol,
        "starting"
    );
    // Connect, retrying with growing backoff while not ready (alive: the
    // loop beats): a consumer Deployment waits for its broker instead of
    // crash-looping.
    let connect = config.kafka.connect_until_cancelled(
        Backoff::new(config.kafka.backoff_initial, CONNECT_BACKOFF_MAX),
        shutdown,
        |e| health.set_not_ready(e.to_string()),
    );
    let Some(client) = beating(health, connect).await.map(Arc::new) else {
        return Ok(());
    };
    let connection = config.kafka.connection_config().map_err(|e| {
        ConsumerError::Group(SessionError::Unreachable {
            group: config.group.clone(),
            detail: e.to_string(),
        })
    })?;
    let mut session = Session::start(
        session_settings(config),
        connection,
        config.kafka.bootstrap.clone(),
        Arc::new(Metadata(Arc::clone(&client))),
    );
    let handled = HandledSinceCommit::new(config.commit_max_records);
    let mut partitions = Partitions {
        client,
        handler,
        // fetch_max_bytes is set per assignment (fetch_bytes_per_partition).
        settings: WorkerSettings {
            fetch_max_bytes: config.fetch_max_bytes,
            budget: Budget::new(config.buffer_max_bytes),
            fetch_max_wait: config.fetch_max_wait,
            buffer_batches: config.buffer_batches,
            decoded_batch_max_bytes: config.decoded_batch_max_bytes,
            reset: config.auto_offset_reset,
            backoff_initial: config.kafka.backoff_initial,
            backoff_max: config.kafka.backoff_max,
            server_address: config.kafka.server_address(),
            group: config.group.clone(),
            handled: Arc::clone(&handled),
        },
        workers: BTreeMap::new(),
        stop: shutdown.child_token(),
    };
    let rebalances = metrics::counter!(m::CONSUMER_REBALANCES);
    let assigned_gauge = metrics::gauge!(m::CONSUMER_ASSIGNED_PARTITIONS);
    let mut commit_tick = tokio::time::interval_at(
        Instant::now() + config.commit_interval,
        config.commit_interval,
    );
    let mut status_tick = tokio::time::interval(Duration::from_secs(1));
    // At most one commit on its way at a time; the session sends it on its
    // own connection, so the loop goes on watching readiness meanwhile.
    let mut in_flight: Option<InFlight> = None;
    let mut in_group = false;
    health.set_not_ready("joining the consumer group");

    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                return drain(config, session, partitions, in_flight, health).await;
            }
            event = session.next_event() => match event {
                Some(SessionEvent::Assigned(assigned)) => {
                    rebalances.increment(1);
                    in_group = true;
                    handled.restart();
                    partitions.start(config, &assigned);
                    assigned_gauge.set(partitions.workers.len() as f64);
                    commit_tick.reset();
                    // Readiness and lag at once, not a second later.
                    status_tick.reset_immediately();
                }
                Some(SessionEvent::Revoke(revocation)) => {
                    // Readiness is this member's: while some of its
                    // partitions keep flowing (a cooperative rebalance
                    // revokes only those that move) it stays ready.
                    let keeps = partitions
                        .workers
                        .keys()
                        .any(|k| !revocation.partitions.contains(k));
                    if !keeps {
                        health.set_not_ready("rebalancing");
                        in_group = false;
                    }
                    if let Some(flight) = in_flight.take() {
                        flight.wait(health, &partitions).await;
                    }
                    revoke(config, &session, &mut partitions, &revocation, health).await;
                    assigned_gauge.set(partitions.workers.len() as f64);
                    if !keeps {
                        health.set_not_ready("joining the consumer group");
                    }
                }
                Some(SessionEvent::Retrying(e)) => {
                    metrics::counter!(m::CONSUMER_ERRORS, "kind" => "group").increment(1);
                    health.set_not_ready(e.to_string());
                }
                // Logged by the session with what was dropped; the
                // Assigned that follows holds only the valid partitions.
                Some(SessionEvent::InvalidAssignment(_)) => {
                    metrics::counter!(m::CONSUMER_ERRORS, "kind" => "assignment").increment(1);
                }
                Some(SessionEvent::Fatal(e)) => {
                    partitions.stop_all(Duration::from_millis(500)).await;
                    error!(error = %e, "cannot stay in the consumer group");
                    return Err(e.into());
                }
                // The session's task ended without a word: no way to go on.
                None => {
                    partitions.stop_all(Duration::from_millis(500)).await;
                    return Err(SessionError::Cancelled.into());
                }
                Some(_) => {}
            },
            result = async { (&mut in_flight.as_mut().expect("guarded").pending).await }, if in_flight.is_some() => {
                let flight = in_flight.take().expect("guarded");
                if let Err(e) = flight.finish(&partitions, result) {
                    warn!(error = %e, "periodic commit failed; offsets stay pending");
                }
            }
            _ = commit_tick.tick(), if in_flight.is_none() && in_group => {
                in_flight = start_commit(&session, &partitions, &handled, commit_timeout(config));
            }
            () = handled.reached(), if in_flight.is_none() && in_group => {
                debug!(group = %config.group, max_records = config.commit_max_records, "records handled since the last commit reached the limit; committing");
                in_flight = start_commit(&session, &partitions, &handled, commit_timeout(config));
            }
            _ = status_tick.tick() => {
                health.beat();
                if in_group {
                    let status = Status {
                        group: &config.group,
                        stall_after: config.stall_after,
                        session_timeout: config.session_timeout,
                    };
                    status.update(health, &partitions, session.heartbeat_silence(), &session.missing_topics());
                }
            }
        }
    }
}

/// The longest wait between two connection attempts at start (the
/// README's "100 ms doubling to 30 s").
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The group membership's settings from the consumer's.
fn session_settings(config: &Config) -> SessionSettings {
    SessionSettings {
        group: config.group.clone(),
        group_instance_id: config.group_instance_id.clone(),
        topics: config.topics.clone(),
        assignors: config.assignors.clone(),
        session_timeout: config.session_timeout,
        heartbeat_interval: config.heartbeat_interval,
        rebalance_timeout: config.max_poll_interval,
        retry_backoff: config.kafka.retry_backoff(),
        rejoin_backoff: Backoff::new(
            config.kafka.backoff_initial,
            config.kafka.backoff_max.max(CONNECT_BACKOFF_MAX),
        ),
        metadata_refresh: config.metadata_refresh,
        revocation_commit_timeout: commit_timeout(config),
        protocol: config.group_protocol,
        remote_assignor: config.remote_assignor.clone(),
        classic_only: config
            .classic_only_keys
            .iter()
            .map(|k| (*k).to_owned())
            .collect(),
    }
}

/// Partition counts from rskafka's metadata, for the session.
#[derive(Debug)]
struct Metadata(Arc<Client>);

impl TopicMetadata for Metadata {
    fn partition_counts(
        &self,
        topics: Vec<String>,
    ) -> BoxFuture<'static, Result<BTreeMap<String, i32>, String>> {
        let client = Arc::clone(&self.0);
        Box::pin(async move { partition_counts(&client, &topics).await })
    }
}

/// How long one commit may take (periodic, and before giving partitions
/// up): the drain timeout, which the configuration keeps below the session
/// timeout, and at most half the session timeout, so that a commit stuck on
/// a dead connection is retried on a fresh one while the membership can
/// still be saved. The final commit gets what is left of the drain timeout.
fn commit_timeout(config: &Config) -> Duration {
    config.drain_timeout.min(config.session_timeout / 2)
}

/// Awaits `fut`, beating `health` every second meanwhile: waiting for the
/// broker (a commit, a frozen coordinator, workers finishing) is the loop
/// doing its job, so `/healthz` stays 200.
async fn beating<F: std::future::Future>(health: &Health, fut: F) -> F::Output {
    tokio::pin!(fut);
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = &mut fut => return r,
            _ = beat.tick() => health.beat(),
        }
    }
}

/// The partitions this member works on: a worker each.
struct Partitions {
    client: Arc<Client>,
    handler: Arc<dyn RecordHandler>,
    settings: WorkerSettings,
    workers: BTreeMap<(String, i32), Worker>,
    /// Parent of every worker's stop token: shutdown stops them all.
    stop: CancellationToken,
}

impl Partitions {
    /// Starts a worker for each assigned partition not running yet.
    fn start(&mut self, config: &Config, assigned: &Assigned) {
        let total = self.workers.len()
            + assigned
                .partitions
                .iter()
                .filter(|p| !self.workers.contains_key(&(p.topic.clone(), p.partition)))
                .count();
        // The buffer budget is split over the partitions held now.
        let fetch_max_bytes = fetch_bytes_per_partition(
            config.buffer_max_bytes,
            total,
            config.buffer_batches,
            config.fetch_max_bytes,
        );
        if !assigned.partitions.is_empty() {
            info!(
                group = %config.group,
                partitions = total,
                fetch_max_bytes,
                buffer_max_bytes = config.buffer_max_bytes,
                buffer_batches = config.buffer_batches,
                "fetch size per partition"
            );
        }
        let settings = WorkerSettings {
            fetch_max_bytes,
            ..self.settings.clone()
        };
        for p in &assigned.partitions {
            let key = (p.topic.clone(), p.partition);
            if self.workers.contains_key(&key) {
                continue;
            }
            let committed = p.committed.unwrap_or(-1);
            let worker = Worker::start(
                Arc::clone(&self.client),
                p.topic.clone(),
                p.partition,
                committed,
                Arc::clone(&self.handler),
                settings.clone(),
                &self.stop,
            );
            if committed >= 0 {
                metrics::gauge!(m::CONSUMER_COMMITTED_OFFSET, "topic" => p.topic.clone(), "partition" => p.partition.to_string()).set(committed as f64);
            }
            self.workers.insert(key, worker);
        }
        // Every partition held now (a cooperative rebalance assigns only
        // the new ones and keeps the rest running).
        let added: Vec<String> = assigned
            .partitions
            .iter()
            .map(|p| format!("{}-{}", p.topic, p.partition))
            .collect();
        info!(
            group = %config.group,
            generation = assigned.generation,
            partitions = %self.held(),
            added = %added.join(","),
            "assignment received"
        );
    }

    /// Every partition held now, as `topic-partition` joined by commas
    /// (incremental rebalances assign and revoke only some).
    fn held(&self) -> String {
        let held: Vec<String> = self
            .workers
            .keys()
            .map(|(topic, partition)| format!("{topic}-{partition}"))
            .collect();
        held.join(",")
    }

    /// Stops the workers of `keys` together, each within `within`; returns
    /// what they handled and had not committed.
    async fn stop(&mut self, keys: &[(String, i32)], within: Duration) -> Offsets {
        let workers: Vec<Worker> = keys.iter().filter_map(|k| self.workers.remove(k)).collect();
        let stopped = futures::future::join_all(workers.into_iter().map(|w| async move {
            let key = (w.topic.clone(), w.partition);
            let committed = w.progress.committed.load(Ordering::Relaxed);
            let progress = Arc::clone(&w.progress);
            let pos = w.stop(within).await;
            progress.position.store(pos, Ordering::Release);
            (key, pos, committed)
        }))
        .await;
        stopped
            .into_iter()
            .filter(|(_, pos, committed)| *pos >= 0 && pos != committed)
            .map(|(key, pos, _)| (key, pos))
            .collect()
    }

    async fn stop_all(&mut self, within: Duration) -> Offsets {
        self.stop.cancel();
        let keys: Vec<(String, i32)> = self.workers.keys().cloned().collect();
        self.stop(&keys, within).await
    }

    /// What the workers handled and have not committed.
    fn handled(&self) -> Offsets {
        self.workers
            .iter()
            .filter_map(|(key, w)| {
                let pos = w.progress.position.load(Ordering::Acquire);
                let committed = w.progress.committed.load(Ordering::Relaxed);
                (pos >= 0 && pos != committed).then(|| (key.clone(), pos))
            })
            .collect()
    }

    /// Records a successful commit of `offsets` on the workers still here.
    fn committed(&self, offsets: &Offsets) {
        for (key, offset) in offsets {
            if let Some(w) = self.workers.get(key) {
                w.progress.committed.store(*offset, Ordering::Relaxed);
            }
        }
        record_commit(offsets);
    }
}

/// Gives up the revoked partitions: stops their workers, then hands what
/// they handled to the session, which commits it unless they were lost.
async fn revoke(
    config: &Config,
    session: &Session,
    partitions: &mut Partitions,
    revocation: &Revocation,
    health: &Health,
) {
    for (topic, partition) in &revocation.partitions {
        clear_partition_gauges(&config.group, topic, *partition);
    }
    let handled = beating(
        health,
        partitions.stop(&revocation.partitions, config.drain_timeout),
    )
    .await;
    info!(
        group = %config.group,
        lost = revocation.lost,
        revoked = revocation.partitions.len(),
        partitions = %partitions.held(),
        "partitions revoked"
    );
    let committing = handled.clone();
    match beating(health, session.revoked(handled)).await {
        Ok(()) if !revocation.lost => record_commit(&committing),
        Ok(()) => {}
        Err(e) => {
            warn!(error = %e, "commit before giving up the partitions failed; the next owner may see these records again");
        }
    }
}

/// A periodic commit on its way.
struct InFlight {
    pending: PendingCommit,
    offsets: Offsets,
    started: Instant,
}

impl InFlight {
    /// Waits for the commit (bounded by its own deadline) and applies it.
    async fn wait(self, health: &Health, partitions: &Partitions) {
        let InFlight {
            pending,
            offsets,
            started,
        } = self;
        let result = beating(health, pending).await;
        if let Err(e) = commit_outcome(partitions, &offsets, started, result) {
            warn!(error = %e, "commit failed; offsets stay pending");
        }
    }

    /// Applies the commit's `result`.
    fn finish(
        self,
        partitions: &Partitions,
        result: Result<(), SessionError>,
    ) -> Result<(), SessionError> {
        commit_outcome(partitions, &self.offsets, self.started, result)
    }
}

/// Records how a commit of `offsets` started at `started` ended.
fn commit_outcome(
    partitions: &Partitions,
    offsets: &Offsets,
    started: Instant,
    result: Result<(), SessionError>,
) -> Result<(), SessionError> {
    metrics::histogram!(m::CONSUMER_COMMIT_LATENCY).record(started.elapsed().as_secs_f64());
    match &result {
        Ok(()) => partitions.committed(offsets),
        Err(_) => metrics::counter!(m::CONSUMER_ERRORS, "kind" => "commit").increment(1),
    }
    result
}

/// Starts committing what the workers handled since the last commit;
/// `None` when there is nothing to commit.
fn start_commit(
    session: &Session,
    partitions: &Partitions,
    handled: &HandledSinceCommit,
    within: Duration,
) -> Option<InFlight> {
    // First: records handled after this point count towards the next commit.
    handled.restart();
    let offsets = partitions.handled();
    if offsets.is_empty() {
        return None;
    }
    Some(InFlight {
        pending: session.commit(offsets.clone(), within),
        offsets,
        started: Instant::now(),
    })
}

/// SIGTERM: stop fetching, finish the records in hand, commit, leave — all
/// within the drain timeout.
async fn drain(
    config: &Config,
    session: Session,
    mut partitions: Partitions,
    in_flight: Option<InFlight>,
    health: &Health,
) -> Result<(), ConsumerError> {
    health.set_not_ready("shutting down");
    info!(group = %config.group, partitions = partitions.workers.len(), "shutdown: draining, committing and leaving the group");
    let deadline = Instant::now() + config.drain_timeout;
    let work = async {
        let handled = partitions.stop_all(config.drain_timeout / 2).await;
        let remaining = deadline.saturating_duration_since(Instant::now());
        // The session sends a commit still on its way before the final one,
        // so it is not awaited first: a cooperative member's may be waiting
        // for a rebalance to end, which a member shutting down need not.
        let committed = session.close(handled.clone(), remaining).await;
        if let Some(flight) = in_flight {
            flight.wait(health, &partitions).await;
        }
        if committed.is_ok() && !handled.is_empty() {
            record_commit(&handled);
            info!(group = %config.group, partitions = handled.len(), "final offsets committed");
        }
        committed
    };
    match tokio::time::timeout(config.drain_timeout, work).await {
        Ok(Ok(())) => {
            info!(group = %config.group, "stopped cleanly");
            Ok(())
        }
        Ok(Err(SessionError::Cancelled)) | Err(_) => Err(ConsumerError::Drain {
            timeout: config.drain_timeout,
            detail: "the broker did not answer the final commit or LeaveGroup in time".to_owned(),
        }),
        Ok(Err(e)) => Err(ConsumerError::Drain {
            timeout: config.drain_timeout,
            detail: format!("final commit failed: {e}"),
        }),
    }
}

fn record_commit(positions: &BTreeMap<(String, i32), i64>) {
    for ((t, p), o) in positions {
        metrics::gauge!(m::CONSUMER_COMMITTED_OFFSET, "topic" => t.clone(), "partition" => p.to_string()).set(*o as f64);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    metrics::gauge!(m::CONSUMER_LAST_COMMIT).set(now);
}

/// A partition this member no longer owns must not keep reporting its last
/// lag or stall (alerts would fire on the old owner).
fn clear_partition_gauges(group: &str, topic: &str, partition: i32) {
    let p = partition.to_string();
    metrics::gauge!(m::CONSUMER_LAG, "consumergroup" => group.to_owned(), "topic" => topic.to_owned(), "partition" => p.clone()).set(0.0);
    metrics::gauge!(m::CONSUMER_PARTITION_STALLED, "topic" => topic.to_owned(), "partition" => p)
        .set(0.0);
}

/// What readiness is judged on.
struct Status<'a> {
    group: &'a str,
    stall_after: Duration,
    session_timeout: Duration,
}

impl Status<'_> {
    /// Readiness and lag: ready only while in the group with partitions, a
    /// heartbeat through within the session timeout, and no partition
    /// lagging without progress for the stall window.
    fn update(
        &self,
        health: &Health,
        partitions: &Partitions,
        heartbeat_silence: Option<Duration>,
        missing_topics: &[String],
    ) {
        let mut stalled = Vec::new();
        for w in partitions.workers.values() {
            if let Some(lag) = w.progress.committed_lag() {
                metrics::gauge!(m::CONSUMER_LAG, "consumergroup" => self.group.to_owned(), "topic" => w.topic.clone(), "partition" => w.partition.to_string())
                    .set(lag as f64);
            }
            let lag = w.progress.lag().unwrap_or(0);
            let idle = w.progress.idle_for();
            if lag > 0 && idle > self.stall_after {
                let error = w.progress.last_error.lock().ok().and_then(|e| e.clone());
                stalled.push(format!(
                    "{}-{} (lag {lag}, no progress for {}s{})",
                    w.topic,
                    w.partition,
                    idle.as_secs(),
                    error.map(|e| format!(": {e}")).unwrap_or_default()
                ));
            }
            let is_stalled = lag > 0 && idle > self.stall_after;
            metrics::gauge!(m::CONSUMER_PARTITION_STALLED, "topic" => w.topic.clone(), "partition" => w.partition.to_string())
                .set(if is_stalled { 1.0 } else { 0.0 });
        }
        let assigned = !partitions.workers.is_empty();
        if let Some(silent) = heartbeat_silence {
            health.set_not_ready(format!(
                "no heartbeat got through for {}s (session timeout {}s): this member cannot know \
                 whether it still owns its partitions; finding the group coordinator again",
                silent.as_secs(),
                self.session_timeout.as_secs()
            ));
        } else if !missing_topics.is_empty() && !assigned {
            health.set_not_ready(format!(
                "subscribed topic(s) {} do not exist; waiting for them to be created",
                missing_topics.join(", ")
            ));
        } else if !assigned {
            health.set_not_ready(
                "in the group but no partitions assigned (more members than partitions?)",
            );
        } else if !stalled.is_empty() {
            health.set_not_ready(format!("stalled partitions: {}", stalled.join(", ")));
        } else {
            health.set_ready();
        }
    }
}

async fn partition_counts(
    client: &Client,
    topics: &[String],
) -> Result<BTreeMap<String, i32>, String> {
    let all = client.list_topics().await.map_err(|e| e.to_string())?;
    Ok(all
        .into_iter()
        .filter(|t| topics.contains(&t.name))
        .map(|t| (t.name, t.partitions.len() as i32))
        .collect())
}
