//! Image decoding and preprocessing that reproduces Hugging Face transformers'
//! slow (PIL-based) image processors, e.g. `CLIPImageProcessor`.
//!
//! * [`decode_image`] decodes PNG/JPEG/WebP/GIF/BMP bytes into an RGB8 image,
//!   compositing transparency over white exactly like transformers'
//!   `convert_to_rgb` (Pillow's `Image.alpha_composite`).
//! * [`resize_bicubic`] / [`resize_bilinear`] reproduce Pillow's
//!   `Image.resize` (fixed-point, two-pass) bit-for-bit.
//! * [`ImageProcessorConfig`] reads `preprocessor_config.json` and runs
//!   resize → center crop → rescale → normalize into CHW `f32` values.

pub mod anyres;
mod decode;
mod processor;
mod resize;

pub use decode::{
    convert_to_rgb, decode_image, DecodeLimits, ImageDecodeError, DEFAULT_MAX_PIXELS,
};
pub use processor::{
    center_crop, shortest_edge_output_size, CropSize, ImageProcessError, ImageProcessorConfig,
    PixelValues, ResizeSize, MAX_RESIZED_PIXELS, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PIL_BICUBIC,
    PIL_BILINEAR, PIL_NEAREST,
};
pub use resize::{resize_bicubic, resize_bilinear, resize_with, PillowCompat, ResampleFilter};

/// The decoded RGB8 image type every function here takes.
pub use ::image::RgbImage;
