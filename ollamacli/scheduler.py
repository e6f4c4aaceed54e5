"""The loaded-model cache: load on demand, lend engines to requests, keep models for `keep_alive`.

An engine instance serves `engine.parallel` generations at once (the llama.cpp engine decodes
them together in one batch loop; the scripted fake serves one), so a loaded model has as many
instances as it takes to serve `num_parallel` requests at once (one, for the llama.cpp engine)
and a request borrows one of the instance's places. Requests that cannot be served at once wait
in a bounded queue, first come first served per model; past `max_queue` waiting requests they
are refused with `ServerBusyError`, as Ollama's scheduler does (server/sched.go). At most
`max_loaded` models stay resident; the least recently used idle one is evicted to make room. A
model whose last request finished is unloaded when its keep-alive runs out: `start()` runs a
reaper thread so that happens even when no other request arrives. Loading happens outside the
lock, so other models keep serving meanwhile.

Invariants (all state is guarded by `_lock`):

- A `_Slot` is one resident `LoadConfig`. `instances` are its engines; `free` holds one entry
  per unused place, so an engine of `parallel` N appears in `free` up to N times; `busy` counts
  the places lent. `busy + len(free) == sum(e.parallel for e in instances)` outside a call.
- `_lent[id(engine)]` counts the requests using an engine now; an engine is closed only when
  no request uses it (by `_unload_locked` when idle, else by the `_release` of its last lease).
- A slot with `busy > 0` or `growing > 0` is never evicted or expired; `expires_at` is set
  only when `busy` falls to 0.
- Requests for one model are planned in arrival order (`_is_first_in_line`); a request that
  waits is in `_queue` until it is planned, cancelled or refused.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Literal

from ollamacli.config import MAX_DURATION
from ollamacli.engine.base import CancelToken, Engine, EngineFactory, LoadConfig
from ollamacli.errors import RequestCancelledError, ServerBusyError

logger = logging.getLogger(__name__)

LoadListener = Callable[[str, float], None]
"""Told the model's name and the seconds a load took (on the loading thread)."""

_POLL_SECONDS = 0.1  # how often a waiting request looks at its CancelToken
_REAPER_MAX_SLEEP = 60.0


@dataclass(frozen=True, slots=True)
class Lease:
    """A borrowed engine instance and how long loading it took (0 when it was already loaded)."""

    engine: Engine
    load_duration: int
    config: LoadConfig


@dataclass(frozen=True, slots=True)
class LoadedInfo:
    """A resident model, as `ps` reports it."""

    name: str
    digest: str
    config: LoadConfig
    size: int
    expires_at: float  # wall-clock seconds; math.inf = forever
    busy: int


@dataclass(frozen=True, slots=True)
class _Request:
    """What a caller asked `use` for."""

    config: LoadConfig
    name: str
    digest: str
    size: int
    keep_alive: float | None


