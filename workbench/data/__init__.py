"""What the models read: corpora, language codes, batching of token ids, and the parallel prompts.

The corpora (the parallel Bible, text and JSONL files, hub datasets) are opened through
[`workbench.data.corpus`][workbench.data.corpus], one source a module in ``workbench.data.corpora``
([`bible`][workbench.data.corpora.bible], [`text_files`][workbench.data.corpora.text_files],
[`hub_datasets`][workbench.data.corpora.hub_datasets]).

Layer: above [`workbench.models`][workbench.models] (a hub corpus asks
[`workbench.models.hub`][workbench.models.hub] first).
"""
