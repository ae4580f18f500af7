//! The shared 3-broker cluster (`scripts/kafka-cluster.sh`, which `make
//! test-cluster` starts once for the tests that need it): its nodes, what
//! Kafka's own tools say about its partitions and groups, and the faults a
//! test does to it. A cluster that is not running fails the test with what
//! to do; no test skips.

use std::{process::Command, time::Duration};

use crate::broker::{client_at, repo_root};

/// A partition as Kafka's topic tool describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// Partition id.
    pub partition: i32,
    /// Leader's node id (-1: none).
    pub leader: i32,
    /// Replicas, preferred first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
}

/// The running shared cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    bootstrap: String,
}

impl Cluster {
    /// The cluster `scripts/kafka-cluster.sh start` runs; panics, naming
    /// the fix, when it is not up.
    pub fn shared() -> Self {
        let status = script(&["status"]);
        assert!(
            status.status.success(),
            "the 3-broker cluster is not running: these tests need it; start it with \
             `scripts/kafka-cluster.sh start` (make test-cluster does this):\n{}",
            String::from_utf8_lossy(&status.stdout)
        );
        let env = String::from_utf8_lossy(&script(&["env"]).stdout).into_owned();
        let bootstrap = env
            .lines()
            .find_map(|l| l.strip_prefix("KAFKA_CLUSTER_BOOTSTRAP="))
            .expect("KAFKA_CLUSTER_BOOTSTRAP in the cluster's env file")
            .to_owned();
        Self { bootstrap }
    }

    /// `host:port` of the three brokers, comma-separated.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// kill -9 of node `n`.
    pub fn kill9(&self, n: i32) {
        run_script(&["kill", &n.to_string()]);
    }

    /// SIGTERM of node `n` (controlled shutdown), until it exited.
    pub fn stop_node(&self, n: i32) {
        run_script(&["stop-node", &n.to_string()]);
    }

    /// Starts node `n` again, until it is a live broker.
    pub fn start_node(&self, n: i32) {
        run_script(&["start-node", &n.to_string()]);
    }

    /// Waits until all three nodes are live and every partition is fully
    /// replicated, then restores the preferred leaders.
    pub fn wait_healthy(&self) {
        run_script(&["wait-healthy", "180"]);
    }

