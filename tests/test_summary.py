"""The end-of-run summary: grouped, short, accuracy next to chance and the cue-following level."""

from __future__ import annotations

import json
from pathlib import Path

from scd.summary import chance_level, print_summary, summary_lines
from tests.conftest import validated

METRICS = {
    "student/accuracy": 0.4625, "student/oracle_accuracy": 0.965, "student/unparsable": 0.0,
    "student/las": 0.016, "student/las_ci_low": -0.021, "student/las_ci_high": 0.055, "student/las_leaked": 0.3,
    "student/perturbed_consistency": 0.831, "student/counterfactual_consistency": 0.804,
    "teacher/supports_answer": 0.752, "teacher/new_info": 0.551, "teacher/fluency": 1.22, "teacher/vacuity": 0.065,
    "toyworld/accuracy_cue_agrees": 0.925, "toyworld/accuracy_cue_opposes": 0.109,
    "toyworld/student_rationale_supports": 0.404, "toyworld/student_consistency": 0.758,
    "toyworld/counterfactual_consistency_cue_opposes": 0.772, "toyworld/teacher_supports": 0.614,
    "toyworld/teacher_cf_entails": 0.65, "toyworld/cue_following_accuracy": 0.4667, "toyworld/teacher_generic": 0.1,
    "time/teacher_s": 13.2, "time/student_s": 99.0, "time/evaluate_s": 83.4, "time/total_s": 283.0,
}


def write_test_split(run_dir: Path, choice_counts: list[int]) -> None:
    (run_dir / "rationales").mkdir(parents=True)
    rows = [{"id": str(i), "question": "q", "choices": [f"c{k}" for k in range(n)], "answer": 0, "perturbed_answer": 1,
             "rationale_for": 0, "rationale": "r"} for i, n in enumerate(choice_counts)]
    (run_dir / "rationales" / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_chance_is_the_mean_of_one_over_the_number_of_choices(tmp_path):
    write_test_split(tmp_path, [2, 2, 3])
    assert chance_level(tmp_path) == (0.5 + 0.5 + 1 / 3) / 3
    assert chance_level(tmp_path / "no-run") is None


def test_summary_groups_student_faithfulness_teacher_and_time(make_config, tmp_path):
    cfg, components = validated(make_config("dataset=toyworld"))
    lines = summary_lines(cfg, components, tmp_path, METRICS, chance=0.4444)
    assert lines == [
        f"scd: toyworld | decoding=contrast_wrong training=counterfactual -> {tmp_path}",
        "  student      accuracy 0.463 (chance 0.444, always following the cue 0.467) | with the teacher's rationale "
        "0.965 | unparsable 0.000",
        "               accuracy where the cue agrees 0.925 | accuracy where the cue opposes 0.109 | own rationale "
        "supports the gold answer 0.404",
        "  faithfulness LAS 0.016 [-0.021, 0.055] | answer kept under a perturbed rationale 0.831 | follows a "
        "counterfactual rationale 0.804",
        "               answer entailed by own rationale 0.758 | follows a counterfactual rationale against the cue "
        "0.772",
        "  teacher      judge: supports answer 0.752 | new info 0.551 | perplexity (lower is better) 1.220 | vacuous "
        "0.065",
        "               checker: supports answer (exact) 0.614 | checker: counterfactual rationale entails its answer "
        "0.650",
        "  time         teacher 13 s | student 99 s | evaluate 83 s | total 283 s",
        f"  all {len(METRICS)} metrics: {tmp_path / 'metrics.json'}",
    ]
    assert len(lines) <= 15


def test_a_run_without_evaluation_shows_its_times_only(make_config, tmp_path, capsys):
    cfg, components = validated(make_config())
    print_summary(cfg, components, tmp_path, {"time/teacher_s": 2.0, "time/total_s": 3.0})
    assert capsys.readouterr().out.splitlines() == [
        f"scd: smoke | decoding=contrast_wrong training=counterfactual -> {tmp_path}",
        "  time         teacher 2 s | total 3 s",
        f"  all 2 metrics: {tmp_path / 'metrics.json'}",
    ]


def test_accuracy_without_a_test_split_or_cue_metric_has_no_floor(make_config, tmp_path):
    cfg, components = validated(make_config())
    [_, student, _] = summary_lines(cfg, components, tmp_path, {"student/accuracy": 0.5}, chance=None)
    assert student == "  student      accuracy 0.500"


def test_accuracy_stands_beside_the_gold_chain_ceiling_the_task_reports(make_config, tmp_path):
    cfg, components = validated(make_config("dataset=toyworld"))
    lines = summary_lines(cfg, components, tmp_path, {**METRICS, "toyworld/gold_ceiling_accuracy": 0.9125},
                          chance=0.4444)
    assert lines[1].startswith("  student      accuracy 0.463 (chance 0.444, always following the cue 0.467, "
                               "gold-chain student 0.912) |")


def test_summary_names_the_icl_teacher_and_counts_missing_explanations(make_config, tmp_path):
    cfg, components = validated(make_config("student=icl_teacher", "decoding=human", "training=standard"))
    missing = {"rationales/missing_explanations/train": 2.0, "rationales/missing_explanations/dev": 0.0,
               "rationales/missing_explanations/test": 1.0}  # fmt: skip
    lines = summary_lines(cfg, components, tmp_path, {"student/accuracy": 0.5, **missing}, chance=0.5)
    assert lines[0] == (f"scd: smoke | student=icl_teacher (the teacher answers in context; its rationales: "
                        f"decoding=human training=standard) -> {tmp_path}")  # fmt: skip
    assert "  teacher      no explanation: train 2 | dev 0 | test 1" in lines


def test_a_metric_computed_but_not_measured_reads_n_a(make_config, tmp_path):
    """metrics.json marks a share of no items NaN: every answer unparsable leaves the consistency scores unmeasured."""
    cfg, components = validated(make_config())
    nan = float("nan")
    metrics = {"student/accuracy": 0.0, "student/unparsable": 1.0, "student/las": nan, "student/las_ci_low": nan,
               "student/las_ci_high": nan, "student/perturbed_consistency": nan,
               "student/counterfactual_consistency": nan, "toyworld/cue_following_accuracy": nan}
    [_, student, faithfulness, _] = summary_lines(cfg, components, tmp_path, metrics, chance=0.5)
    assert student == "  student      accuracy 0.000 (chance 0.500) | unparsable 1.000"
    assert faithfulness == ("  faithfulness LAS n/a | answer kept under a perturbed rationale n/a | follows a "
                            "counterfactual rationale n/a")
