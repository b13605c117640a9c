"""The official `openai` Python client against vlm-server on the tiny reference model.

Generation checks compare with the transformers goldens in
models/reference/llava-1.5-tiny/goldens/cases.json (greedy, 16 steps).
"""

from __future__ import annotations

import copy
import json
import time

import httpx
import openai
import pytest
from openai import OpenAI

from conftest import API_KEY, SERVED_NAME, data_url

GREEDY_STEPS = 16


def golden_messages(case: dict, url_for) -> list[dict]:
    """The golden case's messages with each image file name replaced by `url_for(name)`."""
    messages = copy.deepcopy(case["messages"])
    for m in messages:
        if isinstance(m["content"], list):
            for part in m["content"]:
                if part["type"] == "image_url":
                    part["image_url"]["url"] = url_for(part["image_url"]["url"])
    return messages


def golden_text(case: dict, tokenizer) -> str:
    return tokenizer.decode(case["greedy_tokens"], skip_special_tokens=True)


@pytest.fixture(scope="module")
def one_image(goldens):
    return goldens["one_image"]


@pytest.fixture(scope="module")
def one_image_messages(one_image):
    return golden_messages(one_image, data_url)


@pytest.fixture(scope="module")
def one_image_completion(client, one_image_messages):
    return client.chat.completions.create(
        model=SERVED_NAME,
        messages=one_image_messages,
        max_tokens=GREEDY_STEPS,
        temperature=0,
    )


def assert_error_body(exc: openai.APIStatusError, status: int, **expected) -> dict:
    """The response is OpenAI's `{"error": {message, type, param, code}}` with `expected`."""
    assert exc.status_code == status
    body = exc.response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert {"message", "type", "param", "code"} <= set(err), err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str) and err["type"], err
    for k, v in expected.items():
        assert err[k] == v, (k, err)
    # The SDK's own view of the same body.
    assert exc.message and err["message"] in exc.message
    assert exc.code == err["code"]
    assert exc.param == err["param"]
    assert exc.type == err["type"]
    return err


# ---------------------------------------------------------------- non-streaming


def test_one_image_matches_golden(one_image_completion, one_image, tokenizer):
    r = one_image_completion
    assert r.id.startswith("chatcmpl-")
    assert r.object == "chat.completion"
    assert isinstance(r.created, int)
    assert abs(r.created - time.time()) < 600
    assert r.model == SERVED_NAME
    assert isinstance(r.system_fingerprint, str) and r.system_fingerprint
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.finish_reason == "length"
    assert choice.message.role == "assistant"
    assert choice.message.refusal is None
    assert choice.message.content == golden_text(one_image, tokenizer)
    assert not choice.message.tool_calls
    assert r.usage is not None
    assert r.usage.prompt_tokens == len(one_image["input_ids"])
    assert r.usage.completion_tokens == GREEDY_STEPS
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_http_image_url_same_as_data_url(client, one_image, image_server, one_image_completion):
    messages = golden_messages(one_image, lambda name: f"{image_server}/{name}")
    r = client.chat.completions.create(
        model=SERVED_NAME, messages=messages, max_tokens=GREEDY_STEPS, temperature=0
    )
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == one_image_completion.choices[0].message.content
    assert r.usage.prompt_tokens == len(one_image["input_ids"])


def test_two_images_matches_golden(client, goldens, tokenizer):
    case = goldens["two_images"]
    messages = golden_messages(case, data_url)
    assert messages[0]["role"] == "system"
    r = client.chat.completions.create(
        model=SERVED_NAME, messages=messages, max_tokens=GREEDY_STEPS, temperature=0
    )
    assert r.usage.prompt_tokens == len(case["input_ids"])
    assert r.usage.completion_tokens == GREEDY_STEPS
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == golden_text(case, tokenizer)


def test_n_2_gives_two_identical_choices(client, one_image, one_image_messages, one_image_completion):
    r = client.chat.completions.create(
        model=SERVED_NAME,
        messages=one_image_messages,
        max_tokens=GREEDY_STEPS,
        temperature=0,
        n=2,
    )
    assert [c.index for c in r.choices] == [0, 1]
    expected = one_image_completion.choices[0].message.content
    for c in r.choices:
        assert c.message.role == "assistant"
        assert c.message.content == expected
        assert c.finish_reason == "length"
    assert r.usage.prompt_tokens == len(one_image["input_ids"])
    assert r.usage.completion_tokens == 2 * GREEDY_STEPS
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


# ---------------------------------------------------------------- streaming


def _stream(client, messages, **kw):
    return list(
        client.chat.completions.create(
            model=SERVED_NAME,
            messages=messages,
            max_tokens=GREEDY_STEPS,
            temperature=0,
            stream=True,
            **kw,
        )
    )


