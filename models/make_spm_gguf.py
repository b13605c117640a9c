#!/usr/bin/env python3
"""A tiny SentencePiece-style (`tokenizer.ggml.model = "llama"`) GGUF vocabulary and the
token ids llama.cpp gives for test strings.

Run by hand in a venv with llama-cpp-python and gguf (never in CI):
    python models/make_spm_gguf.py
Writes models/reference/spm-tiny/vocab.gguf (vocabulary only, ~20 KB) and
models/reference/spm-tiny/llama_cpp_tokens.json.

The vocabulary: <unk>, <s>, </s>, the 256 byte-fallback tokens, every character of the
corpus, and the corpus's most frequent ▁-prefixed words and word pieces with scores that
prefer longer pieces, so that merges, byte fallback (characters outside the vocabulary)
and the leading-space rule are all exercised.
"""

import collections
import json
from pathlib import Path

import gguf
import llama_cpp

OUT = Path(__file__).resolve().parent / "reference" / "spm-tiny"
CORPUS = (
    "the quick brown fox jumps over the lazy dog. the dog sleeps; the fox runs. "
    "hello world, hello there! numbers like 12345 and 3.14 appear too. "
    "they thought the theory was thorough, then they went home."
)
TEXTS = [
    "the quick brown fox",
    "Hello world",
    "hello  there   friend",
    " leading space",
    "the theory they thought",
    "numbers 12345 and 3.14",
    "unknown ü and 東京 and 🙂",
    "line one\nline two",
    "<s>the</s> dog",
    "",
]


def pieces() -> list[tuple[str, float]]:
    words = collections.Counter("▁" + w for w in CORPUS.replace("\n", " ").split(" ") if w)
    subs = collections.Counter()
    for w, c in words.items():
        for i in range(len(w)):
            for j in range(i + 2, min(len(w), i + 6) + 1):
                subs[w[i:j]] += c
    chars = sorted(set(CORPUS.replace(" ", "▁")) | {"▁"})
    out = {ch: -10.0 - i * 0.01 for i, ch in enumerate(chars)}
    for rank, (p, c) in enumerate(subs.most_common(160)):
        out.setdefault(p, -1.0 - rank * 0.05 + 0.2 * len(p))
    for rank, (w, c) in enumerate(words.most_common(30)):
        out[w] = 0.5 * len(w) - rank * 0.01
    return sorted(out.items(), key=lambda kv: -kv[1])


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "vocab.gguf"
    tokens, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types.append(6)
    for p, s in pieces():
        tokens.append(p)
        scores.append(s)
        types.append(1)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)
    w.add_chat_template("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    model = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    cases = [
        {"text": t, "ids": model.tokenize(t.encode("utf-8"), add_bos=True, special=True)}
        for t in TEXTS
    ]
    out = {
        "what": "llama.cpp token ids (tokenize(add_bos=True, special=True)) of vocab.gguf",
        "llama_cpp_python": llama_cpp.__version__,
        "vocab_size": len(tokens),
        "cases": cases,
    }
    (OUT / "llama_cpp_tokens.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    print(f"{len(tokens)} tokens, {len(cases)} cases -> {OUT}")
    for c in cases:
        print(repr(c["text"]), [tokens[i] for i in c["ids"]])


if __name__ == "__main__":
    main()
