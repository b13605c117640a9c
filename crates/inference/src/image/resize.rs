//! Bit-exact port of Pillow's convolution resampler (`libImaging/Resample.c`)
//! for 8-bit RGB images.

use ::image::RgbImage;

/// Fixed-point precision of the 8-bit resampler: `32 - 8 - 2`.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's separable resampling filters supported here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    Bilinear,
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Bilinear => bilinear_filter(x),
            Filter::Bicubic => bicubic_filter(x),
        }
    }
}

fn bilinear_filter(x: f64) -> f64 {
    let x = if x < 0.0 { -x } else { x };
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = if x < 0.0 { -x } else { x };
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point filter coefficients for one axis (Pillow's `precompute_coeffs`
/// followed by `normalize_coeffs_8bpc`).
struct Coeffs {
    /// `(first input index, number of taps)` per output index.
    bounds: Vec<(usize, usize)>,
    /// `ksize` coefficients per output index.
    kk: Vec<i32>,
    ksize: usize,
}

impl Coeffs {
    fn taps(&self, out_index: usize) -> &[i32] {
        let start = out_index * self.ksize;
        let (_, count) = self.bounds[out_index];
        &self.kk[start..start + count]
    }
}

fn precompute_coeffs(in_size: u32, out_size: u32, filter: Filter) -> Coeffs {
    // Pillow passes the box as C floats: `(double)(in1 - in0) / outSize`.
    let in0 = 0.0f32;
    let in1 = in_size as f32;
    let scale = f64::from(in1 - in0) / f64::from(out_size);
    let filterscale = if scale < 1.0 { 1.0 } else { scale };
    let support = filter.support() * filterscale;
    // `(int)ceil(support) * 2 + 1`
    let ksize = (support.ceil() as usize) * 2 + 1;
    let inv_filterscale = 1.0 / filterscale;
    let in_size_i = i64::from(in_size);

    let out_len = out_size as usize;
    let mut bounds = Vec::with_capacity(out_len);
    let mut kk = vec![0i32; out_len * ksize];
    let mut weights = vec![0f64; ksize];
    for xx in 0..out_len {
        let center = f64::from(in0) + (xx as f64 + 0.5) * scale;
        // C `(int)` conversions truncate toward zero, as does `as i64`.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size_i) - xmin;
        let count = usize::try_from(xmax).unwrap_or(0).min(ksize);
        let mut ww = 0.0f64;
        for (x, w) in weights.iter_mut().enumerate().take(count) {
            let v = filter.eval(((x as i64 + xmin) as f64 - center + 0.5) * inv_filterscale);
            *w = v;
            ww += v;
        }
        let row = &mut kk[xx * ksize..xx * ksize + count];
        for (k, &w) in row.iter_mut().zip(weights.iter()) {
            let w = if ww != 0.0 { w / ww } else { w };
            *k = normalize_coeff(w);
        }
        bounds.push((usize::try_from(xmin).unwrap_or(0), count));
    }
    Coeffs { bounds, kk, ksize }
}

/// `normalize_coeffs_8bpc` for one coefficient.
fn normalize_coeff(k: f64) -> i32 {
    let scaled = k * f64::from(1u32 << PRECISION_BITS);
    if k < 0.0 {
        (-0.5 + scaled) as i32
    } else {
        (0.5 + scaled) as i32
    }
}

/// Pillow's `clip8`: arithmetic shift out the fixed-point bits, clamp to u8.
fn clip8(acc: i64) -> u8 {
    let v = acc >> PRECISION_BITS;
    u8::try_from(v.clamp(0, 255)).unwrap_or(u8::MAX)
}

const ROUNDING: i64 = 1 << (PRECISION_BITS - 1);

/// Horizontal pass over input rows `row_offset..row_offset + out_rows`.
fn resample_horizontal(
    src: &[u8],
    src_width: usize,
    row_offset: usize,
    out_rows: usize,
    out_width: usize,
    coeffs: &Coeffs,
) -> Vec<u8> {
    let mut out = vec![0u8; out_rows * out_width * 3];
    for yy in 0..out_rows {
        let line_start = (yy + row_offset) * src_width * 3;
        let line = &src[line_start..line_start + src_width * 3];
        let out_line = &mut out[yy * out_width * 3..(yy + 1) * out_width * 3];
        for (xx, px) in out_line.chunks_exact_mut(3).enumerate() {
            let (xmin, _) = coeffs.bounds[xx];
            let mut ss = [ROUNDING; 3];
            for (x, &k) in coeffs.taps(xx).iter().enumerate() {
                let base = (x + xmin) * 3;
                let k = i64::from(k);
                for (c, s) in ss.iter_mut().enumerate() {
                    *s += i64::from(line[base + c]) * k;
                }
            }
            for (dst, s) in px.iter_mut().zip(ss) {
                *dst = clip8(s);
            }
        }
    }
    out
}

/// Vertical pass; `coeffs.bounds` index rows of `src` directly after
/// subtracting `row_shift`.
fn resample_vertical(
    src: &[u8],
    width: usize,
    out_height: usize,
    row_shift: usize,
    coeffs: &Coeffs,
) -> Vec<u8> {
    let stride = width * 3;
    let mut out = vec![0u8; out_height * stride];
    for yy in 0..out_height {
        let (ymin, _) = coeffs.bounds[yy];
        let ymin = ymin - row_shift;
        let taps = coeffs.taps(yy);
        let out_line = &mut out[yy * stride..(yy + 1) * stride];
        for (i, dst) in out_line.iter_mut().enumerate() {
            let mut ss = ROUNDING;
            for (y, &k) in taps.iter().enumerate() {
                ss += i64::from(src[(y + ymin) * stride + i]) * i64::from(k);
            }
            *dst = clip8(ss);
        }
    }
    out
}

/// Which Pillow release's two-pass ordering to reproduce.
///
/// The passes round to `u8` in between, so the order changes results by up
/// to a few 8-bit steps. Coefficients and arithmetic are identical across
/// these versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PillowCompat {
    /// Pillow <= 12.1: always horizontal pass first.
    Legacy,
    /// Pillow 12.2 and 12.3: horizontal first, except images taller than 100x
    /// their width whose height shrinks, which go vertical first (done in
    /// `Image.resize` in Python).
    V12_2,
    /// Pillow >= 13.0: vertical first when the height shrinks by more than
    /// twice as many pixels as the width (`ImagingResampleInner`).
    #[default]
    V13,
}

/// Resampling filters supported by [`resize_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResampleFilter {
    /// `Image.BILINEAR` (triangle filter, support 1).
    Bilinear,
    /// `Image.BICUBIC` (cubic convolution with `a = -0.5`, support 2).
    Bicubic,
}

