"""One stream-or-collect path for every route whose answer comes from blocking work.

Chat and generate in Ollama's, OpenAI's and Anthropic's shapes, and the progress of pull, push
and create, all go through `respond`: the work runs on its own thread (`ThreadPump`); a
streamed answer starts once the first item is known (so an error found before it still gets
its status code), a whole answer waits for every item. `ChatRendering` is the base of the
chat shapes: each is a thin rendering of the same `ChatEvent`s, folded by one `ReplyFolder`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ollamacli.server.state import active_of
from ollamacli.server.streaming import SSE, EventStream, Rendering, ThreadPump, Work
from ollamacli.service.events import ChatEvent, ChatReply, ReplyFolder, fold

T = TypeVar("T")


async def respond(
    request: Request, work: Work[T], rendering: Rendering[T], *, stream: bool
) -> Response:
    """Run the work; stream what it emits, or answer once with the rendering's whole object."""
    pump = ThreadPump(work, request.receive, active_of(request))
    try:
        first = await pump.next_batch()
        if stream:
            return EventStream(pump, first, rendering)
        rest = await pump.collect()
    except BaseException:
        pump.abort()
        raise
    return JSONResponse(rendering.whole([*first, *rest]))


class ChatRendering(ABC):
    """A chat answer in one API's shape: stream events per `ChatEvent`, or the whole reply.

    `encode` folds every event before rendering it, so a stream's last events can show the
    whole reply (`self.folder.reply()`) exactly as `render` shows a non-streamed one.
    """

    media_type = SSE

    def __init__(self) -> None:
        self.folder = ReplyFolder()

    def encode(self, item: ChatEvent) -> Iterator[bytes]:
        """The streamed bytes for one event."""
        self.folder.add(item)
        return self.stream(item)

    def whole(self, items: Sequence[ChatEvent]) -> dict[str, object]:
        """The non-streamed answer."""
        return self.render(fold(items))

    def trailer(self) -> bytes:
        """Nothing follows the last event unless the API says so (OpenAI's `[DONE]`)."""
        return b""

    @abstractmethod
    def stream(self, event: ChatEvent) -> Iterator[bytes]:
        """The streamed bytes for one event (already folded into `self.folder`)."""

    @abstractmethod
    def render(self, reply: ChatReply) -> dict[str, object]:
        """The whole reply as this API's JSON object."""

    @abstractmethod
    def error(self, exc: Exception) -> bytes:
        """The last bytes of a stream that failed after it started."""
