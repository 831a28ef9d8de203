"""``headstart export``: ONNX (and int8) added to a bundle, with its parity, size and speed."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from headstart.cli import render
from headstart.cli.options import Json, Quiet, setup_terminal


class Quantize(str, Enum):
    int8 = "int8"


def export(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder written by `headstart fit`.")],
    quantize: Annotated[Quantize | None, typer.Option(help="Also write model.int8.onnx (text: dynamic quantization; images: static, calibrated on training images) and report its held-out accuracy, size and speed change.")] = None,
    data: Annotated[Path | None, typer.Option(help="Real items for the parity check and the int8 accuracy (default: the data the bundle was fitted on).")] = None,
    opset: Annotated[int | None, typer.Option(min=7, help="ONNX opset (default: the exporter's).")] = None,
    quiet: Quiet = False,
    json_: Json = False,
) -> None:
    """Add model.onnx to a bundle (backbone + head + softmax, dynamic batch), checked against PyTorch:
    the export fails, and the bundle is unchanged, if any probability differs by more than 1e-4."""
    from headstart.serving.export import export_onnx

    setup_terminal(quiet)
    if not quiet:
        render.stderr.print("[dim]· exporting and checking parity (PyTorch vs ONNX on real items)...[/]",
                            highlight=False)
    summary = export_onnx(bundle, quantize=quantize.value if quantize else None, data=data, opset=opset)
    if json_:
        render.print_json(summary)
        return
    _print_export(summary)


def _print_export(summary: dict[str, Any]) -> None:
    parity, speed = summary["parity"], summary["speed"]["batch1_ms"]
    files = ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in summary["files"].items())
    render.stdout.print(f"[bold]bundle[/]    {summary['bundle']} ({files})", highlight=False)
    render.stdout.print(f"[bold]onnx[/]      {summary['onnx']['file']}, opset {summary['onnx']['opset']}, inputs "
                        + ", ".join(f"{i['name']} {i['shape']}" for i in summary["onnx"]["inputs"]), highlight=False)
    render.stdout.print(f"[bold]parity[/]    max |Δp| {parity['max_abs_diff']:.2e} ≤ {parity['tolerance']:g} on "
                        f"{parity['items']} items of {parity['data']} (labels agree: {parity['labels_agree']:.0%})",
                        highlight=False)
    table = Table(title="latency, one item per call (median)", title_justify="left")
    for col in ("engine", "ms / item", "vs torch"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for name, ms in speed.items():
        table.add_row(name, f"{ms:.1f}", f"{speed['torch'] / ms:.2f}×")
    render.stdout.print(table)
    int8 = summary.get("int8")
    if int8:
        acc = int8["accuracy"]
        render.stdout.print(f"[bold]int8[/]      {int8['file']}: {int8['size_ratio']:.2f}× the size, "
                            f"{int8['speedup_vs_onnx']:.2f}× the batch-1 speed of fp32 ONNX", highlight=False)
        if acc["available"]:
            render.stdout.print(f"          accuracy {acc['onnx']:.3f} → {acc['onnx-int8']:.3f} (Δ {acc['delta']:+.3f}; "
                                f"predictions agree {acc['agreement']:.1%}) on {acc['evaluated_on']}", highlight=False)
        else:
            render.stdout.print(f"          accuracy change not measured: {acc['reason']}", highlight=False)