impl From<ResampleFilter> for Filter {
    fn from(f: ResampleFilter) -> Self {
        match f {
            ResampleFilter::Bilinear => Filter::Bilinear,
            ResampleFilter::Bicubic => Filter::Bicubic,
        }
    }
}

/// Pillow's `ImagingResampleInner` for the full-image box. Horizontal-first
/// only runs the horizontal pass on the rows the vertical pass needs; the
/// intermediate is `u8`; passes whose dimension is unchanged are skipped.
fn resample_inner(
    src: &[u8],
    (in_w, in_h): (u32, u32),
    (out_w, out_h): (u32, u32),
    filter: Filter,
    horizontal_first: bool,
) -> Vec<u8> {
    let need_horizontal = out_w != in_w;
    let need_vertical = out_h != in_h;
    match (need_horizontal, need_vertical) {
        (false, false) => src.to_vec(),
        (true, false) => {
            let horiz = precompute_coeffs(in_w, out_w, filter);
            resample_horizontal(src, in_w as usize, 0, in_h as usize, out_w as usize, &horiz)
        }
        (false, true) => {
            let vert = precompute_coeffs(in_h, out_h, filter);
            resample_vertical(src, in_w as usize, out_h as usize, 0, &vert)
        }
        (true, true) if horizontal_first => {
            let vert = precompute_coeffs(in_h, out_h, filter);
            let horiz = precompute_coeffs(in_w, out_w, filter);
            let ybox_first = vert.bounds.first().map_or(0, |&(y, _)| y);
            let ybox_last = vert.bounds.last().map_or(0, |&(y, n)| y + n);
            let tmp = resample_horizontal(
                src,
                in_w as usize,
                ybox_first,
                ybox_last.saturating_sub(ybox_first),
                out_w as usize,
                &horiz,
            );
            resample_vertical(&tmp, out_w as usize, out_h as usize, ybox_first, &vert)
        }
        (true, true) => {
            let vert = precompute_coeffs(in_h, out_h, filter);
            let horiz = precompute_coeffs(in_w, out_w, filter);
            let tmp = resample_vertical(src, in_w as usize, out_h as usize, 0, &vert);
            resample_horizontal(
                &tmp,
                in_w as usize,
                0,
                out_h as usize,
                out_w as usize,
                &horiz,
            )
        }
    }
}

