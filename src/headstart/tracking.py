"""Experiment tracking: record every fit as an MLflow run, and list the runs recorded.

A run holds the backbone, strategy and its parameters, the seed and split sizes (params),
the held-out test metrics, the verdict and the accuracy of every baseline (metrics), the
verdict label, data fingerprint, headstart version, command, modality and bundle path (tags),
and the report plus a copy of the whole bundle folder (artifacts).

Where runs go: ``$HEADSTART_TRACKING_URI`` if set, else a SQLite store ``mlruns.db`` in the
current directory (MLflow's own convention: a store in the working directory), made absolute
so the recorded location does not depend on where the next command runs. For a SQLite store
the artifacts of experiments created here sit beside the database, in
``mlruns-artifacts/<experiment>/<run_id>/artifacts``; MLflow's own default for SQLite stores is
``./mlruns`` relative to whatever directory the experiment happened to be created from, which
also clashes with the folder name of MLflow's file store.

MLflow is imported lazily (it takes ~2 s), runs go through :class:`mlflow.MlflowClient` (no
global active run, no git probing), and MLflow's INFO logging and warnings are silenced while
headstart talks to the store, so stderr stays clean. Nothing here needs the network unless the
tracking URI points at a server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sqlite3
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from headstart.errors import ConfigError
from headstart.jsonable import jsonable

__all__ = ["DEFAULT_TRACKING_URI", "TRACKING_URI_ENV", "list_runs", "resolve_tracking_uri", "track_fit"]

logger = logging.getLogger(__name__)

TRACKING_URI_ENV = "HEADSTART_TRACKING_URI"
# The documented default; resolve_tracking_uri makes the path absolute (current directory).
DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
ARTIFACTS_DIR = "mlruns-artifacts"

# Conservative limits that every MLflow server version accepts (MLflow 3 allows 6000/8000).
_MAX_KEY = 250
_MAX_PARAM = 500
_MAX_TAG = 5000
_BATCH = 100  # params or tags per log_batch call
_LIST_FIELDS = {
    "backbone": "params.backbone",
    "strategy": "params.strategy",
    "test_accuracy": "metrics.test_accuracy",
    "test_macro_f1": "metrics.test_macro_f1",
    "verdict": "tags.verdict",
    "bundle": "tags.bundle_dir",
    "command": "tags.command",
}


def resolve_tracking_uri(uri: str | None) -> str:
    """The tracking URI to use: ``uri``, else ``$HEADSTART_TRACKING_URI``, else ``./mlruns.db``.

    A relative SQLite path is made absolute against the current directory.

    Example:
        >>> resolve_tracking_uri("sqlite:///runs.db")  # doctest: +SKIP
        'sqlite:////home/me/project/runs.db'
    """
    chosen = uri or os.environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI
    path = _sqlite_path(chosen)
    if path is None or path.is_absolute():
        return chosen
    query = chosen.partition("?")[2]
    return f"sqlite:///{Path.cwd() / path}" + (f"?{query}" if query else "")


def track_fit(
    manifest: dict[str, Any],
    *,
    bundle_dir: Path | None,
    report_path: Path | None,
    tracking_uri: str | None = None,
    experiment: str = "headstart",
) -> str:
    """Record one fit as an MLflow run and return its run id.

    Args:
        manifest: The bundle's ``headstart.json`` content (its ``report`` key, if any, holds the
            report dict of ``report_schema.md``).
        bundle_dir: The bundle folder, copied whole under the run's ``bundle/`` artifacts.
        report_path: The report file, stored at the root of the run's artifacts.
        tracking_uri: Where to record; see :func:`resolve_tracking_uri`.
        experiment: MLflow experiment name, created when missing.

    Raises:
        ConfigError: The store cannot be opened or written (bad URI, unreachable server...).

    Example:
        >>> run_id = track_fit(read_manifest("runs/spam"), bundle_dir=Path("runs/spam"),
        ...                    report_path=None)  # doctest: +SKIP
    """
    uri = resolve_tracking_uri(tracking_uri)
    _check_uri(uri)
    db = _sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _store_error(uri, e) from e
    params, metrics, tags = _run_fields(manifest)
    if bundle_dir is not None:
        tags["bundle_dir"] = str(Path(bundle_dir).resolve())
    run_name = Path(bundle_dir).name if bundle_dir is not None else f"{params.get('strategy')} on {params.get('backbone')}"
    with _quiet_mlflow():
        client = _client(uri)
        experiment_id = _experiment_id(client, uri, experiment)
        try:
            run = client.create_run(experiment_id, run_name=run_name)
        except Exception as e:
            raise _store_error(uri, e) from e
        run_id = run.info.run_id
        try:
            _log_fields(client, run_id, params, metrics, tags)
            if report_path is not None:
                client.log_artifact(run_id, str(report_path))
            if bundle_dir is not None:
                client.log_artifacts(run_id, str(bundle_dir), artifact_path="bundle")
            client.set_terminated(run_id)
        except Exception as e:
            with contextlib.suppress(Exception):
                client.set_terminated(run_id, status="FAILED")
            raise _store_error(uri, e) from e
    logger.info("fit recorded as MLflow run %s in %s", run_id, uri)
    return run_id


def list_runs(tracking_uri: str | None = None, experiment: str = "headstart", limit: int = 50) -> list[dict[str, Any]]:
    """The most recent runs of ``experiment``, newest first; ``[]`` if there is no such store.

    Listing never creates a store or an experiment.

    Example:
        >>> for run in list_runs(limit=5):  # doctest: +SKIP
        ...     print(run["start_time"], run["strategy"], run["test_accuracy"])
    """
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ConfigError(f"limit must be a positive integer; got {limit!r}.")
    uri = resolve_tracking_uri(tracking_uri)
    _check_uri(uri)
    if not _store_exists(uri):
        return []
    with _quiet_mlflow():
        client = _client(uri)
        try:
            found = client.get_experiment_by_name(experiment)
            if found is None or found.lifecycle_stage != "active":
                return []
            runs = client.search_runs(
                [found.experiment_id], order_by=["attributes.start_time DESC"], max_results=limit
            )
        except Exception as e:
            raise _store_error(uri, e) from e
    return [_run_row(run) for run in runs]


# --- what a manifest becomes -------------------------------------------------------------


def _run_fields(manifest: dict[str, Any]) -> tuple[dict[str, str], dict[str, float], dict[str, str]]:
    """The params, metrics and tags of one fit's manifest."""
    report = manifest.get("report") or {}
    task = report.get("task") or {}
    reproduce = report.get("reproduce") or {}
    data = manifest.get("data") or {}
    fit = manifest.get("fit") or {}

    params: dict[str, Any] = {}
    backbone = manifest.get("backbone")
    params["backbone"] = backbone.get("name") if isinstance(backbone, dict) else backbone or task.get("backbone")
    strategy = manifest.get("strategy")
    if isinstance(strategy, dict):
        params["strategy"] = strategy.get("name")
        params.update(_flatten(strategy.get("params") or {}, "strategy"))
        if strategy.get("chosen") is not None:  # `auto` records the strategy it picked
            params["strategy_chosen"] = strategy["chosen"]
    else:
        params["strategy"] = strategy or task.get("strategy")
    params["seed"] = manifest.get("seed", fit.get("seed", reproduce.get("seed")))
    splits = data.get("split_counts") or {}
    for name in ("train", "val", "test"):
        params[f"n_{name}"] = task.get(f"n_{name}", splits.get(name))

    metrics: dict[str, float] = {}
    test = (manifest.get("metrics") or {}).get("test") or report.get("metrics") or {}
    for key, value in test.items():
        if key != "n" and _is_number(value):
            metrics[f"test_{key}"] = float(value)
    verdict = report.get("verdict") or {}
    ci = verdict.get("ci") or [None, None]
    for key, value in (("difference", verdict.get("difference")), ("ci_low", ci[0]), ("ci_high", ci[-1])):
        if _is_number(value):
            metrics[f"verdict_{key}"] = float(value)
    seen: dict[str, int] = {}
    for row in report.get("comparison") or []:
        kind = str(row.get("kind") or "other")
        if kind == "transfer" or not _is_number(row.get("accuracy")):
            continue  # the transfer row is test_accuracy already
        seen[kind] = seen.get(kind, 0) + 1
        suffix = "" if seen[kind] == 1 else f"_{seen[kind]}"
        metrics[_key(f"baseline_{kind}{suffix}_accuracy")] = float(row["accuracy"])

    versions = fit.get("versions") or reproduce.get("versions") or {}
    tags = {
        "verdict": verdict.get("label"),
        "data_fingerprint": reproduce.get("data_fingerprint") or data.get("fingerprint"),
        "headstart_version": versions.get("headstart") or _headstart_version(),
        "command": manifest.get("command") or reproduce.get("command"),
        "modality": manifest.get("modality") or task.get("modality"),
    }
    return (
        # A strategy parameter left at None is a choice (e.g. C=None: picked by cross-validation).
        {_key(k): _truncate(_text(v), _MAX_PARAM) for k, v in params.items() if v is not None or k.startswith("strategy.")},
        metrics,
        {k: _truncate(_text(v), _MAX_TAG) for k, v in tags.items() if v is not None},
    )


