//! What every experiment config shares: loading, `--set` overrides, clear errors, and the
//! `[train]`, `[eval]` and `[output]` tables.
//!
//! A config has the tables `[task]`, `[model]` (with optional `[model.cam]`), `[fresh]`,
//! `[train]`, `[eval]` and `[output]`. `[task]` and `[model]` are tagged by their `kind`, and each
//! kind's keys and defaults are a typed struct beside its code (`tasks/`, `fields/`); a task's
//! evaluation keys live in `[eval]` beside the shared ones. Unknown keys are errors that name the
//! key, the file and the nearest valid key; a key that belongs to another kind is dropped with a
//! note, so `--set model.kind=siren` works on an FFN config. `--set a.b=v` overrides any key
//! before validation, so overrides get the same checks as the file. `resolve` fills the defaults
//! that depend on the combination (learning rates, output activation) so the run directory's
//! `config.toml` states exactly what ran.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::fields::ModelConfig;
use crate::fresh::FreshConfig;
use crate::sweep::SweepConfig;
use crate::tasks::TaskConfig;

/// The default experiment, compiled in so `nfield` with no arguments works from anywhere.
pub const DEFAULT_CONFIG: &str = include_str!("../configs/default.toml");

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The target and how it is sampled, tagged by `kind`; carries the task's `[eval]` keys too.
    pub task: TaskConfig,
    /// The field, tagged by `kind`.
    pub model: ModelConfig,
    /// FreSh: choose one embedding hyperparameter before training.
    pub fresh: Option<FreshConfig>,
    pub train: TrainConfig,
    pub eval: EvalConfig,
    pub output: OutputConfig,
    /// What sweeps of this config need (`[sweep.slurm]`); training ignores it.
    pub sweep: Option<SweepConfig>,
    /// Keys of another kind that parsing dropped; `resolve` hands them out as notes.
    notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub steps: u64,
    pub seed: u64,
    /// Learning rate of the network (MLP) parameters; 0 picks the model's default.
    pub lr: f64,
    /// Learning rate of grid and table parameters; 0 picks the model's default.
    pub grid_lr: f64,
    /// Learning rate of CAM's grids; 0 picks 10 x `lr` (CAM's setting).
    pub cam_lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Grids see sparse gradients, so their Adam epsilon is tiny (instant-ngp).
    pub grid_eps: f64,
    /// `constant` | `step` | `cosine` | `exponential`.
    pub schedule: String,
    /// `step`: steps at which the rate is multiplied by `gamma`.
    pub milestones: Vec<u64>,
    /// `step`: shares of the budget (steps, or `max_seconds`) past which the rate is multiplied
    /// by `gamma` (nerfacc's NeRF schedule: 0.5, 0.75, 0.9).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub milestone_fractions: Vec<f64>,
    pub gamma: f64,
    /// `cosine` and `exponential`: final rate as a fraction of the initial one.
    pub final_lr_ratio: f64,
    /// `mse` | `half_mse` (CAM's 0.5 MSE; same optimum, half the gradient) | `l1` | `mape`
    /// (SDF: `|p - t| / (|t| + 0.01)`, instant-ngp's and NeuRBF's).
    pub loss: String,
    /// Read the loss back (and log it) every this many steps.
    pub log_every: u64,
    /// Full evaluation every this many steps (0: only at the end).
    pub eval_every: u64,
    /// Checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Stop after this many seconds of training (0: no limit); schedules then follow the share
    /// of this budget spent (or of `steps`, whichever is further along).
    #[serde(skip_serializing_if = "is_zero")]
    pub max_seconds: f64,
    /// Full evaluations after these many seconds of training, logged with their step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub eval_seconds: Vec<f64>,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 2000,
            seed: 0,
            lr: 0.0,
            grid_lr: 0.0,
            cam_lr: 0.0,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-15,
            grid_eps: 1e-15,
            schedule: "constant".into(),
            milestones: vec![],
            milestone_fractions: vec![],
            gamma: 0.1,
            final_lr_ratio: 0.01,
            loss: "mse".into(),
            log_every: 50,
            eval_every: 0,
            checkpoint_every: 1000,
            max_seconds: 0.0,
            eval_seconds: vec![],
        }
    }
}

