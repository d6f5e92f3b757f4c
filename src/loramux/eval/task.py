"""`eval task`: each adapter against the base model on its own task's held-out data.

Both models answer every held-out question greedily (see `generation.py`); each answer gets every
metric of `answer_metrics.py`, and the chosen one (`key_accuracy` when every example has keys,
else `token_f1`) is compared with a paired bootstrap interval (`stats.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loramux.eval.answer_metrics import ANSWER_METRICS
from loramux.eval.generation import generate_answers
from loramux.eval.inputs import EvalInputError, TaskSet
from loramux.eval.lm import EvalModel
from loramux.eval.stats import DEFAULT_RESAMPLES, PairedDiff, paired_bootstrap

BASE = "base"
"""How reports name the base model's row."""


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 48
    batch_size: int = 16


@dataclass
class TaskRun:
    """One model's answers to one task set, with every metric per answer."""

    model: str
    task: str
    answers: list[str]
    scores: dict[str, list[float]]

    def mean(self, metric: str) -> float:
        values = self.scores[metric]
        return sum(values) / len(values)

    def means(self) -> dict[str, float]:
        return {m: round(self.mean(m), 4) for m in self.scores}


def run_task(
    lm: EvalModel,
    adapter: str | None,
    task: TaskSet,
    settings: GenerationSettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> TaskRun:
    """Answer every example of `task` with the base model (`None`) or an adapter, and score."""
    settings = settings or GenerationSettings()
    label = adapter or BASE

    def tick(done: int, total: int) -> None:
        if progress is not None:
            progress(f"{label} on {task.name}: {done}/{total} answers")

    answers = generate_answers(
        lm,
        adapter,
        [list(e.prompt) for e in task.examples],
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.batch_size,
        progress=tick,
    )
    scores = {
        name: [fn(a, e.reference, e.keys) for a, e in zip(answers, task.examples, strict=True)]
        for name, fn in ANSWER_METRICS.items()
        if name != "key_accuracy" or task.has_keys
    }
    return TaskRun(label, task.name, answers, scores)


def choose_metric(tasks: Sequence[TaskSet], metric: str | None) -> str:
    """The metric to compare by: the one named, else key accuracy when every example has keys.

    Raises:
        EvalInputError: an unknown metric, or key accuracy on data without keys.
    """
    if metric is None:
        return "key_accuracy" if all(t.has_keys for t in tasks) else "token_f1"
    if metric not in ANSWER_METRICS:
        raise EvalInputError(
            f"unknown metric {metric!r}; choose from {', '.join(ANSWER_METRICS)}", param="metric"
        )
    lacking = [t.name for t in tasks if metric == "key_accuracy" and not t.has_keys]
    if lacking:
        raise EvalInputError(
            f"key_accuracy needs `keys` on every example, and {', '.join(lacking)} has examples "
            "without; use --metric token_f1 or exact_match",
            param="metric",
        )
    return metric


def verdict(diff: PairedDiff) -> str:
    """`better` / `worse` when the whole interval is above / below zero, else `no clear change`."""
    if diff.low > 0:
        return "better"
    if diff.high < 0:
        return "worse"
    return "no clear change"


@dataclass
class TaskResult:
    task: TaskSet
    adapter: str
    metric: str
    base: TaskRun
    tuned: TaskRun
    diff: PairedDiff

    def to_dict(self) -> dict[str, Any]:
        examples = [
            {
                "question": e.question(),
                "reference": e.reference,
                "keys": list(e.keys),
                "base_answer": b,
                "adapter_answer": a,
                "base_score": self.base.scores[self.metric][i],
                "adapter_score": self.tuned.scores[self.metric][i],
            }
            for i, (e, b, a) in enumerate(
                zip(self.task.examples, self.base.answers, self.tuned.answers, strict=True)
            )
        ]
        return {
            "task": self.task.name,
            "data": str(self.task.path),
            "adapter": self.adapter,
            "items": len(self.task.examples),
            "metric": self.metric,
            "base": self.base.means(),
            "adapter_scores": self.tuned.means(),
            "diff": self.diff.to_dict(),
            "verdict": verdict(self.diff),
            "examples": examples,
        }


@dataclass
class TaskReport:
    metric: str
    results: list[TaskResult]
    settings: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "task",
            "metric": self.metric,
            "settings": self.settings,
            "results": [r.to_dict() for r in self.results],
            "files": self.files,
        }

    def format_table(self) -> str:
        """One line per adapter: base and adapter score, the difference and its interval."""
        lines = [
            f"metric: {self.metric} (difference = adapter - base, 95% paired bootstrap interval)",
            f"{'adapter':<14} {'task':<12} {'items':>5} {'base':>6} {'adapter':>7} "
            f"{'diff':>7} {'95% CI':>17}  verdict",
        ]
        for r in self.results:
            d = r.diff
            lines.append(
                f"{r.adapter:<14} {r.task.name:<12} {len(r.task.examples):>5} {d.a:>6.3f} "
                f"{d.b:>7.3f} {d.diff:>+7.3f} [{d.low:>+6.3f}, {d.high:>+6.3f}]  {verdict(d)}"
            )
        lines += [f"{name}: {path}" for name, path in self.files.items()]
        return "\n".join(lines)


