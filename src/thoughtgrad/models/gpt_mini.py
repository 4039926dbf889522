# SPDX-License-Identifier: MIT
"""gpt_mini: a tiny pre-LayerNorm decoder for the toy chain-of-thought lab.

Read top to bottom: config, attention, MLP, block, model, checkpoints. Q, K, V and O are
separate ``nn.Linear`` layers (the spectra study measures each role on its own), positions
are learned, and initialisation is seeded. Parameter names follow one pattern that
``models/roles.py`` maps to ``(layer, role)``::

    blocks.{i}.attn.{q,k,v,o}.weight     blocks.{i}.mlp.{up,down}.weight

With ``n_loops > 1`` (the recurrent-depth variant) the block stack is applied
``n_loops`` times with shared weights; each pass re-injects the embedded input
(``h <- blocks(h + e)`` for passes after the first), so ``n_loops = 1`` is exactly the
ordinary stack. ``loops_grad = m`` is seed 004's truncated backprop (Bansal et al. 2022,
"End-to-end algorithm synthesis with recurrent networks"): when gradients are enabled,
the first ``r - m`` passes run under ``torch.no_grad`` and only the last ``m`` carry
gradient (their ``+ e`` re-injections included), so training memory and backward cost
grow with m instead of r; the forward values are unchanged.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from thoughtgrad.errors import UserError

CONFIG_FILE = "config.json"
KV = tuple[Tensor, Tensor]  # cached keys and values, each B H T Dh
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class GPTMiniConfig:
    """The whole model spec; defaults are the seed's d=128, h=4, L=4 (runs on a CPU)."""

    model_type: ClassVar[str] = "gpt_mini"
    """The architecture's name, as a Hugging Face config has it (one value, not a setting)."""
    vocab_size: int = 32
    block_size: int = 128
    n_layer: int = 4
    """gpt_mini depth L (blocks)"""
    n_head: int = 4
    """attention heads h (must divide d_model)"""
    d_model: int = 128
    """width d"""
    mlp_ratio: int = 4
    dropout: float = 0.0
    bias: bool = True
    n_loops: int = 1
    loops_grad: int | None = None
    """Loop passes that carry gradient (the last m); None = all (full backprop)."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise UserError(f"gpt_mini config: {name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise UserError(f"gpt_mini config: d_model={self.d_model} is not divisible by "
                            f"n_head={self.n_head}")
        if self.n_loops < 1:
            raise UserError(f"gpt_mini config: n_loops (r) must be >= 1, got {self.n_loops}")
        if self.loops_grad is not None and (isinstance(self.loops_grad, bool)
                                            or not isinstance(self.loops_grad, int)
                                            or self.loops_grad < 1):
            raise UserError(f"gpt_mini config: loops_grad must be >= 1 or None, got "
                            f"{self.loops_grad!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"gpt_mini config: dropout must be in [0, 1), got {self.dropout}")


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with separate Q, K, V, O projections."""

    def __init__(self, cfg: GPTMiniConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_head = cfg.n_head
        self.q = nn.Linear(d, d, bias=cfg.bias)
        self.k = nn.Linear(d, d, bias=cfg.bias)
        self.v = nn.Linear(d, d, bias=cfg.bias)
        self.o = nn.Linear(d, d, bias=cfg.bias)
        self.dropout = cfg.dropout

    def forward(self, x: Float[Tensor, "B T D"],
                attn_mask: Tensor | None = None) -> Float[Tensor, "B T D"]:
        B, T, D = x.shape
        H = self.n_head
        q = self.q(x).view(B, T, H, D // H).transpose(1, 2)  # B H T Dh
        k = self.k(x).view(B, T, H, D // H).transpose(1, 2)  # B H T Dh
        v = self.v(x).view(B, T, H, D // H).transpose(1, 2)  # B H T Dh
        p = self.dropout if self.training else 0.0
        if attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(B, T, D)  # B T D
        return self.o(y)

    def forward_packed(self, x: Float[Tensor, "N D"], rows: Int[Tensor, " N"], batch: int,
                       width: int) -> Float[Tensor, "N D"]:
        """Attention for the N real tokens of a right-padded ``batch`` x ``width`` batch,
        packed in ``x``: the projections run on the real tokens only; scores are taken on
        the padded layout (``rows`` are the flat indices b*T+t of the real tokens), where
        causality keeps every real token blind to the padding after it."""
        B, T = batch, width
        N, D = x.shape
        H = self.n_head

        def heads(t: Tensor) -> Tensor:
            full = t.new_zeros(B * T, D).index_copy(0, rows, t)  # B*T D
            return full.view(B, T, H, D // H).transpose(1, 2)  # B H T Dh

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # B H T Dh
        y = y.transpose(1, 2).reshape(B * T, D).index_select(0, rows)  # N D
        return self.o(y)

    def forward_cached(self, x: Float[Tensor, "B t D"], past: KV | None
                       ) -> tuple[Float[Tensor, "B t D"], KV]:
        """Incremental attention for decoding: prefill (``past`` None, causal) or one new
        token attending to the cached keys and values."""
        B, t, D = x.shape
        H = self.n_head
        q = self.q(x).view(B, t, H, D // H).transpose(1, 2)  # B H t Dh
        k = self.k(x).view(B, t, H, D // H).transpose(1, 2)  # B H t Dh
        v = self.v(x).view(B, t, H, D // H).transpose(1, 2)  # B H t Dh
        if past is not None:
            if t != 1:
                raise ValueError("cached decoding takes one new token at a time")
            k = torch.cat([past[0], k], dim=2)  # B H T Dh
            v = torch.cat([past[1], v], dim=2)  # B H T Dh
        y = F.scaled_dot_product_attention(q, k, v, is_causal=past is None)
        y = y.transpose(1, 2).reshape(B, t, D)  # B t D
        return self.o(y), (k, v)


class MLP(nn.Module):
    """Two-layer GELU MLP: ``down(gelu(up(x)))``."""

    def __init__(self, cfg: GPTMiniConfig) -> None:
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, bias=cfg.bias)
        self.down = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, bias=cfg.bias)

    def forward(self, x: Float[Tensor, "*B D"]) -> Float[Tensor, "*B D"]:
        """Per token: ``B T D`` on the padded layout, ``N D`` on packed tokens."""
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln1 x)``, then ``x + mlp(ln2 x)``."""

    def __init__(self, cfg: GPTMiniConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Float[Tensor, "B T D"],
                attn_mask: Tensor | None = None) -> Float[Tensor, "B T D"]:
        x = x + self.drop(self.attn(self.ln1(x), attn_mask))
        return x + self.drop(self.mlp(self.ln2(x)))

    def forward_packed(self, x: Float[Tensor, "N D"], rows: Int[Tensor, " N"], batch: int,
                       width: int) -> Float[Tensor, "N D"]:
        """:meth:`forward` on the packed real tokens of a right-padded batch."""
        x = x + self.drop(self.attn.forward_packed(self.ln1(x), rows, batch, width))
        return x + self.drop(self.mlp(self.ln2(x)))

    def forward_cached(self, x: Float[Tensor, "B t D"], past: KV | None
                       ) -> tuple[Float[Tensor, "B t D"], KV]:
        a, kv = self.attn.forward_cached(self.ln1(x), past)
        x = x + a
        return x + self.mlp(self.ln2(x)), kv


@dataclass
class GPTMiniOutput:
    """What :meth:`GPTMini.forward` returns, as a Hugging Face causal LM does."""

    logits: Float[Tensor, "B T V"]


class GPTMini(nn.Module):
    """Token + learned position embeddings, ``n_layer`` blocks, final LayerNorm, LM head.

    The LM head is untied from the embedding so every weight has one role.
    """

    def __init__(self, cfg: GPTMiniConfig) -> None:
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.reset_parameters(cfg.seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int) -> None:
        """Seeded GPT-2 style init: N(0, 0.02), residual projections scaled by 1/sqrt(2L)."""
        gen = torch.Generator().manual_seed(seed)
        depth = self.config.n_layer * self.config.n_loops
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif ".ln" in name or name.startswith("ln_f"):
                p.fill_(1.0)
            else:
                std = 0.02 / math.sqrt(2 * depth) if name.endswith(("o.weight", "down.weight")) \
                    else 0.02
                p.copy_(torch.randn(p.shape, generator=gen) * std)

    def forward(self, input_ids: Int[Tensor, "B T"],
                attention_mask: Int[Tensor, "B T"] | None = None, *,
                lengths: Int[Tensor, " B"] | None = None, n_loops: int | None = None,
                use_cache: bool | None = None) -> GPTMiniOutput:
        """Logits for every position (``.logits``, B T V), called as a Hugging Face causal
        LM is (``use_cache`` is accepted and ignored: :meth:`forward_cached` decodes with a
        cache). ``n_loops`` overrides the trained loop count.

        ``attention_mask`` (1 = real token) is only needed for left-padded batches;
        right padding needs none because attention is causal. ``lengths`` (real tokens
        per row of a right-padded batch) is a faster path with the same values at every
        real position: embeddings, norms, projections and MLPs run on the real tokens
        only (attention on the padded layout), and the logits of padding positions are 0.
        With gradients enabled and ``config.loops_grad = m < r``, the first ``r - m``
        passes run without autograd (truncated backprop; same values, gradient only
        through the last m passes).
        """
        idx = input_ids
        B, T = idx.shape
        if self.config.block_size < T:
            raise UserError(f"sequence of {T} tokens exceeds block_size "
                            f"{self.config.block_size}")
        r = self.config.n_loops if n_loops is None else n_loops
        if r < 1:
            raise UserError(f"n_loops (r) must be >= 1, got {r}")
        if lengths is not None and attention_mask is not None:
            raise ValueError("give attention_mask (left padding) or lengths (right), not both")
        if lengths is not None:
            positions = torch.arange(T, device=idx.device)
            rows = (positions[None] < lengths[:, None]).flatten().nonzero().squeeze(1)  # N
            e = self.drop(self.tok_emb(idx.flatten().index_select(0, rows))
                          + self.pos_emb(rows % T))  # N D

            def run(block: Block, h: Tensor) -> Tensor:
                return block.forward_packed(h, rows, B, T)
        else:
            pos = torch.arange(T, device=idx.device)
            if attention_mask is not None:
                pos = (attention_mask.cumsum(1) - 1).clamp(min=0)  # B T
            e = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # B T D
            mask = None
            if attention_mask is not None:
                causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
                mask = causal[None, None] & attention_mask.bool()[:, None, None, :]  # B 1 T T
                mask = mask | torch.eye(T, dtype=torch.bool, device=idx.device)[None, None]

            def run(block: Block, h: Tensor) -> Tensor:
                return block(h, mask)
        m = r if self.config.loops_grad is None else min(self.config.loops_grad, r)
        h = e
        for loop in range(r):
            with torch.set_grad_enabled(torch.is_grad_enabled() and loop >= r - m):
                if loop > 0:
                    h = h + e
                for block in self.blocks:
                    h = run(block, h)
        logits = self.lm_head(self.ln_f(h))  # B T V, or N V when packed
        if lengths is not None:
            V = logits.shape[-1]
            logits = logits.new_zeros(B * T, V).index_copy(0, rows, logits).view(B, T, V)
        return GPTMiniOutput(logits)

    @torch.no_grad()
    def forward_cached(self, idx: Int[Tensor, "B t"], cache: list[KV] | None, start: int, *,
                       n_loops: int | None = None) -> tuple[Float[Tensor, "B t V"], list[KV]]:
        """Decode with a key/value cache: ``idx`` holds the tokens at positions
        ``start .. start+t-1``; ``cache`` (None for the prefill) holds one entry per
        (loop, block). Gives the same logits as :meth:`forward` on the whole sequence."""
        r = self.config.n_loops if n_loops is None else n_loops
        if r < 1:
            raise UserError(f"n_loops (r) must be >= 1, got {r}")
        t = idx.shape[1]
        if start + t > self.config.block_size:
            raise UserError(f"sequence of {start + t} tokens exceeds block_size "
                            f"{self.config.block_size}")
        pos = torch.arange(start, start + t, device=idx.device)
        e = self.tok_emb(idx) + self.pos_emb(pos)  # B t D
        h, new, j = e, [], 0
        for loop in range(r):
            if loop > 0:
                h = h + e
            for block in self.blocks:
                h, kv = block.forward_cached(h, None if cache is None else cache[j])
                new.append(kv)
                j += 1
        return self.lm_head(self.ln_f(h)), new

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, context: int, *, n_loops: int | None = None) -> float:
        """Forward FLOPs per token position (2 per multiply-add), matmuls plus attention.

        ``n_loops`` is the loop count r actually run (defaults to the trained one)."""
        c = self.config
        r = c.n_loops if n_loops is None else n_loops
        matmuls = 4 * c.d_model**2 + 2 * c.mlp_ratio * c.d_model**2
        per_layer = 2 * matmuls + 4 * context * c.d_model
        return float(r * c.n_layer * per_layer + 2 * c.d_model * c.vocab_size)

    # -- checkpoints ----------------------------------------------------------------
    def save(self, directory: str | Path, *, extra: dict | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"model_type": "gpt_mini", **asdict(self.config), **(extra or {})}
        (d / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(d / WEIGHTS_FILE))
        return d

    @classmethod
    def load(cls, directory: str | Path, *, device: str | torch.device = "cpu") -> GPTMini:
        """Load a checkpoint written by :meth:`save`; one-line errors when it is broken."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        d = Path(directory)
        cfg_path, w_path = d / CONFIG_FILE, d / WEIGHTS_FILE
        if not d.is_dir():
            raise UserError(f"checkpoint {d}: no such directory")
        if not cfg_path.is_file() or not w_path.is_file():
            raise UserError(f"checkpoint {d}: missing {CONFIG_FILE} or {WEIGHTS_FILE}")
        try:
            meta = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"checkpoint {cfg_path}: corrupt JSON ({exc})") from None
        if meta.get("model_type") != "gpt_mini":
            raise UserError(f"checkpoint {cfg_path}: model_type is {meta.get('model_type')!r}, "
                            "expected 'gpt_mini'")
        known = {f.name for f in fields(GPTMiniConfig)}
        try:
            cfg = GPTMiniConfig(**{k: v for k, v in meta.items() if k in known})
            model = cls(cfg)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise UserError(f"checkpoint {cfg_path}: invalid model config "
                            f"({str(exc).splitlines()[0]})") from None
        try:
            state = load_file(str(w_path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"checkpoint {w_path}: corrupt weights ({exc})") from None
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches raise even with strict=False
            first = next((line.strip() for line in str(exc).splitlines()
                          if "size mismatch" in line), str(exc).splitlines()[0])
            raise UserError(f"checkpoint {w_path}: weights do not match {CONFIG_FILE} "
                            f"({first.rstrip('.')})") from None
        if missing or unexpected:
            raise UserError(f"checkpoint {w_path}: weights do not match the config "
                            f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
        return model.to(device).eval()


def is_checkpoint(directory: str | Path) -> bool:
    """Whether ``directory`` holds a gpt_mini checkpoint (its ``config.json`` says
    ``model_type`` gpt_mini); false for a Hugging Face model directory or a hub id."""
    p = Path(directory) / CONFIG_FILE
    try:
        return json.loads(p.read_text()).get("model_type") == "gpt_mini"
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def read_checkpoint_meta(directory: str | Path) -> dict:
    """The checkpoint's ``config.json`` (model config plus extras such as task and regime)."""
    if not Path(directory).is_dir():
        raise UserError(f"checkpoint {directory}: no such directory")
    p = Path(directory) / CONFIG_FILE
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise UserError(f"checkpoint {directory}: missing {CONFIG_FILE}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"checkpoint {p}: corrupt JSON ({exc})") from None
