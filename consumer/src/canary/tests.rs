//! The verification's rules, one scenario each, on a partition track with
//! a clock the test moves.

use super::*;

const WINDOW: Duration = Duration::from_secs(120);
/// Producer time of the first record, ms.
const T0: i64 = 1_800_000_000_000;

fn settings() -> CanarySettings {
    CanarySettings {
        loss_window: WINDOW,
        latency_slo: Duration::from_secs(5),
        availability_window: Duration::from_secs(300),
    }
}

/// A partition track and the records it is shown.
struct Partition {
    track: PartitionTrack,
    settings: CanarySettings,
    start: Instant,
    now: Instant,
    next_offset: i64,
}

impl Partition {
    fn new() -> Self {
        let settings = settings();
        let now = Instant::now();
        Self {
            track: PartitionTrack::new("canary-unit", 0, &settings),
            settings,
            start: now,
            now,
            next_offset: 0,
        }
    }

    /// Moves the consumer's clock to `secs` after the start.
    fn at(&mut self, secs: u64) -> &mut Self {
        self.now = self.start + Duration::from_secs(secs);
        self
    }

    /// Reads `(run, pseq, sent ms after T0)` at the next offset.
    fn read(&mut self, run: &str, pseq: u64, sent_after_ms: i64) -> CanaryVerdict {
        let offset = self.next_offset;
        self.next_offset += 1;
        self.read_at(offset, run, pseq, sent_after_ms, T0)
    }

    fn read_at(
        &mut self,
        offset: i64,
        run: &str,
        pseq: u64,
        sent_after_ms: i64,
        run_start_ms: i64,
    ) -> CanaryVerdict {
        self.next_offset = self.next_offset.max(offset + 1);
        self.track.record(
            ("canary-unit", 0, offset),
            CanaryFields {
                run_id: run,
                pseq,
                run_start_ms: Some(run_start_ms),
                sent_ms: Some(T0 + sent_after_ms),
            },
            Some(Duration::from_millis(20)),
            &self.settings,
            self.now,
        )
    }

    fn tick(&mut self, caught_up: bool) {
        self.track.tick(caught_up, &self.settings, self.now);
    }

    fn totals(&self) -> Totals {
        self.track.totals
    }

    fn missing(&self) -> u64 {
        self.track.missing()
    }
}

#[test]
fn records_in_order_are_neither_lost_nor_duplicated() {
    let mut p = Partition::new();
    for seq in 0..100 {
        assert_eq!(p.read("r1", seq, seq as i64 * 10), CanaryVerdict::InOrder);
    }
    p.at(1_000).tick(true);
    let t = p.totals();
    assert_eq!(
        (t.received, t.lost, t.duplicated, t.redelivered),
        (100, 0, 0, 0)
    );
}

#[test]
fn the_same_sequence_number_at_a_later_offset_is_a_duplicate() {
    let mut p = Partition::new();
    for seq in [0, 1, 2] {
        p.read("r1", seq, 0);
    }
    // A produce request that timed out after the broker wrote it, sent again.
    assert_eq!(p.read("r1", 1, 0), CanaryVerdict::Duplicate);
    assert_eq!(p.read("r1", 2, 0), CanaryVerdict::Duplicate);
    assert_eq!(p.read("r1", 3, 0), CanaryVerdict::InOrder);
    assert_eq!(p.totals().duplicated, 2);
}

#[test]
fn an_offset_read_again_is_a_redelivery_not_a_duplicate() {
    let mut p = Partition::new();
    for seq in 0..10 {
        p.read("r1", seq, 0);
    }
    // A rebalance kept the partition here; fetching resumed at the
    // committed offset 6, behind what was handled.
    p.track.resumed = true;
    for (offset, seq) in (6..10).zip(6..10) {
        assert_eq!(
            p.read_at(offset, "r1", seq, 0, T0),
            CanaryVerdict::Redelivered
        );
    }
    assert_eq!(p.read_at(10, "r1", 10, 0, T0), CanaryVerdict::InOrder);
    let t = p.totals();
    assert_eq!((t.redelivered, t.duplicated, t.lost), (4, 0, 0));
}

#[test]
fn a_gap_filled_within_the_window_is_not_lost() {
    let mut p = Partition::new();
    p.read("r1", 0, 0);
    p.read("r1", 1, 10);
    // 2 and 3 come late: a failed request sent again after the next one.
    p.read("r1", 4, 40);
    assert_eq!(p.missing(), 2);
    p.at(30).tick(false);
    assert_eq!(p.read("r1", 2, 20), CanaryVerdict::Filled);
    assert_eq!(p.read("r1", 3, 30), CanaryVerdict::Filled);
    assert_eq!(p.missing(), 0);
    p.at(1_000).tick(true);
    let t = p.totals();
    assert_eq!((t.lost, t.duplicated), (0, 0));
}

#[test]
fn a_gap_is_lost_once_records_sent_a_window_later_were_read() {
    let mut p = Partition::new();
    p.read("r1", 0, 0);
    p.read("r1", 2, 1_000); // 1 missing, noticed at producer time +1 s
                            // Records sent up to the window later: still open.
    p.read("r1", 3, 120_999);
    assert_eq!((p.totals().lost, p.missing()), (0, 1));
    // The first one sent a whole window after the gap showed: lost.
    p.read("r1", 4, 121_000);
    assert_eq!((p.totals().lost, p.missing()), (1, 0));
    // Landing after the loss was counted: not a duplicate either.
    assert_eq!(p.read("r1", 1, 500), CanaryVerdict::Unjudged);
    assert_eq!(p.totals().duplicated, 0);
}

