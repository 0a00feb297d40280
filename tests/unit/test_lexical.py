from __future__ import annotations

import zlib

import pytest

from copilot.lexical import AVERAGE_TERMS, K1, encode_document, encode_query, term_id, terms


def test_terms_are_stemmed_lowercase_words_without_stopwords() -> None:
    assert terms("How do I Configure the Connections?") == ["configur", "connect"]


def test_identifiers_count_whole_and_by_part() -> None:
    assert terms("Set max_connections") == ["set", "max_connections", "max", "connect"]


def test_query_vector_holds_each_term_once_with_weight_one() -> None:
    vector = encode_query("index the index")

    assert vector.indices == (term_id("index"),)
    assert vector.values == (1.0,)


def test_query_of_only_stopwords_is_empty() -> None:
    assert not encode_query("what is it and how")


def test_document_weights_follow_bm25_term_frequency_saturation() -> None:
    text = " ".join(["vacuum"] * 3 + ["table"])
    vector = encode_document(text)
    weights = dict(zip(vector.indices, vector.values, strict=True))
    norm = K1 * (1 - 0.75 + 0.75 * 4 / AVERAGE_TERMS)

    assert weights[term_id("vacuum")] == pytest.approx(3 * (K1 + 1) / (3 + norm))
    assert weights[term_id("tabl")] == pytest.approx(1 * (K1 + 1) / (1 + norm))
    assert list(vector.indices) == sorted(vector.indices)


def test_longer_chunks_weigh_a_term_less() -> None:
    short = encode_document("replication slot")
    long = encode_document("replication slot " + "filler words " * 100)
    slot = term_id("slot")

    assert (
        dict(zip(short.indices, short.values, strict=True))[slot]
        > dict(zip(long.indices, long.values, strict=True))[slot]
    )


def test_term_ids_are_stable_31_bit_numbers() -> None:
    # Stored vectors outlive processes: the id of a term must never depend on hash randomisation.
    assert term_id("vacuum") == zlib.crc32(b"vacuum") & 0x7FFFFFFF == 1376351106
    assert all(0 <= term_id(t) < 2**31 for t in ("a", "index", "max_connections"))
