//! Learning-rate schedules, as Keras' `keras.optimizers.schedules`. The rate of each
//! optimizer step is a function of the step's index within the fit: 0 for its first
//! step, as Keras' `optimizer.iterations` in a model's first `fit` (Keras keeps
//! counting across later `fit` calls; wgml starts each fit's schedule afresh, so a
//! decay "over the whole run" means this run; a run resumed from a backup counts on
//! from it). [`fit`](super::fit()) writes it into the step uniform it rewrites every
//! step anyway, so a schedule costs no dispatch and no buffer.

use crate::error::{Error, Result};

/// How the learning rate changes from step to step. `lr` below is the optimizer's
/// learning rate (`--lr`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// Keras' `ExponentialDecay`: `lr · decay_rate^(step / decay_steps)`, the
    /// exponent rounded down when `staircase` (then PyTorch's `StepLR(step_size =
    /// decay_steps, gamma = decay_rate)` counted in steps).
    Exponential {
        /// Steps over which the rate is multiplied by `decay_rate` once (at least 1).
        decay_steps: u64,
        /// Factor applied per `decay_steps` steps (positive).
        decay_rate: f64,
        /// Round the exponent down, so the rate drops in steps.
        staircase: bool,
    },
    /// Keras' `CosineDecay`: after `warmup_steps` steps rising linearly from 0 to
    /// `lr` (Keras' `initial_learning_rate=0, warmup_target=lr`), `lr · ((1 − alpha) ·
    /// ½(1 + cos(π · min(s, D) / D)) + alpha)` where `s` counts the steps after the
    /// warmup and `D = decay_steps`; `None` decays over every remaining step of the
    /// fit (PyTorch's `CosineAnnealingLR(T_max = D, eta_min = alpha · lr)`).
    Cosine {
        /// Steps the decay spans after the warmup (at least 1), or `None` for the rest of the fit.
        decay_steps: Option<u64>,
        /// The final rate as a fraction of `lr`, in [0, 1].
        alpha: f64,
        /// Steps of linear warmup from 0 to `lr` before the decay.
        warmup_steps: u64,
    },
    /// A straight line: after `warmup_steps` steps rising linearly from 0 to `lr`,
    /// `lr · ((1 − alpha) · (1 − min(s, D) / D) + alpha)` with `s` and `D` as for
    /// [`LrSchedule::Cosine`]. Hugging Face's default (`get_linear_schedule_with_warmup`,
    /// the Trainer's `lr_scheduler_type="linear"`, alpha 0), Keras' `PolynomialDecay`
    /// with `power=1` and `end_learning_rate = alpha · lr`, PyTorch's `LinearLR`.
    Linear {
        /// Steps the decay spans after the warmup (at least 1), or `None` for the rest of the fit.
        decay_steps: Option<u64>,
        /// The final rate as a fraction of `lr`, in [0, 1].
        alpha: f64,
        /// Steps of linear warmup from 0 to `lr` before the decay.
        warmup_steps: u64,
    },
}

