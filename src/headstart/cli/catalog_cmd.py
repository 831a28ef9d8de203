"""``headstart backbones`` and ``headstart strategies``: what you can choose from."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from headstart.cli import render
from headstart.cli.options import Json


def backbones(
    pattern: Annotated[str, typer.Argument(help="Shell-style name filter, e.g. 'efficientnet*'.")] = "*",
    all_: Annotated[bool, typer.Option("--all", help="Include the tiny test backbones.")] = False,
    json_: Json = False,
) -> None:
    """List the backbones you can use (and which work offline)."""
    from headstart.backbones import list_backbones

    rows = [b.to_dict() for b in list_backbones(pattern, include_test=all_)]
    if json_:
        render.print_json(rows)
        return
    table = Table(title="backbones", title_justify="left")
    for col, justify in (("name", "left"), ("modality", "left"), ("params", "right"), ("feature dim", "right"),
                         ("offline", "center"), ("license", "left"), ("description", "left")):
        table.add_column(col, justify=justify)
    for r in rows:
        table.add_row(r["name"], r["modality"], render.human_count(r["n_params"]), str(r["feature_dim"]),
                      "yes" if r["offline"] else "[red]no[/]", r["license"], r["description"])
    render.stdout.print(table)
    render.stdout.print(
        "Also accepted by --backbone: timm:ARCH (any timm model; weights from the hub, or "
        "--weights FILE.safetensors offline), hf:MODEL_ID (any Hugging Face encoder), or a local "
        "model folder."
    )


def strategies(
    name: Annotated[str | None, typer.Argument(help="One strategy (default: all).")] = None,
    json_: Json = False,
) -> None:
    """List the strategies and their settings (set them with `fit --set KEY=VALUE`)."""
    from headstart.strategies import STRATEGIES, create_strategy

    if name is not None and name not in STRATEGIES:
        create_strategy(name)  # the error, with a "did you mean"
    chosen = [name] if name else list(STRATEGIES)
    if json_:
        render.print_json({n: {"description": STRATEGIES[n].description,
                               "settings": {s.name: {"type": s.expected(), "default": s.default, "help": s.help}
                                            for s in STRATEGIES[n].settings}} for n in chosen})
        return
    for n in chosen:
        render.stdout.print(f"[bold]{n}[/]  {STRATEGIES[n].description}", highlight=False)
        for s in STRATEGIES[n].settings:
            render.stdout.print(f"  {s.describe()}", highlight=False, soft_wrap=True)
