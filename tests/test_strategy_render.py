"""A strategy renders its own contrast prompts: here HF's negative prompt, one fixed user prompt in place of the
example's question, as a contributor writes it (a class; with a YAML naming it, a decoding of its own)."""

from __future__ import annotations

from dataclasses import dataclass

from scd.data.example import Example
from scd.teacher.decoding import DecodingSettings, decode
from scd.teacher.jobs import RationaleJob
from scd.teacher.prompt import PromptTemplate
from scd.teacher.strategies import Contrast, Contrastive, Greedy
from scd.teacher.strategies.contrast_text import ContrastText
from tests.conftest import validated
from tests.helpers import NEVER, branches_reference, teacher, teacher_module  # noqa: F401 (a fixture)

LAM = 0.5
EXAMPLES = [Example("a", "Is fire hot?", ("yes", "no"), 0), Example("b", "Can a stone sing?", ("yes", "no"), 1)]


@dataclass(frozen=True)
class NegativePrompt(Contrastive):
    """Contrast with one fixed question, whatever the example asks, giving the example's gold answer."""

    negative: str = "Say anything."

    def contrast_answers(self, job: RationaleJob) -> list[Contrast]:
        return [job.rationale_for]

    def render(self, prompt: PromptTemplate, example: Example, contrast: Contrast) -> str:
        return prompt.query(self.negative, example.choices, example.choices[contrast])


def jobs() -> list[RationaleJob]:
    return [RationaleJob("test", ex, 1 - ex.answer, ex.answer) for ex in EXAMPLES]


def test_the_contrast_prompt_is_the_strategys_own_and_the_gold_prompt_is_unchanged(teacher):
    _, tokenizer = teacher
    branches = teacher_module(teacher, NegativePrompt(lam=LAM)).prompts(jobs())
    assert [[tokenizer.decode(ids) for ids in job] for job in branches] == [
        ["Q: Is fire hot?\nAnswer choices: yes | no\nA: The answer is yes.",
         "Q: Say anything.\nAnswer choices: yes | no\nA: The answer is yes."],
        ["Q: Can a stone sing?\nAnswer choices: yes | no\nA: The answer is no.",
         "Q: Say anything.\nAnswer choices: yes | no\nA: The answer is no."],
    ]  # fmt: skip
    # The default render is the example's own prompt with the contrast in the answer slot.
    assert [tokenizer.decode(ids) for ids in teacher_module(teacher, ContrastText(lam=LAM)).prompts(jobs())[0]][1] == (
        "Q: Is fire hot?\nAnswer choices: yes | no\nA: The answer is I don't know.")


def test_it_decodes_by_the_definition_and_differs_from_greedy(teacher):
    model, tokenizer = teacher
    built = teacher_module(teacher, NegativePrompt(lam=LAM))
    branches = built.prompts(jobs())
    project = decode(model, tokenizer, built.prefix_ids, branches, NegativePrompt(lam=LAM),
                     DecodingSettings(max_new_tokens=10), NEVER)  # fmt: skip
    assert project == branches_reference(model, built.prefix_ids, branches, LAM, 10)
    greedy = teacher_module(teacher, Greedy())
    assert project != decode(model, tokenizer, greedy.prefix_ids, greedy.prompts(jobs()), Greedy(),
                             DecodingSettings(max_new_tokens=10), NEVER)  # fmt: skip


def test_a_yaml_naming_it_builds_it(make_config):
    built = validated(make_config(f"decoding._target_={__name__}.NegativePrompt", "decoding.name=negative_prompt",
                                  "+decoding.negative=Tell me a story."))[1].decoding
    assert built == NegativePrompt(lam=LAM, plausibility=0.0, negative="Tell me a story.", name="negative_prompt")
