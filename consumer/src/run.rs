//! The consumer's main loop: join the group, start a worker per assigned
//! partition, heartbeat, commit handled offsets periodically, revoke and
//! rejoin on a rebalance, and on shutdown drain, commit and leave — all
//! bounded by the drain timeout.

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
use kafka_base::backoff::Backoff;
use kafka_group::{
    coordinator::CoordinatorClient,
    member::{
        offsets_to_commit, spawn_heartbeat, CommitDone, HeartbeatReport, LastHeartbeat, Member,
        MemberError, MemberSettings,
    },
    payload::Assignment,
    state::Action,
};
use rskafka::client::Client;
use tokio::{net::TcpListener, sync::mpsc, time::Instant};
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
    Group(#[from] MemberError),
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
        ConsumerError::Group(MemberError::Unreachable {
            group: config.group.clone(),
            detail: e.to_string(),
        })
    })?;
    let coordinator = CoordinatorClient::new(
        connection,
        config.kafka.bootstrap.clone(),
        config.group.clone(),
        config.group_instance_id.clone(),
    );
    let settings = MemberSettings {
        group: config.group.clone(),
        group_instance_id: config.group_instance_id.clone(),
        topics: config.topics.clone(),
        assignors: config.assignors.clone(),
        session_timeout: config.session_timeout,
        heartbeat_interval: config.heartbeat_interval,
        rebalance_timeout: config.max_poll_interval,
        backoff: Backoff::new(config.kafka.backoff_initial, config.kafka.backoff_max),
    };
    let mut member = Member::new(coordinator, settings.clone());
    let handled = HandledSinceCommit::new(config.commit_max_records);
    // fetch_max_bytes is set per assignment (fetch_bytes_per_partition).
    let worker_settings = WorkerSettings {
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
    };
    let rebalances = metrics::counter!(m::CONSUMER_REBALANCES);
    let assigned_gauge = metrics::gauge!(m::CONSUMER_ASSIGNED_PARTITIONS);

    let mut join_retries = Backoff::new(
        config.kafka.backoff_initial,
        config.kafka.backoff_max.max(CONNECT_BACKOFF_MAX),
    )
    .retries();
    loop {
        health.set_not_ready("joining the consumer group");
        health.beat();
        let counts_client = Arc::clone(&client);
        // A JoinGroup may legitimately wait for the whole rebalance timeout;
        // the loop is alive while it polls the join, so keep /healthz fresh.
        let joined = beating(
            health,
            member.join(
                move |topics| {
                    let c = Arc::clone(&counts_client);
                    async move { partition_counts(&c, &topics).await }
                },
                shutdown,
            ),
        )
        .await;
        let assignment = match joined {
            Ok(a) => a,
            Err(MemberError::Cancelled) => {
                member.leave(config.drain_timeout).await;
                return Ok(());
            }
            Err(e @ MemberError::Fatal(_)) => {
                error!(error = %e, "cannot stay in the consumer group");
                return Err(e.into());
            }
            Err(e) => {
                warn!(error = %e, "joining the group failed; retrying");
                metrics::counter!(m::CONSUMER_ERRORS, "kind" => "group").increment(1);
                health.set_not_ready(e.to_string());
                if !join_retries.sleep(shutdown).await {
                    return Ok(());
                }
                continue;
            }
        };
        join_retries.reset();
        rebalances.increment(1);
        let partitions: Vec<(String, i32)> = assignment
            .topic_partitions()
            .map(|(t, p)| (t.to_owned(), p))
            .collect();
        assigned_gauge.set(partitions.len() as f64);
        info!(
            group = %config.group,
            generation = member.generation().generation_id,
            partitions = %partitions.iter().map(|(t, p)| format!("{t}-{p}")).collect::<Vec<_>>().join(","),
            "assignment received"
        );

        let fetched = tokio::select! {
            r = beating(health, member.committed(&assignment)) => r,
            () = shutdown.cancelled() => {
                member.reset_connection();
                member.leave(config.drain_timeout).await;
                return Ok(());
            }
        };
        let committed = match fetched {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "reading committed offsets failed; rejoining");
                health.set_not_ready(e.to_string());
                member.request_rejoin();
                member.revocation_done();
                if !join_retries.sleep(shutdown).await {
                    member.leave(config.drain_timeout).await;
                    return Ok(());
                }
                continue;
            }
        };

        // The buffer budget is split over the partitions assigned now.
        let fetch_max_bytes = fetch_bytes_per_partition(
            config.buffer_max_bytes,
            partitions.len(),
            config.buffer_batches,
            config.fetch_max_bytes,
        );
        if !partitions.is_empty() {
            info!(
                group = %config.group,
                partitions = partitions.len(),
                fetch_max_bytes,
                buffer_max_bytes = config.buffer_max_bytes,
                buffer_batches = config.buffer_batches,
                "fetch size per partition"
            );
        }
        let worker_settings = WorkerSettings {
            fetch_max_bytes,
            ..worker_settings.clone()
        };

        let generation_stop = shutdown.child_token();
        handled.restart();
        let workers: Vec<Worker> = partitions
            .iter()
            .map(|(t, p)| {
                let c = committed.get(&(t.clone(), *p)).copied().unwrap_or(-1);
                Worker::start(
                    Arc::clone(&client),
                    t.clone(),
                    *p,
                    c,
                    Arc::clone(&handler),
                    worker_settings.clone(),
                    &generation_stop,
                )
            })
            .collect();
        for w in &workers {
            let c = w.progress.committed.load(Ordering::Relaxed);
            if c >= 0 {
                metrics::gauge!(m::CONSUMER_COMMITTED_OFFSET, "topic" => w.topic.clone(), "partition" => w.partition.to_string()).set(c as f64);
            }
        }

        let (hb_tx, mut hb_rx) = mpsc::channel::<HeartbeatReport>(4);
        let heartbeat = spawn_heartbeat(
            member.heartbeat_client(),
            member.generation().clone(),
            &settings,
            hb_tx,
            generation_stop.clone(),
        );
        let mut commit_tick = tokio::time::interval_at(
            Instant::now() + config.commit_interval,
            config.commit_interval,
        );
        let mut status_tick = tokio::time::interval(Duration::from_secs(1));
        let mut metadata_tick = tokio::time::interval_at(
            Instant::now() + config.metadata_refresh,
            config.metadata_refresh,
        );
        metadata_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut metadata_check: Option<tokio::task::JoinHandle<Option<BTreeMap<String, i32>>>> =
            None;
        // Partition counts this generation was assigned with; a change (a
        // topic created or grown) needs a new assignment, as in Java where
        // the metadata refresh triggers a rejoin.
        let counts_at_join = bounded_counts(&client, &config.topics, shutdown).await;
        let status = Status {
            group: &config.group,
            stall_after: config.stall_after,
            session_timeout: config.session_timeout,
            assignment: &assignment,
        };
        // At most one commit on its way at a time, on its own connection:
        // the loop goes on watching heartbeats and readiness meanwhile.
        let mut in_flight: Option<InFlight> = None;

        let outcome = loop {
            tokio::select! {
                () = shutdown.cancelled() => break Outcome::Shutdown,
                Some(report) = hb_rx.recv() => {
                    let expired = matches!(report, HeartbeatReport::SessionExpired { .. });
                    match member.on_heartbeat(report) {
                        Action::Fatal(e) => break Outcome::Fatal(MemberError::Fatal(e)),
                        _ if member.revocation_pending().is_some() => break Outcome::Rebalance,
                        _ => {}
                    }
                    if expired {
                        status.update(health, &workers, &heartbeat.last_ok, &[]);
                    }
                }
                done = async { (&mut in_flight.as_mut().expect("guarded").task).await }, if in_flight.is_some() => {
                    let flight = in_flight.take().expect("guarded");
                    if let Err(e) = flight.finish(&mut member, &workers, done) {
                        if matches!(e, MemberError::Fatal(_)) {
                            break Outcome::Fatal(e);
                        }
                        warn!(error = %e, "periodic commit failed; offsets stay pending");
                        if member.revocation_pending().is_some() {
                            break Outcome::Rebalance;
                        }
                    }
                }
                _ = commit_tick.tick(), if in_flight.is_none() => {
                    in_flight = start_commit(&mut member, &workers, &handled, commit_timeout(config));
                }
                () = handled.reached(), if in_flight.is_none() => {
                    debug!(group = %config.group, max_records = config.commit_max_records, "records handled since the last commit reached the limit; committing");
                    in_flight = start_commit(&mut member, &workers, &handled, commit_timeout(config));
                }
                _ = metadata_tick.tick(), if metadata_check.is_none() => {
                    // Off the loop, bounded and cancellable: rskafka retries a
                    // metadata request until its deadline, and neither the
                    // heartbeat reports nor SIGTERM must wait for that.
                    let (client, topics, shutdown) = (Arc::clone(&client), config.topics.clone(), shutdown.clone());
                    metadata_check = Some(tokio::spawn(async move { bounded_counts(&client, &topics, &shutdown).await }));
                }
                now = async { (&mut metadata_check.as_mut().expect("guarded")).await }, if metadata_check.is_some() => {
                    metadata_check = None;
                    if let (Some(before), Ok(Some(now))) = (&counts_at_join, now) {
                        if before != &now {
                            info!(group = %config.group, ?before, ?now, "subscribed topics changed; asking for a rebalance");
                            member.request_rejoin();
                            if member.revocation_pending().is_some() {
                                break Outcome::Rebalance;
                            }
                        }
                    }
                }
                _ = status_tick.tick() => {
                    health.beat();
                    let missing: Vec<&str> = config
                        .topics
                        .iter()
                        .filter(|t| counts_at_join.as_ref().is_some_and(|c| !c.contains_key(t.as_str())))
                        .map(String::as_str)
                        .collect();
                    status.update(health, &workers, &heartbeat.last_ok, &missing);
                }
            }
        };
        // A commit on its way finishes (within its own deadline) before the
        // partitions are given up or the final commit is sent: commits of
        // one member never overtake each other.
        if let Some(check) = metadata_check.take() {
            check.abort();
        }
        if !matches!(outcome, Outcome::Shutdown) {
            if let Some(flight) = in_flight.take() {
                flight.wait(health, &mut member, &workers).await;
            }
        }
        generation_stop.cancel();
        let _ = heartbeat.task.await;

        match outcome {
            Outcome::Rebalance => {
                health.set_not_ready("rebalancing");
                let lost = member.revocation_pending().unwrap_or(true);
                for w in &workers {
                    clear_partition_gauges(&config.group, &w.topic, w.partition);
                }
                let positions = beating(health, stop_workers(workers, config.drain_timeout)).await;
                if !lost {
                    let offsets = offsets_to_commit(&positions);
                    let result = beating(
                        health,
                        member.commit_within(&offsets, Some(commit_timeout(config))),
                    )
                    .await;
                    match result {
                        Ok(()) => record_commit(&positions),
                        Err(e) => {
                            warn!(error = %e, "commit before giving up the partitions failed; the next owner may see these records again");
                        }
                    }
                }
                member.revocation_done();
                info!(group = %config.group, lost, "partitions revoked; rejoining");
            }
            Outcome::Fatal(e) => {
                let _ = stop_workers(workers, Duration::from_millis(500)).await;
                error!(error = %e, "cannot stay in the consumer group");
                return Err(e.into());
            }
            Outcome::Shutdown => {
                return drain(config, &mut member, workers, in_flight, health).await;
            }
        }
    }
}

