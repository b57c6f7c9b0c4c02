"""A top-k sparse autoencoder (SAE) on the classifier's feature-map tokens.

Every spatial position of DenseNet169's final feature map (after its ReLU, the input of the
linear head) is a token of ``d_in`` = 1664 numbers. The SAE (Makhzani & Frey 2013; Gao et
al. 2024, "Scaling and evaluating sparse autoencoders") writes each token as a sparse,
non-negative combination of ``n_features`` learned directions:

    z = TopK(ReLU((x / scale - b_dec) @ W_enc + b_enc))     (exactly k non-zero at most)
    x_hat = scale * (z @ W_dec + b_dec)

with unit-norm decoder rows. ``scale`` makes the mean squared token norm ``d_in`` so one
learning rate fits every model. Dead features are revived with Gao et al.'s auxiliary loss
(the top ``aux_k`` dead features reconstruct the residual). Pure torch; no DICOM, no files
except ``save_sae``/``load_sae`` (torch.save of plain tensors, loaded with weights_only).
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from vocabulary.errors import InputError, ModelError

SAE_FORMAT = "brainxai-sae/1"


@dataclass(frozen=True)
class SAEConfig:
    """Size and training budget of the SAE."""

    n_features: int = 2048
    k: int = 32
    lr: float = 1e-3
    batch_size: int = 2048
    epochs: int = 6
    aux_k: int = 256
    aux_coef: float = 1.0 / 32
    dead_after_tokens: int = 200_000  # a feature silent for this many tokens counts as dead
    seed: int = 0
    max_seconds: float = 0.0  # 0 = no time limit


@dataclass(frozen=True)
class SAEMetrics:
    """Reconstruction and sparsity figures of an SAE on a token set."""

    n_tokens: int
    fvu: float  # fraction of variance unexplained: sum|x - x_hat|^2 / sum|x - mean|^2
    normalised_mse: float  # sum|x - x_hat|^2 / sum|x|^2
    l0: float  # mean number of active features per token
    dead_fraction: float  # features never active on these tokens
    n_dead: int

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class SAEInfo:
    """What the SAE was trained on (stored with the weights)."""

    model_name: str
    model_version: str
    layer: str = "class_layers.relu"
    grid: tuple[int, int] = (6, 6)
    extra: dict[str, Any] = field(default_factory=dict)


class TopKSAE(nn.Module):
    """The top-k SAE; ``encode`` gives sparse codes, ``decode`` the reconstruction."""

    scale: torch.Tensor  # a buffer (saved with the weights)

    def __init__(self, d_in: int, n_features: int, k: int, scale: float = 1.0) -> None:
        super().__init__()
        if not 0 < k <= n_features:
            raise InputError(f"k must be in 1..{n_features}, got {k}")
        self.k = k
        w = torch.randn(n_features, d_in)
        w /= w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w)
        self.W_enc = nn.Parameter(w.t().clone())
        self.b_enc = nn.Parameter(torch.zeros(n_features))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("scale", torch.tensor(float(scale)))

    @property
    def n_features(self) -> int:
        return int(self.W_dec.shape[0])

    @property
    def d_in(self) -> int:
        return int(self.W_dec.shape[1])

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x / self.scale - self.b_dec) @ self.W_enc + self.b_enc)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (N, n_features): the k largest ReLU pre-activations, zero elsewhere."""
        pre = self.pre_activation(x)
        top = torch.topk(pre, self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, top.values)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.W_dec + self.b_dec) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def directions(self) -> torch.Tensor:
        """Decoder directions in feature-map units (n_features, d_in): scale * W_dec."""
        return self.W_dec.detach() * self.scale

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))


def token_scale(tokens: NDArray[Any]) -> float:
    """Scalar making the mean squared token norm equal to the token dimension."""
    x = np.asarray(tokens[: min(len(tokens), 50_000)], dtype=np.float32)
    msq = float((x.astype(np.float64) ** 2).sum(axis=1).mean())
    return math.sqrt(msq / x.shape[1]) if msq > 0 else 1.0


def _batches(n: int, size: int, rng: np.random.Generator) -> list[NDArray[np.int64]]:
    order = rng.permutation(n)
    return [np.sort(order[s : s + size]) for s in range(0, n, size)]


