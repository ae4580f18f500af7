//! The canary's metadata loop: every `CANARY_RECONCILE_INTERVAL_MS` it
//! reads the live brokers and the topic's partitions, exports who leads
//! each partition (`kafka_canary_partition_leader`,
//! `kafka_canary_leader_changes_total`, `kafka_canary_brokers`), tells the
//! senders about partitions that appeared, and with `CANARY_TOPIC_BALANCE`
//! places the topic ([`super::placement`]): replicas moved off gone brokers
//! and onto new ones (`AlterPartitionReassignments`, waited for with
//! `ListPartitionReassignments`), a partition added per new broker
//! (`CreatePartitions`), preferred leaders elected (`ElectLeaders`), and
//! once placed, `min.insync.replicas` kept one below the replication factor
//! (`IncrementalAlterConfigs`) as it was set at creation: Strimzi Canary
//! sets it only then, so a topic created on one broker kept 1 after it
//! grew to three replicas, and one created on three kept 2 after a broker
//! left and it shrank to two, where any further failure stops the canary.
//!
//! A failed request is logged once, with the broker's error code, and
//! counted (`kafka_canary_placement_errors_total`); the round ends there
//! and the next interval tries again. Nothing here stops the canary.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use common::metrics as m;
use kafka_base::backoff::Backoff;
use kafka_group::admin::{AdminClient, AdminError, ClusterMetadata};
use metrics::{Counter, Gauge};
use tokio::{
    sync::watch,
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::placement::{self, Step};
use crate::{config::CanaryPlacement, Config};

/// Steps one round takes at most (reassign, add partitions, elect, and one
/// spare for a metadata answer that lagged behind a step).
const STEPS_PER_ROUND: usize = 4;
/// How often a reassignment's progress is asked while waiting for it.
const REASSIGNMENT_POLL: Duration = Duration::from_millis(500);

/// The leadership metrics of one partition and the leader last seen.
struct Leadership {
    leader: Option<i32>,
    gauge: Gauge,
    changes: Counter,
}

/// The placement counters (with `CANARY_TOPIC_BALANCE`).
struct PlacementMetrics {
    create_topic: Counter,
    create_partitions: Counter,
    reassign: Counter,
    elect_leaders: Counter,
    min_insync: Counter,
    errors: Counter,
}

impl PlacementMetrics {
    fn new(topic: &str) -> Self {
        let action = |a: &'static str| {
            let c = metrics::counter!(m::CANARY_REASSIGNMENTS, "topic" => topic.to_owned(), "action" => a);
            c.absolute(0);
            c
        };
        let errors = metrics::counter!(m::CANARY_PLACEMENT_ERRORS, "topic" => topic.to_owned());
        errors.absolute(0);
        Self {
            create_topic: action("create_topic"),
            create_partitions: action("create_partitions"),
            reassign: action("reassign"),
            elect_leaders: action("elect_leaders"),
            min_insync: action("set_min_insync"),
            errors,
        }
    }
}

