"""Save the final global model with a model card; load it back and predict.

A model leaving a federated study must carry its own description: what data it was trained
on, at which hospitals, by which algorithm, how well it did at each hospital, and how much
privacy budget it spent (Mitchell et al., 2019, *Model Cards for Model Reporting*). A weights
file on its own is an unlabelled drug.

A checkpoint is ONE file written with ``torch.save`` and read with ``weights_only=True`` (so
loading it can run no code) holding

* ``format`` / ``version``: what the file is, so a wrong file is refused by name;
* ``card``: the :class:`ModelCard` as JSON, which also says how to rebuild the model
  (:func:`fedlearn.make_model` name and keyword arguments);
* ``state_dict``: the weights, and ``sha256``: a digest of them, so a modified or damaged
  file is detected instead of silently predicting nonsense.

:func:`save_checkpoint` also writes the card as Markdown beside the weights for humans.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .client import predict_proba
from .models import make_model
from .report import markdown_table

__all__ = ["FORMAT", "VERSION", "CheckpointError", "ModelCard", "Checkpoint", "save_checkpoint",
           "load_checkpoint", "state_digest"]

FORMAT = "fedlearn-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, tampered with or mismatched."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def _versions() -> dict[str, str]:
    from . import __version__
    return {"fedlearn": __version__, "torch": torch.__version__}


@dataclass
class ModelCard:
    """What a hospital receiving the model needs to know before using it.

    ``model`` and ``model_kwargs`` rebuild the architecture with :func:`fedlearn.make_model`;
    ``privacy`` is e.g. ``{"mechanism": "DP-FedAvg", "epsilon": 8.0, "delta": 1e-5}`` or
    ``{"mechanism": "none"}``; ``metrics`` maps a test set (hospital name or ``pooled``) to
    its metrics.
    """

    model: str
    model_kwargs: dict[str, Any]
    task: str
    class_names: list[str]
    data: dict[str, Any] = field(default_factory=dict)
    hospitals: list[dict[str, Any]] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    privacy: dict[str, Any] = field(default_factory=lambda: {"mechanism": "none"})
    secure_aggregation: bool = False
    threshold: float = 0.5
    intended_use: str = ""
    limitations: str = ""
    created: str = field(default_factory=_now)
    versions: dict[str, str] = field(default_factory=_versions)

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if len(self.class_names) < 2:
            raise ValueError(f"class_names needs at least two classes, got {self.class_names}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=_json_default)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"the model card is not valid JSON: {exc}") from exc
        if not isinstance(d, dict):
            raise CheckpointError("the model card must be a JSON object")
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("model", "model_kwargs", "task", "class_names") if k not in d]
        if missing:
            raise CheckpointError(f"the model card lacks required field(s) {missing}")
        return cls(**{k: v for k, v in d.items() if k in known})

    def build_model(self) -> nn.Module:
        """A fresh model of the architecture the card describes (weights not loaded)."""
        return make_model(self.model, **self.model_kwargs)

    def to_markdown(self) -> str:
        """The card for humans: one Markdown page."""
        lines = [f"# Model card: {self.task}", "",
                 f"* **Model**: `{self.model}` {json.dumps(self.model_kwargs)}",
                 f"* **Classes**: {', '.join(self.class_names)} (decision threshold "
                 f"{self.threshold:g} on P({self.class_names[-1]}))",
                 f"* **Created**: {self.created}, with "
                 + ", ".join(f"{k} {v}" for k, v in self.versions.items())]
        if self.intended_use:
            lines += ["", "## Intended use", "", self.intended_use]
        if self.data:
            lines += ["", "## Data", ""] + [f"* {k}: {v}" for k, v in self.data.items()]
        if self.hospitals:
            table = markdown_table(pd.DataFrame(self.hospitals), index=False)
            lines += ["", "## Hospitals", "", table]
        if self.training:
            lines += ["", "## Training", ""] + [f"* {k}: {v}" for k, v in self.training.items()]
        priv = ", ".join(f"{k} = {v}" for k, v in self.privacy.items())
        lines += ["", "## Privacy", "", f"* {priv}",
                  f"* secure aggregation: {'yes' if self.secure_aggregation else 'no'}"]
        if self.metrics:
            table = pd.DataFrame(self.metrics).T
            lines += ["", "## Test metrics", "", markdown_table(table)]
        if self.limitations:
            lines += ["", "## Limitations", "", self.limitations]
        return "\n".join(lines) + "\n"


def _json_default(obj: object) -> object:
    if isinstance(obj, np.integer | np.floating):
        return obj.item()
    if isinstance(obj, np.ndarray | torch.Tensor):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in a model card")


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every entry's name, dtype, shape and bytes, in sorted key order."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | Path, model: nn.Module, card: ModelCard,
                    write_card: bool = True) -> Path:
    """Write ``model``'s weights and ``card`` to ``path`` (and the card as ``.md`` beside it).

    The card must describe ``model``: it is rebuilt from the card and loaded with the weights
    *before* anything is written, so an inconsistent pair is refused at save time, not
    discovered by the hospital that later loads it.
    """
    path = Path(path)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    _load_into(card.build_model(), state, "the model passed to save_checkpoint")
    payload = {"format": FORMAT, "version": VERSION, "card": card.to_json(),
               "state_dict": state, "sha256": state_digest(state)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    if write_card:
        path.with_suffix(".md").write_text(card.to_markdown())
    return path


def _load_into(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> nn.Module:
    """``load_state_dict`` with a readable account of any mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if unexpected:
            parts.append(f"unexpected {unexpected}")
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes))
        raise CheckpointError(f"the weights do not fit {what} ({type(model).__name__}): "
                              + ", ".join(parts))
    model.load_state_dict(state)
    return model


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model in eval mode, its card and where it came from."""

    model: nn.Module
    card: ModelCard
    path: Path

    def predict(self, images: torch.Tensor) -> pd.DataFrame:
        """One row per image: P(each class) and the decision at the card's threshold."""
        p = predict_proba(self.model, images).numpy()
        names = self.card.class_names
        out = pd.DataFrame({f"P({n})": p[:, i] for i, n in enumerate(names)})
        if len(names) == 2:
            pred = (p[:, 1] >= self.card.threshold).astype(int)
        else:
            pred = p.argmax(axis=1)
        out["prediction"] = [names[i] for i in pred]
        return out


def load_checkpoint(path: str | Path, model: nn.Module | None = None) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`.

    The architecture is rebuilt from the card unless ``model`` is given, in which case the
    weights must fit it. Raises :class:`CheckpointError` naming the problem: no such file,
    not a readable torch file, not a fedlearn checkpoint, a newer format, weights that no
    longer match their digest, or weights that do not fit the model.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError,
            ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a fedlearn checkpoint (no '{FORMAT}' header); "
                              "a bare state_dict has no model card and is refused")
    version = payload.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}; this fedlearn "
                              f"reads version <= {VERSION}: upgrade fedlearn")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'state_dict' is missing or not a dict of tensors")
    if state_digest(state) != payload.get("sha256"):
        raise CheckpointError(f"{path}: the weights do not match their SHA-256 digest; the file "
                              "was modified or damaged after saving, do not use it")
    card = ModelCard.from_json(str(payload.get("card", "")))
    target = model if model is not None else card.build_model()
    what = "the model you passed" if model is not None else "the architecture in the model card"
    _load_into(target, state, what)
    target.eval()
    return Checkpoint(target, card, path)
