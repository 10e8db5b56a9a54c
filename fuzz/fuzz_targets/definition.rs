//! Arbitrary bytes as a cube definition: parse and validate must never panic, hang or run out
//! of memory. Diagnostics are the expected outcome; each must carry a message.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match lattice_defs::parse_str(text, "fuzz.yaml", Path::new("/nonexistent")) {
        Ok(model) => {
            // A definition that validates must describe itself consistently.
            for name in model.level_names() {
                assert!(
                    model.level(&name).is_some(),
                    "level {name} does not resolve"
                );
            }
        }
        Err(diags) => {
            assert!(!diags.is_empty(), "an error without a diagnostic");
            for d in diags.iter() {
                let _ = d.to_string();
            }
        }
    }
});
