"""The whole fit, as one function: load → split → preflight → fit → prove → save → track.

``headstart fit`` on the command line is this function plus option parsing and printing; from
Python, :func:`fit` returns the fitted model with its evidence (the verdict, the comparison with
the baselines, the report dict, the audit summary, the bundle path and the tracking run).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.data import Dataset
from headstart.errors import ConfigError
from headstart.progress import ProgressReporter

if TYPE_CHECKING:
    from headstart.audit import AuditReport
    from headstart.classifier import TransferClassifier

logger = logging.getLogger(__name__)

# The tasks a fit can learn. Only single-label classification exists today; regression and
# multi-label join here (with their metrics, heads and baselines) in later issues.
TASKS = ("classification",)


@dataclass
class FitResult:
    """A fitted model and the evidence behind it, as returned by :func:`fit`.

    Attributes:
        model: the fitted :class:`~headstart.TransferClassifier`.
        evidence: the report dict (``report.html`` renders it; the bundle stores it), or ``None``
            in a non-main process under ``accelerate launch``.
        audit: the preflight checks' summary rows (check, severity, summary...).
        loader: how the data was loaded and split (recorded in the bundle; ``path`` is ``None``
            for data given in memory).
        bundle: the bundle folder written, or ``None`` when ``out`` was not given.
        tracking: ``{"run_id", "uri"}`` of the MLflow run, or ``None`` when not tracked.
        report_html: ``report.html`` in the bundle, when ``report=True``.
    """

    model: TransferClassifier
    evidence: dict[str, Any] | None
    audit: list[dict[str, Any]] = field(default_factory=list)
    loader: dict[str, Any] = field(default_factory=dict)
    bundle: Path | None = None
    tracking: dict[str, str] | None = None
    report_html: Path | None = None

    @property
    def verdict(self) -> dict[str, Any] | None:
        """Does transfer help? ``None`` without a test split or with ``compare=False``."""
        return (self.evidence or {}).get("verdict")

    @property
    def comparison(self) -> list[dict[str, Any]]:
        """The transfer model and each baseline, scored on the same held-out items."""
        return (self.evidence or {}).get("comparison") or []

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``headstart fit --json`` prints)."""
        clf = self.model
        return {"bundle": None if self.bundle is None else str(self.bundle), "data": clf.fit_info_["data"],
                "backbone": clf.backbone_.spec.to_dict(), "strategy": clf.strategy_details_,
                "metrics": clf.metrics_, "seed": clf.fit_info_["seed"],
                "fit_seconds": clf.fit_info_["fit_seconds"], "verdict": self.verdict,
                "comparison": self.comparison,
                "report_html": None if self.report_html is None else str(self.report_html),
                "tracking": self.tracking}


