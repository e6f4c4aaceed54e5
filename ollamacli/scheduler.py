"""The loaded-model cache: load on demand, serialise access, keep models for `keep_alive`.

An engine instance serves one generation at a time (llama-cpp-python is not thread-safe), so
each loaded model has `num_parallel` instances and a request borrows one. Requests beyond the
free instances wait in a bounded queue; past `max_queue` they are refused with
`ServerBusyError`. At most `max_loaded` models stay resident; the least recently used idle one
is evicted first. An idle model is unloaded when its keep-alive runs out.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ollamacli.engine.base import Engine, EngineFactory, LoadConfig
from ollamacli.errors import ServerBusyError

logger = logging.getLogger(__name__)


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


@dataclass(eq=False)
class _Slot:
    """One resident model: its instances and bookkeeping."""

    name: str
    digest: str
    config: LoadConfig
    size: int
    instances: list[Engine] = field(default_factory=list)
    free: list[Engine] = field(default_factory=list)
    busy: int = 0
    keep_alive: float = 300.0
    last_used: float = 0.0
    expires_at: float = math.inf


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
        self._lock = threading.Condition()
        self._waiting = 0
        self._loading: set[LoadConfig] = set()

    @contextmanager
    def use(
        self,
        config: LoadConfig,
        *,
        name: str,
        digest: str = "",
        size: int = 0,
        keep_alive: float | None = None,
    ) -> Iterator[Lease]:
        """Borrow an instance of a model, loading it first if needed."""
        engine, load_ns = self._acquire(config, name, digest, size, keep_alive)
        try:
            yield Lease(engine=engine, load_duration=load_ns, config=config)
        finally:
            self._release(config, engine)

    def _acquire(
        self, config: LoadConfig, name: str, digest: str, size: int, keep_alive: float | None
    ) -> tuple[Engine, int]:
        with self._lock:
            if self._waiting >= self._max_queue:
                raise ServerBusyError()
            self._waiting += 1
            try:
                return self._acquire_locked(config, name, digest, size, keep_alive)
            finally:
                self._waiting -= 1

    def _acquire_locked(
        self, config: LoadConfig, name: str, digest: str, size: int, keep_alive: float | None
    ) -> tuple[Engine, int]:
        while True:
            self._expire_locked()
            slot = self._slots.get(config)
            if slot is not None and slot.free:
                return self._take(slot, keep_alive), 0
            if slot is not None and len(slot.instances) < self._num_parallel:
                return self._grow(slot, keep_alive)
            if slot is None and config not in self._loading and self._make_room_locked():
                return self._load_new(config, name, digest, size, keep_alive)
            self._lock.wait(timeout=0.5)

    def _take(self, slot: _Slot, keep_alive: float | None) -> Engine:
        engine = slot.free.pop()
        slot.busy += 1
        slot.last_used = self._clock()
        slot.expires_at = math.inf
        if keep_alive is not None:
            slot.keep_alive = keep_alive
        return engine

    def _grow(self, slot: _Slot, keep_alive: float | None) -> tuple[Engine, int]:
        slot.busy += 1
        self._lock.release()
        started = time.perf_counter_ns()
        try:
            engine = self._factory.load(slot.config)
        except BaseException:
            self._lock.acquire()
            slot.busy -= 1
            self._lock.notify_all()
            raise
        self._lock.acquire()
        slot.instances.append(engine)
        slot.last_used = self._clock()
        slot.expires_at = math.inf
        if keep_alive is not None:
            slot.keep_alive = keep_alive
        return engine, time.perf_counter_ns() - started

    def _load_new(
        self, config: LoadConfig, name: str, digest: str, size: int, keep_alive: float | None
    ) -> tuple[Engine, int]:
        self._loading.add(config)
        self._lock.release()
        started = time.perf_counter_ns()
        try:
            engine = self._factory.load(config)
        finally:
            self._lock.acquire()
            self._loading.discard(config)
            self._lock.notify_all()
        slot = _Slot(
            name=name,
            digest=digest,
            config=config,
            size=size,
            instances=[engine],
            busy=1,
            keep_alive=self._default_keep_alive if keep_alive is None else keep_alive,
            last_used=self._clock(),
        )
        self._slots[config] = slot
        logger.debug("loaded %s (%s)", name, config.model_path)
        return engine, time.perf_counter_ns() - started

    def _release(self, config: LoadConfig, engine: Engine) -> None:
        with self._lock:
            slot = self._slots.get(config)
            if slot is None:
                engine.close()
                return
            slot.busy -= 1
            slot.free.append(engine)
            slot.last_used = self._clock()
            if slot.busy == 0:
                if slot.keep_alive <= 0:
                    self._unload_locked(slot)
                else:
                    slot.expires_at = slot.last_used + slot.keep_alive
            self._lock.notify_all()

    def _make_room_locked(self) -> bool:
        """Evict idle models until another fits; False when every resident model is busy."""
        while len(self._slots) + len(self._loading) >= self._max_loaded:
            idle = [s for s in self._slots.values() if s.busy == 0]
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
        self._slots.pop(slot.config, None)
        for engine in slot.instances:
            engine.close()
        logger.debug("unloaded %s", slot.name)

    def expire(self) -> None:
        """Unload every idle model whose keep-alive has run out."""
        with self._lock:
            self._expire_locked()
            self._lock.notify_all()

    def unload(self, name: str) -> bool:
        """Unload a model by name once idle (now, if it already is); False if it is not loaded."""
        with self._lock:
            matches = [s for s in self._slots.values() if s.name == name]
            for slot in matches:
                if slot.busy == 0:
                    self._unload_locked(slot)
                else:
                    slot.keep_alive = 0
            self._lock.notify_all()
            return bool(matches)

    def ps(self) -> list[LoadedInfo]:
        """Resident models, soonest-to-expire last."""
        with self._lock:
            self._expire_locked()
            now_mono, now_wall = self._clock(), self._wall()
            infos = [
                LoadedInfo(
                    name=slot.name,
                    digest=slot.digest,
                    config=slot.config,
                    size=slot.size,
                    expires_at=_expires_wall(slot, now_mono, now_wall),
                    busy=slot.busy,
                )
                for slot in self._slots.values()
            ]
        return sorted(infos, key=lambda i: i.expires_at, reverse=True)

    def close(self) -> None:
        """Unload everything (at shutdown)."""
        with self._lock:
            for slot in list(self._slots.values()):
                self._unload_locked(slot)
            self._lock.notify_all()


def _expires_wall(slot: _Slot, now_mono: float, now_wall: float) -> float:
    """When an idle model will be unloaded, in wall-clock seconds (inf = never)."""
    if slot.busy or math.isinf(slot.expires_at):
        return math.inf if math.isinf(slot.keep_alive) else now_wall + slot.keep_alive
    return now_wall + (slot.expires_at - now_mono)
