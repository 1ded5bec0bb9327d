"""Where a transcoder's language features sit, layer by layer.

How language-bound the used features of each layer are, and whether PLND's FFN neurons find each
language in the same layers as the transcoder's language-specific features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.clt.features.stats import LanguageFeatures
from workbench.ffn.metrics import spearman

if TYPE_CHECKING:
    from workbench.neurons.plnd_sets import PLNDResult


def share_bins(feats: LanguageFeatures) -> list[list[int]]:
    """Per layer, a histogram of the used features' top-language share (10 bins over [0, 1])."""
    top = feats.share.max(0)
    used = np.asarray(feats.used.any(0))  # [layer, feature]
    return [
        np.histogram(top[layer][used[layer]], bins=10, range=(0.0, 1.0))[0].tolist() for layer in range(top.shape[0])
    ]


def plnd_agreement(plnd: PLNDResult, feats: LanguageFeatures) -> dict[str, Any]:
    """PLND's FFN neurons and the transcoder's specific features per (language, layer), and their rank correlation.

    Do both methods find a language in the same layers? The cells cover the languages both know.

    Returns:
        ``{"cells": [{"language", "layer", "plnd", "clt"}, ...], "spearman": rho}``, or an empty
        dict where no language is shared or the model's layers differ from the transcoder's.
    """
    specific = feats.specific()
    cells = [
        {
            "language": lang,
            "layer": layer,
            "plnd": int(plnd.per_layer(lang).get("ffn", [0] * plnd.n_layers)[layer]),
            "clt": int(specific[i, layer].sum()),
        }
        for i, lang in enumerate(feats.languages)
        if lang in plnd.sets
        for layer in range(plnd.n_layers)
    ]
    if not cells or plnd.n_layers != specific.shape[1]:
        return {}
    rho = spearman(np.array([c["plnd"] for c in cells], float), np.array([c["clt"] for c in cells], float))
    return {"cells": cells, "spearman": float(rho)}
