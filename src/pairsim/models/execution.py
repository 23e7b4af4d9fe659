"""How a model runs: numeric precision, memory layout, compiled graphs. Settings of speed, not of the model.

Each setting is ``"auto"`` or an explicit value; :func:`resolve_execution` turns them into an
:class:`Execution` for one device and one phase (training or inference), from a probe of the CPU
that tests can replace. What ``auto`` picks was measured on the 2-core AVX512-BF16 machines this
project runs on (``benchmarks/results/bench_speed.md``), EfficientNet-Lite0 at 64 px:

- channels-last (NHWC): oneDNN's convolutions run ~1.8x faster in training and ~1.6x in fp32
  inference than in NCHW, so ``auto`` is on for every device (NHWC is also what tensor cores want).
- bf16: on a CPU with AVX512-BF16 but no AMX, inference under bf16 autocast is ~3x faster than fp32
  (both NHWC), but training is slower: the backward of the depthwise convolutions in bf16 took 2.5x
  their fp32 time. So ``auto`` is bf16 for inference on AVX512-BF16 or AMX CPUs, for training only
  on AMX CPUs, and for both on GPUs that support bf16; fp32 elsewhere.
- ``torch.compile`` (inductor) took ~50-110 s to compile the training step and ran it slower than eager
  NHWC on the CPU (2.1x against 2.4x the exact path), so ``auto`` does not compile; it has not been
  measured on a GPU here, so ``auto`` does not compile there either (``compile: true`` asks for it).

``Execution()`` (fp32, NCHW, eager) is the exact path: what pairsim did before these settings existed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

Phase = Literal["train", "inference"]
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class CpuFeatures:
    """What the CPU's bf16 kernels can use.

    Attributes:
        avx512_bf16: the AVX512-BF16 instructions (bf16 dot products on vector units).
        amx: Intel AMX tiles (bf16 matrix units), which make bf16 training faster than fp32.
    """

    avx512_bf16: bool
    amx: bool


def probe_cpu() -> CpuFeatures:
    """The running CPU's :class:`CpuFeatures`, as torch's kernels see them."""
    return CpuFeatures(
        avx512_bf16=bool(torch.cpu._is_avx512_bf16_supported()),
        amx=bool(torch.cpu._is_amx_tile_supported()),
    )


@runtime_checkable
class FastLayout(Protocol):
    """A module with a faster variant on the channels-last path whose outputs equal its own (not
    bit-for-bit in the gradients, so the exact path keeps the original)."""

    def use_fast_layout(self) -> None:
        """Switch to the variant, in place, keeping the parameters."""


@dataclass(frozen=True)
class Execution:
    """Resolved settings: how to run a model's forward (and backward) pass.

    Attributes:
        precision: ``"fp32"`` or ``"bf16"`` (autocast of the model's forward pass; what follows the
            model, the loss, the optimiser state and the retrieval scores stay float32).
        channels_last: the model's weights and its 4-d inputs in NHWC.
        compile: the model wrapped in ``torch.compile`` (inductor).

    Example:
        >>> Execution().exact
        True
        >>> Execution("bf16", channels_last=True).describe()
        'bf16, channels-last, eager'
    """

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"a resolved precision is 'fp32' or 'bf16', got {self.precision!r}")

    @property
    def exact(self) -> bool:
        """Whether this is the fp32, NCHW, eager path."""
        return self == Execution()

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[None]:
        """The autocast context of the model's forward pass on ``device``."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def layout(self, x: Tensor) -> Tensor:
        """``x`` in the memory format the model expects (NHWC for 4-d inputs under channels-last)."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def place(self, module: nn.Module) -> nn.Module:
        """``module`` (in place) in the execution's layout: under channels-last its 4-d weights in NHWC, and
        each submodule that has a faster variant for it (:class:`FastLayout`) switched to that."""
        if self.channels_last:
            for sub in list(module.modules()):
                if isinstance(sub, FastLayout):
                    sub.use_fast_layout()
            # memory_format is missing from the stubs of Module.to
            module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return module

    def describe(self) -> str:
        """A short human-readable form, e.g. ``"fp32, channels-last, eager"``."""
        layout = "channels-last" if self.channels_last else "channels-first"
        return f"{self.precision}, {layout}, {'compiled' if self.compile else 'eager'}"


#: The exact path: fp32, channels-first, eager.
EXACT = Execution()


def resolve_execution(
    precision: str = "auto",
    channels_last: bool | str = "auto",
    compile: bool | str = "auto",
    *,
    device: torch.device | str = "cpu",
    phase: Phase = "train",
    cpu: CpuFeatures | None = None,
) -> Execution:
    """The :class:`Execution` of the settings on ``device`` for ``phase`` (see the module's rules).

    Args:
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"``.
        channels_last: ``"auto"``, ``True`` or ``False``.
        compile: ``"auto"``, ``True`` or ``False``.
        device: where the model runs.
        phase: ``"train"`` or ``"inference"``.
        cpu: the CPU's features (``None``: :func:`probe_cpu`); tests pass their own.

    Raises:
        ValueError: on a value that is none of the above.

    Example:
        >>> resolve_execution(device="cpu", phase="inference", cpu=CpuFeatures(avx512_bf16=True, amx=False))
        Execution(precision='bf16', channels_last=True, compile=False)
        >>> resolve_execution(device="cpu", phase="train", cpu=CpuFeatures(avx512_bf16=True, amx=False))
        Execution(precision='fp32', channels_last=True, compile=False)
    """
    check_settings(precision, channels_last, compile)
    device = torch.device(device)
    if precision == "auto":
        precision = "bf16" if _bf16_is_faster(device, phase, cpu) else "fp32"
    return Execution(
        precision=precision,
        channels_last=True if channels_last == "auto" else bool(channels_last),
        compile=False if compile == "auto" else bool(compile),
    )


def check_settings(precision: str, channels_last: bool | str, compile: bool | str) -> None:
    """Raise ``ValueError`` naming a setting whose value is not allowed."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
    for name, value in (("channels_last", channels_last), ("compile", compile)):
        if not isinstance(value, bool) and value != "auto":
            raise ValueError(f"{name} must be 'auto', true or false, got {value!r}")


def _bf16_is_faster(device: torch.device, phase: Phase, cpu: CpuFeatures | None) -> bool:
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    features = probe_cpu() if cpu is None else cpu
    return features.amx or (phase == "inference" and features.avx512_bf16)
