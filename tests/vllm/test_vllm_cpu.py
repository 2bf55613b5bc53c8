"""VLLMBackend on vLLM's CPU build with the embedded SmolLM2-135M (fp32), checked against transformers.

Opt-in: run in the `.venv-vllm` environment (docs/vllm.md) as `.venv-vllm/bin/pytest tests/vllm`.
One engine serves the whole module (~20 s to start on 2 cores). References are the hf backend and
plain transformers forward passes on the same weights, in fp32: vLLM's log-probs agree with them to
about 3e-5, so LOGPROB_TOL (1e-3 nats per token) leaves room for kernel differences and still fails
on a wrong definition (tempered log-probs) or stale weights, which move them by tenths.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

vllm = pytest.importorskip("vllm", reason="needs vLLM's CPU build: see docs/vllm.md")
torch = pytest.importorskip("torch")

from esc.backends import BackendError, SamplingParams  # noqa: E402
from esc.backends.hf import HFBackend  # noqa: E402
from esc.backends.vllm import VLLMBackend  # noqa: E402
from esc.config import CounselorConfig  # noqa: E402
from esc.models import EMBEDDED, load_model  # noqa: E402
from esc.weights import publish, to_bytes  # noqa: E402

LOGPROB_TOL = 1e-3  # nats, per token
MESSAGES = [
    {"role": "system", "content": "You are a kind listener."},
    {"role": "user", "content": "I failed my driving test today and feel awful."},
]
VERDICTS = ["worse", "same", "better", "solved"]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=32)


@pytest.fixture(scope="module")
def reference():
    """(model, tokenizer): the embedded model in transformers, fp32, the base weights."""
    return load_model(EMBEDDED, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def perturbed():
    """The embedded model with its (tied) embedding perturbed, so a stale lm_head would show."""
    model, tokenizer = load_model(EMBEDDED, device="cpu", dtype="float32")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        weight = model.model.embed_tokens.weight
        weight.add_(torch.randn(weight.shape, generator=generator) * weight.std() * 0.3)
    assert model.lm_head.weight.data_ptr() == weight.data_ptr()  # tied: the head moved too
    return model


@pytest.fixture(scope="module")
def backend():
    config = CounselorConfig(backend="vllm", model=EMBEDDED, dtype="float32", max_batch_size=8)
    backend = VLLMBackend.from_config(config, seed=0, max_model_len=2048)
    yield backend
    asyncio.run(backend.close())


def teacher_forced(model, prompt_ids, token_ids, temperature: float = 1.0) -> list[float]:
    """log p(token_ids[i] | prompt, token_ids[:i]) under `model`, logits divided by `temperature`."""
    ids = torch.tensor([list(prompt_ids) + list(token_ids)])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt_ids) - 1 : -1].float() / temperature
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(token_ids)[:, None])[:, 0].tolist()


def gap(a, b) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def generate(backend, params=GREEDY, messages=MESSAGES):
    return asyncio.run(backend.generate(messages, params))


def test_greedy_generation_is_well_formed(backend, reference):
    _, tokenizer = reference
    g = generate(backend, SamplingParams(temperature=0.0, max_new_tokens=24))
    hf = HFBackend(*reference)
    assert g.prompt_ids == tuple(hf.encode_prompt(MESSAGES)) and g.prompt_tokens == len(g.prompt_ids)
    assert 1 <= g.completion_tokens <= 24 and g.finish_reason in ("stop", "length")
    assert len(g.token_ids) == len(g.token_logprobs) == g.completion_tokens + (g.finish_reason == "stop")
    assert g.text == tokenizer.decode(g.token_ids, skip_special_tokens=True) != ""
    assert all(lp <= 0 for lp in g.token_logprobs) and g.weights_version == 0

    prefilled = generate(backend, SamplingParams(temperature=0.0, max_new_tokens=4, prefill="<think>"))
    assert prefilled.text.startswith("<think>")
    assert prefilled.prompt_ids == tuple(hf.encode_prompt(MESSAGES, "<think>"))

    stopped = generate(backend, SamplingParams(temperature=0.0, max_new_tokens=24, stop=(".",)))
    assert stopped.finish_reason == "stop" and stopped.stop_sequence == "." and "." not in stopped.text
    assert tokenizer.decode(stopped.token_ids).startswith(stopped.text)  # the stop's tokens stay in


def test_logprobs_equal_the_hf_backend_and_transformers(backend, reference):
    model, tokenizer = reference
    hf = HFBackend(model, tokenizer, max_batch_size=1)
    g = generate(backend)
    expected = hf.generate_batch([list(g.prompt_ids)], [GREEDY])[0]
    assert g.token_ids == expected.token_ids and g.text == expected.text
    assert gap(g.token_logprobs, expected.token_logprobs) < LOGPROB_TOL

    # Sampled at temperature 1.5: the log-probs are still the untempered model's (raw_logprobs).
    sampled = generate(backend, SamplingParams(temperature=1.5, top_p=0.9, max_new_tokens=32, seed=7))
    untempered = teacher_forced(model, sampled.prompt_ids, sampled.token_ids)
    tempered = teacher_forced(model, sampled.prompt_ids, sampled.token_ids, temperature=1.5)
    assert gap(sampled.token_logprobs, untempered) < LOGPROB_TOL
    assert gap(sampled.token_logprobs, tempered) > 0.1  # the check tells the two definitions apart

    scores = asyncio.run(backend.continuation_logprobs(MESSAGES, VERDICTS))
    assert scores == pytest.approx(hf.score_continuations(MESSAGES, VERDICTS), abs=LOGPROB_TOL * 4)


def test_load_weights_serves_exactly_the_new_weights(backend, reference, perturbed, tmp_path):
    base, tokenizer = reference
    new = HFBackend(perturbed, tokenizer, max_batch_size=1)
    path = publish(perturbed.state_dict(), tmp_path / "weights", 3)
    try:
        backend.load_weights(3, str(path))
        assert backend.weights_version == 3
        g = generate(backend)
        assert g.weights_version == 3
        expected = new.generate_batch([list(g.prompt_ids)], [GREEDY])[0]
        assert g.token_ids == expected.token_ids and g.text == expected.text
        under_new = teacher_forced(perturbed, g.prompt_ids, g.token_ids)
        under_base = teacher_forced(base, g.prompt_ids, g.token_ids)
        assert gap(g.token_logprobs, under_new) < LOGPROB_TOL
        assert gap(g.token_logprobs, under_base) > 0.1  # the perturbation is visible in the head too
    finally:
        backend.load_weights(4, to_bytes(base.state_dict()))  # the bytes path, back to the base weights
    g = generate(backend)
    assert g.weights_version == 4
    assert gap(g.token_logprobs, teacher_forced(base, g.prompt_ids, g.token_ids)) < LOGPROB_TOL


def test_a_reply_running_during_a_swap_finishes_on_the_old_weights(backend, reference, perturbed, tmp_path):
    base, _ = reference
    path = publish(perturbed.state_dict(), tmp_path / "weights", 5)
    long = SamplingParams(temperature=0.0, max_new_tokens=48)
    old_version = backend.weights_version

    async def main():
        running = asyncio.ensure_future(backend.generate(MESSAGES, long))
        await backend.generate(MESSAGES, SamplingParams(temperature=0.0, max_new_tokens=1))
        # `running` was admitted no later than the 1-token reply that just finished: it is decoding.
        swapped = threading.Thread(target=backend.load_weights, args=(5, str(path)))
        swapped.start()
        during = await backend.generate(MESSAGES, long)  # joins before or after the swap, never across
        await asyncio.to_thread(swapped.join)
        after = await backend.generate(MESSAGES, GREEDY)
        return await running, during, after

    try:
        running, during, after = asyncio.run(main())
        assert running.finish_reason == "length" and running.weights_version == old_version
        assert after.weights_version == 5
        models = {old_version: base, 5: perturbed}
        for g in (running, during, after):
            expected = teacher_forced(models[g.weights_version], g.prompt_ids, g.token_ids)
            assert gap(g.token_logprobs, expected) < LOGPROB_TOL
    finally:
        backend.load_weights(6, to_bytes(base.state_dict()))


def test_weights_that_do_not_fit_are_refused_and_change_nothing(backend, reference, tmp_path):
    base, _ = reference
    version = backend.weights_version
    state = base.state_dict()
    bad = {**state, "model.norm.weight": torch.ones(7)}  # a shape the model does not have
    with pytest.raises(BackendError, match="do not fit the served model.*model.norm.weight"):
        backend.load_weights(version + 1, to_bytes(bad))
    missing = {k: v for k, v in state.items() if k != "model.layers.0.mlp.up_proj.weight"}
    with pytest.raises(BackendError, match="missing .*up_proj"):
        backend.load_weights(version + 1, str(publish(missing, tmp_path / "weights", 1)))
    g = generate(backend)
    assert g.weights_version == version
    assert gap(g.token_logprobs, teacher_forced(base, g.prompt_ids, g.token_ids)) < LOGPROB_TOL
