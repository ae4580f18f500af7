//! Configuration validation of both services: `ConfigSource::from_pairs`
//! with arbitrary keys and values, then `producer::config::validate` and
//! `consumer::config::validate` (which also run `KafkaSettings::from_source`
//! and `LogConfig::from_source`). Properties: no panic; an error is one line
//! that never contains the password.
#![no_main]

use arbitrary::Arbitrary;
use common::config::ConfigSource;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Key<'a> {
    /// One of the keys the services read (index into the union of both).
    Known(u8),
    /// A `KEY_FILE` variant.
    File(u8),
    /// Anything.
    Other(&'a str),
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    pairs: Vec<(Key<'a>, &'a str)>,
    password: Option<&'a str>,
}

fn keys() -> Vec<&'static str> {
    let mut k = producer::config::all_keys();
    k.extend(consumer::config::all_keys());
    k.sort_unstable();
    k.dedup();
    k
}

fuzz_target!(|input: Input<'_>| {
    let keys = keys();
    let mut owned: Vec<(String, String)> = Vec::new();
    for (key, value) in input.pairs.iter().take(48) {
        let key = match key {
            Key::Known(i) => keys[usize::from(*i) % keys.len()].to_owned(),
            Key::File(i) => format!("{}_FILE", keys[usize::from(*i) % keys.len()]),
            Key::Other(s) => (*s).to_owned(),
        };
        // KAFKA_PASSWORD_FILE is read as it is: keep the fuzzer away from
        // /dev/zero, FIFOs and the like (relative names resolve in fuzz/).
        let value = if key.ends_with("_FILE") || key == "PRODUCER_INPUT" {
            value.replace('/', "_")
        } else {
            (*value).to_owned()
        };
        owned.push((key, value));
    }
    // A distinctive password, to check it is never echoed.
    let password = input
        .password
        .filter(|p| p.trim().len() >= 6 && !p.contains(['\n', '\r']))
        .map(|p| format!("pw<{}>", p.trim()));
    if let Some(pw) = &password {
        owned.retain(|(k, _)| k != "KAFKA_PASSWORD" && k != "KAFKA_PASSWORD_FILE");
        owned.push(("KAFKA_PASSWORD".to_owned(), pw.clone()));
    }
    let src = ConfigSource::from_pairs(owned.iter().map(|(k, v)| (k.as_str(), v.as_str())));

    let producer = producer::config::validate(&src)
        .map(|_| ())
        .map_err(|e| e.to_string());
    let consumer = consumer::config::validate(&src)
        .map(|_| ())
        .map_err(|e| e.to_string());
    for err in [producer.err(), consumer.err()].into_iter().flatten() {
        assert!(!err.contains('\n'), "one line: {err:?}");
        assert!(err.starts_with("invalid configuration: "), "{err}");
        if let Some(pw) = &password {
            // Unless another key's value happens to hold it.
            let elsewhere = owned
                .iter()
                .any(|(k, v)| k != "KAFKA_PASSWORD" && v.contains(pw.as_str()));
            assert!(
                elsewhere || !err.contains(pw.as_str()),
                "password echoed: {err}"
            );
        }
    }
});
