"""``workbench models`` and ``workbench prepare``: the models the workbench knows, and the default model's cache."""

from __future__ import annotations

import argparse


def cmd_models(args: argparse.Namespace) -> int:
    """``workbench models``: the known models, the Gemma cache, the trained zoo models, the folders' families.

    With ``--tiny FAMILY FOLDER``, save a tiny model of a family instead.
    """
    if args.tiny:
        return _save_tiny(*args.tiny)
    from workbench.models.families import FAMILIES
    from workbench.models.gemma import gemma_cache_dir, verify_cache_folder
    from workbench.models.specs import KNOWN_MODELS

    print(f"{'name':<14} {'layers':>6} {'d_model':>7}  description (source)")
    for m in KNOWN_MODELS.values():
        print(f"{m.name:<14} {m.n_layers:>6} {m.d_model:>7}  {m.description} ({m.source})")
    problem = verify_cache_folder(gemma_cache_dir())
    state = "ready" if problem is None else f"not prepared yet ({problem}): built on first use"
    print(f"\ngemma-3-270m cache: {gemma_cache_dir()} [{state}]")
    from workbench.models.catalog import trained

    zoo = trained()
    print(f"Zoo (--model zoo:NAME): {', '.join(zoo) or 'none trained yet'} ('workbench zoo list' for details)")
    print("Also accepted: a local Hugging Face model folder, or a hub name (online).")
    print(f"\nFolders of these families load as HookedTransformer, every analysis exact: {', '.join(FAMILIES)}.")
    print("Other architectures load through TransformerBridge: no Q/K importances, no attribution graphs.")
    print("Try one offline: workbench models --tiny FAMILY FOLDER, then --model FOLDER.")
    return 0


def _save_tiny(name: str, folder: str) -> int:
    """Save the tiny random model of a family (its quirks on, the byte tokenizer) into ``folder``."""
    from workbench.models.families import family, save_family

    spec = family(name)
    save_family(name, folder)
    print(f"Saved a tiny random {spec.model_class} ({spec.quirks}) to {folder}; use it with --model {folder}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """``workbench prepare``: build (once) or verify the cached float32 Gemma 3 270M."""
    from workbench.models.gemma import prepare_gemma

    path = prepare_gemma(force=args.force)
    print(f"gemma-3-270m ready at {path}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``models`` and ``prepare``."""
    models = sub.add_parser("models", help="list the models the workbench knows")
    models.add_argument(
        "--tiny",
        nargs=2,
        metavar=("FAMILY", "FOLDER"),
        help="save a tiny random model of FAMILY (llama, gemma3, xglm, ...) into FOLDER",
    )
    models.set_defaults(func=cmd_models)

    prepare = sub.add_parser("prepare", help="build the cached default model (gemma-3-270m)")
    prepare.add_argument("--force", action="store_true", help="rebuild even if the cache is intact")
    prepare.set_defaults(func=cmd_prepare)