/// Reads the cluster metadata every interval; see the module docs.
pub(crate) struct Reconciler {
    admin: AdminClient,
    topic: String,
    settings: CanaryPlacement,
    leaders: BTreeMap<i32, Leadership>,
    brokers: Gauge,
    placement: Option<PlacementMetrics>,
    partitions: watch::Sender<BTreeSet<i32>>,
    backoff: Backoff,
    /// The topic's `min.insync.replicas` as this canary last set or found
    /// it; `None` until it checked.
    min_insync: Option<usize>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("topic", &self.topic)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Reconciler {
    /// A reconciler for `config`'s topic; `admin` reaches its cluster.
    pub(crate) fn new(config: &Config, admin: AdminClient) -> Self {
        Self {
            admin,
            topic: config.topic.clone(),
            settings: config.canary,
            leaders: BTreeMap::new(),
            brokers: metrics::gauge!(m::CANARY_BROKERS),
            placement: config
                .canary
                .balance
                .then(|| PlacementMetrics::new(&config.topic)),
            partitions: watch::Sender::new(BTreeSet::new()),
            backoff: config.kafka.retry_backoff(),
            min_insync: None,
        }
    }

    /// The partition ids each metadata read finds (the senders start a
    /// loop for each new one).
    pub(crate) fn partitions(&self) -> watch::Receiver<BTreeSet<i32>> {
        self.partitions.subscribe()
    }

    /// With `CANARY_TOPIC_BALANCE`: creates the topic when missing, one
    /// partition led by each live broker, retrying with backoff until
    /// `deadline` or `shutdown`. Without it, nothing.
    pub(crate) async fn create_if_missing(
        &mut self,
        deadline: Instant,
        shutdown: &CancellationToken,
    ) -> Result<(), AdminError> {
        if !self.settings.balance {
            return Ok(());
        }
        let mut retries = self.backoff.retries();
        loop {
            let err = match self.try_create().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            self.failed("creating the topic", &err);
            let delay = retries.next_delay();
            if Instant::now() + delay > deadline || shutdown.is_cancelled() {
                return Err(err);
            }
            tokio::select! {
                () = shutdown.cancelled() => return Err(err),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn try_create(&mut self) -> Result<(), AdminError> {
        let meta = self.admin.metadata(&self.topic).await?;
        if meta.partitions.is_some() || meta.brokers.is_empty() {
            // No broker listed: the next metadata read will; the topic is
            // then created by a later round.
            return Ok(());
        }
        let brokers: Vec<i32> = meta.brokers.keys().copied().collect();
        let layout = placement::layout(&brokers, brokers.len(), self.max_replication());
        let replication = layout.first().map_or(1, Vec::len);
        let configs = [(
            "min.insync.replicas",
            placement::min_insync(replication).to_string(),
        )];
        if self
            .admin
            .create_topic(&self.topic, &layout, &configs)
            .await?
        {
            info!(topic = %self.topic, ?layout, min_insync_replicas = %configs[0].1, "canary: created the topic, one partition led by each broker");
            self.min_insync = Some(placement::min_insync(replication));
            if let Some(pm) = &self.placement {
                pm.create_topic.increment(1);
            }
        }
        Ok(())
    }

    /// Every interval until `shutdown`: a round (the first right away).
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.settings.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.round(&shutdown) => {}
            }
        }
    }

    /// Reads the metadata (metrics, new partitions) and, with the option,
    /// takes the placement steps the topic needs.
    async fn round(&mut self, shutdown: &CancellationToken) {
        let Some(meta) = self.read_metadata().await else {
            return;
        };
        if !self.settings.balance {
            return;
        }
        if meta.partitions.is_none() {
            if let Err(e) = self.try_create().await {
                self.failed("creating the topic", &e);
            }
            return;
        }
        let mut meta = meta;
        for _ in 0..STEPS_PER_ROUND {
            let brokers: Vec<i32> = meta.brokers.keys().copied().collect();
            let Some(partitions) = meta.partitions.as_ref().filter(|_| !brokers.is_empty()) else {
                return;
            };
            let Some(step) = placement::next_step(&brokers, partitions, self.max_replication())
            else {
                let replication = partitions.values().map(|p| p.replicas.len()).max();
                if let Some(replication) = replication {
                    self.follow_replication(replication).await;
                }
                return;
            };
            match self.take(step, shutdown).await {
                Ok(true) => {}
                Ok(false) => return,
                Err((what, e)) => {
                    self.failed(what, &e);
                    return;
                }
            }
            meta = match self.read_metadata().await {
                Some(m) => m,
                None => return,
            };
        }
    }

    /// Takes one step; `Ok(false)` when the round should end without an
    /// error (a reassignment still running).
    async fn take(
        &mut self,
        step: Step,
        shutdown: &CancellationToken,
    ) -> Result<bool, (&'static str, AdminError)> {
        let topic = self.topic.clone();
        match step {
            Step::Reassign(targets) => {
                let ids: Vec<i32> = targets.keys().copied().collect();
                // Someone's (or our earlier) reassignment still running:
                // let it finish rather than override it.
                if !self.reassignments_done(&ids, shutdown).await? {
                    return Ok(false);
                }
                info!(
                    topic,
                    ?targets,
                    "canary: reassigning partitions to the live brokers"
                );
                self.admin
                    .alter_reassignments(&topic, &targets)
                    .await
                    .map_err(|e| ("reassigning partitions", e))?;
                self.count(|pm| &pm.reassign);
                self.reassignments_done(&ids, shutdown).await
            }
            Step::AddPartitions { count, new } => {
                info!(
                    topic,
                    count,
                    ?new,
                    "canary: adding partitions for new brokers"
                );
                self.admin
                    .create_partitions(&topic, count, &new)
                    .await
                    .map_err(|e| ("adding partitions", e))?;
                self.count(|pm| &pm.create_partitions);
                Ok(true)
            }
            Step::Elect(partitions) => {
                info!(topic, ?partitions, "canary: electing the preferred leaders");
                self.admin
                    .elect_preferred_leaders(&topic, &partitions)
                    .await
                    .map_err(|e| ("electing preferred leaders", e))?;
                self.count(|pm| &pm.elect_leaders);
                // The election is the last step; the next round's metadata
                // shows its result.
                Ok(false)
            }
        }
    }

    /// Sets `min.insync.replicas` for the placed topic's `replication`
    /// factor where the topic has another value; asked only when the
    /// factor changed since the last check (and once after a start).
    async fn follow_replication(&mut self, replication: usize) {
        let want = placement::min_insync(replication);
        if self.min_insync == Some(want) {
            return;
        }
        let key = "min.insync.replicas";
        let now = match self.admin.topic_config(&self.topic, key).await {
            Ok(now) => now,
            Err(e) => return self.failed("reading min.insync.replicas", &e),
        };
        if now.as_deref() != Some(want.to_string().as_str()) {
            if let Err(e) = self
                .admin
                .set_topic_config(&self.topic, key, &want.to_string())
                .await
            {
                return self.failed("setting min.insync.replicas", &e);
            }
            info!(topic = %self.topic, replication, min_insync_replicas = want, was = ?now, "canary: min.insync.replicas follows the replication factor");
            self.count(|pm| &pm.min_insync);
        }
        self.min_insync = Some(want);
    }

    /// Waits (at most one interval) until no reassignment of `partitions`
    /// is running; `Ok(false)` if one still is.
    async fn reassignments_done(
        &mut self,
        partitions: &[i32],
        shutdown: &CancellationToken,
    ) -> Result<bool, (&'static str, AdminError)> {
        let until = Instant::now() + self.settings.interval;
        loop {
            let ongoing = self
                .admin
                .ongoing_reassignments(&self.topic, partitions)
                .await
                .map_err(|e| ("listing reassignments", e))?;
            if ongoing.is_empty() {
                return Ok(true);
            }
            if Instant::now() + REASSIGNMENT_POLL > until {
                info!(topic = %self.topic, ?ongoing, "canary: reassignment still running; waiting for it at the next reconcile");
                return Ok(false);
            }
            debug!(topic = %self.topic, ?ongoing, "canary: waiting for the reassignment");
            tokio::select! {
                () = shutdown.cancelled() => return Ok(false),
                () = tokio::time::sleep(REASSIGNMENT_POLL) => {}
            }
        }
    }

    /// One metadata read: metrics and partitions updated; `None` (logged,
    /// counted) when it failed.
    async fn read_metadata(&mut self) -> Option<ClusterMetadata> {
        match self.admin.metadata(&self.topic).await {
            Ok(meta) => {
                self.observe(&meta);
                Some(meta)
            }
            Err(e) => {
                self.failed("reading metadata", &e);
                None
            }
        }
    }

    /// Exports what `meta` shows and announces new partitions.
    fn observe(&mut self, meta: &ClusterMetadata) {
        self.brokers.set(meta.brokers.len() as f64);
        let Some(partitions) = &meta.partitions else {
            return;
        };
        for (&p, part) in partitions {
            let topic = &self.topic;
            let l = self.leaders.entry(p).or_insert_with(|| Leadership {
                leader: None,
                gauge: m::partition_gauge(m::CANARY_PARTITION_LEADER, topic, p),
                changes: m::partition_counter(m::CANARY_LEADER_CHANGES, topic, p),
            });
            if l.leader.is_some_and(|was| was != part.leader) {
                info!(
                    topic,
                    partition = p,
                    from = l.leader,
                    to = part.leader,
                    "canary: partition leader changed"
                );
                l.changes.increment(1);
            }
            l.leader = Some(part.leader);
            l.gauge.set(f64::from(part.leader));
        }
        let ids: BTreeSet<i32> = partitions.keys().copied().collect();
        self.partitions.send_if_modified(|known| {
            let grown = !ids.is_subset(known);
            if grown {
                known.extend(ids.iter().copied());
            }
            grown
        });
    }

    /// Logs a failed request once, with its error code, and counts it.
    fn failed(&self, what: &str, e: &AdminError) {
        warn!(topic = %self.topic, reason = %e.reason(), error = %e, "canary: {what} failed; trying again later");
        if let Some(pm) = &self.placement {
            pm.errors.increment(1);
        }
    }

    fn count(&self, which: impl Fn(&PlacementMetrics) -> &Counter) {
        if let Some(pm) = &self.placement {
            which(pm).increment(1);
        }
    }

    fn max_replication(&self) -> usize {
        usize::try_from(self.settings.max_replication).unwrap_or(1)
    }
}