/// `[eval]` keys every task has; a task's own evaluation keys sit beside them in the file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Points per forward pass when rendering for evaluation (bounds memory).
    pub chunk_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { chunk_size: 1 << 16 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Write the task's outputs (`reconstruction.png`, `mesh.ply`, ...) at the end of training.
    pub reconstruction: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self { reconstruction: true }
    }
}

const SCHEDULES: &[&str] = &["constant", "step", "cosine", "exponential"];
const LOSSES: &[&str] = &["mse", "half_mse", "l1", "mape"];

/// The tables of a config file, before `[task]`, `[model]` and `[eval]` are read by kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tables {
    task: toml::Table,
    model: toml::Table,
    #[serde(default)]
    fresh: Option<FreshConfig>,
    #[serde(default)]
    train: TrainConfig,
    #[serde(default)]
    eval: toml::Table,
    #[serde(default)]
    output: OutputConfig,
    #[serde(default)]
    sweep: Option<SweepConfig>,
}

impl Config {
    /// Read a config file, apply `--set` overrides, validate and resolve paths against its folder.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        // Absolute, so the run directory's copy of the config still finds the target.
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let base = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
        Self::parse(&text, &path.display().to_string(), &base, overrides)
    }

    /// The compiled-in default experiment; its paths resolve against the repository's `configs/`.
    pub fn default_experiment(overrides: &[String]) -> Result<Self> {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        Self::parse(DEFAULT_CONFIG, "configs/default.toml", &base, overrides)
    }

    /// Parse TOML text; `source` names it in errors, `base` anchors relative paths.
    pub fn parse(text: &str, source: &str, base: &Path, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| anyhow::anyhow!("{source} is not valid TOML: {}", one_line(e.message())))?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let mut config = Self::from_table(table, source)?;
        // A path typed on the command line is relative to where the user stands.
        let path_from_cli = overrides.iter().any(|o| o.split('=').next().map(str::trim) == Some("task.path"));
        let path = config.task.path_mut();
        if path.is_relative() {
            *path = if path_from_cli { std::env::current_dir().unwrap_or_default().join(&*path) } else { base.join(&*path) };
        }
        config.validate(source)?;
        Ok(config)
    }

    /// A config from its tables; errors name `source` and the dotted key.
    fn from_table(table: toml::Table, source: &str) -> Result<Self> {
        let tables: Tables = deserialize(toml::Value::Table(table), "", source)?;
        let mut notes = Vec::new();
        let (shared_eval, task_eval): (toml::Table, toml::Table) =
            tables.eval.into_iter().partition(|(key, _)| field_names::<EvalConfig>().contains(&key.as_str()));
        Ok(Config {
            task: TaskConfig::from_tables(tables.task, task_eval, source, &mut notes)?,
            model: ModelConfig::from_table(tables.model, source, &mut notes)?,
            fresh: tables.fresh,
            train: tables.train,
            eval: deserialize(toml::Value::Table(shared_eval), "eval", source)?,
            output: tables.output,
            sweep: tables.sweep,
            notes,
        })
    }

    /// Check values that parse but make no sense, naming the key.
    fn validate(&self, source: &str) -> Result<()> {
        check_choice(source, "train.schedule", &self.train.schedule, SCHEDULES)?;
        check_choice(source, "train.loss", &self.train.loss, LOSSES)?;
        let t = &self.train;
        if t.steps == 0 {
            bail!("{source}: train.steps must be at least 1");
        }
        for (key, v) in [("train.lr", t.lr), ("train.grid_lr", t.grid_lr), ("train.cam_lr", t.cam_lr)] {
            if !(v >= 0.0 && v.is_finite()) {
                bail!("{source}: {key} must be a finite number >= 0 (0 picks the model's default), got {v}");
            }
        }
        for (key, v) in [("train.beta1", t.beta1), ("train.beta2", t.beta2)] {
            if !(0.0..1.0).contains(&v) {
                bail!("{source}: {key} must be in [0, 1), got {v}");
            }
        }
        if !(t.eps > 0.0 && t.grid_eps > 0.0) {
            bail!("{source}: train.eps and train.grid_eps must be > 0");
        }
        if !(t.final_lr_ratio > 0.0 && t.final_lr_ratio <= 1.0) {
            bail!("{source}: train.final_lr_ratio must be in (0, 1], got {}", t.final_lr_ratio);
        }
        at_least_one(source, &[("train.log_every", t.log_every as usize), ("eval.chunk_size", self.eval.chunk_size)])?;
        self.task.validate(source)?;
        self.model.options().validate(source)?;
        if let Some(cam) = self.model.options().cam() {
            cam.validate(source, self.task.options().has_rays())?;
        }
        if let Some(f) = &self.fresh {
            f.validate(source)?;
        }
        Ok(())
    }

    /// Fill the defaults that depend on the task and model together; returns notes about keys of
    /// another kind that were ignored.
    pub fn resolve(&mut self) -> Vec<String> {
        self.model.resolve(self.task.options().outputs());
        let (lr, grid_lr) = self.model.options().learning_rates();
        if self.train.lr == 0.0 {
            self.train.lr = lr;
        }
        if self.train.grid_lr == 0.0 {
            self.train.grid_lr = grid_lr;
        }
        if self.model.options().cam().is_some() && self.train.cam_lr == 0.0 {
            self.train.cam_lr = 10.0 * self.train.lr;
        }
        std::mem::take(&mut self.notes)
    }

    /// Checks that need the defaults `resolve` fills in; run after it, before anything is written.
    pub fn check_resolved(&self) -> Result<()> {
        if let Some(cam) = self.model.options().cam() {
            let (axes, what) = self.task.options().cam_coordinate();
            cam.check_fits(self.model.options().hidden_layers(), axes, what)?;
        }
        Ok(())
    }

    /// This config with `model.<key>` set to `value`, checked like a file (FreSh's candidates).
    pub fn with_model_value(&self, key: &str, value: &toml::Value) -> Result<Config> {
        let mut table = self.to_table();
        if let Some(toml::Value::Table(model)) = table.get_mut("model") {
            model.insert(key.to_string(), value.clone());
        }
        let source = format!("model.{key} = {value}");
        let mut config = Self::from_table(table, &source)?;
        config.validate(&source)?;
        config.model.resolve(config.task.options().outputs());
        Ok(config)
    }

    /// The config as TOML tables, in the order a person reads them.
    pub fn to_table(&self) -> toml::Table {
        let (task, task_eval) = self.task.to_tables();
        let mut eval = to_table(&self.eval);
        eval.extend(task_eval);
        let mut table = toml::Table::new();
        table.insert("task".into(), task.into());
        table.insert("model".into(), self.model.to_table().into());
        if let Some(fresh) = &self.fresh {
            table.insert("fresh".into(), to_table(fresh).into());
        }
        table.insert("train".into(), to_table(&self.train).into());
        table.insert("eval".into(), eval.into());
        table.insert("output".into(), to_table(&self.output).into());
        if let Some(sweep) = &self.sweep {
            table.insert("sweep".into(), to_table(sweep).into());
        }
        table
    }

    /// The resolved config as TOML, paths written as given (absolute after loading).
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(&self.to_table())?)
    }

    /// A short model name for summaries, e.g. `ffn` or `ffn+cam`.
    pub fn model_name(&self) -> String {
        let kind = self.model.kind();
        if self.model.options().cam().is_some() { format!("{kind}+cam") } else { kind.to_string() }
    }
}

