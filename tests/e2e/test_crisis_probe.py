"""The shipped crisis probe on the embedded model: its recall on the blind probe set (written after the
probe's training data and never trained on) does not fall, and a counselor with `safety.classifier:
probe` answers what the probe catches with the crisis reply, without calling its model."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from conftest import FIXTURES, REPO

from esc.config import CounselorConfig, SafetyConfig
from esc.roles import Counselor
from esc.safety import check_message
from esc.safety_probe import CrisisProbe, load_labelled
from esc.schemas import Turn

BLIND = FIXTURES / "crisis_probes_blind.jsonl"


@pytest.fixture(scope="module")
def probe():
    return CrisisProbe()


def test_measure_reports_the_blind_set_per_category():
    run = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "crisis-probe", "measure", str(BLIND)],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    counts = json.loads(run.stdout.strip().splitlines()[-1])[str(BLIND)]
    crisis = [c for name, c in counts.items() if name != "ordinary"]
    caught = sum(c["lexicon_or_probe"] for c in crisis) / sum(c["total"] for c in crisis)
    lexicon = sum(c["lexicon"] for c in crisis) / sum(c["total"] for c in crisis)
    false_alarms = counts["ordinary"]["lexicon_or_probe"] / counts["ordinary"]["total"]
    # docs/safety.md: 0.46 by the lexicon alone, 0.90 with the probe, 5% false alarms (2026-12-05)
    assert lexicon < 0.5 and caught >= 0.85
    assert false_alarms <= 0.07


class NoModel:
    """A backend the counselor must not call: every crisis here is answered without the model."""

    async def generate(self, *args, **kwargs):
        raise AssertionError("the counselor called its model for a message the probe flags")


def test_counselor_answers_what_only_the_probe_catches_with_the_crisis_reply(probe):
    rows = [r for r in load_labelled(BLIND) if r["category"] != "ordinary"]
    missed = [r["text"] for r in rows if not check_message(r["text"]).crisis]
    caught = [t for t, flag in zip(missed, probe.flags(missed), strict=True) if flag]
    assert len(caught) >= len(missed) // 2  # the probe catches most of what the lexicon misses
    counselor = Counselor(NoModel(), CounselorConfig(), SafetyConfig(), probe.any_crisis)
    for text in caught[:3]:
        history = [
            Turn(role="seeker", text="hi"),
            Turn(role="counselor", text="Hello."),
            Turn(role="seeker", text=text),
        ]
        output = asyncio.run(counselor.respond(history))
        assert output.turn.crisis, text
        assert "emergency" in output.turn.text
