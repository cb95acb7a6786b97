//! End-to-end tests of `nfield train | eval | render` on the CPU device.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// A hash grid fitted to a small real photo must reach a PSNR threshold, and the run directory
/// must hold everything DESIGN.md promises.
#[test]
fn hashgrid_fits_a_small_image_and_writes_the_run_directory() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let o = run(&small_run("configs/image/hashgrid.toml", out, "hg", "300"));
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = run_dir(&o);
    assert_eq!(dir, t.path().join("hg"));
    for f in ["config.toml", "metrics.jsonl", "summary.json", "checkpoint/checkpoint.safetensors", "reconstruction.png"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let s = summary(&dir);
    assert_eq!(s["task"], "image");
    assert_eq!(s["model"], "hashgrid");
    assert_eq!(s["device"], "cpu");
    assert_eq!(s["steps"], 300);
    assert!(s["params"].as_u64().unwrap() > 1000);
    let psnr = s["psnr"].as_f64().unwrap();
    assert!(psnr > 33.0, "PSNR {psnr}");
    assert!(s["ssim"].as_f64().unwrap() > 0.9);
    // The reconstruction is a 64x48 RGB PNG.
    let img = image::open(dir.join("reconstruction.png")).unwrap();
    assert_eq!((img.width(), img.height()), (64, 48));
    // The resolved config names every default and trains the same model again.
    let resolved = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(resolved.contains("log2_table_size = 19") && resolved.contains("steps = 300"), "{resolved}");
    // metrics.jsonl: one JSON object per line, steps increasing, a final eval line.
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() >= 6);
    assert_eq!(lines.last().unwrap()["eval"], true);

    // eval reproduces the PSNR from the checkpoint; render writes a 2x image without overwriting.
    let e = run(&["eval", dir.to_str().unwrap(), "--device", "cpu"]);
    assert!(e.status.success(), "{}", stderr(&e));
    assert!((summary(&dir)["psnr"].as_f64().unwrap() - psnr).abs() < 1e-3);
    for _ in 0..2 {
        let r = run(&["render", dir.to_str().unwrap(), "--size", "128x96", "--device", "cpu"]);
        assert!(r.status.success(), "{}", stderr(&r));
    }
    let big = image::open(dir.join("renders/image-128x96.png")).unwrap();
    assert_eq!((big.width(), big.height()), (128, 96));
    assert!(dir.join("renders/image-128x96-2.png").is_file(), "second render must not overwrite the first");
    let r = run(&["render", dir.to_str().unwrap(), "--orbit", "10", "--device", "cpu"]);
    assert_clean_error(&r, &["--orbit"]);
}