/// A typed value from a TOML value; errors name `source` and the key's dotted path under `prefix`.
pub fn deserialize<T: DeserializeOwned>(value: toml::Value, prefix: &str, source: &str) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = match (prefix, path.as_str()) {
            (_, ".") | (_, "") => prefix.to_string(),
            ("", p) => p.to_string(),
            (pre, p) => format!("{pre}.{p}"),
        };
        anyhow::anyhow!("{source}: {}", describe_serde_error(&path, &e.into_inner().to_string()))
    })
}

/// One kind's table (`[task]`, `[model]` or a task's `[eval]` keys) as its typed struct `T`. Keys
/// that `T` lacks but another kind has (`all_kinds`) are dropped with a note instead of failing;
/// keys nobody has are errors that suggest the nearest of `T`'s keys and the table's `shared` ones.
pub fn kind_table<T: DeserializeOwned>(
    mut table: toml::Table,
    prefix: &str,
    kind: &str,
    all_kinds: &[&[&str]],
    shared: &[&str],
    source: &str,
    notes: &mut Vec<String>,
) -> Result<T> {
    let own = field_names::<T>();
    let known = |key: &str| own.contains(&key) || shared.contains(&key) || all_kinds.iter().any(|keys| keys.contains(&key));
    if let Some(unknown) = table.keys().find(|key| !known(key)) {
        let choices: Vec<&str> = own.iter().chain(shared).copied().collect();
        bail!(
            "{source}: {}",
            describe_serde_error(&format!("{prefix}.{unknown}"), &format!("unknown field `{unknown}`, expected {}", quoted_list(&choices)))
        );
    }
    table.retain(|key, _| {
        let keep = own.contains(&key);
        if !keep {
            let table_name = if prefix == "eval" { "task" } else { prefix };
            notes.push(format!("{prefix}.{key} is not used by {table_name}.kind = \"{kind}\"; ignored"));
        }
        keep
    });
    deserialize(toml::Value::Table(table), prefix, source)
}

