//! The README's configuration tables are the key tables: each block between
//! `<!-- keys:NAME -->` and `<!-- /keys:NAME -->` is exactly what
//! `common::keys::markdown_table` renders from the declarations. On drift
//! the test fails; `UPDATE_README=1 cargo test -p e2e --test readme_keys`
//! rewrites the blocks.

use common::keys::{self, Key};

/// Each README block and the keys it shows.
fn blocks() -> Vec<(&'static str, Vec<Key>)> {
    vec![
        (
            "shared",
            keys::KAFKA.iter().chain(keys::SERVICE).copied().collect(),
        ),
        ("producer", producer::config::KEYS.to_vec()),
        ("consumer", consumer::config::KEYS.to_vec()),
    ]
}

/// `text` with block `name`'s contents replaced by `table`; `None` when the
/// markers are missing.
fn with_block(text: &str, name: &str, table: &str) -> Option<String> {
    let open = format!("<!-- keys:{name} -->\n");
    let close = format!("<!-- /keys:{name} -->");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(format!("{}{table}{}", &text[..start], &text[end..]))
}

#[test]
fn readme_key_tables_are_generated_from_the_declarations() {
    let path = testkit::broker::repo_root().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let mut want = readme.clone();
    for (name, keys) in blocks() {
        want = with_block(&want, name, &keys::markdown_table(&keys))
            .unwrap_or_else(|| panic!("README.md lacks the <!-- keys:{name} --> block"));
    }
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(&path, &want).expect("write README.md");
        return;
    }
    if want != readme {
        let diff: Vec<String> = readme
            .lines()
            .zip(want.lines())
            .filter(|(a, b)| a != b)
            .take(5)
            .map(|(a, b)| format!("README: {a}\ntable:  {b}"))
            .collect();
        panic!(
            "the README's key tables differ from the declarations; run \
             `UPDATE_README=1 cargo test -p e2e --test readme_keys`:\n{}",
            diff.join("\n")
        );
    }
}

#[test]
fn every_key_is_in_exactly_one_readme_block() {
    let mut seen: Vec<&str> = blocks()
        .iter()
        .flat_map(|(_, keys)| keys.iter().map(|k| k.env))
        .collect();
    // The topic is each service's own (the consumer takes a list).
    seen.retain(|k| *k != "KAFKA_TOPIC" && *k != "KAFKA_CONSUMER_GROUP");
    let n = seen.len();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), n, "a key declared twice: {seen:?}");
    for key in producer::config::all_keys()
        .into_iter()
        .chain(consumer::config::all_keys())
    {
        assert!(
            blocks()
                .iter()
                .any(|(_, keys)| keys.iter().any(|k| k.env == key)),
            "{key} is read but not in a README block"
        );
    }
}
