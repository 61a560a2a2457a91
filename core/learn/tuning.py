"""The tuned protocol's recipe search: one small grid of candidates, the same for every model.

Under ``--protocol tuned`` each run (one model, one split or fold, one seed) trains every
candidate of :data:`TUNING_CANDIDATES` on that run's training galaxies, and keeps the one with the
best accuracy on that run's validation galaxies (:func:`best_candidate`): an inner split picks,
the run's test galaxies (the outer fold) score the pick and are never looked at before. The search
itself is in :func:`core.learn.training.train`; this module holds only what it searches and how it
picks (no Keras), so a page can show both before anything trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.errors import ConfigError

#: The recipes every model tries under the tuned protocol, on top of the shared base recipe
#: (:data:`core.learn.protocol.EQUAL_RECIPE`: AdamW, weight decay 1e-4, 30 epochs, early
#: stopping after 10, batch 32) and the model's own architecture options (its registry entry's
#: ``tuned`` ``model_options``). Why these three: the learning rate and its schedule are what the
#: former fixed per-model recipes differed in (LeNet-5 1e-3 at a constant rate, AlexNet 3e-4 and
#: ResNet 1e-3 under a cosine schedule), and each of those is here. Every model gets the same
#: candidates, the same number of them and the same epochs per candidate, so no model's recipe is
#: searched longer than another's.
TUNING_CANDIDATES: tuple[Mapping[str, Any], ...] = (
    {"learning_rate": 1e-3, "schedule": "cosine"},
    {"learning_rate": 3e-4, "schedule": "cosine"},
    {"learning_rate": 1e-3, "schedule": "constant"},
)

#: The fields a candidate may set: what the search varies, and nothing else.
TUNED_FIELDS = ("learning_rate", "schedule")


def check_candidates(candidates: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``candidates`` as plain dicts, checked: at least one, each setting only :data:`TUNED_FIELDS`.

    Raises
    ------
    ConfigError
        If there are none, or one sets another field.
    """
    out = [dict(c) for c in candidates]
    if not out:
        raise ConfigError("the tuned protocol needs at least one candidate recipe; got none. "
                          "Use core.learn.tuning.TUNING_CANDIDATES.")
    for candidate in out:
        if not candidate or not set(candidate) <= set(TUNED_FIELDS):
            raise ConfigError(f"a tuning candidate may set only {', '.join(TUNED_FIELDS)}; got {candidate!r}.")
    return out


def describe(candidate: Mapping[str, Any]) -> str:
    """``{"learning_rate": 3e-4, "schedule": "cosine"}`` -> ``lr 0.0003, cosine schedule``."""
    parts = [f"lr {candidate['learning_rate']:g}" if "learning_rate" in candidate else "",
             f"{candidate['schedule']} schedule" if "schedule" in candidate else ""]
    return ", ".join(p for p in parts if p)


def best_candidate(results: Sequence[Mapping[str, Any]]) -> int:
    """The index of the winner among ``results`` (one ``{"val_correct", "val_loss"}`` per candidate, in
    candidate order; a diverged one has ``val_correct`` None): the most correct validation galaxies,
    then the lower validation loss, then the earlier candidate.

    Raises
    ------
    ValueError
        If every candidate diverged.
    """
    scored = [(-r["val_correct"], r["val_loss"], k) for k, r in enumerate(results) if r.get("val_correct") is not None]
    if not scored:
        raise ValueError("every tuning candidate diverged")
    return min(scored)[2]
