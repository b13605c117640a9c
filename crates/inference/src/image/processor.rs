//! A port of transformers' slow (PIL/NumPy) `CLIPImageProcessor` pipeline:
//! resize → center crop → rescale → normalize, producing CHW `f32` values.

use ::image::{Rgb, RgbImage};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::resize::{resize_with, PillowCompat, ResampleFilter};

/// OpenAI CLIP channel means (transformers' `OPENAI_CLIP_MEAN`).
pub const OPENAI_CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// OpenAI CLIP channel standard deviations (transformers' `OPENAI_CLIP_STD`).
pub const OPENAI_CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// PIL resampling code for `Image.NEAREST`.
pub const PIL_NEAREST: i64 = 0;
/// PIL resampling code for `Image.BILINEAR`.
pub const PIL_BILINEAR: i64 = 2;
/// PIL resampling code for `Image.BICUBIC`.
pub const PIL_BICUBIC: i64 = 3;

/// Upper bound on the pixel count of the resized image. Extreme aspect ratios
/// with `shortest_edge` resizing could otherwise request gigapixel outputs.
pub const MAX_RESIZED_PIXELS: u64 = 64 * 1024 * 1024;

/// Errors produced by [`ImageProcessorConfig::preprocess`].
#[derive(Debug, thiserror::Error)]
pub enum ImageProcessError {
    /// The input image has no pixels.
    #[error("cannot preprocess an empty image ({width}x{height})")]
    EmptyImage {
        /// Input width.
        width: u32,
        /// Input height.
        height: u32,
    },
    /// The configured `resample` code is not bilinear (2) or bicubic (3).
    #[error("unsupported resample filter code {0} (supported: 2 = bilinear, 3 = bicubic)")]
    UnsupportedResample(i64),
    /// A configured size is unusable (zero, or too large).
    #[error("invalid size: {0}")]
    InvalidSize(String),
    /// `image_mean` / `image_std` do not match the 3 RGB channels.
    #[error("invalid normalization parameters: {0}")]
    InvalidNormalization(String),
}

/// Target size of the resize step (`size` in `preprocessor_config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeSize {
    /// `{"shortest_edge": N}` (or a bare int): scale so the short side is `N`,
    /// keeping the aspect ratio.
    ShortestEdge(u32),
    /// `{"height": H, "width": W}` (or `[H, W]`): resize to exactly this size.
    Exact {
        /// Output height.
        height: u32,
        /// Output width.
        width: u32,
    },
}

impl<'de> Deserialize<'de> for ResizeSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        // A bare int means shortest edge for CLIP (`default_to_square=False`).
        if let Some(n) = value.as_u64() {
            return Ok(Self::ShortestEdge(to_u32::<D::Error>(n, "size")?));
        }
        if let Some((height, width)) = height_width(&value)? {
            return Ok(Self::Exact { height, width });
        }
        if let Some(obj) = value.as_object() {
            let shortest = obj.get("shortest_edge").filter(|v| !v.is_null());
            let longest = obj.get("longest_edge").filter(|v| !v.is_null());
            if let (Some(s), None) = (shortest, longest) {
                let n = s
                    .as_u64()
                    .ok_or_else(|| D::Error::custom("size.shortest_edge must be an integer"))?;
                return Ok(Self::ShortestEdge(to_u32::<D::Error>(
                    n,
                    "size.shortest_edge",
                )?));
            }
        }
        Err(D::Error::custom(format!(
            "unsupported `size` {value}: expected {{\"shortest_edge\": N}} or {{\"height\": H, \"width\": W}}"
        )))
    }
}

/// Output size of the center crop (`crop_size` in `preprocessor_config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropSize {
    /// Crop height.
    pub height: u32,
    /// Crop width.
    pub width: u32,
}

impl<'de> Deserialize<'de> for CropSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        // A bare int means a square crop (`default_to_square=True`).
        if let Some(n) = value.as_u64() {
            let n = to_u32::<D::Error>(n, "crop_size")?;
            return Ok(Self {
                height: n,
                width: n,
            });
        }
        if let Some((height, width)) = height_width(&value)? {
            return Ok(Self { height, width });
        }
        Err(D::Error::custom(format!(
            "unsupported `crop_size` {value}: expected {{\"height\": H, \"width\": W}} or an int"
        )))
    }
}