def fit(
    data: str | Path | Dataset | Sequence[Any],
    y: Sequence[Any] | None = None,
    *,
    out: str | Path | None = None,
    task: str = "classification",
    unlabeled: Any = None,
    backbone: str | None = None,
    strategy: str = "linear-probe",
    text_col: str | None = None,
    image_col: str | None = None,
    columns: Mapping[str, str] | None = None,
    label_col: str = "label",
    split_col: str | None = None,
    group_col: str | None = None,
    time_col: str | None = None,
    slice_cols: Sequence[str] = (),
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    resume: bool = False,
    allow_leakage: bool = False,
    compare: bool = True,
    learning_curve: bool = True,
    scratch_budget: float | None = None,
    seeds: int = 1,
    report: bool = False,
    track: bool = True,
    tracking_uri: str | None = None,
    command: str | None = None,
    progress: ProgressReporter | None = None,
    callbacks: dict[str, list[Any]] | None = None,
    step: Callable[[str], None] | None = None,
    on_audit: Callable[[AuditReport], None] | None = None,
    **params: Any,
) -> FitResult:
    """Fit a classifier, prove it against baselines on held-out data, and write a complete bundle.

    Args:
        data: a folder of class sub-folders or a table file (CSV/TSV/JSONL/Parquet); a
            :class:`~headstart.data.Dataset`; or items in memory (texts, image paths, images)
            with their labels in ``y``. Data given in memory is never copied into the bundle:
            ``headstart export`` then needs ``--data``.
        y: the labels, when ``data`` is items in memory.
        out: the bundle folder to write (and where fine-tuning checkpoints go); ``None``
            writes nothing (and tracks nothing).
        task: what to learn; only ``"classification"`` (one label per item) exists so far.
        unlabeled: unlabeled items to learn from; not supported yet (must be ``None``).
        backbone, strategy: see :class:`~headstart.TransferClassifier`.
        text_col, image_col, label_col, split_col, group_col, time_col, slice_cols: table
            columns, as ``headstart fit``'s options (tables only).
        columns: the items' column for any modality, a plugin's too: ``{"vectors": "readings"}``
            (``headstart fit --col vectors=readings``); recorded in the bundle like ``text_col``.
        val_fraction, test_fraction: split shares when the data has no split of its own.
        seed: seed of the split and of every random step (the estimator's ``random_state``).
        resume: continue the interrupted fit whose checkpoint is in ``out``.
        allow_leakage: train even when evaluation items copy training items.
        compare, learning_curve, scratch_budget, seeds: the evidence to gather; see
            :func:`headstart.evaluation.proof.prove`.
        report: also write ``report.html`` into the bundle.
        track: record the run in MLflow (off as well when ``HEADSTART_NO_TRACK=1``).
        tracking_uri: MLflow tracking URI (default: ``$HEADSTART_TRACKING_URI`` or
            ``sqlite:///mlruns.db`` in the working directory).
        command: how the fit was started, recorded in the bundle (default: this call).
        progress: receives progress updates; callbacks: training events -> functions;
            step: called with a short description of each proof stage.
        on_audit: receives the preflight report; without it, warnings are logged.
        **params: any other :class:`~headstart.TransferClassifier` parameter (``C``,
            ``epochs``, ``class_weight``, ``batch_size``, ``device``, ``cache``...).

    Returns:
        The fitted model and its evidence.

    Raises:
        ConfigError: an unknown task or parameter, or ``unlabeled`` given.
        DataError: the data cannot be loaded or split, or evaluation items leak from training.

    Example:
        >>> import headstart
        >>> result = headstart.fit("reviews.csv", backbone="minilm", out="runs/reviews")  # doctest: +SKIP
        >>> result.verdict["label"], result.model.predict(["works well"])                   # doctest: +SKIP
    """
    from headstart.audit import preflight
    from headstart.bundle import check_destination
    from headstart.classifier import TransferClassifier
    from headstart.data import assign_splits
    from headstart.evaluation.proof import prove

    _check_contract(task, unlabeled, params)
    clf = TransferClassifier(backbone=backbone, strategy=strategy, random_state=seed, **params)
    clf.strategy_settings()  # an unknown strategy, a setting it does not use or a bad value fails before any work
    if resume and out is None:
        raise ConfigError("resume=True continues the fit whose checkpoint is in `out`; give out=FOLDER.")
    if out is not None:
        out = Path(out)
        check_destination(out, resuming=resume)
    dataset, loader = _load(data, y, text_col=text_col, image_col=image_col, columns=columns,
                            label_col=label_col, split_col=split_col, group_col=group_col, time_col=time_col,
                            slice_cols=slice_cols)
    loader.update(val_fraction=val_fraction, test_fraction=test_fraction)
    dataset = assign_splits(dataset, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    checked = preflight(dataset, allow_leakage=allow_leakage)
    if on_audit is not None:
        on_audit(checked)
    else:
        for check in checked.checks:
            if check.severity in ("warning", "severe"):
                logger.warning("audit: %s: %s. %s", check.name, check.summary, check.remedy)
    clf.fit(dataset, progress=progress, run_dir=out, resume=resume, callbacks=callbacks or {})
    audit_summary = [{k: v for k, v in row.items() if k != "seconds"} for row in checked.to_dict()["summary"]]
    result = FitResult(model=clf, evidence=None, audit=audit_summary, loader=loader)
    if not _is_main_process():
        return result  # under `accelerate launch`, one process proves, writes the bundle and tracks
    command = command or _python_call(data, out=out, backbone=backbone, strategy=strategy, seed=seed)
    result.evidence = prove(clf, dataset, compare=compare, learning_curve=learning_curve,
                            scratch_budget=scratch_budget, seeds=seeds, command=command, step=step)
    if out is None:
        return result
    attachments = {}
    if report:
        from headstart.report import render_html

        attachments["report.html"] = render_html(result.evidence)
        result.report_html = out / "report.html"
    clf.save(out, extra={"command": command, "loader": loader, "report": result.evidence, "audit": audit_summary},
             attachments=attachments)
    result.bundle = out
    result.tracking = _track(out, tracking_uri) if track else None
    return result


def _check_contract(task: str, unlabeled: Any, params: dict[str, Any]) -> None:
    """The parts of the contract later issues fill: other tasks and unlabeled items."""
    from headstart.classifier import TransferClassifier

    if task not in TASKS:
        raise ConfigError(f"task={task!r} is not supported; supported: {', '.join(TASKS)} "
                          "(one label per item).")
    if unlabeled is not None:
        raise ConfigError("unlabeled= is not supported yet: headstart learns from labeled items only. "
                          "Leave it out (unlabeled=None), or label the items and add them to the data.")
    known = set(TransferClassifier().get_params())
    if "random_state" in params:
        raise ConfigError("random_state is set by seed= in headstart.fit (it also seeds the split); pass seed=N.")
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"headstart.fit got unknown parameter(s) {', '.join(unknown)}; it takes its own "
                          f"options and the TransferClassifier parameters: {', '.join(sorted(known - {'random_state'}))}.")


