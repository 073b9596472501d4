"""Cards: the dataset card and the model card, rendered from Jinja templates shipped with the
package (``dataset_card.md``, ``model_card.md``) through huggingface_hub's
``DatasetCard.from_template`` and ``ModelCard.from_template``.

A card is a pure function of the folder it describes: every value in it is computed in Python
from the folder's files and handed to the template, which holds the prose.
"""

from __future__ import annotations

from magicseg_hf.cards.dataset import (
    render_dataset_card,
    size_category,
    write_dataset_card,
    write_histogram_chart,
)
from magicseg_hf.cards.model import render_model_card, write_model_card
from magicseg_hf.cards.paper import PAPER_CITATION, PAPER_URL

__all__ = [
    "PAPER_CITATION",
    "PAPER_URL",
    "render_dataset_card",
    "render_model_card",
    "size_category",
    "write_dataset_card",
    "write_histogram_chart",
    "write_model_card",
]
