//! Image decoding with a decompression-bomb guard and transformers-compatible
//! RGB conversion.

use std::io::Cursor;

use ::image::{DynamicImage, ImageError, ImageFormat, ImageReader, Limits, RgbImage, RgbaImage};

/// Default pixel budget for [`DecodeLimits`]: 50 megapixels.
pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;

/// Allocation budget handed to the decoder on top of the output buffer itself.
const ALLOC_SLACK_BYTES: u64 = 64 * 1024 * 1024;

/// Minimum allocation budget handed to the decoder (image's own default).
const MIN_ALLOC_BYTES: u64 = 512 * 1024 * 1024;

/// Limits applied while decoding untrusted image bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Maximum `width * height` accepted; larger images are refused before
    /// their pixel data is decoded.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// Errors produced by [`decode_image`].
#[derive(Debug, thiserror::Error)]
pub enum ImageDecodeError {
    /// The input contained no bytes.
    #[error("image data is empty")]
    Empty,
    /// The format could not be recognised from the content.
    #[error("unrecognized image format (supported: PNG, JPEG, WebP, GIF, BMP)")]
    UnknownFormat,
    /// The format was recognised but is not one of the supported ones.
    #[error("unsupported image format {0} (supported: PNG, JPEG, WebP, GIF, BMP)")]
    UnsupportedFormat(String),
    /// The image has more pixels than [`DecodeLimits::max_pixels`].
    #[error(
        "image is {width}x{height} ({} pixels), more than the limit of {max_pixels} pixels",
        u64::from(*width) * u64::from(*height)
    )]
    TooManyPixels {
        /// Width declared by the image header.
        width: u32,
        /// Height declared by the image header.
        height: u32,
        /// The limit that was exceeded.
        max_pixels: u64,
    },
    /// The image declares a zero width or height.
    #[error("image has an empty size ({width}x{height})")]
    EmptyImage {
        /// Width declared by the image header.
        width: u32,
        /// Height declared by the image header.
        height: u32,
    },
    /// The decoder hit one of its resource limits.
    #[error("image decoder resource limit exceeded: {0}")]
    LimitExceeded(String),
    /// The data is malformed or uses an unsupported feature of its format.
    #[error("failed to decode image: {0}")]
    Decode(String),
}

impl From<ImageError> for ImageDecodeError {
    fn from(err: ImageError) -> Self {
        match err {
            ImageError::Limits(e) => Self::LimitExceeded(e.to_string()),
            other => Self::Decode(other.to_string()),
        }
    }
}

fn is_supported(format: ImageFormat) -> bool {
    matches!(
        format,
        ImageFormat::Png
            | ImageFormat::Jpeg
            | ImageFormat::WebP
            | ImageFormat::Gif
            | ImageFormat::Bmp
    )
}

