//! Parts of a dataset: some of its classes (relabelled from 0), or a few labelled
//! samples per class. These are what fine-tuning experiments train on: pretrain on
//! digits 0-4, then adapt to 5-9 from 50 labelled images each.

use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::data::{Dataset, Split, Targets};
use crate::error::{Error, Result};

fn labels_of<'a>(split: &'a Split, what: &str) -> Result<(&'a [u32], usize)> {
    match &split.y {
        Targets::Classes {
            labels,
            classes,
            positions: 1,
        } => Ok((labels, *classes)),
        Targets::Classes { positions, .. } => Err(Error::invalid(format!(
            "{what} needs one class label per sample; this dataset has {positions} per sample \
             (a sequence)"
        ))),
        Targets::Values { .. } => Err(Error::invalid(format!(
            "{what} needs a dataset of class labels; this one has target values"
        ))),
    }
}

impl Dataset {
    /// Whether its labels may use some of a model's classes only, each class
    /// being the model's output of its name or number: sets of classes (a
    /// multi-label table's) and tags (a token classifier's words), not one
    /// class per sample.
    pub fn labels_some_outputs(&self) -> bool {
        matches!(
            self.train.y,
            Targets::Values { .. } | Targets::Classes { positions: 2.., .. }
        )
    }

    /// The dataset with its classes renamed to `names` by index, when every one
    /// of its class names is a whole number below `names.len()` and some is not
    /// one of `names` (a multi-label table of class numbers, go_emotions'
    /// `[2, 27]`, for a model whose classes have names: class `k` is output `k`,
    /// as Hugging Face's `LABEL_k`); else unchanged.
    pub fn named_by_index(self, names: &[String]) -> Dataset {
        let index = |c: &String| c.parse::<usize>().ok().filter(|&k| k < names.len());
        let numbered = self.class_names.iter().all(|c| index(c).is_some());
        if self.class_names.is_empty() || !numbered || self.class_names.iter().all(|c| names.contains(c)) {
            return self;
        }
        let class_names = self
            .class_names
            .iter()
            .map(|c| index(c).map_or_else(|| c.clone(), |k| names[k].clone()))
            .collect();
        Dataset { class_names, ..self }
    }

    /// The dataset with its labels renumbered to `names`' order, the class names
    /// a model was trained with, when the data names its classes otherwise (a
    /// table whose sorted labels are not the model's order, a folder with some of
    /// the classes): each sample keeps its class by name. Unchanged when the data
    /// names no classes or the same ones. Errors name a class of the data the
    /// model does not have.
    pub fn in_class_order(&self, names: &[String]) -> Result<Dataset> {
        if self.class_names.is_empty() || names.is_empty() || self.class_names == names {
            return Ok(self.clone());
        }
        let relabel: Vec<u32> = self
            .class_names
            .iter()
            .map(|c| {
                names
                    .iter()
                    .position(|n| n == c)
                    .map(|i| i as u32)
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "'{}' has the class '{c}', which the model was not trained on (its classes: \
                         {names:?})",
                            self.name
                        ))
                    })
            })
            .collect::<Result<_>>()?;
        let renumber = |split: &Split| -> Result<Split> {
            let mut out = split.clone();
            out.y = match &split.y {
                // Sets of classes (multi-label): each class's column moves to
                // the model's; the model's classes the data lacks are 0.
                Targets::Values { values, dim } if *dim == self.class_names.len() => {
                    let mut moved = vec![0.0; split.len() * names.len()];
                    for (row, sample) in values.chunks(*dim).enumerate() {
                        for (c, &v) in sample.iter().enumerate() {
                            moved[row * names.len() + relabel[c] as usize] = v;
                        }
                    }
                    Targets::Values {
                        values: moved,
                        dim: names.len(),
                    }
                }
                // A label per position (a token classifier's tags): each moves
                // to the model's number; positions without one stay so.
                Targets::Classes {
                    labels, positions, ..
                } if *positions > 1 => Targets::Classes {
                    labels: labels
                        .iter()
                        .map(|&l| relabel.get(l as usize).copied().unwrap_or(l))
                        .collect(),
                    classes: names.len(),
                    positions: *positions,
                },
                _ => {
                    let (labels, _) = labels_of(split, "the model's classes")?;
                    Targets::Classes {
                        labels: labels.iter().map(|&l| relabel[l as usize]).collect(),
                        classes: names.len(),
                        positions: 1,
                    }
                }
            };
            Ok(out)
        };
        Ok(Dataset {
            train: renumber(&self.train)?,
            test: renumber(&self.test)?,
            validation: self.validation.as_ref().map(renumber).transpose()?,
            class_names: names.to_vec(),
            ..self.clone()
        })
    }

    /// The samples of `classes` only, in both splits, relabelled `0..classes.len()`
    /// in the order given (`[5, 6, 7, 8, 9]` makes digit 5 class 0). The class
    /// names keep saying what each new label was (the old number where the data had
    /// no names). Errors: a class the data does not have, one listed twice, one
    /// without training samples.
    pub fn keep_classes(&self, classes: &[usize]) -> Result<Dataset> {
        let (_, count) = labels_of(&self.train, "--classes")?;
        let mut relabel = vec![None; count];
        for (new, &old) in classes.iter().enumerate() {
            let slot = relabel.get_mut(old).ok_or_else(|| {
                Error::invalid(format!(
                    "--classes: class {old} does not exist; '{}' has classes 0-{}",
                    self.name,
                    count - 1
                ))
            })?;
            if slot.is_some() {
                return Err(Error::invalid(format!("--classes: class {old} is listed twice")));
            }
            *slot = Some(new as u32);
        }
        if classes.is_empty() {
            return Err(Error::invalid("--classes: no class listed"));
        }
        let keep = |split: &Split| -> Result<Split> {
            let (labels, _) = labels_of(split, "--classes")?;
            let idx: Vec<usize> = (0..labels.len())
                .filter(|&i| relabel.get(labels[i] as usize).is_some_and(Option::is_some))
                .collect();
            let mut part = split.select(&idx);
            part.y = Targets::Classes {
                labels: idx
                    .iter()
                    .map(|&i| relabel[labels[i] as usize].unwrap_or(0))
                    .collect(),
                classes: classes.len(),
                positions: 1,
            };
            Ok(part)
        };
        let out = Dataset {
            name: self.name.clone(),
            sample_shape: self.sample_shape.clone(),
            train: keep(&self.train)?,
            test: keep(&self.test)?,
            validation: self.validation.as_ref().map(keep).transpose()?,
            class_names: classes
                .iter()
                .map(|&c| self.class_names.get(c).cloned().unwrap_or_else(|| c.to_string()))
                .collect(),
        };
        let counts = out.train.class_counts();
        if let Some(new) = counts.iter().position(|&n| n == 0) {
            return Err(Error::invalid(format!(
                "--classes: class {} has no training samples in '{}'",
                classes[new], self.name
            )));
        }
        Ok(out)
    }

    /// The same dataset with exactly `n` training samples of each class, drawn at
    /// random with `seed` and kept in the data's order; the test split stays whole.
    /// Errors when a class has fewer than `n` (naming it and its count).
    pub fn per_class(&self, n: usize, seed: u64) -> Result<Dataset> {
        let (labels, classes) = labels_of(&self.train, "--per-class")?;
        if n == 0 {
            return Err(Error::invalid("--per-class must be at least 1"));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut idx = Vec::with_capacity(n * classes);
        for class in 0..classes {
            let mut members: Vec<usize> = (0..labels.len())
                .filter(|&i| labels[i] as usize == class)
                .collect();
            if members.len() < n {
                let name = self
                    .class_names
                    .get(class)
                    .cloned()
                    .unwrap_or_else(|| class.to_string());
                return Err(Error::invalid(format!(
                    "--per-class {n}: class {name} has only {} training samples in '{}'",
                    members.len(),
                    self.name
                )));
            }
            members.shuffle(&mut rng);
            idx.extend_from_slice(&members[..n]);
        }
        idx.sort_unstable();
        Ok(Dataset {
            train: self.train.select(&idx),
            ..self.clone()
        })
    }
}

