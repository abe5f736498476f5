"""Every ``key=value`` that a message of scd/ suggests is a setting the config accepts: a message that names a key the
schema refuses (``decoding.shared_prefix=false`` for ``decoding_loop.shared_prefix``) leaves its reader at a dead end.

The messages are the string literals of scd/'s code (not docstrings or comments); a value filled in at run time
(``{limit}``, ``%d``) is replaced by the key's current value, so the key is still checked.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import ROOT, compose_config, validated

FILLED = "\x00"  # stands for a value formatted in at run time
SUGGESTION = re.compile(r"(?<![\w.{])([a-z_]+(?:\.[a-z_]+)+)=(\{[^}]*\}|\[[^\]]*\]|[^\s;,)'\"`]*)")


def message_texts(tree: ast.AST) -> list[str]:
    """The module's string literals that are not docstrings, an f-string's formatted parts (and %-formats) as FILLED."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}  # fmt: skip
    texts, inside_fstrings = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            inside_fstrings |= {id(part) for part in node.values}
            texts.append("".join(part.value if isinstance(part, ast.Constant) else FILLED for part in node.values))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                and id(node) not in inside_fstrings):
            texts.append(node.value)
    return [re.sub(r"%[sdrf]", FILLED, text) for text in texts]


GROUP_CHOICE = re.compile(r"(?<![\w.])([a-z_]+)=([a-z_0-9]+)")


def suggestions() -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(file, key, value, the group choices the message names) of every ``key=value`` in scd/'s messages: a key of
    one group option (``decoding.counterfactual``) is suggested with its option (``decoding=human``)."""
    found = set()
    for path in sorted((ROOT / "scd").rglob("*.py")):
        for text in message_texts(ast.parse(path.read_text())):
            choices = tuple(f"{group}={name}" for group, name in GROUP_CHOICE.findall(text)
                            if (ROOT / "conf" / group / f"{name}.yaml").exists())  # fmt: skip
            for key, value in SUGGESTION.findall(text):
                found.add((str(path.relative_to(ROOT)), key, value.rstrip(".:"), choices))
    return sorted(found)


def test_the_extraction_finds_the_messages_suggestions():
    found = {(key, value) for _, key, value, _ in suggestions()}
    assert ("decoding_loop.shared_prefix", "false") in found
    assert ("decoding.plausibility", "0.1") in found
    assert ("teacher.num_demonstrations", FILLED) in found
    # Docstrings are not messages: the schema's docstring shows a key it refuses.
    assert ("trainer.max_step", "10") not in found


@pytest.mark.parametrize("where,key,value,choices", [s for s in suggestions() if not s[1].startswith("hydra.")],
                         ids=lambda item: repr(item) if isinstance(item, str) else None)
def test_every_suggested_setting_is_accepted(tmp_path, where, key, value, choices):
    if value == FILLED:  # a value known at run time: the key must exist
        base = compose_config(["experiment=smoke"], tmp_path, tmp_path)
        assert OmegaConf.select(base, key, default=FILLED) != FILLED, f"{where}: {key} is not a config key"
        return
    validated(compose_config(["experiment=smoke", *choices, f"{key}={value}"], tmp_path, tmp_path))