/// Resizes an RGB8 image like Pillow's `Image.resize((width, height), filter)`
/// (no `box`, `reducing_gap=None`), bit-exact for the given Pillow release.
///
/// Same size returns a copy. A zero target or source dimension yields a
/// black image of the requested size (Pillow would raise).
pub fn resize_with(
    img: &RgbImage,
    width: u32,
    height: u32,
    filter: ResampleFilter,
    compat: PillowCompat,
) -> RgbImage {
    let filter = Filter::from(filter);
    let (in_w, in_h) = img.dimensions();
    if (in_w, in_h) == (width, height) {
        return img.clone();
    }
    if width == 0 || height == 0 || in_w == 0 || in_h == 0 {
        return RgbImage::new(width, height);
    }
    let src = img.as_raw();
    let data = match compat {
        PillowCompat::Legacy => resample_inner(src, (in_w, in_h), (width, height), filter, true),
        PillowCompat::V12_2 => {
            if u64::from(in_h) > u64::from(in_w) * 100 && height < in_h {
                // Two separate `im.resize` calls: vertical only, then horizontal only.
                let tmp = resample_inner(src, (in_w, in_h), (in_w, height), filter, true);
                resample_inner(&tmp, (in_w, height), (width, height), filter, true)
            } else {
                resample_inner(src, (in_w, in_h), (width, height), filter, true)
            }
        }
        PillowCompat::V13 => {
            // `!((in_h - out_h) > 0 && (in_h - out_h) > (in_w - out_w) * 2)` in C int.
            let dy = i64::from(in_h) - i64::from(height);
            let dx = i64::from(in_w) - i64::from(width);
            let horizontal_first = !(dy > 0 && dy > dx * 2);
            resample_inner(src, (in_w, in_h), (width, height), filter, horizontal_first)
        }
    };
    // The buffer length always matches `width * height * 3`.
    RgbImage::from_raw(width, height, data).unwrap_or_else(|| RgbImage::new(width, height))
}

/// Resizes like Pillow's `Image.resize((width, height), Image.BICUBIC)`
/// (no `box`, `reducing_gap=None`), bit-exact with Pillow >= 13.0 on RGB8;
/// see [`resize_with`] for older Pillow pass orders.
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    resize_with(
        img,
        width,
        height,
        ResampleFilter::Bicubic,
        PillowCompat::default(),
    )
}

