"""UniFormer video encoder with the official parameter names.

UniFormer (Li et al., ICLR 2022) stacks two convolutional stages (local relation aggregation with a
depth-wise 5×5×5 convolution) and two self-attention stages (global relation aggregation). This module
rebuilds the video variant so that its ``state_dict`` keys and shapes equal those of the official
checkpoints (``patch_embed1.proj.weight``, ``blocks3.0.attn.qkv.weight``, ``norm.running_var``...), which
lets the Kinetics-400 and CoReEcho weights load key for key.

Differences from the official module are deliberate and numerically neutral: attention goes through
:func:`torch.nn.functional.scaled_dot_product_attention`, activations keep the channels-last-3d strides that the
token permutes produce (no contiguity copies except where a torch CPU BatchNorm bug needs them, see :func:`_bn_safe`),
1×1×1 convolutions run as one matrix product on those activations, bf16 inference on a CPU fuses each MLP's first
layer with its GELU (:mod:`coreecho.models.fused`), gradient checkpointing is optional, and the classification head
is absent unless ``num_classes > 0`` (CoReEcho uses the pooled 512-d embedding).

Example:
    >>> import torch
    >>> from coreecho.models.uniformer import uniformer_small
    >>> enc = uniformer_small().eval()
    >>> enc(torch.zeros(1, 3, 8, 64, 64)).shape
    torch.Size([1, 512])
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from coreecho.models.fused import linear_gelu

__all__ = ["UniFormer", "uniformer_small", "uniformer_base", "UNIFORMER_SIZES", "build_uniformer"]

#: Architecture arguments of the published sizes (depths, widths, head_dim = 64 everywhere).
UNIFORMER_SIZES: dict[str, dict[str, Any]] = {
    "uniformer_small": {"depth": (3, 4, 8, 3), "embed_dim": (64, 128, 320, 512)},
    "uniformer_base": {"depth": (5, 8, 20, 7), "embed_dim": (64, 128, 320, 512)},
}


#: Copy every stage output to contiguous memory, as versions before 0.2 did; only for benchmarks
#: (``benchmarks/bench_forward.py`` measures the old behaviour against the new one). See :func:`always_contiguous`.
_ALWAYS_CONTIGUOUS = False


def _bn_safe(x: torch.Tensor) -> torch.Tensor:
    """``x`` as is (channels-last-3d strides), or a contiguous copy where torch's CPU BatchNorm backward needs one.

    torch 2.14's CPU BatchNorm backward gives a wrong input gradient for a batch of one whose activations have
    channels-last strides (``tests/test_uniformer.py::test_single_clip_gradients_match_batched_gradients``, seen
    in eval mode: Grad-CAM, input gradients). So the copy is made only when autograd will go back through the
    BatchNorms (``x.requires_grad``: grad mode on and a parameter or the input requires grad), on a CPU, at batch
    one. Inference (``no_grad``/``inference_mode``), batched training and CUDA keep the copy-free strides, which
    the oneDNN convolutions prefer anyway. Values are identical either way.
    """
    if _ALWAYS_CONTIGUOUS or (x.requires_grad and x.shape[0] == 1 and x.device.type == "cpu"):
        return x.contiguous()
    return x


def _tokens(x: torch.Tensor) -> torch.Tensor | None:
    """``x`` as contiguous channels-last tokens ``(B, T, H, W, C)`` (a view), or ``None`` for other layouts and
    under :func:`always_contiguous`."""
    if _ALWAYS_CONTIGUOUS or not x.is_contiguous(memory_format=torch.channels_last_3d) or x.is_contiguous():
        return None
    return x.permute(0, 2, 3, 4, 1)


def _pointwise(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A 1×1×1 convolution as one matrix product over channels-last activations (same weights, same values).

    Activations between stages have channels-last-3d strides, so ``x.permute(0, 2, 3, 4, 1)`` is contiguous
    and the convolution is a single ``addmm`` with the bias fused. torch's CPU convolution instead sends 1×1×1
    kernels at small batch and one thread to its im2col path, which copies the input and broadcasts the bias
    (about 10 % of a UniFormer-S forward). Falls back to ``conv(x)`` for other layouts and when
    :func:`_bn_safe` would copy.
    """
    tokens = _tokens(x)
    if tokens is None:
        return conv(x)
    w = conv.weight.reshape(conv.out_channels, conv.in_channels)
    return F.linear(tokens, w, conv.bias).permute(0, 4, 1, 2, 3)


