"""The UniFormer-S forward computed the way the research code computes it, for the baselines of the benchmarks.

coreecho's :class:`~coreecho.models.uniformer.UniFormer` gives the same values with fewer operations. This module
recomputes the same network from the same modules (same weights) in the research code's order of operations, so
that a benchmark can time an official-style pipeline without that code:

* every 1×1×1 convolution is an ``nn.Conv3d`` call on contiguous ``(B, C, T, H, W)`` activations;
* the patch embeddings flatten the tokens, apply the LayerNorm, and reshape back to a contiguous map;
* attention is written out: ``softmax(q kᵀ · scale) v``, materialising the attention matrix of every head;
* an attention block turns its tokens back into a contiguous ``(B, C, T, H, W)`` map;
* the embedding is the mean of the final BatchNorm's map over T·H·W.

Only the arithmetic order differs from coreecho's forward: outputs agree to float32 rounding (checked by
``bench_predict.py``, which prints the largest difference).
"""

from __future__ import annotations

import torch
from torch import nn

from coreecho.models.uniformer import AttentionBlock, ConvBlock, PatchEmbed, UniFormer

__all__ = ["official_forward"]


def _patch_embed(pe: PatchEmbed, x: torch.Tensor) -> torch.Tensor:
    x = pe.proj(x)
    b, c, t, h, w = x.shape
    x = pe.norm(x.flatten(2).transpose(1, 2))
    return x.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3).contiguous()


def _conv_block(blk: ConvBlock, x: torch.Tensor) -> torch.Tensor:
    x = x + blk.pos_embed(x)
    x = x + blk.conv2(blk.attn(blk.conv1(blk.norm1(x))))
    mlp = blk.mlp
    return x + mlp.fc2(mlp.act(mlp.fc1(blk.norm2(x))))


def _attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    b, n, c = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    weights = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)
    return attn.proj((weights @ v).transpose(1, 2).reshape(b, n, c))


def _attention_block(blk: AttentionBlock, x: torch.Tensor) -> torch.Tensor:
    x = x + blk.pos_embed(x)
    b, c, t, h, w = x.shape
    tokens = x.flatten(2).transpose(1, 2)
    tokens = tokens + _attention(blk.attn, blk.norm1(tokens))
    mlp = blk.mlp
    tokens = tokens + mlp.fc2(mlp.act(mlp.fc1(blk.norm2(tokens))))
    return tokens.transpose(1, 2).reshape(b, c, t, h, w)


def official_forward(encoder: UniFormer, x: torch.Tensor) -> torch.Tensor:
    """Pooled embedding ``(B, C)`` of ``encoder`` in eval mode, computed in the research code's order of operations.

    Example:
        >>> enc = UniFormer(depth=(1, 1, 1, 1), embed_dim=(8, 16, 32, 64), head_dim=8).eval()
        >>> x = torch.randn(1, 3, 4, 32, 32)
        >>> with torch.no_grad():
        ...     bool(torch.allclose(official_forward(enc, x), enc(x), atol=1e-5))
        True
    """
    for s in range(1, 5):
        x = _patch_embed(getattr(encoder, f"patch_embed{s}"), x)
        for blk in getattr(encoder, f"blocks{s}"):
            x = _conv_block(blk, x) if isinstance(blk, ConvBlock) else _attention_block(blk, x)
    return encoder.norm(x).flatten(2).mean(-1)
