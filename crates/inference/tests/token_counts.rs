//! Image-token counts for LLaVA-NeXT over a grid of sizes (20…2000 px in each dimension plus
//! extreme aspect ratios), against the table transformers' processor produced
//! (models/make_token_counts.py → models/reference/token_counts_llava_next.json).

use std::path::Path;

use serde_json::Value;
use vlm_inference::image::anyres::next_image_tokens;

/// A golden table: pinpoints, tile, patch size, the table itself and its rows.
fn load_table(file: &str) -> (Vec<(u32, u32)>, u32, u32, Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/reference")
        .join(file);
    let table: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let pins = table["image_grid_pinpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_u64().unwrap() as u32))
        .collect();
    let tile = table["tile"].as_u64().unwrap() as u32;
    let patch = table["patch_size"].as_u64().unwrap() as u32;
    assert!(table["counts"].as_array().unwrap().len() > 100);
    (pins, tile, patch, table)
}

/// Rows whose count differs from `ours(height, width)`.
fn mismatches(table: &Value, ours: impl Fn(u32, u32) -> usize) -> Vec<(u32, u32, usize, Value)> {
    table["counts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            let (h, w) = (
                r["height"].as_u64().unwrap() as u32,
                r["width"].as_u64().unwrap() as u32,
            );
            let n = ours(h, w);
            (n as u64 != r["tokens"].as_u64().unwrap()).then(|| (h, w, n, r["tokens"].clone()))
        })
        .collect()
}

#[test]
fn llava_next_token_counts_match_the_hf_processor() {
    let (pins, tile, patch, table) = load_table("token_counts_llava_next.json");
    let additional = table["num_additional_image_tokens"].as_u64().unwrap() as u32;
    // "default" strategy: the processor drops the class token from the count.
    let bad = mismatches(&table, |h, w| {
        next_image_tokens((h, w), &pins, tile, patch, additional).unwrap() - 1
    });
    assert!(bad.is_empty(), "{bad:?}");
}

#[test]
fn llava_onevision_token_counts_match_the_hf_processor() {
    use vlm_inference::image::anyres::onevision_image_tokens;
    let (pins, tile, patch, table) = load_table("token_counts_llava_onevision.json");
    let max = table["anyres_max"].as_u64().unwrap() as u32;
    let bad = mismatches(&table, |h, w| {
        onevision_image_tokens((h, w), &pins, tile, patch, max).unwrap()
    });
    assert!(bad.is_empty(), "{bad:?}");
}
