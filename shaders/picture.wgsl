// The viewer's picture, read straight from burn's storage buffer: `[H * W, 3]` f32 colours in
// [0, 1], rows top to bottom, from float `first` of the binding on, stretched over the viewport
// (the paint callback's rectangle) with nearest-pixel sampling.

struct Picture {
    width: u32,
    height: u32,
    // 1 when the window's framebuffer encodes sRGB itself: the colours are decoded first.
    srgb_target: u32,
    // Where the picture starts in the binding, in floats (bindings start at aligned offsets).
    first: u32,
};

@group(0) @binding(0) var<storage, read> colours: array<f32>;
@group(0) @binding(1) var<uniform> picture: Picture;

struct VertexOut {
    @builtin(position) position: vec4<f32>,
    // (0, 0) at the viewport's top left, (1, 1) at its bottom right.
    @location(0) uv: vec2<f32>,
};

// One triangle that covers the viewport: corners (-1, -1), (3, -1), (-1, 3) in clip space.
@vertex
fn vs_main(@builtin(vertex_index) index: u32) -> VertexOut {
    let corner = vec2<f32>(f32((index << 1u) & 2u), f32(index & 2u));
    var out: VertexOut;
    out.position = vec4<f32>(corner * 2.0 - 1.0, 0.0, 1.0);
    out.uv = vec2<f32>(corner.x, 1.0 - corner.y);
    return out;
}

fn srgb_to_linear(c: vec3<f32>) -> vec3<f32> {
    let low = c / 12.92;
    let high = pow((c + 0.055) / 1.055, vec3<f32>(2.4));
    return select(high, low, c <= vec3<f32>(0.04045));
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    let size = vec2<f32>(f32(picture.width), f32(picture.height));
    let pixel = min(vec2<u32>(max(in.uv * size, vec2<f32>(0.0))), vec2<u32>(picture.width - 1u, picture.height - 1u));
    let i = picture.first + 3u * (pixel.y * picture.width + pixel.x);
    let raw = vec3<f32>(colours[i], colours[i + 1u], colours[i + 2u]);
    // No number (NaN) shows black, as on the host path.
    var rgb = clamp(select(vec3<f32>(0.0), raw, raw == raw), vec3<f32>(0.0), vec3<f32>(1.0));
    if picture.srgb_target != 0u {
        rgb = srgb_to_linear(rgb);
    }
    return vec4<f32>(rgb, 1.0);
}
