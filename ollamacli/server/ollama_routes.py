"""Ollama's native API (`/api/*` and `/`), with Ollama's field names, shapes and statuses.

Deliberate deviation: a streaming endpoint streams only when the body says `"stream": true`.
When `stream` is omitted the answer is one JSON object, so the classic
`requests.post(url, data=json.dumps({...})).json()["message"]["content"]` works (issue 5).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ollamacli import __version__
from ollamacli.errors import BlobNotFoundError, InvalidRequestError, OllamaCliError
from ollamacli.gguffile import check_gguf, is_gguf
from ollamacli.names import ModelName
from ollamacli.progress import ProgressSink
from ollamacli.registry.bundled import find_bundled
from ollamacli.server import convert, render
from ollamacli.server.peers import merged_models
from ollamacli.server.render import OllamaRendering, ProgressRendering
from ollamacli.server.respond import respond
from ollamacli.server.schemas import (
    ChatBody,
    CopyBody,
    CreateBody,
    DeleteBody,
    GenerateBody,
    PullBody,
    ShowBody,
    parse_body,
)
from ollamacli.server.state import peers_of, services_of
from ollamacli.server.streaming import NDJSON, iterate, json_line, with_progress
from ollamacli.service import Services
from ollamacli.service.chat import ChatDone, ChatEvent
from ollamacli.service.models import CreateSpec
from ollamacli.service.show import describe, details
from ollamacli.store import Digest, Store, parse_digest

router = APIRouter()


@router.api_route("/", methods=["GET", "HEAD"])
async def root() -> Response:
    return PlainTextResponse("Ollama is running")


@router.api_route("/api/version", methods=["GET", "HEAD"])
async def version() -> Response:
    return JSONResponse({"version": __version__})


def _checked(
    services: Services,
    model: str,
    needs: tuple[str, ...],
    events: Callable[[], Iterator[ChatEvent]],
) -> Iterator[ChatEvent]:
    """Refuse a request the model cannot serve (thinking, vision, insert), then run it."""
    if needs:
        info = describe(services.store, ModelName.parse(model))
        missing = [need for need in needs if need not in info.capabilities]
        if missing:
            raise InvalidRequestError(f'"{model}" does not support {", ".join(missing)}')
    yield from events()


async def _unload(request: Request, model: str, answer: OllamaRendering, stream: bool) -> Response:
    services = services_of(request)
    resolved = await run_in_threadpool(services.store.resolve, ModelName.parse(model))
    services.scheduler.unload(resolved.name.short)
    data = answer.final(ChatDone(done_reason="unload"), "")
    if stream:
        return Response(json_line(data), media_type=NDJSON)
    return JSONResponse(data)


@router.post("/api/generate")
async def generate(request: Request) -> Response:
    body = parse_body(await request.body(), GenerateBody)
    req = convert.generate_request(body)
    answer = OllamaRendering(body.model_name, chat=False, with_context=not req.raw)
    if convert.is_unload(not req.prompt, req.keep_alive):
        return await _unload(request, req.model, answer, bool(body.stream))
    needs = convert.wanted_capabilities(body)
    services = services_of(request)
    work = iterate(
        lambda cancel: _checked(
            services, req.model, needs, lambda: services.chat.generate(req, cancel)
        )
    )
    return await respond(request, work, answer, stream=bool(body.stream))


@router.post("/api/chat")
async def chat(request: Request) -> Response:
    body = parse_body(await request.body(), ChatBody)
    req = convert.chat_request(body)
    answer = OllamaRendering(body.model_name, chat=True)
    if convert.is_unload(not req.messages, req.keep_alive):
        return await _unload(request, req.model, answer, bool(body.stream))
    needs = convert.wanted_capabilities(body)
    services = services_of(request)
    work = iterate(
        lambda cancel: _checked(services, req.model, needs, lambda: services.chat.chat(req, cancel))
    )
    return await respond(request, work, answer, stream=bool(body.stream))


def _check_uploaded(store: Store, spec: CreateSpec) -> None:
    """Uploaded blobs must exist, and be GGUF files unless they make up a PEFT adapter (a
    client error, not a store failure)."""
    digests: list[Digest] = [*spec.adapter_digests]
    if spec.from_digest is not None:
        digests.append(spec.from_digest)
    for digest in [*digests, *(digest for _, digest in spec.adapter_uploads)]:
        if not store.blobs.exists(digest):
            raise InvalidRequestError(
                f'blob "{digest}" not found: upload it first with POST /api/blobs/{digest}'
            )
    for digest in digests:
        path = store.blobs.path(digest)
        if not is_gguf(path):
            raise InvalidRequestError(f"supplied file {digest} was not in GGUF format")
        check_gguf(path, source=f"supplied file {digest}")  # 400 naming the defect


def _create(services: Services, name: str, spec: CreateSpec, sink: ProgressSink) -> None:
    _check_uploaded(services.store, spec)
    services.models.create(name, spec, sink)


@router.post("/api/create")
async def create(request: Request) -> Response:
    body = parse_body(await request.body(), CreateBody)
    name = convert.model_name(body.model_name)
    spec = convert.create_spec(body)
    services = services_of(request)
    work = with_progress(lambda sink: _create(services, name, spec, sink))
    return await respond(request, work, ProgressRendering(), stream=bool(body.stream))


def _pull(services: Services, name: ModelName, insecure: bool, sink: ProgressSink) -> None:
    """Bundled models import offline; others go to the configured registry fetcher."""
    if insecure and services.models.fetcher is not None and find_bundled(name) is None:
        from ollamacli.service.pull import PullService

        PullService(services.store, services.settings).pull(name, sink, insecure=True)
        return
    services.models.fetch(name, sink)


@router.post("/api/pull")
async def pull(request: Request) -> Response:
    body = parse_body(await request.body(), PullBody)
    name = ModelName.parse(convert.model_name(body.model_name))
    services = services_of(request)
    work = with_progress(lambda sink: _pull(services, name, bool(body.insecure), sink))
    return await respond(request, work, ProgressRendering(), stream=bool(body.stream))


def _push(services: Services, name: ModelName, insecure: bool, sink: ProgressSink) -> None:
    from ollamacli.service.push import PushService

    PushService(services.store, services.settings).push(name, sink, insecure=insecure)


@router.post("/api/push")
async def push(request: Request) -> Response:
    body = parse_body(await request.body(), PullBody)  # the same fields: model, insecure, stream
    name = ModelName.parse(convert.model_name(body.model_name))
    services = services_of(request)
    work = with_progress(lambda sink: _push(services, name, bool(body.insecure), sink))
    return await respond(request, work, ProgressRendering(), stream=bool(body.stream))


def _details(store: Store, name: str) -> dict[str, object]:
    try:
        return details(store.resolve(ModelName.parse(name)))
    except OllamaCliError:
        return render.minimal_details()


def _tags(store: Store) -> list[dict[str, object]]:
    return [render.tag_json(e, _details(store, e.name.short)) for e in store.entries()]


@router.api_route("/api/tags", methods=["GET", "HEAD"])
async def tags(request: Request) -> Response:
    store = services_of(request).store
    return JSONResponse({"models": await run_in_threadpool(_tags, store)})


def loaded_models(services: Services) -> list[dict[str, object]]:
    """`/api/ps`'s entries for the models this server holds (reads the store: a thread)."""
    return [render.ps_json(i, _details(services.store, i.name)) for i in services.scheduler.ps()]


