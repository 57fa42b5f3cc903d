//! Backbones: what turns a prompt and a response into a fixed-width vector.
//!
//! The seam is TEI's `Backend` idea (STYLE.md): a few methods over a batch, so that the trainer,
//! the checkpoints and the `model` reward term never know which backbone they drive.

use candle_core::{Tensor, Var};

use crate::{ModelError, RewardInput, Truncation};

/// What [`Backbone::forward_for_training`] returns: the vectors and their backward pass.
pub type TrainingPass<'a> = (Tensor, Box<dyn BackwardPass + 'a>);

/// The backward half of [`Backbone::forward_for_training`].
pub trait BackwardPass {
    /// Adds `∂L/∂θ` to `grads` (one buffer per parameter, aligned with
    /// [`Backbone::parameters`], each as long as its parameter) given `grad` = `∂L/∂vectors`
    /// (`[inputs, width]`, row-major).
    fn backward(self: Box<Self>, grad: &[f32], grads: &mut [Vec<f32>]) -> Result<(), ModelError>;
}

/// A network that maps each (prompt, response) of a batch to a vector of [`Backbone::width`]
/// numbers. A head on top turns that vector into rewards.
///
/// Implementations must be deterministic, and a row's vector must not depend on the other rows of
/// its batch beyond floating-point rounding (Architecture Invariant 2: batched == single).
pub trait Backbone: Send + Sync {
    /// The width of the vector each input becomes.
    fn width(&self) -> usize;

    /// The forward pass: a `[inputs.len(), width]` tensor, recording the operations on the
    /// trainable parameters so that `backward` reaches them.
    fn forward(&self, inputs: &[RewardInput]) -> Result<Tensor, ModelError>;

    /// The trainable parameters with their checkpoint names (`backbone.…`).
    fn parameters(&self) -> Vec<(String, Var)>;

    /// A training forward pass that the backbone differentiates itself instead of recording it
    /// in candle's autograd graph: the vectors (`[inputs.len(), width]`, outside any graph) and
    /// the pass that turns their gradient into the parameters' gradients. `None` (the default):
    /// train through [`Backbone::forward`] and candle's `backward`. The encoder uses it on the
    /// CPU (`encoder/packed.rs`), where its own backward pass is the faster one.
    fn forward_for_training(
        &self,
        _inputs: &[RewardInput],
    ) -> Result<Option<TrainingPass<'_>>, ModelError> {
        Ok(None)
    }

    /// A size measure of one input (tokens, words), used to sort and bucket batches by length.
    fn length(&self, input: &RewardInput) -> usize {
        input.prompt.len() + input.response.len()
    }

    /// Changes the maximum input length (tokens, words) used from now on.
    fn set_max_length(&mut self, max_length: usize) -> Result<(), ModelError>;

    /// Changes which end of a too-long input is cut from now on (see [`Truncation`]).
    fn set_truncation(&mut self, truncation: Truncation) -> Result<(), ModelError>;

    /// Every weight that a saved model must contain (trained or frozen), by name.
    fn state(&self) -> Vec<(String, Var)> {
        self.parameters()
    }

    /// Writes the backbone's own files (a tokenizer) into a model directory.
    fn save_files(&self, _dir: &std::path::Path) -> Result<(), ModelError> {
        Ok(())
    }
}
