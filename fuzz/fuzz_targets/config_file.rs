//! The `CONFIG_FILE` layer (issue 17, finding 3): a TOML file of arbitrary
//! lines — known and unknown keys, any separator, any value, broken quotes
//! — with a password line among them, read by `ConfigSource::layer` and
//! then validated by both services. Properties: no panic; every error is
//! one line starting `invalid configuration: ` that never contains the
//! password, unless another line of the file holds it too.
#![no_main]

use std::{io::Write, path::PathBuf, sync::OnceLock};

use arbitrary::Arbitrary;
use common::config::ConfigSource;
use figment::providers::Env;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Key<'a> {
    /// One of the keys the services read (index into the union of both).
    Known(u8),
    /// Anything.
    Other(&'a str),
}

/// How the password's value is written: the ways an operator gets it wrong.
#[derive(Debug, Arbitrary)]
enum Quoting {
    Bare,
    Basic,
    Literal,
    Unterminated,
    Multiline,
    InArray,
    InTable,
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    lines: Vec<(Key<'a>, &'a str, &'a str)>,
    password: &'a str,
    quoting: Quoting,
    at: u8,
}

fn keys() -> &'static [&'static str] {
    static KEYS: OnceLock<Vec<&'static str>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut k = producer::config::all_keys();
        k.extend(consumer::config::all_keys());
        k.sort_unstable();
        k.dedup();
        k
    })
}

/// One file per process, rewritten for each input.
fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        std::env::temp_dir().join(format!("config-file-fuzz-{}.toml", std::process::id()))
    })
}

fn check(err: &str, password: &str, others: &str) {
    assert!(!err.contains('\n'), "one line: {err:?}");
    assert!(err.starts_with("invalid configuration: "), "{err}");
    assert!(
        others.contains(password) || !err.contains(password),
        "password echoed: {err}"
    );
}

fuzz_target!(|input: Input<'_>| {
    let keys = keys();
    let password = input.password.trim();
    if password.len() < 6 || password.contains(['\n', '\r', '"', '\'', '\\']) {
        return;
    }
    let password = format!("pw<{password}>");
    let value = match input.quoting {
        Quoting::Bare => password.clone(),
        Quoting::Basic => format!("\"{password}\""),
        Quoting::Literal => format!("'{password}'"),
        Quoting::Unterminated => format!("\"{password}"),
        Quoting::Multiline => format!("\"\"\"{password}"),
        Quoting::InArray => format!("[\"{password}\""),
        Quoting::InTable => format!("{{ v = {password} }}"),
    };
    let mut lines: Vec<String> = input
        .lines
        .iter()
        .take(32)
        .map(|(key, sep, v)| {
            let key = match key {
                Key::Known(i) => keys[usize::from(*i) % keys.len()].to_ascii_lowercase(),
                Key::Other(s) => (*s).to_owned(),
            };
            format!("{key}{sep}{v}")
        })
        .collect();
    let others = lines.join("\n");
    let at = usize::from(input.at) % (lines.len() + 1);
    lines.insert(at, format!("kafka_password = {value}"));
    let text = lines.join("\n");

    let path = file();
    let mut f = std::fs::File::create(path).expect("fuzz file");
    f.write_all(text.as_bytes()).expect("write");
    drop(f);
    let owned_keys: Vec<&str> = keys.to_vec();
    // Only the file: an empty environment prefix matches no variable.
    let src =
        match ConfigSource::layer(&owned_keys, Some(path), Env::prefixed("FUZZ_NOTHING_"), &[]) {
            Ok(src) => src,
            Err(e) => return check(&e.to_string(), &password, &others),
        };
    for err in [
        producer::config::validate(&src)
            .err()
            .map(|e| e.to_string()),
        consumer::config::validate(&src)
            .err()
            .map(|e| e.to_string()),
    ]
    .into_iter()
    .flatten()
    {
        check(&err, &password, &others);
    }
});
