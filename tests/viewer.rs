//! The viewer window on a display (Xvfb and lavapipe in CI): a screenshot of an image run shows
//! its reconstruction pixel for pixel, a screenshot of an SDF run shows the object; no display,
//! or a folder that is not a run, is one clear sentence.

mod common;

use common::*;

/// Whether a window can open here (CI must have one: `.ci/run` starts Xvfb).
fn display() -> bool {
    let set = |v: &str| std::env::var_os(v).is_some_and(|s| !s.is_empty());
    let there = set("DISPLAY") || set("WAYLAND_DISPLAY");
    if !there {
        assert!(std::env::var("CI").is_err(), "CI runs the viewer tests under Xvfb");
        eprintln!("skipping: no display (run under xvfb-run)");
    }
    there
}

#[test]
fn without_a_display_the_viewer_says_how_to_run_headless() {
    let t = tmp();
    let o = nfield().args(["view", t.path().to_str().unwrap()]).env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY").output().unwrap();
    assert_clean_error(&o, &["no display", "xvfb-run"]);
    let o = nfield()
        .args(["train", "configs/image/hashgrid.toml", "--viewer", "--out", t.path().to_str().unwrap()])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    assert_clean_error(&o, &["no display"]);
    assert!(std::fs::read_dir(t.path()).unwrap().next().is_none(), "nothing was started");
}

/// The best match of `small` (RGB) inside `big` (RGBA): PSNR in dB over the small picture.
fn best_match(big: &image::RgbaImage, small: &image::RgbImage) -> f64 {
    let (bw, bh, sw, sh) = (big.width(), big.height(), small.width(), small.height());
    let mut best = f64::INFINITY;
    for oy in 0..=bh.saturating_sub(sh) {
        for ox in 0..=bw.saturating_sub(sw) {
            let mut se = 0.0f64;
            'pixels: for y in 0..sh {
                for x in 0..sw {
                    let (a, b) = (big.get_pixel(ox + x, oy + y), small.get_pixel(x, y));
                    se += (0..3).map(|c| (a[c] as f64 - b[c] as f64).powi(2)).sum::<f64>();
                    if se >= best {
                        break 'pixels;
                    }
                }
            }
            best = best.min(se);
        }
    }
    let mse = best / (sw * sh * 3) as f64 / (255.0 * 255.0);
    -10.0 * mse.max(1e-12).log10()
}

/// Whether a `nfield view --device wgpu` run found no adapter (skipped outside CI).
fn no_wgpu_adapter(o: &std::process::Output) -> bool {
    let missing = !o.status.success() && stderr(o).contains("no wgpu adapter");
    assert!(!missing || std::env::var("CI").is_err(), "CI has lavapipe: {}", stderr(o));
    if missing {
        eprintln!("skipping the wgpu half: no adapter here (apt-get install mesa-vulkan-drivers)");
    }
    missing
}

/// The right-hand `w x h` of an SDF screenshot shows the object: not blank, not one colour (the
/// sphere tracer's background is white).
fn assert_shows_an_object(shot: &std::path::Path, w: u32, h: u32) {
    let screenshot = image::open(shot).unwrap().to_rgba8();
    let (width, height) = screenshot.dimensions();
    let picture: Vec<[u8; 4]> =
        (0..h).flat_map(|y| (width - w..width).map(move |x| (x, y))).map(|(x, y)| screenshot.get_pixel(x, y.min(height - 1)).0).collect();
    let object = picture.iter().filter(|p| p[..3].iter().any(|&c| c < 240)).count();
    assert!(object > picture.len() / 50 && object < picture.len() * 9 / 10, "{}: {object} of {} pixels show the knot", shot.display(), picture.len());
    let distinct: std::collections::HashSet<[u8; 4]> = picture.iter().copied().collect();
    assert!(distinct.len() > 20, "{}: a flat picture, {} colours", shot.display(), distinct.len());
}

