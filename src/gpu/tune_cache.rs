//! Kernel choices measured on this adapter, kept in memory per [`Context`] and on
//! disk per adapter, driver and wgml version.
//!
//! The tuner ([`crate::kernels::tune`]) decides what a key and a choice mean;
//! this layer only stores them: a key (`"matmul_nn m32 n64 k5408 b1"`) maps to the
//! chosen candidate's name and its measured time.
//!
//! On disk: one JSON file, `tune.json` in wgml's cache directory
//! ([`cache_dir`]), holding a section per adapter fingerprint (adapter name,
//! backend, vendor and device ids, driver and driver version, and wgml's
//! version), so a new driver or a new wgml starts with no measurements instead of
//! trusting old ones. The file is read once per context, when the first choice is
//! asked for, and rewritten (atomically: a temporary file renamed over it) after
//! each new measurement. A file that cannot be read or parsed is ignored with a
//! warning (the `log` crate) and replaced at the next save; a failed save is a
//! warning too: the cache only ever saves time, it never stops a run.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::gpu::Context;

/// Environment variable naming the directory of the tuning cache (default: the
/// user's cache directory + `wgml`, e.g. `~/.cache/wgml` on Linux).
pub const CACHE_DIR_ENV: &str = "WGML_CACHE_DIR";

/// File name of the tuning cache inside [`cache_dir`].
pub const CACHE_FILE: &str = "tune.json";

/// Version of the file's layout; a file of another version is ignored.
const FORMAT: u32 = 1;

/// One measured choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunedEntry {
    /// The winning candidate, as the tuner names it (e.g. `register_small/split8`).
    pub choice: String,
    /// Its measured time in milliseconds.
    pub ms: f64,
    /// Candidates measured (including the winner).
    pub candidates: usize,
}

/// The measurements of one adapter fingerprint in the file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Section {
    entries: BTreeMap<String, TunedEntry>,
}

/// The whole file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    adapters: BTreeMap<String, Section>,
}

/// Per-context state: the measurements known so far and whether the disk file
/// has been read.
#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, TunedEntry>,
    loaded: bool,
}

/// The per-context tuning table (a field of [`Context`]).
#[derive(Debug, Default)]
pub(crate) struct TuneStore {
    state: Mutex<State>,
    /// Overrides [`cache_dir`] for this context (tests); `Some(None)` disables
    /// the disk cache.
    dir: Mutex<Option<Option<PathBuf>>>,
    /// Overrides `WGML_TUNE` for this context (the tuner parses it).
    mode: Mutex<Option<String>>,
    /// Time this context has spent measuring.
    spent: Mutex<std::time::Duration>,
}

/// The directory of the tuning cache: `$WGML_CACHE_DIR`, else the user's cache
/// directory + `wgml`; `None` when neither is known.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os(CACHE_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    dirs::cache_dir().map(|d| d.join("wgml"))
}

impl Context {
    /// A string that names this adapter, its driver and this wgml: the section of
    /// the tuning cache its measurements go to.
    pub fn tuning_fingerprint(&self) -> String {
        let i = &self.info;
        format!(
            "{} | {:?} | {:04x}:{:04x} | {} {} | wgml {}",
            i.name,
            i.backend,
            i.vendor,
            i.device,
            i.driver,
            i.driver_info,
            env!("CARGO_PKG_VERSION")
        )
    }

    /// The tuning cache file this context reads and writes, if any.
    pub fn tuning_cache_path(&self) -> Option<PathBuf> {
        let dir = self.tuning.dir.lock().unwrap_or_else(|p| p.into_inner()).clone();
        dir.unwrap_or_else(cache_dir).map(|d| d.join(CACHE_FILE))
    }

    /// Makes this context keep its tuning cache in `dir` (`None`: memory only),
    /// forgetting what it had read from the previous place.
    pub fn set_tuning_cache_dir(&self, dir: Option<PathBuf>) {
        *self.tuning.dir.lock().unwrap_or_else(|p| p.into_inner()) = Some(dir);
        let mut state = self.tuning.state.lock().unwrap_or_else(|p| p.into_inner());
        state.entries.clear();
        state.loaded = false;
    }

