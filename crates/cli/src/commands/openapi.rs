//! `charter openapi`: the OpenAPI 3.1 document the app serves at
//! `/api/openapi.json`, printed to standard output.

use super::{compile_or_report, read_spec};
use crate::exit;
use std::path::Path;

pub fn run(spec: &Path) -> u8 {
    let source = match read_spec(spec) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let Some(model) = compile_or_report(spec, &source) else { return exit::PROBLEM };
    let doc = charter_app::openapi::document(&model);
    println!("{}", serde_json::to_string_pretty(&doc).expect("serialises"));
    exit::OK
}
