"""Running the service: ``serve`` (uvicorn with one or N worker processes on a socket it opens
itself), JSON logging and graceful shutdown. The ``headstart serve`` command is :mod:`headstart.cli.serve`.

Connections go through :class:`headstart.serving.connections.GuardedH11Protocol`: uvicorn's h11
protocol with header and body read deadlines, a connection cap and a keep-alive limit (that
module says why this rather than another ASGI server).

The application and its request validation are in :mod:`headstart.serving.service`; every worker
builds it with :func:`headstart.serving.service.create_app_from_env`.
"""

import ipaddress
import json
import logging
import logging.config
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from headstart import errors
from headstart.errors import BundleError, ConfigError, HeadstartError
from headstart.jsonable import jsonable
from headstart.serving.engine_names import ENGINES
from headstart.serving.limits import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_REQUEST_PIXELS,
    DEFAULT_MAX_TEXT_CHARS,
    ConnectionLimits,
    Limits,
    MiB,
)
from headstart.serving.service import (
    APP_FACTORY,
    ENV_BUNDLE,
    ENV_CONNECTION_LIMITS,
    ENV_ENGINE,
    ENV_MAX_BATCH,
    ENV_MAX_BODY_BYTES,
    ENV_MAX_REQUEST_PIXELS,
    ENV_MAX_TEXT_CHARS,
    ENV_STARTUP_REPORT,
    ENV_THREADS,
    LOG_LEVELS,
    STARTUP_FAILURE,
)

logger = logging.getLogger(__name__)

_LIMITS = ConnectionLimits()
# File descriptors a worker needs beyond its connections (libraries, logs, the listening socket).
FD_HEADROOM = 128


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, pid, message, and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name, "pid": record.process,
                "message": record.getMessage()}
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(jsonable(line, default=str))


def log_config(level: str = "info") -> dict[str, Any]:
    """Logging for a serving process: uvicorn's and headstart's records as JSON lines on stderr.

    uvicorn's own access log is silenced: :class:`AccessLogMiddleware` writes a richer one. At
    info, the rest of headstart logs warnings only (no per-batch feature lines between requests).
    """
    level = level.upper()
    library = level if level == "DEBUG" else logging.getLevelName(max(logging.WARNING, logging.getLevelName(level)))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonLogFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "headstart": {"handlers": ["stderr"], "level": library, "propagate": False},
            "headstart.serving": {"level": level},
        },
    }