/// The longest wait between two connection attempts at start (the
/// README's "100 ms doubling to 30 s").
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(30);

enum Outcome {
    Shutdown,
    Rebalance,
    Fatal(MemberError),
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
/// broker (a JoinGroup, a commit, a frozen coordinator) is the loop doing
/// its job, so `/healthz` stays 200.
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

/// Stops every worker at once, each within `within`; returns the positions
/// to commit (handled, not yet committed).
async fn stop_workers(workers: Vec<Worker>, within: Duration) -> BTreeMap<(String, i32), i64> {
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

/// A periodic commit on its way.
struct InFlight {
    task: tokio::task::JoinHandle<CommitDone>,
    positions: BTreeMap<(String, i32), i64>,
    started: Instant,
}

impl InFlight {
    /// Waits for the commit (bounded by its own deadline) and applies it.
    async fn wait(self, health: &Health, member: &mut Member, workers: &[Worker]) {
        let done = beating(health, self.task).await;
        if let Err(e) = Self::finish_with(&self.positions, member, workers, done) {
            warn!(error = %e, "commit failed; offsets stay pending");
        }
    }

    fn finish(
        self,
        member: &mut Member,
        workers: &[Worker],
        done: Result<CommitDone, tokio::task::JoinError>,
    ) -> Result<(), MemberError> {
        metrics::histogram!(m::CONSUMER_COMMIT_LATENCY)
            .record(self.started.elapsed().as_secs_f64());
        Self::finish_with(&self.positions, member, workers, done)
    }

    fn finish_with(
        positions: &BTreeMap<(String, i32), i64>,
        member: &mut Member,
        workers: &[Worker],
        done: Result<CommitDone, tokio::task::JoinError>,
    ) -> Result<(), MemberError> {
        let result = match done {
            Ok(done) => member.finish_commit(done),
            Err(e) => {
                // The task panicked or was aborted: the commit client went
                // with it; the next commit opens a new connection.
                member.reset_connection();
                Err(MemberError::Commit {
                    group: member.machine().group_id().to_owned(),
                    detail: e.to_string(),
                })
            }
        };
        match &result {
            Ok(()) => {
                for w in workers {
                    if let Some(p) = positions.get(&(w.topic.clone(), w.partition)) {
                        w.progress.committed.store(*p, Ordering::Relaxed);
                    }
                }
                record_commit(positions);
            }
            Err(_) => metrics::counter!(m::CONSUMER_ERRORS, "kind" => "commit").increment(1),
        }
        result
    }
}

/// Starts committing what the workers handled since the last commit, off
/// the loop; `None` when there is nothing to commit (or the member may not
/// commit now, which the next rebalance settles).
fn start_commit(
    member: &mut Member,
    workers: &[Worker],
    handled: &HandledSinceCommit,
    within: Duration,
) -> Option<InFlight> {
    // First: records handled after this point count towards the next commit.
    handled.restart();
    let positions: BTreeMap<(String, i32), i64> = workers
        .iter()
        .filter_map(|w| {
            let pos = w.progress.position.load(Ordering::Acquire);
            let committed = w.progress.committed.load(Ordering::Relaxed);
            (pos >= 0 && pos != committed).then(|| ((w.topic.clone(), w.partition), pos))
        })
        .collect();
    match member.start_commit(offsets_to_commit(&positions), Some(within)) {
        Ok(Some(job)) => Some(InFlight {
            task: tokio::spawn(job.run()),
            positions,
            started: Instant::now(),
        }),
        Ok(None) => None,
        Err(e) => {
            debug!(error = %e, "not committing now");
            None
        }
    }
}

/// SIGTERM: stop fetching, finish the records in hand, commit, leave — all
/// within the drain timeout.
async fn drain(
    config: &Config,
    member: &mut Member,
    workers: Vec<Worker>,
    in_flight: Option<InFlight>,
    health: &Health,
) -> Result<(), ConsumerError> {
    health.set_not_ready("shutting down");
    info!(group = %config.group, partitions = workers.len(), "shutdown: draining, committing and leaving the group");
    let deadline = Instant::now() + config.drain_timeout;
    let work = async {
        if let Some(flight) = in_flight {
            flight.wait(health, member, &workers).await;
        }
        let positions = stop_workers(workers, config.drain_timeout / 2).await;
        let offsets = offsets_to_commit(&positions);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let committed = member.commit_within(&offsets, Some(remaining)).await;
        if committed.is_ok() && !offsets.is_empty() {
            record_commit(&positions);
            info!(group = %config.group, partitions = offsets.len(), "final offsets committed");
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        member.leave(remaining).await;
        committed
    };
    match tokio::time::timeout(config.drain_timeout, work).await {
        Ok(Ok(())) => {
            info!(group = %config.group, "stopped cleanly");
            Ok(())
        }
        Ok(Err(e)) => Err(ConsumerError::Drain {
            timeout: config.drain_timeout,
            detail: format!("final commit failed: {e}"),
        }),
        Err(_) => Err(ConsumerError::Drain {
            timeout: config.drain_timeout,
            detail: "the broker did not answer the final commit or LeaveGroup in time".to_owned(),
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

/// What readiness is judged on for one generation.
struct Status<'a> {
    group: &'a str,
    stall_after: Duration,
    session_timeout: Duration,
    assignment: &'a Assignment,
}

impl Status<'_> {
    /// Readiness and lag: ready only while Stable with partitions, a
    /// heartbeat through within the session timeout, and no partition
    /// lagging without progress for the stall window.
    fn update(
        &self,
        health: &Health,
        workers: &[Worker],
        last_heartbeat: &LastHeartbeat,
        missing_topics: &[&str],
    ) {
        let mut stalled = Vec::new();
        for w in workers {
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
        let silent = last_heartbeat.elapsed();
        if silent >= self.session_timeout {
            health.set_not_ready(format!(
                "no heartbeat got through for {}s (session timeout {}s): this member cannot know \
                 whether it still owns its partitions; finding the group coordinator again",
                silent.as_secs(),
                self.session_timeout.as_secs()
            ));
        } else if !missing_topics.is_empty() && self.assignment.is_empty() {
            health.set_not_ready(format!(
                "subscribed topic(s) {} do not exist; waiting for them to be created",
                missing_topics.join(", ")
            ));
        } else if self.assignment.is_empty() {
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

/// Partition counts, or `None` when the cluster does not answer within 5 s
/// or shutdown was requested.
async fn bounded_counts(
    client: &Client,
    topics: &[String],
    shutdown: &CancellationToken,
) -> Option<BTreeMap<String, i32>> {
    tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(5), partition_counts(client, topics)) => r.ok().and_then(Result::ok),
        () = shutdown.cancelled() => None,
    }
}
