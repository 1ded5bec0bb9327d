"""The main job behind ``workbench run``: analyses of one model on one corpus, into one folder.

The job only loops over slices (registered in [`workbench.runs.slices`][workbench.runs.slices]): it
adds the analyses each one requires, runs them in registry order, and keeps the folder's manifest:
the model, corpus, languages, the run's settings, and per analysis its options and fingerprint.
Work is saved in parts as it finishes ([`Store`][workbench.runs.store.Store]); running the same
job again on the same folder resumes. A folder made with other run settings (model, corpus,
languages, seed, ...) is refused; an analysis asked for with other options than the folder's is
redone, with the analyses that depend on it, never mixed. Under ``torchrun`` every rank runs the
job; the analyses that split their documents do so, and rank 0 alone writes
([`workbench.runs.distributed`][workbench.runs.distributed]).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.data.corpus import Corpus, open_corpus
from workbench.errors import ResultsMismatchError
from workbench.models.model import Model
from workbench.models.specs import check_spec
from workbench.runs import slices
from workbench.runs.options import OptionError, Options, RunOptions
from workbench.runs.report import write_report
from workbench.runs.results import MANIFEST, make_manifest, read_manifest, save_json

if TYPE_CHECKING:  # torch comes with these: imported by the run itself, once every input is checked
    from workbench.runs.store import Store

log = logging.getLogger(__name__)


def resolve(analyses: dict[str, Options]) -> dict[str, Options]:
    """The analyses asked for, plus those they require or their settings need (default options), in run order."""
    wanted = [*analyses, *(need for options in analyses.values() for need in options.needs())]
    return {name: analyses.get(name) or slices.load_slice(name).Options() for name in slices.with_requirements(wanted)}


def _needs(name: str, options: Options) -> list[str]:
    """What analysis ``name`` needs with ``options``: its slice's ``requires`` and its settings' needs."""
    return [*slices.load_slice(name).requires, *options.needs()]


def fingerprints(run: RunOptions, analyses: dict[str, Options]) -> dict[str, str]:
    """Each analysis's fingerprint: its options, the run's context, and its requirements' prints."""
    prints: dict[str, str] = {}
    for name, options in analyses.items():
        needs = [prints[need] for need in _needs(name, options)]
        prints[name] = options.fingerprint(run.context(), needs)
    return prints


def _previous_manifest(out: Path, run: RunOptions) -> dict[str, Any] | None:
    """The folder's manifest, refused when its run settings differ from ``run``'s."""
    if not (out / MANIFEST).exists():
        return None
    manifest = read_manifest(out)
    previous, current = RunOptions.from_dict(manifest["run"]).context(), run.context()
    if previous != current:
        changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        raise ResultsMismatchError(
            f"{out} holds results made with other run settings (differs in: {', '.join(changed)}). "
            "Use another --out folder, or delete this one to start again."
        )
    return manifest


def _recorded_needs(name: str, entry: dict[str, Any]) -> list[str]:
    """What a finished analysis needed, from its recorded settings.

    Its ``requires`` alone when the settings no longer load (e.g. a setting this version dropped).
    """
    try:
        return _needs(name, slices.load_slice(name).Options.from_dict(entry.get("options", {})))
    except (OptionError, TypeError):
        return list(slices.load_slice(name).requires)


def _still_valid(recorded: dict[str, Any], prints: dict[str, str]) -> dict[str, Any]:
    """The manifest's analyses that stay valid.

    Those not redone now with another fingerprint, and not depending on one that is.
    """
    stale: set[str] = set()
    for name in slices.names():  # run order: what an analysis requires comes before it
        if name not in recorded:
            continue
        redone = name in prints and recorded[name].get("fingerprint") != prints[name]
        if redone or any(need in stale for need in _recorded_needs(name, recorded[name])):
            stale.add(name)
    return {name: entry for name, entry in recorded.items() if name not in stale}


