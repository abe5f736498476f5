"""The frozen teacher as every stage that needs it loads it: the model and tokenizer, its prompt template and its
demonstrations (the teacher stage, the in-context teacher, the teacher's metrics and tasks that train one)."""

from __future__ import annotations

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from scd.config import TeacherConfig
from scd.data.example import Example
from scd.models import load_model, load_tokenizer
from scd.teacher.prompt import Demonstration, PromptTemplate, pick_demonstrations

Teacher = tuple[PreTrainedModel, PreTrainedTokenizerBase]

def demonstrations(cfg: TeacherConfig, train: list[Example], seed: int) -> list[Demonstration]:
    if cfg.demonstrations is not None:
        return [
            Demonstration(d["question"], tuple(d.get("choices", ())), d["answer"], d["rationale"])
            for d in cfg.demonstrations
        ]
    return pick_demonstrations(train, cfg.num_demonstrations, seed)


def teacher_prompt(t: TeacherConfig) -> PromptTemplate:
    return PromptTemplate(t.template, t.separator, t.instruction)


def load_teacher_model(t: TeacherConfig, teacher_dir: str | None) -> Teacher:
    """The frozen teacher and its tokenizer: a checkpoint, a random init, or the directory of a teacher the task trained."""
    source = teacher_dir or t.name_or_path
    tokenizer = load_tokenizer(t.tokenizer or source, trust_remote_code=t.trust_remote_code)
    model = load_model(
        "causal", tokenizer, name_or_path=source, random_init=t.random_init, dtype=t.dtype,
        device_map=t.device_map, trust_remote_code=t.trust_remote_code, seed=t.seed,
    )
    return model.eval().requires_grad_(False), tokenizer
