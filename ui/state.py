"""What the user chose: session-state policy, and the widgets turned into specs.

Pages read the canonical choices ``source`` and ``scheme`` from the session; the Preprocessing
page's sliders (``pp_*``) and the Class balance page's policy and switches make one
:class:`~core.spec.BuildSpec` here (:func:`build_spec`), which the preview, the build job and the
manifest share. The Data page's specs come from here too, their folders from :mod:`core.paths`.
Loaders live in :mod:`ui.services`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import streamlit as st

from core import jobs
from core.config import get_settings
from core.fields import describe
from core.io import check_folder_name
from core.learn.protocol import TrainConfig
from core.paths import data_layout
from core.prepare.quality import QualityThresholds
from core.spec import BuildSpec, FetchSpec, ImportSpec, ScrapeSpec, TrainSpec
from ui.services.builds import dataset_path
from ui.services.sources import default_scheme, preprocess_defaults

#: Every widget that sets a spec field, by its key: the spec and the field's path. Its label, help,
#: choices and default are the field's own (:func:`widget_args`, :func:`field_choices`,
#: :func:`field_default`), written once where the field is declared (``option(help, label=...)``).
WIDGETS: dict[str, tuple[type, str]] = {
    "pp_crop": (BuildSpec, "preprocess.crop"),
    "pp_size": (BuildSpec, "preprocess.size"),
    "pp_stretch": (BuildSpec, "preprocess.stretch"),
    "pp_colour": (BuildSpec, "preprocess.channels"),
    "pp_min_quality": (BuildSpec, "thresholds.min_quality"),
    "pp_min_size": (BuildSpec, "thresholds.min_size"),
    "pp_catalog": (BuildSpec, "catalog"),
    "pp_survey": (BuildSpec, "survey"),
    "sidebar_source": (BuildSpec, "source"),
    "sidebar_scheme": (BuildSpec, "scheme"),
    "balance_scheme": (BuildSpec, "scheme"),
    "balance_policy": (BuildSpec, "conflicts"),
    "balance_exclude_dwarfs": (BuildSpec, "exclude_dwarfs"),
    "balance_exclude_uncertain": (BuildSpec, "exclude_uncertain"),
    "train_dataset": (TrainSpec, "dataset"),
    "train_models": (TrainSpec, "models"),
    "train_epochs": (TrainSpec, "epochs"),
    "train_seeds": (TrainSpec, "seeds"),
    "train_batch": (TrainSpec, "batch_size"),
    "train_mixed": (TrainSpec, "mixed_precision"),
    "train_xla": (TrainSpec, "xla"),
    "train_protocol": (TrainSpec, "protocol"),
    "train_folds": (TrainSpec, "folds"),
    "train_repeats": (TrainSpec, "repeats"),
    "data_classes": (ScrapeSpec, "classes"),
    "data_max_pages": (ScrapeSpec, "max_pages"),
    "data_import_csv": (ImportSpec, "catalog"),
    "data_import_images": (ImportSpec, "images"),
    "data_import_name": (ImportSpec, "name"),
}
#: Where a widget starts elsewhere than at its field's default, and why (``tests/test_spec.py`` lists them).
DASHBOARD_DEFAULTS: dict[str, Any] = {
    # A first search from the dashboard is a trial: two pages a class, not all of NED (the command's 0).
    "data_max_pages": 2,
    # A slider needs a number; the field's None (each model's own) is TrainConfig's batch size for every model.
    "train_batch": TrainConfig.batch_size,
}


def widget_args(key: str, *, suffix: str = "") -> dict[str, Any]:
    """``label`` (then ``suffix``), ``help`` and ``key`` of the widget ``key`` (:data:`WIDGETS`), from its
    field's declaration."""
    info = describe(*WIDGETS[key])
    return {"label": f"{info.label}{suffix}", "help": info.help, "key": key}


def field_choices(key: str) -> tuple[Any, ...]:
    """The values the field of the widget ``key`` allows, in its declaration's order."""
    return tuple(describe(*WIDGETS[key]).choices or ())


def field_default(key: str) -> Any:
    """Where the widget ``key`` starts: its field's default, unless :data:`DASHBOARD_DEFAULTS` says otherwise."""
    return DASHBOARD_DEFAULTS[key] if key in DASHBOARD_DEFAULTS else describe(*WIDGETS[key]).default


