//! Names no other test (or earlier run) uses: tests of one binary run in
//! parallel, and several helpers share one broker.

use std::sync::atomic::{AtomicU32, Ordering};

/// `{prefix}-{pid}-{nanos}-{n}`: unique within this process (a counter) and
/// across processes and runs (pid and clock).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_differ_and_keep_their_prefix() {
        let (a, b) = (super::unique("t"), super::unique("t"));
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("t-{}-", std::process::id())), "{a}");
    }
}
