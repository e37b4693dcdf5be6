"""A character-level causal language model built from the shared transformer blocks.

:class:`CausalLM` is the synthetic study's pre-LayerNorm GPT (:class:`conjugate.blocks.Block`: fused QKV,
``scaled_dot_product_attention``) with a token embedding in front and a language-model head behind. Its
:meth:`~CausalLM.forward` runs the blocks exactly as written; :meth:`~CausalLM.generate` adds a key/value cache
for batched greedy decoding, computed from the same block weights (a test checks both paths agree).

:class:`CharTokenizer` maps characters to ids (``0`` is padding, ``1`` begins a document, ``2`` stands for a
character it has never seen). :class:`CharLMBackend` wraps both as a :class:`conjugate.lm.backend.Backend`, so
the ICL-vs-IF study's generation and scoring code runs on it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import Block

PAD, BOS, UNK = 0, 1, 2
SPECIALS = 3


@dataclass(frozen=True)
class LMConfig:
    vocab: int
    width: int = 128
    layers: int = 3
    heads: int = 4
    max_len: int = 512
    dropout: float = 0.0
    prev_char: bool = True  # add a projection of the previous character's embedding to each input

    def to_dict(self) -> dict:
        return asdict(self)


class CharTokenizer:
    """Characters ↔ ids; ``encode`` starts every text with the document token."""

    def __init__(self, chars: Sequence[str]):
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("tokenizer characters must be distinct single characters")
        self.chars = list(chars)
        self.index = {c: i + SPECIALS for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + SPECIALS

    def encode(self, text: str, bos: bool = True) -> list[int]:
        ids = [self.index.get(c, UNK) for c in text]
        return [BOS, *ids] if bos else ids

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i - SPECIALS] if i >= SPECIALS else "" for i in ids)

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> CharTokenizer:
        """Every character of ``texts`` and of their upper- and lower-case forms, sorted."""
        chars = set()
        for t in texts:
            chars.update(t, t.upper(), t.lower())
        return cls(sorted(c for c in chars if len(c) == 1))


class CausalLM(nn.Module):
    """``forward(tokens (B, T)) -> logits (B, T, vocab)``; position ``t`` sees tokens ``0..t``."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        if cfg.width % cfg.heads:
            raise ValueError(f"width {cfg.width} is not divisible by heads {cfg.heads}")
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab, cfg.width)
        self.pos = nn.Parameter(torch.zeros(cfg.max_len, cfg.width))
        self.prev = nn.Linear(cfg.width, cfg.width, bias=False) if cfg.prev_char else None
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.dropout) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.vocab, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)
        for blk in self.blocks:  # GPT-2's scaled init of the residual projections, as in the synthetic model
            for lin in (blk.proj, blk.mlp[2]):
                nn.init.normal_(lin.weight, std=0.02 / (2 * cfg.layers) ** 0.5)

    def embed(self, tokens: torch.Tensor, positions: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        """Token + position embeddings, plus (``prev_char``) a projection of the previous token's embedding: a
        cheap bigram feature that lets one attention layer match "the character after this one" (induction),
        which a character-level copier needs and otherwise takes two layers and many steps to build."""
        e = self.tok(tokens)
        h = e + self.pos[positions]
        if self.prev is not None:
            before = self.tok(previous) if previous is not None else F.pad(e, (0, 0, 1, 0))[:, :-1]
            h = h + self.prev(before)
        return h

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        if t > self.cfg.max_len:
            raise ValueError(f"sequence of {t} tokens is longer than the model's max_len {self.cfg.max_len}")
        h = self.embed(tokens, torch.arange(t, device=tokens.device), None)
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.ln_f(h))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- cached decoding ----

    def _attend(self, blk: Block, h: torch.Tensor, cache: list[torch.Tensor] | None,
                mask: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One block on ``h`` (B, t, w) with keys/values appended to ``cache``: Block.forward's arithmetic."""
        b, t, w = h.shape
        q, k, v = blk.qkv(blk.ln1(h)).view(b, t, 3, blk.heads, w // blk.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        if mask is None:  # prefill: plain causal attention
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        h = h + blk.proj(a.transpose(1, 2).reshape(b, t, w))
        return h + blk.mlp(blk.ln2(h)), [k, v]

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, stop_ids: Sequence[int] = ()) -> list[
            list[int]]:
        """Greedy continuations (token ids) of a batch of prompts of any lengths, with a key/value cache.

        Prompts are right-padded; every new token goes to one shared cache slot, takes the position after its
        own prompt's last token, and attends only to its own prompt and continuation. A row stops at a stop id
        (kept in its output) or after ``max_new_tokens``."""
        if not prompts:
            return []
        device = self.pos.device
        lens = torch.tensor([len(p) for p in prompts], device=device)
        t0 = int(lens.max())
        if t0 + max_new_tokens > self.cfg.max_len:
            raise ValueError(f"a prompt of {t0} tokens plus {max_new_tokens} new ones exceeds max_len "
                             f"{self.cfg.max_len}")
        tokens = torch.full((len(prompts), t0), PAD, dtype=torch.long, device=device)
        for i, p in enumerate(prompts):
            tokens[i, :len(p)] = torch.as_tensor(list(p), dtype=torch.long)
        h = self.embed(tokens, torch.arange(t0, device=device), None)
        caches = []
        for blk in self.blocks:
            h, kv = self._attend(blk, h, None, None)
            caches.append(kv)
        rows = torch.arange(len(prompts), device=device)
        last = self.head(self.ln_f(h[rows, lens - 1]))
        valid = torch.arange(t0, device=device)[None, :] < lens[:, None]  # (B, t0): real prompt tokens
        out = torch.empty(len(prompts), 0, dtype=torch.long, device=device)
        done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
        stops = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
        before = tokens[rows, lens - 1]  # the token before each row's next one
        for step in range(max_new_tokens):
            nxt = last.argmax(-1)
            out = torch.cat([out, nxt[:, None]], dim=1)
            done |= torch.isin(nxt, stops)
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            valid = torch.cat([valid, torch.ones(len(prompts), 1, dtype=torch.bool, device=device)], dim=1)
            h = self.embed(nxt[:, None], (lens + step)[:, None], before[:, None])
            before = nxt
            mask = valid[:, None, None, :]
            for i, blk in enumerate(self.blocks):
                h, caches[i] = self._attend(blk, h, caches[i], mask)
            last = self.head(self.ln_f(h[:, 0]))
        result = []
        for row in out.tolist():
            cut = next((j + 1 for j, tok in enumerate(row) if tok in set(stop_ids)), len(row))
            result.append(row[:cut])
        return result


# ---- checkpoints ---------------------------------------------------------------------------------------

def load_lm(path: str | Path, device: torch.device | str = "cpu") -> tuple[CausalLM, CharTokenizer, dict]:
    """Load a checkpoint written by :func:`conjugate.training.finish_stage` for a :class:`CausalLM`
    (safetensors only: no pickle); its tokenizer travels in the header's ``meta``."""
    from ..training import load_checkpoint

    def build(cfg: dict, meta: dict) -> CausalLM:
        CharTokenizer(meta["chars"])  # a checkpoint without its tokenizer is not a minilm checkpoint
        return CausalLM(LMConfig(**cfg))

    model, meta = load_checkpoint(path, "minilm", build)
    return model.to(device).eval(), CharTokenizer(meta["chars"]), meta


# ---- the Backend interface -----------------------------------------------------------------------------

class CharLMBackend:
    """A :class:`~conjugate.lm.backend.Backend` over a :class:`CausalLM` and its tokenizer (greedy decoding)."""

    def __init__(self, model: CausalLM, tokenizer: CharTokenizer, name: str = "minilm", batch_size: int = 64):
        self.model, self.tokenizer, self.name, self.batch_size = model.eval(), tokenizer, name, batch_size

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ("\n",)) -> list[str]:
        """Greedy continuations, cut before the first stop string; batched by length (longest first)."""
        single = [s for s in stop if len(s) == 1 and s in self.tokenizer.index]
        stop_ids = [self.tokenizer.index[s] for s in single]
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        outs: list[str] = [""] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            part = order[start:start + self.batch_size]
            ids = self.model.generate([self.tokenizer.encode(prompts[i]) for i in part], max_new_tokens, stop_ids)
            for i, row in zip(part, ids, strict=True):
                text = self.tokenizer.decode(row)
                for s in stop:
                    text = text.split(s, 1)[0] if s else text
                outs[i] = text
        return outs

    @torch.no_grad()
    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """``log p(continuation | context)`` summed over the continuation's characters."""
        out = []
        for start in range(0, len(pairs), self.batch_size):
            part = pairs[start:start + self.batch_size]
            seqs = [self.tokenizer.encode(c + x) for c, x in part]
            t = max(len(s) for s in seqs)
            tokens = torch.full((len(seqs), t), PAD, dtype=torch.long, device=self.model.pos.device)
            for i, s in enumerate(seqs):
                tokens[i, :len(s)] = torch.as_tensor(s)
            logp = torch.log_softmax(self.model(tokens[:, :-1]).float(), -1)
            for i, (c, x) in enumerate(part):
                lo, hi = len(c), len(c) + len(x)  # targets at positions lo..hi-1 predict tokens lo+1..hi
                tgt = tokens[i, lo + 1:hi + 1]
                out.append(float(logp[i, lo:hi].gather(-1, tgt[:, None]).sum()))
        return out

    def choices(self, context: str, options: Sequence[str]) -> list[float]:
        """``log p(option | context)`` per option (the pairs, batched)."""
        return self.loglikelihood([(context, o) for o in options])