fn to_u32<E: serde::de::Error>(n: u64, what: &str) -> Result<u32, E> {
    u32::try_from(n).map_err(|_| E::custom(format!("{what} is too large: {n}")))
}

/// Parses `{"height": H, "width": W}` or `[H, W]`.
fn height_width<E: serde::de::Error>(value: &Value) -> Result<Option<(u32, u32)>, E> {
    let (h, w) = match value {
        Value::Object(obj) => match (obj.get("height"), obj.get("width")) {
            (Some(h), Some(w)) if !h.is_null() && !w.is_null() => (h, w),
            _ => return Ok(None),
        },
        Value::Array(items) if items.len() == 2 => (&items[0], &items[1]),
        _ => return Ok(None),
    };
    let h = h
        .as_u64()
        .ok_or_else(|| E::custom("height must be a non-negative integer"))?;
    let w = w
        .as_u64()
        .ok_or_else(|| E::custom("width must be a non-negative integer"))?;
    Ok(Some((to_u32(h, "height")?, to_u32(w, "width")?)))
}

/// A float or a list of floats (`image_mean` / `image_std` may be either).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum FloatOrList {
    One(f64),
    Many(Vec<f64>),
}

impl FloatOrList {
    fn into_vec(self) -> Vec<f64> {
        match self {
            Self::One(v) => vec![v; 3],
            Self::Many(v) => v,
        }
    }
}

/// Raw JSON shape; `null` and missing fields both fall back to defaults.
#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    do_resize: Option<bool>,
    size: Option<ResizeSize>,
    resample: Option<i64>,
    do_center_crop: Option<bool>,
    crop_size: Option<CropSize>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<FloatOrList>,
    image_std: Option<FloatOrList>,
    do_convert_rgb: Option<bool>,
}

impl From<RawConfig> for ImageProcessorConfig {
    fn from(raw: RawConfig) -> Self {
        let d = Self::default();
        Self {
            do_resize: raw.do_resize.unwrap_or(d.do_resize),
            size: raw.size.unwrap_or(d.size),
            resample: raw.resample.unwrap_or(d.resample),
            do_center_crop: raw.do_center_crop.unwrap_or(d.do_center_crop),
            crop_size: raw.crop_size.unwrap_or(d.crop_size),
            do_rescale: raw.do_rescale.unwrap_or(d.do_rescale),
            rescale_factor: raw.rescale_factor.unwrap_or(d.rescale_factor),
            do_normalize: raw.do_normalize.unwrap_or(d.do_normalize),
            image_mean: raw.image_mean.map_or(d.image_mean, FloatOrList::into_vec),
            image_std: raw.image_std.map_or(d.image_std, FloatOrList::into_vec),
            do_convert_rgb: raw.do_convert_rgb.unwrap_or(d.do_convert_rgb),
        }
    }
}

/// Settings of a CLIP-style image processor, as found in Hugging Face
/// `preprocessor_config.json`. Unknown fields are ignored; missing or `null`
/// fields take `CLIPImageProcessor`'s defaults (see [`Default`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "RawConfig")]
pub struct ImageProcessorConfig {
    /// Whether to resize (default `true`).
    pub do_resize: bool,
    /// Resize target (default shortest edge 224).
    pub size: ResizeSize,
    /// PIL resampling code: 2 bilinear, 3 bicubic (default 3). Others are
    /// rejected by [`ImageProcessorConfig::preprocess`].
    pub resample: i64,
    /// Whether to center-crop after resizing (default `true`).
    pub do_center_crop: bool,
    /// Center-crop size (default 224x224).
    pub crop_size: CropSize,
    /// Whether to multiply pixel values by `rescale_factor` (default `true`).
    pub do_rescale: bool,
    /// Rescale factor (default `1/255`).
    pub rescale_factor: f64,
    /// Whether to normalize with `image_mean` / `image_std` (default `true`).
    pub do_normalize: bool,
    /// Per-channel mean (default OpenAI CLIP mean).
    pub image_mean: Vec<f64>,
    /// Per-channel standard deviation (default OpenAI CLIP std).
    pub image_std: Vec<f64>,
    /// Whether to convert to RGB (default `true`). [`preprocess`] takes an
    /// already-RGB image (see `decode_image`), so this is informational.
    ///
    /// [`preprocess`]: ImageProcessorConfig::preprocess
    pub do_convert_rgb: bool,
}

