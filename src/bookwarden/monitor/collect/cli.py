"""`bookwarden monitor run`: the long-running collector (log files and the audit trail → rules → stored alerts)."""

from __future__ import annotations

from typing import Annotated

import typer
from prometheus_client import start_http_server

from bookwarden.audit.events import Action
from bookwarden.console import command, connect, err, fail, record_action
from bookwarden.core import logs
from bookwarden.core.config import get_settings
from bookwarden.core.permissions import Permission
from bookwarden.jobs import worker as job_worker
from bookwarden.monitor.cli import RulesOption, TuneOption, _ruleset, monitor_app
from bookwarden.monitor.collect.config import CollectSettings
from bookwarden.monitor.collect.pipeline import Pipeline
from bookwarden.monitor.engine import Engine

groups = ()  # its command joins the `monitor` group (monitor/cli.py)


@command(monitor_app, "run", Permission.PLATFORM_SERVICES_RUN, unmapped=True)
def monitor_run(
    rules: RulesOption = None,
    tune: TuneOption = None,
    metrics_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="serve the collector's Prometheus metrics on 127.0.0.1:PORT")
    ] = None,
    from_now: Annotated[
        bool,
        typer.Option(
            "--from-now",
            help="a file or audit chain with no saved position starts at its end (first start on old logs); "
            "saved positions are always resumed",
        ),
    ] = False,
) -> None:
    """Follow the configured log files and the audit trail, run every rule, store alerts; until SIGTERM/SIGINT.

    Files: BOOKWARDEN_MONITOR_FILES (FORMAT:PATH, comma-separated) and BOOKWARDEN_ACCESS_LOG. Positions are saved
    as the engine takes each line, so a restart (or a rotation) neither loses nor repeats one.
    """
    settings = get_settings()
    logs.configure(settings.log_level, stream="stderr")
    try:
        collect = CollectSettings()
    except ValueError as exc:
        raise fail(str(exc)) from None
    pipeline = Pipeline(
        connect(),
        Engine(_ruleset(rules, tune, builtin=True)),
        collect.tailed(settings),
        audit=collect.audit,
        queue_size=collect.queue_size,
        poll_seconds=collect.poll_seconds,
        from_now=from_now,
    )
    if metrics_port is not None:
        start_http_server(metrics_port, addr="127.0.0.1", registry=pipeline.metrics.registry)
    job_worker.stop_on_signals(pipeline.stopping)
    sources = [f"{f.fmt}:{f.path}" for f in pipeline.files] + (["audit trail"] if pipeline.audit else [])
    record_action(Action.SERVICE_STARTED, service="monitor", sources=len(sources))
    err.print(f"monitor: following {', '.join(sources) or 'nothing'}")
    pipeline.run()
    err.print(f"monitor: stopped after {pipeline.taken} events; positions saved")
    if pipeline.failed is not None:  # a reader failed: say so to whoever restarts the service (exit 1)
        raise fail(f"the reader of {pipeline.failed} failed (see the log); the others stopped with it")