def check(run_options: RunOptions, analyses: dict[str, Options]) -> tuple[dict[str, Options], dict[str, str], Corpus]:
    """Every check a run can make before it loads anything heavy, in well under a second.

    The model spec, the corpus and its languages, each analysis's options against the run's.

    Returns:
        The analyses with what they require (in run order), their fingerprints, and the corpus.

    Raises:
        WorkbenchError: The first input that cannot run, with the fix in its message.
    """
    analyses = resolve(analyses)
    prints = fingerprints(run_options, analyses)
    check_spec(run_options.model)
    corpus = open_corpus(run_options.corpus, run_options.translation_map() or None)
    corpus.check_languages(list(run_options.languages))
    for options in analyses.values():
        options.check_run(run_options)
    return analyses, prints, corpus


def load_run_model(spec: str, device: str, dtype: str = "float32", n_devices: int = 1) -> Model:
    """The run's model, placed on its devices (torch and TransformerLens are imported here, after every check).

    Args:
        spec: The model spec ([`load_model`][workbench.models.loading.load_model]).
        device: The run's device (the first one with ``n_devices`` > 1).
        dtype: The name of the weights' torch dtype (``float32``, ``bfloat16``, ``float16``).
        n_devices: With more than 1, the model is loaded on the CPU, then its layers are split
            over the devices from ``device`` on
            ([`split_layers`][workbench.models.devices.split_layers]).
    """
    import torch

    from workbench.models.devices import check_devices, devices_of, split_layers
    from workbench.models.loading import load_model as load
    from workbench.models.model import source_of

    if n_devices == 1:
        return load(spec, device=device, dtype=getattr(torch, dtype))
    check_devices(device, n_devices)  # before minutes of loading
    model = split_layers(load(spec, device="cpu", dtype=getattr(torch, dtype)), device, n_devices)
    source = source_of(model)
    if source is not None:
        source.details["devices"] = devices_of(model)
    return model


def run(
    run_options: RunOptions, analyses: dict[str, Options], out: Path | None, show_progress: bool = True
) -> Path | None:
    """Run the analyses (and what they require) on the run's model and corpus.

    Args:
        run_options: The run's own settings.
        analyses: The analyses asked for, with their options.
        out: The results folder: results, the manifest and the HTML report are written there, and
            a run in it resumes. None keeps everything in memory.
        show_progress: Show progress bars (on rank 0 only).

    Returns:
        The report's path, or None without ``out``.

    Raises:
        WorkbenchError: Bad input (before the model loads), or a folder of other run settings.
    """
    analyses, prints, corpus = check(run_options, analyses)
    from workbench.models.model import model_source
    from workbench.runs import distributed
    from workbench.runs.store import Store

    distributed.init_from_environment(run_options.device)
    if distributed.world().size > 1 and run_options.n_devices > 1:
        raise OptionError(
            "--n-devices splits one model over GPUs; under torchrun each process holds a whole "
            "model. Use one or the other."
        )
    manifest = distributed.from_main(lambda: _previous_manifest(Path(out), run_options)) if out is not None else None

    model = load_run_model(
        run_options.model, distributed.local_device(run_options.device), run_options.dtype, run_options.n_devices
    )
    show_progress = show_progress and distributed.world().is_main
    store = Store(Path(out) if out is not None else None, run_options, prints, show_progress=show_progress)
    recorded = _still_valid(manifest.get("analyses", {}), prints) if manifest else {}
    current = make_manifest(model_source(model), corpus.describe(), store.languages, run_options.to_dict(), {})
    current["analyses"] = recorded  # the live record: saved as it changes
    if manifest is not None:
        current["created"] = manifest["created"]
    for options in analyses.values():
        options.check_model(model)  # before the first analysis spends any time
    for name, options in analyses.items():
        recorded.pop(name, None)  # listed again only once it has finished
        _save_manifest(store, current)
        log.info("%s: fingerprint %s", name, prints[name])
        slices.load_slice(name).run(model, corpus, options, store)
        recorded[name] = {"options": options.to_dict(), "fingerprint": prints[name]}
    if out is None:
        return None
    _save_manifest(store, current)
    return distributed.from_main(lambda: write_report(Path(out)))


def _save_manifest(store: Store, manifest: dict[str, Any]) -> None:
    """The manifest as it stands (finished analyses only)."""
    from workbench.runs import distributed

    folder = store.folder
    if folder is not None:
        distributed.on_main(lambda: save_json(folder / MANIFEST, manifest))
