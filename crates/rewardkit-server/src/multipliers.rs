//! The Lagrange multipliers of a constrained combination (`[combine] method = "constrained"`),
//! carried from request to request.
//!
//! `rewardkit score --multipliers-out` takes one update per file; a server sees a trainer's
//! batches one request at a time, so it keeps the state itself:
//!
//! * **One state, one writer at a time.** The state sits behind one mutex. The batcher, after
//!   scoring a request's samples, locks it, combines the request's rewards with the current
//!   multipliers ([`rewardkit::Pipeline::shape_with_multipliers`]), applies the one update the
//!   request's constraint means give, and unlocks. Requests therefore update the multipliers
//!   **in the order the batcher takes them from the queue** (their arrival order), each exactly
//!   once, each combined with the state its predecessor left: concurrent requests never lose an
//!   update, and a request's rewards never depend on how it was coalesced with others.
//! * **Replacement.** `POST /admin/multipliers` swaps in a state under the same mutex: requests
//!   already combined keep their rewards, every later one starts from the new state.
//! * **Incomplete requests.** A request cut by its deadline gets no pass, so no update, and its
//!   combined reward is a typed `timed_out` for every sample (its terms' outcomes are still
//!   sent): a reward combined with other multipliers than the carried ones would be wrong
//!   without saying so.
//! * **Reload** (SIGHUP or `/admin/reload`). If the new spec's constrained combination has the
//!   same constraint terms, thresholds and squash, the carried `μ`, momentum buffers and step
//!   count are kept and its learning rate and momentum are taken; otherwise (or if it is not
//!   constrained any more) the new spec's own starting state (`state_file` or `initial_mu`)
//!   replaces them. Requests queued before the reload are combined with the carried state when
//!   it fits their spec, without updating it.
//! * **Persistence** (optional, `ServerConfig::save_multipliers_every`). The state is written to
//!   the spec's `state_file` (atomically: a temporary file renamed over it) every N updates, before
//!   a reload, and at shutdown — so a restarted server resumes where it stopped.

use std::sync::Mutex;

use rewardkit::{Combine, Pipeline, ScoredSample, Shaped};
use rewardkit_core::Sample;
use rewardkit_shape::{LagrangeMultipliers, LagrangeState};
use serde::Serialize;

use crate::ServerError;

/// The carried state (or nothing, for specs without a constrained combination).
pub(crate) struct Carried {
    inner: Mutex<Option<State>>,
    /// Save every this many updates (0: only before a reload and at shutdown); `None`: never.
    save_every: Option<u64>,
}

struct State {
    multipliers: LagrangeMultipliers,
    /// The constraint terms, in the order of the state's lists.
    constraints: Vec<String>,
    /// The spec generation the state belongs to.
    generation: u64,
    /// Where to persist it (the spec's `state_file`).
    state_file: Option<String>,
    updates: u64,
    skipped: u64,
    replaced: u64,
    unsaved: u64,
    saves_failed: u64,
    last_means: Option<Vec<f64>>,
}

/// What `GET /v1/multipliers` answers.
#[derive(Serialize)]
pub(crate) struct View {
    generation: u64,
    constraints: Vec<String>,
    /// `λ_i` now.
    lambda: Vec<f64>,
    /// The whole state, in the format of `rewardkit score --multipliers-out` and `state_file`
    /// (what `POST /admin/multipliers` takes).
    state: LagrangeState,
    /// Updates applied by this server (requests whose means were all finite).
    updates: u64,
    /// Requests that could not update (a constraint term had no finite value).
    skipped_updates: u64,
    /// Replacements through `POST /admin/multipliers`.
    replacements: u64,
    /// The constraint means of the last update.
    last_means: Option<Vec<f64>>,
    /// Where the state is saved, when saving is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    state_file: Option<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The constraint names and state file of a pipeline's constrained combination.
fn constrained(pipeline: &Pipeline) -> Option<(Vec<String>, Option<String>)> {
    match &pipeline.spec().combine {
        Combine::Constrained {
            thresholds,
            state_file,
            ..
        } => Some((thresholds.keys().cloned().collect(), state_file.clone())),
        _ => None,
    }
}

impl State {
    fn start(pipeline: &Pipeline, generation: u64) -> Option<State> {
        let multipliers = pipeline.multipliers()?.clone();
        let (constraints, state_file) = constrained(pipeline)?;
        Some(State {
            multipliers,
            constraints,
            generation,
            state_file,
            updates: 0,
            skipped: 0,
            replaced: 0,
            unsaved: 0,
            saves_failed: 0,
            last_means: None,
        })
    }