/// Resizes like Pillow's `Image.resize((width, height), Image.BILINEAR)`
/// (no `box`, `reducing_gap=None`), bit-exact with Pillow >= 13.0 on RGB8;
/// see [`resize_with`] for older Pillow pass orders.
pub fn resize_bilinear(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    resize_with(
        img,
        width,
        height,
        ResampleFilter::Bilinear,
        PillowCompat::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::image::Rgb;

    fn gray_row(values: &[u8]) -> RgbImage {
        RgbImage::from_fn(values.len() as u32, 1, |x, _| {
            let v = values[x as usize];
            Rgb([v, v, v])
        })
    }

    #[test]
    fn bicubic_4_to_2_by_hand() {
        // scale = 2, filterscale = 2, support = 4, ksize = 9.
        // xx = 0: center = 1, xmin = max((int)(-2.5), 0) = 0, xmax = min((int)5.5, 4) = 4.
        //   taps x = 0..3: bicubic((x - 1 + 0.5) / 2) = bicubic(-0.25, 0.25, 0.75, 1.25)
        //   = 0.8671875, 0.8671875, 0.2265625, -0.0703125; sum = 1.890625.
        // xx = 1: center = 3, xmin = (int)(-0.5) = 0, xmax = min((int)7.5, 4) = 4.
        //   taps: bicubic(-1.25, -0.75, -0.25, 0.25), the mirrored set.
        let w = [0.8671875, 0.8671875, 0.2265625, -0.0703125];
        let sum: f64 = w.iter().sum();
        let k: Vec<i64> = w
            .iter()
            .map(|&v| i64::from(normalize_coeff(v / sum)))
            .collect();
        // 0.8671875 / 1.890625 * 2^22 = 1923833.9 -> 1923834, ..., -155986.9 -> -155987.
        assert_eq!(k, vec![1_923_834, 1_923_834, 502_623, -155_987]);
        // out0 = (2097152 + 19238340 + 96191700 + 100524600 - 39776685) >> 22
        //      = 178275107 >> 22 = 42.
        // out1 = (2097152 + 490577670 + 384766800 + 25131150 - 1559870) >> 22
        //      = 901012902 >> 22 = 214.
        let img = gray_row(&[10, 50, 200, 255]);
        let out = resize_bicubic(&img, 2, 1);
        assert_eq!(out.dimensions(), (2, 1));
        assert_eq!(out.get_pixel(0, 0).0, [42, 42, 42]);
        assert_eq!(out.get_pixel(1, 0).0, [214, 214, 214]);
        // Same along the vertical axis.
        let col = RgbImage::from_fn(1, 4, |_, y| {
            let v = [10, 50, 200, 255][y as usize];
            Rgb([v, v, v])
        });
        let out = resize_bicubic(&col, 1, 2);
        assert_eq!(out.get_pixel(0, 0).0, [42, 42, 42]);
        assert_eq!(out.get_pixel(0, 1).0, [214, 214, 214]);
    }

    #[test]
    fn bilinear_4_to_2_by_hand() {
        // support = 1 * 2 = 2. xx = 0: center = 1, xmin = (int)(-0.5) = 0,
        // xmax = (int)3.5 = 3: triangle(-0.25, 0.25, 0.75) = 0.75, 0.75, 0.25
        // -> (7.5 + 37.5 + 50) / 1.75 = 54.29 -> 54.
        // xx = 1: center = 3, xmin = (int)1.5 = 1, xmax = min((int)5.5, 4) - 1 = 3:
        // triangle(-0.75, -0.25, 0.25) = 0.25, 0.75, 0.75
        // -> (12.5 + 150 + 191.25) / 1.75 = 202.14 -> 202.
        let img = gray_row(&[10, 50, 200, 255]);
        let out = resize_bilinear(&img, 2, 1);
        assert_eq!(out.get_pixel(0, 0).0[0], 54);
        assert_eq!(out.get_pixel(1, 0).0[0], 202);
    }

    #[test]
    fn pass_order_matches_pillow_versions() {
        // 6x5 -> 5x2: the height shrinks by 3 > 2 * 1 pixels, so Pillow 13
        // runs the vertical pass first; older Pillow runs horizontal first.
        // Expected red channels were produced by Pillow 13.0.0 and 11.3.0.
        let img = RgbImage::from_fn(6, 5, |x, y| {
            let v = |c: u32| ((x * 37 + y * 91 + c * 50) % 256) as u8;
            Rgb([v(0), v(1), v(2)])
        });
        let red = |out: &RgbImage| -> Vec<u8> { out.pixels().map(|p| p.0[0]).collect() };
        let v13 = resize_with(&img, 5, 2, ResampleFilter::Bicubic, PillowCompat::V13);
        assert_eq!(red(&v13), [86, 107, 105, 163, 116, 98, 119, 123, 106, 111]);
        assert_eq!(resize_bicubic(&img, 5, 2), v13);
        let legacy = resize_with(&img, 5, 2, ResampleFilter::Bicubic, PillowCompat::Legacy);
        assert_eq!(
            red(&legacy),
            [85, 107, 106, 164, 116, 97, 119, 124, 106, 111]
        );
    }

    #[test]
    fn identity_resize_is_copy() {
        let img = RgbImage::from_fn(7, 5, |x, y| Rgb([x as u8 * 30, y as u8 * 50, 3]));
        assert_eq!(resize_bicubic(&img, 7, 5), img);
        assert_eq!(resize_bilinear(&img, 7, 5), img);
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(13, 9, Rgb([17, 128, 250]));
        for (w, h) in [(5, 4), (26, 18), (13, 3), (1, 1), (40, 9)] {
            let out = resize_bicubic(&img, w, h);
            assert!(out.pixels().all(|p| p.0 == [17, 128, 250]), "{w}x{h}");
        }
    }

    #[test]
    fn upscale_overshoot_is_clamped() {
        let img = gray_row(&[0, 0, 255, 255, 0, 0]);
        let out = resize_bicubic(&img, 24, 1);
        assert_eq!(out.dimensions(), (24, 1));
        // Bicubic overshoots above 255 next to the edge; it must clamp.
        assert!(out.pixels().any(|p| p.0[0] == 255));
        assert!(out.pixels().any(|p| p.0[0] == 0));
    }

    #[test]
    fn degenerate_sizes_do_not_panic() {
        let img = RgbImage::new(4, 4);
        assert_eq!(resize_bicubic(&img, 0, 3).dimensions(), (0, 3));
        let empty = RgbImage::new(0, 0);
        assert_eq!(resize_bicubic(&empty, 2, 2).dimensions(), (2, 2));
        let tall = RgbImage::from_fn(1, 300, |_, y| Rgb([y as u8, 0, 0]));
        assert_eq!(resize_bicubic(&tall, 2, 10).dimensions(), (2, 10));
    }
}
