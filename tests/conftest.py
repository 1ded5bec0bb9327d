"""Shared fixtures: tiny models built locally (seconds) and the real default model (e2e)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny():
    from workbench.models import load_model

    return load_model("tiny")


@pytest.fixture(scope="session")
def tiny_gated():
    from workbench.models import load_model

    return load_model("tiny-gated")


@pytest.fixture(scope="session")
def bible():
    from workbench.corpus import BibleCorpus

    return BibleCorpus()


@pytest.fixture(scope="session")
def gemma():
    """The real default model (Gemma 3 270M, Q4_K_M build), loaded once per test session."""
    from workbench.models import load_model

    return load_model("gemma-3-270m")
