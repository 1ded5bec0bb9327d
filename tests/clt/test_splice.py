"""The spliced fine-tune: it lowers the splice's KL on tiny models, trains the decoders only (every
feature fires where it did), leaves the model's weights and every requires_grad flag as it found
them, and its loss is the literal KL of the spliced model's next-token distribution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from conftest import known_skip_clt

from workbench.clt.quality import replacement
from workbench.clt.training.splice import SpliceSettings, finetune_spliced, splice_step_loss
from workbench.data.batching import iter_batches, pad_id_of


def _documents(model, n: int = 12, length: int = 24) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    bos = model.tokenizer.bos_token_id
    return [torch.cat([torch.tensor([bos]), torch.randint(3, 250, (length,), generator=g)]) for _ in range(n)]


def _clt(model):
    return known_skip_clt(model.cfg.n_layers, model.cfg.d_model, 32, model="tiny", skip_scale=0.05)


def _mean_kl(model, clt, docs) -> float:
    with torch.no_grad():
        terms = [splice_step_loss(model, clt, b, 0.0)[1]["kl"] for b in iter_batches(docs, pad_id_of(model), 10_000)]
    return sum(terms) / len(terms)


def test_the_step_loss_is_the_literal_kl_of_the_spliced_model(tiny):
    clt, docs = _clt(tiny), _documents(tiny)
    batch = next(iter_batches(docs, pad_id_of(tiny), 10_000))
    with torch.no_grad():
        loss, terms = splice_step_loss(tiny, clt, batch, 0.0)
        original = tiny(batch.tokens)
        with replacement(tiny, clt) as spliced:
            replaced = spliced(batch.tokens)
    real = batch.mask.bool().clone()
    real[:, 0] = False
    reference, spliced_logp = original.log_softmax(-1)[real], replaced.log_softmax(-1)[real]
    literal = F.kl_div(spliced_logp, reference, log_target=True, reduction="batchmean")
    assert terms["kl"] > 1e-3 and abs(float(loss) - float(literal)) < 1e-5 * max(1.0, float(literal))


def test_the_fine_tune_lowers_the_kl_and_trains_the_decoders_only(tiny):
    clt, docs = _clt(tiny), _documents(tiny)
    encoder = {k: v.clone() for k, v in clt.state_dict().items() if k in ("W_enc", "b_enc", "log_threshold")}
    weights = {k: v.clone() for k, v in tiny.state_dict().items()}
    flags = [p.requires_grad for p in [*tiny.parameters(), *clt.parameters()]]
    skip_before, before = clt.W_skip.detach().clone(), _mean_kl(tiny, clt, docs)
    log = finetune_spliced(tiny, clt, docs, SpliceSettings(steps=30, lr=3e-3, batch_tokens=200), show_progress=False)
    assert len(log) == 30 and {"kl", "fvu", "seconds"} <= set(log[0])
    assert _mean_kl(tiny, clt, docs) < 0.7 * before
    assert all(torch.equal(clt.state_dict()[k], v) for k, v in encoder.items())
    assert not torch.equal(clt.W_skip.detach(), skip_before)
    assert all(torch.equal(tiny.state_dict()[k], v) for k, v in weights.items())
    assert [p.requires_grad for p in [*tiny.parameters(), *clt.parameters()]] == flags
    assert not clt.training


def test_no_steps_change_nothing(tiny):
    clt, docs = _clt(tiny), _documents(tiny)
    state = {k: v.clone() for k, v in clt.state_dict().items()}
    assert finetune_spliced(tiny, clt, docs, SpliceSettings(steps=0), show_progress=False) == []
    assert all(torch.equal(clt.state_dict()[k], v) for k, v in state.items())
