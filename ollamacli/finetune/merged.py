"""Write a whole model as GGUF: fine-tuned weights with the base model's metadata and tokenizer.

`--method full` trains every weight; the result is stored as a new model layer. Everything but
the weights (hyper-parameters, tokenizer, chat template) is copied from the base GGUF, so the
new model tokenizes and renders prompts exactly as the base does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ollamacli.errors import FinetuneError
from ollamacli.finetune.layout import BaseLayout

if TYPE_CHECKING:
    import gguf
    import numpy as np
    import numpy.typing as npt

FileType = Literal["f32", "f16", "q8_0"]
FILE_TYPES: tuple[FileType, ...] = ("f32", "f16", "q8_0")
_LLAMA_FILE_TYPE = {"f32": 0, "f16": 1, "q8_0": 7}  # general.file_type (llama_ftype)
_SKIPPED_KEYS = ("general.architecture", "general.file_type")  # the writer sets these itself


@dataclass(frozen=True, slots=True)
class MetadataField:
    """One key-value of a GGUF header, with its GGUF types."""

    key: str
    value: object
    vtype: gguf.GGUFValueType
    sub_type: gguf.GGUFValueType | None = None


@dataclass(frozen=True, slots=True)
class GGUFMetadata:
    """A GGUF file's key-values (minus what the writer adds), to copy into a new file."""

    architecture: str
    fields: tuple[MetadataField, ...] = field(default=())

    @classmethod
    def read(cls, path: Path) -> GGUFMetadata:
        """Every key-value of a GGUF file."""
        import gguf

        reader = gguf.GGUFReader(str(path))
        fields = []
        architecture = ""
        for item in reader.fields.values():
            if item.name == "general.architecture":
                architecture = str(item.contents())
            if item.name.startswith("GGUF.") or item.name in _SKIPPED_KEYS:
                continue
            vtype = item.types[0]
            sub_type = item.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            fields.append(MetadataField(item.name, item.contents(), vtype, sub_type))
        return cls(architecture, tuple(fields))

    def with_values(self, values: Mapping[str, object]) -> GGUFMetadata:
        """A copy with some existing values replaced (types kept)."""
        unknown = set(values) - {f.key for f in self.fields}
        if unknown:
            raise KeyError(f"no such GGUF keys: {sorted(unknown)}")
        fields = tuple(
            replace(f, value=values[f.key]) if f.key in values else f for f in self.fields
        )
        return GGUFMetadata(self.architecture, fields)

    def value(self, key: str) -> object:
        """The value of a key (None when absent)."""
        return next((f.value for f in self.fields if f.key == key), None)


def write_model_gguf(
    tensors: Mapping[str, npt.NDArray[np.float32]],
    metadata: GGUFMetadata,
    out: Path,
    *,
    file_type: FileType = "f16",
) -> list[str]:
    """Write Hugging Face weights as a GGUF model; returns the GGUF tensor names written.

    `tensors` maps Hugging Face parameter names to float32 arrays. A tied `lm_head.weight` is
    skipped when it is the embedding itself (llama.cpp then reuses `token_embd`).
    """
    import gguf

    layout = _layout(metadata)
    converted = _convert(tensors, layout)
    writer = gguf.GGUFWriter(str(out), metadata.architecture)
    for item in metadata.fields:
        writer.add_key_value(item.key, item.value, item.vtype, sub_type=item.sub_type)
    writer.add_file_type(_LLAMA_FILE_TYPE[file_type])
    for name, data in converted.items():
        encoded, raw_dtype = _encode(data, file_type)
        writer.add_tensor(name, encoded, raw_dtype=raw_dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return list(converted)


def _layout(metadata: GGUFMetadata) -> BaseLayout:
    arch = metadata.architecture

    def number(key: str) -> int | None:
        value = metadata.value(f"{arch}.{key}")
        return value if isinstance(value, int) else None

    blocks, heads = number("block_count"), number("attention.head_count")
    if blocks is None or heads is None:
        raise FinetuneError(f"the base GGUF ({arch}) lacks block_count/attention.head_count")
    return BaseLayout(arch, blocks, heads, number("attention.head_count_kv") or heads, {})


def _convert(
    tensors: Mapping[str, npt.NDArray[np.float32]], layout: BaseLayout
) -> dict[str, npt.NDArray[np.float32]]:
    import numpy as np

    converted: dict[str, npt.NDArray[np.float32]] = {}
    embedding = tensors.get("model.embed_tokens.weight")
    for hf_name, data in tensors.items():
        if (
            hf_name == "lm_head.weight"
            and embedding is not None
            and np.array_equal(data, embedding)
        ):
            continue  # tied: llama.cpp falls back to token_embd for the output
        name = layout.gguf_name(hf_name)
        converted[name] = np.ascontiguousarray(layout.to_gguf_rows(name, data), dtype=np.float32)
    return converted


def _encode(
    data: npt.NDArray[np.float32], file_type: FileType
) -> tuple[npt.NDArray[np.generic], gguf.GGMLQuantizationType | None]:
    """1-D tensors (norms) stay F32, as llama.cpp's converter keeps them."""
    import gguf
    import numpy as np

    if data.ndim < 2 or file_type == "f32":
        return data.astype(np.float32), None
    block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]
    if file_type == "q8_0" and data.shape[-1] % block == 0:
        kind = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(data, kind), kind
    return data.astype(np.float16), None