@contextlib.contextmanager
def always_contiguous(enable: bool = True) -> Iterator[None]:
    """Within the block, copy every stage output to contiguous memory (the pre-0.2 forward; benchmarks only).

    Example:
        >>> enc = UniFormer(depth=(1, 1, 1, 1), embed_dim=(8, 16, 32, 64), head_dim=8).eval()
        >>> with torch.no_grad(), always_contiguous():
        ...     enc(torch.zeros(1, 3, 4, 32, 32)).shape
        torch.Size([1, 64])
    """
    global _ALWAYS_CONTIGUOUS
    before, _ALWAYS_CONTIGUOUS = _ALWAYS_CONTIGUOUS, enable
    try:
        yield
    finally:
        _ALWAYS_CONTIGUOUS = before


class _ConvMlp(nn.Module):
    """Channel MLP made of 1×1×1 convolutions (used in the convolutional stages)."""

    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Conv3d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv3d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = _tokens(x)
        fused = None if tokens is None else linear_gelu(self.fc1, tokens)  # bf16 inference on a CPU, else None
        hidden = self.act(_pointwise(self.fc1, x)) if fused is None else fused.permute(0, 4, 1, 2, 3)
        return self.drop(_pointwise(self.fc2, self.drop(hidden)))


class _TokenMlp(nn.Module):
    """Token MLP made of linear layers (used in the attention stages)."""

    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = linear_gelu(self.fc1, x)  # bf16 inference on a CPU, else None
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)) if hidden is None else hidden)))


class _DropPath(nn.Module):
    """Stochastic depth on the residual branch (identity at rate 0 or in eval mode)."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class ConvBlock(nn.Module):
    """Local UniFormer block: positional depth-wise conv, local aggregation, channel MLP."""

    def __init__(self, dim: int, mlp_ratio: float, drop: float, drop_path: float):
        super().__init__()
        self.pos_embed = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm3d(dim)
        self.conv1 = nn.Conv3d(dim, dim, 1)
        self.conv2 = nn.Conv3d(dim, dim, 1)
        self.attn = nn.Conv3d(dim, dim, 5, padding=2, groups=dim)
        self.drop_path = _DropPath(drop_path)
        self.norm2 = nn.BatchNorm3d(dim)
        self.mlp = _ConvMlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.drop_path(_pointwise(self.conv2, self.attn(_pointwise(self.conv1, self.norm1(x)))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class _Attention(nn.Module):
    """Global multi-head self-attention over (t, h, w) tokens."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, attn_drop: float, proj_drop: float):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class AttentionBlock(nn.Module):
    """Global UniFormer block: positional depth-wise conv, MHSA and MLP on tokens."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop: float,
                 attn_drop: float, drop_path: float):
        super().__init__()
        self.pos_embed = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = _DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _TokenMlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        b, c, t, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + self.drop_path(self.attn(self.norm1(tokens)))
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        return _bn_safe(tokens.transpose(1, 2).reshape(b, c, t, h, w))  # channels-last strides, no copy


class PatchEmbed(nn.Module):
    """Strided Conv3d followed by a LayerNorm over channels (eps 1e-5)."""

    def __init__(self, in_chans: int, dim: int, kernel: Sequence[int], stride: Sequence[int],
                 padding: Sequence[int] = (0, 0, 0)):
        super().__init__()
        self.proj = nn.Conv3d(in_chans, dim, tuple(kernel), stride=tuple(stride), padding=tuple(padding))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return _bn_safe(self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3))


class UniFormer(nn.Module):
    """UniFormer video encoder returning the pooled embedding.

    Args:
        depth: blocks per stage (4 stages).
        embed_dim: channels per stage; the embedding has ``embed_dim[-1]`` dimensions.
        head_dim: channels per attention head in stages 3 and 4.
        mlp_ratio: hidden width of the MLPs relative to the stage width.
        qkv_bias: bias in the attention's qkv projection.
        drop_rate: dropout after the stem and in MLPs/attention projections (official: 0.1).
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        in_chans: input channels.
        num_classes: size of an optional linear head (``0``: none, :meth:`forward` returns the embedding).
        grad_checkpointing: recompute block activations in backward to save memory.

    Example:
        >>> enc = UniFormer(depth=(1, 1, 1, 1), embed_dim=(16, 32, 64, 128), head_dim=16)
        >>> enc(torch.zeros(2, 3, 4, 32, 32)).shape
        torch.Size([2, 128])
    """

    def __init__(self, depth: Sequence[int] = (3, 4, 8, 3), embed_dim: Sequence[int] = (64, 128, 320, 512),
                 head_dim: int = 64, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.1,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0, in_chans: int = 3,
                 num_classes: int = 0, grad_checkpointing: bool = False):
        super().__init__()
        if len(depth) != 4 or len(embed_dim) != 4:
            raise ValueError(f"depth and embed_dim need 4 entries, got {list(depth)} and {list(embed_dim)}")
        self.depth = tuple(int(d) for d in depth)
        self.embed_dim = tuple(int(d) for d in embed_dim)
        self.num_features = self.embed_dim[-1]
        self.grad_checkpointing = grad_checkpointing
        self.patch_embed1 = PatchEmbed(in_chans, self.embed_dim[0], (3, 4, 4), (2, 4, 4), (1, 0, 0))
        for s in range(1, 4):
            setattr(self, f"patch_embed{s + 1}",
                    PatchEmbed(self.embed_dim[s - 1], self.embed_dim[s], (1, 2, 2), (1, 2, 2)))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(self.depth)).tolist()
        offset = 0
        for s in range(4):
            dim, blocks = self.embed_dim[s], []
            for k in range(self.depth[s]):
                rate = rates[offset + k]
                if s < 2:
                    blocks.append(ConvBlock(dim, mlp_ratio, drop_rate, rate))
                else:
                    blocks.append(AttentionBlock(dim, dim // head_dim, mlp_ratio, qkv_bias, drop_rate,
                                                 attn_drop_rate, rate))
            offset += self.depth[s]
            setattr(self, f"blocks{s + 1}", nn.ModuleList(blocks))
        self.norm = nn.BatchNorm3d(self.num_features)
        self.head: nn.Module = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Turn activation checkpointing of every block on or off (timm's convention)."""
        self.grad_checkpointing = enable

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the optional linear head (``0`` removes it)."""
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after the final BatchNorm: ``(B, C, T', H', W')`` (e.g. ``(B, 512, 18, 3, 3)``)."""
        if x.ndim != 5:
            raise ValueError(f"expected a clip batch (B, C, T, H, W), got shape {tuple(x.shape)}")
        for s in range(1, 5):
            x = getattr(self, f"patch_embed{s}")(x)
            if s == 1:
                x = self.pos_drop(x)
            for blk in getattr(self, f"blocks{s}"):
                if self.grad_checkpointing and torch.is_grad_enabled():
                    x = checkpoint(blk, x, use_reentrant=False)
                else:
                    x = blk(x)
        return self.norm(x)

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Mean-pool a feature map over T·H·W, then apply the optional head."""
        pooled = feats.flatten(2).mean(-1)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding ``(B, num_features)`` (or head outputs when ``num_classes > 0``)."""
        return self.forward_head(self.forward_features(x))


