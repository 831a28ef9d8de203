"""The ``headstart`` command: the Typer app, its commands registered in the order ``--help`` lists
them, and :func:`run` / :func:`main`. Thin: every command (one module each, ``*_cmd.py``) parses
options and calls the library.

Results go to stdout (a table, or JSON with ``--json``); progress and diagnostics go to
stderr. Exit codes: 0 ok, 1 error (bad data, missing model...), 2 usage.
"""

from __future__ import annotations

import sys

import typer

from headstart.cli import render
from headstart.cli.audit_cmd import audit
from headstart.cli.cache_cmd import cache_app
from headstart.cli.catalog_cmd import backbones, strategies
from headstart.cli.export_cmd import export
from headstart.cli.fit_cmd import fit
from headstart.cli.predict_cmd import evaluate, predict
from headstart.cli.rank_cmd import rank_cmd
from headstart.cli.report_cmd import report_cmd, runs
from headstart.cli.serve import serve_command  # light: uvicorn and FastAPI load when serving
from headstart.errors import HeadstartError

app = typer.Typer(
    name="headstart",
    help="Transfer learning on small labeled datasets: audit, adapt a pretrained backbone, prove it, ship it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for name, command in (("backbones", backbones), ("strategies", strategies), ("audit", audit), ("rank", rank_cmd),
                      ("fit", fit), ("report", report_cmd), ("runs", runs), ("predict", predict),
                      ("evaluate", evaluate), ("export", export), ("serve", serve_command)):
    app.command(name)(command)
app.add_typer(cache_app, name="cache")


def run(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv``; returns the exit code (0 ok, 1 error, 2 usage)."""
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        code = app(args=argv, prog_name="headstart", standalone_mode=False, obj={"argv": argv})
    except HeadstartError as e:
        render.stderr.print(f"[bold red]error:[/] {e}", highlight=False)
        return 1
    except KeyboardInterrupt:
        render.stderr.print("interrupted")
        return 130
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        return 1
    except typer.TyperException as e:  # usage errors (Typer's own click): message and exit 2
        e.show()
        return int(getattr(e, "exit_code", 2))
    return code if isinstance(code, int) else 0  # standalone_mode=False returns typer.Exit's code


def main() -> None:
    """Console entry point."""
    sys.exit(run())