    /// Creates `topic` with `partitions` partitions, replication factor 3
    /// (min.insync.replicas 2, the cluster's default), and waits until
    /// every partition has a leader.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let c = client_at(&self.bootstrap).await;
        c.controller_client()
            .expect("controller")
            .create_topic(topic, partitions, 3, 10_000)
            .await
            .unwrap_or_else(|e| panic!("create topic {topic}: {e}"));
        for _ in 0..100 {
            let d = self.describe(topic);
            if d.len() == partitions as usize && d.iter().all(|p| p.leader >= 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("topic {topic} has no leader for every partition");
    }

    /// The partitions of `topic` (`kafka-topics --describe`).
    pub fn describe(&self, topic: &str) -> Vec<PartitionState> {
        self.describe_text(topic)
            .lines()
            .filter_map(parse_partition)
            .collect()
    }

    /// `kafka-topics --describe` of `topic`, as printed.
    fn describe_text(&self, topic: &str) -> String {
        crate::broker::kafka_tool(&[
            "topics",
            "--bootstrap-server",
            &self.bootstrap,
            "--describe",
            "--topic",
            topic,
        ])
    }

    /// `topic`'s config `key` where the topic sets it (the `Configs:` of
    /// `kafka-topics --describe`); `None` where the broker's default applies.
    pub fn topic_config(&self, topic: &str, key: &str) -> Option<String> {
        let out = self.describe_text(topic);
        let configs = out
            .lines()
            .find(|l| l.starts_with("Topic:") && !l.contains("Partition:"))?
            .split_once("Configs:")?
            .1;
        configs.trim().split(',').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        })
    }

    /// Partition `partition` of `topic`'s leader now (-1: none).
    pub fn leader(&self, topic: &str, partition: i32) -> i32 {
        self.describe(topic)
            .into_iter()
            .find(|s| s.partition == partition)
            .map_or(-1, |s| s.leader)
    }

    /// The node that is `group`'s coordinator (`kafka-consumer-groups
    /// --describe --state`), once the group exists.
    pub fn coordinator(&self, group: &str) -> Option<i32> {
        let out = self.groups(&["--describe", "--state", "--group", group]);
        out.lines().filter(|l| l.starts_with(group)).find_map(|l| {
            let open = l.find(" (")?;
            let close = l[open..].find(')')? + open;
            l[open + 2..close].parse().ok()
        })
    }

    /// `group`'s committed offset and log-end offset per partition of its
    /// topics (`kafka-consumer-groups --describe`): (partition, committed,
    /// end); committed is -1 where there is none.
    pub fn offsets(&self, group: &str) -> Vec<(i32, i64, i64)> {
        let out = self.groups(&["--describe", "--offsets", "--group", group]);
        out.lines()
            .filter(|l| l.starts_with(group))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let partition = f.get(2)?.parse().ok()?;
                let committed = f.get(3)?.parse().unwrap_or(-1);
                let end = f.get(4)?.parse().ok()?;
                Some((partition, committed, end))
            })
            .collect()
    }

    fn groups(&self, args: &[&str]) -> String {
        let mut all = vec!["consumer-groups", "--bootstrap-server", &self.bootstrap];
        all.extend_from_slice(args);
        crate::broker::kafka_tool(&all)
    }

    /// Runs Kafka's tool `name` with `--bootstrap-server` and `args`;
    /// panics with its output unless it succeeds.
    pub fn tool(&self, name: &str, args: &[&str]) -> String {
        let out = Command::new(repo_root().join("scripts/kafka-tool.sh"))
            .args([name, "--bootstrap-server", &self.bootstrap])
            .args(args)
            .output()
            .expect("kafka-tool.sh");
        assert!(
            out.status.success(),
            "{name} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// One `Topic: t  Partition: 0  Leader: 3  Replicas: 3,1,2  Isr: 3,1,2 ...` line.
fn parse_partition(line: &str) -> Option<PartitionState> {
    let field = |name: &str| {
        let at = line.find(&format!("{name}: "))? + name.len() + 2;
        Some(line[at..].split_whitespace().next().unwrap_or_default())
    };
    let ids = |s: &str| s.split(',').filter_map(|x| x.parse().ok()).collect();
    Some(PartitionState {
        partition: field("Partition")?.parse().ok()?,
        leader: field("Leader")?.parse().unwrap_or(-1),
        replicas: ids(field("Replicas")?),
        isr: ids(field("Isr").unwrap_or_default()),
    })
}

fn script(args: &[&str]) -> std::process::Output {
    Command::new(repo_root().join("scripts/kafka-cluster.sh"))
        .args(args)
        .output()
        .expect("scripts/kafka-cluster.sh")
}

fn run_script(args: &[&str]) {
    let out = script(args);
    assert!(
        out.status.success(),
        "kafka-cluster.sh {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_tool_lines_parse() {
        let line =
            "\tTopic: t\tPartition: 2\tLeader: 3\tReplicas: 2,3,1\tIsr: 3,1\tElr: \tLastKnownElr: ";
        assert_eq!(
            parse_partition(line),
            Some(PartitionState {
                partition: 2,
                leader: 3,
                replicas: vec![2, 3, 1],
                isr: vec![3, 1],
            })
        );
        let leaderless = "\tTopic: t\tPartition: 0\tLeader: none\tReplicas: 1,2,3\tIsr: 1\tElr: ";
        assert_eq!(parse_partition(leaderless).map(|p| p.leader), Some(-1));
        assert_eq!(
            parse_partition("Topic: t\tTopicId: x\tPartitionCount: 3"),
            None
        );
    }
}
