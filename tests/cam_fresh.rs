//! CAM and FreSh through the command line, on the CPU device.

mod common;

use common::*;

/// A 64x64 RGB PNG of `f(x, y)` (x, y in pixels), written to `path`.
fn write_png(path: &std::path::Path, f: impl Fn(f64, f64) -> f64) {
    let img = image::RgbImage::from_fn(64, 64, |x, y| {
        let v = (f(x as f64, y as f64).clamp(0.0, 1.0) * 255.0).round() as u8;
        image::Rgb([v, v / 2 + 60, 255 - v])
    });
    img.save(path).unwrap();
}

/// `nfield fresh` on a small FFN; returns the chosen sigma and the whole stdout.
fn fresh_sigma(target: &std::path::Path) -> (f64, String) {
    let path = format!("task.path={}", target.display());
    let o = run(&[
        "fresh",
        "configs/image/ffn_fresh.toml",
        "--device",
        "cpu",
        "--set",
        &path,
        "--set",
        "task.crop=[64,64]",
        "--set",
        "model.width=64",
        "--set",
        "model.frequencies=64",
        "--set",
        "fresh.candidates=[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]",
        "--set",
        "fresh.inits=4",
        "--set",
        "fresh.bins=24",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let line = out.lines().find(|l| l.starts_with("chosen: model.sigma = ")).unwrap_or_else(|| panic!("no choice in: {out}"));
    let value = line.trim_start_matches("chosen: model.sigma = ").split_whitespace().next().unwrap();
    (value.parse().unwrap(), out)
}

#[test]
fn fresh_picks_a_larger_sigma_for_a_high_frequency_target() {
    let t = tmp();
    let smooth = t.path().join("smooth.png");
    let busy = t.path().join("busy.png");
    let tau = std::f64::consts::TAU;
    write_png(&smooth, |x, y| 0.5 + 0.3 * (tau * x / 64.0).sin() * (tau * y / 128.0).cos());
    write_png(&busy, |x, y| 0.5 + 0.4 * (tau * 13.0 * x / 64.0).sin() * (tau * 11.0 * y / 64.0).sin());
    let (low, table) = fresh_sigma(&smooth);
    let (high, _) = fresh_sigma(&busy);
    assert!(high > low, "sigma for the busy target {high} should exceed the smooth target's {low}\n{table}");
    // The table lists every candidate with its distance and marks the choice.
    assert_eq!(table.lines().filter(|l| l.contains("<- chosen")).count(), 1, "{table}");
    assert!(table.contains("64.0"), "{table}");
}

/// `[fresh]` in a config runs before training: the choice lands in the run's config.toml (with
/// `fresh.chosen`, so the run's config does not search again), fresh.json and summary.json.
#[test]
fn fresh_in_a_config_writes_its_choice_into_the_run() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let mut args = small_run("configs/image/siren_fresh.toml", out, "sf", "3");
    args.extend(["--set", "fresh.candidates=[5.0, 60.0]", "--set", "fresh.inits=2"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = run_dir(&o);
    let s = summary(&dir);
    assert_eq!(s["fresh_param"], "model.omega0");
    let choice = s["fresh_choice"].as_f64().unwrap();
    assert!(choice == 5.0 || choice == 60.0, "{choice}");
    assert!(s["fresh_seconds"].as_f64().unwrap() > 0.0);
    let resolved: toml::Table = toml::from_str(&std::fs::read_to_string(dir.join("config.toml")).unwrap()).unwrap();
    assert_eq!(resolved["model"]["omega0"].as_float(), Some(choice));
    assert_eq!(resolved["fresh"]["chosen"].as_float(), Some(choice));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("fresh.json")).unwrap()).unwrap();
    assert_eq!(report["candidates"].as_array().unwrap().len(), 2);

    // Training again from the run's own config takes the stored choice without searching.
    let config = dir.join("config.toml");
    let o = run(&small_run(config.to_str().unwrap(), out, "again", "2"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("fresh: model.omega0"), "searched again: {}", stderr(&o));
    assert!(!run_dir(&o).join("fresh.json").exists());

    // A parameter the model does not have is one clear error.
    let mut bad = small_run("configs/image/siren_fresh.toml", out, "bad", "2");
    bad.extend(["--set", "fresh.parameter=model.sigma"]);
    assert_clean_error(&run(&bad), &["fresh.parameter", "model.sigma", "siren"]);
    let mut bad = small_run("configs/image/siren_fresh.toml", out, "bad2", "2");
    bad.extend(["--set", "fresh.candidates=[\"fast\"]"]);
    assert_clean_error(&run(&bad), &["fresh.candidates[0]", "model.omega0"]);
}

/// A small FFN (64 wide, 32 frequencies) is stuck far from the photo after 300 steps; CAM's 8x8
/// scale and shift grids on its hidden layers lift it by far more than their 384 parameters
/// could hold on their own. The checkpoint brings the grids back for `eval`.
#[test]
fn cam_lifts_a_small_fourier_feature_network() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let small = ["--set", "model.width=64", "--set", "model.frequencies=32", "--set", "train.milestones=[150,225]"];
    let mut psnr = Vec::new();
    for (config, name) in [("configs/image/ffn.toml", "plain"), ("configs/image/ffn_cam.toml", "cam")] {
        let mut args = small_run(config, out, name, "300");
        args.extend(small);
        args.extend(["--set", "model.cam.grid=[8,8]"].iter().filter(|_| name == "cam"));
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let s = summary(&run_dir(&o));
        psnr.push(s["psnr"].as_f64().unwrap());
        if name == "cam" {
            assert_eq!(s["model"], "ffn+cam");
            assert_eq!(s["params"].as_u64().unwrap() - 12675, 8 * 8 * 2 * 3, "one scale and one shift grid per hidden layer");
            let resolved = std::fs::read_to_string(run_dir(&o).join("config.toml")).unwrap();
            assert!(resolved.contains("cam_lr = 0.01"), "grids at 10x the network's rate: {resolved}");
            let e = run(&["eval", run_dir(&o).to_str().unwrap(), "--device", "cpu"]);
            assert!(e.status.success(), "{}", stderr(&e));
            let again = summary(&run_dir(&o))["psnr"].as_f64().unwrap();
            assert!((again - psnr[1]).abs() < 1e-3, "eval {again} vs training {}", psnr[1]);
        }
    }
    let (plain, cam) = (psnr[0], psnr[1]);
    assert!(cam > 29.0, "FFN + CAM reached only {cam:.2} dB");
    assert!(cam > plain + 5.0, "CAM {cam:.2} dB vs plain {plain:.2} dB");
}

#[test]
fn bad_cam_settings_are_one_clear_error() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    for (set, needles) in [
        ("model.cam.norm=rays", &["model.cam.norm", "did you mean \"ray\""][..]),
        ("model.cam.norm=ray", &["model.cam.norm", "needs a task with rays"][..]),
        ("model.cam.layers=[7]", &["model.cam.layers", "layer 7 does not exist"][..]),
        ("model.cam.grid=[32]", &["model.cam.grid", "1 axes", "2-D pixel position"][..]),
        ("model.cam.gird=[8,8]", &["model.cam.gird", "model.cam.grid"][..]),
    ] {
        let mut args = small_run("configs/image/ffn_cam.toml", out, "bad", "2");
        args.extend(["--set", set]);
        assert_clean_error(&run(&args), needles);
        assert!(!t.path().join("bad").exists(), "{set}: a failed start left a run directory");
    }
}
