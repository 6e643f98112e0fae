//! Fuzz the statement classifier (both dialects, fast path, hints, cache) with any text:
//! it must answer every input, never panic or overflow its stack.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use switchyard::classify::{fast, hint, Classifier, ClassifierSettings, Dialect};

fn classifiers() -> &'static [Classifier; 2] {
    static C: OnceLock<[Classifier; 2]> = OnceLock::new();
    C.get_or_init(|| {
        [Dialect::Postgres, Dialect::Mysql].map(|dialect| {
            Classifier::new(ClassifierSettings {
                write_functions: vec!["bump".into()],
                cache_size: 128,
                dialect,
            })
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    for c in classifiers() {
        let first = c.classify(sql);
        // A cached answer is the answer.
        assert_eq!(first, c.classify(sql), "{sql:?}");
    }
    let _ = fast::plain_select(sql, Dialect::Postgres);
    let _ = fast::plain_select(sql, Dialect::Mysql);
    let _ = hint::parse_leading_hint(sql);
    let _ = hint::parse_leading_hint_mysql(sql);
});
