//! The session API: a consumer's membership in one group, run on a task of
//! its own, seen by the service as a stream of events.
//!
//! The service starts a [`Session`], then only starts and stops partition
//! workers and commits what they handled:
//!
//! - [`SessionEvent::Assigned`]: start these partitions, at their committed
//!   offsets;
//! - [`SessionEvent::Revoke`]: stop these partitions and hand what was
//!   handled to [`Session::revoked`] (committed unless the partitions were
//!   lost: another member may own them already);
//! - [`SessionEvent::Retrying`]: something the session retries by itself
//!   (for readiness and the error counter);
//! - [`SessionEvent::Fatal`]: the member cannot stay in the group;
//! - [`SessionEvent::InvalidAssignment`]: the leader handed out partitions
//!   this member may not consume; they were dropped (for the error counter).
//!
//! [`Session::commit`] commits on the session's own connection with its own
//! deadline and never holds up the caller; [`Session::close`] commits a last
//! time and leaves. Everything of the protocol — finding the coordinator,
//! joining and syncing, the leader's assignment, heartbeats on their own
//! connection, what each error code means, the revocation sequence,
//! rejoining when a subscribed topic changes — stays behind this API.
//!
//! # One API, two protocols
//!
//! [`SessionSettings::protocol`] picks one ([`GroupProtocol`]; `Auto`
//! asks the coordinator whether it offers `ConsumerGroupHeartbeat` and
//! logs the choice). The classic protocol is eager with `range`,
//! `roundrobin` and `sticky`: every rebalance revokes every partition, then
//! assigns the new set. With `cooperative-sticky` alone it follows KIP-429:
//! the service keeps its partitions through the rebalance, is told to
//! revoke only those assigned away, and is assigned only new ones. KIP-848's
//! `ConsumerGroupHeartbeat` member reconciles incrementally: the
//! coordinator sends a target assignment, the member revokes what it no
//! longer owns, acknowledges in the next heartbeat, then gets the new
//! partitions; the coordinator assigns (`remote_assignor`), the
//! [`TopicMetadata`] is not asked, and the session timeout and heartbeat
//! interval are the broker's (`group.consumer.*`). A consumer-protocol
//! member also sends an [`SessionEvent::Assigned`] with no partitions when
//! it is in the group with none, and after every revocation that was not
//! lost, so the service knows it is a member again.
//!
//! All fit the same events, which is why they list partitions instead of
//! meaning "everything": an incremental member revokes a subset
//! (`lost: false`) and assigns the partitions it gains; a fenced one
//! (`FENCED_MEMBER_EPOCH`, `UNKNOWN_MEMBER_ID`) revokes everything as lost,
//! like Java's `ConsumerRebalanceListener.onPartitionsLost`. A service
//! written against these events therefore keeps a worker per partition and
//! never assumes a revocation takes all of them.
//!
//! # Example
//!
//! ```no_run
//! use std::{collections::BTreeMap, sync::Arc, time::Duration};
//!
//! use futures::future::BoxFuture;
//! use kafka_base::{backoff::Backoff, security::SecurityProtocol};
//! use kafka_group::{
//!     session::{Offsets, Session, SessionEvent, SessionSettings, TopicMetadata},
//!     ConnectionConfig,
//! };
//!
//! /// Where the leader learns partition counts (here: fixed).
//! #[derive(Debug)]
//! struct Fixed;
//!
//! impl TopicMetadata for Fixed {
//!     fn partition_counts(
//!         &self,
//!         topics: Vec<String>,
//!     ) -> BoxFuture<'static, Result<BTreeMap<String, i32>, String>> {
//!         Box::pin(async move { Ok(topics.into_iter().map(|t| (t, 3)).collect()) })
//!     }
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let connection = ConnectionConfig::new(
//!     "orders-consumer",
//!     SecurityProtocol::Plaintext,
//!     None,
//!     None,
//!     Duration::from_secs(30),
//! )?;
//! let settings = SessionSettings::new("orders", vec!["orders".to_owned()]);
//! let mut session = Session::start(
//!     settings,
//!     connection,
//!     vec!["kafka:9092".to_owned()],
//!     Arc::new(Fixed),
//! );
//! // What each partition's worker handled: the next offset to consume.
//! let mut handled: Offsets = BTreeMap::new();
//! while let Some(event) = session.next_event().await {
//!     match event {
//!         SessionEvent::Assigned(assigned) => {
//!             for p in &assigned.partitions {
//!                 // Start a worker at `p.committed` (or the reset policy).
//!                 handled.insert((p.topic.clone(), p.partition), p.committed.unwrap_or(0));
//!             }
//!             // Later, periodically: commit without waiting for the answer here.
//!             let pending = session.commit(handled.clone(), Duration::from_secs(5));
//!             tokio::spawn(pending);
//!         }
//!         SessionEvent::Revoke(revocation) => {
//!             // Stop those workers first; then hand over what they handled.
//!             let mine: Offsets = handled
//!                 .iter()
//!                 .filter(|(tp, _)| revocation.partitions.contains(tp))
//!                 .map(|(tp, o)| (tp.clone(), *o))
//!                 .collect();
//!             handled.retain(|tp, _| !revocation.partitions.contains(tp));
//!             session.revoked(mine).await?;
//!         }
//!         SessionEvent::Retrying(why) => eprintln!("not ready: {why}"),
//!         SessionEvent::Fatal(e) => return Err(e.into()),
//!         // Events a later protocol may add.
//!         _ => {}
//!     }
//! }
//! session.close(handled, Duration::from_secs(10)).await?;
//! # Ok(())
//! # }
//! ```

use std::{
    collections::BTreeMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::{
    coordinator::CoordinatorClient,
    error::GroupError,
    member::{LastHeartbeat, Member},
    wire::ConnectionConfig,
};

pub use crate::member::{GroupProtocol, InvalidAssignment, SessionError, SessionSettings};

mod classic;
mod consumer;

/// The next offset to consume per `(topic, partition)`: what a worker
/// handled, what a commit stores.
pub type Offsets = BTreeMap<(String, i32), i64>;

/// Where the session learns the subscribed topics' partition counts: the
/// leader needs them to assign, and every member watches them to rejoin
/// when a topic appears or grows (Java's metadata refresh).
pub trait TopicMetadata: Send + Sync + fmt::Debug + 'static {
    /// The partition counts of those of `topics` that exist.
    fn partition_counts(
        &self,
        topics: Vec<String>,
    ) -> BoxFuture<'static, Result<BTreeMap<String, i32>, String>>;
}

/// What the session asks of the service.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionEvent {
    /// Start these partitions.
    Assigned(Assigned),
    /// Stop these partitions, then call [`Session::revoked`].
    Revoke(Revocation),
    /// A failure the session retries by itself (joining, reading committed
    /// offsets): not ready meanwhile.
    Retrying(SessionError),
    /// The member cannot stay in the group; no event follows.
    Fatal(SessionError),
    /// The leader's assignment had entries this member may not consume
    /// (topics it did not subscribe to, partitions that do not exist,
    /// duplicates, an absurdly long list). They were dropped and logged;
    /// the [`Assigned`](SessionEvent::Assigned) that follows holds only the
    /// valid ones, and the member rejoins after
    /// [`rejoin_in`](InvalidAssignment::rejoin_in), as Java's consumer
    /// rejoins on an assignment that does not match its subscription.
    InvalidAssignment(InvalidAssignment),
}

