//! Keras-style callbacks: how a program follows [`fit`](super::fit()), stops it or
//! reacts to it, without wgml printing anything.
//!
//! [`fit_with`](super::fit_with) calls every callback after each training step
//! ([`Callback::on_batch_end`]), after each epoch ([`Callback::on_epoch_end`]) and
//! when something happens to the run ([`Callback::on_event`]: resumed from a
//! backup, learning rate reduced, early stopping, best weights restored). A
//! callback that returns [`Control::Stop`] ends the run: after the step (the
//! epoch's statistics then cover the steps taken, as with `max_steps`) or after
//! the epoch. `FitConfig::verbose` adds [`PrintProgress`], the console lines the
//! command line shows; a program embedding wgml leaves it off and shows its own.

use std::path::Path;

use super::fit::{EpochStats, epoch_line};

/// What a callback asks `fit` to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Control {
    /// Go on training.
    #[default]
    Continue,
    /// End the run (Keras' `model.stop_training = True`).
    Stop,
}

/// One training step done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchEnd {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Steps taken in this epoch, from 1.
    pub step: u64,
    /// Steps a whole epoch takes.
    pub steps_per_epoch: u64,
    /// Steps taken by the run, a resumed run's earlier ones included.
    pub total_steps: u64,
}

/// Something that happened to a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FitEvent<'a> {
    /// The run continues from a backup.
    Resumed {
        /// The backup file.
        path: &'a Path,
        /// Epochs the backed-up run had finished.
        epochs_done: usize,
        /// The run's planned number of epochs.
        epochs: usize,
        /// Steps the backed-up run had taken.
        steps: u64,
        /// The backed-up run had already stopped early: nothing is left to train.
        finished: bool,
    },
    /// ReduceLROnPlateau lowered the rate after `epoch`.
    LearningRateReduced {
        /// The epoch just finished, from 1.
        epoch: usize,
        /// The new learning rate.
        lr: f64,
    },
    /// Early stopping ends the run after `epoch`.
    EarlyStopped {
        /// The epoch just finished, from 1.
        epoch: usize,
        /// Epochs since the monitored value last improved.
        epochs_without_improvement: usize,
    },
    /// The weights of the best epoch were put back at the end.
    RestoredBest {
        /// The epoch whose weights were restored, from 1.
        epoch: usize,
    },
}

/// Hooks into a run; every method has a default that does nothing.
pub trait Callback {
    /// After each training step. Reading the running loss would cost a GPU
    /// round trip per step, so it is not passed; `on_epoch_end` has the epoch's.
    fn on_batch_end(&mut self, _batch: &BatchEnd) -> Control {
        Control::Continue
    }

    /// After each epoch, with its statistics (validation included) and the
    /// run's planned number of epochs.
    fn on_epoch_end(&mut self, _stats: &EpochStats, _epochs: usize) -> Control {
        Control::Continue
    }

    /// When something happens to the run.
    fn on_event(&mut self, _event: &FitEvent<'_>) {}
}

/// The console output of `FitConfig::verbose` (Keras' `verbose=1` lines): one
/// line per epoch and one per event, on stdout.
#[derive(Clone, Copy, Debug, Default)]
pub struct PrintProgress;

impl Callback for PrintProgress {
    fn on_epoch_end(&mut self, stats: &EpochStats, epochs: usize) -> Control {
        println!("{}", epoch_line(stats, epochs));
        Control::Continue
    }

    fn on_event(&mut self, event: &FitEvent<'_>) {
        match *event {
            FitEvent::Resumed {
                path,
                epochs_done,
                epochs,
                steps,
                finished,
            } => {
                println!(
                    "resuming from {}: {epochs_done} of {epochs} epochs done, {steps} steps",
                    path.display()
                );
                if finished {
                    println!("that run had stopped early: there is nothing left to train");
                }
            }
            FitEvent::LearningRateReduced { epoch, lr } => {
                println!("Epoch {epoch}: reducing the learning rate to {lr:e}");
            }
            FitEvent::EarlyStopped {
                epochs_without_improvement,
                ..
            } => {
                println!("early stopping: no improvement for {epochs_without_improvement} epochs");
            }
            FitEvent::RestoredBest { epoch } => println!("restored the weights of epoch {epoch}"),
        }
    }
}
