"""Dedupe hashes: one byte form per JSON value, one stored form per text."""

from __future__ import annotations

import hashlib

from shared.hashing import MAX_DOCUMENT_CHARS, canonical_json, json_hash, normalize_text, text_hash


def test_canonical_json_sorts_keys_drops_spaces_and_keeps_unicode() -> None:
    assert canonical_json({"b": [1, 2], "a": {"z": "é", "y": None}}) == '{"a":{"y":null,"z":"é"},"b":[1,2]}'.encode()


def test_the_json_hash_ignores_key_order_and_formatting() -> None:
    assert json_hash({"a": 1, "b": [True, "x"]}) == json_hash({"b": [True, "x"], "a": 1})
    assert json_hash({"a": 1}) == hashlib.sha256(b'{"a":1}').digest()
    assert json_hash({"a": 1}) != json_hash({"a": "1"})


def test_normalized_text_is_nfc_without_nul_or_surrounding_space() -> None:
    assert normalize_text("  Cafe\u0301\x00 time\n") == "Caf\u00e9 time"


def test_normalized_text_is_cut_after_normalization() -> None:
    # NFC makes DEVANAGARI LETTER QA two characters (a composition exclusion): the text grows past
    # the limit, so the cut must come after normalization.
    normalized = normalize_text("\u0958" * (MAX_DOCUMENT_CHARS // 2 + 10))
    assert normalized == ("\u0915\u093c" * (MAX_DOCUMENT_CHARS // 2))
    assert normalize_text("  " + "a" * (MAX_DOCUMENT_CHARS + 5)) == "a" * MAX_DOCUMENT_CHARS


def test_texts_that_differ_only_in_form_hash_alike() -> None:
    assert text_hash("Cafe\u0301 ") == text_hash("Caf\u00e9") == hashlib.sha256("Café".encode()).digest()
    assert text_hash("Café") != text_hash("cafe")
