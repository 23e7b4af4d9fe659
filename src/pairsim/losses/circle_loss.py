"""Circle loss module, both paradigms, with the streaming fast path."""

from __future__ import annotations

from torch import Tensor

from pairsim.functional import circle_kernels
from pairsim.functional.circle import circle_decision_margin, circle_loss
from pairsim.functional.circle_streaming import circle_loss_streaming
from pairsim.functional.pairs import Pairs
from pairsim.functional.reductions import mean_over_valid
from pairsim.losses.base import PairLoss, check_margin, check_positive
from pairsim.losses.registry import register_loss
from pairsim.losses.search_space import FloatParam, SearchSpace, loss_search_space

# Pair-wise batches from this many anchor-reference pairs take the fast path's torch code. Measured on the 2-core
# CPU of this project, D = 512, forward + backward, interleaved runs (median of 200, quiet machine): the paths tie
# at B = 64 (0.69 vs 0.67 ms); below, the plain path's fewer Python-level steps win (B = 32: 0.49 vs 0.55 ms);
# above, the fast path does (B = 128: 0.97 vs 1.17 ms; B = 512: 5.4 vs 10.5 ms) and it always needs less memory.
# A batch against itself that the fused kernels of `circle_kernels` can score (CPU, float32, numba installed)
# takes the fast path at any size: faster at every size measured (B = 2: 0.30 vs 0.35 ms; B = 64: 0.45 vs
# 0.67 ms; B = 512: 3.4 vs 10.5 ms). Against proxies it is always taken.
FAST_PATH_MIN_PAIRS = 64 * 64
# On a GPU (H100, D = 512, forward + backward, benchmarks/results/bench_gpu.md) the plain path is faster for pair-wise
# batches up to B = 4096 (B = 1024: 2.9 vs 3.8 ms; B = 4096: 3.8 vs 4.7 ms, 664 vs 160 MiB) and ties at B = 16384
# (47 vs 48 ms) with 19x the memory (10.5 GiB vs 545 MiB): the fast path takes over above 4096 x 4096 pairs.
GPU_PLAIN_MAX_PAIRS = 4096 * 4096


@register_loss("circle")
class CircleLoss(PairLoss):
    """Circle loss (Sun et al., CVPR 2020, Eq. 6) with the paper's reduced hyper-parameters.

    ``O_p = 1 + m, O_n = -m, Delta_p = 1 - m, Delta_n = m`` (decision boundary Eq. 8: the
    circle ``s_n^2 + (s_p - 1)^2 = 2 m^2``) and self-paced weights detached (Eq. 9-10).
    The paper uses ``m = 0.25, gamma = 256`` for face recognition (class-level) and
    ``m = 0.4, gamma = 80`` for fine-grained retrieval (pair-wise).

    Args:
        m: relaxation margin, in ``[0, 1]``.
        gamma: scale factor, positive.
        num_classes: ``None`` for pair-wise labels; ``C`` for class-level labels with
            learnable proxies ``(C, embedding_dim)``.
        embedding_dim: ``D``, required with ``num_classes``.
        fast_path: use :func:`circle_loss_streaming` (closed-form backward, references streamed
            in blocks) instead of the plain autograd path; ``None`` decides per call: always
            against proxies and for batches the fused kernels score (see
            :mod:`pairsim.functional.circle_kernels`), else for pair-wise batches of at least
            ``FAST_PATH_MIN_PAIRS`` pairs (on a GPU: more than ``GPU_PLAIN_MAX_PAIRS``).
        block_size: references per block of the fast path; ``None`` sizes blocks to the batch
            (see :func:`circle_loss_streaming`).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> loss = CircleLoss(m=0.4, gamma=80.0)
        >>> x, y = torch.randn(8, 16, requires_grad=True), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> value = loss(x, y)
        >>> value.backward()
        >>> value.item() > 0, x.grad.shape
        (True, torch.Size([8, 16]))
    """

    def __init__(
        self,
        m: float = 0.25,
        gamma: float = 256.0,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
        fast_path: bool | None = None,
        block_size: int | None = None,
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        self.m = check_margin("m", m)
        self.gamma = check_positive("gamma", gamma)
        if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
            raise ValueError(f"block_size must be a positive integer or None, got {block_size!r}")
        self.fast_path = fast_path
        self.block_size = block_size

    @classmethod
    def search_space(cls, class_level: bool) -> SearchSpace:
        """``m`` uniform in ``[0, 0.5]``, ``gamma`` log-uniform in ``[16, 1024]``.

        Source: the paper's Section 4.5 varies ``gamma`` from 32 to 1024 and ``m`` from -0.2 to 0.3 (a
        negative ``m`` is outside this constructor); its settings 0.25 / 256 and 0.4 / 80 lie inside.
        """
        return loss_search_space(
            cls,
            class_level,
            FloatParam("loss.params.m", 0.0, 0.5),
            FloatParam("loss.params.gamma", 16.0, 1024.0, log=True),
        )

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> Tensor:
        """The loss of a batch; see :meth:`PairLoss.forward`."""
        if not self.uses_fast_path(embeddings, ref_embeddings):
            return super().forward(embeddings, labels, ref_embeddings, ref_labels)
        self.check_inputs(embeddings, labels, ref_embeddings, ref_labels)
        refs = self.proxies if self.proxies is not None else ref_embeddings
        losses, valid = circle_loss_streaming(
            embeddings,
            labels,
            refs,
            ref_labels,
            class_level=self.class_level,
            m=self.m,
            gamma=self.gamma,
            block_size=self.block_size,
        )
        return mean_over_valid(losses, valid)

    def uses_fast_path(self, embeddings: Tensor, ref_embeddings: Tensor | None = None) -> bool:
        """Whether :meth:`forward` takes the fast path for these inputs."""
        if self.fast_path is not None:
            return self.fast_path
        if self.class_level:
            return True
        if ref_embeddings is None and self.fused_kernels_apply(embeddings):
            return True
        num_refs = len(embeddings) if ref_embeddings is None else len(ref_embeddings)
        if embeddings.device.type != "cpu":
            return len(embeddings) * num_refs > GPU_PLAIN_MAX_PAIRS
        return len(embeddings) * num_refs >= FAST_PATH_MIN_PAIRS

    def fused_kernels_apply(self, embeddings: Tensor) -> bool:
        """Whether the fast path scores this batch against itself with the fused CPU kernels (one block)."""
        one_block = self.block_size is None or self.block_size >= len(embeddings)
        pairs = len(embeddings) >= 2  # an empty or one-sample batch has no pairs: plain path, loss 0
        return not self.class_level and one_block and pairs and circle_kernels.kernels_usable(embeddings)

    def decision_margin(self, s_n: Tensor, s_p: Tensor) -> Tensor:
        """Eq. 8's circle ``s_n^2 + (s_p - 1)^2 - 2 m^2``: negative inside, where the loss drives pairs."""
        return circle_decision_margin(s_n, s_p, self.m)

    def per_anchor(self, pairs: Pairs) -> Tensor:
        return circle_loss(pairs.sim, pairs.pos, pairs.neg, self.m, self.gamma)

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}, fast_path={self.fast_path}, {super().extra_repr()}"
