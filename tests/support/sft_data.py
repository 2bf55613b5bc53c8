"""Synthetic dialogues and an SFT run config for the SFT tests (unit and e2e share them)."""

from __future__ import annotations

import shutil
from pathlib import Path

from esc.config import RunConfig, build_config
from esc.schemas import Dialogue, Scenario, Turn

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "esconv_split"
SCENARIO = Scenario(
    id="s-1", emotion_type="anxiety", problem_type="job crisis", situation="I may lose my job soon."
)
REPLY_INDICES = (2, 6)  # the counselor turns that become SFT examples


def seeker(text: str) -> Turn:
    return Turn(role="seeker", text=text)


def counselor(text: str, strategy: str | None = None) -> Turn:
    return Turn(role="counselor", text=text, strategy=strategy)


def dialogue(n: int = 0) -> Dialogue:
    """Counselor turns 2 and 6 follow a seeker; 3 follows a counselor and 8 is blank: both skipped."""
    turns = (
        counselor("Hello, how can I help?", "Question"),  # 0: opens, no seeker before it
        seeker(f"I am afraid I will lose my job ({n})."),
        counselor("Why do you think so?", "Question"),
        counselor("Take your time.", "Others"),
        seeker("My leave ends soon."),
        seeker("And I am not ready."),
        counselor("It sounds like you feel anxious and unready.", "Reflection of feelings"),
        seeker("Yes."),
        counselor("   ", "Question"),
    )
    return Dialogue(id=f"d-{n}", scenario=SCENARIO, turns=turns, source="esconv")


def sft_config(tmp_path: Path, *overrides: str) -> RunConfig:
    """A run under tmp_path whose sft.data is a copy of the ESConv fixture's train split."""
    data = tmp_path / "esconv"
    if not data.exists():
        shutil.copytree(FIXTURE, data)
    return build_config({"runs_dir": str(tmp_path / "runs")}, [f"sft.data=esconv:{data}#train", *overrides])
