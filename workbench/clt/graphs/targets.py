"""What an attribution graph explains, from ``--clt-graph-target``: one rule for every prompt.

``logits``: the top logits of each prompt (decided by [`attribute`][workbench.clt.graphs.attribution.attribute]);
``answer``: each prompt's expected answer; ``token:TEXT``: one token's logit; ``language:LANG``:
the direction of LANG's tokens in the unembedding (their mean minus the vocabulary's).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from workbench.clt.graphs.attribution import Target, logit_target, mean_unembedding, token_target
from workbench.data.corpus import Corpus
from workbench.data.prompts import ParallelPrompt
from workbench.errors import WorkbenchError
from workbench.models.model import Model

TargetsOf = Callable[[ParallelPrompt], list[Target] | None]
"""A prompt's targets (None: its top logits)."""


def targets_of(model: Model, corpus: Corpus, target: str) -> TargetsOf:
    """The rule giving each prompt's targets for the spec ``target`` (see the module docstring).

    The corpus is read only for ``language:LANG``: the token language labels need its word lists.
    """
    kind, _, arg = target.partition(":")
    if kind == "token":
        fixed = [token_target(model, arg)]
        return lambda p: fixed
    if kind == "language":
        from workbench.language.classifier import default_classifier
        from workbench.language.vocabulary import vocab_languages

        vocab = vocab_languages(model.tokenizer, model.cfg.d_vocab, default_classifier(corpus))
        ids = np.nonzero(vocab.is_label(arg))[0].tolist()
        fixed = [mean_unembedding(model, ids, f"language {arg}")]
        return lambda p: fixed
    if kind == "answer":
        return lambda p: [logit_target(model, answer_token(model, p))]
    return lambda p: None


def answer_token(model: Model, prompt: ParallelPrompt) -> int:
    """The first token of ``prompt``'s answer, as it follows the prompt.

    Raises:
        WorkbenchError: The prompt has no answer.
    """
    if not prompt.answer:
        raise WorkbenchError(
            f"Prompt {prompt.task}/{prompt.item} ({prompt.language}) has no answer; use --clt-graph-target logits."
        )
    return int(model.to_tokens(prompt.continuation, prepend_bos=False)[0, 0])
