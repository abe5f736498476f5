"""scd: self-consistent chain-of-thought distillation (SCOTT) with Hydra and Lightning."""

__version__ = "0.1.0"
