"""The ``headstart`` command line (Typer)."""
