"""The endpoint's request rules and response shapes (serve/api.py), checked without a server."""

from __future__ import annotations

import base64
import json

import pytest

from esc.config import RunConfig, ServeConfig
from jobs import UsageError
from jobs.serve import check_open_bind
from serve.api import Answer, ApiError, completion_body, models_body, parse_request, stream_chunks, to_history
from serve.app import key_matches
from serve.service import cut_at_stops

LONG = "messages.0.content"
LIMITS = ServeConfig(max_request_bytes=2000, max_messages=4, max_message_chars=50, max_tokens=64)


def body(**fields) -> bytes:
    request = {"messages": [{"role": "user", "content": "I feel low"}], **fields}
    return json.dumps(request).encode()


def refused(raw: bytes) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_request(raw, LIMITS)
    return caught.value


def test_valid_request_keeps_sampling_fields_and_ignores_unused_openai_fields():
    request = parse_request(body(temperature=0.3, max_tokens=32, presence_penalty=0.5, user="u1"), LIMITS)
    assert (request.temperature, request.token_budget(), request.stream) == (0.3, 32, False)
    assert parse_request(body(max_completion_tokens=12), LIMITS).token_budget() == 12
    assert parse_request(body(rlff={"reasoning": True}), LIMITS).rlff.reasoning is True


@pytest.mark.parametrize(
    ("raw", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (b'"text"', 400, None),
        (json.dumps({"model": "x"}).encode(), 400, "messages"),
        (body(temperature="hot"), 400, "temperature"),
        (body(temperature=2.5), 400, "temperature"),
        (body(top_p=0), 400, "top_p"),
        (body(max_tokens=0), 400, "max_tokens"),
        (body(max_tokens=65), 400, "max_tokens"),
        (body(max_tokens="10"), 400, "max_tokens"),
        (body(n=2), 400, "n"),
        (body(stream="yes"), 400, "stream"),
        (body(seed=-1), 400, "seed"),
        (body(rlff={"reasoning": "yes"}), 400, "rlff.reasoning"),
        (body(rlff={"unknown": 1}), 400, "rlff.unknown"),
        (json.dumps({"messages": []}).encode(), 400, "messages"),
        (json.dumps({"messages": "hi"}).encode(), 400, "messages"),
        (json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(), 400, "messages.0.role"),
        (json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(), 400, "messages.0.content"),
        (json.dumps({"messages": [{"role": "user", "content": "  "}]}).encode(), 400, "messages.0.content"),
        (
            json.dumps({"messages": [{"role": "user", "content": "x" * 51}]}).encode(),
            400,
            "messages.0.content",
        ),
        (json.dumps({"messages": [{"role": "user", "content": "a"}] * 5}).encode(), 400, "messages"),
        (json.dumps({"messages": [{"role": "assistant", "content": "a"}]}).encode(), 400, "messages"),
        (b"{" + b" " * 2100 + b"}", 413, None),
        (body(stop=["a", "b", "c", "d", "e"]), 400, "stop"),
        (body(stop=[""]), 400, "stop"),
        (body(stop=5), 400, "stop"),
        (body(stream_options={"include_usage": True}), 400, "stream_options"),
        (body(stream=True, stream_options={"include_usage": "yes"}), 400, "stream_options.include_usage"),
        (body(stream=True, stream_options=True), 400, "stream_options"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field(raw, status, param):
    error = refused(raw)
    assert (error.status, error.param) == (status, param)
    assert error.body()["error"]["message"] and error.body()["error"]["type"] == "invalid_request_error"


def test_history_maps_roles_and_drops_system_messages():
    request = parse_request(
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "be nice"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "sad"},
                ]
            }
        ).encode(),
        LIMITS,
    )
    assert [(t.role, t.text) for t in to_history(request.messages)] == [
        ("seeker", "hi"),
        ("counselor", "hello"),
        ("seeker", "sad"),
    ]


ANSWER = Answer("one two three four five six", "they are sad", 7, False, True, 40, 12, False)


def test_completion_body_hides_reasoning_unless_asked_and_carries_the_extension():
    plain = completion_body(ANSWER, "m", with_reasoning=False)
    assert plain["choices"][0]["message"] == {"role": "assistant", "content": ANSWER.text}
    assert plain["rlff"] == {"weights_version": 7, "crisis": False, "well_formed": True}
    assert plain["usage"] == {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}
    asked = completion_body(ANSWER, "m", with_reasoning=True)
    assert asked["choices"][0]["message"]["reasoning_content"] == "they are sad"


def test_stream_chunks_reassemble_the_answer_and_end_with_finish_reason():
    chunks = stream_chunks(ANSWER, "m", with_reasoning=False)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == ANSWER.text
    assert [c["choices"][0]["finish_reason"] for c in chunks][-2:] == [None, "stop"]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert all(c["rlff"]["weights_version"] == 7 for c in chunks)
    assert not any("reasoning_content" in c["choices"][0]["delta"] for c in chunks)


def test_models_body_lists_the_one_model():
    assert models_body("rlff-x", 3)["data"][0]["id"] == "rlff-x"


