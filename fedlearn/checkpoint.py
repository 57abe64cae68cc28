"""Save the final global model with a model card; load it back and predict.

A model leaving a federated study must carry its own description: what data it was trained
on, at which hospitals, by which algorithm, how well it did at each hospital, and how much
privacy budget it spent (Mitchell et al., 2019, *Model Cards for Model Reporting*). A weights
file on its own is an unlabelled drug.

A checkpoint is ONE file written with ``torch.save`` and read with ``weights_only=True`` (so
loading it can run no code) holding

* ``format`` / ``version``: what the file is, so a wrong file is refused by name;
* ``card``: the :class:`ModelCard` as JSON, which also says how to rebuild the model
  (:func:`fedlearn.make_model` name and keyword arguments) and the decision threshold;
* ``state_dict``: the weights;
* ``sha256``: one digest of the whole model card (canonical JSON) *and* the weights, so a
  damaged file, or an edited card (a smaller epsilon, another threshold), is refused;
* ``signature`` (optional): an Ed25519 signature of that digest by the publisher.

What a digest does and does not do: it detects *accidents* (a truncated download, a flipped
bit, a careless edit). It does not stop an *adversary*, who edits the file and recomputes the
digest in one line (:func:`digest_of`). Against that, the receiver needs something the
adversary cannot recompute: the digest published separately over a trusted channel
(``load_checkpoint(path, expected_digest=...)``), or a signature made with the publisher's
private key and checked with their public key (``load_checkpoint(path, public_key=...)``).

Every malformed file or card raises :class:`CheckpointError` naming the file and the problem.
:func:`save_checkpoint` also writes the card as Markdown beside the weights for humans.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .client import predict_proba
from .models import make_model
from .report import markdown_table
from .validation import model_num_outputs

if TYPE_CHECKING:  # cryptography is imported only by the functions that sign or verify
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = ["FORMAT", "VERSION", "CheckpointError", "ModelCard", "Checkpoint", "save_checkpoint",
           "load_checkpoint", "state_digest", "digest_of", "checkpoint_digest",
           "sign_checkpoint", "verify_checkpoint", "public_key_bytes"]

FORMAT = "fedlearn-checkpoint"
#: 2: the digest covers the model card as well as the weights (1 covered the weights only,
#: and is refused: accepting it would let an edited card pass as an "old" file).
VERSION = 2


class CheckpointError(ValueError):
    """A checkpoint or model card that cannot be used: missing, corrupt, tampered with,
    unsigned or signed by another key, or not describing the model."""


_CARD_TYPES: dict[str, type | tuple[type, ...]] = {
    "model": str, "model_kwargs": dict, "task": str, "class_names": list, "data": dict,
    "hospitals": list, "training": dict, "metrics": dict, "privacy": dict,
    "secure_aggregation": bool, "intended_use": str, "limitations": str, "created": str,
    "versions": dict}


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)


def _parse_card(text: object, source: str) -> dict[str, Any]:
    if not isinstance(text, str):
        raise CheckpointError(f"{source} must be JSON text, got {type(text).__name__}")
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(d, dict):
        raise CheckpointError(f"{source} must be a JSON object, got {type(d).__name__}")
    return d


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
        """Refuse a card that could not be shown, rebuilt or applied (:class:`CheckpointError`)."""
        if isinstance(self.class_names, tuple):
            self.class_names = list(self.class_names)
        for name, kind in _CARD_TYPES.items():
            value = getattr(self, name)
            if not isinstance(value, kind):
                raise CheckpointError(f"ModelCard.{name} must be a {_kind_name(kind)}, got "
                                      f"{type(value).__name__} {value!r}")
        t = self.threshold
        if (not isinstance(t, numbers.Real) or isinstance(t, bool)
                or not 0 < float(t) < 1):
            raise CheckpointError(f"ModelCard.threshold must be a number in (0, 1) (the "
                                  f"decision threshold on the last class's probability), "
                                  f"got {t!r}")
        names = self.class_names
        if (len(names) < 2 or not all(isinstance(n, str) and n for n in names)
                or len(set(names)) != len(names)):
            raise CheckpointError(f"ModelCard.class_names needs at least two distinct, "
                                  f"non-empty names (one per model output), got {names!r}")
        if not all(isinstance(h, dict) for h in self.hospitals):
            raise CheckpointError("ModelCard.hospitals must be a list of dicts (one row per "
                                  f"hospital), got {self.hospitals!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=_json_default)

    @classmethod
    def from_json(cls, text: str, source: str = "the model card") -> ModelCard:
        """Parse and check a card; every problem is a :class:`CheckpointError` naming ``source``."""
        return cls.from_dict(_parse_card(text, source), source)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "the model card") -> ModelCard:
        known = [f.name for f in fields(cls)]
        missing = [k for k in ("model", "model_kwargs", "task", "class_names") if k not in d]
        if missing:
            raise CheckpointError(f"{source} lacks required field(s) {missing}")
        unknown = [k for k in d if k not in known]
        if unknown:
            raise CheckpointError(f"{source} has unknown field(s) {unknown}; a model card has "
                                  f"{known} (written by a newer fedlearn? upgrade)")
        try:
            return cls(**d)
        except CheckpointError as exc:
            raise CheckpointError(f"{source}: {exc}") from exc

    def build_model(self) -> nn.Module:
        """A fresh model of the architecture the card describes (weights not loaded)."""
        try:
            return make_model(self.model, **self.model_kwargs)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(
                f"the model card's model={self.model!r} with model_kwargs="
                f"{json.dumps(self.model_kwargs)} does not build with fedlearn.make_model "
                f"({type(exc).__name__}: {exc}); fix the card's 'model' / 'model_kwargs'"
            ) from exc

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


def _canonical(card: Mapping[str, Any]) -> bytes:
    """The card as canonical JSON: sorted keys, no whitespace, UTF-8 (one byte string per card)."""
    return json.dumps(card, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default).encode("utf-8")


def digest_of(card_json: str, state: Mapping[str, torch.Tensor]) -> str:
    """The checkpoint digest: SHA-256 over the format, the canonical card and the weights.

    Anyone can compute it, which is the point of showing it: a digest stored *inside* a file
    detects damage, not an adversary, who edits the card and stores ``digest_of`` the edit.
    """
    h = hashlib.sha256()
    h.update(f"{FORMAT} v{VERSION}\n".encode())
    h.update(_canonical(_parse_card(card_json, "the model card")))  # no raw newline inside
    h.update(b"\n")
    h.update(bytes.fromhex(state_digest(state)))
    return h.hexdigest()


def _signed_message(digest: str) -> bytes:
    return f"{FORMAT} v{VERSION} sha256 {digest}".encode()


def _check_finite(state: Mapping[str, torch.Tensor], where: str) -> None:
    for k, v in state.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            bad = int((~torch.isfinite(v)).sum())
            raise CheckpointError(
                f"{where}: weight {k!r} has {bad} NaN/inf value(s); a diverged model predicts "
                "nonsense (P = nan reads as 'healthy'); retrain (lower learning rate, gradient "
                "clipping) or use an earlier checkpoint")


def _check_outputs(model: nn.Module, card: ModelCard, where: str) -> None:
    n = model_num_outputs(model)
    if n is not None and n != len(card.class_names):
        raise CheckpointError(f"{where}: the model card lists {len(card.class_names)} class "
                              f"names {card.class_names} but the model has {n} outputs; give "
                              "exactly one name per output, in output order")


def save_checkpoint(path: str | Path, model: nn.Module, card: ModelCard,
                    write_card: bool = True, *,
                    private_key: Ed25519PrivateKey | None = None) -> Path:
    """Write ``model``'s weights and ``card`` to ``path`` (and the card as ``.md`` beside it).

    The card must describe ``model``: it is rebuilt from the card and loaded with the weights
    *before* anything is written, so an inconsistent pair (another architecture, a class name
    per output missing) or NaN/inf weights are refused at save time, not discovered by the
    hospital that later loads it. With ``private_key`` (an Ed25519 key from ``cryptography``)
    the digest is signed; receivers verify with ``load_checkpoint(path, public_key=...)``.
    """
    path = Path(path)
    where = f"refusing to save {path}"
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    _check_finite(state, where)
    try:
        built = card.build_model()
    except CheckpointError as exc:
        raise CheckpointError(f"{where}: {exc}") from exc
    _load_into(built, state, "the model passed to save_checkpoint")
    _check_outputs(built, card, where)
    card_json = card.to_json()
    digest = digest_of(card_json, state)
    payload: dict[str, Any] = {"format": FORMAT, "version": VERSION, "card": card_json,
                               "state_dict": state, "sha256": digest}
    if private_key is not None:
        payload["signature"] = _sign(private_key, digest)
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
    """A loaded checkpoint: the model in eval mode, its card and where it came from.

    ``digest`` is the file's verified digest; ``signature_verified`` is True only when the
    file was loaded with the publisher's ``public_key`` and its signature checked.
    """

    model: nn.Module
    card: ModelCard
    path: Path
    digest: str = ""
    signature_verified: bool = False

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


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any], str]:
    """Open, check the structure and the digest: (payload, state, card dict, digest)."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickles; the error says it all
            warnings.simplefilter("ignore")
            payload = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # an untrusted file may fail in any way: all mean "unreadable"
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        if first.startswith("Weights only load failed"):
            first = ("it holds objects other than tensors and plain data, or is not a torch "
                     "file at all, and weights_only loading refuses to run code from it")
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): "
                              f"{type(exc).__name__}: {first}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a fedlearn checkpoint (no '{FORMAT}' header); "
                              "a bare state_dict has no model card and is refused")
    version = payload.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}; this fedlearn "
                              f"reads version {VERSION}: upgrade fedlearn")
    if version < VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version}, whose digest "
                              "covers the weights but not the model card, so an edited card "
                              "would go unnoticed; re-save the model with this fedlearn's "
                              "save_checkpoint")
    state = payload.get("state_dict")
    if (not isinstance(state, dict) or not state
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                       for k, v in state.items())):
        raise CheckpointError(f"{path}: 'state_dict' is missing or not a dict of tensors")
    card_text = payload.get("card")
    if card_text is None:
        raise CheckpointError(f"{path}: the checkpoint has no model card ('card' is missing)")
    card_dict = _parse_card(card_text, f"{path}: the model card")
    digest = digest_of(card_text, state)
    if digest != payload.get("sha256"):
        raise CheckpointError(f"{path}: the weights or the model card do not match the file's "
                              "SHA-256 digest; the file was modified or damaged after saving, "
                              "do not use it")
    return payload, state, card_dict, digest


