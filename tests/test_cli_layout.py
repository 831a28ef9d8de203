"""The command line split into one module per command: the same commands, in the same order,
reachable from the console script and ``python -m headstart``, and still light to start."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import typer

from headstart.cli.app import app, main

COMMANDS = ["backbones", "strategies", "audit", "rank", "fit", "report", "runs", "predict", "evaluate", "export",
            "serve", "cache"]


def test_every_command_is_registered_in_order() -> None:
    group = typer.main.get_command(app)
    assert list(group.list_commands(None)) == COMMANDS  # type: ignore[arg-type]
    cache = group.commands["cache"]
    assert list(cache.list_commands(None)) == ["info", "clear"]  # type: ignore[attr-defined,arg-type]


def test_console_script_and_python_m_reach_the_same_main() -> None:
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "headstart"]
    assert script.value == "headstart.cli.app:main" and script.load() is main
    done = subprocess.run([sys.executable, "-m", "headstart", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert all(name in done.stdout for name in COMMANDS)


def test_the_cli_starts_without_the_heavy_libraries() -> None:
    # Commands import the library inside their bodies, so `headstart --help` stays quick.
    code = ("import sys, headstart.cli.app\n"
            "heavy = [m for m in ('torch', 'sklearn', 'transformers', 'timm', 'fastapi', 'uvicorn', 'onnxruntime') "
            "if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
