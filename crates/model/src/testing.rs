//! Invariants shared by the fuzz target (`fuzz/`) and the corpus regression
//! test, so a crash the fuzzer finds is checked the same way on stable.
//! Not part of the public API.

use crate::{compile, to_spec, AppModel};
use charter_spec::diagnostic::{render_human, render_json_lines};

/// Compiles `source` and renders its diagnostics, then, when it gives a
/// model, checks that the printer and the formatter both preserve it.
/// Panics on any violation.
pub fn check_invariants(source: &str) {
    let compiled = compile(source);
    // Rendering slices the source by every span, so bad spans panic here.
    let human = render_human("app.md", source, &compiled.diagnostics);
    let json = render_json_lines("app.md", source, &compiled.diagnostics);
    assert_eq!(json.lines().count(), compiled.diagnostics.len(), "one JSON line per diagnostic");
    assert_eq!(human.is_empty(), compiled.diagnostics.is_empty());
    let Some(model) = compiled.model else { return };

    let printed = to_spec(&model);
    let reprinted = expect_model(&printed, "to_spec output");
    assert_models_eq(&model, &reprinted, "to_spec", &printed);
    let printed_again = to_spec(&reprinted);
    assert!(printed_again == printed, "to_spec is not a fixed point:\n--- first ---\n{printed}\n--- second ---\n{printed_again}");

    let formatted = charter_spec::fmt::format(source);
    let reformatted = expect_model(&formatted, "fmt::format output");
    assert_models_eq(&model, &reformatted, "fmt::format", &formatted);
    let formatted_again = charter_spec::fmt::format(&formatted);
    assert!(formatted_again == formatted, "fmt::format is not idempotent:\n--- first ---\n{formatted}\n--- second ---\n{formatted_again}");
}

fn expect_model(source: &str, what: &str) -> AppModel {
    let compiled = compile(source);
    match compiled.model {
        Some(m) => m,
        None => panic!("{what} does not compile:\n{}\n--- {what} ---\n{source}", render_human("app.md", source, &compiled.diagnostics)),
    }
}

fn assert_models_eq(expected: &AppModel, got: &AppModel, via: &str, text: &str) {
    if expected != got {
        panic!("{via} changed the model\n--- text ---\n{text}\n--- expected ---\n{expected:#?}\n--- got ---\n{got:#?}");
    }
}