    /// Whether `other` has the same constraints, thresholds and squash (the state means the same
    /// thing for it).
    fn fits(&self, constraints: &[String], other: &LagrangeState) -> bool {
        let state = self.multipliers.state();
        self.constraints == constraints
            && state.thresholds == other.thresholds
            && state.squash == other.squash
    }

    fn save(&mut self) -> Result<Option<String>, String> {
        let Some(file) = &self.state_file else {
            return Ok(None);
        };
        let text = serde_json::to_string_pretty(self.multipliers.state())
            .map_err(|e| format!("cannot encode the multipliers: {e}"))?
            + "\n";
        let temporary = format!("{file}.tmp-{}", std::process::id());
        let written = std::fs::write(&temporary, text).and_then(|()| {
            std::fs::rename(&temporary, file).inspect_err(|_| {
                let _ = std::fs::remove_file(&temporary);
            })
        });
        match written {
            Ok(()) => {
                self.unsaved = 0;
                Ok(Some(file.clone()))
            }
            Err(e) => {
                self.saves_failed += 1;
                Err(format!("cannot save the multipliers to {file}: {e}"))
            }
        }
    }
}

impl Carried {
    pub(crate) fn new(pipeline: &Pipeline, save_every: Option<u64>) -> Carried {
        Carried {
            inner: Mutex::new(State::start(pipeline, 1)),
            save_every,
        }
    }

    /// Whether specs of this pipeline carry multipliers (then every request gets a pass).
    pub(crate) fn applies(pipeline: &Pipeline) -> bool {
        pipeline.multipliers().is_some()
    }

    /// The batch pass over one request that was scored in full: with the carried multipliers
    /// and one update when the spec is constrained, else the plain pass of specs that need one.
    /// `None` when the spec needs no pass.
    pub(crate) fn pass(
        &self,
        pipeline: &Pipeline,
        generation: u64,
        samples: &[Sample],
        results: &[ScoredSample],
    ) -> Option<Result<Shaped, String>> {
        if pipeline.multipliers().is_none() {
            return crate::queue::shape(pipeline, samples, results);
        }
        let inputs: Vec<_> = samples.iter().map(|s| pipeline.shape_input(s)).collect();
        let mut guard = lock(&self.inner);
        let Some(state) = guard.as_mut() else {
            return Some(pipeline.shape(results, &inputs).map_err(|e| e.to_string()));
        };
        if state.generation != generation {
            // Queued before a reload: combined with the carried state if it fits this spec,
            // without updating it.
            return Some(Self::stale(state, pipeline, results, &inputs));
        }
        let shaped = pipeline
            .shape_with_multipliers(results, &inputs, &state.multipliers)
            .map_err(|e| e.to_string());
        if let Ok(shaped) = &shaped {
            match shaped.multipliers.as_ref().map(|r| (&r.next, &r.means)) {
                Some((Some(next), means)) => match LagrangeMultipliers::from_state(next.clone()) {
                    Ok(next) => {
                        state.multipliers = next;
                        state.updates += 1;
                        state.unsaved += 1;
                        state.last_means = Some(means.clone());
                    }
                    Err(e) => {
                        state.skipped += 1;
                        tracing::warn!(error = %e, "multiplier update refused");
                    }
                },
                _ => state.skipped += 1,
            }
            if matches!(self.save_every, Some(n) if n > 0 && state.unsaved >= n) {
                if let Err(e) = state.save() {
                    tracing::warn!(error = %e, "multipliers not saved");
                }
            }
        }
        Some(shaped)
    }

    fn stale(
        state: &State,
        pipeline: &Pipeline,
        results: &[ScoredSample],
        inputs: &[rewardkit::ShapeInput],
    ) -> Result<Shaped, String> {
        let fits = match (pipeline.multipliers(), constrained(pipeline)) {
            (Some(own), Some((constraints, _))) => state.fits(&constraints, own.state()),
            _ => false,
        };
        if fits {
            pipeline.shape_with_multipliers(results, inputs, &state.multipliers)
        } else {
            pipeline.shape(results, inputs)
        }
        .map_err(|e| e.to_string())
    }

    /// The state now, or `NoMultipliers`.
    pub(crate) fn view(&self) -> Result<View, ServerError> {
        let guard = lock(&self.inner);
        let state = guard.as_ref().ok_or(ServerError::NoMultipliers)?;
        Ok(View {
            generation: state.generation,
            constraints: state.constraints.clone(),
            lambda: state.multipliers.multipliers(),
            state: state.multipliers.state().clone(),
            updates: state.updates,
            skipped_updates: state.skipped,
            replacements: state.replaced,
            last_means: state.last_means.clone(),
            state_file: self.save_every.and_then(|_| state.state_file.clone()),
        })
    }

