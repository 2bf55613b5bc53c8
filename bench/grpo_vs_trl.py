"""One GRPO iteration, ours vs TRL's `GRPOTrainer` (no vLLM), on this CPU: same model (SmolLM2-135M,
fp32), same counselor prompts and chat template, same rule-based reward, 1 prompt x G=4 completions
per iteration, at most 64 new tokens, temperature 1, no KL term. An iteration is generate -> reward ->
advantages -> loss -> optimizer step. Ours runs as the system does: the rollout actors' decoding (the
group's prompt prefilled once, through the prefix cache) and the learner's update (the prompt's
forward shared by the group, fused AdamW). Each side runs in its own process (for its own peak RSS);
the first iteration is a warm-up and the median of the rest is reported.

    .venv/bin/python bench/grpo_vs_trl.py [--iterations 4]
    .venv/bin/python bench/grpo_vs_trl.py --side ours|trl   (one side; prints its JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

G, MAX_NEW, LR = 4, 64, 1e-6
SITUATIONS = [
    "I feel lonely since I moved to a new city.",
    "My exam went badly and I am scared to tell my parents.",
    "I lost my job today and I don't know what to do.",
    "My best friend stopped talking to me.",
]


def messages(i: int) -> list[dict]:
    from esc.prompts import counselor_messages
    from esc.schemas import Turn

    return counselor_messages([Turn(role="seeker", text=SITUATIONS[i % len(SITUATIONS)])], True)


def reward_of(text: str) -> float:
    """The rule both sides optimise: the graded <think>/<answer> format reward of learner/losses.py."""
    from learner.losses import format_reward

    return format_reward(text)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours(iterations: int) -> list[float]:
    from esc.backends.base import SamplingParams
    from esc.backends.decode_attention import use_decode_attention
    from esc.backends.decode_linear import use_decode_linear
    from esc.backends.hf_decode import CausalLM
    from esc.backends.prefix_cache import PrefixCache
    from esc.config import LearnerConfig
    from esc.models import load_model
    from learner.loop import Learner
    from learner.policy import candidate, candidate_group

    model, tokenizer = load_model("smollm2-135m")
    use_decode_linear(model)  # as in the rollout actors' hf backend (HFBackend)
    use_decode_attention(model)
    lm = CausalLM(model, tokenizer, PrefixCache())
    learner = Learner(
        LearnerConfig(lr=LR, format_weight=1.0, safety_weight=0.0, max_tokens=512),
        model,
        tokenizer.pad_token_id,
        lambda contexts, answers, intensities: [0.0] * len(answers),  # the format term carries the reward
        reward_weight=0.0,
    )
    seconds = []
    for step in range(iterations):
        started = time.perf_counter()
        prompt = tokenizer.apply_chat_template(messages(step), tokenize=False, add_generation_prompt=True)
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        params = [
            SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=MAX_NEW, seed=step * G + i)
            for i in range(G)
        ]
        outs = lm.decode([ids] * G, params)
        candidates = [candidate(o, version=learner.version) for o in outs]
        record = candidate_group(str(step), SITUATIONS[step % len(SITUATIONS)], candidates, learner.version)
        learner.update(lambda n, r=record: [r], lambda version, state: None, 1)
        seconds.append(time.perf_counter() - started)
    return seconds


def trl(iterations: int) -> list[float]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from esc.models import load_model

    model, tokenizer = load_model("smollm2-135m")
    model.train()
    dataset = Dataset.from_list([{"prompt": messages(i)} for i in range(iterations * 4)])

    def reward(completions, **_):
        return [reward_of(c[0]["content"] if isinstance(c, list) else c) for c in completions]

    seconds: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            seconds.append(time.perf_counter() - self.started)

    args = GRPOConfig(
        output_dir=os.path.join(os.environ.get("TMPDIR", "/tmp"), "rlff-bench-trl"),
        per_device_train_batch_size=G,
        num_generations=G,
        max_completion_length=MAX_NEW,
        temperature=1.0,
        top_p=1.0,
        beta=0.0,
        learning_rate=LR,
        max_steps=iterations,
        use_vllm=False,
        use_cpu=True,
        bf16=False,  # GRPOConfig turns bf16 on when left unset; on CPU that is autocast, far slower than fp32
        logging_steps=1000,
        save_strategy="no",
        report_to="none",
        shuffle_dataset=False,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=model, reward_funcs=[reward], args=args, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.add_callback(Timer())
    trainer.train()
    return seconds


def side(name: str, iterations: int) -> dict:
    import torch

    torch.manual_seed(0)
    seconds = (ours if name == "ours" else trl)(iterations)
    return {
        "side": name,
        "seconds": [round(s, 2) for s in seconds],
        "median_s": round(statistics.median(seconds[1:]), 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=4, help="including one warm-up")
    parser.add_argument("--side", choices=["ours", "trl"])
    args = parser.parse_args()
    if args.side:
        print(json.dumps(side(args.side, args.iterations)))
        return
    results = {}
    for name in ("ours", "trl"):
        command = [sys.executable, __file__, "--side", name, "--iterations", str(args.iterations)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{name}: {results[name]['median_s']} s per iteration, peak RSS {results[name]['peak_rss_mb']} MB"
        )
    ratio = results["trl"]["median_s"] / results["ours"]["median_s"]
    print(f"ours is {ratio:.2f}x faster per iteration")
    result = {
        "name": "grpo_vs_trl",
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
        "group_size": G,
        "max_new_tokens": MAX_NEW,
        "ours": results["ours"],
        "trl": results["trl"],
        "speedup": round(ratio, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