impl LrSchedule {
    /// Checks the parameters: an error unless decay steps are at least 1, an
    /// exponential decay rate is positive and a cosine `alpha` is in [0, 1].
    pub fn validate(&self) -> Result<()> {
        match *self {
            LrSchedule::Exponential {
                decay_steps,
                decay_rate,
                ..
            } => {
                if decay_steps == 0 {
                    return Err(Error::invalid(
                        "exponential decay: decay steps must be at least 1",
                    ));
                }
                if !(decay_rate.is_finite() && decay_rate > 0.0) {
                    return Err(Error::invalid(format!(
                        "exponential decay: decay rate {decay_rate} must be a positive number"
                    )));
                }
            }
            LrSchedule::Cosine {
                decay_steps, alpha, ..
            }
            | LrSchedule::Linear {
                decay_steps, alpha, ..
            } => {
                let name = self.name();
                if decay_steps == Some(0) {
                    return Err(Error::invalid(format!(
                        "{name} decay: decay steps must be at least 1"
                    )));
                }
                if !(0.0..=1.0).contains(&alpha) {
                    return Err(Error::invalid(format!(
                        "{name} decay: alpha {alpha} (the final fraction of the rate) must be in [0, 1]"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The schedule's name, as `--lr-schedule` takes it.
    pub fn name(&self) -> &'static str {
        match self {
            LrSchedule::Exponential { .. } => "exponential",
            LrSchedule::Cosine { .. } => "cosine",
            LrSchedule::Linear { .. } => "linear",
        }
    }

    /// The schedule with every default filled in for a fit of `total` steps: a
    /// cosine or linear decay without `decay_steps` decays over the steps after its
    /// warmup.
    pub fn resolved(self, total: u64) -> LrSchedule {
        let rest = |warmup_steps: u64| Some(total.saturating_sub(warmup_steps).max(1));
        match self {
            LrSchedule::Cosine {
                decay_steps: None,
                alpha,
                warmup_steps,
            } => LrSchedule::Cosine {
                decay_steps: rest(warmup_steps),
                alpha,
                warmup_steps,
            },
            LrSchedule::Linear {
                decay_steps: None,
                alpha,
                warmup_steps,
            } => LrSchedule::Linear {
                decay_steps: rest(warmup_steps),
                alpha,
                warmup_steps,
            },
            other => other,
        }
    }

    /// The rate of step `step` (0-based) for the base rate `lr`, in a fit of `total`
    /// steps.
    pub fn rate(&self, lr: f64, step: u64, total: u64) -> f64 {
        match self.resolved(total) {
            LrSchedule::Exponential {
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let p = step as f64 / decay_steps as f64;
                lr * decay_rate.powf(if staircase { p.floor() } else { p })
            }
            LrSchedule::Cosine {
                decay_steps,
                alpha,
                warmup_steps,
            }
            | LrSchedule::Linear {
                decay_steps,
                alpha,
                warmup_steps,
            } => {
                if step < warmup_steps {
                    return lr * step as f64 / warmup_steps as f64;
                }
                // The fraction of the decay done, in [0, 1].
                let d = decay_steps.unwrap_or(1) as f64;
                let done = ((step - warmup_steps) as f64).min(d) / d;
                let left = if matches!(self, LrSchedule::Cosine { .. }) {
                    0.5 * (1.0 + (std::f64::consts::PI * done).cos())
                } else {
                    1.0 - done
                };
                lr * ((1.0 - alpha) * left + alpha)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-30)
    }

    /// Values worked out by hand from Keras' formulas.
    #[test]
    fn rates_follow_keras_formulas() {
        let exp = LrSchedule::Exponential {
            decay_steps: 10,
            decay_rate: 0.5,
            staircase: false,
        };
        assert!(close(exp.rate(0.1, 0, 100), 0.1));
        assert!(close(exp.rate(0.1, 5, 100), 0.1 * 0.5f64.sqrt()));
        assert!(close(exp.rate(0.1, 20, 100), 0.025));
        let stairs = LrSchedule::Exponential {
            decay_steps: 10,
            decay_rate: 0.5,
            staircase: true,
        };
        assert!(close(stairs.rate(0.1, 9, 100), 0.1));
        assert!(close(stairs.rate(0.1, 10, 100), 0.05));
        assert!(close(stairs.rate(0.1, 29, 100), 0.025));

        let cos = LrSchedule::Cosine {
            decay_steps: Some(100),
            alpha: 0.1,
            warmup_steps: 0,
        };
        assert!(close(cos.rate(1.0, 0, 0), 1.0));
        // Halfway: cos(π/2) = 0, so (1 − 0.1)·0.5 + 0.1.
        assert!(close(cos.rate(1.0, 50, 0), 0.55));
        assert!(close(cos.rate(1.0, 100, 0), 0.1));
        assert!(
            close(cos.rate(1.0, 500, 0), 0.1),
            "held at alpha after decay_steps"
        );

        // Warmup over 10 steps, then a cosine over the 30 steps left of a 40-step fit.
        let warm = LrSchedule::Cosine {
            decay_steps: None,
            alpha: 0.0,
            warmup_steps: 10,
        };
        assert!(close(warm.rate(2.0, 0, 40), 0.0));
        assert!(close(warm.rate(2.0, 5, 40), 1.0));
        assert!(close(warm.rate(2.0, 10, 40), 2.0));
        assert!(close(warm.rate(2.0, 25, 40), 1.0));
        assert!(warm.rate(2.0, 40, 40).abs() < 1e-15);
        assert_eq!(
            warm.resolved(40),
            LrSchedule::Cosine {
                decay_steps: Some(30),
                alpha: 0.0,
                warmup_steps: 10
            }
        );
    }

    /// Hugging Face's `get_linear_schedule_with_warmup(10, 40)` at lr 2: a ramp to
    /// step 10, then down to 0 at step 40; with alpha, down to alpha · lr and held.
    #[test]
    fn the_linear_schedule_is_hugging_faces() {
        let hf = |step: u64| {
            let (warmup, total) = (10.0, 40.0);
            let s = step as f64;
            let factor = if s < warmup {
                s / warmup
            } else {
                ((total - s) / (total - warmup)).max(0.0)
            };
            2.0 * factor
        };
        let linear = LrSchedule::Linear {
            decay_steps: None,
            alpha: 0.0,
            warmup_steps: 10,
        };
        for step in [0, 3, 10, 11, 25, 39, 40, 55] {
            let (got, want) = (linear.rate(2.0, step, 40), hf(step));
            assert!((got - want).abs() < 1e-12, "step {step}: {got} vs {want}");
        }
        let floor = LrSchedule::Linear {
            decay_steps: Some(100),
            alpha: 0.25,
            warmup_steps: 0,
        };
        assert!(close(floor.rate(1.0, 0, 0), 1.0));
        assert!(close(floor.rate(1.0, 50, 0), 0.625));
        assert!(close(floor.rate(1.0, 100, 0), 0.25));
        assert!(close(floor.rate(1.0, 400, 0), 0.25));
        for bad in [
            LrSchedule::Linear {
                decay_steps: Some(0),
                alpha: 0.0,
                warmup_steps: 0,
            },
            LrSchedule::Linear {
                decay_steps: None,
                alpha: -0.5,
                warmup_steps: 0,
            },
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains("linear decay"), "{e}");
        }
    }

    #[test]
    fn bad_schedules_are_errors() {
        let bad = [
            LrSchedule::Exponential {
                decay_steps: 0,
                decay_rate: 0.5,
                staircase: false,
            },
            LrSchedule::Exponential {
                decay_steps: 10,
                decay_rate: 0.0,
                staircase: false,
            },
            LrSchedule::Exponential {
                decay_steps: 10,
                decay_rate: f64::NAN,
                staircase: false,
            },
            LrSchedule::Cosine {
                decay_steps: Some(0),
                alpha: 0.0,
                warmup_steps: 0,
            },
            LrSchedule::Cosine {
                decay_steps: None,
                alpha: 1.5,
                warmup_steps: 0,
            },
        ];
        for s in bad {
            assert!(s.validate().is_err(), "{s:?}");
        }
    }
}
