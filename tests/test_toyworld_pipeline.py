"""ToyWorld through the pipeline: the gold teacher's rationales, the student and the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from scd.data.records import RATIONALE_SPLITS, read_split
from scd.pipeline import run
from scd.toyworld.checker import judge
from scd.toyworld.world import WorldConfig, load_toyworld
from tests.conftest import CONF, validated

TINY_WORLD = {"n_categories": 2, "n_mc_choices": 2, "entities_per_category": 3, "n_properties": 6, "n_train": 16, "n_dev": 4, "n_test": 6}
TINY_MODEL = ("{model_type: t5, d_model: 32, d_kv: 8, d_ff: 64, num_layers: 1, num_decoder_layers: 1, num_heads: 2, "
              "dropout_rate: 0.0}")


def toyworld_overrides(*extra: str) -> list[str]:
    return [
        "experiment=toyworld_comparison", "student=toyworld", "simulator=toyworld", "decoding=gold", "training=counterfactual", "trainer.max_steps=4",
        *(f"dataset.task.world.{k}={v}" for k, v in TINY_WORLD.items()),
        *(f"teacher.trained.training.{k}={v}" for k, v in
          {"n_layers": 1, "d_model": 32, "n_heads": 2, "max_steps": 2, "probe_threshold": 0.0}.items()),
        f"student.random_init={TINY_MODEL}", f"simulator.random_init={TINY_MODEL}",
        "simulator.max_steps=2", "simulator.bootstrap_samples=10", *extra,
    ]


@pytest.mark.slow
def test_gold_teacher_and_student_run_end_to_end(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        raw = compose(config_name="config", overrides=toyworld_overrides())
    OmegaConf.set_struct(raw, False)
    raw.paths.output_dir, raw.paths.cache_dir = str(tmp_path / "run"), str(tmp_path / "cache")
    run_dir = Path(raw.paths.output_dir)
    run_dir.mkdir(parents=True)
    metrics = run(*validated(raw), raw, run_dir)

    world, _ = load_toyworld(WorldConfig(**TINY_WORLD))
    for split in RATIONALE_SPLITS:
        for record in read_split(run_dir / "rationales", split):
            assert record.decoding == "gold"
            judgement = judge(world, record.to_example(), record.rationale)
            assert judgement.entailed == record.rationale_for  # the chain for the answer it was written for
            assert judgement.supports(record.answer) == (record.rationale_for == record.answer)
    assert metrics["toyworld/teacher_supports"] == 1.0 and metrics["toyworld/teacher_cf_entails"] == 1.0
    assert (run_dir / "student" / "config.json").exists()
    # What the pre-registered bootstrap reads per test item: the student's and the simulator's answers.
    predictions = [json.loads(line) for line in (run_dir / "predictions" / "test.jsonl").read_text().splitlines()]
    simulated = [json.loads(line) for line in (run_dir / "predictions" / "simulator.jsonl").read_text().splitlines()]
    answered = [p["id"] for p in predictions if p["predicted"] is not None]
    # Four student steps may leave every answer unparsable: then LAS is skipped and no item is simulated.
    assert [s["id"] for s in simulated] == (answered if "student/las" in metrics else [])
    assert all(set(s) == {"id", "xe", "x", "e"} for s in simulated)
