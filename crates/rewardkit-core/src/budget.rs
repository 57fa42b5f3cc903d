use std::time::{Duration, Instant};

use thiserror::Error;

use crate::Outcome;

/// A work allowance for scoring one sample with one term.
///
/// The deterministic parts (`max_input_bytes`, `max_steps`) make the same sample fail the same way
/// on every machine and every thread count; the optional `timeout` is a wall-clock safety net on
/// top. A budget is cheap to copy; each scoring call gets a fresh [`Meter`] from it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    /// Inputs (completion, reference) longer than this many bytes are unscorable.
    pub max_input_bytes: usize,
    /// Abstract work units a term may spend on one sample (roughly: bytes scanned, nodes built).
    pub max_steps: u64,
    /// Optional wall-clock limit per sample and term.
    pub timeout: Option<Duration>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_input_bytes: 1 << 20,
            max_steps: 50_000_000,
            timeout: Some(Duration::from_secs(5)),
        }
    }
}

impl Budget {
    /// A budget with no practical limits; for tests and trusted inputs.
    pub fn unlimited() -> Budget {
        Budget {
            max_input_bytes: usize::MAX,
            max_steps: u64::MAX,
            timeout: None,
        }
    }

    /// Starts metering one scoring call against this budget (starts the deadline clock).
    pub fn meter(&self) -> Meter {
        Meter {
            max_input_bytes: self.max_input_bytes,
            max_steps: self.max_steps,
            steps: 0,
            deadline: self.timeout.and_then(|t| Instant::now().checked_add(t)),
            next_clock_check: CLOCK_CHECK_INTERVAL,
        }
    }
}

/// How many steps pass between two reads of the clock.
const CLOCK_CHECK_INTERVAL: u64 = 4096;

/// Why a [`Meter`] stopped the work.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Exhausted {
    /// An input was larger than the budget allows.
    #[error("input of {len} bytes is over the limit of {limit} bytes")]
    InputTooLarge {
        /// The input's length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The step allowance is spent.
    #[error("step budget of {limit} exhausted")]
    Steps {
        /// The allowance.
        limit: u64,
    },
    /// The wall-clock deadline passed.
    #[error("deadline passed")]
    Deadline,
}

impl Exhausted {
    /// The outcome a term reports when its budget stops it: an over-size input is unscorable
    /// (it will never fit), running out of steps or time is a time-out.
    pub fn into_outcome(self) -> Outcome {
        match self {
            Exhausted::InputTooLarge { .. } => Outcome::unscorable("input too large"),
            Exhausted::Steps { .. } | Exhausted::Deadline => Outcome::TimedOut,
        }
    }
}

impl From<Exhausted> for Outcome {
    fn from(e: Exhausted) -> Outcome {
        e.into_outcome()
    }
}

/// The running account of one scoring call against a [`Budget`].
///
/// Terms call [`Meter::step`] as they work (cheap: a counter, with the clock read every few
/// thousand steps) and propagate the error with `?`.
#[derive(Debug)]
pub struct Meter {
    max_input_bytes: usize,
    max_steps: u64,
    steps: u64,
    deadline: Option<Instant>,
    next_clock_check: u64,
}

impl Meter {
    /// Checks that an input of `len` bytes is within the size limit.
    pub fn check_input(&self, len: usize) -> Result<(), Exhausted> {
        if len > self.max_input_bytes {
            Err(Exhausted::InputTooLarge {
                len,
                limit: self.max_input_bytes,
            })
        } else {
            Ok(())
        }
    }

    /// Spends `n` steps.
    #[inline]
    pub fn step(&mut self, n: u64) -> Result<(), Exhausted> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.max_steps {
            return Err(Exhausted::Steps {
                limit: self.max_steps,
            });
        }
        if self.steps >= self.next_clock_check {
            self.next_clock_check = self.steps.saturating_add(CLOCK_CHECK_INTERVAL);
            self.check_deadline()?;
        }
        Ok(())
    }

    /// Reads the clock now and fails if the deadline has passed.
    pub fn check_deadline(&self) -> Result<(), Exhausted> {
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => Err(Exhausted::Deadline),
            _ => Ok(()),
        }
    }

    /// Steps spent so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_out_deterministically() {
        let budget = Budget {
            max_input_bytes: 10,
            max_steps: 100,
            timeout: None,
        };
        let mut meter = budget.meter();
        assert!(meter.step(100).is_ok());
        assert_eq!(meter.step(1), Err(Exhausted::Steps { limit: 100 }));
        assert!(meter.check_input(10).is_ok());
        assert_eq!(
            meter.check_input(11),
            Err(Exhausted::InputTooLarge { len: 11, limit: 10 })
        );
    }

    #[test]
    fn deadline_is_noticed_while_stepping() {
        let budget = Budget {
            max_input_bytes: 10,
            max_steps: u64::MAX,
            timeout: Some(Duration::ZERO),
        };
        let mut meter = budget.meter();
        let mut result = Ok(());
        for _ in 0..10 {
            result = meter.step(CLOCK_CHECK_INTERVAL);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(Exhausted::Deadline));
    }

    #[test]
    fn exhaustion_maps_to_typed_outcomes() {
        assert_eq!(Exhausted::Deadline.into_outcome(), Outcome::TimedOut);
        assert_eq!(
            Exhausted::InputTooLarge { len: 2, limit: 1 }
                .into_outcome()
                .kind(),
            crate::OutcomeKind::Unscorable
        );
    }
}
