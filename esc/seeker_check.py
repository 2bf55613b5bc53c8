"""Role consistency of a simulated help-seeker: does a turn read as the seeker's or the supporter's?

`RoleChecker` is a multinomial naive Bayes classifier over word unigrams and bigrams, fitted on real
dialogue turns labelled by who spoke them (ESConv: seeker vs supporter). `seeker_probability(text)` is
the posterior that a seeker wrote `text` under equal class priors, so the number depends on the words
alone, not on which speaker talks more in the corpus; a turn is *in role* when that probability is at
least `threshold` (0.5). `role_consistency` is the share of turns in role. The fitted counts are a few
MB of JSON: fit at run time from the ESConv path (seconds) or cache them with `save`/`load` under the
run folder or `$RLFF_CACHE`, never in the repository (ESConv is CC BY-NC). Measured accuracy and
blind spots: docs/seeker.md. Plain Python: no Ray, no torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esc.models import cache_root
from esc.schemas import Dialogue, Scenario

LABELS = ("seeker", "counselor")
_WORD = re.compile(r"[a-z0-9']+|[?!]")
FORMAT = "rlff-role-checker/1"
GROUNDING_FORMAT = "rlff-seeker-grounding/2"  # bump when what is cached changes


def features(text: str) -> list[str]:
    """Lower-cased word unigrams and bigrams of `text`; '?' and '!' count as words, and the turn's
    start and end are markers so that bigrams see how a turn opens and closes."""
    words = ["<s>", *_WORD.findall(text.lower()), "</s>"]
    return words[1:-1] + [f"{a} {b}" for a, b in zip(words, words[1:])]


class RoleChecker:
    """Naive Bayes over `features`, two classes (`LABELS`), add-`alpha` smoothing.

    `counts[label]` maps a feature to how often it occurs in that label's training turns; `vocabulary`
    is every feature seen with `min_count` or more occurrences over both labels (rarer ones are dropped
    from the model and ignored when scoring).
    """

    def __init__(
        self,
        counts: dict[str, dict[str, int]],
        alpha: float = 1.0,
        threshold: float = 0.5,
        meta: dict[str, Any] | None = None,
    ):
        if set(counts) != set(LABELS):
            raise ValueError(f"a role checker needs counts for exactly {LABELS}, got {sorted(counts)}")
        if alpha <= 0 or not 0.0 < threshold < 1.0:
            raise ValueError("a role checker needs alpha > 0 and a threshold strictly between 0 and 1")
        self.counts, self.alpha, self.threshold = counts, alpha, threshold
        self.meta = dict(meta or {})
        self.vocabulary = set(counts["seeker"]) | set(counts["counselor"])
        size = len(self.vocabulary)
        totals = {label: sum(counts[label].values()) for label in LABELS}
        self._unseen = {label: -math.log(totals[label] + alpha * size) for label in LABELS}
        self._log = {
            label: {f: math.log(c + alpha) + self._unseen[label] for f, c in counts[label].items()}
            for label in LABELS
        }

    @classmethod
    def fit_texts(
        cls, texts: Iterable[tuple[str, str]], min_count: int = 2, alpha: float = 1.0, **meta: Any
    ) -> RoleChecker:
        """Fit on (label, text) pairs, label in `LABELS`."""
        counts: dict[str, Counter[str]] = {label: Counter() for label in LABELS}
        turns = Counter()
        for label, text in texts:
            if label not in counts:
                raise ValueError(f"unknown role label {label!r}; use one of {LABELS}")
            counts[label].update(features(text))
            turns[label] += 1
        if not all(turns[label] for label in LABELS):
            raise ValueError("a role checker needs at least one turn of each speaker to fit")
        total = counts["seeker"] + counts["counselor"]
        kept = {f for f, c in total.items() if c >= min_count}
        pruned = {label: {f: c for f, c in counts[label].items() if f in kept} for label in LABELS}
        return cls(pruned, alpha=alpha, meta={"turns": dict(turns), "min_count": min_count, **meta})

    @classmethod
    def fit(cls, dialogues: Iterable[Dialogue], min_count: int = 2, alpha: float = 1.0) -> RoleChecker:
        """Fit on every turn of `dialogues`, labelled by its speaker (`Turn.role`)."""
        dialogues = list(dialogues)
        pairs = [(t.role, t.text) for d in dialogues for t in d.turns if t.text.strip()]
        return cls.fit_texts(pairs, min_count=min_count, alpha=alpha, dialogues=len(dialogues))

    def log_likelihoods(self, text: str) -> dict[str, float]:
        """Sum of per-feature log-probabilities under each label (features outside the vocabulary skip)."""
        known = [f for f in features(text) if f in self.vocabulary]
        return {
            label: sum(self._log[label].get(f, self._unseen[label] + math.log(self.alpha)) for f in known)
            for label in LABELS
        }

    def seeker_probability(self, text: str) -> float:
        """P(seeker | text) under equal priors, in [0, 1]; 0.5 when no feature of `text` is known."""
        ll = self.log_likelihoods(text)
        diff = ll["counselor"] - ll["seeker"]
        if diff > 700:
            return 0.0
        return 1.0 / (1.0 + math.exp(diff))

    def in_role(self, text: str) -> bool:
        """True when `text` reads as a help-seeker's turn: seeker_probability >= threshold."""
        return self.seeker_probability(text) >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "alpha": self.alpha,
            "threshold": self.threshold,
            "meta": self.meta,
            "counts": self.counts,
        }

    @classmethod
    def from_dict(cls, payload: Any) -> RoleChecker:
        """The checker `to_dict` wrote; ValueError when `payload` is not one."""
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"not a role checker (expected format {FORMAT!r})")
        return cls(payload["counts"], payload["alpha"], payload["threshold"], payload.get("meta"))

    def save(self, path: str | Path) -> Path:
        """Write the checker as JSON (counts, alpha, threshold, meta); returns the path."""
        return _write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> RoleChecker:
        """Read a checker written by `save`; ValueError when the file is missing or not one."""
        try:
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read a role checker from {path}: {error}") from error
        try:
            return cls.from_dict(payload)
        except ValueError as error:
            raise ValueError(f"{path} is {error}") from error