def _check_stream_choices(chunks, expected_content):
    choice_chunks = [c for c in chunks if c.choices]
    assert choice_chunks, "no chunk carried a choice"
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].id.startswith("chatcmpl-")
    for c in chunks:
        assert c.object == "chat.completion.chunk"
        assert c.model == SERVED_NAME
        assert isinstance(c.created, int)
    first = choice_chunks[0].choices[0]
    assert first.delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in choice_chunks)
    assert content == expected_content
    assert choice_chunks[-1].choices[0].finish_reason == "length"
    for c in choice_chunks[:-1]:
        assert c.choices[0].finish_reason is None
    return choice_chunks


def test_stream_without_usage(client, one_image_messages, one_image_completion):
    chunks = _stream(client, one_image_messages)
    _check_stream_choices(chunks, one_image_completion.choices[0].message.content)
    assert all(c.usage is None for c in chunks)


def test_stream_raw_sse_has_no_usage_key(base_url, one_image_messages):
    body = {
        "model": SERVED_NAME,
        "messages": one_image_messages,
        "max_tokens": GREEDY_STEPS,
        "temperature": 0,
        "stream": True,
    }
    events = []
    with httpx.Client(timeout=120) as h:
        with h.stream(
            "POST",
            f"{base_url}/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp.iter_lines():
                if line.startswith("data:"):
                    events.append(line[len("data:") :].strip())
    assert events and events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks
    for c in chunks:
        assert "usage" not in c, c


def test_stream_include_usage(client, one_image, one_image_messages, one_image_completion):
    chunks = _stream(client, one_image_messages, stream_options={"include_usage": True})
    _check_stream_choices(chunks, one_image_completion.choices[0].message.content)
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1
    last = chunks[-1]
    assert last is usage_chunks[0]
    assert last.choices == []
    assert last.usage.prompt_tokens == len(one_image["input_ids"])
    assert last.usage.completion_tokens == GREEDY_STEPS
    assert last.usage.total_tokens == last.usage.prompt_tokens + GREEDY_STEPS
    assert all(c.usage is None for c in chunks[:-1])
    assert all(c.choices for c in chunks[:-1])


# ---------------------------------------------------------------- errors


def test_wrong_api_key_is_authentication_error(base_url):
    with OpenAI(base_url=base_url, api_key="sk-wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as ei:
            bad.models.list()
    assert_error_body(ei.value, 401, code="invalid_api_key")


def test_wrong_api_key_on_chat(base_url, one_image_messages):
    with OpenAI(base_url=base_url, api_key="sk-wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as ei:
            bad.chat.completions.create(
                model=SERVED_NAME, messages=one_image_messages, max_tokens=1, temperature=0
            )
    assert_error_body(ei.value, 401, code="invalid_api_key")


def test_health_needs_no_key(server):
    r = httpx.get(f"http://{server}/health", timeout=10)
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_missing_key_is_401(base_url):
    r = httpx.get(f"{base_url}/models", timeout=10)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"


def test_unknown_model_is_not_found(client, one_image_messages):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(
            model="no-such-model", messages=one_image_messages, max_tokens=1, temperature=0
        )
    assert_error_body(ei.value, 404, code="model_not_found", param="model")


def test_temperature_out_of_range_names_param(client, one_image_messages):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(
            model=SERVED_NAME, messages=one_image_messages, max_tokens=1, temperature=3
        )
    assert ei.value.param == "temperature"
    assert_error_body(ei.value, 400, type="invalid_request_error", param="temperature")


def test_malformed_data_url_names_image_param(client):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,!!!not-base64"}},
                {"type": "text", "text": "What is shown in this image?"},
            ],
        }
    ]
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(
            model=SERVED_NAME, messages=messages, max_tokens=1, temperature=0
        )
    assert ei.value.param == "messages[0].content[0].image_url.url"
    assert_error_body(ei.value, 400, param="messages[0].content[0].image_url.url")


def test_stream_error_before_first_chunk_is_http_error(client, one_image_messages):
    """A request refused by validation fails as an HTTP error even with stream=True."""
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(
            model=SERVED_NAME,
            messages=one_image_messages,
            max_tokens=1,
            temperature=3,
            stream=True,
        )
    assert ei.value.param == "temperature"


# ---------------------------------------------------------------- models


def test_models_list(client):
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert SERVED_NAME in ids
    for m in models.data:
        assert m.object == "model"
        assert isinstance(m.created, int)
        assert isinstance(m.owned_by, str)


def test_models_retrieve(client):
    m = client.models.retrieve(SERVED_NAME)
    assert m.id == SERVED_NAME
    assert m.object == "model"
    assert isinstance(m.created, int)
    assert isinstance(m.owned_by, str)


def test_models_retrieve_unknown(client):
    with pytest.raises(openai.NotFoundError) as ei:
        client.models.retrieve("no-such-model")
    assert ei.value.status_code == 404
