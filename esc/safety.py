"""Crisis-safety check for seeker messages: the lexicon and the crisis reply.

Owns: the maintained crisis lexicon (regex phrases grouped into 'suicide', 'self_harm', 'abuse' and
'immediate_danger'), a small guard for idioms and denials that would otherwise trigger, and the
per-region crisis resources used by `crisis_reply`. The optional model-based classifier that runs
after the lexicon is in `esc/safety_model.py`; the counselor combines the two (`Counselor.is_crisis`).

It runs on every seeker/user message before a counselor reply is generated or served. It is a safety
net, not a diagnosis: it errs towards flagging (a false alarm costs one resource message; a miss can
cost a life), and it says nothing about a person's state beyond "this message needs a crisis reply".
It does not know about models, Ray, training or serving; it is plain Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CRISIS_RESOURCES", "SafetyResult", "check_message", "crisis_reply"]

# People a seeker may name as the source of harm; used in the abuse and danger phrases.
_PERSON = (
    r"(?:he|she|they|someone|somebody|my (?:husband|wife|partner|boyfriend|girlfriend|bf|gf|ex|dad|father"
    r"|mom|mum|mother|stepdad|stepfather|stepmom|stepmother|parents?|uncle|aunt|brother|sister|cousin"
    r"|grandpa|grandfather|roommate|flatmate|boss|coach|teacher))"
)

# Patterns run on normalised text: lower case, straight apostrophes, single spaces (see `_normalise`).
# Write a space as a single literal space; contractions as `don'?t` so "dont" also matches.
LEXICON: dict[str, tuple[str, ...]] = {
    "suicide": (
        r"\bsuicid(?:e|al)\b",
        r"\bkms\b",
        r"\b(?:kill|killing|killed|hang|hanging) my ?self\b",
        r"\b(?:end|ending|take|taking) my (?:own )?life\b",
        r"\bend(?:ing)? it all\b",
        r"\b(?:want|wanted|wanna|wish i could|ready) (?:to )?die\b",
        r"\bwish (?:i|i'd) (?:was|were|had) (?:dead|never been born)\b",
        r"\b(?:don'?t|do not|no longer) (?:want|wanna) (?:to )?"
        r"(?:be alive|be here any ?more|exist|wake up)\b",
        # "live" but not "live with my parents", "live alone", "live here", ...
        r"\b(?:don'?t|do not|no longer) (?:want|wanna) (?:to )?live\b"
        r"(?! (?:with|in|at|near|on|alone|there|here|together|somewhere|next|close|abroad|by|under|off)\b)",
        r"\b(?:hope|want|wish) (?:i |to )?(?:never|don'?t|do not|not) wake up\b",
        r"\bbetter off dead\b",
        r"\b(?:everyone|everybody|the world|my family|they|you)(?:'d| would| will)? "
        r"be better off without me\b",
        r"\bno (?:reason|point) (?:to|in) (?:live|living|go on|going on|being alive)\b",
        r"\bnothing (?:left )?to live for\b",
        r"\bcan'?t go on (?:living|any ?more)\b",
        r"\bjump(?:ing)? (?:off|in front of) (?:a |the )?(?:bridge|building|roof|train|cliff)\b",
    ),
    "self_harm": (
        r"\b(?:cut|cutting|burn|burning|burned|burnt|hurt|hurting|harm|harming|starve|starving) my ?self\b",
        r"\bself[- ]?(?:harm|harming|injury|injuring)\b",
        r"\boverdos(?:e|ed|es|ing)\b",
        r"\bslit(?:ting)? my wrists?\b",
        r"\b(?:razor|blade)s? (?:to|on|into) my (?:arm|wrist|skin|leg|thigh)s?\b",
    ),
    "abuse": (
        rf"\b{_PERSON} (?:hits|hit|beats|beat|chokes|choked|strangles|strangled|kicks|kicked|slaps|slapped"
        r"|punches|punched|rapes|raped|molests|molested|abuses|abused) me\b",
        r"\btouch(?:es|ed)? me inappropriately\b",
        r"\b(?:being|been|was|am|getting|got) (?:physically |sexually |emotionally )?"
        r"(?:abused|molested|raped|assaulted|beaten up)\b",
        r"\bdomestic (?:violence|abuse)\b",
        rf"\b(?:afraid|scared|terrified|fear|worried) (?:that )?{_PERSON}(?:'ll| will| is going to| is gonna"
        r"|'s going to|'s gonna| might| would| could| wants to) (?:kill|hurt|hit|beat) me\b",
        rf"\b{_PERSON} (?:threatens|threatened|keeps threatening|has threatened) to "
        r"(?:kill|hurt|hit|beat) me\b",
        r"\b(?:not|don'?t feel|do not feel|never feel) safe (?:at home|around (?:him|her|them|my \w+)"
        r"|with (?:him|her|them|my \w+))\b",
    ),
    "immediate_danger": (
        rf"\b{_PERSON} (?:is|'s) (?:following|stalking|chasing) me\b",
        r"\bi(?: have|'ve got| got) (?:a|my) (?:gun|pistol|rifle|firearm)\b",
        rf"\b{_PERSON}(?: has|'s got|'s) (?:a|my) (?:gun|knife)\b",
        r"\b(?:gun|knife|blade|razor) (?:to|against) my (?:wrist|throat|head|skin)\b",
        r"\b(?:pills|rope|noose|gun|knife) (?:is |are )?(?:ready|in my hand|right here|next to me)\b",
        r"\b(?:took|taken|swallowed) (?:a bunch of|all (?:of )?(?:my|the)|too many|a lot of|a handful of"
        r"|a (?:whole )?bottle of|\d+) (?:\w+ )?(?:pills|tablets|meds|medications?|painkillers)\b",
        r"\btrying to break in\b",
        r"\bbreak(?:ing)? into my (?:house|home|apartment|flat|room|car)\b",
        r"\b(?:i'?m|i am) (?:in (?:immediate |serious )?danger)\b(?! of\b)",
        r"\b(?:i'?m|i am|can'?t stop) bleeding\b",
    ),
}

# Idioms and denials. A lexicon hit that overlaps one of these spans is ignored, so keep each phrase
# as narrow as the idiom itself: anything broader would hide a real crisis sentence.
BENIGN: tuple[str, ...] = (
    r"\b(?:not|never|no longer)(?: been| feeling)? suicidal\b",
    r"\bkill(?:ed|ing)? my ?self laughing\b",
    r"\bdie (?:of|from) (?:embarrassment|shame|boredom|cringe|laughter)\b",
    r"\bdie laughing\b",
    # Accidents only: "I cut myself when I feel empty" must still be flagged.
    r"\b(?:hurt|cut|burn|burned|burnt) my ?self (?:(?:while |when )?(?:playing|cooking|shaving|running"
    r"|lifting|skiing|training|working out)|at the gym|during (?:practice|training|a game|the game|the match)"
    r"|on (?:a|the|some) (?:broken )?(?:glass|paper|stove|oven|pan|iron|nail|tin can))\b",
    r"\boverdos\w* on (?:coffee|caffeine|sugar|chocolate|candy|junk food|netflix|tv)\b",
    r"\b(?:caffeine|coffee|sugar|chocolate) overdose\b",
    r"\bhits? me up\b",
    r"\bbeats? me (?:at|in|to|by|\d)",
    r"\bkick(?:s|ed)? me out\b",
    r"\bfollowing me (?:back|on (?:instagram|insta|twitter|x|tiktok|facebook|youtube|twitch|social media))\b",
    r"\bgun (?:license|licence|collection|safe|range)\b",
)

CATEGORIES: tuple[str, ...] = tuple(LEXICON)

_COMPILED = {category: tuple(re.compile(p) for p in patterns) for category, patterns in LEXICON.items()}
_BENIGN_COMPILED = tuple(re.compile(p) for p in BENIGN)

CRISIS_RESOURCES: dict[str, tuple[str, ...]] = {
    "us": ("988 Suicide & Crisis Lifeline: call or text 988", "Emergency services: 911"),
    "ca": ("9-8-8 Suicide Crisis Helpline: call or text 988", "Emergency services: 911"),
    "uk": ("Samaritans: call 116 123 (free, any time)", "Emergency services: 999 or 112"),
    "ie": ("Samaritans: call 116 123 (free, any time)", "Emergency services: 112 or 999"),
    "au": ("Lifeline: call 13 11 14 (any time)", "Emergency services: 000"),
    "international": (
        "Your local emergency services number",
        "findahelpline.com, which lists free helplines by country",
    ),
}


@dataclass(frozen=True)
class SafetyResult:
    """Outcome of checking one message.

    Invariants: `crisis` is True iff `categories` is non-empty. `categories` are in `CATEGORIES` order.
    `matches` are the matched phrases from the normalised (lower-cased) text, in order of appearance,
    without duplicates.
    """

    crisis: bool
    categories: tuple[str, ...]
    matches: tuple[str, ...]


def _normalise(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(text.split())


def _overlaps(span: tuple[int, int], others: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in others)


def check_message(text: str) -> SafetyResult:
    """Check one seeker message against the lexicon; see `SafetyResult` for what comes back."""
    normalised = _normalise(text)
    benign = [m.span() for pattern in _BENIGN_COMPILED for m in pattern.finditer(normalised)]
    categories: list[str] = []
    hits: list[tuple[int, str]] = []
    for category, patterns in _COMPILED.items():
        found = [
            (m.start(), m.group(0))
            for pattern in patterns
            for m in pattern.finditer(normalised)
            if not _overlaps(m.span(), benign)
        ]
        if found:
            categories.append(category)
            hits.extend(found)
    if not categories:
        return SafetyResult(crisis=False, categories=(), matches=())
    matches = tuple(dict.fromkeys(phrase for _, phrase in sorted(hits)))
    return SafetyResult(crisis=True, categories=tuple(categories), matches=matches)


def crisis_reply(region: str = "international") -> str:
    """A short, warm reply for a seeker in crisis, listing the crisis resources for `region`.

    Raises:
        ValueError: `region` is not a key of `CRISIS_RESOURCES`.
    """
    key = region.strip().lower()
    if key not in CRISIS_RESOURCES:
        known = ", ".join(sorted(CRISIS_RESOURCES))
        raise ValueError(f"Unknown crisis-resource region {region!r}; use one of: {known}.")
    resources = "; ".join(CRISIS_RESOURCES[key])
    return (
        "I'm really sorry you're going through this, and I'm glad you told me. "
        "You deserve support right now, and you don't have to face this alone. "
        "If you are in immediate danger, please contact emergency services now. "
        f"You can reach someone any time here: {resources}."
    )