def _write_json(path: Path, payload: Any) -> Path:
    """Write JSON atomically (a temporary file renamed into place), creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{random.getrandbits(32):08x}.tmp")
    tmp.write_text(json.dumps(payload), encoding="utf-8")
    tmp.replace(path)
    return path


def role_consistency(texts: Sequence[str], checker: RoleChecker) -> dict[str, float | int]:
    """Share of `texts` (seeker turns) that read as a seeker's: {'in_role', 'mean_probability', 'n'}.
    Empty input gives n = 0 and NaN shares."""
    probs = [checker.seeker_probability(t) for t in texts]
    n = len(probs)
    if not n:
        return {"in_role": float("nan"), "mean_probability": float("nan"), "n": 0}
    return {
        "in_role": sum(p >= checker.threshold for p in probs) / n,
        "mean_probability": sum(probs) / n,
        "n": n,
    }


def accuracy(dialogues: Iterable[Dialogue], checker: RoleChecker) -> dict[str, float | int]:
    """Held-out check: share of real turns classified as their true speaker, per speaker and balanced."""
    hits: dict[str, list[bool]] = {label: [] for label in LABELS}
    for dialogue in dialogues:
        for turn in dialogue.turns:
            if turn.text.strip():
                hits[turn.role].append(checker.in_role(turn.text) == (turn.role == "seeker"))
    per = {label: sum(h) / len(h) if h else float("nan") for label, h in hits.items()}
    return {
        "seeker_accuracy": per["seeker"],
        "counselor_accuracy": per["counselor"],
        "balanced_accuracy": (per["seeker"] + per["counselor"]) / 2,
        "seeker_turns": len(hits["seeker"]),
        "counselor_turns": len(hits["counselor"]),
    }


class SeekerExamples:
    """Real help-seekers' turns to show the simulator as style examples, by problem type.

    Kept: seeker turns of `min_words`..`max_words` words that the checker (when given) reads as a
    seeker's with probability >= `min_probability`, so greetings and thanks are left out.
    """

    def __init__(self, by_problem: dict[str, list[str]]):
        self.by_problem = {k: list(v) for k, v in by_problem.items() if v}
        self.all = [text for texts in self.by_problem.values() for text in texts]
        if not self.all:
            raise ValueError("no seeker turns qualify as examples; the dialogues hold no usable seeker turns")

    @classmethod
    def from_dialogues(
        cls,
        dialogues: Iterable[Dialogue],
        checker: RoleChecker | None = None,
        min_words: int = 6,
        max_words: int = 30,
        min_probability: float = 0.9,
    ) -> SeekerExamples:
        by_problem: dict[str, list[str]] = {}
        for dialogue in dialogues:
            for turn in dialogue.turns:
                text = " ".join(turn.text.split())
                if turn.role != "seeker" or not min_words <= len(text.split()) <= max_words:
                    continue
                if checker is None or checker.seeker_probability(text) >= min_probability:
                    by_problem.setdefault(dialogue.scenario.problem_type.lower(), []).append(text)
        return cls(by_problem)

    def pick(self, scenario: Scenario, k: int, seed: int = 0) -> list[str]:
        """`k` examples for `scenario`, the same for the same scenario id and seed (so every turn of a
        conversation sees the same ones); from its problem type when that has at least `k`."""
        pool = self.by_problem.get(scenario.problem_type.lower(), [])
        pool = pool if len(pool) >= k else self.all
        digest = hashlib.sha256(f"{seed}:{scenario.id}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big")).sample(pool, min(k, len(pool)))


_OPENER_WORD = re.compile(r"^[A-Za-z']+$")
_FIRST_PERSON = {"i", "i'm", "i've", "im", "my", "me", "we"}


def common_openers(texts: Iterable[str], checker: RoleChecker, k: int = 24, min_probability: float = 0.9):
    """The `k` most frequent two-word openings of `texts` with a first-person word ("I feel", "Yes I",
    "My husband"; capitalised, 'i' as 'I') that the checker, on those two words alone, reads as a
    seeker's with probability >= `min_probability`."""
    starts: Counter[str] = Counter()
    for text in texts:
        words = text.split()[:3]
        if len(words) < 3 or not all(_OPENER_WORD.match(w) for w in words[:2]):
            continue
        if {w.lower() for w in words[:2]} & _FIRST_PERSON:
            pair = ["I" if w.lower() == "i" else w.lower() for w in words[:2]]
            starts[" ".join(pair)[0].upper() + " ".join(pair)[1:]] += 1
    kept = [o for o, _ in starts.most_common() if checker.seeker_probability(o) >= min_probability]
    return tuple(kept[:k])