#[test]
fn screenshots_show_what_the_runs_learned() {
    if !display() {
        return;
    }
    let t = tmp();
    let out = t.path().to_str().unwrap();
    // An image run: the window shows the field at one pixel per pixel, as reconstruction.png, on
    // the CPU through the host and on wgpu straight from burn's buffer.
    let o = run(&small_run("configs/image/hashgrid.toml", out, "image", "200"));
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = run_dir(&o);
    let reconstruction = image::open(dir.join("reconstruction.png")).unwrap().to_rgb8();
    for device in ["cpu", "wgpu"] {
        let shot = t.path().join(format!("image-{device}.png"));
        let v = run(&["view", dir.to_str().unwrap(), "--screenshot", shot.to_str().unwrap(), "--frames", "2", "--size", "64x48", "--device", device]);
        if device == "wgpu" && no_wgpu_adapter(&v) {
            break;
        }
        assert!(v.status.success(), "{}", stderr(&v));
        let drawn = if device == "wgpu" { "2 drawn from burn's wgpu buffers" } else { "0 drawn from burn's wgpu buffers" };
        assert!(stdout(&v).contains("pictures of 64x48") && stdout(&v).contains(drawn), "{}", stdout(&v));
        let psnr = best_match(&image::open(&shot).unwrap().to_rgba8(), &reconstruction);
        assert!(psnr > 35.0, "{device}: the screenshot does not show reconstruction.png ({psnr:.1} dB)");
    }

    // An SDF run: the object in the picture, sphere traced on the device either way.
    let o = run(&small_sdf_run("configs/sdf/default.toml", out, "sdf", "150"));
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = run_dir(&o);
    for (device, size, frames) in [("cpu", "120x90", "3"), ("wgpu", "64x48", "1")] {
        let shot = t.path().join(format!("sdf-{device}.png"));
        let v = run(&["view", dir.to_str().unwrap(), "--screenshot", shot.to_str().unwrap(), "--frames", frames, "--size", size, "--device", device]);
        if device == "wgpu" && no_wgpu_adapter(&v) {
            break;
        }
        assert!(v.status.success(), "{}", stderr(&v));
        let (w, h) = size.split_once('x').map(|(w, h)| (w.parse().unwrap(), h.parse().unwrap())).unwrap();
        assert_shows_an_object(&shot, w, h);
    }

    // Not a run.
    assert_clean_error(&run(&["view", out, "--device", "cpu"]), &["is not a run directory"]);
}

#[test]
fn training_in_the_window_stops_at_a_checkpoint_and_resumes() {
    if !display() {
        return;
    }
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let mut args = small_run("configs/image/hashgrid.toml", out, "live", "100000");
    args.extend(["--viewer", "--set", "train.log_every=10"]);
    let mut child = nfield().args(&args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Wait until it trains (a logged step), then Ctrl-C: the window closes, the run checkpoints.
    let metrics = t.path().join("live").join("metrics.jsonl");
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(true, |m| m.is_empty()) {
        assert!(start.elapsed().as_secs() < 120, "training with the window open logged nothing in 2 minutes");
        assert!(child.try_wait().unwrap().is_none(), "nfield train --viewer ended early");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let killed = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("checkpoint saved"), "{}", stderr(&o));
    let dir = t.path().join("live");
    assert!(dir.join("checkpoint").join("checkpoint.safetensors").exists());
    // It resumes (headless) from that step and finishes 20 steps later.
    let err = stderr(&o);
    let step: u64 =
        err.split("interrupted at step ").nth(1).and_then(|s| s.split(';').next()).and_then(|s| s.parse().ok()).expect("the step it stopped at");
    let more = (step + 20).to_string();
    let r = run(&["train", "--resume", dir.to_str().unwrap(), "--steps", &more, "--quiet"]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(summary(&dir)["steps"].as_u64(), Some(step + 20));
}
