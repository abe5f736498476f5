"""Tasks: the config names the task class; ToyWorld plugs in through it, and its teacher does not depend on the
student's or simulator's text formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

import scd.toyworld.teacher as toyworld_teacher
from scd.config import validate
from scd.student import formatting
from scd.task import DatasetTask, build_task
from scd.toyworld.task import ToyWorldTask, format_texts
from scd.toyworld.teacher import demonstration
from scd.toyworld.tokenizer import build_tokenizer, extend_tokenizer
from scd.toyworld.world import WorldConfig, load_toyworld
from tests.conftest import TOYWORLD_PROMPT, compose_config, validated

# A ToyWorld that trains its teacher in seconds (the probe is not the point here).
TINY_TOYWORLD = [
    "dataset=toyworld", "teacher=toyworld", "dataset.task.world.n_categories=2", "dataset.task.world.n_mc_choices=2",
    "dataset.task.world.entities_per_category=3", "dataset.task.world.n_properties=6", "dataset.task.world.n_train=20",
    "dataset.task.world.n_dev=4", "dataset.task.world.n_test=4", "teacher.trained.training.n_layers=1",
    "teacher.trained.training.d_model=16", "teacher.trained.training.n_heads=2",
    "+teacher.trained.training.block_size=16", "teacher.trained.training.max_steps=2",
    "teacher.trained.training.probe_threshold=0.0", "trainer.enable_progress_bar=false",
]


def test_the_dataset_config_names_the_task(tmp_path):
    smoke = build_task(validate(compose_config(["experiment=smoke"], tmp_path, tmp_path)))
    assert type(smoke) is DatasetTask and smoke.trained_teacher() is None and smoke.shared_tokenizer() == "byt5"
    assert {name: len(examples) for name, examples in smoke.splits().items()} == {"train": 8, "dev": 4, "test": 6}
    toy = build_task(validate(compose_config(["dataset=toyworld", "dataset.limit=5"], tmp_path, tmp_path)))
    assert type(toy) is ToyWorldTask
    assert [ex.id for ex in toy.splits()["test"]] == [f"toyworld-test-{i:05d}" for i in range(5)]


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["dataset=toyworld", "+dataset.task.wrold=1"], "dataset.task: ToyWorldTask.__init__() got an unexpected "
                                                         "keyword argument 'wrold'"),
        (["dataset=toyworld", "+dataset.task.world.n_cats=3"], "dataset.task.world: WorldConfig.__init__() got an "
                                                                "unexpected keyword argument 'n_cats'"),
        (["experiment=smoke", "dataset.task._target_=scd.task.Nothing"], "dataset.task: Error locating target "
                                                                          "'scd.task.Nothing'"),
    ],
)
def test_bad_task_config_is_one_line_naming_the_key(tmp_path, overrides, message):
    with pytest.raises(ValueError) as error:
        build_task(validate(compose_config(overrides, tmp_path, tmp_path)))
    assert str(error.value).startswith(message)


def test_a_task_without_a_teacher_of_its_own_refuses_teacher_trained(tmp_path):
    task = build_task(validate(compose_config(["experiment=smoke", "teacher=toyworld"], tmp_path, tmp_path)))
    with pytest.raises(ValueError, match="teacher.trained: dataset smoke trains no teacher in code"):
        task.trained_teacher()


def test_toyworld_vocabulary_covers_the_student_and_simulator_texts():
    """The teacher's vocabulary (world, prompt, reserved words) covers every text the student and simulator make,
    so today's student shares the teacher's tokenizer as it is; the answer parses back from a decoded target."""
    world, splits = load_toyworld(WorldConfig())
    tokenizer = build_tokenizer(world, [TOYWORLD_PROMPT.prefix([demonstration(splits["train"][0])])])
    for ex in splits["test"][:20]:
        texts = format_texts(ex)
        for text in texts:
            assert tokenizer.unk_token_id not in tokenizer(text).input_ids, text
        assert extend_tokenizer(tokenizer, texts) is tokenizer
        target = formatting.format_target(ex.rationale, ex.answer_text, formatting.task_tag("distinct", True))
        assert formatting.parse_answer(tokenizer.decode(tokenizer(target).input_ids), ex.choices) == ex.answer


def test_a_new_word_in_a_student_format_extends_the_student_tokenizer_not_the_teacher(tmp_path, monkeypatch):
    task = build_task(validate(compose_config(TINY_TOYWORLD, tmp_path / "run", tmp_path / "cache")))
    teacher_dir = task.trained_teacher()
    # Today's formats need no word beyond the teacher's: the student reads the teacher's own tokenizer.
    unedited = task.shared_tokenizer()
    teacher_vocab = AutoTokenizer.from_pretrained(teacher_dir).get_vocab()
    assert unedited == teacher_dir

    def no_training(*args, **kwargs):
        raise AssertionError("the ToyWorld teacher was trained again")

    format_input = formatting.format_input
    monkeypatch.setattr(toyworld_teacher, "train_teacher", no_training)
    monkeypatch.setattr(formatting, "format_input", lambda q, c, tag: "Question ~ " + format_input(q, c, tag))
    edited = build_task(validate(compose_config(TINY_TOYWORLD, tmp_path / "run", tmp_path / "cache")))
    assert edited.trained_teacher() == teacher_dir
    student_dir = edited.shared_tokenizer()
    assert Path(student_dir).parent == Path(teacher_dir).parent and student_dir not in (teacher_dir, unedited)
    student = AutoTokenizer.from_pretrained(student_dir)
    assert {word: student.get_vocab()[word] for word in teacher_vocab} == teacher_vocab
    assert sorted(set(student.get_vocab()) - set(teacher_vocab)) == ["Question", "~"]
    question = edited.splits()["test"][0]
    assert student.unk_token_id not in student(formatting.format_input(question.question, question.choices, "")).input_ids
    assert edited.shared_tokenizer() == student_dir  # built once, then reused


@pytest.mark.parametrize(("decoding", "stops"), [("contrast_wrong", True), ("gold", False)])
def test_a_teacher_that_fails_its_probe_stops_only_runs_it_writes_for(tmp_path, decoding, stops):
    """A run whose rationales the teacher writes ends in one line naming the setting; with decoding=gold the teacher
    serves only the fluency metric, so the run goes on with a warning."""
    failing = [*TINY_TOYWORLD[:-2], "teacher.trained.training.probe_threshold=1.0", "trainer.enable_progress_bar=false",
               f"decoding={decoding}"]  # fmt: skip
    cfg, components = validated(compose_config(failing, tmp_path / "run", tmp_path / "cache"))
    task = build_task(cfg, components.decoding)
    if stops:
        with pytest.raises(ValueError, match=r"failed its readiness probe.*teacher\.trained\.training\.max_steps"):
            task.trained_teacher()
    else:
        with pytest.warns(UserWarning, match="failed its readiness probe"):
            assert Path(task.trained_teacher()).is_dir()
