"""Chat and generate: the conversation use cases shared by `run`, the REPL and the server.

A request names a model and options; this module resolves the model, merges options in
Ollama's order (default < Modelfile < session < request), borrows a loaded engine from the
scheduler, renders the chat template and streams the answer followed by the statistics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from ollamacli.config import Settings
from ollamacli.engine.base import (
    CancelToken,
    ChatMessage,
    Completion,
    Engine,
    TextChunk,
    ToolCall,
)
from ollamacli.engine.options import load_config, sampling_config
from ollamacli.engine.templates import ChatTemplate, resolve_template
from ollamacli.names import ModelName
from ollamacli.parameters import OptionValue, defaults, merge_options, validate_options
from ollamacli.scheduler import Lease, Scheduler
from ollamacli.store import ResolvedModel, Store

FormatSpec = str | Mapping[str, object] | None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat turn: the whole conversation so far plus settings."""

    model: str
    messages: tuple[ChatMessage, ...] = ()
    options: Mapping[str, object] = field(default_factory=dict)
    session_options: Mapping[str, OptionValue] = field(default_factory=dict)
    system: str | None = None
    template: str | None = None
    format: FormatSpec = None
    tools: tuple[Mapping[str, object], ...] = ()
    keep_alive: float | None = None
    truncate: bool = True


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """A one-shot completion (`/api/generate`, `run MODEL PROMPT`)."""

    model: str
    prompt: str = ""
    system: str | None = None
    template: str | None = None
    raw: bool = False
    context: tuple[int, ...] = ()
    options: Mapping[str, object] = field(default_factory=dict)
    session_options: Mapping[str, OptionValue] = field(default_factory=dict)
    format: FormatSpec = None
    keep_alive: float | None = None
    truncate: bool = True


@dataclass(frozen=True, slots=True)
class ToolCallsChunk:
    """Tool calls parsed from the model's output."""

    calls: tuple[ToolCall, ...]


@dataclass(frozen=True, slots=True)
class ChatDone:
    """The final event of a chat or generate stream (durations in nanoseconds)."""

    done_reason: str
    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    context: tuple[int, ...] = ()
    truncated: bool = False


ChatEvent = TextChunk | ToolCallsChunk | ChatDone


@dataclass(frozen=True, slots=True)
class _Prepared:
    resolved: ResolvedModel
    options: dict[str, OptionValue]


class ChatService:
    """Runs conversations on loaded models."""

    def __init__(self, settings: Settings, store: Store, scheduler: Scheduler) -> None:
        self.settings = settings
        self.store = store
        self.scheduler = scheduler

    def prepare(
        self,
        model: str,
        request_options: Mapping[str, object],
        session_options: Mapping[str, OptionValue],
    ) -> _Prepared:
        """Resolve the model and merge options (raises on unknown models or bad options)."""
        resolved = self.store.resolve(ModelName.parse(model))
        base = {
            **defaults(),
            "num_ctx": self.settings.context_length,
            "num_thread": self.settings.num_thread,
        }
        modelfile = validate_options(resolved.parameters)
        merged = merge_options(base, modelfile, session_options, validate_options(request_options))
        return _Prepared(resolved, merged)

    def _lease(self, prepared: _Prepared, keep_alive: float | None) -> Iterator[Lease]:
        resolved = prepared.resolved
        trained = resolved.config.get("context_length")
        config = load_config(
            resolved.model_path,
            prepared.options,
            adapters=resolved.adapters,
            trained_context=trained if isinstance(trained, int) else None,
        )
        with self.scheduler.use(
            config,
            name=resolved.name.short,
            digest=resolved.digest,
            size=resolved.size,
            keep_alive=keep_alive,
        ) as lease:
            yield lease

    def chat(self, request: ChatRequest, cancel: CancelToken | None = None) -> Iterator[ChatEvent]:
        """Stream the assistant's answer to a conversation."""
        started = time.perf_counter_ns()
        prepared = self.prepare(request.model, request.options, request.session_options)
        if not request.messages:
            yield from self._load_only(prepared, request.keep_alive, started)
            return
        for lease in self._lease(prepared, request.keep_alive):
            messages = self._conversation(prepared.resolved, request.messages, request.system)
            template = self._template(prepared.resolved, lease.engine, request.template)
            prompt = template.render(messages, tools=request.tools)
            yield from self._stream(lease, prompt, prepared.options, started, cancel)

    def generate(
        self, request: GenerateRequest, cancel: CancelToken | None = None
    ) -> Iterator[ChatEvent]:
        """Stream a completion for a single prompt."""
        started = time.perf_counter_ns()
        prepared = self.prepare(request.model, request.options, request.session_options)
        if not request.prompt:
            yield from self._load_only(prepared, request.keep_alive, started)
            return
        for lease in self._lease(prepared, request.keep_alive):
            if request.raw:
                prompt: str | list[int] = request.prompt
            else:
                turn = (ChatMessage("user", request.prompt),)
                history = () if request.context else None
                messages = self._conversation(prepared.resolved, turn, request.system, history)
                template = self._template(prepared.resolved, lease.engine, request.template)
                text = template.render(messages)
                prompt = (
                    [*request.context, *lease.engine.tokenize(text)] if request.context else text
                )
            yield from self._stream(lease, prompt, prepared.options, started, cancel)

    def _load_only(
        self, prepared: _Prepared, keep_alive: float | None, started: int
    ) -> Iterator[ChatEvent]:
        for lease in self._lease(prepared, keep_alive):
            reason = "unload" if keep_alive is not None and keep_alive <= 0 else "load"
            yield ChatDone(
                done_reason=reason,
                total_duration=time.perf_counter_ns() - started,
                load_duration=lease.load_duration,
            )

    def _stream(
        self,
        lease: Lease,
        prompt: str | list[int],
        options: Mapping[str, OptionValue],
        started: int,
        cancel: CancelToken | None = None,
    ) -> Iterator[ChatEvent]:
        sampling = sampling_config(options)
        for event in lease.engine.generate(prompt, sampling, cancel):
            if isinstance(event, Completion):
                yield ChatDone(
                    done_reason=event.done_reason,
                    total_duration=time.perf_counter_ns() - started,
                    load_duration=lease.load_duration,
                    prompt_eval_count=event.prompt_eval_count,
                    prompt_eval_duration=event.prompt_eval_duration,
                    eval_count=event.eval_count,
                    eval_duration=event.eval_duration,
                    context=event.context,
                )
            else:
                yield event

    @staticmethod
    def _conversation(
        resolved: ResolvedModel,
        messages: tuple[ChatMessage, ...],
        system: str | None,
        history: tuple[ChatMessage, ...] | None = None,
    ) -> list[ChatMessage]:
        """System message, the Modelfile's MESSAGE rows, then the request's turns."""
        seeded = (
            history
            if history is not None
            else tuple(
                ChatMessage(str(m.get("role", "user")), str(m.get("content", "")))
                for m in resolved.messages
            )
        )
        conversation = [*seeded, *messages]
        system_text = system if system is not None else resolved.system
        if system_text is not None and not (conversation and conversation[0].role == "system"):
            conversation.insert(0, ChatMessage("system", system_text))
        return conversation

    @staticmethod
    def _template(resolved: ResolvedModel, engine: Engine, override: str | None) -> ChatTemplate:
        return resolve_template(
            override,
            resolved.template,
            engine.metadata.get("tokenizer.chat_template"),
            bos_token=engine.bos_token,
            eos_token=engine.eos_token,
        )
