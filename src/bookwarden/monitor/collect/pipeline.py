"""Readers → a bounded queue → the engine → stored alerts, with positions saved as the engine takes each line.

Back-pressure, never dropping: each reader (one per tailed file, one for the audit trail) puts what it reads on a
queue of BOOKWARDEN_MONITOR_QUEUE_SIZE items. When the engine falls behind the queue fills and a reader's `put`
waits: it reads nothing more, and since positions are saved only for what the engine took, its saved position stops
too. The gauge `bookwarden_monitor_queue_depth` and the counter `bookwarden_monitor_reader_wait_seconds_total` (per
source) say so; nothing is ever discarded.

The engine thread takes items, feeds the events to the engine and, every `commit_every` items or as soon as the
queue runs dry, stores the alerts and the positions reached in one transaction: an alert and the position past the
line that caused it are saved together, so a crash repeats neither. Subscribers (`on_alert`) hear of the stored
alerts after that commit. Correlation episodes quiet for longer than their window are closed on the wall clock too
(a live stream may stop), so a final count arrives without waiting for the next event.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from bookwarden.db.session import Database, platform_session
from bookwarden.monitor.alerts import subscribers
from bookwarden.monitor.alerts.delivery import DeliverySettings
from bookwarden.monitor.alerts.service import Recorded, record_engine_alert
from bookwarden.monitor.collect.audit import SOURCE_PREFIX, AuditReader
from bookwarden.monitor.collect.models import Position
from bookwarden.monitor.collect.tail import FilePosition, FileTailer, end_of
from bookwarden.monitor.engine import Alert, Engine
from bookwarden.monitor.events import Event
from bookwarden.monitor.parse.reader import Format, LineReader, Unparsed

log = structlog.get_logger()
PUT_WAIT = 0.1  # how often a waiting reader looks whether the pipeline is stopping


@dataclass(frozen=True)
class TailedFile:
    path: Path
    fmt: Format


@dataclass
class Item:
    source: str
    event: Event | None  # None: a line that parsed to nothing (blank, or unparsable): its position still moves
    position: FilePosition


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.depth = Gauge(
            "bookwarden_monitor_queue_depth",
            "items read and waiting for the engine",
            registry=self.registry,
            # Should PROMETHEUS_MULTIPROC_DIR be set around it: the depth of the running collectors, summed.
            multiprocess_mode="livesum",
        )
        self.waited = Counter(
            "bookwarden_monitor_reader_wait_seconds",
            "time readers spent waiting for room in the queue (the engine is behind)",
            ["source"],
            registry=self.registry,
        )
        self.events = Counter(
            "bookwarden_monitor_events", "events taken by the engine", ["source"], registry=self.registry
        )
        self.alerts = Counter("bookwarden_monitor_alerts", "alerts stored (new or folded)", registry=self.registry)


class Pipeline:
    def __init__(
        self,
        db: Database,
        engine: Engine,
        files: Iterable[TailedFile] = (),
        *,
        audit: bool = True,
        queue_size: int = 10_000,
        poll_seconds: float = 0.2,
        commit_every: int = 500,
        delivery: DeliverySettings | None = None,
        metrics: Metrics | None = None,
        feed: Callable[[Engine, Event], list[Alert]] | None = None,
        from_now: bool = False,
    ) -> None:
        self.db = db
        self.engine = engine
        self.files = list(files)
        self.audit = audit
        self.queue: queue.Queue[Item] = queue.Queue(maxsize=queue_size)
        self.poll_seconds = poll_seconds
        self.from_now = from_now  # a source with no saved position starts at its end, not its beginning
        self.commit_every = commit_every
        self.delivery = delivery or DeliverySettings()
        self.metrics = metrics or Metrics()
        self._feed = feed or (lambda engine, event: engine.feed(event))
        self.stopping = threading.Event()
        self.failed: str | None = None  # the source whose reader failed (the pipeline then stops)
        self._threads: list[threading.Thread] = []
        self.taken = 0  # events the engine took (for tests and the bench)
        self.stored: list[Recorded] = []  # the last commit's alerts (for tests)
        self._last_event = time.monotonic()

    # -- positions --------------------------------------------------------------------------------------------

    def _saved(self) -> dict[str, Position]:
        with platform_session(self.db) as session:
            return {p.source: p for p in session.scalars(select(Position))}

    def _save(self, session, positions: dict[str, FilePosition]) -> None:
        for source, found in positions.items():
            values = {
                "source": source,
                "device": found.device,
                "inode": found.inode,
                "offset": found.offset,
                "fingerprint": found.fingerprint,
                "updated_at": datetime.now(UTC),
            }
            session.execute(
                insert(Position)
                .values(**values)
                .on_conflict_do_update(
                    index_elements=["source"], set_={k: v for k, v in values.items() if k != "source"}
                )
            )

    # -- readers ----------------------------------------------------------------------------------------------

    def _put(self, item: Item) -> bool:
        """Put `item`, waiting while the queue is full (back-pressure); False when the pipeline stops meanwhile."""
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            started = time.monotonic()
            try:
                while not self.stopping.is_set():
                    try:
                        self.queue.put(item, timeout=PUT_WAIT)
                        break
                    except queue.Full:
                        continue
                else:
                    return False
            finally:
                self.metrics.waited.labels(item.source).inc(time.monotonic() - started)
        self.metrics.depth.set(self.queue.qsize())
        return True

    def _tail(self, tailed: TailedFile, saved: Position | None) -> None:
        position = (
            FilePosition(saved.device, saved.inode, saved.offset, saved.fingerprint) if saved is not None else None
        )
        if position is None and self.from_now:
            position = end_of(tailed.path)
        tailer = FileTailer(tailed.path, position)
        reader = LineReader(tailed.fmt)
        try:
            while not self.stopping.is_set():
                read = False
                for line, after in tailer.lines():
                    read = True
                    parsed = reader.parse(line)
                    if isinstance(parsed, Unparsed):
                        log.info("monitor.unparsed", source=tailer.source, reason=parsed.reason)
                        parsed = None
                    if not self._put(Item(tailer.source, parsed, after)):
                        return
                if not read:
                    self.stopping.wait(self.poll_seconds)
        except Exception as exc:  # a reader that dies says so loudly and stops the pipeline: never a silent gap
            log.error("monitor.reader_failed", source=tailer.source, error_type=type(exc).__name__, exc_info=exc)
            self.failed = tailer.source
            self.stopping.set()
        finally:
            tailer.close()

    def _read_audit(self, saved: dict[str, Position]) -> None:
        reader = AuditReader(
            self.db, {s: p.offset for s, p in saved.items() if s.startswith(SOURCE_PREFIX)}, self.from_now
        )
        try:
            while not self.stopping.is_set():
                read = False
                for event, source, seq in reader.events():
                    read = True
                    if not self._put(Item(source, event, FilePosition(None, None, seq, None))):
                        return
                if not read:
                    self.stopping.wait(self.poll_seconds)
        except Exception as exc:
            log.error("monitor.reader_failed", source="audit", error_type=type(exc).__name__, exc_info=exc)
            self.failed = "audit"
            self.stopping.set()

    # -- the engine -------------------------------------------------------------------------------------------

    def start(self) -> None:
        saved = self._saved()
        for tailed in self.files:
            thread = threading.Thread(
                target=self._tail, args=(tailed, saved.get(f"file:{tailed.path}")), name=f"tail {tailed.path}"
            )
            self._threads.append(thread)
        if self.audit:
            self._threads.append(threading.Thread(target=self._read_audit, args=(saved,), name="audit reader"))
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Take items until stopped (SIGTERM sets `stopping`) or `until()` holds; saves what was taken on the way."""
        self.start()
        try:
            while not self.stopping.is_set() and not (until is not None and until()):
                self.step(wait=self.poll_seconds)
        finally:
            self.stopping.set()
            for thread in self._threads:
                thread.join(timeout=5)
            self.step(wait=0, drain=False)  # what was taken but not yet saved

    def step(self, wait: float, drain: bool = True) -> int:
        """Take up to `commit_every` items (waiting up to `wait` for the first), then store alerts and positions."""
        alerts: list[Alert] = []
        positions: dict[str, FilePosition] = {}
        taken = 0
        if drain:
            try:
                first = self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
            except queue.Empty:
                first = None
            pending = [first] if first is not None else []
            while pending or taken < self.commit_every:
                item = pending.pop() if pending else None
                if item is None:
                    try:
                        item = self.queue.get_nowait()
                    except queue.Empty:
                        break
                taken += 1
                if item.event is not None:
                    alerts.extend(self._feed(self.engine, item.event))
                    self._last_event = time.monotonic()
                    self.metrics.events.labels(item.source).inc()
                    self.taken += 1
                positions[item.source] = item.position
            self.metrics.depth.set(self.queue.qsize())
        if self.engine.now is not None:
            # The event clock, moved on by the wall time since the last event: an old log tailed live keeps its
            # windows, and a stream gone quiet still closes its episodes.
            quiet = timedelta(seconds=time.monotonic() - self._last_event)
            alerts.extend(self.engine.advance(self.engine.now + quiet))
        if not alerts and not positions:
            return 0
        with platform_session(self.db) as session:
            recorded = [record_engine_alert(session, alert, self.delivery) for alert in alerts]
            self._save(session, positions)
        self.metrics.alerts.inc(len(recorded))
        self.stored = recorded
        subscribers.tell(self.db, recorded)
        return taken