def serve(bundle: str | Path, *, host: str = "127.0.0.1", port: int = 8080, workers: int = 1, engine: str = "auto",
          max_batch: int = DEFAULT_MAX_BATCH, max_body_mb: float = DEFAULT_MAX_BODY_BYTES / MiB,
          max_text_chars: int = DEFAULT_MAX_TEXT_CHARS, max_request_megapixels: float = DEFAULT_MAX_REQUEST_PIXELS / 1e6,
          threads: int = 1, max_connections: int = _LIMITS.max_connections,
          header_timeout: float = _LIMITS.header_timeout, body_timeout: float = _LIMITS.body_timeout,
          keep_alive_timeout: float = _LIMITS.keep_alive_timeout,
          max_requests_per_connection: int = _LIMITS.max_requests_per_connection,
          graceful_timeout: int = 30, log_level: str = "info") -> None:
    """Serve ``bundle`` over HTTP until SIGTERM or Ctrl+C; returns after a graceful shutdown.

    Args:
        bundle: A bundle folder written by ``headstart fit``.
        host: Address to listen on; the loopback default accepts local connections only. Any other
            address is logged as a warning: the service has no authentication.
        port: TCP port (0: any free port, logged at startup).
        workers: Processes, each loading its own engine.
        engine: "auto", "torch", "onnx" or "onnx-int8".
        max_batch: Most items per request.
        max_body_mb: Largest request body, in MiB.
        max_text_chars: Longest text item.
        max_request_megapixels: Most pixels in all of one request's images, in millions (each
            image is also limited to 25 megapixels); checked from the image headers before decoding.
        threads: Predictions at once per worker.
        max_connections: Open connections per worker; beyond it the connection waiting longest for
            its client is closed (503 for the new one when every connection has a request in
            progress). The process's open-file limit is raised to fit, or a ConfigError says why not.
        header_timeout: Seconds a request's headers may take to arrive, from the connection opening
            or the previous response (then 408 and the connection is closed).
        body_timeout: Seconds a request's body may take to arrive after its headers (then 408).
        keep_alive_timeout: Seconds an idle keep-alive connection stays open.
        max_requests_per_connection: Requests on one keep-alive connection before the server
            answers ``Connection: close``.
        graceful_timeout: Seconds in-flight requests get to finish at shutdown.
        log_level: "debug", "info" (access lines included), "warning", "error" or "critical".

    Raises:
        BundleError: The bundle is missing or cannot be loaded.
        ConfigError: An argument is out of range.
        HeadstartError: The server could not start (port in use...).

    Example:
        >>> serve("runs/spam", port=8080, workers=2)  # doctest: +SKIP
    """
    import uvicorn

    from headstart.serving.connections import GuardedH11Protocol

    env = _serve_env(bundle, engine=engine, max_batch=max_batch, max_body_mb=max_body_mb,
                     max_text_chars=max_text_chars, max_request_megapixels=max_request_megapixels, threads=threads)
    _check_serve_args(host=host, port=port, workers=workers, graceful_timeout=graceful_timeout, log_level=log_level)
    connections = ConnectionLimits(header_timeout=header_timeout, body_timeout=body_timeout,
                                   keep_alive_timeout=keep_alive_timeout, max_connections=max_connections,
                                   max_requests_per_connection=max_requests_per_connection)
    _fit_open_files(connections.max_connections)
    env[ENV_CONNECTION_LIMITS] = json.dumps(connections.describe())
    logs = log_config(log_level)
    logging.config.dictConfig(logs)
    if not _is_loopback(host):
        logger.warning("the service on %s has no authentication: anyone who can reach this address can use the "
                       "model. Keep the default 127.0.0.1, or put an authenticating proxy in front.", host)
    sock = _listen(host, port)
    port = sock.getsockname()[1]
    # The protocol is a partial (it pickles), so `--workers N` hands it to every worker process.
    config = uvicorn.Config(APP_FACTORY, factory=True, host=host, port=port, workers=workers, log_config=logs,
                            log_level=log_level, access_log=False, timeout_graceful_shutdown=graceful_timeout,
                            http=partial(GuardedH11Protocol, limits=connections), ws="none",  # no WebSocket routes
                            timeout_keep_alive=connections.keep_alive_timeout, server_header=False)
    logger.info("listening on http://%s:%d", f"[{host}]" if ":" in host else host, port,
                extra={"fields": {"bundle": env[ENV_BUNDLE], "workers": workers, "engine": engine}})
    started, exit_code = True, 0
    with _startup_report() as report, _environment({**env, ENV_STARTUP_REPORT: str(report)}):
        try:
            with _sigterm_exits_cleanly():
                if workers == 1:
                    server = uvicorn.Server(config)
                    server.run(sockets=[sock])
                    started = server.started
                else:
                    from uvicorn.supervisors import Multiprocess

                    Multiprocess(config, sockets=[sock]).run()
        except KeyboardInterrupt:  # Ctrl+C after the graceful shutdown: a normal stop
            pass
        except SystemExit as e:
            exit_code = e.code
        finally:
            sock.close()
        failure = report.read_text() if report.is_file() else ""
    _raise_startup_failure(failure, exit_code if started else STARTUP_FAILURE, host, port)


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here rather than by uvicorn.

    A listener uvicorn binds itself for ``--workers N`` has ``proto`` 0, so asyncio never sets
    TCP_NODELAY on its connections and every keep-alive answer waits ~40 ms for the client's
    delayed ACK (uvicorn issue #3149). Binding here also turns "port in use" into a clear error.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise HeadstartError(f"cannot listen on {host}:{port}: {e.strerror or e}. Is the port already in use? "
                             "Choose another --port.") from e
    sock.set_inheritable(True)  # the worker processes serve on it
    return sock