/// With `task.holdout` training never sees a quarter of the pixels: the field must still
/// interpolate them sensibly, but clearly worse than it fits the image as a whole.
#[test]
fn held_out_pixels_are_scored_apart() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let mut args = small_run("configs/image/hashgrid.toml", out, "held", "300");
    args.extend(["--set", "task.holdout=0.25", "--set", "model.log2_table_size=12"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&run_dir(&o));
    let (psnr, held) = (s["psnr"].as_f64().unwrap(), s["holdout_psnr"].as_f64().unwrap());
    assert!(held > 28.0 && held < psnr - 1.0, "held-out {held} dB, whole image {psnr} dB");
    // Without the option there is no held-out score.
    let o = run(&small_run("configs/image/hashgrid.toml", out, "all", "2"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(summary(&run_dir(&o)).get("holdout_psnr").is_none());
}

/// NeuRBF (150 kernels placed by K-Means) must fit the small photo past a PSNR threshold (46-47
/// dB over seeds), lose clearly without its sinusoid composition (about 38 dB), and come back from its checkpoint exactly: `eval`
/// rebuilds the field without K-Means and must get the trained centres from the checkpoint, and
/// `render` at 2x finds neighbours for points it never trained on.
#[test]
fn neurbf_fits_a_small_image_and_needs_its_sinusoids() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    // 500 steps: past the early phase where the PSNR still swings by seeds (about +-2 dB at 300).
    let mut full = small_run("configs/image/neurbf.toml", out, "full", "500");
    full.extend(["--set", "model.kernels=150"]);
    let o = run(&full);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = run_dir(&o);
    let s = summary(&dir);
    let psnr = s["psnr"].as_f64().unwrap();
    assert!(psnr > 44.0, "NeuRBF PSNR {psnr}");
    // Budget accounting: frozen centres (2) and shapes (3) per kernel count in params only.
    assert_eq!(s["params"].as_u64().unwrap() - s["trainable_params"].as_u64().unwrap(), 150 * 5);

    let mut plain = small_run("configs/image/neurbf.toml", out, "plain", "500");
    plain.extend(["--set", "model.kernels=150", "--set", "model.rbf_sinusoids=false", "--set", "model.decoder_sinusoids=false"]);
    let o = run(&plain);
    assert!(o.status.success(), "{}", stderr(&o));
    let without = summary(&run_dir(&o))["psnr"].as_f64().unwrap();
    assert!(psnr - without > 5.0, "with sinusoids {psnr} dB, without {without} dB");

    let e = run(&["eval", dir.to_str().unwrap(), "--device", "cpu"]);
    assert!(e.status.success(), "{}", stderr(&e));
    assert!((summary(&dir)["psnr"].as_f64().unwrap() - psnr).abs() < 1e-3, "eval must reproduce the trained field");
    let r = run(&["render", dir.to_str().unwrap(), "--size", "128x96", "--device", "cpu"]);
    assert!(r.status.success(), "{}", stderr(&r));
    // The 2x render, box-filtered back down, must still look like the photo.
    let big = image::open(dir.join("renders/image-128x96.png")).unwrap().to_rgb8();
    let target = image::open(asset("test/coffee-64x48-rgb8.png")).unwrap().to_rgb8();
    let mut se = 0.0f64;
    for (x, y, p) in target.enumerate_pixels() {
        for c in 0..3 {
            let mean: f64 =
                [(0, 0), (1, 0), (0, 1), (1, 1)].iter().map(|(dx, dy)| big.get_pixel(2 * x + dx, 2 * y + dy)[c] as f64).sum::<f64>() / 4.0;
            se += ((mean - p[c] as f64) / 255.0).powi(2);
        }
    }
    let downsampled_psnr = -10.0 * (se / (64.0 * 48.0 * 3.0)).log10();
    assert!(downsampled_psnr > 27.0, "2x render averaged back down: {downsampled_psnr} dB");
}

/// GNF: Gaussian neurons over small grids must fit the small photo past a PSNR threshold.
#[test]
fn gnf_fits_a_small_image() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let mut args = small_run("configs/image/gnf.toml", out, "gnf", "300");
    args.extend(["--set", "model.grid_resolutions=[8,12,16]", "--set", "model.grid_channels=[2,2,2]"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&run_dir(&o));
    assert_eq!(s["params"], 2 * (64 + 144 + 256) + 2 * 64 * 6 + 64 * 3 + 3);
    let psnr = s["psnr"].as_f64().unwrap();
    assert!(psnr > 30.0, "GNF PSNR {psnr}");
}

/// A config named by a relative path, whose target is relative to the config: the run
/// directory's copy must still find the target, so `eval` works afterwards.
#[test]
fn a_run_from_a_relative_config_path_can_be_evaluated() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let o = run(&[
        "train",
        "configs/image/neurbf.toml",
        "--device",
        "cpu",
        "--out",
        out,
        "--name",
        "rel",
        "--steps",
        "2",
        "--quiet",
        "--set",
        "task.crop=[64,48]",
        "--set",
        "model.kernels=50",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = run(&["eval", run_dir(&o).to_str().unwrap(), "--device", "cpu"]);
    assert!(e.status.success(), "{}", stderr(&e));
}

/// Every config in configs/ parses and trains a few steps, so none rots.
#[test]
fn every_config_trains_a_few_steps() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let mut configs = vec!["configs/default.toml".to_string()];
    for folder in ["configs/image", "configs/sdf"] {
        for entry in std::fs::read_dir(repo().join(folder)).unwrap() {
            configs.push(format!("{folder}/{}", entry.unwrap().file_name().to_string_lossy()));
        }
    }
    for (i, config) in configs.iter().enumerate() {
        let name = format!("c{i}");
        let args = if config.starts_with("configs/sdf") { small_sdf_run(config, out, &name, "3") } else { small_run(config, out, &name, "3") };
        let o = run(&args);
        assert!(o.status.success(), "{config}: {}", stderr(&o));
        assert_eq!(summary(&run_dir(&o))["steps"], 3, "{config}");
    }
}

#[test]
fn default_experiment_runs_without_arguments() {
    let t = tmp();
    let o = run(&["train", "--device", "cpu", "--out", t.path().to_str().unwrap(), "--steps", "2", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = run_dir(&o);
    assert!(dir.file_name().unwrap().to_string_lossy().starts_with("default-"));
    assert_eq!(summary(&dir)["model"], "hashgrid");
}

#[test]
fn bad_inputs_fail_with_one_clear_sentence() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let base = |name: &'static str| small_run("configs/image/ffn.toml", out, name, "2");

    // Missing image.
    let mut a = base("missing");
    a.extend(["--set", "task.path=assets/test/nope.png"]);
    assert_clean_error(&run(&a), &["nope.png", "does not exist"]);
    // Corrupt image: a truncated PNG.
    let bytes = std::fs::read(asset("test/coffee-64x48-rgb8.png")).unwrap();
    let broken = t.path().join("broken.png");
    std::fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();
    let spec = format!("task.path={}", broken.display());
    let mut a = base("corrupt");
    a.extend(["--set", &spec]);
    assert_clean_error(&run(&a), &["broken.png"]);
    // Unknown key, named with the file and the nearest valid key.
    let cfg = t.path().join("typo.toml");
    let text = std::fs::read_to_string(repo().join("configs/image/ffn.toml")).unwrap().replace("[train]", "[train]\nlearning_rat = 3");
    std::fs::write(&cfg, text.replace("../../assets", &repo().join("assets").display().to_string())).unwrap();
    let o = run(&["train", cfg.to_str().unwrap(), "--device", "cpu", "--out", out]);
    assert_clean_error(&o, &["typo.toml", "train.learning_rat"]);
    let o = run(&["train", "configs/image/ffn.toml", "--set", "model.sigam=3", "--device", "cpu", "--out", out]);
    assert_clean_error(&o, &["model.sigam", "model.sigma"]);
    // Wrong type and negative step counts.
    let o = run(&["train", "configs/image/ffn.toml", "--set", "train.lr=\"fast\"", "--device", "cpu", "--out", out]);
    assert_clean_error(&o, &["train.lr", "string"]);
    let o = run(&["train", "configs/image/ffn.toml", "--set", "train.steps=-3", "--device", "cpu", "--out", out]);
    assert_clean_error(&o, &["train.steps"]);
    let o = run(&["train", "configs/image/ffn.toml", "--steps", "-3", "--device", "cpu", "--out", out]);
    assert_clean_error(&o, &["-3"]);
    let o = run(&["train", "configs/image/ffn.toml", "--set", "task.holdout=1.5", "--device", "cpu", "--out", out]);
    assert_clean_error(&o, &["task.holdout"]);
    let mut a = base("one-pixel");
    a.extend(["--set", "task.crop=[1,1]", "--set", "task.holdout=0.1"]);
    assert_clean_error(&run(&a), &["task.holdout", "2 pixels"]);
    // Missing config file.
    let o = run(&["train", "configs/image/nope.toml", "--device", "cpu", "--out", out]);
    assert_clean_error(&o, &["nope.toml"]);
    // Nothing was created by any of the failures above.
    let made: Vec<_> = std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(made.iter().all(|n| n == "broken.png" || n == "typo.toml"), "failed runs left {made:?}");
}

#[test]
fn an_existing_run_directory_is_never_touched() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let o = run(&small_run("configs/image/ffn.toml", out, "taken", "2"));
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = t.path().join("taken");
    let before = std::fs::read(dir.join("checkpoint/checkpoint.safetensors")).unwrap();
    let o = run(&small_run("configs/image/siren.toml", out, "taken", "2"));
    assert_clean_error(&o, &["already exists", "--resume"]);
    assert_eq!(std::fs::read(dir.join("checkpoint/checkpoint.safetensors")).unwrap(), before);
    assert!(std::fs::read_to_string(dir.join("config.toml")).unwrap().contains("kind = \"ffn\""));

    // An output directory that cannot be created (its parent is a file).
    let file = t.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let bad_out = file.join("runs");
    let o = run(&small_run("configs/image/ffn.toml", bad_out.to_str().unwrap(), "x", "2"));
    assert_clean_error(&o, &["plain-file"]);
}

#[test]
fn a_diverging_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let mut a = small_run("configs/image/hashgrid.toml", out, "nan", "60");
    // A sane start (checkpoint at step 10), then a learning rate that overflows the weights.
    a.extend([
        "--set",
        "train.checkpoint_every=10",
        "--set",
        "train.log_every=5",
        "--set",
        "train.schedule=\"step\"",
        "--set",
        "train.milestones=[12]",
        "--set",
        "train.gamma=1e36",
    ]);
    let o = run(&a);
    assert_clean_error(&o, &["loss became", "last good checkpoint"]);
    let dir = run_dir(&o);
    let ckpt = std::fs::read(dir.join("checkpoint/checkpoint.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&ckpt).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&ckpt).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["step"], "10");
    for (name, view) in st.tensors() {
        let finite = view.data().chunks_exact(4).all(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite());
        assert!(finite, "{name} is not finite in the kept checkpoint");
    }
}

fn final_loss(dir: &std::path::Path) -> f64 {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let last = text.lines().rev().find(|l| l.contains("\"loss\"")).unwrap();
    serde_json::from_str::<serde_json::Value>(last).unwrap()["loss"].as_f64().unwrap()
}

/// Ctrl-C saves a checkpoint and exits; --resume then ends where an uninterrupted run ends.
#[test]
fn interrupted_and_resumed_run_matches_an_uninterrupted_one() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let steps = "400";
    // Random batches, so the resumed run must also replay the sampler.
    let extra = ["--set", "task.batch_size=512", "--set", "train.log_every=10"];
    let mut a = small_run("configs/image/hashgrid.toml", out, "straight", steps);
    a.extend(extra);
    let o = run(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    let reference = final_loss(&run_dir(&o));

    let mut a = small_run("configs/image/hashgrid.toml", out, "cut", steps);
    a.extend(extra);
    a.extend(["--set", "train.checkpoint_every=0"]);
    let child = nfield().args(&a).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let metrics = t.path().join("cut/metrics.jsonl");
    let start = Instant::now();
    while std::fs::read_to_string(&metrics).map(|s| s.lines().count()).unwrap_or(0) < 3 {
        assert!(start.elapsed() < Duration::from_secs(120), "training never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("--resume"), "{err}");
    let dir = t.path().join("cut");
    assert!(dir.join("checkpoint/checkpoint.safetensors").is_file());
    assert!(!dir.join("summary.json").exists());

    let o = run(&["train", "--resume", dir.to_str().unwrap(), "--device", "cpu", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&dir)["steps"], 400);
    let resumed = final_loss(&dir);
    assert!((resumed - reference).abs() <= 1e-3 * reference.abs(), "resumed {resumed} vs uninterrupted {reference}");
    // Each logged step appears once.
    let steps: Vec<u64> = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.contains("\"eval\""))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
}
