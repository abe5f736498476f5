"""Evaluation: leakage-adjusted simulatability, the simulator, teacher-rationale quality and W&B helpers."""