def test_checkpoint_paths_resolve_to_a_model_and_its_version(tmp_path):
    from esc.config import RunConfig
    from serve.service import CheckpointError, resolve_checkpoint

    config = RunConfig()
    published = tmp_path / "weights" / "v7"
    published.mkdir(parents=True)
    (published / "config.json").write_text("{}")
    moved, version, weights = resolve_checkpoint(config, str(published))
    assert (moved.counselor.model, version, weights) == (str(published), 7, None)

    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "config.json").write_text("{}")
    assert resolve_checkpoint(config, str(sft))[1] == 0

    step = tmp_path / "checkpoints" / "step-4"
    step.mkdir(parents=True)
    (step / "policy.safetensors").write_bytes(b"")
    (step / "state.json").write_text(json.dumps({"version": 4, "updates": 4, "consumed": []}))
    same, version, weights = resolve_checkpoint(config, str(step))
    assert (same.counselor.model, version, weights) == (
        config.counselor.model,
        4,
        step / "policy.safetensors",
    )

    with pytest.raises(CheckpointError, match="neither a model folder"):
        resolve_checkpoint(config, str(tmp_path))


@pytest.mark.parametrize(
    "state, error",
    [(b"{not json", "JSONDecodeError"), (b"{}", "KeyError"), (b'{"version": "abc"}', "ValueError"),
     (b"\xff\xfe", "UnicodeDecodeError"), (b"[4]", "TypeError")],
)  # fmt: skip
def test_a_broken_checkpoint_state_or_a_run_folder_is_refused_in_one_line(tmp_path, state, error):
    from esc.config import RunConfig
    from serve.service import CheckpointError, resolve_checkpoint

    step = tmp_path / "step-4"
    step.mkdir()
    (step / "policy.safetensors").write_bytes(b"")
    (step / "state.json").write_bytes(state)
    with pytest.raises(CheckpointError, match=rf"state.json is not a learner checkpoint's state \({error}\)"):
        resolve_checkpoint(RunConfig(), str(step))
    run = RunConfig(runs_dir=str(tmp_path), name="r")
    run.write_resolved()
    with pytest.raises(CheckpointError, match="r is a run folder, not a model"):
        resolve_checkpoint(run, str(run.run_dir()))


def test_stop_sequences_up_to_the_openai_limit_are_kept():
    assert parse_request(body(stop="\n"), LIMITS).stops() == ("\n",)
    assert parse_request(body(stop=["a", "b", "c", "d"]), LIMITS).stops() == ("a", "b", "c", "d")
    assert parse_request(body(), LIMITS).stops() == ()
    assert cut_at_stops("Breathe. Then talk.", ("Then", "talk")) == ("Breathe.", True)
    assert cut_at_stops("Breathe.", ("Then",)) == ("Breathe.", False)


def test_the_key_is_taken_as_a_bearer_token_or_a_basic_password_only():
    basic = "Basic " + base64.b64encode(b"anyone:s3cret").decode()
    assert key_matches("Bearer s3cret", "s3cret") and key_matches(basic, "s3cret")
    assert key_matches("bearer s3cret", "s3cret")  # the scheme is case-insensitive
    wrong = "Basic " + base64.b64encode(b"s3cret:nope").decode()  # the key as the user name
    for header in ("", "s3cret", "Bearer nope", "Bearer s3cret2", wrong, "Basic ###", "Token s3cret"):
        assert not key_matches(header, "s3cret"), header


@pytest.mark.parametrize(
    ("host", "key", "allow_open", "refused"),
    [
        ("127.0.0.1", None, False, False),
        ("localhost", None, False, False),
        ("::1", None, False, False),
        ("0.0.0.0", None, False, True),
        ("10.1.2.3", None, False, True),
        ("myhost.example", None, False, True),
        ("0.0.0.0", "k", False, False),
        ("0.0.0.0", None, True, False),
    ],
)
def test_an_open_bind_without_a_key_is_refused_unless_allowed(monkeypatch, host, key, allow_open, refused):
    config = RunConfig().replace("serve", host=host, allow_open=allow_open)
    monkeypatch.delenv(config.serve.api_key_env, raising=False)
    if key:
        monkeypatch.setenv(config.serve.api_key_env, key)
    if not refused:
        check_open_bind(config)
        return
    with pytest.raises(UsageError) as caught:
        check_open_bind(config)
    message = str(caught.value)
    assert host in message and "RLFF_API_KEY" in message and "serve.allow_open=true" in message
    assert message.count(". ") == 0  # one sentence


def test_null_stream_and_n_mean_their_defaults_as_in_the_openai_api():
    request = parse_request(body(stream=None, n=None), LIMITS)
    assert not request.stream and request.n in (None, 1)


def test_a_host_the_endpoint_cannot_bind_is_named_as_such_not_as_a_busy_port():
    import psutil

    from jobs import UsageError
    from jobs.serve import check_port_free

    with pytest.raises(
        UsageError, match="'nonexistent.invalid' is not a name or address this machine can resolve"
    ):
        check_port_free("nonexistent.invalid", 8000)
    # a documentation address (RFC 5737) that none of this machine's interfaces holds
    local = {a.address for addresses in psutil.net_if_addrs().values() for a in addresses}
    foreign = next(a for a in ("203.0.113.7", "198.51.100.7", "192.0.2.77") if a not in local)
    with pytest.raises(UsageError, match=f"serve.host {foreign} is not an address of this machine"):
        check_port_free(foreign, 8000)
