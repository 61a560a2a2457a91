"""The hostile world of the dashboard tests (part of the hostile corpus of issue 8).

The built-in sample with its galaxies renamed, some type strings replaced, a class mapping whose
classes are markup, a dataset built and a LeNet-5 trained on it, and a second run whose
``config.json`` names a hostile model. Every address in it points at a local HTTP server that counts
the requests it gets (the ``trap`` fixture in conftest.py); the browser tests assert it got none.
"""

from __future__ import annotations

import json
import shutil
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
PAGES = ("home", "data", "statistics", "balance", "preprocessing", "training", "comparison", "classify")
TITLES = {"home": "galaxy-morph", "data": "Data", "statistics": "Dataset statistics", "balance": "Class balance",
          "preprocessing": "Preprocessing preview", "training": "Training", "comparison": "Model comparison",
          "classify": "Classify a galaxy"}

# ``{trap}`` is the counting server's address. Each string mixes Markdown, HTML and LaTeX.
NAME_PAYLOADS = (
    "![b]({trap}name-md.png)",
    '<img src="{trap}name-html.png">',
    r"$\input{{/etc/passwd}}$ **bold** _it_",
    "`tick` [link]({trap}link) :red[red] <b>b</b>",
    "# heading\n- item ![c]({trap}name-newline.png)",
)
TYPE_PAYLOAD = '<img src="{trap}type.png"> ![t]({trap}type-md.png) `SB`'
CLASS_PAYLOADS = {
    "E": "![E]({trap}class-e.png)",
    "S0": '<img src="{trap}class-s0.png">S0',
    "Spiral": r"$\input{{x}}$ <b>Spiral</b>",
}
MODEL_PAYLOAD = "![m]({trap}model.png) <b>net</b>"

class Trap(ThreadingHTTPServer):
    """Counts every request; answers with a 1x1 PNG so that a fetched image would show."""

    hits: list[str]


class TrapHandler(BaseHTTPRequestHandler):
    PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.PNG)))
        self.end_headers()
        self.wfile.write(self.PNG)

    def log_message(self, *args: Any) -> None:
        pass


def trap_url(server: Trap) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/"


def make_hostile_world(root: Path, *, trap: str) -> dict[str, Path]:
    """A data folder (sample ``sample`` with hostile names and types, dataset ``hostile``) and a
    runs folder (a LeNet-5 run and a copy of it that names a hostile model)."""
    from core.prepare.builder import build_dataset
    from core.acquire.labels import UNCLASSIFIED, get_scheme
    from core.prepare.preprocessing import PreprocessConfig
    from core.acquire.sample import ensure_sample
    from core.learn.training import train_many

    data_dir, runs_dir = root / "data", root / "runs"
    sample = ensure_sample(data_dir / "sample", n=120, seed=0, n_jobs=1)
    catalog = pd.read_csv(sample / "catalog.csv", dtype=str, keep_default_na=False)
    names = list(dict.fromkeys(catalog["name"]))
    renamed = {n: f"{NAME_PAYLOADS[i % len(NAME_PAYLOADS)].format(trap=trap)} {i}" for i, n in enumerate(names)}
    catalog["name"] = catalog["name"].map(renamed)
    hubble3 = get_scheme("hubble3")
    classes = {c: CLASS_PAYLOADS[c].format(trap=trap) for c in hubble3.classes}
    mapping = {raw: classes[c] for raw in catalog["classification"].unique()
               if (c := hubble3.classify(raw)) != UNCLASSIFIED}
    # Every 10th row gets a hostile type string: unclassified, but listed and counted.
    catalog.loc[catalog.index % 10 == 9, "classification"] = TYPE_PAYLOAD.format(trap=trap)
    catalog.to_csv(sample / "catalog.csv", index=False)
    scheme = root / "hostile-scheme.json"
    scheme.write_text(json.dumps({"classes": list(classes.values()), "map": mapping}), encoding="utf-8")
    dataset = build_dataset(
        sample, scheme=str(scheme), preprocess=PreprocessConfig(size=32), min_quality=0.0, min_size=0,
        catalog="all", out=data_dir / "datasets" / "hostile", n_jobs=1,
    )
    outcomes = train_many(dataset, models=["lenet5"], seeds=[0], runs_dir=runs_dir,
                          overrides={"epochs": 1, "batch_size": 16, "patience": 0})
    assert [o["status"] for o in outcomes] == ["finished"], outcomes
    # A run folder copied by hand, or from another tool, whose config names a model we do not know.
    run = Path(outcomes[0]["run_dir"])
    copy = runs_dir / f"{run.name}-copy"
    shutil.copytree(run, copy)
    config = json.loads((copy / "config.json").read_text(encoding="utf-8"))
    config.update(id=copy.name, model=MODEL_PAYLOAD.format(trap=trap))
    (copy / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return {"data": data_dir, "runs": runs_dir, "dataset": Path(dataset), "names": list(renamed.values()),
            "classes": list(classes.values())}
