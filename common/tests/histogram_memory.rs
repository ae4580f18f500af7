//! Per-record histograms keep the process's memory flat (issue 13, defect
//! 4): the Prometheus exporter buffers every histogram sample until a drain,
//! which made the producer hold ~16-20 bytes per record sent. Counted with
//! a global allocator that tracks live heap bytes; no timing involved.

use std::alloc::System;

use cap::Cap;
use common::metrics::{self as m, RecordHistogram};

/// The system allocator, counting live bytes.
#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

/// Peak live heap growth while recording `n` samples with `record`,
/// sampled after every record (the buffer only grows between drains).
fn peak_growth(n: u32, record: impl Fn(f64)) -> usize {
    let base = ALLOC.allocated();
    let mut peak = base;
    for i in 0..n {
        record(f64::from(i % 1000) / 1e4);
        peak = peak.max(ALLOC.allocated());
    }
    peak.saturating_sub(base)
}

#[test]
fn a_million_per_record_samples_take_no_more_memory_than_a_hundred_thousand() {
    // Outside a runtime: no periodic upkeep, as in a run shorter than its interval.
    let handle = m::install().expect("recorder");
    let hist = RecordHistogram::new(metrics::histogram!(m::PRODUCER_ACK_LATENCY, "topic" => "t"));
    // Warm up: buckets and first blocks allocated.
    peak_growth(100_000, |v| hist.record(v));
    let small = peak_growth(100_000, |v| hist.record(v));
    let large = peak_growth(1_000_000, |v| hist.record(v));
    assert!(
        large <= small + 64 * 1024 && large < 4 << 20,
        "peak heap growth: {small} bytes for 100 k samples, {large} bytes for 1 M"
    );
    // Every sample is still counted.
    let text = handle.render();
    assert!(
        text.contains("kafka_producer_ack_latency_seconds_count{topic=\"t\"} 1200000"),
        "{text}"
    );

    // The plain handle, for contrast: its samples pile up until a drain.
    let plain = metrics::histogram!(m::PRODUCER_ACK_LATENCY, "topic" => "plain");
    let piled = peak_growth(1_000_000, |v| plain.record(v));
    assert!(
        piled > 8 * large,
        "plain {piled} bytes vs drained {large} bytes"
    );
}