def build_uniformer(arch: str, **kwargs: Any) -> UniFormer:
    """Build a UniFormer by size name (``uniformer_small``, ``uniformer_base``) or ``uniformer_custom``.

    ``uniformer_custom`` needs ``depth`` and ``embed_dim`` in ``kwargs``; for the named sizes they default
    to the published values and may still be overridden. Models are built from configs by
    :func:`coreecho.models.build.build_model`, which validates the arguments first.

    Raises:
        ConfigError: an unknown size name (the message lists the valid ones).
    """
    if arch == "uniformer_custom":
        return UniFormer(**kwargs)
    if arch not in UNIFORMER_SIZES:
        from coreecho.errors import ConfigError  # noqa: PLC0415

        raise ConfigError(f"unknown UniFormer size {arch!r}; choose one of {sorted(UNIFORMER_SIZES)} "
                          "or 'uniformer_custom'")
    return UniFormer(**{**UNIFORMER_SIZES[arch], **kwargs})


def _timm_entry(arch: str):
    def create(pretrained: bool = False, **kwargs: Any) -> UniFormer:
        if pretrained:
            raise ValueError("timm cannot fetch UniFormer weights; use coreecho.load_model(...) or "
                             "coreecho.hub.load_encoder_weights(...)")
        kwargs.pop("pretrained_cfg", None)
        kwargs.pop("pretrained_cfg_overlay", None)
        kwargs.pop("cache_dir", None)
        return build_uniformer(arch, **kwargs)

    create.__name__ = arch
    create.__qualname__ = arch
    create.__module__ = __name__
    create.__doc__ = f"UniFormer video encoder, size {arch} (official parameter names)."
    return create


def uniformer_small(**kwargs: Any) -> UniFormer:
    """UniFormer-S video encoder (depths 3/4/8/3, widths 64/128/320/512): CoReEcho's encoder."""
    return build_uniformer("uniformer_small", **kwargs)


def uniformer_base(**kwargs: Any) -> UniFormer:
    """UniFormer-B video encoder (depths 5/8/20/7, widths 64/128/320/512)."""
    return build_uniformer("uniformer_base", **kwargs)


def register_with_timm() -> None:
    """Register ``uniformer_small`` and ``uniformer_base`` with timm (idempotent).

    ``import coreecho`` arranges for this to run as soon as timm is imported, so that
    ``timm.create_model("uniformer_small")`` builds this encoder (weights come from
    :func:`coreecho.load_model` or :func:`coreecho.hub.load_encoder_weights`, never from timm).
    """
    from timm.models import is_model, register_model

    for arch in UNIFORMER_SIZES:
        if not is_model(arch):
            register_model(_timm_entry(arch))
