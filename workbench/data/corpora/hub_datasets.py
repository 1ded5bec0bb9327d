"""A Hugging Face dataset as a corpus, for users who are online: one configuration per language.

On the command line the spec is ``hf:NAME:en=CONFIG,de=CONFIG``
([`hub_corpus_from_spec`][workbench.data.corpora.hub_datasets.hub_corpus_from_spec]). The hub is
checked in seconds before anything streams ([`require_hub`][workbench.models.hub.require_hub]).
"""

from __future__ import annotations

from collections.abc import Mapping

from workbench.data.corpora.text_files import TextCorpus
from workbench.errors import EmptyCorpusError


def load_hub_corpus(
    name: str,
    configs: Mapping[str, str | None],
    split: str = "train",
    text_field: str = "text",
    max_documents: int = 1000,
) -> TextCorpus:
    """A Hugging Face dataset as a corpus (online only): language -> dataset config name.

    Streams each configuration and keeps at most ``max_documents`` per language, so memory
    stays bounded. Ids are row numbers, which align configurations of parallel datasets.

    Args:
        name: The dataset's hub name.
        configs: Language -> the dataset configuration holding it (None: the default one).
        split: The dataset split to stream.
        text_field: The column holding the text.
        max_documents: The most documents kept per language.

    Raises:
        OfflineError: The hub cannot be reached.
    """
    from datasets import load_dataset

    from workbench.models.hub import require_hub

    require_hub(f"the dataset {name!r}")
    texts: dict[str, dict[str, str]] = {}
    for lang, config in configs.items():
        stream = load_dataset(name, config, split=split, streaming=True)
        docs: dict[str, str] = {}
        for row_no, row in enumerate(stream):
            if len(docs) >= max_documents:
                break
            text = str(row.get(text_field, "")).strip()
            if text:
                docs[str(row_no)] = text
        texts[lang] = docs
    return TextCorpus(texts, name=f"hf:{name}", sources={k: f"{name}/{v}" for k, v in configs.items()})


def hub_corpus_from_spec(spec: str) -> TextCorpus:
    """``hf:NAME:en=CONFIG,de=CONFIG`` -> ``load_hub_corpus(NAME, {"en": CONFIG, ...})``.

    Raises:
        EmptyCorpusError: The spec has no language -> configuration map.
    """
    parts = spec.split(":", 2)
    if len(parts) != 3 or "=" not in parts[2]:
        raise EmptyCorpusError(
            f"Hub corpus {spec!r} needs a language -> configuration map: 'hf:NAME:en=CONFIG,de=CONFIG'."
        )
    configs = dict(item.split("=", 1) for item in parts[2].split(","))
    return load_hub_corpus(parts[1], configs)
