"""Training text: render examples with the base model's chat template, as inference will.

The conversation is assembled by `ChatService.conversation` for the base model (its SYSTEM
message unless the row has its own, its MESSAGE rows, then the row) and rendered with the same
template inference resolves (Modelfile TEMPLATE, else the GGUF's chat template). Each
assistant turn becomes a trained piece: the text the template puts after the generation prompt
(its trace, content and end-of-turn marker); everything else is context with no loss. A template
with a reasoning trace renders with thinking on, as inference does by default, so a row's
`thinking` is learned after the opening tag the prompt ends with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ollamacli.engine.base import ChatMessage
from ollamacli.engine.reasoning import thinking_style
from ollamacli.engine.templates import ChatTemplate, resolve_template
from ollamacli.engine.thinking import ThinkValue
from ollamacli.errors import DatasetError, FinetuneError
from ollamacli.finetune.dataset import Example

IGNORE_INDEX = -100
"""The label PyTorch's cross-entropy skips: prompt tokens carry no loss."""

Encode = Callable[[str], list[int]]
"""Text to token ids, with control tokens such as `<|im_end|>` parsed (no BOS added)."""


Assemble = Callable[[Sequence[ChatMessage]], list[ChatMessage]]
"""A row's messages -> the conversation inference would render (adds SYSTEM, MESSAGE rows)."""


@dataclass(frozen=True, slots=True)
class PromptFormat:
    """How inference turns a conversation into text for the base model."""

    template: ChatTemplate
    assemble: Assemble = list
    bos_id: int | None = None  # prepended when the model's tokenizer adds BOS
    think: ThinkValue = None  # True for templates with a trace (inference's default)

    @classmethod
    def for_model(
        cls,
        *,
        modelfile_template: str | None,
        gguf_template: str | None,
        assemble: Assemble = list,
        special: tuple[str, str] = ("", ""),
        bos_id: int | None = None,
    ) -> PromptFormat:
        """The format for a model; `special` is the text of its (BOS, EOS) tokens."""
        bos, eos = special
        template = resolve_template(modelfile_template, gguf_template, bos_token=bos, eos_token=eos)
        thinks = thinking_style(template.source, template.kind) is not None
        return cls(template, assemble, bos_id, True if thinks else None)

    def pieces(self, example: Example) -> list[tuple[str, bool]]:
        """The rendered text cut into (text, trained) pieces, in order."""
        conversation = self.assemble(example.messages)
        first_trained = len(conversation) - len(example.messages)
        pieces: list[tuple[str, bool]] = []
        done = ""
        for index, message in enumerate(conversation):
            if message.role != "assistant" or index < first_trained:
                continue
            prompt = self.template.render(
                conversation[:index], add_generation_prompt=True, think=self.think
            )
            if not prompt.startswith(done):
                raise FinetuneError(
                    f"{example.location}: the chat template does not render this conversation "
                    "turn by turn",
                    hint="use single-turn rows with this model",
                )
            answer = self._answer(conversation[: index + 1], prompt, message)
            pieces += [(prompt[len(done) :], False), (answer, True)]
            done = prompt + answer
        return [(text, trained) for text, trained in pieces if text]

    def _answer(self, conversation: list[ChatMessage], prompt: str, message: ChatMessage) -> str:
        """What the template writes for the last assistant turn, end-of-turn marker included
        (with a trace, the content comes after it)."""
        full = self.template.render(conversation, add_generation_prompt=False, think=self.think)
        answer = full[len(prompt) :] if full.startswith(prompt) else ""
        content = message.content
        traced = bool(message.thinking) and message.thinking.strip() in answer
        if not answer.lstrip().startswith(content.strip()) and not (
            traced and content.strip() in answer
        ):
            answer = content
        eos = self.template.eos_token
        if eos and eos not in answer:
            answer += eos
        return answer


@dataclass(frozen=True, slots=True)
class TokenizedExample:
    """Token ids and labels (`IGNORE_INDEX` where nothing is learned)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    prompt_labels: tuple[int, ...] = ()
    """With `prompt=True`: the prompt's token ids where they are (IGNORE_INDEX on the answers'
    and the first token), for a loss on the questions too; empty otherwise."""

    @property
    def trained_tokens(self) -> int:
        """How many tokens carry a loss."""
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def tokenize_example(
    example: Example, fmt: PromptFormat, encode: Encode, *, max_length: int, prompt: bool = False
) -> TokenizedExample:
    """Encode the pieces one by one (the prompt exactly as inference tokenizes it); with
    `prompt`, also label the prompt's tokens (`prompt_labels`)."""
    ids: list[int] = [] if fmt.bos_id is None else [fmt.bos_id]
    labels: list[int] = [IGNORE_INDEX] * len(ids)
    asked: list[int] = [IGNORE_INDEX] * len(ids)
    for text, trained in fmt.pieces(example):
        tokens = encode(text)
        ids += tokens
        labels += tokens if trained else [IGNORE_INDEX] * len(tokens)
        asked += [IGNORE_INDEX] * len(tokens) if trained else tokens
    asked[:1] = [IGNORE_INDEX] * min(1, len(asked))  # nothing predicts the first token
    result = TokenizedExample(
        tuple(ids[:max_length]),
        tuple(labels[:max_length]),
        tuple(asked[:max_length]) if prompt else (),
    )
    if result.trained_tokens == 0:
        raise DatasetError(
            f"no answer tokens left within --max-seq-length {max_length} "
            f"(the row has {len(ids)} tokens)",
            location=example.location,
        )
    return result
