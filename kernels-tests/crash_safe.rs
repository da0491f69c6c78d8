//! Crash-safe saves: a child process (this test binary started again on a
//! `*_child` test) saves in a loop and is killed with SIGKILL at a random moment,
//! again and again. After every kill the file on disk is one complete save:
//! checkpoints load with every value from the same save (never a mix of two),
//! backups load with their format, settings, progress and every tensor, and the
//! next child resumes from them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use wgml::checkpoint;
use wgml::data::Dataset;
use wgml::kernels::optim::Optimizer;
use wgml::nn::{Layer, LayerActivation as A, Loss, Sequential};
use wgml::train::{Backup, FitConfig, fit};
use wgml::{Context, ContextOptions};

use crate::common::fresh_dir;

/// Environment variable naming the folder a child saves into.
const DIR_ENV: &str = "WGML_CRASH_DIR";
/// Elements of the checkpoint child's weight tensor (1 MiB: a save takes long
/// enough to be killed in the middle of it).
const WEIGHTS: usize = 1 << 18;

fn child(test: &str, dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            test,
            "--include-ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(DIR_ENV, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Saves checkpoint after checkpoint, save `i` holding `i` in every value and
/// `save-i` as its model name, until killed; started by the crash tests in a child
/// process with the folder in its environment (without it: nothing to do).
#[test]
fn checkpoint_saver_child() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let path = Path::new(&dir).join("model.safetensors");
    let start = checkpoint::load(&path)
        .ok()
        .and_then(|c| c.model?.strip_prefix("save-")?.parse::<u64>().ok())
        .map_or(0, |i| i + 1);
    for i in start.. {
        let v = i as f32;
        let tensors = vec![
            ("w".to_string(), vec![WEIGHTS / 256, 256], vec![v; WEIGHTS]),
            ("b".to_string(), vec![256], vec![v; 256]),
        ];
        checkpoint::save(&path, &format!("save-{i}"), &tensors, i).unwrap();
    }
}

/// Trains with a backup after every epoch, resuming from the folder's backup,
/// until killed; started by the crash tests in a child process with the folder in
/// its environment (without it: nothing to do).
#[test]
fn backup_trainer_child() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let ctx = Context::new(&ContextOptions::default()).unwrap();
    let mut model = backup_spec()
        .compile(&ctx, Loss::BinaryCrossentropy, Optimizer::adam(0.01), 5)
        .unwrap();
    let cfg = FitConfig {
        epochs: 1_000_000,
        batch_size: 16,
        verbose: false,
        backup: Some(Backup {
            dir: dir.into(),
            delete_when_done: false,
        }),
        ..FitConfig::default()
    };
    fit(&mut model, &ctx, &Dataset::two_blobs(6).train, &cfg).unwrap();
}

fn backup_spec() -> Sequential {
    Sequential::new(&[2])
        .add(Layer::dense(64, A::Relu))
        .add(Layer::dense(1, A::Sigmoid))
}

/// The checkpoint at `path` is one whole save: returns its number.
fn whole_checkpoint(path: &Path) -> u64 {
    let c = checkpoint::load(path).unwrap_or_else(|e| panic!("the last checkpoint does not load: {e}"));
    let i: u64 = c
        .model
        .as_deref()
        .and_then(|m| m.strip_prefix("save-")?.parse().ok())
        .unwrap();
    for (name, _, values) in &c.tensors {
        assert!(
            values.iter().all(|&x| x == i as f32),
            "tensor {name} mixes saves: save {i} holds other values"
        );
    }
    assert_eq!(c.tensors.len(), 2);
    i
}

/// The backup at `path` is one whole save: its format, settings and progress
/// read, and it holds every tensor of the model (parameters and Adam's two
/// moments each). Returns its step count.
fn whole_backup(path: &Path) -> u64 {
    let c = checkpoint::load(path).unwrap_or_else(|e| panic!("the last backup does not load: {e}"));
    assert_eq!(
        c.metadata.get("format").map(String::as_str),
        Some("wgml-training-state-1")
    );
    let _: serde_json::Value = serde_json::from_str(&c.metadata["settings"]).unwrap();
    let progress: serde_json::Value = serde_json::from_str(&c.metadata["progress"]).unwrap();
    assert_eq!(
        c.tensors.len(),
        4 * 3,
        "{:?}",
        c.tensors.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    progress["model_step"]
        .as_u64()
        .expect("the progress records its step")
}

/// Starts `test` in a child `kills` times, killing each at a random moment after
/// its first save, and checks the file with `whole` after every kill; returns the
/// saves seen (the values `whole` returned).
fn kill_repeatedly(
    test: &str,
    dir: &Path,
    file: &Path,
    kills: usize,
    window: Duration,
    whole: fn(&Path) -> u64,
) -> Vec<u64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(kills as u64);
    let mut seen = Vec::new();
    for k in 0..kills {
        let modified = || std::fs::metadata(file).and_then(|m| m.modified()).ok();
        let before = modified();
        let mut c = child(test, dir);
        // Once this child has saved (the file changed), kill it at a random moment
        // of the next `window`: in the middle of work or of a save.
        let deadline = Instant::now() + Duration::from_secs(60);
        while modified() == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(window.mul_f64(rng.random::<f64>()));
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        assert!(file.exists(), "kill {k}: no file at all");
        seen.push(whole(file));
    }
    seen
}

#[test]
fn checkpoints_survive_200_kills_mid_save() {
    let dir = fresh_dir("crash-checkpoint");
    let file = dir.join("model.safetensors");
    let seen = kill_repeatedly(
        "crash_safe::checkpoint_saver_child",
        &dir,
        &file,
        200,
        Duration::from_millis(40),
        whole_checkpoint,
    );
    // The saves went on from run to run (each child continues the count and
    // saves at least once).
    assert!(seen.windows(2).all(|w| w[1] > w[0]), "{seen:?}");
    println!(
        "200 kills, {} checkpoints saved, every one whole",
        seen.last().unwrap() + 1
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn backups_survive_kills_mid_training() {
    backups_survive(25);
}

#[test]
#[ignore = "about two minutes on lavapipe: run by .ci/run with --ignored; every run kills 25 times"]
fn backups_survive_200_kills_mid_training() {
    backups_survive(200);
}

fn backups_survive(kills: usize) {
    let dir = fresh_dir(&format!("crash-backup-{kills}"));
    let file = dir.join(wgml::train::backup::FILE_NAME);
    let steps = kill_repeatedly(
        "crash_safe::backup_trainer_child",
        &dir,
        &file,
        kills,
        Duration::from_millis(100),
        whole_backup,
    );
    // Every child resumed where the last whole backup left off and saved again.
    assert!(steps.windows(2).all(|w| w[1] > w[0]), "{steps:?}");
    println!(
        "{kills} kills, the run reached step {}, every backup whole",
        steps.last().unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
}
