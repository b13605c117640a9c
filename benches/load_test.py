#!/usr/bin/env python3
"""End-to-end load benchmark against a running OpenAI-compatible server (ours or a peer's).

Sends `--requests` streaming chat completions with `--concurrency` in flight, each with an
optional image (as a data URL), and reports time to first token, inter-token latency, output
throughput and request rate. Bounded in count and time; talks only to the given base URL
(loopback in our runs). Same client for every server, so figures compare side by side.

    python benches/load_test.py --base-url http://127.0.0.1:8000/v1 --model tiny \
        --image models/reference/llava-1.5-tiny/goldens/images/square_50.png
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import time

import httpx


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[k]


async def one_request(client: httpx.AsyncClient, args, body: dict) -> dict:
    start = time.perf_counter()
    first = None
    stamps = []
    usage = None
    async with client.stream("POST", f"{args.base_url}/chat/completions", json=body) as resp:
        if resp.status_code != 200:
            return {"error": f"HTTP {resp.status_code}: {(await resp.aread())[:200]!r}"}
        async for line in resp.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                if choice.get("delta", {}).get("content"):
                    now = time.perf_counter()
                    first = first or now
                    stamps.append(now)
    end = time.perf_counter()
    return {
        "ttft": (first or end) - start,
        "latency": end - start,
        "itl": [b - a for a, b in zip(stamps, stamps[1:])],
        "completion_tokens": (usage or {}).get("completion_tokens", len(stamps)),
        "prompt_tokens": (usage or {}).get("prompt_tokens", 0),
    }


async def run(args) -> dict:
    content: list[dict] = []
    if args.image:
        b64 = base64.b64encode(open(args.image, "rb").read()).decode()
        content.append({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}})
    content.append({"type": "text", "text": args.prompt})
    # Text-only requests send a plain string, as most clients do (some servers' chat
    # templates cannot take a list of parts).
    message = content if args.image else args.prompt
    body = {
        "model": args.model,
        "messages": [{"role": "user", "content": message}],
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    sem = asyncio.Semaphore(args.concurrency)
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(timeout=args.timeout, headers=headers, limits=limits) as client:

        async def guarded():
            async with sem:
                return await one_request(client, args, body)

        start = time.perf_counter()
        results = await asyncio.gather(*(guarded() for _ in range(args.requests)))
        wall = time.perf_counter() - start
    ok = [r for r in results if "error" not in r]
    errors = [r["error"] for r in results if "error" in r]
    out_tokens = sum(r["completion_tokens"] for r in ok)
    itl = [x for r in ok for x in r["itl"]]
    return {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "ok": len(ok),
        "errors": errors[:5],
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(ok) / wall, 3),
        "output_tokens_per_s": round(out_tokens / wall, 1),
        "ttft_p50_ms": round(1000 * percentile([r["ttft"] for r in ok], 0.5), 1),
        "ttft_p95_ms": round(1000 * percentile([r["ttft"] for r in ok], 0.95), 1),
        "itl_p50_ms": round(1000 * percentile(itl, 0.5), 2),
        "itl_mean_ms": round(1000 * statistics.fmean(itl), 2) if itl else None,
        "prompt_tokens": ok[0]["prompt_tokens"] if ok else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--model", required=True)
    p.add_argument("--api-key", default=None)
    p.add_argument("--image", default=None, help="PNG sent as a data URL with every request")
    p.add_argument("--prompt", default="What is shown in this image?")
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--timeout", type=float, default=120.0)
    args = p.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=1))


if __name__ == "__main__":
    main()
