"""The scheduler: load on demand, keep-alive, eviction, queueing, cancellation, shutdown."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from ollamacli.engine.base import CancelToken, Engine, LoadConfig
from ollamacli.errors import ModelLoadError, RequestCancelledError, ServerBusyError
from ollamacli.scheduler import Lease, Scheduler
from tests.fakes import FakeEngine, FakeFactory


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def config(name: str = "a", **changes: int) -> LoadConfig:
    return LoadConfig(model_path=Path(f"/models/{name}.gguf"), **changes)  # type: ignore[arg-type]  # ints only


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


class Holder:
    """Borrows a model on another thread until told to let go."""

    def __init__(self, scheduler: Scheduler, cfg: LoadConfig, name: str, **kwargs: object) -> None:
        self.acquired = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None
        self.engine: Engine | None = None
        self._args = (scheduler, cfg, name, kwargs)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        scheduler, cfg, name, kwargs = self._args
        try:
            with scheduler.use(cfg, name=name, **kwargs) as lease:  # type: ignore[arg-type]  # test helper
                self.engine = lease.engine
                self.acquired.set()
                self.release.wait(10)
        except Exception as exc:  # noqa: BLE001  (the test inspects it)
            self.error = exc
            self.acquired.set()

    def finish(self) -> None:
        self.release.set()
        self.thread.join(10)


def is_closed(engine: FakeEngine) -> bool:
    return engine.closed


@contextmanager
def running(scheduler: Scheduler) -> Iterator[Scheduler]:
    try:
        yield scheduler
    finally:
        scheduler.close(timeout=1)


def use_once(scheduler: Scheduler, cfg: LoadConfig, name: str, **kwargs: object) -> Lease:
    with scheduler.use(cfg, name=name, **kwargs) as lease:  # type: ignore[arg-type]  # test helper
        return lease


def test_scheduler_loads_on_demand_and_reuses_the_instance(fake_factory: FakeFactory) -> None:
    with running(Scheduler(fake_factory)) as scheduler:
        first = use_once(scheduler, config(), "a:latest")
        second = use_once(scheduler, config(), "a:latest")
    assert len(fake_factory.loaded) == 1
    assert first.engine is second.engine
    assert first.load_duration > 0
    assert second.load_duration == 0


def test_scheduler_keep_alive_zero_unloads_when_the_request_ends(
    fake_factory: FakeFactory,
) -> None:
    with running(Scheduler(fake_factory)) as scheduler:
        lease = use_once(scheduler, config(), "a:latest", keep_alive=0.0)
        assert scheduler.ps() == []
    assert isinstance(lease.engine, FakeEngine)
    assert lease.engine.closed


def test_scheduler_expires_idle_models_after_keep_alive(fake_factory: FakeFactory) -> None:
    clock = Clock()
    with running(Scheduler(fake_factory, clock=clock)) as scheduler:
        use_once(scheduler, config(), "a:latest", keep_alive=60.0)
        clock.now += 59
        scheduler.expire()
        assert [i.name for i in scheduler.ps()] == ["a:latest"]
        clock.now += 2
        scheduler.expire()
        assert scheduler.ps() == []
    assert fake_factory.loaded[0].closed


def test_scheduler_reaper_unloads_without_another_request(fake_factory: FakeFactory) -> None:
    with running(Scheduler(fake_factory)) as scheduler:
        scheduler.start()
        use_once(scheduler, config(), "a:latest", keep_alive=0.2)
        engine = fake_factory.loaded[0]
        assert not engine.closed
        wait_until(lambda: engine.closed)


def test_scheduler_absent_keep_alive_uses_the_default(fake_factory: FakeFactory) -> None:
    clock = Clock()
    with running(Scheduler(fake_factory, default_keep_alive=30.0, clock=clock)) as scheduler:
        use_once(scheduler, config(), "a:latest", keep_alive=math.inf)
        assert math.isinf(scheduler.ps()[0].expires_at)
        use_once(scheduler, config(), "a:latest")
        expires = scheduler.ps()[0].expires_at
        assert 25 < expires - time.time() <= 30


def test_scheduler_evicts_the_least_recently_used_idle_model(fake_factory: FakeFactory) -> None:
    clock = Clock()
    with running(Scheduler(fake_factory, max_loaded=2, clock=clock)) as scheduler:
        for name in ("a", "b", "a"):
            use_once(scheduler, config(name), f"{name}:latest")
            clock.now += 1
        use_once(scheduler, config("c"), "c:latest")
        assert sorted(i.name for i in scheduler.ps()) == ["a:latest", "c:latest"]
    assert fake_factory.loaded[1].closed  # b


def test_scheduler_waits_for_a_busy_model_instead_of_evicting_it(
    fake_factory: FakeFactory,
) -> None:
    with running(Scheduler(fake_factory, max_loaded=1)) as scheduler:
        holder = Holder(scheduler, config("a"), "a:latest")
        holder.acquired.wait(5)
        waiter = Holder(scheduler, config("b"), "b:latest")
        wait_until(lambda: scheduler.pending() == 1)
        assert not waiter.acquired.is_set()
        holder.finish()
        waiter.acquired.wait(5)
        assert waiter.error is None
        assert [i.name for i in scheduler.ps()] == ["b:latest"]
        waiter.finish()


def test_scheduler_refuses_requests_past_the_queue_limit(fake_factory: FakeFactory) -> None:
    with running(Scheduler(fake_factory, max_queue=1)) as scheduler:
        holder = Holder(scheduler, config(), "a:latest")
        holder.acquired.wait(5)
        waiter = Holder(scheduler, config(), "a:latest")
        wait_until(lambda: scheduler.pending() == 1)
        with pytest.raises(ServerBusyError, match="maximum pending requests exceeded"):
            use_once(scheduler, config(), "a:latest")
        holder.finish()
        waiter.acquired.wait(5)
        assert waiter.error is None
        waiter.finish()


def test_scheduler_num_parallel_gives_each_request_its_own_instance(
    fake_factory: FakeFactory,
) -> None:
    with running(Scheduler(fake_factory, num_parallel=2)) as scheduler:
        first = Holder(scheduler, config(), "a:latest")
        second = Holder(scheduler, config(), "a:latest")
        first.acquired.wait(5)
        second.acquired.wait(5)
        assert first.engine is not second.engine
        third = Holder(scheduler, config(), "a:latest")
        wait_until(lambda: scheduler.pending() == 1)
        first.finish()
        third.acquired.wait(5)
        assert third.engine is first.engine
        second.finish()
        third.finish()
    assert len(fake_factory.loaded) == 2


def test_scheduler_serves_waiting_requests_in_arrival_order(fake_factory: FakeFactory) -> None:
    order: list[int] = []
    with running(Scheduler(fake_factory)) as scheduler:
        holder = Holder(scheduler, config(), "a:latest")
        holder.acquired.wait(5)
        threads = []
        for index in range(4):

            def work(i: int = index) -> None:
                with scheduler.use(config(), name="a:latest"):
                    order.append(i)

            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            threads.append(thread)
            wait_until(lambda n=index + 1: scheduler.pending() == n)  # type: ignore[misc]  # default arg binds the loop value
        holder.finish()
        for thread in threads:
            thread.join(5)
    assert order == [0, 1, 2, 3]


def test_scheduler_cancelled_waiter_leaves_the_queue(fake_factory: FakeFactory) -> None:
    with running(Scheduler(fake_factory)) as scheduler:
        holder = Holder(scheduler, config(), "a:latest")
        holder.acquired.wait(5)
        token = CancelToken()
        waiter = Holder(scheduler, config(), "a:latest", cancel=token)
        wait_until(lambda: scheduler.pending() == 1)
        token.cancel()
        waiter.acquired.wait(5)
        assert isinstance(waiter.error, RequestCancelledError)
        assert scheduler.pending() == 0
        holder.finish()


def test_scheduler_unload_of_a_busy_model_happens_when_it_is_released(
    fake_factory: FakeFactory,
) -> None:
    with running(Scheduler(fake_factory)) as scheduler:
        holder = Holder(scheduler, config(), "a:latest")
        holder.acquired.wait(5)
        assert scheduler.unload("a:latest")
        engine = fake_factory.loaded[0]
        assert not is_closed(engine)
        holder.finish()
        assert is_closed(engine)
        assert scheduler.ps() == []
        assert not scheduler.unload("a:latest")


def test_scheduler_failed_load_can_be_retried(fake_factory: FakeFactory) -> None:
    class Flaky(FakeFactory):
        failures = 1

        def load(self, cfg: LoadConfig) -> Engine:
            if self.failures:
                self.failures -= 1
                raise ModelLoadError("boom", path=str(cfg.model_path))
            return super().load(cfg)

    with running(Scheduler(Flaky())) as scheduler:
        with pytest.raises(ModelLoadError):
            use_once(scheduler, config(), "a:latest")
        assert use_once(scheduler, config(), "a:latest").load_duration > 0


def test_scheduler_close_waits_for_running_requests_and_cancels_waiting_ones(
    fake_factory: FakeFactory,
) -> None:
    scheduler = Scheduler(fake_factory)
    holder = Holder(scheduler, config(), "a:latest")
    holder.acquired.wait(5)
    waiter = Holder(scheduler, config(), "a:latest")
    wait_until(lambda: scheduler.pending() == 1)
    closer = threading.Thread(target=scheduler.close, kwargs={"timeout": 5.0})
    closer.start()
    waiter.acquired.wait(5)
    assert isinstance(waiter.error, RequestCancelledError)
    assert closer.is_alive()  # still waiting for the running request
    holder.finish()
    closer.join(5)
    assert not closer.is_alive()
    assert fake_factory.loaded[0].closed
    with pytest.raises(RequestCancelledError):
        use_once(scheduler, config(), "a:latest")


def test_scheduler_ps_reports_context_and_expiry(fake_factory: FakeFactory) -> None:
    with running(Scheduler(fake_factory)) as scheduler:
        use_once(scheduler, config(num_ctx=2048), "a:latest", digest="abc", size=42)
        (info,) = scheduler.ps()
    assert (info.name, info.digest, info.size, info.busy) == ("a:latest", "abc", 42, 0)
    assert info.config.num_ctx == 2048
    assert 295 < info.expires_at - time.time() <= 300


def test_scheduler_ps_shows_chat_and_embedding_instances_as_one_model(
    fake_factory: FakeFactory,
) -> None:
    with running(Scheduler(fake_factory)) as scheduler:
        use_once(scheduler, config(num_ctx=2048), "a:latest", digest="abc", size=42)
        use_once(scheduler, replace(config(), embedding=True), "a:latest", digest="abc", size=42)
        use_once(scheduler, config("b"), "b:latest", digest="def", size=7)
        rows = {info.name: info for info in scheduler.ps()}
        assert len(fake_factory.loaded) == 3
        assert sorted(rows) == ["a:latest", "b:latest"]
        assert rows["a:latest"].config.num_ctx == 2048
        assert not rows["a:latest"].config.embedding
        assert scheduler.unload("a:latest")
        assert [info.name for info in scheduler.ps()] == ["b:latest"]


def test_keep_alive_zero_unloads_both_instances_of_a_model(fake_factory: FakeFactory) -> None:
    with running(Scheduler(fake_factory)) as scheduler:
        use_once(scheduler, config(), "a:latest", digest="abc")
        use_once(scheduler, config("b"), "b:latest", digest="def")
        use_once(
            scheduler, replace(config(), embedding=True), "a:latest", digest="abc", keep_alive=0
        )
        assert [info.name for info in scheduler.ps()] == ["b:latest"]
        chat, other, embedding = fake_factory.loaded
        assert chat.closed
        assert embedding.closed
        assert not other.closed


def test_keep_alive_zero_unloads_a_busy_sibling_when_its_request_ends(
    fake_factory: FakeFactory,
) -> None:
    with running(Scheduler(fake_factory)) as scheduler:
        with scheduler.use(config(), name="a:latest", digest="abc") as chat:
            embedding = replace(config(), embedding=True)
            use_once(scheduler, embedding, "a:latest", digest="abc", keep_alive=0)
            assert [info.name for info in scheduler.ps()] == ["a:latest"]
            assert not chat.engine.closed  # type: ignore[attr-defined]  # a FakeEngine
        assert scheduler.ps() == []
        assert all(engine.closed for engine in fake_factory.loaded)


def test_scheduler_two_names_for_one_file_share_an_instance(fake_factory: FakeFactory) -> None:
    with running(Scheduler(fake_factory)) as scheduler:
        use_once(scheduler, config(), "alias:latest", digest="d1")
        use_once(scheduler, config(), "a:latest", digest="d2")
        (info,) = scheduler.ps()
        assert (info.name, info.digest) == ("a:latest", "d2")
        assert scheduler.unload("alias:latest")
        assert scheduler.ps() == []
    assert len(fake_factory.loaded) == 1


def test_queued_counts_waiting_requests_per_model_and_load_listeners_hear_loads() -> None:
    factory = FakeFactory()
    scheduler = Scheduler(factory, max_loaded=1, max_queue=4)
    loads: list[tuple[str, float]] = []
    forget = scheduler.add_load_listener(lambda name, seconds: loads.append((name, seconds)))
    holder = Holder(scheduler, config("a"), "a")
    assert holder.acquired.wait(10)
    waiting = [Holder(scheduler, config("a"), "a"), Holder(scheduler, config("b"), "b")]
    wait_until(lambda: scheduler.pending() == 2)
    assert scheduler.queued() == {"a": 1, "b": 1}
    for other in (*waiting, holder):
        other.release.set()  # each lets go as soon as it has its turn
    for other in (holder, *waiting):
        other.thread.join(10)
        assert other.acquired.is_set()
        assert other.error is None
    assert scheduler.queued() == {}
    # "b" evicts the idle "a"; "a" is loaded again if its waiter came second
    assert [name for name, _ in loads][:2] == ["a", "b"]
    assert {name for name, _ in loads} == {"a", "b"}
    assert all(seconds >= 0 for _, seconds in loads)
    forget()
    heard = len(loads)
    with scheduler.use(config("c"), name="c"):
        pass
    assert len(loads) == heard
