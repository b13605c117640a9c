#!/usr/bin/env python3
"""Prefill and decode tok/s of vlm-server's engine and llama.cpp, side by side, same run.

    python3 benches/compare_llama_cpp.py [--model models/.cache/SmolLM2-135M-Instruct.Q4_1.gguf]
        [--threads 2] [--prompt-tokens 200] [--decode-tokens 128] [--reps 3] [--rounds 3]
        [--requantize q4_k_m]

--requantize FTYPE first writes the model requantized by llama.cpp's own quantizer
(llama_model_quantize, e.g. q4_k_m, the mix most hub GGUFs ship) next to it and compares on
that file.

llama.cpp comes from the PyPI package llama-cpp-python (it builds llama.cpp from source,
a few minutes on 2 cores), installed into its own venv (.venv-llamacpp, ignored; or pass
--llama-python to reuse one). Nothing of llama.cpp is committed. Both sides get the same
prompt token ids (the GGUF tokenizers agree: crates/inference/tests/gguf_tokenizer.rs),
one warm-up, then the best of --reps runs: prefill = one pass over the prompt into an empty
cache, decode = greedy steps after it, EOS ignored. Both sides are timed by wall clock around
their calls; llama.cpp's decode time therefore includes llama-cpp-python's per-token work
(wrapping the logits row in numpy and the argmax), as ours includes our argmax. Prints a
Markdown table with ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"

LLAMA_SIDE = textwrap.dedent(
    r"""
    import json, sys, time
    import numpy as np
    import llama_cpp
    model, threads, n_prompt, n_decode, reps, text = sys.argv[1:7]
    threads, n_prompt, n_decode, reps = int(threads), int(n_prompt), int(n_decode), int(reps)
    m = llama_cpp.Llama(model_path=model, n_ctx=n_prompt + n_decode + 8, n_batch=512,
                        n_threads=threads, n_threads_batch=threads, verbose=False)
    n_vocab = m.n_vocab()
    ids = []
    while len(ids) < n_prompt:
        ids += m.tokenize(text.encode(), add_bos=False, special=False)
    ids = ids[:n_prompt]
    best_p = best_d = float("inf")
    for rep in range(reps + 1):
        m.reset()
        t = time.perf_counter(); m.eval(ids); p = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(n_decode):
            # The last position's logits straight from llama.cpp: llama-cpp-python's own
            # `scores` is only filled with logits_all=True.
            last = np.ctypeslib.as_array(m._ctx.get_logits(), shape=(n_vocab,))
            nxt = int(np.argmax(last))
            m.eval([nxt])
        d = time.perf_counter() - t
        if rep:
            best_p, best_d = min(best_p, p), min(best_d, d)
    print(json.dumps({"prefill_tok_s": n_prompt / best_p, "decode_tok_s": n_decode / best_d,
                      "version": llama_cpp.__version__}))
    """
)


def bench_text() -> str:
    src = (REPO / "benches" / "gguf_speed.rs").read_text()
    start = src.index('const TEXT: &str = "') + len('const TEXT: &str = "')
    body = src[start : src.index('";', start)]
    return body.replace("\\\n", "")


def llama_python(args) -> str:
    if args.llama_python:
        return args.llama_python
    venv = REPO / ".venv-llamacpp"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "numpy", LLAMA_CPP_PYTHON],
                       check=True, env={**os.environ, "CMAKE_ARGS": "-DGGML_NATIVE=ON"})
    return str(py)


# llama.cpp's llama_ftype values for --requantize.
FTYPES = {"q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9, "q4_k_m": 15, "q5_k_m": 17,
          "q6_k": 18}

REQUANTIZE = textwrap.dedent(
    r"""
    import ctypes, sys
    import llama_cpp
    src, dst, ftype = sys.argv[1], sys.argv[2], int(sys.argv[3])
    p = llama_cpp.llama_model_quantize_default_params()
    p.allow_requantize = True
    p.ftype = ftype
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    sys.exit(rc)
    """
)


def requantize(py: str, model: str, ftype: str) -> str:
    src = Path(model)
    if src.suffix != ".gguf":
        sys.exit(f"--requantize needs a .gguf model, got {src}")
    dst = src.with_name(f"{src.stem}.requant-{ftype}.gguf")
    if not dst.exists():
        # Written under a temporary name first: an interrupted run leaves no half file behind.
        tmp = dst.with_name(dst.name + ".part")
        subprocess.run([py, "-c", REQUANTIZE, str(src), str(tmp), str(FTYPES[ftype])],
                       check=True, stdout=subprocess.DEVNULL)
        tmp.rename(dst)
    return str(dst)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "models/.cache/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=200)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--llama-python", help="a python with llama-cpp-python installed")
    ap.add_argument("--requantize", choices=sorted(FTYPES),
                    help="compare on the model requantized by llama.cpp to this type")
    args = ap.parse_args()
    py = llama_python(args)
    if args.requantize:
        args.model = requantize(py, args.model, args.requantize)
    common = [str(args.prompt_tokens), str(args.decode_tokens), str(args.reps)]

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "vlm-inference",
                    "--bench", "gguf_speed"], cwd=REPO, check=True)
    ours_cmd = ["cargo", "bench", "-q", "-p", "vlm-inference", "--bench", "gguf_speed", "--",
                args.model, "--prompt-tokens", common[0], "--decode-tokens", common[1],
                "--reps", common[2], "--threads", str(args.threads), "--json"]
    llama_cmd = [py, "-c", LLAMA_SIDE, args.model, str(args.threads), *common, bench_text()]

    def run(cmd, cwd=None) -> dict:
        out = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    # Alternate the two engines so a noisy neighbour hits both alike; report medians.
    rounds = []
    for _ in range(args.rounds):
        rounds.append((run(ours_cmd, cwd=REPO), run(llama_cmd)))
    version = rounds[0][1]["version"]

    print(f"model {Path(args.model).name}, {args.threads} threads, "
          f"{args.prompt_tokens}-token prompt, {args.decode_tokens} decoded tokens, best of "
          f"{args.reps} per round, median of {args.rounds} alternating rounds; llama.cpp via "
          f"llama-cpp-python {version}\n")
    print("| | vlm-server (tok/s) | llama.cpp (tok/s) | ratio | per-round ratios |")
    print("|---|---:|---:|---:|---|")
    for key, name in (("prefill_tok_s", "prefill"), ("decode_tok_s", "decode")):
        ours = statistics.median(r[0][key] for r in rounds)
        theirs = statistics.median(r[1][key] for r in rounds)
        ratios = [r[0][key] / r[1][key] for r in rounds]
        print(f"| {name} | {ours:.1f} | {theirs:.1f} | {statistics.median(ratios):.2f}× | "
              + ", ".join(f"{x:.2f}" for x in ratios) + " |")


if __name__ == "__main__":
    main()
