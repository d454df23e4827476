"""The minimal GPT: a decoder-only transformer in plain PyTorch, in the spirit of nanoGPT.

Pre-LayerNorm blocks, causal self-attention through ``scaled_dot_product_attention``, a GELU MLP and
token embeddings tied to the output head. The parameter layout is GPT-2's, so ``llmapp export`` turns
a checkpoint into a ``GPT2LMHeadModel`` by renaming (and transposing) weights, and a parity test
proves both give the same logits. ``generate()`` decodes with a KV cache.

    from llmapp.train.gpt import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128))
    out = model.generate(torch.tensor([[0]]), max_new_tokens=20, temperature=0.8, top_k=50)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmapp.core.errors import LLMAppError

# Linear weights that GPT-2's HF implementation stores as Conv1D, i.e. transposed.
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@dataclass
class GPTConfig:
    """Model shape. Defaults are GPT-2 small's; presets in ``llmapp.train.trainer`` pick small CPU sizes."""

    vocab_size: int = 50304  # GPT-2's 50257 padded to a multiple of 64 for faster matmuls
    block_size: int = 1024  # longest context; positions are learned, so it is fixed at training time
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0  # 0 for pretraining on big data; 0.1-0.2 when a small corpus overfits
    bias: bool = True  # biases in Linears and LayerNorms, as GPT-2 (and its HF export) has them


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be divisible by n_head"
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head, self.dropout = config.n_head, config.dropout

    def forward(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if cache is not None:  # decoding: prepend the keys and values of earlier positions
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        # With a cache, the one new query attends to every cached position: no mask needed.
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=cache is None)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y)), (k, v)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's gelu_new, so the HF export matches exactly
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache=None):
        a, cache = self.attn(self.ln_1(x), cache)
        x = x + a
        return x + self.mlp(self.ln_2(x)), cache


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied: fewer parameters, better small models
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by 1/sqrt(2 * n_layer)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count; position embeddings are left out by default, as nanoGPT reports it."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, caches=None, pos0: int = 0):
        """Logits for every position of ``idx`` (B, T), and the mean cross-entropy if ``targets`` is given.

        ``caches`` (one (k, v) per layer) and ``pos0`` are for incremental decoding; see :meth:`generate`.
        Returns ``(logits, loss, caches)``.
        """
        B, T = idx.size()
        if pos0 + T > self.config.block_size:
            raise ValueError(f"sequence of {pos0 + T} tokens is longer than block_size {self.config.block_size}")
        pos = torch.arange(pos0, pos0 + T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        new_caches = []
        for i, block in enumerate(self.transformer.h):
            x, c = block(x, caches[i] if caches is not None else None)
            new_caches.append(c)
        x = self.transformer.ln_f(x)
        if targets is None:
            return self.lm_head(x), None, new_caches
        logits = self.lm_head(x)  # (B, T, vocab)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss, new_caches

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, use_cache: bool = True, generator: torch.Generator | None = None):
        """Continue ``idx`` (B, T) by ``max_new_tokens`` tokens. ``temperature=0`` is greedy.

        With ``use_cache`` the keys and values of earlier positions are reused, so each step costs one
        position. Past ``block_size`` every position shifts at each step (positions are absolute), so
        both paths recompute the last ``block_size`` tokens: the outputs are identical either way.
        """
        caches = None
        for _ in range(max_new_tokens):
            T = idx.size(1)
            if use_cache and T <= self.config.block_size:
                if caches is None:  # prefill the whole prompt once
                    logits, _, caches = self(idx)
                else:  # one new position, attending to the cache
                    logits, _, caches = self(idx[:, -1:], caches=caches, pos0=T - 1)
            else:
                logits, _, _ = self(idx[:, -self.config.block_size:])
            idx = torch.cat([idx, sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)], dim=1)
        return idx

    def to_hf(self):
        """This model as a Hugging Face ``GPT2LMHeadModel`` with the same logits (``llmapp export``)."""
        from transformers import GPT2Config, GPT2LMHeadModel

        m = self.config
        if not m.bias:
            raise LLMAppError("GPT-2 export needs bias=True; retrain with --set bias=true")
        hf_config = GPT2Config(vocab_size=m.vocab_size, n_positions=m.block_size, n_embd=m.n_embd,
                               n_layer=m.n_layer, n_head=m.n_head, activation_function="gelu_new",
                               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                               tie_word_embeddings=True, bos_token_id=None, eos_token_id=None)
        hf = GPT2LMHeadModel(hf_config)
        sd = {k: (v.t() if k.endswith(_CONV1D) else v) for k, v in self.state_dict().items()}
        missing, unexpected = hf.load_state_dict(sd, strict=False)
        if unexpected or [k for k in missing if not k.endswith((".attn.bias", ".attn.masked_bias", "lm_head.weight"))]:
            raise LLMAppError(f"export mismatch: missing {missing}, unexpected {unexpected}")
        hf.tie_weights()
        return hf


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick the next token (B, 1) from last-position logits (B, vocab)."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) > top_p  # keep the smallest set whose mass reaches top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return torch.multinomial(logits.softmax(-1), num_samples=1, generator=generator)