impl Default for ImageProcessorConfig {
    fn default() -> Self {
        Self {
            do_resize: true,
            size: ResizeSize::ShortestEdge(224),
            resample: PIL_BICUBIC,
            do_center_crop: true,
            crop_size: CropSize {
                height: 224,
                width: 224,
            },
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN.to_vec(),
            image_std: OPENAI_CLIP_STD.to_vec(),
            do_convert_rgb: true,
        }
    }
}

/// Preprocessed pixels in channel-major (CHW) order.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelValues {
    /// `channels * height * width` values, channel-major.
    pub data: Vec<f32>,
    /// Number of channels (always 3).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl PixelValues {
    /// The `[channels, height, width]` shape of [`PixelValues::data`].
    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }
}

/// `(height, width)` after resizing the shortest edge to `shortest_edge`,
/// exactly like transformers' `get_resize_output_image_size(...,
/// default_to_square=False)`: the long side is `int(S * long / short)`
/// (float division, then truncation).
pub fn shortest_edge_output_size(height: u32, width: u32, shortest_edge: u32) -> (u32, u32) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_short = shortest_edge;
    // Python: int(requested_new_short * long / short); the product is an
    // exact int and `/` is a correctly rounded float division.
    let product = u64::from(shortest_edge) * u64::from(long);
    let new_long = (product as f64 / f64::from(short)) as u32;
    if width <= height {
        (new_long, new_short)
    } else {
        (new_short, new_long)
    }
}

/// Center crop like transformers' `image_transforms.center_crop`, including
/// its zero-padding when the crop is larger than the image.
pub fn center_crop(img: &RgbImage, crop_height: u32, crop_width: u32) -> RgbImage {
    let (orig_w, orig_h) = img.dimensions();
    let (rows, pad_top) = crop_axis(orig_h, crop_height);
    let (cols, pad_left) = crop_axis(orig_w, crop_width);
    let (out_h, out_w) = (rows.1 - rows.0, cols.1 - cols.0);
    let to_u32 = |v: i64| u32::try_from(v).unwrap_or(0);
    RgbImage::from_fn(to_u32(out_w), to_u32(out_h), |x, y| {
        // Coordinates in the (conceptually) zero-padded image.
        let py = rows.0 + i64::from(y) - pad_top;
        let px = cols.0 + i64::from(x) - pad_left;
        match (u32::try_from(px), u32::try_from(py)) {
            (Ok(sx), Ok(sy)) if sx < orig_w && sy < orig_h => *img.get_pixel(sx, sy),
            _ => Rgb([0, 0, 0]),
        }
    })
}

/// One axis of `center_crop`: returns `((start, end), pad)` where start/end
/// index the padded axis and `pad` is the zero padding before the image.
fn crop_axis(orig: u32, crop: u32) -> ((i64, i64), i64) {
    let (orig, crop) = (i64::from(orig), i64::from(crop));
    // Python floor division.
    let start = (orig - crop).div_euclid(2);
    let end = start + crop;
    if start >= 0 && end <= orig {
        return ((start, end), 0);
    }
    let new_len = crop.max(orig);
    // ceil((new_len - orig) / 2) with a non-negative numerator.
    let pad = (new_len - orig + 1) / 2;
    let (start, end) = (start + pad, end + pad);
    ((start.max(0), end.min(new_len)), pad)
}

