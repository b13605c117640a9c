"""Sampling fields through the official `openai` client: temperature, top_p, seed, n, stop,
max_tokens / max_completion_tokens, penalties, logit_bias, logprobs / top_logprobs, and the
accepted-or-refused extras (user, response_format, tools, tool_choice).

Semantics are those of crates/server/src/openai/validate.rs and crates/inference/src/sampling/.
The tiny model emits byte-level noise, but deterministically: its greedy answer to PROMPT runs
well past 40 tokens without an end-of-sequence token, which the tests below rely on.
"""

from __future__ import annotations

import re

import openai
import pytest

from conftest import SERVED_NAME

PROMPT = "Describe the colors, shapes and objects you can see."
MESSAGES = [{"role": "user", "content": PROMPT}]
MAX_N = 16  # the server's --max-n default (conftest does not pass it)
VOCAB = 1000


def create(client, **kw):
    kw.setdefault("model", SERVED_NAME)
    kw.setdefault("messages", MESSAGES)
    kw.setdefault("max_tokens", 16)
    return client.chat.completions.create(**kw)


def content(completion, i: int = 0) -> str:
    return completion.choices[i].message.content


def stream_chunks(client, **kw) -> list:
    kw["stream"] = True
    with create(client, **kw) as stream:
        return list(stream)


def streamed_text(chunks, index: int = 0) -> str:
    return "".join(
        c.delta.content or "" for ch in chunks for c in ch.choices if c.index == index
    )


def streamed_finish(chunks, index: int = 0) -> list:
    return [
        c.finish_reason
        for ch in chunks
        for c in ch.choices
        if c.index == index and c.finish_reason is not None
    ]


def assert_bad_request(exc_info, param: str) -> None:
    exc = exc_info.value
    assert exc.status_code == 400
    body = exc.response.json()["error"]
    assert body["type"] == "invalid_request_error", body
    assert body["param"] == param, body
    assert exc.param == param
    assert isinstance(body["message"], str) and body["message"]


