"""`rlff crisis-probe train|measure`: build the crisis probe's weights, and measure lexicon + probe.

Training (`train`): features of every labelled message from the embedded model (`esc.safety_probe`),
then, for each candidate layer, 5-fold cross-validation of a logistic regression: out-of-fold
probabilities set the threshold (the lowest one whose false alarms on ordinary distress stay at or
below `--max-false-alarm`) and score the layer by the probe's own out-of-fold crisis recall there (the
lexicon was written on some of these messages, so its recall here says nothing).
The best layer's regression, refitted on every message, is written with its threshold to
`esc/data/crisis_probe.safetensors`. Deterministic: folds are fixed by position, L-BFGS starts at 0.

Measuring (`measure`): recall per category and false alarms, for the lexicon alone and for the
lexicon or the probe, on labelled files the probe never trained on (docs/safety.md).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from esc.safety import check_message
from esc.safety_probe import (
    PROBE_FILE,
    TRAIN_FILE,
    CrisisProbe,
    ProbeFileError,
    features,
    load_backbone,
    load_labelled,
)
from jobs import UsageError
from jobs.progress import writable_output

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TRAIN = (
    TRAIN_FILE,
    REPO / "tests" / "fixtures" / "crisis_probes.jsonl",
    REPO / "tests" / "fixtures" / "crisis_probes_fresh.jsonl",
)
LAYERS = (9, 12, 15, 18, 21)
FOLDS = 5
WEIGHT_DECAY = 1e-2


def fit_logistic(x, y, weight_decay: float = WEIGHT_DECAY):
    """(mean, std, weight, bias) of an L2-regularised logistic regression on standardised features.
    x: [N, H] float; y: [N] in {0, 1}. Loss: mean BCE + weight_decay x |w|^2."""
    import torch

    mean, std = x.mean(dim=0), x.std(dim=0).clamp(min=1e-6)
    z = (x - mean) / std
    weight = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ weight + bias, y.float())
        loss = loss + weight_decay * (weight * weight).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return mean, std, weight.detach(), bias.detach()


def predict(model, x):
    import torch

    mean, std, weight, bias = model
    return torch.sigmoid(((x - mean) / std) @ weight + bias)


def threshold_for(ordinary: Sequence[float], max_false_alarm: float) -> float:
    """The lowest threshold t (flag when p >= t) at which at most `max_false_alarm` of the ordinary
    messages' probabilities reach t: just above the k-th highest, k = floor(max_false_alarm x n)."""
    ranked = sorted(ordinary, reverse=True)
    allowed = int(max_false_alarm * len(ranked))
    if allowed >= len(ranked):
        return 0.0
    return min(1.0, ranked[allowed] + 1e-6)


def out_of_fold(x, y, folds: int = FOLDS):
    """Each message's probability from the regression fitted on the other folds (fold = index % folds)."""
    import torch

    probs = torch.zeros(len(y))
    index = torch.arange(len(y))
    for fold in range(folds):
        held = index % folds == fold
        probs[held] = predict(fit_logistic(x[~held], y[~held]), x[held])
    return probs


def train(files: Sequence[Path], out: Path, max_false_alarm: float) -> dict:
    import torch
    from safetensors.torch import save_file

    rows = [row for f in files for row in load_labelled(f)]
    texts = [r["text"] for r in rows]
    y = torch.tensor([r["category"] != "ordinary" for r in rows])
    lexicon = torch.tensor([check_message(t).crisis for t in texts])
    backbone, tokenizer = load_backbone(max(LAYERS))
    base = backbone.layers
    scores = {}
    for layer in LAYERS:
        backbone.layers = base[:layer]
        x = features(backbone, tokenizer, texts)
        probs = out_of_fold(x, y)
        threshold = threshold_for(probs[~y].tolist(), max_false_alarm)
        alone, either = probs >= threshold, (probs >= threshold) | lexicon
        scores[layer] = {
            "threshold": threshold,
            "probe_recall": alone[y].float().mean().item(),
            "recall": either[y].float().mean().item(),
            "false_alarm": either[~y].float().mean().item(),
            "x": x,
        }
        got = scores[layer]
        print(f"layer {layer}: out-of-fold crisis recall {got['probe_recall']:.3f} alone,"
              f" {got['recall']:.3f} with the lexicon; false alarms {got['false_alarm']:.3f}"
              f" with the lexicon; threshold {threshold:.3f}")  # fmt: skip
    layer = max(LAYERS, key=lambda k: (scores[k]["probe_recall"], -scores[k]["false_alarm"]))
    mean, std, weight, bias = fit_logistic(scores[layer]["x"], y)
    meta = {"layer": str(layer), "threshold": f"{scores[layer]['threshold']:.6f}", "messages": str(len(rows))}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"mean": mean, "std": std, "weight": weight, "bias": bias}, str(out), metadata=meta)
    summary = {k: v for k, v in scores[layer].items() if k != "x"} | {"layer": layer, "messages": len(rows)}
    print(f"wrote {out}: layer {layer}, threshold {summary['threshold']:.3f}, {len(rows)} messages")
    return summary


def measure(files: Sequence[Path], probe_file: Path) -> dict:
    """Per file: flagged/total per category for the lexicon alone and for lexicon or probe."""
    probe = CrisisProbe(probe_file)
    report = {}
    for f in files:
        rows = load_labelled(f)
        texts = [r["text"] for r in rows]
        by_probe = probe.flags(texts)
        counts: dict[str, Counter] = {}
        for row, model_flag in zip(rows, by_probe, strict=True):
            c = counts.setdefault(row["category"], Counter())
            lex = check_message(row["text"]).crisis
            c["total"] += 1
            c["lexicon"] += lex
            c["lexicon_or_probe"] += lex or model_flag
        report[str(f)] = {k: dict(v) for k, v in counts.items()}
    return report


def print_report(report: dict) -> None:
    for name, counts in report.items():
        print(f"\n{name}")
        crisis = Counter()
        for category, c in sorted(counts.items()):
            print(f"  {category:16s} lexicon {c['lexicon']:3d}/{c['total']:<3d}"
                  f"  lexicon or probe {c['lexicon_or_probe']:3d}/{c['total']}")  # fmt: skip
            if category != "ordinary":
                crisis.update(c)
        if crisis["total"]:
            print(f"  crisis recall    lexicon {crisis['lexicon'] / crisis['total']:.3f}"
                  f"  lexicon or probe {crisis['lexicon_or_probe'] / crisis['total']:.3f}")  # fmt: skip


def run_crisis_probe(action: str, files: list[str], out: str | None, max_false_alarm: float) -> int:
    paths = [Path(f) for f in files] or (list(DEFAULT_TRAIN) if action == "train" else [])
    for path in paths:  # the default training files live in a source checkout, not in an installed package
        if not path.is_file():
            raise UsageError(f"{path} is not a file")
        try:
            rows = load_labelled(path)
        except ValueError as error:
            raise UsageError(str(error)) from None
        if not rows:
            raise UsageError(f"{path} holds no labelled messages")
    probe_file = Path(out or PROBE_FILE)
    if action == "train":
        train(paths, writable_output(probe_file), max_false_alarm)
        return 0
    if not probe_file.is_file():
        raise UsageError(f"{probe_file} is missing: run `rlff crisis-probe train` to build it")
    try:
        report = measure(paths, probe_file)
    except ProbeFileError as error:
        raise UsageError(str(error)) from None
    print_report(report)
    print(json.dumps(report))
    return 0
