import json
import time

import pytest

from workbench.data.corpora.base import split_of
from workbench.data.corpora.bible import BIBLE_TRANSLATIONS, DEFAULT_BIBLE_TRANSLATIONS, BibleCorpus, clean_verse
from workbench.data.corpora.hub_datasets import load_hub_corpus
from workbench.data.corpora.text_files import TextCorpus
from workbench.data.corpus import open_corpus
from workbench.errors import (
    CorpusFormatError,
    EmptyCorpusError,
    OfflineError,
    UnknownLanguageError,
    WorkbenchError,
)

REQUIRED = ["en", "de", "fr", "es", "it", "pt", "ru", "zh", "ja", "ko", "ar", "hi", "sw", "vi", "id", "tr"]


def test_bible_has_the_languages_the_analyses_need(bible):
    assert set(REQUIRED) <= set(bible.languages)
    assert len(bible.languages) == 22
    for lang in REQUIRED:
        assert bible.translations[lang] == DEFAULT_BIBLE_TRANSLATIONS[lang]


def test_same_verse_in_every_language(bible):
    # John 3:16 is book 43, chapter 3, verse 16 in every translation.
    docs = bible.parallel(["en", "de", "fr", "zh", "ru"], ["43.3.16"])
    assert "God" in docs["en"]["text"][0] and "world" in docs["en"]["text"][0]
    assert "Gott" in docs["de"]["text"][0]
    assert "Dieu" in docs["fr"]["text"][0]
    assert "神" in docs["zh"]["text"][0]
    assert "Бог" in docs["ru"]["text"][0]


def test_split_is_deterministic_disjoint_and_about_ten_percent(bible):
    held = bible.ids(["en"], "heldout")
    analysis = bible.ids(["en"], "analysis")
    assert not set(held) & set(analysis)
    assert len(held) + len(analysis) == len(bible.ids(["en"], "all"))
    assert 0.08 < len(held) / (len(held) + len(analysis)) < 0.12
    assert all(split_of(i, 0.1) == "heldout" for i in held[:50])


def test_sampling_is_seeded_and_aligned(bible):
    a = bible.sample_ids(["en", "zh", "hi"], 20, "heldout", seed=3)
    b = bible.sample_ids(["en", "zh", "hi"], 20, "heldout", seed=3)
    c = bible.sample_ids(["en", "zh", "hi"], 20, "heldout", seed=4)
    assert a == b and a != c and len(set(a)) == 20
    docs = bible.parallel_sample(["en", "zh", "hi"], 20, "heldout", seed=3)
    assert docs["en"]["id"] == docs["zh"]["id"] == docs["hi"]["id"] == a
    assert set(docs["en"].column_names) == {"id", "language", "text", "source"}


def test_other_translation_can_be_chosen():
    kjv = BibleCorpus(translations={"en": "k"})
    assert kjv.translation("en").name == "King James 1611"
    assert "believeth" in kjv.parallel(["en"], ["43.3.16"])["en"]["text"][0]
    by_name = BibleCorpus(translations={"de": "Elberfelder 1932"})
    assert by_name.translations["de"] == "e"
    with pytest.raises(UnknownLanguageError, match="Schlachter"):
        BibleCorpus(translations={"de": "nope"})


def test_unknown_language_lists_the_available_ones(bible):
    with pytest.raises(UnknownLanguageError) as err:
        bible.sample_ids(["en", "xx"], 5)
    assert "xx" in str(err.value) and "sw (Swahili)" in str(err.value)


def test_placeholder_and_bracketed_verses_are_cleaned():
    assert clean_verse("(ADDED FROM KJV: Their horses ...)") is None
    assert clean_verse("  ") is None
    assert clean_verse("Jedaja, [der Sohn des]  Jojarib") == "Jedaja, der Sohn des Jojarib"
    assert len({t.code for t in BIBLE_TRANSLATIONS}) == 31


