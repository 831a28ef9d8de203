"""``headstart cache info`` and ``headstart cache clear``: the embedding cache."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from headstart.cli import render
from headstart.cli.options import CacheDir, Json

cache_app = typer.Typer(help="Inspect or clear the embedding cache.", no_args_is_help=True)


@cache_app.command("info")
def cache_info(cache_dir: CacheDir = None, json_: Json = False) -> None:
    """What the embedding cache holds, per backbone."""
    from headstart.embedding_cache import EmbeddingCache

    cache = EmbeddingCache(cache_dir)
    rows = cache.info()
    if json_:
        render.print_json({"cache_dir": str(cache.root), "backbones": rows})
        return
    render.stdout.print(f"cache: {cache.root}")
    table = Table()
    for col in ("backbone", "identity", "feature dim", "items", "shards", "size"):
        table.add_column(col, justify="right" if col in ("items", "shards", "size", "feature dim") else "left")
    for r in rows:
        table.add_row(r["backbone"], r["identity"][:12], str(r["feature_dim"]), str(r["items"]), str(r["shards"]),
                      f"{r['bytes'] / 1e6:.1f} MB")
    render.stdout.print(table)


@cache_app.command("clear")
def cache_clear(
    cache_dir: CacheDir = None,
    backbone: Annotated[str | None, typer.Option(help="Only this backbone's vectors (name or identity).")] = None,
) -> None:
    """Delete cached feature vectors."""
    from headstart.embedding_cache import EmbeddingCache

    cache = EmbeddingCache(cache_dir)
    removed = cache.clear(backbone)
    render.stdout.print(f"removed {removed} backbone cache folder(s) from {cache.root}")