def checkpoint_digest(path: str | Path) -> str:
    """The file's digest (hex), after checking it matches the contents.

    A publisher prints it beside the download link, over a channel an adversary cannot
    edit; a receiver passes it as ``load_checkpoint(path, expected_digest=...)``.
    """
    return _read(Path(path))[3]


def load_checkpoint(path: str | Path, model: nn.Module | None = None, *,
                    public_key: Ed25519PublicKey | bytes | None = None,
                    expected_digest: str | None = None) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`.

    The architecture is rebuilt from the card unless ``model`` is given, in which case the
    weights must fit it. Raises :class:`CheckpointError` naming the file and the problem: no
    such file, not a readable torch file, not a fedlearn checkpoint, another format version,
    a card or weights that no longer match their digest, a malformed card (missing or
    unknown fields, an unknown model, class names that do not match the outputs), NaN/inf
    weights, or weights that do not fit the model.

    The stored digest only proves the file is intact, not who wrote it. ``expected_digest``
    (published separately by the sender, see :func:`checkpoint_digest`) or ``public_key``
    (the sender's Ed25519 public key; the file must carry a valid signature by its private
    key) make an edited file fail even when the editor recomputed the digest.
    """
    path = Path(path)
    payload, state, card_dict, digest = _read(path)
    if expected_digest is not None and digest != expected_digest.strip().lower():
        raise CheckpointError(f"{path}: its digest {digest} is not the published digest "
                              f"{expected_digest}; this is not the file that was published, do "
                              "not use it")
    if public_key is not None:
        _verify(path, payload, public_key, digest)
    card = ModelCard.from_dict(card_dict, f"{path}: the model card")
    _check_finite(state, str(path))
    try:
        target = model if model is not None else card.build_model()
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    what = "the model you passed" if model is not None else "the architecture in the model card"
    try:
        _load_into(target, state, what)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    _check_outputs(target, card, str(path))
    target.eval()
    return Checkpoint(target, card, path, digest=digest,
                      signature_verified=public_key is not None)


# ----------------------------------------------------------------------------- signatures


def _sign(private_key: Ed25519PrivateKey, digest: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not isinstance(private_key, Ed25519PrivateKey):
        raise CheckpointError(f"private_key must be a cryptography Ed25519PrivateKey, got "
                              f"{type(private_key).__name__}; make one with "
                              "Ed25519PrivateKey.generate()")
    return private_key.sign(_signed_message(digest)).hex()


def public_key_bytes(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """The 32 raw bytes of a public key: what a publisher shares (``.hex()`` to print it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _verify(path: Path, payload: Mapping[str, Any], public_key: Ed25519PublicKey | bytes,
            digest: str) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if isinstance(public_key, bytes | bytearray):
        if len(public_key) != 32:
            raise CheckpointError(f"public_key must be 32 raw Ed25519 bytes, got "
                                  f"{len(public_key)}; use public_key_bytes(key)")
        public_key = Ed25519PublicKey.from_public_bytes(bytes(public_key))
    if not isinstance(public_key, Ed25519PublicKey):
        raise CheckpointError(f"public_key must be an Ed25519PublicKey or its 32 raw bytes, got "
                              f"{type(public_key).__name__}")
    signature = payload.get("signature")
    if not isinstance(signature, str):
        raise CheckpointError(f"{path} is not signed, but a public key was given: refuse it, "
                              "or ask the publisher to sign it (sign_checkpoint)")
    try:
        public_key.verify(bytes.fromhex(signature), _signed_message(digest))
    except (InvalidSignature, ValueError) as exc:
        raise CheckpointError(f"{path}: the Ed25519 signature does not verify with this public "
                              "key: the file was changed after signing (its digest recomputed) "
                              "or signed with another key; do not use it") from exc


def sign_checkpoint(path: str | Path, private_key: Ed25519PrivateKey) -> Path:
    """Sign an existing, intact checkpoint in place (its digest, by ``private_key``)."""
    path = Path(path)
    payload, _, _, digest = _read(path)
    payload["signature"] = _sign(private_key, digest)
    torch.save(payload, path)
    return path


def verify_checkpoint(path: str | Path, public_key: Ed25519PublicKey | bytes) -> str:
    """Check ``path`` is intact and signed by ``public_key``'s owner; return its digest."""
    path = Path(path)
    payload, _, _, digest = _read(path)
    _verify(path, payload, public_key, digest)
    return digest