@contextmanager
def _startup_report() -> Iterator[Path]:
    fd, name = tempfile.mkstemp(prefix="headstart-serve-", suffix=".json")
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in os.environ (read by create_app_from_env here and in spawned workers), then restored."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _serve_env(bundle: str | Path, *, engine: str, max_batch: int, max_body_mb: float, max_text_chars: int,
               max_request_megapixels: float, threads: int) -> dict[str, str]:
    folder = Path(bundle)
    if not folder.is_dir():
        raise BundleError(f"bundle {folder} not found; pass the folder `headstart fit --out` wrote.")
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}.")
    if not 0 < max_body_mb <= 1024:
        raise ConfigError(f"max_body_mb must be in (0, 1024]; got {max_body_mb!r}.")
    if not 0 < max_request_megapixels <= 100_000:
        raise ConfigError(f"max_request_megapixels must be in (0, 100000]; got {max_request_megapixels!r}.")
    limits = Limits(max_batch=max_batch, max_body_bytes=int(max_body_mb * MiB), max_text_chars=max_text_chars,
                    max_request_pixels=max(1, int(max_request_megapixels * 1e6)), threads=threads)
    return {ENV_BUNDLE: str(folder.resolve()), ENV_ENGINE: engine, ENV_MAX_BATCH: str(limits.max_batch),
            ENV_MAX_BODY_BYTES: str(limits.max_body_bytes), ENV_MAX_TEXT_CHARS: str(limits.max_text_chars),
            ENV_MAX_REQUEST_PIXELS: str(limits.max_request_pixels), ENV_THREADS: str(limits.threads)}


def _fit_open_files(max_connections: int) -> None:
    """Raise this process's open-file limit (inherited by the workers) to fit ``max_connections``.

    Without it, the default soft limit (often 1024) would end accepting ("Too many open files")
    before the cap is reached, and the cap would never get to choose whom to drop.
    """
    try:
        import resource
    except ImportError:  # Windows: no such limit to fit
        return
    need = max_connections + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise ConfigError(f"max_connections={max_connections} needs {need} open files per worker, but this process "
                          f"may open at most {hard} (`ulimit -Hn`); lower --max-connections to {max(1, hard - FD_HEADROOM)} "
                          "or raise the limit.")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    logger.debug("open-file limit raised from %d to %d for %d connections", soft, need, max_connections)


def _check_serve_args(*, host: str, port: int, workers: int, graceful_timeout: int, log_level: str) -> None:
    problems = []
    if not host:
        problems.append("host is empty (use 127.0.0.1)")
    if not isinstance(port, int) or not 0 <= port <= 65535:
        problems.append(f"port must be in 0..65535, got {port!r}")
    if not isinstance(workers, int) or workers < 1:
        problems.append(f"workers must be >= 1, got {workers!r}")
    if graceful_timeout < 0:
        problems.append(f"graceful_timeout must be >= 0 seconds, got {graceful_timeout!r}")
    if log_level.lower() not in LOG_LEVELS:
        problems.append(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    if problems:
        raise ConfigError("cannot serve: " + "; ".join(problems) + ".")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@contextmanager
def _sigterm_exits_cleanly() -> Iterator[None]:
    """After a graceful shutdown uvicorn re-raises SIGTERM to the handler it found; make that one a
    no-op so a stopped service exits 0, not "killed by SIGTERM"."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_startup_failure(failure: str, exit_code: Any, host: str, port: int) -> None:
    if failure:
        report = json.loads(failure)
        kind = getattr(errors, report["error"], None)
        if isinstance(kind, type) and issubclass(kind, HeadstartError):
            raise kind(report["message"])
        raise HeadstartError(f"the service could not start: {report['error']}: {report['message']}")
    if exit_code not in (None, 0):
        raise HeadstartError(f"the service on {host}:{port} stopped with exit code {exit_code}; the log above says "
                             "why.")
