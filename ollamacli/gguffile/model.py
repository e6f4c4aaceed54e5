"""What a GGUF header says: metadata, tensors, and the ggml facts needed to check them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

GGUF_MAGIC = b"GGUF"

# general.file_type values (llama.cpp `llama_ftype`), as Ollama shows them.
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4",
}


# ggml tensor types: (elements per block, bytes per block), after ggml's `type_traits` and
# gguf-py's GGML_QUANT_SIZES (a test keeps them equal).
GGML_TYPES: dict[int, tuple[int, int]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 40),  # Q8_1 (as gguf-py sizes it; never a storage type)
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    16: (256, 66),  # IQ2_XXS
    17: (256, 74),  # IQ2_XS
    18: (256, 98),  # IQ3_XXS
    19: (256, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (256, 110),  # IQ3_S
    22: (256, 82),  # IQ2_S
    23: (256, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (256, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (256, 54),  # TQ1_0
    35: (256, 66),  # TQ2_0
    39: (32, 17),  # MXFP4
    40: (64, 36),  # NVFP4
    41: (128, 18),  # Q1_0
}

GGUFValue = int | float | bool | str | list["GGUFValue"]


@dataclass(frozen=True, slots=True)
class ArraySummary:
    """Stands in for an array longer than the reader was asked to keep."""

    length: int
    first: tuple[GGUFValue, ...] = ()


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor's name, shape and ggml type, and where its data is."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int = 0
    """From the start of the data section."""

    @property
    def elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def nbytes(self) -> int:
        """Bytes of data (the type must be a known one)."""
        block, size = GGML_TYPES[self.ggml_type]
        return self.elements // block * size


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    """What a GGUF header says about a model file."""

    version: int
    metadata: dict[str, GGUFValue | ArraySummary]
    tensors: tuple[TensorInfo, ...] = field(default=())
    tensor_count: int = 0
    """From the header (also known when the tensor table was not read)."""

    @property
    def architecture(self) -> str:
        """`general.architecture`, e.g. `llama`."""
        value = self.metadata.get("general.architecture", "")
        return value if isinstance(value, str) else ""

    @property
    def file_type(self) -> str:
        """The quantisation name (`Q4_K_M`), from `general.file_type`."""
        value = self.metadata.get("general.file_type")
        if isinstance(value, int) and not isinstance(value, bool):
            return FILE_TYPES.get(value, f"unknown ({value})")
        return "unknown"

    @property
    def parameter_count(self) -> int:
        """Total number of weights, summed over the tensor shapes."""
        return sum(tensor.elements for tensor in self.tensors)

    def arch_int(self, key: str) -> int | None:
        """An integer `<architecture>.<key>` value, such as `context_length`."""
        value = self.metadata.get(f"{self.architecture}.{key}")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return None

    @property
    def context_length(self) -> int | None:
        """The trained context length."""
        return self.arch_int("context_length")

    @property
    def embedding_length(self) -> int | None:
        """The hidden size."""
        return self.arch_int("embedding_length")

    @property
    def chat_template(self) -> str | None:
        """`tokenizer.chat_template` (Jinja), when the file has one."""
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def is_adapter(self) -> bool:
        """True for a LoRA adapter file (`general.type` = `adapter`)."""
        return self.metadata.get("general.type") == "adapter"


def human_number(count: int) -> str:
    """Ollama's HumanNumber: `134.52M`, `3.2B`, `7B`."""
    units: tuple[tuple[float, str, Callable[[float], str]], ...] = (
        (1e9, "B", lambda n: f"{n:.1f}"),
        (1e6, "M", lambda n: f"{n:.2f}"),
        (1e3, "K", lambda n: f"{n:.0f}"),
    )
    for scale, suffix, fmt in units:
        if count >= scale:
            number = count / scale
            text = f"{number:.0f}" if number == int(number) else fmt(number)
            return text + suffix
    return str(count)