    /// Replaces the state (`POST /admin/multipliers`): it must be valid and have the spec's
    /// thresholds and squash.
    pub(crate) fn replace(&self, new: LagrangeState) -> Result<View, ServerError> {
        {
            let mut guard = lock(&self.inner);
            let state = guard.as_mut().ok_or(ServerError::NoMultipliers)?;
            let old = state.multipliers.state();
            if new.thresholds != old.thresholds {
                return Err(ServerError::shape(
                    "thresholds",
                    format!(
                        "{:?}, but the spec's constraints ({}) have thresholds {:?}",
                        new.thresholds,
                        state.constraints.join(", "),
                        old.thresholds
                    ),
                ));
            }
            if new.squash != old.squash {
                return Err(ServerError::shape(
                    "squash",
                    format!("{:?}, but the spec's is {:?}", new.squash, old.squash),
                ));
            }
            let multipliers = LagrangeMultipliers::from_state(new)
                .map_err(|e| ServerError::shape("(body)", e.to_string()))?;
            state.multipliers = multipliers;
            state.replaced += 1;
            state.unsaved += 1;
        }
        self.view()
    }

    /// Before a reload swaps `next` in (generation `generation`): saves the state if saving is
    /// on, then keeps it if it fits the new spec (taking its learning rate and momentum), else
    /// starts from the new spec's state.
    pub(crate) fn reload(&self, next: &Pipeline, generation: u64) {
        let mut guard = lock(&self.inner);
        if self.save_every.is_some() {
            if let Some(state) = guard.as_mut() {
                if let Err(e) = state.save() {
                    tracing::warn!(error = %e, "multipliers not saved before the reload");
                }
            }
        }
        let fresh = State::start(next, generation);
        *guard = match (guard.take(), fresh) {
            (Some(mut old), Some(fresh))
                if old.fits(&fresh.constraints, fresh.multipliers.state()) =>
            {
                let mut state = old.multipliers.state().clone();
                let spec = fresh.multipliers.state();
                state.learning_rate = spec.learning_rate;
                state.momentum = spec.momentum;
                match LagrangeMultipliers::from_state(state) {
                    Ok(kept) => {
                        tracing::info!("reload: the carried multipliers fit the new spec; kept");
                        old.multipliers = kept;
                        old.generation = generation;
                        old.state_file = fresh.state_file;
                        Some(old)
                    }
                    Err(_) => Some(fresh),
                }
            }
            (_, fresh) => {
                if fresh.is_some() {
                    tracing::info!(
                        "reload: new constraints; the multipliers start from the new spec"
                    );
                }
                fresh
            }
        };
    }

    /// At shutdown: saves the state if saving is on.
    pub(crate) fn shutdown(&self) {
        if self.save_every.is_none() {
            return;
        }
        if let Some(state) = lock(&self.inner).as_mut() {
            match state.save() {
                Ok(Some(file)) => tracing::info!(file, "multipliers saved"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "multipliers not saved at shutdown"),
            }
        }
    }

    /// Prometheus lines: `λ` per constraint and the update counts.
    pub(crate) fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let guard = lock(&self.inner);
        let Some(state) = guard.as_ref() else {
            return;
        };
        let _ = writeln!(
            out,
            "# HELP rewardkit_multiplier Lagrange multiplier λ of each constraint term.\n# TYPE rewardkit_multiplier gauge"
        );
        for (name, lambda) in state
            .constraints
            .iter()
            .zip(state.multipliers.multipliers())
        {
            let _ = writeln!(
                out,
                "rewardkit_multiplier{{constraint=\"{}\"}} {lambda}",
                name.replace('\\', "\\\\").replace('"', "\\\"")
            );
        }
        let _ = writeln!(
            out,
            "# HELP rewardkit_multiplier_updates_total Multiplier updates by result.\n# TYPE rewardkit_multiplier_updates_total counter"
        );
        for (result, n) in [
            ("applied", state.updates),
            ("skipped", state.skipped),
            ("replaced", state.replaced),
        ] {
            let _ = writeln!(
                out,
                "rewardkit_multiplier_updates_total{{result=\"{result}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP rewardkit_multiplier_save_failures_total Failed writes of the multiplier state file.\n# TYPE rewardkit_multiplier_save_failures_total counter\nrewardkit_multiplier_save_failures_total {}",
            state.saves_failed
        );
    }
}
