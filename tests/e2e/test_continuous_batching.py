"""Continuous batching on a real (tiny-random) model: rows that join a running batch, or leave it early,
get the tokens they get alone; requests arriving mid-decode join the batch; a weight swap waits for
the rows it would otherwise split between two versions."""

import asyncio
import threading

import pytest
import torch

from esc.backends.base import SamplingParams
from esc.backends.decode_batch import DecodeBatch
from esc.backends.hf import HFBackend
from esc.backends.hf_decode import CausalLM
from esc.backends.kv_room import ROOM
from esc.backends.prefix_cache import PrefixCache
from esc.models import load_model
from esc.weights import publish

SYSTEM = {"role": "system", "content": "You are a calm counselor who listens before advising."}


def _chat(text: str) -> list[dict]:
    return [SYSTEM, {"role": "user", "content": text}]


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random", seed=6)


@pytest.mark.parametrize("prefix_cache", [None, PrefixCache()])
def test_rows_joining_and_leaving_get_the_tokens_they_get_alone(tiny, prefix_cache):
    model, tokenizer = tiny
    backend = HFBackend(model, tokenizer)
    lm = CausalLM(model, tokenizer, prefix_cache)
    first = backend.encode_prompt(_chat("Hi"))
    later = [backend.encode_prompt(_chat(t)) for t in ("Work keeps me up at night and I cannot rest.", "Ok")]
    # "a" decodes past its cache's room (kv_room), after the others left
    greedy = [SamplingParams(temperature=0.0, max_new_tokens=n) for n in (ROOM + 12, 9, 3)]
    alone = [lm.decode([p], [g])[0] for p, g in zip([first, *later], greedy, strict=True)]
    assert alone[0].completion_tokens == ROOM + 12
    batch, done = DecodeBatch(), {}
    lm.admit(batch, [first], greedy[:1], ["a"])
    for _ in range(4):  # the first row is 4 tokens in when the others arrive
        done.update((r.key, r) for r in lm.step(batch))
    assert not done and len(batch) == 1
    lm.admit(batch, later, greedy[1:], ["b", "c"])  # one wider than the running cache, one narrower
    sizes = []
    while batch:
        sizes.append(len(batch))
        done.update((r.key, r) for r in lm.step(batch))
    assert sizes[0] == 3 and sizes[-1] == 1  # "c" left after 3 tokens; the others went on without it
    for key, want in zip("abc", alone, strict=True):
        got = done[key].generation(tokenizer)
        assert got.token_ids == want.token_ids, key
        assert got.token_logprobs == pytest.approx(want.token_logprobs, abs=1e-4)


