//! Reward specs from arbitrary text: `Spec::from_toml_str` must return `Ok` or `Err`, never
//! panic, overflow the stack or hang (run with `-timeout`).
//!
//!     cargo +nightly fuzz run spec_toml corpus/spec_toml seeds/spec_toml -- -timeout=5
//!
//! The input is the spec's text (invalid UTF-8 replaced by U+FFFD, so the TOML parser sees any
//! text). An accepted spec is also printed through `Debug`, which walks every field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewardkit::Spec;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Spec::from_toml_str(&text, "fuzz.toml") {
        Ok(spec) => {
            let _ = format!("{spec:?}");
        }
        Err(error) => {
            // The message names the file: every error says where it came from.
            let message = error.to_string();
            assert!(
                message.contains("fuzz.toml"),
                "error without the file: {message}"
            );
        }
    }
});