/// Decodes PNG, JPEG, WebP, GIF (first frame) or BMP bytes into an RGB8 image.
///
/// The format is guessed from the content. The header is read first and
/// images above `limits.max_pixels` are refused before any pixel data is
/// decoded. The result is converted to RGB with [`convert_to_rgb`], i.e. like
/// transformers' `convert_to_rgb` (transparency composited over white).
pub fn decode_image(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, ImageDecodeError> {
    if bytes.is_empty() {
        return Err(ImageDecodeError::Empty);
    }
    let format = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageDecodeError::Decode(e.to_string()))?
        .format()
        .ok_or(ImageDecodeError::UnknownFormat)?;
    if !is_supported(format) {
        return Err(ImageDecodeError::UnsupportedFormat(format!("{format:?}")));
    }

    // Header-only pass: refuse oversized images before decoding pixels.
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format).into_dimensions()?;
    if width == 0 || height == 0 {
        return Err(ImageDecodeError::EmptyImage { width, height });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(ImageDecodeError::TooManyPixels {
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }

    // Full decode, with image's own limits pinned to the header dimensions so
    // a decoder cannot be tricked into allocating more than announced.
    let mut decode_limits = Limits::default();
    decode_limits.max_image_width = Some(width);
    decode_limits.max_image_height = Some(height);
    // Worst case output is 16-bit RGBA (8 bytes per pixel).
    decode_limits.max_alloc = Some(
        pixels
            .saturating_mul(8)
            .saturating_add(ALLOC_SLACK_BYTES)
            .max(MIN_ALLOC_BYTES),
    );
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(decode_limits);
    let decoded = reader.decode()?;
    Ok(convert_to_rgb(decoded))
}

/// Converts a decoded image to RGB8 exactly like transformers' `convert_to_rgb`
/// on the equivalent PIL image.
///
/// RGB8 is kept as is and grayscale is replicated. Anything with an alpha
/// channel is alpha-composited over opaque white with Pillow's
/// `Image.alpha_composite` integer arithmetic, then the alpha is dropped.
/// 16-bit images follow Pillow's PNG loader: RGB/RGBA/LA keep the high byte
/// of each sample, 16-bit grayscale (`I;16`) converts to RGB by clipping
/// values above 255 to 255 (Pillow's `I;16 -> RGB` conversion).
pub fn convert_to_rgb(img: DynamicImage) -> RgbImage {
    let (width, height) = (img.width(), img.height());
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageLuma8(gray) => RgbImage::from_fn(width, height, |x, y| {
            let v = gray.get_pixel(x, y).0[0];
            ::image::Rgb([v, v, v])
        }),
        DynamicImage::ImageLuma16(gray) => RgbImage::from_fn(width, height, |x, y| {
            let v = u8::try_from(gray.get_pixel(x, y).0[0]).unwrap_or(u8::MAX);
            ::image::Rgb([v, v, v])
        }),
        DynamicImage::ImageRgb16(rgb) => RgbImage::from_fn(width, height, |x, y| {
            let [r, g, b] = rgb.get_pixel(x, y).0;
            ::image::Rgb([high_byte(r), high_byte(g), high_byte(b)])
        }),
        DynamicImage::ImageRgba16(rgba) => {
            composite_over_white(&RgbaImage::from_fn(width, height, |x, y| {
                let [r, g, b, a] = rgba.get_pixel(x, y).0;
                ::image::Rgba([high_byte(r), high_byte(g), high_byte(b), high_byte(a)])
            }))
        }
        DynamicImage::ImageLumaA16(la) => {
            composite_over_white(&RgbaImage::from_fn(width, height, |x, y| {
                let [l, a] = la.get_pixel(x, y).0;
                let l = high_byte(l);
                ::image::Rgba([l, l, l, high_byte(a)])
            }))
        }
        DynamicImage::ImageRgb32F(_) => img.to_rgb8(),
        other => composite_over_white(&other.to_rgba8()),
    }
}

fn high_byte(v: u16) -> u8 {
    v.to_be_bytes()[0]
}

/// Pillow's `SHIFTFORDIV255`: a fast `/ 255` for the ranges used here.
fn shift_for_div255(a: u32) -> u32 {
    ((a >> 8) + a) >> 8
}

const COMPOSITE_PRECISION_BITS: u32 = 7;

/// `Image.alpha_composite(white, src)` for one pixel, as in Pillow's
/// `AlphaComposite.c` with an opaque white destination.
fn composite_pixel_over_white(src: [u8; 4]) -> [u8; 3] {
    const DST_C: u32 = 255;
    const DST_A: u32 = 255;
    let [r, g, b, a] = src;
    let src_a = u32::from(a);
    if src_a == 0 {
        return [255, 255, 255];
    }
    let blend = DST_A * (255 - src_a);
    let outa255 = src_a * 255 + blend;
    let coef1 = src_a * 255 * 255 * (1 << COMPOSITE_PRECISION_BITS) / outa255;
    let coef2 = 255 * (1 << COMPOSITE_PRECISION_BITS) - coef1;
    let channel = |c: u8| -> u8 {
        let tmp = u32::from(c) * coef1 + DST_C * coef2;
        let v =
            shift_for_div255(tmp + (0x80 << COMPOSITE_PRECISION_BITS)) >> COMPOSITE_PRECISION_BITS;
        // Pillow stores into a UINT8; the value is always <= 255 here.
        u8::try_from(v).unwrap_or(u8::MAX)
    };
    [channel(r), channel(g), channel(b)]
}

