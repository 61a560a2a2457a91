"""The command-line router: every command has help; user errors are one line, exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.cli import COMMAND_MODULES, build_parser, main


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: python -m core" in capsys.readouterr().out


def test_every_registered_command_has_help(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them here
    assert commands, "no command registered"
    for name in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert f"python -m core {name}" in capsys.readouterr().out


def test_command_modules_are_importable_by_name():
    assert "build" in COMMAND_MODULES and "train" in COMMAND_MODULES


def test_user_error_is_one_line_without_traceback(tmp_path, capsys):
    missing = tmp_path / "no-such-source"
    assert main(["build", "--source", str(missing), "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_sigterm_stops_a_command_like_ctrl_c(tmp_path):
    """The dashboard stops jobs with SIGTERM; the command must exit through its interrupt path."""
    script = (
        "import os, signal, sys\n"
        "from core import cli\n"
        "def register(sub):\n"
        "    sub.add_parser('wait').set_defaults(func=lambda a: os.kill(os.getpid(), signal.SIGTERM))\n"
        "parser = cli.build_parser()\n"
        "register(parser._subparsers._group_actions[0])\n"
        "cli.build_parser = lambda: parser\n"
        "sys.exit(cli.main(['wait']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 130
    assert "interrupted: what was finished is saved" in result.stderr


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "core", "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.startswith("galaxy-morph ")
