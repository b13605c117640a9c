//! Image-token counts for LLaVA-NeXT over a grid of sizes (20…2000 px in each dimension plus
//! extreme aspect ratios), against the table transformers' processor produced
//! (models/make_token_counts.py → models/reference/token_counts_llava_next.json).

use std::path::Path;

use serde_json::Value;
use vlm_inference::image::anyres::next_image_tokens;

#[test]
fn llava_next_token_counts_match_the_hf_processor() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/reference/token_counts_llava_next.json");
    let table: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let pins: Vec<(u32, u32)> = table["image_grid_pinpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_u64().unwrap() as u32))
        .collect();
    let tile = table["tile"].as_u64().unwrap() as u32;
    let patch = table["patch_size"].as_u64().unwrap() as u32;
    let additional = table["num_additional_image_tokens"].as_u64().unwrap() as u32;
    let rows = table["counts"].as_array().unwrap();
    assert!(rows.len() > 100);
    let mut mismatches = Vec::new();
    for r in rows {
        let (h, w) = (
            r["height"].as_u64().unwrap() as u32,
            r["width"].as_u64().unwrap() as u32,
        );
        // "default" strategy: the processor drops the class token from the count.
        let ours = next_image_tokens((h, w), &pins, tile, patch, additional).unwrap() - 1;
        if ours as u64 != r["tokens"].as_u64().unwrap() {
            mismatches.push((h, w, ours, r["tokens"].clone()));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

#[test]
fn llava_onevision_token_counts_match_the_hf_processor() {
    use vlm_inference::image::anyres::onevision_image_tokens;
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/reference/token_counts_llava_onevision.json");
    let table: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let pins: Vec<(u32, u32)> = table["image_grid_pinpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_u64().unwrap() as u32))
        .collect();
    let tile = table["tile"].as_u64().unwrap() as u32;
    let patch = table["patch_size"].as_u64().unwrap() as u32;
    let max = table["anyres_max"].as_u64().unwrap() as u32;
    let rows = table["counts"].as_array().unwrap();
    assert!(rows.len() > 100);
    let mut mismatches = Vec::new();
    for r in rows {
        let (h, w) = (
            r["height"].as_u64().unwrap() as u32,
            r["width"].as_u64().unwrap() as u32,
        );
        let ours = onevision_image_tokens((h, w), &pins, tile, patch, max).unwrap();
        if ours as u64 != r["tokens"].as_u64().unwrap() {
            mismatches.push((h, w, ours, r["tokens"].clone()));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:?}");
}
