"""`eval matrix`: every adapter (and the base model) on every task's held-out data.

A row is a model, a column a task. Off the diagonal a cell says how an adapter answers another
department's questions: what a request costs when the router sends it to the wrong adapter. Two
derived tables make that explicit, per cell, in the chosen metric:

- `vs_base` = cell - base model on that task (what the adapter adds or loses against the base);
- `misroute_cost` = the task's own adapter (the one of the task's name) - cell, for the other
  adapters and the base model: how much worse the answer gets when the request goes elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loramux.eval.inputs import TaskSet
from loramux.eval.lm import EvalModel
from loramux.eval.task import BASE, GenerationSettings, TaskRun, choose_metric, run_task


@dataclass
class MatrixReport:
    metric: str
    models: list[str]
    """Row names: `base` first, then the adapters."""
    tasks: list[str]
    runs: dict[str, dict[str, TaskRun]]
    """model -> task -> answers and scores."""
    settings: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)

    def value(self, model: str, task: str, metric: str | None = None) -> float:
        return self.runs[model][task].mean(metric or self.metric)

    def table(self) -> list[list[float]]:
        """The chosen metric, rows = models, columns = tasks."""
        return [[self.value(m, t) for t in self.tasks] for m in self.models]

    def vs_base(self) -> list[list[float]]:
        return [[self.value(m, t) - self.value(BASE, t) for t in self.tasks] for m in self.models]

    def misroute_cost(self) -> dict[str, dict[str, float]]:
        """task -> model -> (own adapter's score - this model's score), for tasks with an own
        adapter; the own adapter itself is left out."""
        cost: dict[str, dict[str, float]] = {}
        for t in self.tasks:
            if t in self.models and t != BASE:
                own = self.value(t, t)
                cost[t] = {m: round(own - self.value(m, t), 4) for m in self.models if m != t}
        return cost

    def to_dict(self) -> dict[str, Any]:
        every = {m: {t: self.runs[m][t].means() for t in self.tasks} for m in self.models}
        return {
            "kind": "matrix",
            "metric": self.metric,
            "rows": self.models,
            "cols": self.tasks,
            "matrix": [[round(v, 4) for v in row] for row in self.table()],
            "vs_base": [[round(v, 4) for v in row] for row in self.vs_base()],
            "misroute_cost": self.misroute_cost(),
            "all_metrics": every,
            "items": {t: len(next(iter(self.runs.values()))[t].answers) for t in self.tasks},
            "settings": self.settings,
            "files": self.files,
        }

    def format_table(self) -> str:
        """The matrix as aligned text, then the misroute cost per task."""
        width = max(8, *(len(t) for t in self.tasks))
        head = f"{'model / task':<16}" + "".join(f"{t:>{width + 2}}" for t in self.tasks)
        lines = [f"metric: {self.metric}", head]
        for m, row in zip(self.models, self.table(), strict=True):
            lines.append(f"{m:<16}" + "".join(f"{v:>{width + 2}.3f}" for v in row))
        cost = self.misroute_cost()
        if cost:
            lines += ["", "misroute cost (own adapter - this model, on the task's data):"]
            for task, per_model in cost.items():
                parts = ", ".join(f"{m} {v:+.3f}" for m, v in per_model.items())
                lines.append(f"  {task}: {parts}")
        lines += [f"{name}: {path}" for name, path in self.files.items()]
        return "\n".join(lines)


def evaluate_matrix(
    lm: EvalModel,
    tasks: Sequence[TaskSet],
    *,
    metric: str | None = None,
    settings: GenerationSettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> MatrixReport:
    """Answer every task set with the base model and with each adapter of `lm`.

    Raises:
        EvalInputError: no task data, or a metric that cannot apply to all of it.
    """
    settings = settings or GenerationSettings()
    chosen = choose_metric(tasks, metric)
    models = [BASE, *lm.adapters]
    runs: dict[str, dict[str, TaskRun]] = {}
    for model in models:
        adapter = None if model == BASE else model
        runs[model] = {t.name: run_task(lm, adapter, t, settings, progress) for t in tasks}
    info = {"max_new_tokens": settings.max_new_tokens, "decoding": "greedy"}
    return MatrixReport(chosen, models, [t.name for t in tasks], runs, info)