@pytest.mark.parametrize("prefix_cache", [None, PrefixCache()])
def test_rows_joining_into_the_slots_of_rows_that_left_get_the_tokens_they_get_alone(tiny, prefix_cache):
    model, tokenizer = tiny
    backend = HFBackend(model, tokenizer)
    lm = CausalLM(model, tokenizer, prefix_cache)
    texts = ["My sister and I stopped talking after an argument about our parents.", "Hi", "Ok"]
    texts += [
        "I failed a test.",
        "Everything went wrong this month: at home my father is ill, at work my boss"
        " shouts at me every single day, and at night I cannot sleep at all any more.",
    ]
    prompts = [backend.encode_prompt(_chat(t)) for t in texts]
    sampled = [SamplingParams(temperature=1.0, max_new_tokens=n, seed=n) for n in (30, 20, 3, 8, 6)]
    alone = [lm.decode([p], [s])[0] for p, s in zip(prompts, sampled, strict=True)]
    assert [g.completion_tokens for g in alone] == [30, 20, 3, 8, 6]  # no early end: the schedule below
    batch, done = DecodeBatch(), {}
    lm.admit(batch, prompts[:3], sampled[:3], ["a", "b", "c"])
    for _ in range(3):
        done.update((r.key, r) for r in lm.step(batch, keep_slots=True))
    assert list(done) == ["c"] and len(batch) == 2 and len(batch.slots) == 3  # c left its slot free
    keys = batch.cache.layers[0].keys
    lm.admit(batch, [prompts[3]], sampled[3:4], ["d"])  # narrower than the batch: into c's slot
    assert [r.key for r in batch.slots] == ["a", "b", "d"]
    assert batch.cache.layers[0].keys.data_ptr() == keys.data_ptr()  # written in place, nothing copied
    for _ in range(8):
        done.update((r.key, r) for r in lm.step(batch, keep_slots=True))
    assert "d" in done and len(batch.slots) == 3 and len(batch) == 2
    assert len(prompts[4]) - 1 > batch.mask.shape[1]  # a row joins with its prompt read but the last token
    lm.admit(batch, [prompts[4]], sampled[4:], ["e"])  # wider than the batch: stacked after the others
    assert [r.key for r in batch.slots] == ["a", "b", "e"] and batch.mask.shape[1] == len(prompts[4]) - 1
    while batch:
        done.update((r.key, r) for r in lm.step(batch, keep_slots=True))
    lm.admit(batch, [prompts[1]], sampled[1:2], ["b2"])  # an emptied batch starts afresh
    assert [r.key for r in batch.slots] == ["b2"]
    for key, want in zip("abcde", alone, strict=True):
        got = done[key].generation(tokenizer)
        assert got.token_ids == want.token_ids, key
        assert got.token_logprobs == pytest.approx(want.token_logprobs, abs=1e-4)


def _first_step_signal(backend: HFBackend) -> threading.Event:
    """An event set once the backend has decoded its first token (wraps the model's step)."""
    stepped, step = threading.Event(), backend.lm.step

    def step_and_signal(batch, *args):
        finished = step(batch, *args)
        stepped.set()
        return finished

    backend.lm.step = step_and_signal
    return stepped


def test_a_request_arriving_mid_decode_joins_the_running_batch(tiny):
    model, tokenizer = tiny
    backend = HFBackend(model, tokenizer, max_batch_size=4, max_wait_ms=1)
    stepped = _first_step_signal(backend)
    long, short = (SamplingParams(temperature=1.0, max_new_tokens=n, seed=n) for n in (24, 6))

    async def run():
        running = asyncio.ensure_future(backend.generate(_chat("I feel lonely."), long))
        assert await asyncio.to_thread(stepped.wait, 60)
        joined = await backend.generate(_chat("Exams scare me."), short)
        assert not running.done()  # answered while the first row is still being written
        return await running, joined

    first, second = asyncio.run(run())
    assert backend.batch_sizes == [1, 2]
    assert first.completion_tokens == 24 and 0 < second.completion_tokens <= 6
    plain = CausalLM(model, tokenizer)
    for got, prompt, params in ((first, "I feel lonely.", long), (second, "Exams scare me.", short)):
        want = plain.decode([backend.encode_prompt(_chat(prompt))], [params])[0]
        assert got.token_ids == want.token_ids


def test_a_weight_swap_waits_for_the_running_rows(tiny, tmp_path):
    model, tokenizer = load_model("tiny-random", seed=7)
    backend = HFBackend(model, tokenizer, max_wait_ms=1)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=16)
    prompt = backend.encode_prompt(_chat("I lost my job."))
    before = CausalLM(model, tokenizer).decode([prompt], [greedy])[0]
    changed = {k: v * 1.5 for k, v in model.state_dict().items()}
    path = publish(changed, tmp_path, 1)
    stepped = _first_step_signal(backend)

    async def run():
        running = asyncio.ensure_future(backend.generate(_chat("I lost my job."), greedy))
        assert await asyncio.to_thread(stepped.wait, 60)
        await asyncio.to_thread(backend.load_weights, 1, str(path))  # waits for the running row
        return await running, await backend.generate(_chat("I lost my job."), greedy)

    old, new = asyncio.run(run())
    assert old.weights_version == 0 and old.token_ids == before.token_ids
    assert new.weights_version == 1
    with torch.no_grad():
        assert torch.equal(model.get_input_embeddings().weight, changed["model.embed_tokens.weight"])