#[test]
fn without_more_records_a_gap_is_lost_only_when_caught_up_after_the_window() {
    let mut p = Partition::new();
    p.read("r1", 0, 0);
    p.read("r1", 5, 50); // 1..=4 missing, and then the run stops
    p.at(119).tick(true);
    assert_eq!(p.totals().lost, 0);
    // Past the window but records still to read: they may fill it.
    p.at(500).tick(false);
    assert_eq!(p.totals().lost, 0);
    p.at(501).tick(true);
    assert_eq!((p.totals().lost, p.missing()), (4, 0));
}

#[test]
fn a_producer_restart_starts_a_new_run_without_false_loss() {
    let mut p = Partition::new();
    for seq in 0..5 {
        p.read("old", seq, seq as i64);
    }
    // The new pod's run: its own sequence from 0; the old run's last
    // records interleave during the rolling update.
    let start = T0 + 10;
    p.read_at(5, "new", 0, 10, start);
    p.read_at(6, "old", 5, 6, T0);
    p.read_at(7, "new", 1, 11, start);
    p.at(1_000).tick(true);
    let t = p.totals();
    assert_eq!((t.lost, t.duplicated), (0, 0));
}

#[test]
fn a_run_that_began_well_after_tracking_must_start_at_zero() {
    let mut p = Partition::new();
    p.read("old", 0, 0);
    // The next run started 10 minutes later, but its first record here is
    // pseq 3: 0..3 were acknowledged to it and are not in the log.
    let start = T0 + 600_000;
    assert_eq!(
        p.read_at(1, "new", 3, 600_010, start),
        CanaryVerdict::InOrder
    );
    assert_eq!(p.missing(), 3);
    p.read_at(2, "new", 4, 600_010 + 121_000, start);
    assert_eq!(p.totals().lost, 3);
}

#[test]
fn a_run_already_under_way_when_tracking_began_is_judged_from_its_first_record() {
    let mut p = Partition::new();
    // This member took the partition over in the middle of a run.
    let start = T0 - 3_600_000;
    p.read_at(500, "r1", 4_711, 0, start);
    p.read_at(501, "r1", 4_712, 10, start);
    // A record below what this member first saw: not judged.
    assert_eq!(
        p.read_at(502, "r1", 4_000, 20, start),
        CanaryVerdict::Unjudged
    );
    p.at(1_000).tick(true);
    let t = p.totals();
    assert_eq!((t.lost, t.duplicated), (0, 0));
}

#[test]
fn a_partition_read_elsewhere_meanwhile_starts_over_without_false_loss() {
    let mut p = Partition::new();
    p.read_at(0, "r1", 0, 0, T0);
    p.read_at(1, "r1", 2, 10, T0); // 1 missing
                                   // Revoked; another member read offsets 2..=99 and committed 100; the
                                   // partition comes back here at 100.
    p.track.resumed = true;
    assert_eq!(p.read_at(100, "r1", 100, 1_000, T0), CanaryVerdict::InOrder);
    assert_eq!(p.missing(), 0, "the open gap is dropped, not judged");
    p.read_at(101, "r1", 101, 300_000, T0);
    p.at(1_000).tick(true);
    let t = p.totals();
    assert_eq!((t.lost, t.duplicated), (0, 0));
}

#[test]
fn a_partition_back_where_this_member_left_it_keeps_its_gaps() {
    let mut p = Partition::new();
    p.read_at(0, "r1", 0, 0, T0);
    p.read_at(1, "r1", 2, 10, T0); // 1 missing
                                   // Revoked and given back with nothing read elsewhere: continuous.
    p.track.resumed = true;
    assert_eq!(p.read_at(2, "r1", 3, 20, T0), CanaryVerdict::InOrder);
    assert_eq!(p.missing(), 1);
    p.read_at(3, "r1", 4, 121_011, T0);
    assert_eq!(p.totals().lost, 1);
}

#[test]
fn open_gaps_are_bounded() {
    let mut p = Partition::new();
    // Every other record missing, far more often than gaps are remembered.
    for i in 0..(MAX_GAPS as u64 + 10) {
        p.read("r1", 2 * i, 0);
    }
    assert_eq!(p.track.runs[0].gaps.len(), MAX_GAPS);
    assert_eq!(p.totals().lost, 9, "the oldest ones counted at once");
}

#[test]
fn late_records_count_against_availability() {
    let mut p = Partition::new();
    for seq in 0..3 {
        p.read("r1", seq, 0);
    }
    p.track.record(
        ("canary-unit", 0, 3),
        CanaryFields {
            run_id: "r1",
            pseq: 3,
            run_start_ms: Some(T0),
            sent_ms: Some(T0),
        },
        Some(Duration::from_secs(6)),
        &p.settings,
        p.now,
    );
    assert_eq!(p.totals().late, 1);
    let now = p.now;
    assert_eq!(p.track.availability.ratio(now), Some(0.75));
}

#[test]
fn runs_are_bounded_and_idle_ones_forgotten() {
    let mut p = Partition::new();
    for r in 0..(MAX_RUNS + 4) {
        p.read(&format!("run{r}"), 0, 0);
    }
    assert_eq!(p.track.runs.len(), MAX_RUNS);
    p.at(RUN_IDLE.as_secs() + 1).tick(true);
    assert!(p.track.runs.is_empty());
}