@dataclass(frozen=True)
class SeekerGrounding:
    """What grounds the simulator in data: the role checker and the example pool, fitted on the
    dialogues a data spec names (e.g. 'esconv:PATH#train')."""

    checker: RoleChecker
    examples: SeekerExamples
    openers: tuple[str, ...] = ()  # two-word openings of real seeker turns, to prefill a turn with

    @classmethod
    def fit(cls, dialogues: Sequence[Dialogue]) -> SeekerGrounding:
        checker = RoleChecker.fit(dialogues)
        examples = SeekerExamples.from_dialogues(dialogues, checker)
        return cls(checker, examples, common_openers(examples.all, checker))

    def opener(self, scenario: Scenario, turn: int, attempt: int) -> str:
        """A seeded choice among `openers` for one try of one turn ('' when there are none)."""
        if not self.openers:
            return ""
        digest = hashlib.sha256(f"{scenario.id}:{turn}:{attempt}".encode()).digest()
        return self.openers[int.from_bytes(digest[:8], "big") % len(self.openers)]

    @classmethod
    def from_spec(cls, spec: str, cache: Path | None = None) -> SeekerGrounding:
        """Fitted on `load_dialogues(spec)`, cached as JSON under `cache` (default $RLFF_CACHE/seeker)
        keyed by the spec and its files' sizes and modification times. Raises DataError for a bad spec."""
        from esc.data import load_dialogues, parse_spec  # esc.data is only needed on a cache miss

        parsed = parse_spec(spec)
        files = sorted(parsed.path.rglob("*") if parsed.path and parsed.path.is_dir() else [parsed.path])
        stamp = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f and f.is_file()]
        key = hashlib.sha256(json.dumps([GROUNDING_FORMAT, spec, stamp]).encode()).hexdigest()[:16]
        path = (cache or cache_root() / "seeker") / f"grounding-{key}.json"
        if path.is_file():
            try:
                payload = json.loads(path.read_text(encoding="utf-8"))
                examples = SeekerExamples(payload["examples"])
                return cls(RoleChecker.from_dict(payload["checker"]), examples, tuple(payload["openers"]))
            except (ValueError, KeyError, TypeError):
                pass  # a damaged cache entry is refitted below
        grounding = cls.fit(load_dialogues(parsed))
        payload = {
            "checker": grounding.checker.to_dict(),
            "examples": grounding.examples.by_problem,
            "openers": list(grounding.openers),
        }
        _write_json(path, payload)
        return grounding