    /// Makes this context tune as `mode` says (`auto`, `on` or `off`, as
    /// `WGML_TUNE`) whatever the environment says; `None` follows the environment.
    pub fn set_tune_mode(&self, mode: Option<&str>) {
        *self.tuning.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode.map(str::to_string);
    }

    /// The mode set by [`Context::set_tune_mode`], if any.
    pub fn tune_mode_override(&self) -> Option<String> {
        self.tuning.mode.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Time this context has spent measuring kernel choices.
    pub fn tuning_spent(&self) -> std::time::Duration {
        *self.tuning.spent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `time` to [`Context::tuning_spent`].
    pub fn add_tuning_spent(&self, time: std::time::Duration) {
        *self.tuning.spent.lock().unwrap_or_else(|p| p.into_inner()) += time;
    }

    /// The measured choice for `key`, reading the disk cache the first time.
    pub fn tuned(&self, key: &str) -> Option<TunedEntry> {
        self.load_tuning();
        let state = self.tuning.state.lock().unwrap_or_else(|p| p.into_inner());
        state.entries.get(key).cloned()
    }

    /// Every measured choice this context knows, sorted by key.
    pub fn tuned_entries(&self) -> Vec<(String, TunedEntry)> {
        self.load_tuning();
        let state = self.tuning.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = state
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Records a measured choice and saves the cache file (a failed save is a
    /// warning through the `log` crate, never an error).
    pub fn record_tuned(&self, key: &str, entry: TunedEntry) {
        self.load_tuning();
        self.tuning
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .insert(key.to_string(), entry);
        if let Some(path) = self.tuning_cache_path()
            && let Err(e) = self.save_tuning(&path)
        {
            log::warn!(
                "could not save kernel tuning results to {}: {e}; they are kept for this run only",
                path.display()
            );
        }
    }

    /// Forgets this context's measurements (in memory only; the file stays).
    pub fn clear_tuned(&self) {
        let mut state = self.tuning.state.lock().unwrap_or_else(|p| p.into_inner());
        state.entries.clear();
        state.loaded = true;
    }

    fn load_tuning(&self) {
        {
            let mut state = self.tuning.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.loaded {
                return;
            }
            state.loaded = true;
        }
        let Some(path) = self.tuning_cache_path() else {
            return;
        };
        let section = match read_cache(&path) {
            Ok(Some(file)) => file.adapters.get(&self.tuning_fingerprint()).cloned(),
            Ok(None) => None,
            Err(why) => {
                log::warn!(
                    "ignoring the kernel tuning cache {} ({why}); kernels will be measured again",
                    path.display()
                );
                None
            }
        };
        if let Some(section) = section {
            let mut state = self.tuning.state.lock().unwrap_or_else(|p| p.into_inner());
            for (k, v) in section.entries {
                state.entries.entry(k).or_insert(v);
            }
        }
    }

    fn save_tuning(&self, path: &Path) -> std::io::Result<()> {
        // Keep other adapters' sections; a corrupt file is replaced.
        let mut file = read_cache(path).ok().flatten().unwrap_or_default();
        file.format = FORMAT;
        let entries = self
            .tuning
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        file.adapters
            .insert(self.tuning_fingerprint(), Section { entries });
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(&file).map_err(std::io::Error::other)?;
        // Unique per process and thread, so concurrent savers never share it.
        let tmp = path.with_extension(format!(
            "json.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

/// The cache file at `path`: `Ok(None)` when there is none, `Err` with the reason
/// when it cannot be used.
fn read_cache(path: &Path) -> Result<Option<CacheFile>, String> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let file: CacheFile =
        serde_json::from_slice(&text).map_err(|e| format!("not a wgml tuning cache: {e}"))?;
    if file.format != FORMAT {
        return Err(format!(
            "written in format {} and this wgml reads format {FORMAT}",
            file.format
        ));
    }
    for section in file.adapters.values() {
        if let Some((key, e)) = section
            .entries
            .iter()
            .find(|(_, e)| !(e.ms.is_finite() && e.ms >= 0.0))
        {
            return Err(format!("entry '{key}' has an invalid time {}", e.ms));
        }
    }
    Ok(Some(file))
}