def refused(client, param: str, **kw) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        create(client, **kw)
    assert_bad_request(e, param)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet (the tokenizer's ByteLevel pre-tokenizer)."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def token_id(tokenizer, token_bytes: list[int]) -> int:
    alphabet = bytes_to_unicode()
    piece = "".join(alphabet[b] for b in token_bytes)
    tid = tokenizer.token_to_id(piece)
    assert tid is not None, (token_bytes, piece)
    return tid


@pytest.fixture(scope="module")
def greedy40(client):
    """The greedy answer at 40 tokens (with logprobs, which must not change it)."""
    c = create(client, max_tokens=40, logprobs=True, top_logprobs=5)
    assert c.choices[0].finish_reason == "length", "the greedy answer must run 40 tokens"
    assert c.usage.completion_tokens == 40
    return c


# ---------------------------------------------------------------- temperature


def test_temperature_zero_is_greedy_default(client, greedy40):
    omitted = create(client, max_tokens=40)
    zero = create(client, max_tokens=40, temperature=0)
    assert content(zero) == content(omitted) == content(greedy40)
    # Greedy ignores the seed.
    seeded = create(client, max_tokens=40, temperature=0, seed=123)
    assert content(seeded) == content(omitted)


def test_temperature_one_with_seed_is_reproducible(client, greedy40):
    a = create(client, temperature=1.0, seed=7)
    b = create(client, temperature=1.0, seed=7)
    assert content(a) == content(b)
    assert a.usage.completion_tokens == b.usage.completion_tokens
    # Streaming draws the same numbers.
    chunks = stream_chunks(client, temperature=1.0, seed=7)
    assert streamed_text(chunks) == content(a)


def test_temperature_out_of_range(client):
    refused(client, "temperature", temperature=2.5)
    refused(client, "temperature", temperature=-0.1)


def test_temperature_max_accepted(client):
    c = create(client, temperature=2.0, seed=1, max_tokens=4)
    assert c.usage.completion_tokens <= 4


# ---------------------------------------------------------------- top_p


def test_top_p_with_seed_is_reproducible(client):
    a = create(client, temperature=1.0, top_p=0.5, seed=11)
    b = create(client, temperature=1.0, top_p=0.5, seed=11)
    assert content(a) == content(b)
    chunks = stream_chunks(client, temperature=1.0, top_p=0.5, seed=11)
    assert streamed_text(chunks) == content(a)


def test_tiny_top_p_is_greedy(client, greedy40):
    """A nucleus reaching 1e-6 holds only the most likely token: greedy, at any temperature,
    with log probability 0 after renormalization and −9999 (−∞) for the alternatives."""
    c = create(
        client, max_tokens=40, temperature=1.5, top_p=1e-6, seed=3, logprobs=True, top_logprobs=2
    )
    assert content(c) == content(greedy40)
    for e in c.choices[0].logprobs.content:
        assert abs(e.logprob) < 1e-5, e  # ln(1) up to float rounding
        assert e.top_logprobs[0].token == e.token
        assert e.top_logprobs[1].logprob == -9999.0, e


@pytest.mark.parametrize("top_p", [0, 1.5, -0.5])
def test_top_p_out_of_range(client, top_p):
    refused(client, "top_p", temperature=1.0, top_p=top_p)


# ---------------------------------------------------------------- seed


def test_same_seed_same_answer_and_fingerprint(client):
    a = create(client, temperature=1.0, seed=2024)
    b = create(client, temperature=1.0, seed=2024)
    assert content(a) == content(b)
    assert a.system_fingerprint and a.system_fingerprint == b.system_fingerprint


def test_different_seeds_differ(client):
    answers = {content(create(client, temperature=1.0, seed=s)) for s in (1, 2, 3)}
    assert len(answers) == 3, answers


def test_large_and_negative_seeds_accepted(client):
    for seed in (-1, 2**63 - 1, -(2**63)):
        a = create(client, temperature=1.0, seed=seed, max_tokens=4)
        b = create(client, temperature=1.0, seed=seed, max_tokens=4)
        assert content(a) == content(b), seed


# ---------------------------------------------------------------- n


def test_n_three_choices(client):
    c = create(client, n=3, temperature=1.0, seed=5, max_tokens=8, logprobs=True)
    assert [ch.index for ch in c.choices] == [0, 1, 2]
    per_choice = [len(ch.logprobs.content) for ch in c.choices]
    assert c.usage.completion_tokens == sum(per_choice), per_choice
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens
    for ch in c.choices:
        assert ch.finish_reason in ("stop", "length")
        assert ch.message.role == "assistant"
    # Each choice draws its own numbers.
    assert len({content(c, i) for i in range(3)}) == 3
    # ... reproducibly.
    again = create(client, n=3, temperature=1.0, seed=5, max_tokens=8)
    assert [content(again, i) for i in range(3)] == [content(c, i) for i in range(3)]


def test_n_greedy_choices_are_identical(client, greedy40):
    c = create(client, n=3, max_tokens=12)
    assert c.usage.completion_tokens == 3 * 12
    one = create(client, max_tokens=12)
    assert all(content(c, i) == content(one) for i in range(3))
    assert c.usage.prompt_tokens == one.usage.prompt_tokens


def test_n_above_max(client):
    refused(client, "n", n=MAX_N + 1)
    refused(client, "n", n=0)


def test_n_max_accepted(client):
    c = create(client, n=MAX_N, max_tokens=2)
    assert [ch.index for ch in c.choices] == list(range(MAX_N))


def test_n_streaming(client):
    kw = dict(n=2, temperature=1.0, seed=9, max_tokens=8)
    chunks = stream_chunks(client, stream_options={"include_usage": True}, **kw)
    for index in (0, 1):
        mine = [c for ch in chunks for c in ch.choices if c.index == index]
        assert mine, index
        assert mine[0].delta.role == "assistant", mine[0]
        assert all(c.delta.role is None for c in mine[1:])
        finishes = [c for c in mine if c.finish_reason is not None]
        assert len(finishes) == 1, finishes
        assert finishes[0] is mine[-1]
    assert {c.index for ch in chunks for c in ch.choices} == {0, 1}
    # Same seed, same per-choice text as the non-streaming request.
    whole = create(client, **kw)
    assert [streamed_text(chunks, i) for i in (0, 1)] == [content(whole, 0), content(whole, 1)]
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage.completion_tokens == whole.usage.completion_tokens


# ---------------------------------------------------------------- stop


def pick_stop(text: str) -> str:
    """A word from the middle of `text` (ASCII letters, so it survives any decoding)."""
    mid = len(text) // 3
    for m in re.finditer(r"[A-Za-z]{3,}", text):
        if m.start() >= mid:
            return m.group()
    pytest.fail(f"no word to stop on in {text!r}")


def test_stop_cuts_before_the_stop_text(client, greedy40):
    full = content(greedy40)
    stop = pick_stop(full)
    expected = full[: full.index(stop)]
    assert expected
    c = create(client, max_tokens=40, stop=stop)
    assert content(c) == expected
    assert c.choices[0].finish_reason == "stop"
    assert c.usage.completion_tokens < 40
    # As a list, next to stops that never occur.
    c = create(client, max_tokens=40, stop=["never-ever", stop, "zzzzqqq"])
    assert content(c) == expected
    assert c.choices[0].finish_reason == "stop"


def test_stop_streaming_matches_and_hides_the_stop(client, greedy40):
    full = content(greedy40)
    stop = pick_stop(full)
    expected = full[: full.index(stop)]
    chunks = stream_chunks(client, max_tokens=40, stop=[stop])
    pieces = [c.delta.content or "" for ch in chunks for c in ch.choices]
    assert "".join(pieces) == expected
    assert not any(stop in p for p in pieces)
    assert streamed_finish(chunks) == ["stop"]


def test_stop_inside_a_token(client, greedy40):
    """A one-character stop that is the second half of a multi-byte, multi-character token:
    the text before it (part of that token) is kept, in both modes."""
    full = content(greedy40)
    chars = [ch for ch in full[len(full) // 4 :] if ord(ch) > 127 and ch != "\ufffd"]
    if len(chars) < 2:
        pytest.skip(f"no multi-byte text to stop on in {full!r}")
    stop = chars[1]
    expected = full[: full.index(stop)]
    c = create(client, max_tokens=40, stop=stop)
    assert content(c) == expected
    assert c.choices[0].finish_reason == "stop"
    chunks = stream_chunks(client, max_tokens=40, stop=stop)
    assert streamed_text(chunks) == expected
    assert streamed_finish(chunks) == ["stop"]


def test_stop_not_found_runs_to_length(client, greedy40):
    c = create(client, max_tokens=40, stop=["never-ever"])
    assert content(c) == content(greedy40)
    assert c.choices[0].finish_reason == "length"


def test_stop_too_many(client):
    refused(client, "stop", stop=["a", "b", "c", "d", "e"])


# ---------------------------------------------------------------- max_tokens


def test_max_tokens_length(client):
    c = create(client, max_tokens=5)
    assert c.choices[0].finish_reason == "length"
    assert c.usage.completion_tokens == 5


def test_max_completion_tokens_wins(client):
    c = create(client, max_tokens=20, max_completion_tokens=5)
    assert c.choices[0].finish_reason == "length"
    assert c.usage.completion_tokens == 5
    c = create(client, max_tokens=3, max_completion_tokens=7)
    assert c.choices[0].finish_reason == "length"
    assert c.usage.completion_tokens == 7


def test_max_completion_tokens_alone(client):
    c = client.chat.completions.create(
        model=SERVED_NAME, messages=MESSAGES, max_completion_tokens=6
    )
    assert c.choices[0].finish_reason == "length"
    assert c.usage.completion_tokens == 6


def test_max_tokens_streaming(client):
    chunks = stream_chunks(
        client, max_completion_tokens=6, stream_options={"include_usage": True}
    )
    assert streamed_finish(chunks) == ["length"]
    assert chunks[-1].usage.completion_tokens == 6


def test_max_tokens_zero_refused(client):
    refused(client, "max_tokens", max_tokens=0)
    refused(client, "max_completion_tokens", max_tokens=5, max_completion_tokens=0)


# ---------------------------------------------------------------- penalties


@pytest.mark.parametrize("field", ["presence_penalty", "frequency_penalty"])
def test_penalty_changes_greedy_output(client, greedy40, field):
    c = create(client, max_tokens=40, **{field: 2.0})
    assert content(c) != content(greedy40)
    # In range, zero is a no-op.
    c = create(client, max_tokens=40, **{field: 0.0})
    assert content(c) == content(greedy40)
    c = create(client, max_tokens=8, **{field: -2.0})
    assert c.usage.completion_tokens <= 8


@pytest.mark.parametrize("field", ["presence_penalty", "frequency_penalty"])
@pytest.mark.parametrize("value", [2.5, -2.5])
def test_penalty_out_of_range(client, field, value):
    refused(client, field, **{field: value})


# ---------------------------------------------------------------- logit_bias


def test_logit_bias_forces_a_token(client):
    c = create(client, max_tokens=8, logit_bias={"300": 100}, logprobs=True)
    entries = c.choices[0].logprobs.content
    assert len(entries) == 8
    assert len({e.token for e in entries}) == 1, [e.token for e in entries]
    assert len({tuple(e.bytes) for e in entries}) == 1
    # Also when sampling.
    c = create(client, max_tokens=8, logit_bias={"300": 100}, temperature=1.0, seed=1)
    assert content(c) == entries[0].token * 8


def test_logit_bias_bans_the_greedy_first_token(client, tokenizer, greedy40):
    first = greedy40.choices[0].logprobs.content[0]
    tid = token_id(tokenizer, first.bytes)
    c = create(client, max_tokens=4, logit_bias={str(tid): -100}, logprobs=True, top_logprobs=5)
    new_first = c.choices[0].logprobs.content[0]
    assert new_first.bytes != first.bytes
    # The greedy runner-up takes its place.
    assert new_first.token == greedy40.choices[0].logprobs.content[0].top_logprobs[1].token


@pytest.mark.parametrize("bias", [{"5000": 10}, {str(VOCAB): 1}, {"abc": 1}, {"300": 150}])
def test_logit_bias_refused(client, bias):
    refused(client, "logit_bias", logit_bias=bias)


# ---------------------------------------------------------------- logprobs


def test_logprobs_non_streaming(client, greedy40, tokenizer):
    c = greedy40
    entries = c.choices[0].logprobs.content
    assert len(entries) == c.usage.completion_tokens == 40
    for e in entries:
        assert e.logprob <= 0.0
        assert isinstance(e.bytes, list) and all(0 <= b < 256 for b in e.bytes)
        assert e.bytes, e
        assert len(e.top_logprobs) == 5
        # Greedy: the chosen token is the most likely one.
        assert e.top_logprobs[0].token == e.token
        assert e.top_logprobs[0].logprob == e.logprob
        lps = [t.logprob for t in e.top_logprobs]
        assert lps == sorted(lps, reverse=True)
        assert sum(2.718281828 ** lp for lp in lps) <= 1.0 + 1e-4
    # The token bytes spell the answer. Special tokens (the tiny model emits <pad>) are
    # listed with their text but left out of `content`, as skip_special_tokens does.
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    joined = b"".join(bytes(e.bytes) for e in entries if e.token not in special)
    assert joined.decode("utf-8", errors="replace") == content(c)


def test_logprobs_without_top(client):
    c = create(client, max_tokens=5, logprobs=True)
    entries = c.choices[0].logprobs.content
    assert len(entries) == 5
    assert all(e.top_logprobs == [] for e in entries)
    c = create(client, max_tokens=5, logprobs=True, top_logprobs=0)
    assert all(e.top_logprobs == [] for e in c.choices[0].logprobs.content)


def test_no_logprobs_by_default(client):
    c = create(client, max_tokens=3)
    assert c.choices[0].logprobs is None
    c = create(client, max_tokens=3, logprobs=False)
    assert c.choices[0].logprobs is None


def test_logprobs_sampled(client):
    c = create(client, max_tokens=16, temperature=0.8, seed=4, logprobs=True, top_logprobs=20)
    entries = c.choices[0].logprobs.content
    assert len(entries) == c.usage.completion_tokens
    for e in entries:
        assert e.logprob <= 0.0
        assert len(e.top_logprobs) == 20
        match = [t for t in e.top_logprobs if t.token == e.token and t.bytes == e.bytes]
        if match:
            assert match[0].logprob == e.logprob


def test_logprobs_streaming_equal_non_streaming(client, greedy40):
    chunks = stream_chunks(client, max_tokens=40, logprobs=True, top_logprobs=5)
    streamed = [
        e.model_dump()
        for ch in chunks
        for c in ch.choices
        if c.logprobs is not None and c.logprobs.content
        for e in c.logprobs.content
    ]
    whole = [e.model_dump() for e in greedy40.choices[0].logprobs.content]
    # Same tokens and bytes; values equal up to float summation order, since a request may
    # reuse an earlier one's prompt keys/values (prefix cache), computed in another split.
    def shape(entries):
        return [(e["token"], e["bytes"], [(t["token"], t["bytes"]) for t in e["top_logprobs"]])
                for e in entries]

    def values(entries):
        return [v for e in entries for v in [e["logprob"]] + [t["logprob"] for t in e["top_logprobs"]]]

    assert shape(streamed) == shape(whole)
    assert max(abs(a - b) for a, b in zip(values(streamed), values(whole))) < 1e-4
    assert streamed_text(chunks) == content(greedy40)


def test_logprobs_streaming_with_stop_and_n(client, greedy40):
    stop = pick_stop(content(greedy40))
    kw = dict(max_tokens=40, logprobs=True, top_logprobs=2, stop=stop, n=2)
    whole = create(client, **kw)
    chunks = stream_chunks(client, **kw)
    for i in (0, 1):
        streamed = [
            e.model_dump()
            for ch in chunks
            for c in ch.choices
            if c.index == i and c.logprobs is not None and c.logprobs.content
            for e in c.logprobs.content
        ]
        assert streamed == [e.model_dump() for e in whole.choices[i].logprobs.content]
        assert streamed_text(chunks, i) == content(whole, i)
        assert streamed_finish(chunks, i) == ["stop"]


def test_top_logprobs_requires_logprobs(client):
    refused(client, "top_logprobs", top_logprobs=3)
    refused(client, "top_logprobs", top_logprobs=3, logprobs=False)


def test_top_logprobs_out_of_range(client):
    refused(client, "top_logprobs", logprobs=True, top_logprobs=21)


# ---------------------------------------------------------------- accepted / refused extras


def test_user_response_format_text_tool_choice_none_accepted(client):
    c = create(
        client,
        max_tokens=6,
        user="user-1234",
        response_format={"type": "text"},
        tool_choice="none",
    )
    assert content(c) == content(create(client, max_tokens=6))
    assert c.usage.completion_tokens == 6


def test_response_format_json_refused(client):
    refused(client, "response_format", response_format={"type": "json_object"})
    refused(
        client,
        "response_format",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}},
        },
    )


def test_tools_refused(client):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    refused(client, "tools", tools=tools)
    refused(client, "tools", tools=tools, tool_choice="auto")
    refused(client, "tool_choice", tool_choice="required")
