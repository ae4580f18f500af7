//! The producer's input parsing: `--input` JSON lines (`read_input`, with and
//! without `--key-field`) and `--key-template` (`KeyTemplate::parse` +
//! `render`). Properties: no panic; all or nothing (either every non-blank
//! line is a record, or an error names bad line numbers that exist); a
//! template without braces renders as itself.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use producer::payload::{read_input, InputError, KeyTemplate};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    key_field: Option<&'a str>,
    template: &'a str,
    seq: u64,
    run_id: &'a str,
    file: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let lines = input.file.split(|&b| b == b'\n').count();
    let non_blank = input
        .file
        .split(|&b| b == b'\n')
        .filter(|l| std::str::from_utf8(l).map_or(true, |t| !t.trim().is_empty()))
        .count();
    match read_input(input.file, "fuzz.jsonl", input.key_field) {
        Ok(records) => {
            assert_eq!(records.len(), non_blank, "every non-blank line is a record");
            for r in &records {
                let v: serde_json::Value =
                    serde_json::from_slice(&r.value).expect("a record's value is JSON");
                if let (Some(field), Some(key)) = (input.key_field, &r.key) {
                    assert!(v.get(field).is_some(), "a key comes from the key field");
                    assert!(!key.is_empty() || v[field] == "");
                }
            }
        }
        Err(InputError::BadLines { count, details, .. }) => {
            assert!(count >= 1 && count <= lines);
            // A key field named like "; line 9:" would read as a line number.
            let parts = if input.key_field.is_some_and(|f| f.contains(';')) {
                0
            } else {
                usize::MAX
            };
            for part in details.split("; line ").skip(1).take(parts) {
                let n: usize = part
                    .split(':')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("line number");
                assert!(n >= 1 && n <= lines, "line {n} of {lines}");
            }
            assert!(details.starts_with("line "), "{details}");
        }
        Err(InputError::Empty { .. }) => assert_eq!(non_blank, 0),
        Err(InputError::Read { .. }) => panic!("reading from memory cannot fail"),
    }

    match KeyTemplate::parse(input.template) {
        Ok(t) => {
            let key = t.render(input.seq, input.run_id);
            if !input.template.contains(['{', '}']) {
                assert_eq!(key, input.template.as_bytes());
            }
        }
        Err(problem) => assert!(!problem.is_empty()),
    }
});
