import pytest
import torch
import torch.nn.functional as F

from workbench.data.batching import iter_batches, pad, plan_batches, tokenize
from workbench.errors import EmptyCorpusError, TextTooLongError
from workbench.interventions.perplexity import document_losses

TEXTS = ["Hi.", "Im Anfang schuf Gott Himmel und Erde.", "神爱世人", "A somewhat longer English sentence here."]


def test_plan_respects_budget_and_covers_every_document():
    lengths = [5, 40, 12, 12, 3, 90, 7]
    batches = plan_batches(lengths, batch_tokens=48)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 48


def test_pad_marks_real_tokens():
    tokens, mask = pad([torch.tensor([1, 2, 3]), torch.tensor([1])], pad_id=0)
    assert tokens.tolist() == [[1, 2, 3], [1, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.parametrize("fixture", ["tiny", "tiny_gated"])
def test_batched_losses_equal_one_document_at_a_time(request, fixture):
    """Right padding must not change any real position: compare with a literal loop."""
    model = request.getfixturevalue(fixture)
    token_lists = tokenize(model, TEXTS)
    loss_sum, counts = document_losses(model, token_lists, batch_tokens=64)
    assert len(list(iter_batches(token_lists, 0, 64))) < len(TEXTS)  # really batched
    for toks, got_sum, got_count in zip(token_lists, loss_sum, counts):
        with torch.no_grad():
            logits = model(toks[None])[0]
        expected = F.cross_entropy(logits[:-1], toks[1:], reduction="sum").item()
        assert got_count == len(toks) - 1
        assert got_sum == pytest.approx(expected, rel=1e-5, abs=1e-4)


def test_too_long_texts_truncate_with_warning_or_refuse(tiny):
    long = "x" * 400  # byte tokenizer: 400 tokens + BOS > n_ctx 256
    with pytest.warns(UserWarning, match="Truncated 1 text"):
        toks = tokenize(tiny, ["short", long], ids=["a", "b"])
    assert len(toks[1]) == tiny.cfg.n_ctx and len(toks[0]) == 6
    with pytest.raises(TextTooLongError, match="b \\(401 tokens\\)"):
        tokenize(tiny, ["short", long], ids=["a", "b"], on_too_long="error")


def test_empty_text_is_refused(tiny):
    with pytest.raises(EmptyCorpusError, match="id 'b'"):
        tokenize(tiny, ["fine", "  "], ids=["a", "b"])


def test_chunked_readout_equals_the_full_forward_with_softcap(tiny_gated):
    """The chunked final readout applies norm, bias and soft-cap exactly as the forward pass does."""
    from workbench.lens.readout import next_token_losses

    tokens = tokenize(tiny_gated, ["soft caps and chunks", "x"])[0][None]
    cap_before = tiny_gated.cfg.output_logits_soft_cap
    try:
        for cap in (-1.0, 3.0):
            tiny_gated.cfg.output_logits_soft_cap = cap
            with torch.no_grad():
                logits = tiny_gated(tokens)[0]
                expected = F.cross_entropy(logits[:-1], tokens[0, 1:], reduction="none")
                got = next_token_losses(tiny_gated, tokens, chunk_rows=5)[0]
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    finally:
        tiny_gated.cfg.output_logits_soft_cap = cap_before
