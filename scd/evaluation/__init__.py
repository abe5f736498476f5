"""Evaluation: leakage-adjusted simulatability and its simulator, the student's evaluate stage, the metrics of a
teacher rationale set (measured once, by the teacher stage) and W&B helpers."""
