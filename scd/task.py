"""Tasks: a data set and what it brings to the pipeline besides its examples.

``dataset.task._target_`` names the task's class, which Hydra instantiates with the run's validated config, its
decoding strategy (``decoding=``, None where a task is built to read a past run's config) and the other keys of
``dataset.task`` as keyword arguments. The pipeline asks a task for

- ``splits()``: the train, dev and test examples (an example's ``rationale`` is its gold or human rationale);
- ``trained_teacher()``: the directory of a teacher the task trains itself, or None when the teacher config names a
  checkpoint or a random init;
- ``shared_tokenizer()``: what ``tokenizer: teacher`` loads for the student and simulator;
- ``teacher_metrics(rationale_dir)``: exact metrics of a set of teacher rationales, computed once with the set;
- ``student_metrics(rationale_dir, predictions)``: exact metrics of a student's test predictions;
- ``label_rationale(record)``: a label for one rationale, which the sweep report shows beside it;
- ``cluster_key(record)``: the cluster a test item belongs to, which ``scd.compare`` resamples as a whole (items of one
  cluster share their errors); by default each item is its own cluster;
- ``item_fields(rationale_dir, predictions)``: the task's own per-item fields of the run's per-item file
  (``scd.evaluation.items``), by item id; ``teacher_item_fields(rationale_dir)`` the same for the teacher's test
  rationales;

and reads from its class, without building it (the report does, from a run's config):

- ``metrics``: the declarations (``scd.metrics.Metric``) of its own metrics, which the summary prints and the report's
  figures draw;
- ``figures``: dotted paths of the report figures of its own (functions of the report's cells, like those in
  ``scd.report.plots``), each captioned with its docstring;
- ``comparison_tables(jobs, spec)``: the Markdown tables and item-level evidence of its own that ``scd.compare``
  adds to a comparison of its jobs;
- ``teacher_metrics_version``: raised when its teacher metrics change, so that cached rationale sets measured with
  an earlier version are measured again.

``DatasetTask``, the default, reads a data set's files (or hub copy) and has no metrics of its own. A data set that
brings its own generator, teacher and metrics subclasses ``Task`` in its own package and overrides what it provides;
anything more a task can provide (gold rationales for perturbed answers, say) is one more method here, with a default
that provides nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate, to_absolute_path

from scd.config import Config
from scd.data.example import Example
from scd.data.formats import FORMATS
from scd.data.records import RationaleRecord
from scd.data.sources import load_splits
from scd.metrics import Metric

if TYPE_CHECKING:
    from scd.teacher.strategies import DecodingStrategy


class Task:
    """The defaults every task starts from: no teacher of its own, the teacher's tokenizer, no exact metrics."""

    metrics: ClassVar[tuple[Metric, ...]] = ()
    figures: ClassVar[tuple[str, ...]] = ()
    teacher_metrics_version: ClassVar[int] = 0

    def __init__(self, config: Config, *, decoding: DecodingStrategy | None = None) -> None:
        self.config = config
        self.decoding = decoding

    def splits(self) -> dict[str, list[Example]]:
        raise NotImplementedError(f"{type(self).__name__} must provide splits()")

    def trained_teacher(self) -> str | None:
        if self.config.teacher.trained is not None:
            raise ValueError(
                f"teacher.trained: dataset {self.config.dataset.name} trains no teacher in code; use a teacher with "
                "name_or_path or random_init"
            )
        return None

    def shared_tokenizer(self) -> str | None:
        teacher = self.config.teacher
        return self.trained_teacher() or teacher.tokenizer or teacher.name_or_path

    def teacher_metrics(self, rationale_dir: Path) -> dict[str, float]:
        return {}

    def student_metrics(self, rationale_dir: Path, predictions: Sequence[dict[str, Any]]) -> dict[str, float]:
        return {}

    def label_rationale(self, record: RationaleRecord) -> str | None:
        """A word on one rationale, shown beside it in the sweep report; None: the task has none."""
        return None

    @classmethod
    def comparison_tables(cls, jobs: Sequence[Any], spec: dict[str, Any]) -> str:
        """Markdown that ``scd.compare`` adds after the verdicts for this task's ``jobs`` (``scd.compare.Job``s,
        each with its ``items`` rows); none by default."""
        return ""

    def cluster_key(self, record: RationaleRecord) -> str:
        """The cluster of a test item for the bootstrap over items: the item itself unless a task knows better."""
        return record.id

    def item_fields(self, rationale_dir: Path, predictions: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The task's own fields of each test item's line in the per-item file, by item id."""
        return {}

    def teacher_item_fields(self, rationale_dir: Path) -> dict[str, dict[str, Any]]:
        """The task's own fields of each test rationale's line in the teacher's per-item file, by item id."""
        return {}


class DatasetTask(Task):
    """A data set read from files in ``dataset.path`` or from ``dataset.hub_id``, in ``dataset.format``."""

    def splits(self) -> dict[str, list[Example]]:
        d = self.config.dataset
        if d.format is None:
            raise ValueError(f"dataset {d.name}: set dataset.format, one of {', '.join(sorted(FORMATS))}")
        if d.path is None and d.hub_id is None:
            raise ValueError(f"dataset {d.name}: set dataset.path (a directory with {dict(d.splits)}) or dataset.hub_id")
        # A relative path is the launch directory's, also where hydra.job.chdir=true runs the job in its own.
        path = to_absolute_path(d.path) if d.path is not None else None
        return load_splits(
            d.format, path, d.hub_id, splits=d.splits, dev_size=d.dev_size, limit=d.limit, seed=d.seed,
            test_size=d.test_size, hub_config=d.hub_config,
        )


def task_class(task_config: Any) -> type[Task]:
    """The class a ``dataset.task`` node names, without building the task (which may generate a data set)."""
    target = task_config["_target_"]
    cls = get_class(target)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(f"dataset.task: {target} is not a scd.task.Task")
    return cls


def build_task(config: Config, decoding: DecodingStrategy | None = None) -> Task:
    """The task ``dataset.task`` names, for a run decoding with ``decoding``; an unknown class or argument is one
    error line naming ``dataset.task``."""
    try:
        # Partial: the run's config and strategy are built objects, not config to be instantiated.
        task = instantiate(config.dataset.task, _partial_=True, _convert_="all")(config, decoding=decoding)
    except (InstantiationException, TypeError) as err:
        raise ValueError(f"dataset.task: {str(err).strip().splitlines()[0]}") from err
    if not isinstance(task, Task):
        raise ValueError(f"dataset.task: {config.dataset.task['_target_']} is not a scd.task.Task")
    return task
