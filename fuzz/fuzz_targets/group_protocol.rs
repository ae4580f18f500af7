//! `Subscription::decode` / `Assignment::decode`: the JoinGroup member
//! metadata and SyncGroup assignment bytes that other group members (any
//! client, any version) send us. Never a panic or an abort; whatever decodes
//! re-encodes, and encoding is stable (decode ∘ encode is a fixed point).
#![no_main]

use kafka_group::payload::{Assignment, Subscription};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sub) = Subscription::decode(data) {
        let first = sub.encode(3).expect("a decoded subscription re-encodes");
        let again = Subscription::decode(&first).expect("our own encoding decodes");
        let second = again.encode(3).expect("re-encodes");
        assert_eq!(first, second, "encoding is not stable for {sub:?}");
        let mut want = sub.topics.clone();
        let mut got = again.topics.clone();
        want.sort();
        got.sort();
        assert_eq!(want, got, "topics changed in a round trip");
        assert_eq!(sub.user_data, again.user_data);
    }
    if let Ok(asg) = Assignment::decode(data) {
        let first = asg.encode(3).expect("a decoded assignment re-encodes");
        let again = Assignment::decode(&first).expect("our own encoding decodes");
        assert_eq!(asg, again, "assignment changed in a round trip");
        let _ = asg.topic_partitions().count();
        let _ = asg.is_empty();
    }
});