def pair_adapters_with_tasks(adapters: Sequence[str], tasks: Sequence[TaskSet]) -> list[TaskSet]:
    """The task set each adapter is evaluated on: the one with its name (or the only one).

    Raises:
        EvalInputError: an adapter has no task set of its name.
    """
    if len(adapters) == 1 and len(tasks) == 1:
        return [tasks[0]]
    by_name = {t.name: t for t in tasks}
    missing = [a for a in adapters if a not in by_name]
    if missing:
        raise EvalInputError(
            f"no --data named {', '.join(map(repr, missing))}: each adapter is evaluated on the "
            f"task data of its name (have {', '.join(by_name)}); name files with NAME=FILE",
            param="data",
        )
    return [by_name[a] for a in adapters]


def evaluate_tasks(
    lm: EvalModel,
    tasks: Sequence[TaskSet],
    *,
    metric: str | None = None,
    settings: GenerationSettings | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> TaskReport:
    """Every adapter of `lm` against the base model on its own task set.

    Args:
        lm: the base model with the adapters to evaluate.
        tasks: held-out task sets; each adapter takes the one of its name.
        metric: compare by this metric (see `choose_metric`).
        settings: generation settings.
        resamples: bootstrap redraws for the interval.
        seed: bootstrap seed.
        progress: called with one line per batch of answers.

    Raises:
        EvalInputError: no adapter, an adapter without task data, or a metric that cannot apply.
    """
    settings = settings or GenerationSettings()
    if not lm.adapters:
        raise EvalInputError("name at least one adapter to evaluate (--adapter)", param="adapter")
    paired = pair_adapters_with_tasks(lm.adapters, tasks)
    chosen = choose_metric(paired, metric)
    base_runs: dict[str, TaskRun] = {}
    results = []
    for adapter, task in zip(lm.adapters, paired, strict=True):
        if task.name not in base_runs:
            base_runs[task.name] = run_task(lm, None, task, settings, progress)
        base = base_runs[task.name]
        tuned = run_task(lm, adapter, task, settings, progress)
        diff = paired_bootstrap(
            {task.name: base.scores[chosen]},
            {task.name: tuned.scores[chosen]},
            resamples=resamples,
            seed=seed,
        )
        results.append(TaskResult(task, adapter, chosen, base, tuned, diff))
    info = {
        "max_new_tokens": settings.max_new_tokens,
        "batch_size": settings.batch_size,
        "resamples": resamples,
        "seed": seed,
        "decoding": "greedy",
    }
    return TaskReport(chosen, results, info)
