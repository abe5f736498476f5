"""Choice texts compared the way a student's answer is matched to them: one normalisation for the answer parser
(``scd.student.formatting.match_choice``) and for the checks that refuse choices it cannot tell apart."""

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
