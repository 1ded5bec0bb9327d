"""The family tokenizer: one byte-level BPE, shared by every zoo model that names the same languages.

It is trained with the ``tokenizers`` library on the training verses of a set of languages, so the
models' vocabularies (and the token language labels) are the same and the models compare.

Each language contributes the same number of verses, so no language's words dominate the merges
because it has more translations. Tokenizers are kept in ``<zoo>/tokenizers/<key>/`` (the key
hashes the languages, the vocabulary size and
[`TOKENIZER_FORMAT`][workbench.zoo.tokenizer.TOKENIZER_FORMAT]), with the token streams of their
languages beside them.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.zoo.data import training_verses

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

TOKENIZER_FORMAT = 1
"""The version of the saved tokenizer's layout; a folder of another version is rebuilt."""
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
"""The special tokens, first in the vocabulary."""
VERSES_PER_LANGUAGE = 20_000
"""Training verses each language gives the tokenizer (fewer where it has fewer)."""


def tokenizer_key(languages: list[str] | tuple[str, ...], vocab_size: int) -> str:
    """The tokenizer's folder name: vocabulary size, languages, and a hash that includes the format."""
    text = f"{TOKENIZER_FORMAT}:{','.join(sorted(languages))}:{vocab_size}"
    return f"bpe{vocab_size}-{'-'.join(sorted(languages))}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def family_tokenizer(
    languages: list[str] | tuple[str, ...], vocab_size: int, zoo: Path
) -> tuple[PreTrainedTokenizerBase, Path]:
    """``(tokenizer, folder)``: the family's tokenizer, trained on first use and reused after."""
    from transformers import AutoTokenizer

    folder = zoo / "tokenizers" / tokenizer_key(languages, vocab_size)
    if not (folder / "tokenizer.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".training-"))
        train_tokenizer(languages, vocab_size).save_pretrained(partial)
        shutil.rmtree(folder, ignore_errors=True)  # a folder without tokenizer.json: an interrupted copy
        partial.rename(folder)
    return AutoTokenizer.from_pretrained(str(folder)), folder


def train_tokenizer(languages: list[str] | tuple[str, ...], vocab_size: int, seed: int = 0) -> PreTrainedTokenizerFast:
    """A byte-level BPE over the languages' training verses, as a tokenizer that prepends ``<bos>``.

    Each language gives [`VERSES_PER_LANGUAGE`][workbench.zoo.tokenizer.VERSES_PER_LANGUAGE] verses
    (fewer where it has fewer), sampled with ``seed``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from workbench.models.tiny import with_bos  # imports torch: only when a tokenizer is trained

    texts = []
    for language in sorted(languages):
        verses = [text for _, text in training_verses(language)]
        texts += random.Random(seed).sample(verses, min(VERSES_PER_LANGUAGE, len(verses)))
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIALS),
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<bos>")
    assert bos is not None, "<bos> is one of the trainer's special tokens"
    return with_bos(tok, bos_id=bos)