def _load(data: Any, y: Any, *, slice_cols: Sequence[str], columns: Mapping[str, str] | None,
          **named: Any) -> tuple[Dataset, dict[str, Any]]:
    """The dataset and the loader record (how ``export`` and ``evaluate`` find, read and re-split the same
    data; ``columns`` only when given, so records without it read as before)."""
    from headstart.data import from_memory, load_data

    loader: dict[str, Any] = {**named, "slice_cols": list(slice_cols), "path": None}
    loader = {k: loader[k] for k in ("text_col", "image_col", "label_col", "split_col", "slice_cols", "group_col",
                                     "time_col", "path")}
    if isinstance(data, (str, Path)):
        if y is not None:
            raise ConfigError("y= is for items in memory; a folder or table holds its own labels (label_col=).")
        path = Path(data)
        dataset = load_data(path, slice_cols=slice_cols, columns=columns, **named)
        loader["path"] = str(path.resolve())
        if columns:
            loader["columns"] = dict(columns)
        return dataset, loader
    given = [f"{k}=" for k, v in named.items() if v is not None and k != "label_col"]
    given += ["columns="] if columns else []
    given += ["slice_cols="] if slice_cols else []
    if given:
        raise ConfigError(f"{', '.join(given)} name table columns, but the data is in memory; build a "
                          "headstart.data.Dataset (with slices=, groups=, times=, splits=) instead.")
    if isinstance(data, Dataset):
        if y is not None:
            raise ConfigError("y= is for items in memory; a Dataset holds its own labels.")
        return data, loader
    if y is None:
        raise ConfigError("items in memory need their labels: headstart.fit(items, labels, ...).")
    return from_memory(data, y), loader


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def _python_call(data: Any, **shown: Any) -> str:
    where = repr(str(data)) if isinstance(data, (str, Path)) else "<data in memory>"
    args = ", ".join(f"{k}={str(v) if isinstance(v, Path) else v!r}" for k, v in shown.items() if v is not None)
    return f"headstart.fit({where}, {args})"


def _track(bundle: Path, tracking_uri: str | None) -> dict[str, str] | None:
    """Record the fit in MLflow, unless ``HEADSTART_NO_TRACK=1``."""
    if os.environ.get("HEADSTART_NO_TRACK", "").strip() not in ("", "0"):
        return None
    from headstart.bundle import read_manifest
    from headstart.tracking import resolve_tracking_uri, track_fit

    uri = resolve_tracking_uri(tracking_uri)
    html = bundle / "report.html"
    run_id = track_fit(read_manifest(bundle), bundle_dir=bundle, report_path=html if html.is_file() else None,
                       tracking_uri=uri)
    return {"run_id": run_id, "uri": uri}
