"""Prompt templates of the three LLM roles, in one place.

- Seeker simulator: role-plays the help-seeker of a Scenario; opens with their situation, answers in
  1-2 sentences, never acts as the counselor; optionally shown real seekers' turns as style examples.
- Counselor: replies to the seeker. With reasoning it writes `<think>private reasoning</think>
  <answer>what the seeker sees</answer>`; in plain mode it writes the reply only.
- Judge: reads the conversation and says how the seeker feels now compared with the start of the
  conversation, with one PPDPP verdict word: worse, same, better or solved.

Each builder returns OpenAI-style chat messages. Messages are written from the speaking role's point
of view: the other party's turns are "user" messages and the role's own turns "assistant" messages.
"""

from __future__ import annotations

from collections.abc import Sequence

from esc.schemas import Scenario, Turn

COUNSELOR_SYSTEM = (
    "You are a warm, skilled emotional-support counselor. Listen, reflect the person's feelings, ask "
    "gentle open questions and offer support. Keep replies short (1-3 sentences)."
)
COUNSELOR_REASONING_FORMAT = (
    "\nAlways answer in this format:\n<think>(what they feel and which support strategy fits)</think>\n"
    "<answer>(your reply to them, 1-2 sentences)</answer>\n\nExample:\nUser: I am stressed about money.\n"
    "Assistant: <think>They feel stressed and worried about money; ask what worries them most.</think>\n"
    "<answer>That sounds really stressful. What worries you most about your finances right now?</answer>"
)
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
THINK_PREFILL = "<think>"


def counselor_messages(
    history: list[Turn], reasoning: bool = True, max_turns: int = 0
) -> list[dict[str, str]]:
    """Messages for the counselor's next reply. history: the dialogue so far (answers only), of which
    only the last `max_turns` turns are shown (0: all of them)."""
    system = COUNSELOR_SYSTEM + (COUNSELOR_REASONING_FORMAT if reasoning else "")
    messages = [{"role": "system", "content": system}]
    for turn in history[-max_turns:] if max_turns else history:
        messages.append({"role": "user" if turn.role == "seeker" else "assistant", "content": turn.text})
    return merge_consecutive(messages)


SEEKER_OPENING = "Hi, what would you like to talk about today?"


def seeker_system(scenario: Scenario, examples: Sequence[str] = ()) -> str:
    """The seeker's system prompt: who they are, what they bring, how they talk; `examples` (real
    seeker turns from other conversations) are listed as style examples."""
    system = (
        "You are a person seeking emotional support: you have a problem and talk to a counselor. You feel "
        f"{scenario.emotion_type} because of {scenario.problem_type}. Your situation: {scenario.situation}\n"
        "You are the one who needs help. Talk about your own problem, your feelings and what happened to "
        "you, in the first person, in 1-2 short sentences. Answer the counselor's questions about yourself; "
        "you do not comfort or advise them, and you do not ask how they feel."
    )
    if examples:
        listed = "\n".join(f'- "{" ".join(text.split())}"' for text in examples)
        system += f"\nThis is how people seeking support talk:\n{listed}"
    return system


def seeker_messages(
    scenario: Scenario, history: list[Turn], examples: Sequence[str] = (), max_turns: int = 0
) -> list[dict[str, str]]:
    """Messages for the simulated seeker's next line (the opening line when history is empty).

    `examples`: real help-seekers' turns shown as style examples in the system prompt (only seeker
    text belongs there; see `esc.seeker_check.SeekerExamples`). Empty: the prompt alone. Only the last
    `max_turns` turns of `history` are shown (0: all of them).
    """
    messages = [
        {"role": "system", "content": seeker_system(scenario, examples)},
        {"role": "user", "content": SEEKER_OPENING},
    ]
    for turn in history[-max_turns:] if max_turns else history:
        messages.append({"role": "assistant" if turn.role == "seeker" else "user", "content": turn.text})
    return merge_consecutive(messages)


def merge_consecutive(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Join consecutive messages of the same role (real ESConv turns do this), so user and assistant
    strictly alternate as strict chat templates require."""
    merged: list[dict[str, str]] = []
    for message in messages:
        if merged and merged[-1]["role"] == message["role"] and message["role"] != "system":
            merged[-1] = {**merged[-1], "content": merged[-1]["content"] + "\n" + message["content"]}
        else:
            merged.append(dict(message))
    return merged


JUDGE_SYSTEM = (
    "You read a conversation between a help-seeker and a counselor and judge how the seeker feels now "
    "compared with the start of the conversation. Answer with exactly one word: worse, same, better, "
    "or solved."
)


def _transcript(history: list[Turn], max_chars: int) -> str:
    """The conversation as text; long ones keep the first two and the latest turns within max_chars."""
    lines = [f"{'Seeker' if t.role == 'seeker' else 'Counselor'}: {t.text}" for t in history]
    if sum(len(line) + 1 for line in lines) <= max_chars:
        return "\n".join(lines)
    head, tail, used = lines[:2], [], sum(len(line) + 1 for line in lines[:2]) + 4
    for line in reversed(lines[2:]):
        if used + len(line) + 1 > max_chars:
            break
        tail.insert(0, line)
        used += len(line) + 1
    return "\n".join([*head, "...", *tail])


def judge_messages(scenario: Scenario, history: list[Turn], max_chars: int = 6000) -> list[dict[str, str]]:
    """Messages asking the judge for one verdict word about the seeker's state after `history`.
    Transcripts longer than `max_chars` keep their opening and their latest turns."""
    transcript = _transcript(history, max_chars)
    question = (
        f"The seeker feels {scenario.emotion_type} about {scenario.problem_type}.\n\n{transcript}\n\n"
        "How does the seeker feel now compared with the start: worse, same, better, or solved?"
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": question}]
