import numpy as np
import pytest

from workbench.language.classifier import AMBIGUOUS, NONE, UNKNOWN, TokenClassifier
from workbench.language.vocabulary import accuracy_table, label_vocab
from workbench.language.wordlists import corpus_frequencies

LANGS = ["en", "de", "fr", "es", "pt", "it", "ru", "uk", "zh", "ja", "ko", "ar", "fa", "hi", "sw"]


@pytest.fixture(scope="module")
def classifier():
    swahili = corpus_frequencies(["Mungu aliupenda ulimwengu hata akamtoa Mwanawe"] * 3)
    return TokenClassifier(LANGS, extra_frequencies={"sw": swahili})


@pytest.mark.parametrize(
    "token, label",
    [
        (" the", "en"),
        ("▁und", "de"),
        (" Gott", "de"),
        (" die", "de"),  # "die": de 7.5 vs en 5.1 Zipf
        (" Mungu", "sw"),
        (" ulimwengu", "sw"),
        ("▁하나님", "ko"),
        ("▁かみ", "ja"),
        ("ईश्वर", "hi"),
        (" الله", "ar"),
        (" پدر", "fa"),
        (" и", "ru"),
        (" є", "uk"),
        (" ы", "ru"),
        (" ,", NONE),
        ("123", NONE),
        (" ", NONE),
        (" a", NONE),
        ("ung", NONE),
        (" Xqzvbn", UNKNOWN),
    ],
)
def test_classify(classifier, token, label):
    assert classifier.classify(token).label == label


def test_ambiguous_words_keep_their_candidates(classifier):
    que = classifier.classify(" que")
    assert que.label == AMBIGUOUS and {"es", "fr", "pt"} <= set(que.candidates)
    han = classifier.classify("神")
    assert han.label == AMBIGUOUS and han.candidates == ("ja", "zh")
    # A wider margin turns a clear winner into an explicit tie.
    wide = TokenClassifier(LANGS, margin=3.0)
    assert wide.classify(" die").label == AMBIGUOUS and set(wide.classify(" die").candidates) >= {"de", "en"}


def test_languages_outside_the_set_are_not_guessed():
    only_latin = TokenClassifier(["en", "de"])
    assert only_latin.classify("▁하나님").label == UNKNOWN
    assert only_latin.classify(" Бог").label == UNKNOWN


def test_vocab_labels_and_accuracy_on_a_hand_built_case(classifier):
    pieces = ["", " the", " und", " que", " ,", "▁하나님", " Gott"]
    vocab = label_vocab(pieces, classifier)
    assert [vocab.label_of(i) for i in range(len(pieces))] == [NONE, "en", "de", AMBIGUOUS, NONE, "ko", "de"]
    assert vocab.may_be("es")[3] and vocab.may_be("fr")[3] and not vocab.may_be("de")[3]
    # English text: the, the, und(!), ","  -> content tokens 3, two labelled en
    # German text:  und, Gott, que, ","    -> content tokens 3, two labelled de
    rows = {r["language"]: r for r in accuracy_table(vocab, {"en": [[1, 1, 2, 4]], "de": [[2, 6, 3, 4]]})}
    assert rows["en"]["recall"] == pytest.approx(2 / 3, abs=1e-4) and rows["en"]["precision"] == 1.0
    assert rows["de"]["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert rows["de"]["precision"] == pytest.approx(2 / 3, abs=1e-4)  # one "de" label came from the English text
    assert rows["de"]["ambiguous"] == pytest.approx(1 / 3, abs=1e-4)
    assert rows["en"]["content_tokens"] == 3 and rows["en"]["tokens"] == 4


def test_corpus_frequencies_count_words_only():
    freqs = corpus_frequencies(["Na Mungu, na watu 12.", "na"], min_count=2)
    assert set(freqs) == {"na"}
    assert freqs["na"] == pytest.approx(np.log10(3 / 5) + 9)
