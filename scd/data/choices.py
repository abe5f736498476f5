"""Choice texts compared the way an answer is matched to them: one normalisation for the answer matcher
(``match_choice``, which the student's answer parser and the in-context teacher use) and for the checks that refuse
choices it cannot tell apart."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

# Says in a refusal why two different texts count as one choice.
SAME_AS_PARSED = "once case, punctuation and spacing are ignored, as answers are parsed"


def normalize_choice(text: str) -> str:
    """Case-folded, punctuation turned into spaces, whitespace collapsed: ``"New-York!"`` -> ``"new york"``."""
    chars = (" " if unicodedata.category(char).startswith("P") else char for char in text.casefold())
    return " ".join("".join(chars).split())


def near_duplicate(choices: Sequence[str]) -> tuple[int, int] | None:
    """The first pair (earlier index, later index) of choices equal after ``normalize_choice``, or None. An answer
    naming either one would be parsed as the first, whichever is gold."""
    first_seen: dict[str, int] = {}
    for index, choice in enumerate(choices):
        key = normalize_choice(choice)
        if key in first_seen:
            return first_seen[key], index
        first_seen[key] = index
    return None


def _match_start(text: str, choices: list[str] | tuple[str, ...]) -> int | None:
    """Index of the longest choice that ``text`` starts with, followed by the end of text or a non-word character."""
    best: int | None = None
    for index, choice in enumerate(choices):
        if choice and text.startswith(choice):
            rest = text[len(choice) :]
            if (not rest or not rest[0].isalnum()) and (best is None or len(choice) > len(choices[best])):
                best = index
    return best


def match_choice(text: str, choices: list[str] | tuple[str, ...]) -> int | None:
    """The index of the choice ``text`` starts with: exact text first, then ignoring case, punctuation and spacing;
    the longest matching choice wins. None when it names none."""
    text = text.strip()
    exact = _match_start(text, choices)
    if exact is not None:
        return exact
    return _match_start(normalize_choice(text), [normalize_choice(choice) for choice in choices])