/// `` `a`, `b` `` as serde lists expected names.
fn quoted_list(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// Take a table's `kind` and check it against `kinds`, suggesting the nearest one.
pub fn take_kind(table: &mut toml::Table, prefix: &str, kinds: &[&'static str], source: &str) -> Result<&'static str> {
    let kind = match table.remove("kind") {
        Some(toml::Value::String(s)) => s,
        Some(other) => bail!("{source}: `{prefix}.kind`: expected a string, found {}", other.type_str()),
        None => bail!("{source}: missing required key `{prefix}.kind`"),
    };
    check_choice(source, &format!("{prefix}.kind"), &kind, kinds)?;
    Ok(kinds.iter().find(|k| **k == kind).copied().unwrap_or_default())
}

/// A struct's table, `kind = "..."` first when given.
pub fn kind_to_table<T: Serialize>(kind: &str, value: &T) -> toml::Table {
    let mut table = toml::Table::new();
    if !kind.is_empty() {
        table.insert("kind".into(), kind.into());
    }
    table.extend(to_table(value));
    table
}

/// A serialisable struct as a TOML table (empty if it is not a struct).
pub fn to_table<T: Serialize>(value: &T) -> toml::Table {
    toml::Table::try_from(value).unwrap_or_default()
}

/// The field names a struct deserialises, read from serde's own description of it.
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("field names read")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Probe {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(self, _: &'static str, fields: &'static [&'static str], _: V) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut probe = Probe(None);
    let _ = T::deserialize(&mut probe);
    probe.0.unwrap_or(&[])
}

pub fn check_choice(source: &str, key: &str, value: &str, choices: &[&str]) -> Result<()> {
    if choices.contains(&value) {
        return Ok(());
    }
    bail!("{source}: {}", not_one_of(key, value, choices))
}

/// `key = "value" is not one of "a", "b" (did you mean "a"?)`.
fn not_one_of(key: &str, value: &str, choices: &[&str]) -> String {
    let list = choices.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
    match nearest(value, choices) {
        Some(n) if n != value => format!("{key} = \"{value}\" is not one of {list} (did you mean \"{n}\"?)"),
        _ => format!("{key} = \"{value}\" is not one of {list}"),
    }
}

/// An error unless every value is at least 1.
pub fn at_least_one(source: &str, values: &[(&str, usize)]) -> Result<()> {
    match values.iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => bail!("{source}: {key} must be at least 1"),
        None => Ok(()),
    }
}

/// An error unless every value is a positive finite number.
pub fn positive(source: &str, values: &[(&str, f64)]) -> Result<()> {
    match values.iter().find(|(_, v)| !(*v > 0.0 && v.is_finite())) {
        Some((key, v)) => bail!("{source}: {key} must be a positive number, got {v}"),
        None => Ok(()),
    }
}

/// Apply one `--set KEY=VALUE`; VALUE is a TOML value, or a bare string when it does not parse.
pub fn apply_override(table: &mut toml::Table, spec: &str) -> Result<()> {
    let Some((key, raw)) = spec.split_once('=') else {
        bail!("--set {spec}: expected KEY=VALUE, e.g. --set train.steps=500");
    };
    let key = key.trim();
    let raw = raw.trim();
    if key.is_empty() || key.split('.').any(|p| p.is_empty()) {
        bail!("--set {spec}: the key must be a dotted path such as model.sigma");
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    let mut current = table;
    for part in &parts[..parts.len() - 1] {
        let entry = current.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => bail!("--set {spec}: `{part}` is a value, not a table"),
        };
    }
    current.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// Turn serde's message into one sentence that names the dotted key and, for unknown keys and
/// values, suggests the nearest valid one.
fn describe_serde_error(path: &str, message: &str) -> String {
    let message = one_line(message);
    // Candidates sit between backticks: "unknown field `stesp`, expected one of `steps`, `seed`".
    let quoted = |rest: &str| -> Vec<String> { rest.split('`').skip(1).step_by(2).map(str::to_string).collect() };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let unknown = rest.split('`').next().unwrap_or("");
        let expected = quoted(rest.split_once(", expected").map_or("", |(_, e)| e));
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        // serde_path_to_error's path already ends with the unknown key.
        let parent = path.strip_suffix(unknown).unwrap_or(path).trim_end_matches('.');
        let full = if parent.is_empty() { unknown.to_string() } else { format!("{parent}.{unknown}") };
        return match nearest(unknown, &expected) {
            Some(n) => {
                let suggestion = if parent.is_empty() { n.to_string() } else { format!("{parent}.{n}") };
                format!("unknown key `{full}` (did you mean `{suggestion}`?)")
            }
            None => format!("unknown key `{full}`"),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let value = rest.split('`').next().unwrap_or("");
        let expected = quoted(rest.split_once(", expected").map_or("", |(_, e)| e));
        return not_one_of(path, value, &expected.iter().map(String::as_str).collect::<Vec<_>>());
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or("");
        let full = if path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
        return format!("missing required key `{full}`");
    }
    if path.is_empty() { message } else { format!("`{path}`: {message}") }
}

/// The candidate closest to `word` by edit distance, if any is reasonably close.
fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= word.len().max(c.len()) / 2 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::ModelConfig;

    const MINIMAL: &str = "[task]\nkind = \"image\"\npath = \"x.png\"\n[model]\nkind = \"ffn\"\n";

    fn parse(text: &str, sets: &[&str]) -> Result<Config> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Config::parse(text, "test.toml", Path::new("/cfg"), &sets)
    }

    #[test]
    fn unknown_key_names_file_key_and_nearest() {
        let err = parse(&format!("{MINIMAL}[train]\nstesp = 5\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("train.stesp"), "{err}");
        assert!(err.contains("train.steps"), "{err}");
        let err = parse(MINIMAL, &["model.sgima=3"]).unwrap_err().to_string();
        assert!(err.contains("`model.sgima`") && err.contains("`model.sigma`"), "{err}");
        let err = parse(MINIMAL, &["eval.chunck_size=3"]).unwrap_err().to_string();
        assert!(err.contains("`eval.chunck_size`") && err.contains("`eval.chunk_size`"), "{err}");
        let err = parse(MINIMAL, &["task.bath_size=3"]).unwrap_err().to_string();
        assert!(err.contains("`task.bath_size`") && err.contains("`task.batch_size`"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = parse(&format!("{MINIMAL}[train]\nlr = \"fast\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("train.lr"), "{err}");
        assert!(err.contains("string"), "{err}");
        let err = parse(MINIMAL, &["model.sigma=\"wide\""]).unwrap_err().to_string();
        assert!(err.contains("model.sigma") && err.contains("string"), "{err}");
        let err = parse(MINIMAL, &["model.output_activation=sigmod"]).unwrap_err().to_string();
        assert!(err.contains("model.output_activation") && err.contains("did you mean \"sigmoid\""), "{err}");
    }

    #[test]
    fn kinds_are_checked_with_suggestions() {
        let err = parse(MINIMAL, &["model.kind=sirne"]).unwrap_err().to_string();
        assert!(err.contains("model.kind") && err.contains("did you mean \"siren\""), "{err}");
        let err = parse(MINIMAL, &["task.kind=imgae"]).unwrap_err().to_string();
        assert!(err.contains("task.kind") && err.contains("did you mean \"image\""), "{err}");
        let err = parse("[task]\npath = \"x.png\"\n[model]\nkind = \"ffn\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("missing required key `task.kind`"), "{err}");
    }

    #[test]
    fn negative_steps_is_an_error() {
        let err = parse(&format!("{MINIMAL}[train]\nsteps = -5\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("train.steps"), "{err}");
    }

    #[test]
    fn set_overrides_take_toml_values_and_bare_strings() {
        let c = parse(MINIMAL, &["task.crop=[256,128]", "model.kind=siren", "train.lr=0.5"]).unwrap();
        // Paths in the file are relative to the file; paths given with --set to the working directory.
        let cli = parse(MINIMAL, &["task.path=y.png"]).unwrap();
        assert_eq!(cli.task.options().path(), std::env::current_dir().unwrap().join("y.png"));
        let TaskConfig::Image { task, .. } = &c.task else { panic!("an image task") };
        assert_eq!(task.crop, Some([256, 128]));
        assert_eq!(c.model.kind(), "siren");
        assert_eq!(c.train.lr, 0.5);
        assert_eq!(c.task.options().path(), Path::new("/cfg/x.png"));
    }

    #[test]
    fn resolve_fills_kind_defaults_and_drops_keys_of_other_kinds() {
        let mut c = parse(MINIMAL, &["model.omega0=20", "eval.resolution=64"]).unwrap();
        let notes = c.resolve();
        let ModelConfig::Ffn(ffn) = &c.model else { panic!("an FFN") };
        assert_eq!(ffn.sigma, 10.0);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("eval.resolution") && notes[1].contains("model.omega0"), "{notes:?}");
        assert_eq!(c.train.lr, 1e-3);
        // The resolved config parses back to itself.
        let text = c.to_toml().unwrap();
        assert!(text.find("kind = \"image\"").unwrap() < text.find("path =").unwrap(), "kind first: {text}");
        let mut back = Config::parse(&text, "resolved", Path::new("/"), &[]).unwrap();
        assert!(back.resolve().is_empty());
        assert_eq!(back, c);
    }

    #[test]
    fn field_names_come_from_serde() {
        assert_eq!(field_names::<EvalConfig>(), &["chunk_size"]);
        assert!(field_names::<TrainConfig>().contains(&"grid_eps"));
    }
}
