"""An in-memory Hugging Face causal LM as a hooked model: a ``HookedTransformer``, or the bridge.

[`hooked_from_hf`][workbench.models.convert.hooked_from_hf] converts the weights *without*
TransformerLens's weight processing (no LayerNorm folding, no centring): hook values and weight
matrices are the model's own, so neuron-level quantities (``||W_out[k]||``, activations) mean what
the papers mean. Every conversion is held to the HF model's log-probabilities on a short probe
([`probe_error`][workbench.models.convert.probe_error]); one that misses a part of the architecture
or disagrees raises [`UnsupportedArchitectureError`][workbench.errors.UnsupportedArchitectureError],
and the caller takes [`load_bridge`][workbench.models.convert.load_bridge] instead:
TransformerLens's ``TransformerBridge`` in compatibility mode, which exposes the same hook names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformer_lens import HookedTransformer
from transformer_lens import loading_from_pretrained as tl_loading

from workbench.errors import UnsupportedArchitectureError
from workbench.models.native import conversion_gap, native_config, native_state_dict
from workbench.models.specs import official_name

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

PROBE = "In the beginning God created the heaven and the earth. Im Anfang schuf Gott Himmel und Erde. 起初神创造天地。"
"""The multilingual text every conversion is checked on (its first 32 tokens at most)."""
PROBE_TOLERANCE = 1e-2
"""The largest log-probability difference a conversion may show on the probe.

Float32 conversions agree to about 1e-4 (Gemma 3 270M: 7e-5); a wrong one differs by far more.
"""


def hooked_from_hf(
    name_or_path: str,
    hf_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> HookedTransformer:
    """Convert an in-memory HF causal LM into a ``HookedTransformer`` without weight processing.

    Families whose folders TransformerLens cannot configure
    ([`workbench.models.native`][workbench.models.native]) get their config from ``hf_model``'s
    own.

    Args:
        name_or_path: A TransformerLens official name (its config is known offline) or a local
            folder whose ``config.json`` describes ``hf_model``.
        hf_model: The loaded HF model, in ``dtype``.
        tokenizer: Its tokenizer (None skips the probe).
        device: Where the converted model goes.
        dtype: The converted model's dtype.

    Returns:
        The converted model on ``device``, its numbers checked against ``hf_model``'s on the probe.

    Raises:
        UnsupportedArchitectureError: The config misses a part of the HF model's attention, or the
            converted model's log-probabilities differ from the HF model's on the probe.
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


@torch.no_grad()
def probe_error(
    model: HookedTransformer, hf_model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None
) -> float | None:
    """The largest log-probability difference between a converted model and its HF model.

    Measured on the multilingual [`PROBE`][workbench.models.convert.PROBE].

    Returns:
        The largest absolute difference, or None where it is not measured (no tokenizer, half
        precision).
    """
    if tokenizer is None or model.cfg.dtype not in (torch.float32, torch.float64):
        return None
    tokens = tokenizer(PROBE, return_tensors="pt").input_ids[:, : min(32, model.cfg.n_ctx)]
    ours = model(tokens.to(model.cfg.device)).log_softmax(-1).cpu()
    theirs = hf_model(tokens.to(hf_model.device)).logits.log_softmax(-1).cpu()
    return float((ours - theirs).abs().max())


def load_bridge(
    name_or_path: str,
    tokenizer: PreTrainedTokenizerBase | None,
    device: str | torch.device,
    dtype: torch.dtype,
    architecture: str,
) -> TransformerBridge:
    """Load through ``TransformerBridge`` with HookedTransformer hook names and raw weights.

    Args:
        name_or_path: A local folder or a hub name.
        tokenizer: The model's tokenizer.
        device: Where the model goes.
        dtype: The model's dtype.
        architecture: The HF architecture's name, for the error message.

    Raises:
        UnsupportedArchitectureError: The bridge cannot load the architecture either.
    """
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
