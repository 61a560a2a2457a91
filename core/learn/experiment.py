"""Train what a :class:`~core.learn.spec.TrainSpec` names: each model by the trainer its registry entry says.

Networks go to :func:`core.learn.grid.train_runs` (here, or on a dask cluster) under the spec's
protocol; a feature model (the gradient-boosting baseline) to its own trainer, on the same seeds,
folds and repeats, so the Comparison page pairs it with the networks split by split.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.learn import registry
from core.learn.spec import TrainSpec


def train_spec(
    spec: TrainSpec,
    *,
    runs_dir: str | Path | None = None,
    resume: bool = False,
    progress_callback: Callable[[dict[str, Any]], None] | None = None,
    threads: int | str | None = None,
) -> list[dict[str, Any]]:
    """Train every model of ``spec``; one outcome per run (``model``, ``seed``, ``fold``, ``split_seed``,
    ``run_dir``, ``status``, ``accuracy``, ``error``), feature models first.

    Raises
    ------
    ConfigError
        If ``spec`` names an unregistered model (the message lists the registered ones), before any run starts.
    """
    registry.check_models(spec.models)
    networks = [m for m in spec.models if registry.is_network(m)]
    outcomes: list[dict[str, Any]] = []
    for name in dict.fromkeys(m for m in spec.models if not registry.is_network(m)):
        # A feature model has no recipe: of the protocol's options only the class weighting applies to it.
        outcomes += registry.model_entry(name).train_runs(
            spec.dataset, seeds=list(spec.seeds), runs_dir=runs_dir, resume=resume,
            overrides={"class_weight": spec.class_weight}, folds=spec.folds, repeats=spec.repeats)
    if networks:
        from core.learn.grid import train_runs  # noqa: PLC0415 - a baseline-only job needs no Keras

        outcomes += train_runs(spec.dataset, models=networks, seeds=list(spec.seeds), runs_dir=runs_dir,
                               resume=resume, overrides=spec.overrides(), progress_callback=progress_callback,
                               folds=spec.folds, repeats=spec.repeats, threads=threads)
    return outcomes