@dataclass(eq=False)
class _Slot:
    """One resident model: its instances and bookkeeping."""

    name: str
    digest: str
    config: LoadConfig
    size: int
    names: set[str] = field(default_factory=set)  # every name that used it (aliases share)
    instances: list[Engine] = field(default_factory=list)
    free: list[Engine] = field(default_factory=list)
    busy: int = 0
    growing: int = 0
    keep_alive: float = 300.0
    last_used: float = 0.0
    expires_at: float = math.inf


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to do for a request once it may proceed."""

    kind: Literal["take", "grow", "load"]
    slot: _Slot | None = None


class Scheduler:
    """Thread-safe cache of loaded engines."""

    def __init__(
        self,
        factory: EngineFactory,
        *,
        max_loaded: int = 3,
        num_parallel: int = 1,
        max_queue: int = 512,
        default_keep_alive: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self._max_loaded = max(1, max_loaded)
        self._num_parallel = max(1, num_parallel)
        self._max_queue = max(1, max_queue)
        self._default_keep_alive = default_keep_alive
        self._clock = clock
        self._wall = time.time
        self._slots: dict[LoadConfig, _Slot] = {}
        self._loading: set[LoadConfig] = set()
        self._queue: list[_Request] = []  # waiting requests, oldest first
        self._lent: dict[int, int] = {}  # id(engine) -> requests using it now
        self._lock = threading.Condition()
        self._closed = False
        self._reaper: threading.Thread | None = None
        self._load_listeners: list[LoadListener] = []

    @property
    def default_keep_alive(self) -> float:
        """The keep-alive used when a request does not set one (`OLLAMA_KEEP_ALIVE`)."""
        return self._default_keep_alive

    def add_load_listener(self, listener: LoadListener) -> Callable[[], None]:
        """Call `listener` after each model load; returns what removes it again."""
        with self._lock:
            self._load_listeners.append(listener)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._load_listeners.remove(listener)

        return remove

    def start(self) -> None:
        """Start the reaper thread that unloads models whose keep-alive ran out."""
        with self._lock:
            if self._reaper is not None or self._closed:
                return
            self._reaper = threading.Thread(
                target=self._reap, name="ollamacli-scheduler-reaper", daemon=True
            )
            self._reaper.start()

    @contextmanager
    def use(
        self,
        config: LoadConfig,
        *,
        name: str,
        digest: str = "",
        size: int = 0,
        keep_alive: float | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[Lease]:
        """Borrow an instance of a model, loading it first if needed.

        Raises:
            ServerBusyError: `max_queue` requests are already waiting.
            RequestCancelledError: `cancel` fired, or the scheduler closed, while waiting.
        """
        request = _Request(config, name, digest, size, keep_alive)
        engine, load_ns = self._acquire(request, cancel)
        try:
            yield Lease(engine=engine, load_duration=load_ns, config=config)
        finally:
            self._release(config, engine)

    def _acquire(self, request: _Request, cancel: CancelToken | None) -> tuple[Engine, int]:
        with self._lock:
            plan = self._plan_locked(request, queued=False)
            if plan is None:
                plan = self._wait_locked(request, cancel)
            if plan.kind == "take":
                assert plan.slot is not None
                return self._take_locked(plan.slot, request), 0
            self._reserve_locked(request, plan)
        return self._load(request, plan)

    def _wait_locked(self, request: _Request, cancel: CancelToken | None) -> _Plan:
        if len(self._queue) >= self._max_queue:
            raise ServerBusyError()
        self._queue.append(request)
        try:
            while True:
                if self._closed:
                    raise RequestCancelledError("server is shutting down")
                if cancel is not None and cancel.cancelled:
                    raise RequestCancelledError()
                plan = self._plan_locked(request, queued=True)
                if plan is not None:
                    return plan
                self._lock.wait(timeout=_POLL_SECONDS if cancel is not None else None)
        finally:
            self._queue.remove(request)
            self._lock.notify_all()

    def _plan_locked(self, request: _Request, *, queued: bool) -> _Plan | None:
        """How this request can be served now, or None when it has to wait."""
        if self._closed:
            raise RequestCancelledError("server is shutting down")
        if not self._is_first_in_line(request, queued=queued):
            return None
        self._expire_locked()
        slot = self._slots.get(request.config)
        if slot is not None:
            if slot.free:
                return _Plan("take", slot)
            places = sum(engine.parallel for engine in slot.instances)
            if places + slot.growing < self._num_parallel:
                return _Plan("grow", slot)
            return None
        if request.config in self._loading or not self._make_room_locked():
            return None
        return _Plan("load")

    def _is_first_in_line(self, request: _Request, *, queued: bool) -> bool:
        """Requests for one model are served in arrival order."""
        for waiting in self._queue:
            if waiting is request:
                return True
            if waiting.config == request.config:
                return False
        return not queued

    def _take_locked(self, slot: _Slot, request: _Request) -> Engine:
        engine = slot.free.pop()
        self._mark_busy_locked(slot, request)
        self._lent[id(engine)] = self._lent.get(id(engine), 0) + 1
        return engine

    def _mark_busy_locked(self, slot: _Slot, request: _Request) -> None:
        """Count a request in; two names for one file share a slot, `ps` shows the latest."""
        keep_alive = request.keep_alive
        slot.name, slot.digest = request.name, request.digest or slot.digest
        slot.names.add(request.name)
        slot.busy += 1
        slot.last_used = self._clock()
        slot.expires_at = math.inf
        # Ollama: every request sets the model's keep-alive, absent means OLLAMA_KEEP_ALIVE.
        if keep_alive is None:
            keep_alive = self._default_keep_alive
        # Longer than Go's longest duration is forever, never a time no clock can show.
        slot.keep_alive = math.inf if keep_alive > MAX_DURATION else keep_alive

    def _reserve_locked(self, request: _Request, plan: _Plan) -> None:
        if plan.kind == "grow":
            assert plan.slot is not None
            plan.slot.growing += 1
            self._mark_busy_locked(plan.slot, request)
        else:
            self._loading.add(request.config)

    def _load(self, request: _Request, plan: _Plan) -> tuple[Engine, int]:
        """Load an engine outside the lock, then record it."""
        started = time.perf_counter_ns()
        try:
            engine = self._factory.load(request.config)
        except BaseException:
            with self._lock:
                self._undo_reservation_locked(request, plan)
            raise
        elapsed = time.perf_counter_ns() - started
        with self._lock:
            if plan.kind == "grow":
                assert plan.slot is not None
                slot = plan.slot
                slot.growing -= 1
            else:
                self._loading.discard(request.config)
                slot = _Slot(request.name, request.digest, request.config, request.size)
                self._mark_busy_locked(slot, request)
                self._slots[request.config] = slot
                logger.info("loaded %s (%s)", request.name, request.config.model_path)
            slot.instances.append(engine)
            slot.free.extend([engine] * (engine.parallel - 1))  # its other places
            self._lent[id(engine)] = 1
            self._lock.notify_all()
            listeners = list(self._load_listeners)
        for listener in listeners:
            listener(request.name, elapsed / 1e9)
        return engine, elapsed

    def _undo_reservation_locked(self, request: _Request, plan: _Plan) -> None:
        if plan.kind == "grow":
            assert plan.slot is not None
            plan.slot.growing -= 1
            plan.slot.busy -= 1
        else:
            self._loading.discard(request.config)
        self._lock.notify_all()

    def _release(self, config: LoadConfig, engine: Engine) -> None:
        with self._lock:
            lent = self._lent.pop(id(engine), 1) - 1
            if lent > 0:
                self._lent[id(engine)] = lent
            slot = self._slots.get(config)
            if slot is None or engine not in slot.instances:
                if lent == 0:  # its model was unloaded while its last request ran
                    engine.close()
                self._lock.notify_all()
                return
            slot.busy -= 1
            slot.free.append(engine)
            slot.last_used = self._clock()
            if slot.busy == 0:
                if slot.keep_alive <= 0 and not self._closed:
                    self._unload_model_locked(slot)
                elif self._closed:
                    self._unload_locked(slot)
                else:
                    slot.expires_at = slot.last_used + slot.keep_alive
            self._lock.notify_all()

    def _unload_model_locked(self, slot: _Slot) -> None:
        """`keep_alive: 0`: unload the model, its other instance (chat or embedding) too, as
        Ollama's one runner per model goes; a busy one goes when its request ends."""
        for other in list(self._slots.values()):
            if other is slot or (other.name, other.digest) != (slot.name, slot.digest):
                continue
            if other.busy == 0 and other.growing == 0:
                self._unload_locked(other)
            else:
                other.keep_alive = 0
        self._unload_locked(slot)

    def _make_room_locked(self) -> bool:
        """Evict idle models until another fits; False when every resident model is busy."""
        while len(self._slots) + len(self._loading) >= self._max_loaded:
            idle = [s for s in self._slots.values() if s.busy == 0 and s.growing == 0]
            if not idle:
                return False
            self._unload_locked(min(idle, key=lambda s: s.last_used))
        return True

    def _expire_locked(self) -> None:
        now = self._clock()
        for slot in list(self._slots.values()):
            if slot.busy == 0 and slot.expires_at <= now:
                self._unload_locked(slot)

    def _unload_locked(self, slot: _Slot) -> None:
        """Forget a model and close its idle instances (busy ones close when released)."""
        self._slots.pop(slot.config, None)
        for engine in {id(e): e for e in slot.free}.values():
            if not self._lent.get(id(engine)):  # a busy one closes when its last request ends
                engine.close()
        slot.free.clear()
        logger.info("unloaded %s", slot.name)

    def _reap(self) -> None:
        with self._lock:
            while not self._closed:
                self._expire_locked()
                idle = [s.expires_at for s in self._slots.values() if s.busy == 0]
                deadline = min(idle, default=math.inf)
                timeout = min(max(deadline - self._clock(), 0.0), _REAPER_MAX_SLEEP)
                self._lock.wait(timeout=timeout)

    def expire(self) -> None:
        """Unload every idle model whose keep-alive has run out."""
        with self._lock:
            self._expire_locked()
            self._lock.notify_all()

    def unload(self, name: str) -> bool:
        """Unload a model by name once idle (now, if it already is); False if it is not loaded."""
        with self._lock:
            matches = [s for s in self._slots.values() if name in s.names]
            for slot in matches:
                if slot.busy == 0 and slot.growing == 0:
                    self._unload_locked(slot)
                else:
                    slot.keep_alive = 0
            self._lock.notify_all()
            return bool(matches)

    def ps(self) -> list[LoadedInfo]:
        """Resident models, the one that stays longest first (as Ollama sorts them).

        A model's chat and embedding instances are one row, as in Ollama, where one runner
        serves both: the chat instance's settings, the later expiry, the busy count of both.
        """
        with self._lock:
            self._expire_locked()
            now_mono, now_wall = self._clock(), self._wall()
            rows: dict[tuple[str, str], LoadedInfo] = {}
            for slot in sorted(self._slots.values(), key=lambda s: s.config.embedding):
                info = LoadedInfo(
                    name=slot.name,
                    digest=slot.digest,
                    config=slot.config,
                    size=slot.size,
                    expires_at=_expires_wall(slot, now_mono, now_wall),
                    busy=slot.busy,
                )
                first = rows.setdefault((slot.name, slot.digest), info)
                if first is not info:
                    rows[(slot.name, slot.digest)] = replace(
                        first,
                        expires_at=max(first.expires_at, info.expires_at),
                        busy=first.busy + info.busy,
                    )
        return sorted(rows.values(), key=lambda i: i.expires_at, reverse=True)

    def queued(self) -> dict[str, int]:
        """How many requests wait for each model."""
        with self._lock:
            counts: dict[str, int] = {}
            for waiting in self._queue:
                counts[waiting.name] = counts.get(waiting.name, 0) + 1
            return counts

    def pending(self) -> int:
        """How many requests are waiting for an engine."""
        with self._lock:
            return len(self._queue)

    def close(self, *, timeout: float = 10.0) -> None:
        """Refuse new requests, wait up to `timeout` for running ones, unload everything."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            deadline = time.monotonic() + timeout
            while any(s.busy or s.growing for s in self._slots.values()) or self._loading:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(timeout=remaining)
            for slot in list(self._slots.values()):
                self._unload_locked(slot)
            reaper = self._reaper
        if reaper is not None and reaper is not threading.current_thread():
            reaper.join(timeout=1.0)


def _expires_wall(slot: _Slot, now_mono: float, now_wall: float) -> float:
    """When an idle model will be unloaded, in wall-clock seconds (inf = never)."""
    if slot.busy or math.isinf(slot.expires_at):
        return math.inf if math.isinf(slot.keep_alive) else now_wall + slot.keep_alive
    return now_wall + (slot.expires_at - now_mono)