def test_a_stream_grows_token_by_token_and_ends_with_the_generation_generate_returns(tiny):
    model, tokenizer = tiny
    backend = HFBackend(model, tokenizer, max_wait_ms=1)
    params = SamplingParams(temperature=1.0, max_new_tokens=20, seed=11, prefill="<think>")

    async def run():
        texts, final = [], None
        async for item in backend.generate_stream(_chat("I cannot sleep."), params):
            if isinstance(item, str):
                texts.append(item)
            else:
                final = item
        return texts, final, await backend.generate(_chat("I cannot sleep."), params)

    texts, streamed, plain = asyncio.run(run())
    assert streamed.token_ids == plain.token_ids and streamed.text == plain.text
    assert len(texts) >= 5  # many updates, not one at the end
    assert all(t.startswith("<think>") for t in texts)
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:]))  # each update extends the last
    assert plain.text.startswith(texts[-1])


def test_closing_a_stream_frees_its_row_while_others_go_on(tiny):
    model, tokenizer = tiny
    backend = HFBackend(model, tokenizer, max_batch_size=4, max_wait_ms=50)
    long = SamplingParams(temperature=1.0, max_new_tokens=40, seed=3)

    async def run():
        other = asyncio.ensure_future(backend.generate(_chat("Work is hard."), long))
        stream = backend.generate_stream(_chat("I feel alone."), long)
        seen = 0
        async for _ in stream:  # read three updates, then leave like a client that disconnects
            seen += 1
            if seen == 3:
                break
        await stream.aclose()
        rows_after_leaving = []
        while not other.done():
            rows_after_leaving.append(len(backend._running))
            await asyncio.sleep(0)  # let the batching worker run its next step
        return await other, rows_after_leaving

    other, rows = asyncio.run(run())
    assert other.completion_tokens == 40  # the remaining request was unaffected
    assert rows and max(rows[-5:]) <= 1  # the closed stream's row left the batch
    assert backend.batch_sizes[0] == 2  # both were decoding together before


def test_set_threads_changes_the_model_threads_count_and_generation_goes_on(tiny):
    backend = HFBackend(*tiny, max_batch_size=4, max_wait_ms=1.0)
    params = SamplingParams(max_new_tokens=4, temperature=0.0)

    def model_thread_count() -> int:  # OpenMP's count is per thread: ask the thread that runs the model
        return backend._model_thread.submit(torch.get_num_threads).result()

    async def run(threads: int):
        backend.set_threads(threads)
        generation = await backend.generate(_chat("I cannot sleep."), params)
        return generation, model_thread_count()

    for threads in (1, 2, 1):
        generation, seen = asyncio.run(run(threads))
        assert seen == threads == backend.torch_threads
        assert generation.completion_tokens == 4
    with pytest.raises(ValueError, match="at least 1"):
        backend.set_threads(0)


def test_close_stops_the_model_thread_and_a_later_request_starts_it_again(tiny):
    backend = HFBackend(*tiny, max_batch_size=4, max_wait_ms=1.0)
    params = SamplingParams(max_new_tokens=4, temperature=0.0)

    async def generate_then_close():
        generation = await backend.generate(_chat("I cannot sleep."), params)
        executor = backend._model_thread
        await backend.close()
        return generation, executor

    first, executor = asyncio.run(generate_then_close())
    threads = list(executor._threads)
    assert threads and first.completion_tokens == 4
    for thread in threads:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads)  # closed: no model thread left behind
    again = asyncio.run(backend.generate(_chat("I cannot sleep."), params))
    assert again.token_ids == first.token_ids  # greedy: the restarted thread decodes the same tokens
