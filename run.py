"""Entry point: `python run.py [group=option ...] [key=value ...]`, or `python run.py -m ...` for sweeps.

The stages live in scd/pipeline.py; scd/cli.py keeps each run's status and reports errors in one line.
"""

import hydra
from omegaconf import DictConfig

from scd.config import register_configs
from scd.cli import cli, main_task

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    main_task(cfg)


if __name__ == "__main__":
    # One error line for a bad command line too (unknown key or option), like every other bad input.
    cli(main)
