"""Use cases shared by the CLI and the server, wired together by `build_services`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

# Imported where used, so that importing one service module (e.g. service.pull for `pull`)
# does not load the chat stack and numpy with it.
if TYPE_CHECKING:
    from ollamacli.config import Settings
    from ollamacli.engine.base import EngineFactory
    from ollamacli.scheduler import Scheduler
    from ollamacli.service.chat import ChatService
    from ollamacli.service.embed import EmbedService
    from ollamacli.service.models import AdapterConverter, Fetcher, ModelService
    from ollamacli.store import Store


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a front end (CLI, REPL, server) needs."""

    settings: Settings
    store: Store
    models: ModelService
    scheduler: Scheduler
    chat: ChatService
    embed: EmbedService


def build_services(
    settings: Settings,
    engine_factory: EngineFactory | None = None,
    *,
    fetcher: Fetcher | None = None,
    adapter_converter: AdapterConverter | None = None,
) -> Services:
    """Wire the store, scheduler and services for these settings."""
    from ollamacli.scheduler import Scheduler
    from ollamacli.service.chat import ChatService
    from ollamacli.service.embed import EmbedService
    from ollamacli.service.models import ModelService
    from ollamacli.store import Store

    if engine_factory is None:
        from ollamacli.engine.llama import LlamaCppFactory

        engine_factory = LlamaCppFactory(
            verbose=settings.debug,
            parallel=settings.num_parallel,
            prompt_cache=settings.prompt_cache,
        )
    store = Store(settings.models)
    scheduler = Scheduler(
        engine_factory,
        max_loaded=settings.max_loaded_models,
        num_parallel=settings.num_parallel,
        max_queue=settings.max_queue,
        default_keep_alive=settings.keep_alive,
    )
    models = ModelService(
        store, fetcher=fetcher, adapter_converter=adapter_converter, prune=not settings.noprune
    )
    chat = ChatService(settings, store, scheduler)
    return Services(
        settings=settings,
        store=store,
        models=models,
        scheduler=scheduler,
        chat=chat,
        embed=EmbedService(chat),
    )
