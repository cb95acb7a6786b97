//! Image loading and writing on real files, broken files, and the metrics against scikit-image.

mod common;

use common::*;
use nfield::data::image::{Image, SampleFormat, save};
use nfield::metrics::{psnr, ssim};

#[test]
fn every_supported_format_loads_with_its_channels() {
    let cases = [
        ("test/coffee-64x48-rgb8.png", 3, SampleFormat::U8),
        ("test/coffee-64x48-grey8.png", 1, SampleFormat::U8),
        ("test/coffee-64x48-rgba8.png", 4, SampleFormat::U8),
        ("test/coffee-64x48-grey16.png", 1, SampleFormat::U16),
        ("test/coffee-64x48.jpg", 3, SampleFormat::U8),
    ];
    for (file, channels, format) in cases {
        let img = Image::load(&asset(file)).unwrap();
        assert_eq!((img.width, img.height, img.channels, img.format), (64, 48, channels, format), "{file}");
        assert_eq!(img.pixels.len(), 64 * 48 * channels);
        assert!(img.pixels.iter().all(|v| (0.0..=1.0).contains(v)), "{file}");
    }
    // 16-bit values keep their precision: the file stores grey * 257 + 3.
    let g8 = Image::load(&asset("test/coffee-64x48-grey8.png")).unwrap();
    let g16 = Image::load(&asset("test/coffee-64x48-grey16.png")).unwrap();
    for (a, b) in g8.pixels.iter().zip(&g16.pixels) {
        assert!((b - a - 3.0 / 65535.0).abs() < 1e-6);
    }
    // Alpha is a real channel: the RGBA file's alpha is a vertical gradient.
    let rgba = Image::load(&asset("test/coffee-64x48-rgba8.png")).unwrap();
    assert!(rgba.pixels[3] < 0.1 && rgba.pixels[rgba.pixels.len() - 1] > 0.9);
}

#[test]
fn centre_crop_and_portrait_images() {
    let img = Image::load(&asset("coffee.png")).unwrap();
    assert_eq!((img.width, img.height), (600, 400));
    let crop = img.center_crop(256, 256).unwrap();
    assert_eq!(crop.pixels.len(), 256 * 256 * 3);
    // Top-left of the crop is pixel (172, 72) of the original.
    let at = |im: &Image, x: usize, y: usize| im.pixels[(y * im.width + x) * 3];
    assert_eq!(at(&crop, 0, 0), at(&img, 172, 72));
    assert!(img.center_crop(601, 10).unwrap_err().to_string().contains("larger than"));

    let portrait = Image::load(&asset("test/coffee-48x64-portrait.png")).unwrap();
    assert_eq!((portrait.width, portrait.height), (48, 64));
    let c = portrait.center_crop(32, 60).unwrap();
    assert_eq!((c.width, c.height), (32, 60));
    if let Some(kodak) = shared_data("images/kodak/kodim04.png") {
        let k = Image::load(&kodak).unwrap();
        assert_eq!((k.width, k.height, k.channels), (512, 768, 3));
    }
}

#[test]
fn exr_loads_as_linear_float_and_round_trips() {
    let t = tempfile::tempdir().unwrap();
    // Values above 1 survive (linear HDR); the writer adds an sRGB PNG preview.
    let pixels: Vec<f32> = (0..8 * 4 * 3).map(|i| i as f32 / 20.0).collect();
    let written = save(&t.path().join("hdr"), 8, 4, 3, &pixels, SampleFormat::F32).unwrap();
    assert_eq!(written.len(), 2);
    let back = Image::load(&t.path().join("hdr.exr")).unwrap();
    assert_eq!((back.width, back.height, back.channels, back.format), (8, 4, 3, SampleFormat::F32));
    assert_eq!(back.pixels, pixels);
    assert!(t.path().join("hdr.png").is_file());
    if let Some(albert) = shared_data("instant-ngp/image/albert.exr") {
        let a = Image::load(&albert).unwrap();
        assert_eq!((a.width, a.height, a.channels, a.format), (1024, 1024, 3, SampleFormat::F32));
        let max = a.pixels.iter().cloned().fold(0.0f32, f32::max);
        assert!(max <= 1.0 && max > 0.9, "max {max}");
    }
}

#[test]
fn png_writer_round_trips_8_and_16_bit() {
    let t = tempfile::tempdir().unwrap();
    for (name, format) in [("g16", SampleFormat::U16), ("rgba8", SampleFormat::U8)] {
        let src =
            Image::load(&asset(if format == SampleFormat::U16 { "test/coffee-64x48-grey16.png" } else { "test/coffee-64x48-rgba8.png" })).unwrap();
        save(&t.path().join(name), 64, 48, src.channels, &src.pixels, format).unwrap();
        let back = Image::load(&t.path().join(name).with_extension("png")).unwrap();
        assert_eq!(back.pixels, src.pixels, "{name}");
        assert_eq!(back.format, format);
    }
}

#[test]
fn broken_files_give_errors_that_name_them() {
    let t = tempfile::tempdir().unwrap();
    let real = std::fs::read(asset("test/coffee-64x48-rgb8.png")).unwrap();
    let cases: [(&str, Vec<u8>); 4] = [
        ("truncated.png", real[..real.len() / 2].to_vec()),
        ("empty.png", vec![]),
        ("text.png", b"this is not an image".to_vec()),
        ("header-only.jpg", vec![0xff, 0xd8, 0xff, 0xe0, 0, 16]),
    ];
    for (name, bytes) in cases {
        let p = t.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let err = Image::load(&p).unwrap_err().to_string();
        assert!(err.contains(name), "{name}: {err}");
    }
    assert!(Image::load(&t.path().join("absent.png")).unwrap_err().to_string().contains("does not exist"));
}

