//! Fuzz config loading with any text: YAML parsing, `${ENV}` references and validation must
//! answer every input with a config or path-named errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::config::{validate, values};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| match name {
        "SECRET" => Ok("s3cret".to_string()),
        _ => Err(std::env::VarError::NotPresent),
    };
    if let Err(e) = validate::load_str_with_env(text, &env) {
        let _ = e.to_string();
    }
    let _ = values::parse_duration(text);
    let _ = values::parse_size(text);
    let _ = values::parse_host_port(text);
});
