"""EF regression head: the shallow MLP of CoReEcho.

The layer order and indices equal the official regressor
(``BatchNorm1d → Dropout(0.4) → Linear → BatchNorm1d → GELU → Dropout(0.4) → Linear``), so the official
``regressor`` state dict (keys ``0.*``, ``2.*``, ``3.*``, ``6.*``) loads key for key.

Example:
    >>> import torch
    >>> head = RegressionHead(512).eval()
    >>> head(torch.zeros(4, 512)).shape
    torch.Size([4])
    >>> round(float(head(torch.zeros(1, 512))[0]), 1)
    55.6
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RegressionHead", "EF_BIAS"]

#: Bias of the last layer at initialisation: about the mean EF of EchoNet-Dynamic.
EF_BIAS = 55.6


class RegressionHead(nn.Sequential):
    """Shallow MLP mapping an embedding to one value (EF) or to ``out_dim`` outputs.

    Args:
        in_dim: embedding size (512 for UniFormer-S).
        out_dim: number of outputs; with 1 the forward returns shape ``[B]``, else ``[B, out_dim]``.
        hidden_dim: width of the hidden layer (official: equal to ``in_dim``).
        dropout: dropout rate of both dropout layers (official: 0.4).
        bias_init: initial bias of the last layer for a 1-output head (official: 55.6).
    """

    def __init__(self, in_dim: int = 512, out_dim: int = 1, hidden_dim: int | None = None,
                 dropout: float = 0.4, bias_init: float | None = EF_BIAS):
        hidden = in_dim if hidden_dim is None else hidden_dim
        super().__init__(
            nn.BatchNorm1d(in_dim),
            nn.Dropout(dropout),
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, out_dim),
        )
        self.in_dim, self.out_dim, self.hidden_dim, self.dropout = in_dim, out_dim, hidden, dropout
        if bias_init is not None and out_dim == 1:
            with torch.no_grad():
                self[-1].bias.fill_(bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = super().forward(x)
        return out.squeeze(-1) if self.out_dim == 1 else out

    def reset(self, out_dim: int, bias_init: float | None = None) -> None:
        """Replace the last layer with a fresh ``Linear(hidden, out_dim)`` (for fine-tuning)."""
        old = self[-1]
        new = nn.Linear(self.hidden_dim, out_dim).to(device=old.weight.device, dtype=old.weight.dtype)
        if bias_init is not None:
            with torch.no_grad():
                new.bias.fill_(bias_init)
        self[-1] = new
        self.out_dim = out_dim
