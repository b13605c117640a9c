#!/usr/bin/env python3
"""Golden image-token counts from transformers' LLaVA-NeXT processor arithmetic, over a grid
of image sizes, for the real llava-v1.6 settings (336-px tiles, 14-px patches, CLIP "default").

Run by hand with the reference venv (`.venv-ref/bin/python models/make_token_counts.py`);
writes models/reference/token_counts_llava_next.json.
"""

import json
from pathlib import Path

from transformers import (
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    LlavaOnevisionImageProcessorPil,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
    PreTrainedTokenizerFast,
)
from tokenizers import Tokenizer, models

PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
SIZES = [20, 37, 100, 224, 336, 500, 672, 1000, 1337, 2000]
EXTREMES = [(20, 1000), (1000, 20), (14, 2000), (2000, 14), (1, 1), (3000, 17)]


def main() -> None:
    tok = Tokenizer(models.WordLevel({"<image>": 0, "<unk>": 1}, unk_token="<unk>"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    ip = LlavaNextImageProcessorPil(
        size={"shortest_edge": 336},
        crop_size={"height": 336, "width": 336},
        image_grid_pinpoints=PINPOINTS,
    )
    proc = LlavaNextProcessor(
        image_processor=ip,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
    )
    rows = []
    sizes = [(h, w) for h in SIZES for w in SIZES] + EXTREMES
    for h, w in sizes:
        n = proc._get_number_of_features(h, w, 336, 336) - 1  # "default" drops the CLS token
        rows.append({"height": h, "width": w, "tokens": n})
    out = {
        "what": "LlavaNextProcessor image tokens per image",
        "image_grid_pinpoints": PINPOINTS,
        "tile": 336,
        "patch_size": 14,
        "vision_feature_select_strategy": "default",
        "num_additional_image_tokens": 1,
        "counts": rows,
    }
    path = Path(__file__).resolve().parent / "reference" / "token_counts_llava_next.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {len(rows)} counts to {path}")

    # LLaVA-OneVision (llava-onevision-qwen2-0.5b-ov-hf settings): SigLIP 384 px, 14-px patches,
    # 729 base tokens, anyres_max_9 over the processor's default 36 pinpoints.
    ov_ip = LlavaOnevisionImageProcessorPil(size={"height": 384, "width": 384})
    ov = LlavaOnevisionProcessor(
        image_processor=ov_ip,
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(),
        num_image_tokens=729,
        vision_feature_select_strategy="full",
        image_token="<image>",
        vision_aspect_ratio="anyres_max_9",
    )
    ov_rows = [
        {"height": h, "width": w, "tokens": ov._get_number_of_features(h, w, 384, 384)}
        for h, w in sizes
    ]
    ov_out = {
        "what": "LlavaOnevisionProcessor image tokens per image (single-image prompts)",
        "image_grid_pinpoints": ov_ip.image_grid_pinpoints,
        "tile": 384,
        "patch_size": 14,
        "anyres_max": 9,
        "counts": ov_rows,
    }
    path = Path(__file__).resolve().parent / "reference" / "token_counts_llava_onevision.json"
    path.write_text(json.dumps(ov_out, indent=1) + "\n")
    print(f"wrote {len(ov_rows)} counts to {path}")


if __name__ == "__main__":
    main()
