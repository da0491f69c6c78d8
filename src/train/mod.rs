//! Training and evaluation: `fit` with validation, early stopping and a Keras-like
//! line per epoch; `fit_terms` for models trained on their own loss terms, `fit_gan`
//! for a GAN's alternating steps (both with backups); `evaluate` with accuracy, per-class precision/recall/F1 and the
//! confusion matrix.

pub mod answers;
pub mod backup;
pub mod callbacks;
pub mod entities;
pub mod evaluate;
pub mod fit;
pub mod gan;
pub mod profile;
pub mod schedule;
pub mod terms;

pub use backup::Backup;
pub use callbacks::{BatchEnd, Callback, Control, FitEvent, PrintProgress};
pub use evaluate::{
    ClassMetrics, Evaluation, eval_plans, evaluate, evaluate_answers, evaluate_with_predictions, true_classes,
};
pub use fit::{
    EpochStats, FitConfig, History, Monitor, ReduceLrOnPlateau, fit, fit_plans, fit_plans_validated,
    fit_validated, fit_with,
};
pub use gan::{GanEvent, fit_gan};
pub use schedule::LrSchedule;
pub use terms::{TermsConfig, TermsEpoch, TermsEvent, fit_terms};