impl ImageProcessorConfig {
    /// Parses a config from a JSON value, e.g. the whole
    /// `preprocessor_config.json` or the `image_processor` section of a
    /// `processor_config.json`.
    ///
    /// Missing fields take the defaults of the processor class named by
    /// `image_processor_type`: CLIP's, except that SigLIP's and LLaVA-OneVision's processors
    /// have no center crop.
    pub fn from_json_value(value: &Value) -> Result<Self, serde_json::Error> {
        let mut config = Self::deserialize(value)?;
        let kind = value
            .get("image_processor_type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let crops_by_default = !(kind.starts_with("Siglip") || kind.starts_with("LlavaOnevision"));
        if !crops_by_default && value.get("do_center_crop").is_none() {
            config.do_center_crop = false;
        }
        Ok(config)
    }

    /// The `(height, width)` the resize step produces for an input of the
    /// given size (the input size itself when `do_resize` is false).
    pub fn resized_size(&self, height: u32, width: u32) -> (u32, u32) {
        if !self.do_resize {
            return (height, width);
        }
        match self.size {
            ResizeSize::ShortestEdge(s) => shortest_edge_output_size(height, width, s),
            ResizeSize::Exact { height, width } => (height, width),
        }
    }

    fn per_channel(&self, values: &[f64], what: &str) -> Result<[f32; 3], ImageProcessError> {
        match values {
            [v] => Ok([*v as f32; 3]),
            [a, b, c] => Ok([*a as f32, *b as f32, *c as f32]),
            _ => Err(ImageProcessError::InvalidNormalization(format!(
                "{what} must have 3 elements, got {}",
                values.len()
            ))),
        }
    }

    /// Runs transformers' slow `CLIPImageProcessor` steps on an RGB image:
    /// resize (Pillow-exact, Pillow >= 13 pass order), center crop, rescale
    /// (`f64` multiply, then `f32`), normalize (`(x - mean) / std` in `f32`).
    /// Returns CHW values.
    pub fn preprocess(&self, img: &RgbImage) -> Result<PixelValues, ImageProcessError> {
        self.preprocess_with_compat(img, PillowCompat::default())
    }

    /// [`ImageProcessorConfig::preprocess`] reproducing a specific Pillow
    /// release's resize pass order.
    pub fn preprocess_with_compat(
        &self,
        img: &RgbImage,
        compat: PillowCompat,
    ) -> Result<PixelValues, ImageProcessError> {
        let (width, height) = img.dimensions();
        if width == 0 || height == 0 {
            return Err(ImageProcessError::EmptyImage { width, height });
        }
        let (mean, std) = if self.do_normalize {
            (
                self.per_channel(&self.image_mean, "image_mean")?,
                self.per_channel(&self.image_std, "image_std")?,
            )
        } else {
            ([0.0; 3], [1.0; 3])
        };

        let resized;
        let mut current = img;
        if self.do_resize {
            let (new_h, new_w) = self.resized_size(height, width);
            if new_h == 0 || new_w == 0 {
                return Err(ImageProcessError::InvalidSize(format!(
                    "resize target {new_w}x{new_h} is empty"
                )));
            }
            if u64::from(new_h) * u64::from(new_w) > MAX_RESIZED_PIXELS {
                return Err(ImageProcessError::InvalidSize(format!(
                    "resize target {new_w}x{new_h} exceeds {MAX_RESIZED_PIXELS} pixels"
                )));
            }
            let filter = match self.resample {
                PIL_BICUBIC => ResampleFilter::Bicubic,
                PIL_BILINEAR => ResampleFilter::Bilinear,
                other => return Err(ImageProcessError::UnsupportedResample(other)),
            };
            resized = resize_with(img, new_w, new_h, filter, compat);
            current = &resized;
        }

        let cropped;
        if self.do_center_crop {
            let CropSize { height, width } = self.crop_size;
            if height == 0 || width == 0 {
                return Err(ImageProcessError::InvalidSize(format!(
                    "crop size {width}x{height} is empty"
                )));
            }
            cropped = center_crop(current, height, width);
            current = &cropped;
        }

        let (w, h) = (current.width() as usize, current.height() as usize);
        let plane = w * h;
        let mut data = vec![0f32; 3 * plane];
        for (i, px) in current.pixels().enumerate() {
            for c in 0..3 {
                let raw = px.0[c];
                let mut v = if self.do_rescale {
                    (f64::from(raw) * self.rescale_factor) as f32
                } else {
                    f32::from(raw)
                };
                if self.do_normalize {
                    v = (v - mean[c]) / std[c];
                }
                data[c * plane + i] = v;
            }
        }
        Ok(PixelValues {
            data,
            channels: 3,
            height: h,
            width: w,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::resize_bicubic;
    use serde_json::json;

    #[test]
    fn shortest_edge_arithmetic() {
        // width 64, height 40, S = 32: short = 40, long = 64,
        // int(32 * 64 / 40) = int(51.2) = 51 -> (h, w) = (32, 51).
        assert_eq!(shortest_edge_output_size(40, 64, 32), (32, 51));
        // Portrait: width 40, height 64 -> (51, 32).
        assert_eq!(shortest_edge_output_size(64, 40, 32), (51, 32));
        // 480x640 (h x w) with 224: int(224 * 640 / 480) = int(298.67) = 298.
        assert_eq!(shortest_edge_output_size(480, 640, 224), (224, 298));
        // Square and exact ratios.
        assert_eq!(shortest_edge_output_size(100, 100, 224), (224, 224));
        assert_eq!(shortest_edge_output_size(200, 300, 224), (224, 336));
        // 336 * 500 / 333 = 504.5045 -> 504.
        assert_eq!(shortest_edge_output_size(333, 500, 336), (336, 504));
    }

    #[test]
    fn center_crop_offsets() {
        let img = RgbImage::from_fn(7, 6, |x, y| Rgb([x as u8, y as u8, 0]));
        // top = (6 - 3) // 2 = 1, left = (7 - 4) // 2 = 1.
        let out = center_crop(&img, 3, 4);
        assert_eq!(out.dimensions(), (4, 3));
        assert_eq!(out.get_pixel(0, 0).0, [1, 1, 0]);
        assert_eq!(out.get_pixel(3, 2).0, [4, 3, 0]);
    }

    #[test]
    fn center_crop_pads_with_zeros() {
        let img = RgbImage::from_pixel(3, 2, Rgb([9, 9, 9]));
        // Height: orig 2, crop 5: top = (-3)//2 = -2, pad = ceil(3/2) = 2 ->
        // rows 0..5 of a 5-row canvas with the image at rows 2..4.
        // Width: orig 3, crop 4: left = (-1)//2 = -1, pad = ceil(1/2) = 1 ->
        // image at cols 1..4.
        let out = center_crop(&img, 5, 4);
        assert_eq!(out.dimensions(), (4, 5));
        for (x, y, p) in out.enumerate_pixels() {
            let inside = (1..4).contains(&x) && (2..4).contains(&y);
            assert_eq!(p.0, if inside { [9, 9, 9] } else { [0, 0, 0] }, "({x},{y})");
        }
        // Mixed: taller than the crop but narrower.
        let img = RgbImage::from_fn(2, 6, |x, y| Rgb([x as u8 + 1, y as u8 + 1, 0]));
        let out = center_crop(&img, 2, 4);
        assert_eq!(out.dimensions(), (4, 2));
        assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(1, 0).0, [1, 3, 0]);
        assert_eq!(out.get_pixel(2, 1).0, [2, 4, 0]);
        assert_eq!(out.get_pixel(3, 1).0, [0, 0, 0]);
    }

    #[test]
    fn parses_clip_config() {
        let cfg: ImageProcessorConfig = serde_json::from_value(json!({
            "crop_size": 336,
            "do_center_crop": true,
            "do_normalize": true,
            "do_resize": true,
            "feature_extractor_type": "CLIPFeatureExtractor",
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711],
            "resample": 3,
            "size": 336
        }))
        .expect("parse");
        assert_eq!(cfg.size, ResizeSize::ShortestEdge(336));
        assert_eq!(
            cfg.crop_size,
            CropSize {
                height: 336,
                width: 336
            }
        );
        assert!(cfg.do_rescale);
        assert_eq!(cfg.rescale_factor, 1.0 / 255.0);

        let cfg = ImageProcessorConfig::from_json_value(&json!({
            "size": {"height": 384, "width": 384},
            "crop_size": {"height": 300, "width": 200},
            "resample": 2,
            "image_mean": 0.5,
            "image_std": null,
            "do_convert_rgb": null
        }))
        .expect("parse");
        assert_eq!(
            cfg.size,
            ResizeSize::Exact {
                height: 384,
                width: 384
            }
        );
        assert_eq!(
            cfg.crop_size,
            CropSize {
                height: 300,
                width: 200
            }
        );
        assert_eq!(cfg.image_mean, vec![0.5; 3]);
        assert_eq!(cfg.image_std, OPENAI_CLIP_STD.to_vec());
        assert!(cfg.do_convert_rgb);

        let cfg = ImageProcessorConfig::from_json_value(&json!({
            "size": {"shortest_edge": 224}
        }))
        .expect("parse");
        assert_eq!(cfg, ImageProcessorConfig::default());

        assert!(
            ImageProcessorConfig::from_json_value(&json!({"size": {"longest_edge": 5}})).is_err()
        );
        assert!(ImageProcessorConfig::from_json_value(&json!({"size": "big"})).is_err());
    }

    #[test]
    fn preprocess_values_and_layout() {
        let img = RgbImage::from_fn(4, 2, |x, y| Rgb([x as u8 * 60, y as u8 * 200, 255]));
        let cfg = ImageProcessorConfig {
            do_resize: false,
            do_center_crop: false,
            ..ImageProcessorConfig::default()
        };
        let out = cfg.preprocess(&img).expect("preprocess");
        assert_eq!(out.shape(), [3, 2, 4]);
        let expect = |v: u8, c: usize| {
            let x = (f64::from(v) * (1.0 / 255.0)) as f32;
            (x - OPENAI_CLIP_MEAN[c] as f32) / OPENAI_CLIP_STD[c] as f32
        };
        // Channel 0 at (y=1, x=3) is 180; channel 1 at (y=1, x=0) is 200.
        assert_eq!(out.data[4 + 3], expect(180, 0));
        assert_eq!(out.data[8 + 4], expect(200, 1));
        assert_eq!(out.data[16 + 7], expect(255, 2));
        // Hand check: 255 -> 1.0; (1 - 0.40821073) / 0.27577711 = 2.145897...
        assert!((out.data[16] - 2.145_897).abs() < 1e-5);
    }

    #[test]
    fn preprocess_full_pipeline_sizes() {
        let img = RgbImage::from_fn(64, 40, |x, y| Rgb([x as u8, y as u8, 7]));
        let cfg = ImageProcessorConfig {
            size: ResizeSize::ShortestEdge(32),
            crop_size: CropSize {
                height: 32,
                width: 32,
            },
            ..ImageProcessorConfig::default()
        };
        let out = cfg.preprocess(&img).expect("preprocess");
        assert_eq!(out.shape(), [3, 32, 32]);
        assert_eq!(out.data.len(), 3 * 32 * 32);
        // The crop of the 51x32 resize starts at column (51 - 32) // 2 = 9.
        let resized = resize_bicubic(&img, 51, 32);
        let v = resized.get_pixel(9, 0).0[2];
        let expected = ((f64::from(v) * (1.0 / 255.0)) as f32 - OPENAI_CLIP_MEAN[2] as f32)
            / OPENAI_CLIP_STD[2] as f32;
        assert_eq!(out.data[2 * 32 * 32], expected);
    }

    #[test]
    fn preprocess_errors() {
        let img = RgbImage::new(8, 8);
        let cfg = ImageProcessorConfig {
            resample: PIL_NEAREST,
            ..ImageProcessorConfig::default()
        };
        assert!(matches!(
            cfg.preprocess(&img),
            Err(ImageProcessError::UnsupportedResample(0))
        ));
        let cfg = ImageProcessorConfig {
            image_mean: vec![0.5, 0.5],
            ..ImageProcessorConfig::default()
        };
        assert!(matches!(
            cfg.preprocess(&img),
            Err(ImageProcessError::InvalidNormalization(_))
        ));
        assert!(matches!(
            ImageProcessorConfig::default().preprocess(&RgbImage::new(0, 3)),
            Err(ImageProcessError::EmptyImage { .. })
        ));
        // Extreme aspect ratio: 1x100000 with shortest edge 224 -> 22.4M x 224.
        let thin = RgbImage::new(1, 100_000);
        assert!(matches!(
            ImageProcessorConfig::default().preprocess(&thin),
            Err(ImageProcessError::InvalidSize(_))
        ));
    }
}
