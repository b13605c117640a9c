//! LLaVA-NeXT "anyres" tiling, as transformers' `LlavaNextImageProcessor` (PIL backend) and
//! `LlavaNextProcessor` compute it: pick the best-fit grid resolution, resize keeping the
//! aspect ratio, pad with black to the grid, cut into tiles; the base image (resized to the
//! tile size) comes first. Token counts follow the processor's arithmetic, including its
//! `int(round(x, 7))` unpadding.

use ::image::{Rgb, RgbImage};

use super::resize::{resize_with, PillowCompat, ResampleFilter};

/// `select_best_resolution`: the `(height, width)` pinpoint that keeps the most of the image
/// and, on ties, wastes the least.
pub fn select_best_resolution(orig_hw: (u32, u32), pinpoints: &[(u32, u32)]) -> Option<(u32, u32)> {
    let (oh, ow) = (f64::from(orig_hw.0), f64::from(orig_hw.1));
    let mut best = None;
    let mut max_effective = 0u64;
    let mut min_wasted = u64::MAX;
    for &(h, w) in pinpoints {
        let scale = (f64::from(w) / ow).min(f64::from(h) / oh);
        let (dw, dh) = ((ow * scale) as u64, (oh * scale) as u64);
        let effective = (dw * dh).min(u64::from(orig_hw.0) * u64::from(orig_hw.1));
        let wasted = (u64::from(w) * u64::from(h)).saturating_sub(effective);
        if effective > max_effective || (effective == max_effective && wasted < min_wasted) {
            max_effective = effective;
            min_wasted = wasted;
            best = Some((h, w));
        }
    }
    best
}

/// `get_patch_output_size`: the size the image is resized to inside `target` `(h, w)`.
pub fn patch_output_size(orig_hw: (u32, u32), target_hw: (u32, u32)) -> (u32, u32) {
    let (oh, ow) = (f64::from(orig_hw.0), f64::from(orig_hw.1));
    let (th, tw) = target_hw;
    let scale_w = f64::from(tw) / ow;
    let scale_h = f64::from(th) / oh;
    if scale_w < scale_h {
        (((oh * scale_w).ceil() as u32).min(th), tw)
    } else {
        (th, ((ow * scale_h).ceil() as u32).min(tw))
    }
}

/// The base image followed by the grid tiles, row-major, each `tile × tile`.
/// `base_hw` is the processor's `size` as `(height, width)`.
pub fn anyres_tiles(
    img: &RgbImage,
    pinpoints: &[(u32, u32)],
    base_hw: (u32, u32),
    tile: u32,
    filter: ResampleFilter,
) -> Option<Vec<RgbImage>> {
    let orig = (img.height(), img.width());
    let best = select_best_resolution(orig, pinpoints)?;
    let (nh, nw) = patch_output_size(orig, best);
    let resized = resize_with(img, nw, nh, filter, PillowCompat::default());
    // `_pad_for_patching`: centre the resized image on a black canvas of the best size.
    let mut canvas = RgbImage::from_pixel(best.1, best.0, Rgb([0, 0, 0]));
    let (paste_y, paste_x) = ((best.0 - nh) / 2, (best.1 - nw) / 2);
    ::image::imageops::replace(
        &mut canvas,
        &resized,
        i64::from(paste_x),
        i64::from(paste_y),
    );
    let mut out = vec![resize_with(
        img,
        base_hw.1,
        base_hw.0,
        filter,
        PillowCompat::default(),
    )];
    let mut y = 0;
    while y < best.0 {
        let mut x = 0;
        while x < best.1 {
            let h = tile.min(best.0 - y);
            let w = tile.min(best.1 - x);
            out.push(::image::imageops::crop_imm(&canvas, x, y, w, h).to_image());
            x += tile;
        }
        y += tile;
    }
    Some(out)
}

/// Grid shape `(rows, cols)` of tiles for an image (`get_anyres_image_grid_shape`).
pub fn grid_shape(orig_hw: (u32, u32), pinpoints: &[(u32, u32)], tile: u32) -> Option<(u32, u32)> {
    let (h, w) = select_best_resolution(orig_hw, pinpoints)?;
    Some((h / tile, w / tile))
}

/// Python's `int(round(x, 7))` for the non-negative values used here.
fn round7_trunc(x: f64) -> i64 {
    ((x * 1e7).round() / 1e7) as i64
}

/// `(rows, cols)` of the feature grid left after removing the padding (`unpad_image`), for
/// a `cur_h × cur_w` feature grid of an `orig_hw` image.
pub fn unpadded_shape(orig_hw: (u32, u32), cur_h: u32, cur_w: u32) -> (u32, u32) {
    let (oh, ow) = (f64::from(orig_hw.0), f64::from(orig_hw.1));
    let original_aspect = ow / oh;
    let current_aspect = f64::from(cur_w) / f64::from(cur_h);
    if original_aspect > current_aspect {
        let new_h = round7_trunc(oh * (f64::from(cur_w) / ow));
        let pad = ((i64::from(cur_h) - new_h) / 2).max(0) as u32;
        (cur_h - 2 * pad, cur_w)
    } else {
        let new_w = round7_trunc(ow * (f64::from(cur_h) / oh));
        let pad = ((i64::from(cur_w) - new_w) / 2).max(0) as u32;
        (cur_h, cur_w - 2 * pad)
    }
}