def _aux_loss(
    sae: TopKSAE, x: torch.Tensor, x_hat: torch.Tensor, pre: torch.Tensor, dead: torch.Tensor,
    aux_k: int,
) -> torch.Tensor:  # fmt: skip
    """Gao et al.'s AuxK: the top ``aux_k`` dead latents reconstruct the residual."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return x.new_zeros(())
    k = min(aux_k, n_dead)
    masked = torch.where(dead[None, :], pre, torch.zeros_like(pre))
    top = torch.topk(masked, k, dim=-1)
    z = torch.zeros_like(pre).scatter_(-1, top.indices, top.values)
    residual = (x - x_hat.detach()) / sae.scale
    recon = z @ sae.W_dec
    denom = (residual - residual.mean(0)).pow(2).sum().clamp_min(1e-8)
    return (recon - residual).pow(2).sum() / denom


def train_sae(
    tokens: NDArray[Any],
    config: SAEConfig | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[TopKSAE, list[dict[str, float]]]:
    """Train a top-k SAE on ``tokens`` (N, d_in), float16 or float32 (batches cast to
    float32). Returns the SAE and one history row per epoch (loss, FVU, dead fraction).
    ``progress(step, steps, loss)`` is called after each batch."""
    cfg = config or SAEConfig()
    if tokens.ndim != 2 or len(tokens) < cfg.k:
        raise InputError(f"expected tokens (N, d) with N >= k, got {tokens.shape}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    sae = TopKSAE(tokens.shape[1], cfg.n_features, cfg.k, token_scale(tokens))
    with torch.no_grad():  # b_dec starts at the mean token (Gao et al. use the median)
        sample = torch.from_numpy(np.asarray(tokens[:50_000], dtype=np.float32))
        sae.b_dec.copy_(sample.mean(0) / sae.scale)
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=6.25e-10)
    since_fired = torch.zeros(cfg.n_features, dtype=torch.int64)
    steps = cfg.epochs * math.ceil(len(tokens) / cfg.batch_size)
    step, history, start = 0, [], time.monotonic()
    for epoch in range(cfg.epochs):
        total_err = total_var = 0.0
        for idx in _batches(len(tokens), cfg.batch_size, rng):
            x = torch.from_numpy(np.asarray(tokens[idx], dtype=np.float32))
            pre = sae.pre_activation(x)
            top = torch.topk(pre, cfg.k, dim=-1)
            z = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
            x_hat = sae.decode(z)
            err = (x_hat - x).pow(2).sum()
            var = (x - x.mean(0)).pow(2).sum().clamp_min(1e-8)
            fired = (z > 0).any(0)
            since_fired = torch.where(fired, 0, since_fired + len(idx))
            dead = since_fired >= cfg.dead_after_tokens
            loss = err / var + cfg.aux_coef * _aux_loss(sae, x, x_hat, pre, dead, cfg.aux_k)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sae.normalise_decoder()
            total_err += err.item()
            total_var += var.item()
            step += 1
            if progress is not None:
                progress(step, steps, loss.item())
            if cfg.max_seconds and time.monotonic() - start > cfg.max_seconds:
                break
        history.append({
            "epoch": float(epoch + 1),
            "train_fvu": total_err / max(total_var, 1e-8),
            "dead_fraction": float(dead.float().mean()),
            "seconds": time.monotonic() - start,
        })  # fmt: skip
        if cfg.max_seconds and time.monotonic() - start > cfg.max_seconds:
            break
    return sae.eval(), history


@torch.no_grad()
def encode_tokens(sae: TopKSAE, tokens: NDArray[Any], batch_size: int = 4096) -> torch.Tensor:
    """Codes (N, n_features) float32 of ``tokens`` (N, d_in), in batches."""
    parts = [
        sae.encode(torch.from_numpy(np.asarray(tokens[s : s + batch_size], dtype=np.float32)))
        for s in range(0, len(tokens), batch_size)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, sae.n_features)


@torch.no_grad()
def sae_metrics(sae: TopKSAE, tokens: NDArray[Any], batch_size: int = 4096) -> SAEMetrics:
    """FVU, normalised MSE, L0 and never-active features of ``sae`` on ``tokens``."""
    if len(tokens) == 0:
        raise InputError("no tokens to measure the SAE on")
    err = sq = 0.0
    s1 = torch.zeros(sae.d_in, dtype=torch.float64)
    active = torch.zeros(sae.n_features, dtype=torch.bool)
    nnz = 0
    for s in range(0, len(tokens), batch_size):
        x = torch.from_numpy(np.asarray(tokens[s : s + batch_size], dtype=np.float32))
        z = sae.encode(x)
        x_hat = sae.decode(z)
        err += float((x_hat - x).double().pow(2).sum())
        sq += float(x.double().pow(2).sum())
        s1 += x.double().sum(0)
        active |= (z > 0).any(0)
        nnz += int((z > 0).sum())
    n = len(tokens)
    var = sq - float((s1 * s1).sum()) / n
    n_dead = int((~active).sum())
    return SAEMetrics(
        n_tokens=n,
        fvu=err / var if var > 0 else float("nan"),
        normalised_mse=err / sq if sq > 0 else float("nan"),
        l0=nnz / n,
        dead_fraction=n_dead / sae.n_features,
        n_dead=n_dead,
    )


def dead_features(codes: NDArray[Any] | torch.Tensor) -> NDArray[np.int64]:
    """Indices of features never active (> 0) in ``codes`` (N, n_features)."""
    z = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes)
    return np.flatnonzero(~(z > 0).any(0).numpy()).astype(np.int64)


def save_sae(path: Path, sae: TopKSAE, info: SAEInfo) -> None:
    """Write the SAE (float16 weights) and what it was trained on to ``path``."""
    payload = {
        "format": SAE_FORMAT,
        "state_dict": {k: v.detach().to(torch.float16) for k, v in sae.state_dict().items()},
        "k": sae.k,
        "info": {
            "model_name": info.model_name,
            "model_version": info.model_version,
            "layer": info.layer,
            "grid": list(info.grid),
            "extra": dict(info.extra),
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_sae(path: Path | str) -> tuple[TopKSAE, SAEInfo]:
    """Read an SAE file; ModelError when it is missing or not an SAE."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(
            f"no sparse autoencoder at {p}: train one with `brainxai sae-train` "
            "(or point BRAINXAI_SAE at its file)"
        )
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise ModelError(f"cannot read SAE file {p}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != SAE_FORMAT:
        raise ModelError(f"{p} is not a brainxai sparse autoencoder")
    state = {k: v.float() for k, v in payload["state_dict"].items()}
    n, d = state["W_dec"].shape
    sae = TopKSAE(int(d), int(n), int(payload["k"]))
    sae.load_state_dict(state)
    i = payload["info"]
    info = SAEInfo(
        model_name=str(i["model_name"]),
        model_version=str(i["model_version"]),
        layer=str(i["layer"]),
        grid=(int(i["grid"][0]), int(i["grid"][1])),
        extra=dict(i.get("extra", {})),
    )
    return sae.eval(), info
