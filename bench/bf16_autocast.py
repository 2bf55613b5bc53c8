"""bf16 autocast against float32 for the work of `make run`'s training stages, on one thread (as each
stage gets it there), with the embedded model: the reward model's text embeddings (16 texts x 48
tokens) and its likelihood-gain scoring (8 prompts of 160 tokens, 6 replies of 32 tokens each), and one
LoRA training step of the SFT stages (4 rows x 256 tokens). Both precisions in one run, each timed
after a warm-up pass, so the ratios are measured under the same load. Token ids are seeded random.

    .venv/bin/python bench/bf16_autocast.py [--threads 1] [--repeats 3]

Prints each timing, the ratio (bf16 time / float32 time; below 1 is faster) and the largest difference
of a likelihood score; the last line is the JSON report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from esc.backends.hf_decode import CausalLM  # noqa: E402
from esc.models import EMBEDDED, bf16_autocast, load_model  # noqa: E402
from learner.lora import add_lora  # noqa: E402


def timed(work, bf16: bool, repeats: int) -> tuple[float, object]:
    """Median seconds of `work()` under the precision, after one untimed warm-up call; its last result."""
    with bf16_autocast("cpu", bf16):
        result = work()
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            result = work()
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm, tokenizer = load_model(EMBEDDED)
    ids = torch.randint(100, 40_000, (4, 256), generator=torch.Generator().manual_seed(0))
    texts = ids[:, :48].repeat(4, 1)
    prompts = [ids[i % 4, :160].tolist() for i in range(8)]
    tails = [[ids[(i + j) % 4, 160:192].tolist() for j in range(6)] for i in range(8)]
    scorer = CausalLM(lm, tokenizer)

    def embed():
        with torch.inference_mode():
            return lm.base_model(input_ids=texts).last_hidden_state.float()

    report: dict = {"name": "bf16_autocast", "threads": args.threads, "seconds": {}, "ratio": {}}
    results = {}
    for name, work in (("embed", embed), ("likelihood", lambda: scorer.score(prompts, tails))):
        for bf16 in (False, True):
            report["seconds"][f"{name}-{'bf16' if bf16 else 'fp32'}"], results[name, bf16] = timed(
                work, bf16, args.repeats
            )
    exact, rounded = (torch.tensor(results["likelihood", b]) for b in (False, True))
    report["likelihood_max_abs_diff"] = round(float((exact - rounded).abs().max()), 3)
    model = add_lora(lm, 16)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for bf16 in (False, True):
        report["seconds"][f"lora_step-{'bf16' if bf16 else 'fp32'}"], _ = timed(step, bf16, args.repeats)
    for name in ("embed", "likelihood", "lora_step"):
        fp32, bf16 = report["seconds"][f"{name}-fp32"], report["seconds"][f"{name}-bf16"]
        report["ratio"][name] = round(bf16 / fp32, 3)
        print(f"{name:<11} float32 {fp32:.2f} s  bf16 {bf16:.2f} s  ratio {bf16 / fp32:.2f}", flush=True)
    print(f"likelihood scores: largest |bf16 - float32| {report['likelihood_max_abs_diff']} nats (32 tokens)")
    report["seconds"] = {k: round(v, 3) for k, v in report["seconds"].items()}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
