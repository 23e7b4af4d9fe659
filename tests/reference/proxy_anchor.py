"""Loop reference for Proxy-Anchor loss (Kim et al., CVPR 2020, Eq. 4)."""

from __future__ import annotations

import torch
from tests.reference.similarity_lists import cosine
from torch import Tensor


def proxy_anchor_reference(embeddings: Tensor, labels: Tensor, proxies: Tensor, alpha: float, delta: float) -> Tensor:
    """Eq. 4 of Kim et al., one proxy and one sample at a time.

    ``1/|P+| sum_{p in P+} log(1 + sum_{x in X_p+} e^{-alpha (s - delta)})
    + 1/|P| sum_p log(1 + sum_{x in X_p-} e^{alpha (s + delta)})``.
    """
    pos_total = torch.tensor(0.0, dtype=torch.float64)
    neg_total = torch.tensor(0.0, dtype=torch.float64)
    with_positives = 0
    for c in range(len(proxies)):
        pos_sum = torch.tensor(0.0, dtype=torch.float64)
        neg_sum = torch.tensor(0.0, dtype=torch.float64)
        has_positive = False
        for i in range(len(embeddings)):
            s = cosine(embeddings[i], proxies[c])
            if int(labels[i]) == c:
                has_positive = True
                pos_sum = pos_sum + torch.exp(-alpha * (s - delta))
            else:
                neg_sum = neg_sum + torch.exp(alpha * (s + delta))
        if has_positive:
            with_positives += 1
            pos_total = pos_total + torch.log(1 + pos_sum)
        neg_total = neg_total + torch.log(1 + neg_sum)
    return pos_total / max(with_positives, 1) + neg_total / len(proxies)
