//! Extraction + parsing + verification on arbitrary input: must never panic, never overflow
//! the stack, and never spend far past its step budget.
//!
//!     cargo +nightly fuzz run math_verify -- -max_total_time=600
//!
//! The input is split at the first 0xFF byte into (gold, completion).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewardkit_core::Budget;
use rewardkit_math::{verify, MathOptions};

const MAX_STEPS: u64 = 1_000_000;

fuzz_target!(|data: &[u8]| {
    let (gold, pred) = match data.iter().position(|b| *b == 0xFF) {
        Some(k) => (&data[..k], &data[k + 1..]),
        None => (&data[..data.len() / 3], &data[data.len() / 3..]),
    };
    let gold = String::from_utf8_lossy(gold);
    let pred = String::from_utf8_lossy(pred);
    let budget = Budget {
        max_input_bytes: 1 << 20,
        max_steps: MAX_STEPS,
        timeout: None,
    };
    let mut meter = budget.meter();
    let _ = verify(&gold, &pred, &MathOptions::default(), &mut meter);
    assert!(meter.steps() <= 2 * MAX_STEPS, "budget overrun: {} steps", meter.steps());
});