/// Reference values from scikit-image 0.26, on the RGB test asset `a` and
/// `b = clip(0.8 a + 0.1 + 0.05 sin(0.7 x) cos(0.3 y), 0, 1)` computed in float32:
/// `structural_similarity(b, a, gaussian_weights=True, sigma=1.5, data_range=1, channel_axis=2)`
/// = 0.7298987151828055 and `peak_signal_noise_ratio(a, b, data_range=1)` = 24.317914936505396.
#[test]
fn psnr_and_ssim_match_scikit_image() {
    let a = Image::load(&asset("test/coffee-64x48-rgb8.png")).unwrap();
    let mut b = a.pixels.clone();
    for y in 0..48 {
        for x in 0..64 {
            let wave = 0.05f32 * ((x as f32 * 0.7).sin() * (y as f32 * 0.3).cos());
            for c in 0..3 {
                let i = (y * 64 + x) * 3 + c;
                b[i] = (a.pixels[i] * 0.8 + 0.1 + wave).clamp(0.0, 1.0);
            }
        }
    }
    let s = ssim(&b, &a.pixels, 64, 48, 3);
    assert!((s - 0.7298987151828055).abs() < 1e-5, "ssim {s}");
    let p = psnr(&b, &a.pixels);
    assert!((p - 24.317914936505396).abs() < 1e-4, "psnr {p}");
}

/// The viewer's pictures of an image run, made on the device: at one view pixel per image pixel
/// the field is `render_image` and the target is the image; the error map is black where they
/// agree and red to yellow where they do not; "field | target" puts the two side by side; outside
/// the image is dark grey. Grey images show their channel in all three colours.
#[test]
fn viewer_pictures_show_the_field_the_target_and_their_error() {
    use nfield::config::Config;
    use nfield::fields::Field;
    use nfield::profile::read_floats;
    use nfield::tasks::ViewRequest;

    let device = burn::tensor::Device::flex();
    for file in ["test/coffee-64x48-rgb8.png", "test/coffee-64x48-grey8.png"] {
        let sets = [format!("task.path={}", asset(file).display()), "task.crop=[64,48]".to_string()];
        let mut config = Config::load(&repo().join("configs/image/hashgrid.toml"), &sets).unwrap();
        config.resolve();
        let task = config.task.build(&config, &device).unwrap();
        let field = Field::new(&config.model, &task.field_spec(), 3, &device).unwrap();
        let image = Image::load(&asset(file)).unwrap();
        let c = image.channels;
        let view = |mode: usize, width: usize, height: usize, span: f32| {
            let request = ViewRequest { width, height, mode, centre: [0.5, 0.5], span, camera: None };
            let picture = task.view(&field, &request, &device).unwrap();
            assert_eq!((picture.width, picture.height), (width, height), "{file} mode {mode}");
            read_floats(picture.rgb)
        };
        let rgb = |values: &[f32], i: usize| -> [f32; 3] { if c < 3 { [values[i * c]; 3] } else { [0, 1, 2].map(|k| values[i * c + k]) } };
        let field_values = nfield::render::render_image(&field, 64, 48, 4096, &device);
        let (shown, target, error) = (view(0, 64, 48, 1.0), view(1, 64, 48, 1.0), view(2, 64, 48, 1.0));
        for i in 0..64 * 48 {
            let (f, t) = (rgb(&field_values, i), rgb(&image.pixels, i));
            for k in 0..3 {
                assert!((shown[3 * i + k] - f[k].clamp(0.0, 1.0)).abs() < 1e-5, "{file}: field pixel {i}");
                assert_eq!(target[3 * i + k], t[k], "{file}: target pixel {i}");
            }
            let e = ((0..c).map(|k| (field_values[i * c + k] - image.pixels[i * c + k]).abs()).sum::<f32>() / c as f32 * 5.0).clamp(0.0, 1.0);
            let heat = [(2.0 * e).min(1.0), (2.0 * e - 1.0).max(0.0), 0.0];
            assert!((0..3).all(|k| (error[3 * i + k] - heat[k]).abs() < 1e-4), "{file}: error pixel {i}");
        }
        // Side by side: the left half is the field, the right half the target, at half the width.
        let both = view(3, 128, 48, 1.0);
        for y in 0..48 {
            assert_eq!(&both[3 * (y * 128)..3 * (y * 128 + 64)], &shown[3 * y * 64..3 * (y + 1) * 64], "{file}: row {y} left");
            assert_eq!(&both[3 * (y * 128 + 64)..3 * (y * 128 + 128)], &target[3 * y * 64..3 * (y + 1) * 64], "{file}: row {y} right");
        }
        // Zoomed out to twice the image: a dark grey frame around the image.
        let out = view(1, 64, 48, 2.0);
        assert!(out[..3].iter().chain(&out[out.len() - 3..]).all(|&v| v == 0.15), "{file}: corners");
        let middle = 3 * (24 * 64 + 32);
        assert_ne!(out[middle..middle + 3], [0.15; 3], "{file}: centre");
    }
}