fn composite_over_white(rgba: &RgbaImage) -> RgbImage {
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        ::image::Rgb(composite_pixel_over_white(rgba.get_pixel(x, y).0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::image::codecs::gif::{GifEncoder, Repeat};
    use ::image::{Delay, Frame, ImageEncoder, Rgba};

    fn encode_png(img: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .expect("encode png");
        out
    }

    #[test]
    fn composite_matches_pillow_formula() {
        // a = 128: blend = 255*127 = 32385, outa255 = 32640 + 32385 = 65025,
        // coef1 = 128*255*255*128 / 65025 = 16384, coef2 = 32640 - 16384 = 16256.
        // r: 10*16384 + 255*16256 = 4309120; +16384 = 4325504;
        //    (4325504>>8 = 16896) + 4325504 = 4342400; >>8 = 16962; >>7 = 132.
        // g: 200*16384 + 4145280 = 7422080; +16384 = 7438464;
        //    (29056 + 7438464) >> 8 = 29169; >>7 = 227.
        // b: 30*16384 + 4145280 = 4636800; +16384 = 4653184;
        //    (18176 + 4653184) >> 8 = 18247; >>7 = 142.
        assert_eq!(
            composite_pixel_over_white([10, 200, 30, 128]),
            [132, 227, 142]
        );
        assert_eq!(
            composite_pixel_over_white([10, 200, 30, 0]),
            [255, 255, 255]
        );
        assert_eq!(
            composite_pixel_over_white([10, 200, 30, 255]),
            [10, 200, 30]
        );
    }

    #[test]
    fn opaque_composite_is_identity() {
        for c in 0..=255u8 {
            assert_eq!(composite_pixel_over_white([c, c, c, 255]), [c, c, c]);
        }
    }

    #[test]
    fn png_with_alpha_is_composited() {
        let mut img = RgbaImage::new(2, 1);
        img.put_pixel(0, 0, Rgba([10, 200, 30, 128]));
        img.put_pixel(1, 0, Rgba([1, 2, 3, 0]));
        let bytes = encode_png(&DynamicImage::ImageRgba8(img));
        let rgb = decode_image(&bytes, &DecodeLimits::default()).expect("decode");
        assert_eq!(rgb.get_pixel(0, 0).0, [132, 227, 142]);
        assert_eq!(rgb.get_pixel(1, 0).0, [255, 255, 255]);
    }

    #[test]
    fn rgb_png_roundtrips() {
        let img = RgbImage::from_fn(5, 3, |x, y| ::image::Rgb([x as u8 * 40, y as u8 * 70, 9]));
        let bytes = encode_png(&DynamicImage::ImageRgb8(img.clone()));
        let rgb = decode_image(&bytes, &DecodeLimits::default()).expect("decode");
        assert_eq!(rgb, img);
    }

    #[test]
    fn grayscale_is_replicated() {
        let img = ::image::GrayImage::from_fn(3, 2, |x, y| ::image::Luma([(x * 50 + y * 7) as u8]));
        let bytes = encode_png(&DynamicImage::ImageLuma8(img.clone()));
        let rgb = decode_image(&bytes, &DecodeLimits::default()).expect("decode");
        for (x, y, p) in rgb.enumerate_pixels() {
            let v = img.get_pixel(x, y).0[0];
            assert_eq!(p.0, [v, v, v]);
        }
    }

    #[test]
    fn sixteen_bit_follows_pillow() {
        let rgb16 = ::image::ImageBuffer::<::image::Rgb<u16>, Vec<u16>>::from_pixel(
            1,
            1,
            ::image::Rgb([0x12ff, 0x0080, 0xffff]),
        );
        let out = convert_to_rgb(DynamicImage::ImageRgb16(rgb16));
        assert_eq!(out.get_pixel(0, 0).0, [0x12, 0x00, 0xff]);
        let gray16 = ::image::ImageBuffer::<::image::Luma<u16>, Vec<u16>>::from_fn(2, 1, |x, _| {
            ::image::Luma([if x == 0 { 200 } else { 300 }])
        });
        let out = convert_to_rgb(DynamicImage::ImageLuma16(gray16));
        assert_eq!(out.get_pixel(0, 0).0, [200, 200, 200]);
        assert_eq!(out.get_pixel(1, 0).0, [255, 255, 255]);
    }

    #[test]
    fn over_limit_refused_before_decode() {
        // A PNG header declaring 100000x100000 followed by garbage: a full
        // decode would fail with a decode error, so a TooManyPixels error
        // proves the check happened on the header alone.
        let img = RgbImage::new(100_000, 1);
        let mut bytes = encode_png(&DynamicImage::ImageRgb8(img));
        // Patch the IHDR height (bytes 20..24) and its CRC (29..33).
        bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = png_crc(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = decode_image(&bytes, &DecodeLimits::default()).expect_err("must refuse");
        match err {
            ImageDecodeError::TooManyPixels {
                width,
                height,
                max_pixels,
            } => {
                assert_eq!(
                    (width, height, max_pixels),
                    (100_000, 100_000, DEFAULT_MAX_PIXELS)
                );
            }
            other => panic!("unexpected error {other}"),
        }
        // A small image with a tight limit is refused too.
        let small = encode_png(&DynamicImage::ImageRgb8(RgbImage::new(10, 10)));
        assert!(matches!(
            decode_image(&small, &DecodeLimits { max_pixels: 99 }),
            Err(ImageDecodeError::TooManyPixels { .. })
        ));
        assert!(decode_image(&small, &DecodeLimits { max_pixels: 100 }).is_ok());
    }

    fn png_crc(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn gif_returns_first_frame() {
        let mut bytes = Vec::new();
        {
            let mut enc = GifEncoder::new(&mut bytes);
            enc.set_repeat(Repeat::Infinite).expect("repeat");
            let red = RgbaImage::from_pixel(4, 3, Rgba([255, 0, 0, 255]));
            let blue = RgbaImage::from_pixel(4, 3, Rgba([0, 0, 255, 255]));
            let delay = Delay::from_numer_denom_ms(100, 1);
            enc.encode_frames(vec![
                Frame::from_parts(red, 0, 0, delay),
                Frame::from_parts(blue, 0, 0, delay),
            ])
            .expect("encode gif");
        }
        let rgb = decode_image(&bytes, &DecodeLimits::default()).expect("decode gif");
        assert_eq!(rgb.dimensions(), (4, 3));
        assert!(rgb.pixels().all(|p| p.0 == [255, 0, 0]));
    }

    #[test]
    fn bmp_decodes() {
        let img = RgbImage::from_fn(3, 2, |x, y| ::image::Rgb([x as u8, y as u8, 77]));
        let mut bytes = Vec::new();
        ::image::codecs::bmp::BmpEncoder::new(&mut bytes)
            .write_image(img.as_raw(), 3, 2, ::image::ExtendedColorType::Rgb8)
            .expect("encode bmp");
        let rgb = decode_image(&bytes, &DecodeLimits::default()).expect("decode bmp");
        assert_eq!(rgb, img);
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(
            decode_image(&[], &DecodeLimits::default()),
            Err(ImageDecodeError::Empty)
        ));
        assert!(matches!(
            decode_image(b"definitely not an image", &DecodeLimits::default()),
            Err(ImageDecodeError::UnknownFormat)
        ));
        // Valid PNG signature, truncated body.
        let bytes = encode_png(&DynamicImage::ImageRgb8(RgbImage::new(8, 8)));
        assert!(decode_image(&bytes[..40], &DecodeLimits::default()).is_err());
    }
}
