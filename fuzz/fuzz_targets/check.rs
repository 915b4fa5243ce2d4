#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Specs are UTF-8 files; the CLI rejects anything else before parsing.
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    charter_model::testing::check_invariants(source);
});