/// OneVision's `anyres_max_N` rule: the feature grid `(rows, cols)` after the bilinear
/// downscale applied when it holds more than ~N tiles' worth (`ratio > 1.1`).
pub fn onevision_downscaled(rows: u32, cols: u32, per_side: u32, max_tiles: u32) -> (u32, u32) {
    let ratio = (f64::from(rows * cols) / f64::from(max_tiles * per_side * per_side)).sqrt();
    if ratio > 1.1 {
        (
            (f64::from(rows) / ratio).floor() as u32,
            (f64::from(cols) / ratio).floor() as u32,
        )
    } else {
        (rows, cols)
    }
}

/// The feature grid left of an `orig_hw` image after tiling and unpadding:
/// `(rows, cols, patches per tile side)`.
fn unpadded_grid(
    orig_hw: (u32, u32),
    pinpoints: &[(u32, u32)],
    tile: u32,
    patch: u32,
) -> Option<(u32, u32, u32)> {
    let (best_h, best_w) = select_best_resolution(orig_hw, pinpoints)?;
    let (scale_h, scale_w) = (best_h / tile, best_w / tile);
    let per_side = tile / patch;
    let (rows, cols) = unpadded_shape(orig_hw, per_side * scale_h, per_side * scale_w);
    Some((rows, cols, per_side))
}

/// Image tokens of one LLaVA-OneVision image (`LlavaOnevisionProcessor._get_number_of_features`,
/// single-image case): base grid + unpadded (and possibly downscaled) grid + newlines.
pub fn onevision_image_tokens(
    orig_hw: (u32, u32),
    pinpoints: &[(u32, u32)],
    tile: u32,
    patch: u32,
    max_tiles: u32,
) -> Option<usize> {
    let (rows, cols, per_side) = unpadded_grid(orig_hw, pinpoints, tile, patch)?;
    let (rows, cols) = onevision_downscaled(rows, cols, per_side, max_tiles);
    Some((rows * cols + rows + per_side * per_side) as usize)
}

/// Image tokens of one LLaVA-NeXT image (`LlavaNextProcessor._get_number_of_features`):
/// base grid (+ class tokens kept) + unpadded tiles grid + one newline per row.
/// `tile` is the tower's input size, `patch` its patch size.
pub fn next_image_tokens(
    orig_hw: (u32, u32),
    pinpoints: &[(u32, u32)],
    tile: u32,
    patch: u32,
    additional_tokens: u32,
) -> Option<usize> {
    let (rows, cols, per_side) = unpadded_grid(orig_hw, pinpoints, tile, patch)?;
    Some((rows * cols + rows + per_side * per_side + additional_tokens) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINS: [(u32, u32); 3] = [(28, 56), (56, 28), (56, 56)];

    #[test]
    fn best_resolution_and_output_size() {
        assert_eq!(select_best_resolution((50, 50), &PINS), Some((56, 56)));
        assert_eq!(select_best_resolution((40, 64), &PINS), Some((56, 56)));
        assert_eq!(select_best_resolution((20, 1000), &PINS), Some((28, 56)));
        assert_eq!(patch_output_size((40, 64), (56, 56)), (35, 56));
        assert_eq!(patch_output_size((70, 36), (56, 56)), (56, 29));
    }

    #[test]
    fn token_counts_match_the_processor_arithmetic() {
        // Values computed with transformers' LlavaNextProcessor formulas by hand:
        // 50×50: base 4 + 4×4 grid + 4 newlines = 24; 40×64: rows 4 → 2 (pad 1) → 4+8+2 = 14;
        // 70×36: cols 4 → 2 → 4+8+4 = 16.
        assert_eq!(next_image_tokens((50, 50), &PINS, 28, 14, 0), Some(24));
        assert_eq!(next_image_tokens((40, 64), &PINS, 28, 14, 0), Some(14));
        assert_eq!(next_image_tokens((70, 36), &PINS, 28, 14, 0), Some(16));
    }

    #[test]
    fn tiles_are_base_plus_grid() {
        let img = RgbImage::from_pixel(64, 40, Rgb([200, 10, 10]));
        let tiles = anyres_tiles(&img, &PINS, (28, 28), 28, ResampleFilter::Bicubic).unwrap();
        assert_eq!(tiles.len(), 5);
        assert!(tiles.iter().all(|t| t.dimensions() == (28, 28)));
        // 64×40 → 56×35 pasted at y = 10: the top rows of the first tiles are black padding.
        assert_eq!(tiles[1].get_pixel(0, 0), &Rgb([0, 0, 0]));
        assert_eq!(tiles[1].get_pixel(5, 20), &Rgb([200, 10, 10]));
    }
}