def _flatten(values: dict[str, Any], prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: Any) -> str:
    value = jsonable(value, default=str)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key(name: str) -> str:
    # MLflow keys allow letters, digits, _ - . / : and spaces.
    return re.sub(r"[^\w\-./: ]", "_", name)[:_MAX_KEY]


def _headstart_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("headstart")
    except PackageNotFoundError:
        return None


def _run_row(run: Any) -> dict[str, Any]:
    start = run.info.start_time
    row: dict[str, Any] = {
        "run_id": run.info.run_id,
        "start_time": datetime.fromtimestamp(start / 1000, tz=timezone.utc).isoformat(timespec="seconds")
        if start is not None
        else None,
        "status": run.info.status,
    }
    for name, field in _LIST_FIELDS.items():
        kind, key = field.split(".", 1)
        row[name] = getattr(run.data, kind).get(key)
    return row


# --- talking to MLflow -------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's INFO lines (store creation, alembic migrations) and warnings for a while.

    Also bounds HTTP retries (MLflow's default retries for minutes) unless the user set them.
    """
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    try:
        import mlflow  # noqa: F401 - first, since importing it resets its loggers to INFO
    except ImportError as e:
        raise ConfigError(
            "experiment tracking needs MLflow: pip install mlflow-skinny sqlalchemy alembic "
            "(or pass --no-track)."
        ) from e
    http = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
    added = [name for name in http if name not in os.environ]
    os.environ.update({name: http[name] for name in added})
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic", "sqlalchemy")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(max(log.getEffectiveLevel(), logging.ERROR))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)
        for name in added:
            os.environ.pop(name, None)


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    try:
        return MlflowClient(tracking_uri=uri)
    except Exception as e:
        raise _store_error(uri, e) from e


def _log_fields(client: Any, run_id: str, params: dict[str, str], metrics: dict[str, float], tags: dict[str, str]) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(datetime.now(tz=timezone.utc).timestamp() * 1000)
    params_ = [Param(k, v) for k, v in params.items()]
    tags_ = [RunTag(k, v) for k, v in tags.items()]
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
    for start in range(0, max(len(params_), len(tags_)), _BATCH):
        client.log_batch(run_id, params=params_[start : start + _BATCH], tags=tags_[start : start + _BATCH])


def _experiment_id(client: Any, uri: str, name: str) -> str:
    """The id of experiment ``name``, created (artifacts beside a SQLite store) if missing."""
    try:
        found = client.get_experiment_by_name(name)
        if found is None:
            db = _sqlite_path(uri)
            location = None
            if db is not None:
                location = (db.parent / ARTIFACTS_DIR / re.sub(r"[^\w.-]+", "_", name)).as_uri()
            try:
                return client.create_experiment(name, artifact_location=location)
            except Exception:
                found = client.get_experiment_by_name(name)  # created meanwhile by another process
                if found is None:
                    raise
    except Exception as e:
        raise _store_error(uri, e) from e
    if found.lifecycle_stage != "active":
        raise ConfigError(
            f"MLflow experiment {name!r} in {uri} was deleted; restore it (mlflow experiments "
            f"restore --experiment-id {found.experiment_id}), record elsewhere with --tracking-uri, "
            "or pass --no-track."
        )
    return found.experiment_id


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URI; None for other URIs and in-memory stores."""
    if not uri.startswith("sqlite:"):
        return None
    raw = uri.partition("?")[0][len("sqlite:") :]
    if not raw.startswith("///") or raw[3:] in ("", ":memory:"):
        return None
    return Path(raw[3:])


def _check_uri(uri: str) -> None:
    scheme = urlparse(uri).scheme
    if len(scheme) < 2:  # a plain path (or a Windows drive letter)
        raise ConfigError(
            f"tracking URI {uri!r} has no scheme; set --tracking-uri (or {TRACKING_URI_ENV}) to "
            f"a URI such as sqlite:///{Path.cwd() / 'mlruns.db'} or http://host:5000, or pass --no-track."
        )


def _store_exists(uri: str) -> bool:
    """False when opening the store would create it: no database file, or no MLflow tables in it."""
    if uri.startswith("sqlite:"):
        db = _sqlite_path(uri)
        if db is None or not db.is_file():
            return False
        try:
            with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
                return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'experiments'").fetchone() is not None
        except sqlite3.Error as e:
            raise _store_error(uri, e) from e
    if uri.startswith("file:"):
        return Path(urlparse(uri).path).is_dir()
    return True


def _store_error(uri: str, error: BaseException) -> ConfigError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ConfigError(
        f"cannot use the MLflow tracking store {uri} ({_truncate(reason, 300)}). Set --tracking-uri "
        f"(or {TRACKING_URI_ENV}) to a store you can write, e.g. sqlite:///{Path.cwd() / 'mlruns.db'}, "
        "or pass --no-track to skip tracking."
    )