@router.get("/api/ps")
async def ps(request: Request) -> Response:
    models = await run_in_threadpool(loaded_models, services_of(request))
    others = peers_of(request)
    if others is not None:  # serve --ray: the other replicas' models too
        models = merged_models(models, await others.snapshots())
    return JSONResponse({"models": models})


@router.post("/api/show")
async def show(request: Request) -> Response:
    body = parse_body(await request.body(), ShowBody)
    name = ModelName.parse(convert.model_name(body.model_name))
    store = services_of(request).store
    info = await run_in_threadpool(lambda: describe(store, name, verbose=bool(body.verbose)))
    return JSONResponse(render.show_json(info))


@router.post("/api/copy")
async def copy(request: Request) -> Response:
    body = parse_body(await request.body(), CopyBody)
    source = convert.model_name(body.source or "", field="source")
    destination = convert.model_name(body.destination or "", field="destination")
    await run_in_threadpool(services_of(request).models.copy, source, destination)
    return Response(status_code=200)


@router.delete("/api/delete")
async def delete(request: Request) -> Response:
    body = parse_body(await request.body(), DeleteBody)
    name = ModelName.parse(convert.model_name(body.model_name))
    services = services_of(request)
    resolved = await run_in_threadpool(services.store.resolve, name)
    services.scheduler.unload(resolved.name.short)
    await run_in_threadpool(services.models.delete, resolved.name.short)
    return Response(status_code=200)


@router.head("/api/blobs/{digest}")
async def blob_exists(digest: str, request: Request) -> Response:
    checked = parse_digest(digest)
    if not services_of(request).store.blobs.exists(checked):
        raise BlobNotFoundError(checked)
    return Response(status_code=200)


@router.post("/api/blobs/{digest}")
async def upload_blob(digest: str, request: Request) -> Response:
    """Store an uploaded blob; content whose sha256 differs is refused (400) and discarded."""
    checked = parse_digest(digest)
    blobs = services_of(request).store.blobs
    if blobs.exists(checked):
        return Response(status_code=200)
    loop = asyncio.get_running_loop()
    stream = request.stream().__aiter__()

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    def chunks() -> Iterator[bytes]:
        while (chunk := asyncio.run_coroutine_threadsafe(next_chunk(), loop).result()) is not None:
            if chunk:
                yield chunk

    try:
        await run_in_threadpool(lambda: blobs.add_stream(chunks(), expected=checked))
    except ClientDisconnect:
        return Response(status_code=499)
    return Response(status_code=201)
