"""What the models read: corpora (the parallel Bible, text and JSONL files, hub datasets), language
codes, batching of token ids, and the parallel prompts.

Layer: above [`workbench.models`][workbench.models] (a hub corpus asks [`workbench.models.hub`][workbench.models.hub] first).
"""