impl Split {
    /// How many samples each class has (empty for target values).
    pub fn class_counts(&self) -> Vec<usize> {
        match &self.y {
            Targets::Classes { labels, classes, .. } => {
                let mut counts = vec![0; *classes];
                for &l in labels.iter().filter(|&&l| (l as usize) < *classes) {
                    counts[l as usize] += 1;
                }
                counts
            }
            Targets::Values { .. } => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(split: &Split) -> Vec<u32> {
        match &split.y {
            Targets::Classes { labels, .. } => labels.clone(),
            Targets::Values { .. } => unreachable!("class labels expected"),
        }
    }

    #[test]
    fn kept_classes_are_relabelled_in_the_order_given() {
        let d = Dataset::mnist_10k().unwrap();
        let part = d.keep_classes(&[7, 2]).unwrap();
        assert_eq!(part.class_names, ["7", "2"]);
        let before = d.train.class_counts();
        assert_eq!(part.train.class_counts(), [before[7], before[2]]);
        assert_eq!(
            part.test.class_counts(),
            [d.test.class_counts()[7], d.test.class_counts()[2]]
        );
        // The first kept sample is the first 7 or 2 of the data, with its pixels.
        let old = labels(&d.train);
        let first = old.iter().position(|&l| l == 7 || l == 2).unwrap();
        assert_eq!(labels(&part.train)[0], if old[first] == 7 { 0 } else { 1 });
        assert_eq!(part.train.x[..784], d.train.x[first * 784..(first + 1) * 784]);
    }

    #[test]
    fn per_class_draws_exactly_n_of_each_seeded() {
        let d = Dataset::mnist_10k()
            .unwrap()
            .keep_classes(&[5, 6, 7, 8, 9])
            .unwrap();
        let a = d.per_class(50, 1).unwrap();
        assert_eq!(a.train.class_counts(), [50; 5]);
        assert_eq!(a.test, d.test);
        assert_eq!(a, d.per_class(50, 1).unwrap());
        assert_ne!(a.train.x, d.per_class(50, 2).unwrap().train.x);
    }

    #[test]
    fn bad_selections_are_errors_naming_the_class() {
        let d = Dataset::mnist_10k().unwrap();
        for (classes, expect) in [
            (
                &[3, 10][..],
                "class 10 does not exist; 'mnist-10k' has classes 0-9",
            ),
            (&[1, 1][..], "class 1 is listed twice"),
            (&[][..], "no class listed"),
        ] {
            let e = d.keep_classes(classes).unwrap_err().to_string();
            assert!(e.contains(expect), "{e}");
        }
        let e = d.per_class(5000, 1).unwrap_err().to_string();
        assert!(e.contains("class 0 has only"), "{e}");
        let e = Dataset::two_blobs(1).keep_classes(&[0]).unwrap_err().to_string();
        assert!(e.contains("needs a dataset of class labels"), "{e}");
    }
}