/// Partitions this member now owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// The generation they belong to.
    pub generation: i32,
    /// The partitions, with where to start.
    pub partitions: Vec<AssignedPartition>,
}

/// One assigned partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The group's committed offset (the next to consume), if any.
    pub committed: Option<i64>,
}

/// Partitions this member must give up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// `(topic, partition)`s to stop.
    pub partitions: Vec<(String, i32)>,
    /// The membership is already gone (the coordinator said so): other
    /// members may own them, so nothing is committed for them.
    pub lost: bool,
}

/// The answer to a [`Session::commit`], [`Session::revoked`]: resolves once
/// the commit is done or its deadline passed, whether or not it is polled
/// (spawn it, or keep it in a `select!`).
#[derive(Debug)]
#[must_use = "the outcome of the commit"]
pub struct PendingCommit(oneshot::Receiver<Result<(), SessionError>>);

impl Future for PendingCommit {
    type Output = Result<(), SessionError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(SessionError::Cancelled)))
    }
}

/// Requests from the service to the session task.
#[derive(Debug)]
enum Command {
    Commit {
        offsets: Offsets,
        within: Duration,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    Revoked {
        handled: Offsets,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    Close {
        handled: Offsets,
        within: Duration,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
}

/// What the service reads while the task runs: readiness.
#[derive(Debug, Default)]
struct Shared {
    /// The current generation's heartbeats, while in one.
    heartbeat: Mutex<Option<LastHeartbeat>>,
    /// Subscribed topics that did not exist at the last join.
    missing_topics: Mutex<Vec<String>>,
}

/// A consumer's membership in one group, run on its own task (see the
/// module docs).
#[derive(Debug)]
pub struct Session {
    events: mpsc::Receiver<SessionEvent>,
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    session_timeout: Duration,
}

impl Session {
    /// Starts a member of `settings.group` speaking `settings.protocol`,
    /// reaching the coordinator through `bootstrap` with `connection`.
    pub fn start(
        settings: SessionSettings,
        connection: ConnectionConfig,
        bootstrap: Vec<String>,
        metadata: Arc<dyn TopicMetadata>,
    ) -> Self {
        let client = CoordinatorClient::new(
            connection,
            bootstrap,
            settings.group.clone(),
            settings.group_instance_id.clone(),
        );
        let (events_tx, events) = mpsc::channel(4);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let session_timeout = settings.session_timeout;
        let task = tokio::spawn(run(
            settings,
            client,
            metadata,
            events_tx,
            commands_rx,
            Arc::clone(&shared),
        ));
        Self {
            events,
            commands,
            shared,
            task,
            session_timeout,
        }
    }

    /// The next thing to do; `None` once the session has ended (after
    /// [`SessionEvent::Fatal`]). Cancel-safe: use it in `select!`.
    pub async fn next_event(&mut self) -> Option<SessionEvent> {
        self.events.recv().await
    }

    /// Commits `offsets` on the session's own connection, giving up after
    /// `within`. Commits go out one at a time, in the order asked, so a
    /// later one is never overtaken by an earlier one. Refused (without a
    /// request) while the member is in no generation it may commit for.
    pub fn commit(&self, offsets: Offsets, within: Duration) -> PendingCommit {
        let (reply, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Commit {
            offsets,
            within,
            reply,
        });
        PendingCommit(rx)
    }

    /// The service stopped the partitions of the last
    /// [`SessionEvent::Revoke`]; `handled` is what they handled. Committed
    /// (unless the partitions were lost) within the settings'
    /// `revocation_commit_timeout`, then the member rejoins.
    pub fn revoked(&self, handled: Offsets) -> PendingCommit {
        let (reply, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Revoked { handled, reply });
        PendingCommit(rx)
    }

    /// How long no heartbeat got through, when that is a session timeout
    /// or more: this member cannot know whether it still owns its
    /// partitions. `None` otherwise, and outside a generation.
    pub fn heartbeat_silence(&self) -> Option<Duration> {
        let heartbeat = self.shared.heartbeat.lock().ok()?;
        let silent = heartbeat.as_ref()?.elapsed();
        (silent >= self.session_timeout).then_some(silent)
    }

    /// Subscribed topics that did not exist when the member last joined.
    pub fn missing_topics(&self) -> Vec<String> {
        self.shared
            .missing_topics
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Commits `handled` and leaves the group (dynamic members send
    /// LeaveGroup; static ones leave by session timeout, as in Java), all
    /// within `within`. The result is the final commit's.
    pub async fn close(self, handled: Offsets, within: Duration) -> Result<(), SessionError> {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Close {
                handled,
                within,
                reply,
            })
            .is_err()
        {
            return Ok(());
        }
        let result = match tokio::time::timeout(within, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Ok(()),
            Err(_) => Err(SessionError::Cancelled),
        };
        self.task.abort();
        result
    }
}

/// Picks the protocol, then runs its task.
async fn run(
    settings: SessionSettings,
    mut client: CoordinatorClient,
    metadata: Arc<dyn TopicMetadata>,
    events: mpsc::Sender<SessionEvent>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
) {
    let consumer = match settings.protocol {
        GroupProtocol::Consumer => {
            match offered(&settings, &mut client, &events, &mut commands).await {
                Some(true) => true,
                Some(false) => {
                    let unsupported = GroupError::ConsumerProtocolUnsupported {
                        group: settings.group.clone(),
                    };
                    let _ = events.send(SessionEvent::Fatal(unsupported.into())).await;
                    return;
                }
                None => return,
            }
        }
        GroupProtocol::Classic => false,
        GroupProtocol::Auto => {
            let consumer = offered(&settings, &mut client, &events, &mut commands).await;
            match consumer {
                Some(true) => {
                    info!(group = %settings.group, protocol = "consumer", "group protocol chosen: the coordinator offers ConsumerGroupHeartbeat (KIP-848); set CONSUMER_GROUP_PROTOCOL=classic to keep the classic protocol")
                }
                Some(false) => {
                    info!(group = %settings.group, protocol = "classic", "group protocol chosen: the coordinator does not offer ConsumerGroupHeartbeat (Kafka before 4.0, or the consumer protocol disabled)")
                }
                None => return,
            }
            consumer == Some(true)
        }
    };
    if consumer {
        if !settings.classic_only.is_empty() {
            warn!(
                group = %settings.group,
                keys = %settings.classic_only.join(","),
                "these settings apply to the classic group protocol only: on the consumer protocol (KIP-848) the broker's group.consumer.session.timeout.ms and group.consumer.heartbeat.interval.ms apply, and CONSUMER_GROUP_REMOTE_ASSIGNOR instead of CONSUMER_ASSIGNORS; set CONSUMER_GROUP_PROTOCOL=classic to keep them"
            );
        }
        consumer::Task {
            client,
            settings,
            events,
            commands,
            shared,
        }
        .run()
        .await;
    } else {
        classic::Task::new(
            Member::new(client, settings.clone()),
            settings,
            metadata,
            events,
            commands,
            shared,
        )
        .run()
        .await;
    }
}

/// Reports something the session retries by itself. Only a readiness
/// hint, so it is dropped when the channel is full (a report is queued
/// already): the session must never wait on a service that is itself
/// waiting on the session (for a revocation to be acknowledged) while the
/// coordinator is unreachable. `false` when the service is gone.
pub(super) fn report_retrying(events: &mpsc::Sender<SessionEvent>, e: SessionError) -> bool {
    !matches!(
        events.try_send(SessionEvent::Retrying(e)),
        Err(mpsc::error::TrySendError::Closed(_))
    )
}

/// Asks the coordinator whether it offers `ConsumerGroupHeartbeat`,
/// retrying with the rejoin backoff. `None` when the session ends first.
async fn offered(
    settings: &SessionSettings,
    client: &mut CoordinatorClient,
    events: &mpsc::Sender<SessionEvent>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Option<bool> {
    let mut retries = settings.rejoin_backoff.retries();
    loop {
        let asked = tokio::select! {
            asked = client.supports_consumer_protocol() => asked,
            command = commands.recv() => {
                if !before_joining(command?, &settings.group) {
                    return None;
                }
                continue;
            }
        };
        match asked {
            Ok(offered) => return Some(offered),
            Err(e) => {
                warn!(group = %settings.group, error = %e, "cannot ask the coordinator which group protocols it offers; retrying");
                if !report_retrying(events, e.into()) {
                    return None;
                }
                let wait = tokio::time::sleep(retries.next_delay());
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        () = &mut wait => break,
                        command = commands.recv() => if !before_joining(command?, &settings.group) {
                            return None;
                        },
                    }
                }
            }
        }
    }
}

/// Answers a command that comes before the member is in a group; `false`
/// when it is the close.
fn before_joining(command: Command, group: &str) -> bool {
    let closing = matches!(command, Command::Close { .. });
    classic::refuse(command, group);
    !closing
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable() -> SessionError {
        SessionError::Commit {
            group: "g".to_owned(),
            detail: "coordinator unreachable".to_owned(),
        }
    }

    /// The hang it prevents: during a revocation the service waits for the
    /// session and reads no events, while failed heartbeats keep reporting;
    /// a report that waited for room would block the session for good.
    #[test]
    fn retry_reports_never_wait_for_a_full_channel() {
        let (tx, mut rx) = mpsc::channel(2);
        // Synchronous (try_send): it cannot wait, whatever the channel holds.
        for _ in 0..10 {
            assert!(report_retrying(&tx, unreachable()), "the service is there");
        }
        assert!(matches!(rx.try_recv(), Ok(SessionEvent::Retrying(_))));
        assert!(matches!(rx.try_recv(), Ok(SessionEvent::Retrying(_))));
        assert!(rx.try_recv().is_err(), "the rest dropped, not queued");
        drop(rx);
        assert!(!report_retrying(&tx, unreachable()), "the service is gone");
    }
}
