import math

import numpy as np
import pytest

from workbench.interventions.perplexity import LanguageLoss, LossResult, language_loss


def test_mean_loss_is_token_weighted():
    r = LanguageLoss("en", ["a", "b"], loss_sum=[10.0, 2.0], n_predicted=[4, 1], n_bytes=[20, 4])
    assert r.mean_loss == pytest.approx(12 / 5)
    assert r.bits_per_byte == pytest.approx(12 / math.log(2) / 24)
    assert r.perplexity == pytest.approx(math.exp(12 / 5))
    low, high = r.interval()
    assert low <= r.mean_loss <= high


def test_result_round_trips(tmp_path, tiny):
    texts = ["Hello world.", "Bonjour le monde.", "Hallo Welt."]
    r = language_loss(tiny, "xx", ["1", "2", "3"], texts, source="test", show_progress=False)
    assert r.n_documents == 3 and r.n_tokens == sum(len(t.encode()) for t in texts)
    # A random model over 260 tokens is near-uniform: loss close to log(260).
    assert abs(r.mean_loss - math.log(260)) < 1.0
    # Byte tokenizer: one token per byte, so bits per byte is the loss per token in bits.
    assert r.bits_per_byte == pytest.approx(r.mean_loss / math.log(2))
    result = LossResult({"xx": r}, settings={"seed": 0})
    result.save(tmp_path)
    back = LossResult.load(tmp_path)
    assert back.settings == {"seed": 0}
    assert back.languages["xx"].ids == r.ids
    np.testing.assert_allclose(back.languages["xx"].loss_sum, r.loss_sum)
    assert back.table() == result.table()