def test_jsonl_and_text_files(tmp_path):
    rows = [
        {"id": "a", "language": "en", "text": "Hello there."},
        {"id": "a", "language": "de", "text": "Hallo da."},
        {"id": "b", "language": "en", "text": "Good night."},
    ]
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    corpus = open_corpus(str(path))
    assert corpus.languages == ["de", "en"]
    assert corpus.ids(["en", "de"]) == ["a"]
    assert corpus.parallel(["de"], ["a"])["de"]["text"] == ["Hallo da."]
    txt = tmp_path / "fr.txt"
    txt.write_text("Bonjour.\n\nBonsoir.\n")
    files = TextCorpus.from_files({"fr": txt})
    assert list(files.texts("fr").values()) == ["Bonjour.", "Bonsoir."]


def test_empty_inputs_get_clear_errors(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps({"language": "en", "text": "   "}) + "\n")
    with pytest.raises(EmptyCorpusError, match="empty en document"):
        TextCorpus.from_jsonl(path)
    empty = tmp_path / "none.jsonl"
    empty.write_text("\n")
    with pytest.raises(EmptyCorpusError, match="no documents"):
        TextCorpus.from_jsonl(empty)
    corpus = TextCorpus({"en": {"x": "one"}, "de": {"y": "eins"}})
    with pytest.raises(EmptyCorpusError, match="shared by"):
        corpus.sample_ids(["en", "de"], 1)
    with pytest.raises(EmptyCorpusError, match="Unknown corpus"):
        open_corpus("no-such-corpus")


def test_malformed_jsonl_names_the_file_and_the_line(tmp_path):
    good = json.dumps({"id": "a", "language": "en", "text": "Hello."})
    cases = {
        '{"language": "en", "text": "unterminated}': "not valid JSON",
        '["en", "Hello."]': "expected a JSON object",
        json.dumps({"language": "en"}): "no 'text' field",
        json.dumps({"language": "en", "text": None}): "'text' must be a string",
        json.dumps({"text": "Hello."}): "no 'language' field",
        json.dumps({"language": 3, "text": "Hello."}): "'language' must be a language code",
    }
    for bad, what in cases.items():
        path = tmp_path / "bad.jsonl"
        path.write_text(f"{good}\n\n{bad}\n{good}\n", encoding="utf-8")  # the bad record is on line 3
        with pytest.raises(CorpusFormatError) as err:
            TextCorpus.from_jsonl(path)
        message = str(err.value)
        assert str(path) in message and "line 3" in message and what in message, message
        assert "'language' and 'text'" in message, message  # says what a line should look like
        assert isinstance(err.value, WorkbenchError) and isinstance(err.value, ValueError)
    with pytest.raises(CorpusFormatError, match="line 3"):  # through the command-line spec too
        open_corpus(str(path))


def test_corpus_files_must_be_utf8_and_may_start_with_a_bom(tmp_path):
    path = tmp_path / "latin1.jsonl"
    first = json.dumps({"language": "en", "text": "ok"}) + "\n"
    second = json.dumps({"language": "fr", "text": "déjà"}, ensure_ascii=False) + "\n"
    path.write_bytes(first.encode("utf-8") + second.encode("latin-1"))
    with pytest.raises(CorpusFormatError, match=r"line 2: not UTF-8"):
        TextCorpus.from_jsonl(path)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps({"language": "en", "text": "Hi."}).encode() + b"\r\n")
    assert TextCorpus.from_jsonl(bom).texts("en") == {"1": "Hi."}
    txt = tmp_path / "en.txt"
    txt.write_bytes(b"\xef\xbb\xbfFirst.\r\nSecond.\r\n")
    assert list(TextCorpus.from_files({"en": txt}).texts("en").values()) == ["First.", "Second."]


def test_hub_dataset_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE"):
        load_hub_corpus("some/dataset", {"en": "en"})
    with pytest.raises(OfflineError):
        open_corpus("hf:some/dataset:en=en")
    with pytest.raises(EmptyCorpusError, match="language -> configuration"):
        open_corpus("hf:some/dataset")
    assert time.perf_counter() - start < 10  # no DNS hang
