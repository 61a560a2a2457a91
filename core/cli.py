"""``python -m core <command>``: the command line over the package.

Each command lives in ``core/commands/<name>.py`` and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` (called with the parsed arguments, returning an exit code).
User errors (:class:`core.errors.GalaxyMorphError`) are printed as one line and exit with 2, and
so is a full disk ("no space left on <path>"; the commands remove their partial output first);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from core import __version__
from core.errors import GalaxyMorphError, shorten_message
from core.io import is_out_of_space

COMMAND_MODULES = (
    "sample",
    "scrape",
    "fetch",
    "import_",
    "build",
    "train",
    "evaluate",
    "compare",
)

EXIT_USER_ERROR = 2


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser with every command that is installed, or with ``command`` alone.

    A command's flags come from its spec, whose configs import numpy and astropy: ``main`` builds
    only the parser of the command it runs, so ``python -m core train`` does not import the
    preprocessing to make ``build``'s flags.
    """
    parser = argparse.ArgumentParser(
        prog="python -m core",
        description="Build a galaxy-morphology dataset from NED and compare LeNet-5, AlexNet and ResNet on it.",
    )
    parser.add_argument("--version", action="version", version=f"galaxy-morph {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMAND_MODULES:
        if command is not None and name.rstrip("_") != command:
            continue
        try:
            module = importlib.import_module(f"core.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"core.commands.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command, turn user errors into one line and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # The first word that is not an option names the command (the top-level options take no value).
    named = next((word for word in argv if not word.startswith("-")), None)
    parser = build_parser(named) if named in {n.rstrip("_") for n in COMMAND_MODULES} else build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_shorten_record)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    # A job stopped from the dashboard gets SIGTERM: treat it like Ctrl-C so the command saves
    # what it finished and marks its run "stopped" instead of dying mid-write.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt) if in_main_thread else None
    # Past a file-size limit (ulimit -f) a write then fails with EFBIG, like a full disk, instead
    # of the signal killing the process mid-write.
    previous_xfsz = signal.signal(signal.SIGXFSZ, signal.SIG_IGN) if in_main_thread and hasattr(signal, "SIGXFSZ") else None
    try:
        return int(args.func(args) or 0)
    except GalaxyMorphError as exc:
        print(shorten_message(f"error: {exc}"), file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted: what was finished is saved; run the same command again to resume.", file=sys.stderr)
        return 130
    except Exception as exc:
        if not is_out_of_space(exc):
            raise
        print(f"error: no space left on {_written_path(exc, args)}. Free some space and run the command again.",
              file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
            if previous_xfsz is not None:
                signal.signal(signal.SIGXFSZ, previous_xfsz)


def _written_path(exc: BaseException, args: argparse.Namespace) -> str:
    """The command's output folder, else the file the failed write named."""
    for option in ("out", "runs_dir"):
        if getattr(args, option, None):
            return str(getattr(args, option))
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, OSError) and current.filename:
            return str(current.filename)
        current = current.__cause__ or current.__context__
    return "the output folder's disk"


def _shorten_record(record: logging.LogRecord) -> bool:
    """Log lines quote names (galaxies, files, classes) whole: a 50 MB name made 100 MB of stderr.
    Format the message now and shorten it (:func:`core.errors.shorten_message`)."""
    record.msg, record.args = shorten_message(record.getMessage()), None
    return True


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
