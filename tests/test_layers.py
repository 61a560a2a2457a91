"""core's stages import only downward: shared pieces, then acquire, prepare, learn, then the specs and
the command line that assemble them. A newcomer can read a stage knowing only the ones below it."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "core"
STAGES = ("acquire", "prepare", "learn")
TOP = {"core.spec", "core.cli", "core.jobs", "core.__main__"}  # above every stage: they assemble them
LAYER = {"base": 0, "acquire": 1, "prepare": 2, "learn": 3, "top": 4}

#: The imports that may cross upward, each with why; the test fails when one is added. None is left: a
#: stage's entry point takes its own stage's spec (core.<stage>.spec), the sample measures its images
#: with core.acquire.measure, and a build asks the run registry (core.runs, below the stages) which
#: runs use the dataset it replaces.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _layer(module: str) -> str:
    parts = module.split(".")
    if module in TOP or module.startswith("core.commands"):
        return "top"
    return parts[1] if len(parts) > 2 and parts[1] in STAGES else "base"


def _imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in CORE.rglob("*.py"):
        module = ".".join(path.relative_to(CORE.parent).with_suffix("").parts).removesuffix(".__init__")
        targets = found.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "core":
                packages = {"core", *(f"core.{s}" for s in STAGES)}
                if node.module in packages:
                    targets.update(f"{node.module}.{a.name}" for a in node.names if a.name != "__version__")
                else:
                    targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.split(".")[0] == "core")
    return found


def test_every_module_sits_in_one_stage_and_imports_no_later_stage():
    upward = {(module, target) for module, targets in _imports().items() for target in targets
              if LAYER[_layer(target)] > LAYER[_layer(module)]}
    assert upward == KNOWN_UPWARD, sorted(upward ^ KNOWN_UPWARD)


def test_the_stage_folders_exist_and_hold_the_modules_the_docs_name():
    # docs/ARCHITECTURE.md names these; a file moved elsewhere must move the docs with it.
    for stage, module in (("acquire", "ned"), ("acquire", "sources"), ("prepare", "quality"),
                          ("prepare", "builder"), ("prepare", "selection"), ("prepare", "save"),
                          ("learn", "registry"), ("learn", "training")):
        assert (CORE / stage / f"{module}.py").is_file(), (stage, module)
