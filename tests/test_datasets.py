"""Readers of the official data set formats, their errors, and train/dev/test splits."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from scd.data import formats
from scd.data.example import Example
from scd.data.formats import FORMATS, DataFormatError, get_format
from scd.data.sources import load_splits

FIXTURES = Path(__file__).parent / "fixtures"


# ---------------------------------------------------------------- each format reads with the right values


def test_commonsenseqa_values():
    examples = get_format("commonsenseqa").read(FIXTURES / "commonsenseqa" / "train_rand_split.jsonl")
    assert [example.answer for example in examples] == [0, 1, 2, 3, 4, 0]
    first = examples[0]
    assert first.id == "csqa001"
    assert first.question == "Where would you keep a pen you use every day?"
    assert first.choices == ("desk drawer", "ocean", "volcano", "cloud", "moon")
    assert first.rationale is None
    assert examples[4].answer_text == "scissors"


def test_commonsenseqa_unlabeled_test_file_is_refused():
    path = FIXTURES / "commonsenseqa" / "test_rand_split_no_answers.jsonl"
    message = r"test_rand_split_no_answers\.jsonl, line 1, field 'answerKey'.*labels are needed"
    with pytest.raises(DataFormatError, match=message):
        get_format("commonsenseqa").read(path)


def test_strategyqa_values():
    examples = get_format("strategyqa").read(FIXTURES / "strategyqa" / "strategyqa_train.json")
    assert len(examples) == 8
    first, second = examples[:2]
    assert (first.id, first.question, first.choices, first.answer) == ("sqa01", "Can a lobster fly?", ("yes", "no"), 1)
    assert first.rationale == "Lobsters are crustaceans. Lobsters have no wings."
    assert second.answer == 0 and second.answer_text == "yes"


def test_creak_values():
    examples = get_format("creak").read(FIXTURES / "creak" / "dev.json")
    assert [example.id for example in examples] == ["dev_0", "dev_1", "dev_2", "dev_3"]
    assert [example.answer_text for example in examples] == ["false", "true", "true", "false"]
    assert examples[0].question == "Eating soup means eating only solids."
    assert examples[0].choices == ("true", "false")
    assert examples[0].rationale == "Soup is mainly liquid."
    assert examples[0].meta == {"entity": "Soup"}


def test_qasc_values():
    examples = get_format("qasc").read(FIXTURES / "qasc" / "dev.jsonl")
    assert [example.answer for example in examples] == [5, 6, 7, 0]
    first = examples[0]
    assert first.question == "What conducts electricity?"
    assert len(first.choices) == 8 and first.answer_text == "copper"
    assert first.rationale == "Metals conduct electricity. Copper is a metal."


def test_cose_values_in_official_column_order():
    examples = get_format("cose").read(FIXTURES / "cose" / "train.csv")
    assert [example.answer for example in examples] == [1, 0, 2, 0, 1, 0]
    first = examples[0]
    assert first.id == "c001"
    assert first.choices == ("born again", "unable to work", "no longer exist")
    assert first.rationale == "people who are dying are unable to work"
    assert examples[4].rationale == 'chalk, "white" sticks, write on blackboards'


def test_cose_tolerates_other_column_orders_extra_columns_and_multiline_cells():
    examples = get_format("cose").read(FIXTURES / "cose" / "dev.csv")
    assert [(example.id, example.answer_text) for example in examples] == [
        ("d001", "ice"), ("d002", "bird"), ("d003", "bed"), ("d004", "clock")]
    assert examples[0].choices == ("fire", "steam", "ice")
    assert examples[1].rationale == "birds have wings\nso they can fly"


def test_cose_any_number_of_choices(tmp_path):
    path = tmp_path / "five.csv"
    path.write_text("id,question,choice_0,choice_1,choice_2,choice_3,choice_4,label,human_exp\n"
                    "x1,What is red?,sky,grass,blood,snow,coal,2,blood is red\n")
    [example] = get_format("cose").read(path)
    assert len(example.choices) == 5 and example.answer_text == "blood"


def test_hub_layouts_normalize_like_files():
    csqa = FORMATS["commonsenseqa"].normalize({
        "id": "h1", "question": "Where do fish live?", "question_concept": "fish",
        "choices": {"label": ["A", "B", "C"], "text": ["water", "desert", "attic"]}, "answerKey": "A"})
    assert (csqa.question, csqa.choices, csqa.answer) == ("Where do fish live?", ("water", "desert", "attic"), 0)
    cose = FORMATS["cose"].normalize({
        "id": "h2", "question": "What can fly?", "choices": ["fish", "bird", "rock"], "answer": "bird",
        "abstractive_explanation": "birds fly", "extractive_explanation": "fly"})
    assert (cose.answer, cose.rationale) == (1, "birds fly")


# ---------------------------------------------------------------- errors name the file, the line and the field


def _jsonl(tmp_path: Path, rows: list, name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n")
    return path


def _csqa(id_: str, key: str | None = "A") -> dict:
    choices = [{"label": label, "text": f"choice {label}"} for label in "ABCDE"]
    row = {"id": id_, "question": {"stem": "Which?", "choices": choices}}
    if key is not None:
        row["answerKey"] = key
    return row


def _one_line_error(path: Path, fmt: str) -> str:
    with pytest.raises(DataFormatError) as info:
        get_format(fmt).read(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_malformed_json_line(tmp_path):
    path = _jsonl(tmp_path, [_csqa("q1"), '{"id": "q2", "question": ', _csqa("q3")])
    assert "line 2: malformed JSON" in _one_line_error(path, "commonsenseqa")


def test_missing_field(tmp_path):
    row = _csqa("q2")
    del row["question"]["stem"]
    path = _jsonl(tmp_path, [_csqa("q1"), row])
    assert "line 2, field 'question.stem': missing" in _one_line_error(path, "commonsenseqa")


def test_answer_not_among_the_choices(tmp_path):
    path = _jsonl(tmp_path, [_csqa("q1"), _csqa("q2"), _csqa("q3", key="F")])
    message = _one_line_error(path, "commonsenseqa")
    assert "line 3, field 'answerKey': 'F' is not among the choice labels A, B, C, D, E" in message


def test_cose_label_out_of_range(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('id,question,choice_0,choice_1,label,human_exp\n'
                    'a,"Q\nspanning lines",x,y,0,e\n'
                    'b,Q,x,y,2,e\n')
    assert "line 4, field 'label': index 2 is not among the 2 choices" in _one_line_error(path, "cose")


def test_cose_missing_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,question,choice_0,choice_1,human_exp\na,Q,x,y,e\n")
    assert "line 1, field 'label': missing from the header" in _one_line_error(path, "cose")


def test_duplicate_ids(tmp_path):
    path = _jsonl(tmp_path, [_csqa("q1"), _csqa("q2"), _csqa("q1")])
    assert "line 3, field 'id': duplicate id 'q1' (first at line 1)" in _one_line_error(path, "commonsenseqa")


def test_json_list_errors_name_the_element(tmp_path):
    path = tmp_path / "strategyqa.json"
    rows = [{"qid": "s1", "question": "Q?", "answer": True, "facts": ["f"]},
            {"qid": "s2", "question": "Q?", "answer": "yes", "facts": ["f"]}]
    path.write_text(json.dumps(rows))
    assert "element 1, field 'answer': expected true or false" in _one_line_error(path, "strategyqa")


def test_creak_bad_label(tmp_path):
    path = _jsonl(tmp_path, [{"ex_id": "e1", "sentence": "S.", "explanation": "E.", "label": "maybe"}])
    assert "line 1, field 'label'" in _one_line_error(path, "creak")


@pytest.mark.parametrize(
    ("fmt", "content"), [("commonsenseqa", ""), ("creak", "\n\n"), ("strategyqa", "[]"), ("cose", "")])
def test_empty_file(tmp_path, fmt, content):
    path = tmp_path / "empty"
    path.write_text(content)
    assert "empty" in _one_line_error(path, fmt)


def test_file_not_utf8(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(_csqa("q1")).encode() + b"\n" + '{"id": "caf\u00e9"}'.encode("latin-1") + b"\n")
    assert "line 2: file is not UTF-8" in _one_line_error(path, "commonsenseqa")


def test_unknown_format_lists_the_known_ones():
    assert {"commonsenseqa", "cose", "creak", "qasc", "strategyqa"} <= set(FORMATS)
    known = ", ".join(sorted(FORMATS))  # a format added later is listed too, with no edit here
    with pytest.raises(DataFormatError, match=f"unknown data format 'csqa'; known formats: {known}$"):
        get_format("csqa")


def test_a_format_registers_itself(monkeypatch, tmp_path):
    monkeypatch.setattr(formats, "FORMATS", dict(FORMATS))  # the registration is undone after the test

    @formats.data_format("yes_no_lines", formats._json_lines, explained=False)
    def normalize(row):
        return Example(str(row["n"]), row["q"], ("yes", "no"), 0 if row["a"] else 1)

    path = tmp_path / "data.jsonl"
    path.write_text('{"n": 1, "q": "is it?", "a": false}\n')
    assert [(e.id, e.answer) for e in get_format("yes_no_lines").read(path)] == [("1", 1)]
    with pytest.raises(DataFormatError, match="yes_no_lines"):
        get_format("csqa")


# ---------------------------------------------------------------- splits


CSQA_SPLITS = {"train": "train_rand_split.jsonl", "dev": None, "test": "dev_rand_split.jsonl"}


def test_dev_held_out_from_train_is_disjoint_and_deterministic():
    splits = load_splits("commonsenseqa", FIXTURES / "commonsenseqa", splits=CSQA_SPLITS, dev_size=2, seed=3)
    ids = {name: [example.id for example in examples] for name, examples in splits.items()}
    assert len(ids["dev"]) == 2 and len(ids["train"]) == 4
    assert sorted(ids["train"] + ids["dev"]) == [f"csqa00{i}" for i in range(1, 7)]
    assert ids["test"] == ["csqa101", "csqa102", "csqa103", "csqa104"]  # the official dev file serves as test
    again = load_splits("commonsenseqa", FIXTURES / "commonsenseqa", splits=CSQA_SPLITS, dev_size=2, seed=3)
    assert {name: [example.id for example in examples] for name, examples in again.items()} == ids
    held_out = {tuple(example.id for example in load_splits("commonsenseqa", FIXTURES / "commonsenseqa",
                splits=CSQA_SPLITS, dev_size=2, seed=seed)["dev"]) for seed in range(8)}
    assert len(held_out) > 1  # the seed chooses the held-out examples


def test_held_out_dev_does_not_depend_on_file_order(tmp_path):
    lines = (FIXTURES / "creak" / "train.json").read_text().splitlines()
    (tmp_path / "train.json").write_text("\n".join(reversed(lines)) + "\n")
    (tmp_path / "dev.json").write_text((FIXTURES / "creak" / "dev.json").read_text())
    creak_splits = {"train": "train.json", "dev": None, "test": "dev.json"}
    forward = load_splits("creak", FIXTURES / "creak", splits=creak_splits, dev_size=2, seed=0)
    backward = load_splits("creak", tmp_path, splits=creak_splits, dev_size=2, seed=0)
    assert {example.id for example in forward["dev"]} == {example.id for example in backward["dev"]}


def test_dev_and_test_both_held_out_from_train():
    splits = load_splits("strategyqa", FIXTURES / "strategyqa", splits={"train": "strategyqa_train.json"},
                         dev_size=2, test_size=3, seed=0)
    sizes = {name: len(examples) for name, examples in splits.items()}
    assert sizes == {"train": 3, "dev": 2, "test": 3}
    all_ids = [example.id for examples in splits.values() for example in examples]
    assert sorted(all_ids) == [f"sqa0{i}" for i in range(1, 9)]


def test_limit_caps_every_split_deterministically():
    kwargs = dict(splits={"train": "train.jsonl", "dev": "dev.jsonl", "test": "dev.jsonl"}, dev_size=0, seed=1)
    full = load_splits("qasc", FIXTURES / "qasc", **kwargs)
    limited = load_splits("qasc", FIXTURES / "qasc", limit=2, **kwargs)
    assert {name: len(examples) for name, examples in limited.items()} == {"train": 2, "dev": 2, "test": 2}
    for name in ("train", "dev"):
        full_ids = [example.id for example in full[name]]
        limited_ids = [example.id for example in limited[name]]
        assert set(limited_ids) <= set(full_ids)
        assert limited_ids == sorted(limited_ids, key=full_ids.index)  # kept in file order
    assert limited == load_splits("qasc", FIXTURES / "qasc", limit=2, **kwargs)


def test_cose_splits_from_csv():
    splits = load_splits("cose", FIXTURES / "cose", splits={"train": "train.csv", "dev": None, "test": "dev.csv"},
                         dev_size=1, seed=0, limit=3)
    assert {name: len(examples) for name, examples in splits.items()} == {"train": 3, "dev": 1, "test": 3}
    assert not {example.id for example in splits["dev"]} & {example.id for example in splits["train"]}


def test_empty_split_is_an_error_naming_it():
    with pytest.raises(ValueError, match="split 'dev'"):
        load_splits("commonsenseqa", FIXTURES / "commonsenseqa", splits=CSQA_SPLITS, dev_size=0)


def test_holding_out_all_of_train_is_an_error():
    with pytest.raises(ValueError, match="cannot hold out 6 examples"):
        load_splits("commonsenseqa", FIXTURES / "commonsenseqa", splits=CSQA_SPLITS, dev_size=6)


def test_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one of path"):
        load_splits("creak", FIXTURES / "creak", hub_id="amydeng2000/CREAK", splits=CSQA_SPLITS, dev_size=1)


# ---------------------------------------------------------------- hub loading, with a stand-in `datasets` module


def test_hub_rows_go_through_the_same_normalizer(monkeypatch):
    rows = {
        "train": [{"id": f"h{i}", "question": f"Question {i}?", "question_concept": "c",
                   "choices": {"label": ["A", "B", "C"], "text": ["x", "y", "z"]}, "answerKey": "ABC"[i % 3]}
                  for i in range(5)],
        "validation": [{"id": "v0", "question": "Q?", "question_concept": "c",
                        "choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answerKey": "B"}],
        "test": [],
    }
    calls = []

    def load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return rows[split]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    splits = load_splits("commonsenseqa", hub_id="tau/commonsense_qa", dev_size=1, seed=0,
                         splits={"train": "train", "dev": None, "test": "validation"})
    assert calls == [("tau/commonsense_qa", None, "train"), ("tau/commonsense_qa", None, "validation")]
    assert [example.answer for example in splits["test"]] == [1]
    assert len(splits["train"]) == 4 and len(splits["dev"]) == 1

    with pytest.raises(DataFormatError, match="hub dataset 'tau/commonsense_qa' split 'test': empty"):
        load_splits("commonsenseqa", hub_id="tau/commonsense_qa", dev_size=1,
                    splits={"train": "train", "dev": None, "test": "test"})


def test_hub_without_datasets_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ImportError, match="pip install datasets"):
        load_splits("creak", hub_id="some/creak", splits={"train": "train"}, dev_size=1)
