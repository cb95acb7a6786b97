//! Showing a picture that lives in burn's wgpu memory without copying it to the host: the
//! picture tensor's storage buffer is bound to a small render pipeline (`shaders/picture.wgsl`)
//! that draws it over the view's rectangle in egui's own render pass. It works because the window
//! and burn share one wgpu device and queue (`viewer::run`).

use std::any::Any;
use std::sync::{Arc, Mutex};

use burn::tensor::{DType, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::cubecl::wgpu::{AutoCompiler, WgpuServer};
use eframe::egui;
use eframe::egui_wgpu::{self, CallbackResources, CallbackTrait, RenderState, ScreenDescriptor};
use eframe::wgpu;

const SHADER: &str = include_str!("../../shaders/picture.wgsl");

/// A picture in a wgpu buffer of burn's: `[H * W, 3]` f32 colours, rows top to bottom.
pub struct DevicePicture {
    pub width: usize,
    pub height: usize,
    memory: Arc<PictureMemory>,
}

/// Where a picture lies, and burn's hold on that memory: while it lives, the memory is neither
/// reused nor moved. The window and each paint callback that draws the picture share it.
struct PictureMemory {
    buffer: wgpu::Buffer,
    /// In bytes, from the buffer's start.
    offset: u64,
    _held: Mutex<Box<dyn Any + Send>>,
}

/// The picture `rgb` (`[H * W, 3]` on a wgpu device) as the buffer burn keeps it in, with every
/// kernel that writes it submitted to the shared queue; why not, when it cannot be (another
/// backend, a non-f32 tensor).
pub fn device_picture(rgb: Tensor<2>, width: usize, height: usize) -> Result<DevicePicture, String> {
    let fused = rgb.try_into_primitive::<burn_cubecl::Cube>().map_err(|e| format!("not a CubeCL tensor: {e:?}"))?;
    let client = fused.client.clone();
    let tensor = burn_cubecl::kernel::into_contiguous(client.resolve_tensor_float::<CubeBackend>(fused));
    if tensor.dtype != DType::F32 {
        return Err(format!("the picture is {:?}, not f32", tensor.dtype));
    }
    if tensor.meta.shape().as_slice() != [width * height, 3] {
        return Err(format!("the picture's shape is {:?}, not [{}, 3]", tensor.meta.shape(), width * height));
    }
    let managed = tensor.client.get_resource::<WgpuServer<AutoCompiler>>(tensor.handle.clone()).map_err(|e| format!("not a wgpu buffer: {e}"))?;
    // `get_resource` only records the work that writes the buffer; submit it before the window's
    // frame, on the stream that recorded it.
    tensor.handle.stream.executes(|| tensor.client.flush()).map_err(|e| format!("{e}"))?;
    let (buffer, offset) = (managed.resource().buffer.clone(), managed.resource().offset);
    let memory = PictureMemory { buffer, offset, _held: Mutex::new(Box::new((managed, tensor))) };
    Ok(DevicePicture { width, height, memory: Arc::new(memory) })
}

/// The pipeline, made once per window.
struct PicturePipeline {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    srgb_target: bool,
}

/// Make the picture pipeline for the window's framebuffer format (eframe's, which has neither
/// multisampling nor a depth buffer).
pub fn install(render_state: &RenderState) {
    let device = &render_state.device;
    let module =
        device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("nfield picture"), source: wgpu::ShaderSource::Wgsl(SHADER.into()) });
    let entry = |binding, ty| wgpu::BindGroupLayoutEntry { binding, visibility: wgpu::ShaderStages::FRAGMENT, ty, count: None };
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("nfield picture"),
        entries: &[
            entry(
                0,
                wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: true },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
            ),
            entry(1, wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: false, min_binding_size: None }),
        ],
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some("nfield picture"),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some("nfield picture"),
        layout: Some(&pipeline_layout),
        vertex: wgpu::VertexState { module: &module, entry_point: Some("vs_main"), buffers: &[], compilation_options: Default::default() },
        primitive: wgpu::PrimitiveState::default(),
        depth_stencil: None,
        multisample: wgpu::MultisampleState::default(),
        fragment: Some(wgpu::FragmentState {
            module: &module,
            entry_point: Some("fs_main"),
            targets: &[Some(render_state.target_format.into())],
            compilation_options: Default::default(),
        }),
        multiview_mask: None,
        cache: None,
    });
    let srgb_target = render_state.target_format.is_srgb();
    render_state.renderer.write().callback_resources.insert(PicturePipeline { pipeline, layout, srgb_target });
}

/// Draws a `DevicePicture` over a paint callback's rectangle.
pub struct PictureCallback {
    memory: Arc<PictureMemory>,
    width: u32,
    height: u32,
}

/// The bind group of the frame being drawn.
struct PreparedPicture(wgpu::BindGroup);

impl CallbackTrait for PictureCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        _screen: &ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        let Some(pipeline) = resources.get::<PicturePipeline>() else { return Vec::new() };
        let uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("nfield picture size"),
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // Storage binds at multiples of the device's alignment; the picture may start between
        // two, so the binding starts at the one before and the shader skips the floats between.
        let offset = self.memory.offset;
        let start = offset - offset % u64::from(device.limits().min_storage_buffer_offset_alignment).max(4);
        let bytes = (offset - start) + u64::from(self.width) * u64::from(self.height) * 12;
        let words = [self.width, self.height, pipeline.srgb_target as u32, ((offset - start) / 4) as u32];
        let words: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        queue.write_buffer(&uniform, 0, &words);
        let colours = wgpu::BufferBinding { buffer: &self.memory.buffer, offset: start, size: wgpu::BufferSize::new(bytes) };
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("nfield picture"),
            layout: &pipeline.layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::Buffer(colours) },
                wgpu::BindGroupEntry { binding: 1, resource: uniform.as_entire_binding() },
            ],
        });
        resources.insert(PreparedPicture(group));
        Vec::new()
    }

    fn paint(&self, _info: egui::PaintCallbackInfo, pass: &mut wgpu::RenderPass<'static>, resources: &CallbackResources) {
        let (Some(pipeline), Some(PreparedPicture(group))) = (resources.get::<PicturePipeline>(), resources.get::<PreparedPicture>()) else { return };
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, group, &[]);
        pass.draw(0..3, 0..1);
    }
}

/// The paint callback that draws `picture` over `rect`.
pub fn paint(rect: egui::Rect, picture: &DevicePicture) -> egui::PaintCallback {
    let callback = PictureCallback { memory: picture.memory.clone(), width: picture.width as u32, height: picture.height as u32 };
    egui_wgpu::Callback::new_paint_callback(rect, callback)
}