STRETCHES: tuple[str, ...] = field_choices("pp_stretch")
"""The stretches the Preprocessing page offers: the field's."""
COLOUR_CHOICES: dict[int, str] = {1: "grey", 3: "colour"}
"""The Preprocessing page's colour choice, by number of channels."""
CHANNELS: dict[str, int] = {label: channels for channels, label in COLOUR_CHOICES.items()}
"""The number of channels of each colour choice."""


def adopt_source_scheme() -> None:
    """After the source changed, choose its kind's default class scheme (as ``build`` would)."""
    st.session_state["scheme"] = default_scheme(st.session_state["source"])


def exclusions() -> dict[str, bool]:
    """The Class balance page's exclusion switches (``python -m core build --exclude-...``)."""
    return {name: bool(st.session_state.get(f"exclude_{name}", False)) for name in ("dwarfs", "uncertain")}


def default_preprocess(source: str) -> dict[str, Any]:
    """Slider defaults: those of ``python -m core build`` for this source (its kind's preprocessing,
    :func:`core.prepare.selection.preprocess_defaults`, and :class:`core.spec.BuildSpec`'s choices)."""
    spec = BuildSpec(source=source, preprocess=preprocess_defaults(source))
    return {
        "crop": float(spec.preprocess.crop),
        "size": int(get_settings().image_size),
        "stretch": str(spec.preprocess.stretch),
        "colour": COLOUR_CHOICES[int(spec.preprocess.channels)],
        "min_quality": float(spec.thresholds.min_quality),
        "min_size": int(spec.thresholds.min_size),
        "catalog": spec.catalog,
        "survey": spec.survey,
    }


def preprocess_settings(source: str) -> dict[str, Any]:
    """The Preprocessing page's settings (``pp_*`` session keys), reset to ``source``'s build defaults
    when the source changed since they were set: a Galaxy Zoo source starts in colour at crop 0.3
    even after the sample (grey, 0.5) was previewed. Call it before the page draws its widgets."""
    defaults = default_preprocess(source)
    changed = st.session_state.get("pp_defaults_for") != source
    for name, value in defaults.items():
        # Streamlit forgets a widget's value on a run that does not draw it (another page): fill it in again.
        if changed or f"pp_{name}" not in st.session_state:
            st.session_state[f"pp_{name}"] = value
    st.session_state["pp_defaults_for"] = source
    return {name: st.session_state[f"pp_{name}"] for name in defaults}


def build_spec(source: str, scheme: str) -> BuildSpec:
    """The :class:`~core.spec.BuildSpec` of the dashboard's widgets: the Preprocessing page's sliders,
    the Class balance page's conflict policy and exclusion switches (their defaults where unset)."""
    settings = preprocess_settings(source)
    return BuildSpec(
        source=source, scheme=scheme,
        preprocess=dataclasses.replace(preprocess_defaults(source), crop=float(settings["crop"]),
                                       size=int(settings["size"]), stretch=settings["stretch"],
                                       channels=CHANNELS.get(settings["colour"], 1)),
        thresholds=QualityThresholds(min_quality=float(settings["min_quality"]), min_size=int(settings["min_size"])),
        catalog=settings["catalog"], survey=settings["survey"],
        conflicts=st.session_state.get("balance_policy") or field_default("balance_policy"),
        exclude_dwarfs=exclusions()["dwarfs"], exclude_uncertain=exclusions()["uncertain"],
    )


def suggest_dataset_name(source: str, scheme: str) -> str:
    """``sample-hubble4`` and the like."""
    return f"{Path(source).name}-{scheme}"


def submit_build(source: str, scheme: str, name: str, *, force: bool = False) -> jobs.Job:
    """Start ``python -m core build`` of the dashboard's current spec (:func:`build_spec`) into the
    dataset folder ``name`` as a background job."""
    check_folder_name(name, what="dataset name", example="sample-hubble3")
    return jobs.submit(build_spec(source, scheme), label=f"build {name}", out=str(dataset_path(name)), force=force)


def scrape_spec(classes: list[str], *, max_pages: int) -> ScrapeSpec:
    """The Data page's NED search into the NED source folder."""
    return ScrapeSpec(classes=tuple(classes), out=str(data_layout().ned), max_pages=max_pages)


def fetch_spec(*, retry_failed: bool = False) -> FetchSpec:
    """The Data page's image fetch for the NED catalogue (``retry_failed``: only the failed names again)."""
    layout = data_layout()
    return FetchSpec(catalog=str(layout.ned_catalogue), out=str(layout.ned_images), retry_failed=retry_failed)
