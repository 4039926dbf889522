# SPDX-License-Identifier: MIT
"""Encoding: exact prompt/response boundary (BOS, merges, dummy prefixes), chat template,
truncation, the answer-only loss span, token-budget batches."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from thoughtgrad.tasks.encode import (
    EncodeConfig,
    EncodeError,
    encode,
    token_batches,
)
from thoughtgrad.tasks.tokens import IGNORE_INDEX, collate

PROMPT = "Natalia sold 48 clips in April and half as many in May. How many in total?"
RESPONSE = "Natalia sold 48/2 = 24 clips in May. 48+24 = 72.\nThe final answer is 72"


def _label_ids(enc):
    return [t for t in enc.labels if t != IGNORE_INDEX]


def _fast(tok_obj, **kw):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok_obj, **kw)


def test_bos_tokenizer_labels_cover_exactly_the_response(tiny_tokenizer):
    tok = tiny_tokenizer
    enc = encode(tok, PROMPT, RESPONSE, EncodeConfig())
    assert enc.input_ids[0] == tok.bos_token_id
    prompt_ids = tok(PROMPT + "\n").input_ids
    assert enc.n_prompt == len(prompt_ids) and enc.input_ids[: enc.n_prompt] == prompt_ids
    assert enc.labels[: enc.n_prompt] == [IGNORE_INDEX] * enc.n_prompt
    assert all(t != IGNORE_INDEX for t in enc.labels[enc.n_prompt:])
    assert tok.decode(_label_ids(enc)) == RESPONSE
    assert tok.decode(enc.input_ids, skip_special_tokens=True) == PROMPT + "\n" + RESPONSE
    assert tok.bos_token_id not in enc.input_ids[1:]
    assert not enc.truncated


def test_tokenizer_without_bos():
    from thoughtgrad.models.tiny import build_tokenizer

    tok = build_tokenizer(bos=False)
    enc = encode(tok, PROMPT, RESPONSE, EncodeConfig())
    assert tok.bos_token_id is None or enc.input_ids[0] != tok.bos_token_id
    assert tok.decode(_label_ids(enc)) == RESPONSE
    assert tok.decode(enc.input_ids) == PROMPT + "\n" + RESPONSE


def test_merge_across_the_boundary_is_not_split_into_the_prompt():
    """A character-level BPE (no pre-tokenizer) learns '\\nThe' as one token: the joined
    text would put the boundary inside a token; the labels must still be exactly the
    response's own tokens."""
    from tokenizers import Tokenizer, decoders, models, trainers

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.decoder = decoders.BPEDecoder()
    corpus = ["How many?\nThe final answer is 7", "Why?\nThe sky"] * 50
    core.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=80,
                             special_tokens=["<unk>", "<pad>"], show_progress=False))
    tok = _fast(core, unk_token="<unk>", pad_token="<pad>")
    prompt, response = "How many?", "The final answer is 7"
    whole = tok(prompt + "\n" + response, return_offsets_mapping=True)
    boundary = len(prompt) + 1
    assert any(a < boundary < b for a, b in whole["offset_mapping"]), "premise: a merge"
    enc = encode(tok, prompt, response, EncodeConfig())
    assert _label_ids(enc) == tok(response).input_ids
    assert "".join(tok.convert_ids_to_tokens(_label_ids(enc))) == response
    assert "".join(tok.convert_ids_to_tokens(enc.input_ids[: enc.n_prompt])) == prompt + "\n"


def test_sentencepiece_dummy_prefix_is_not_added_to_the_response():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
    core.decoder = decoders.Metaspace(prepend_scheme="always")
    corpus = ["What is two plus two?", "The final answer is 4", "1 \n 2"] * 20
    core.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=120,
                             special_tokens=["<unk>", "<s>"], show_progress=False))
    core.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                        special_tokens=[("<s>", 1)])
    tok = _fast(core, bos_token="<s>", unk_token="<unk>")
    prompt, response = "What is two plus two?", "The final answer is 4"
    assert tok.convert_ids_to_tokens(tok(response, add_special_tokens=False).input_ids)[0] \
        .startswith("\u2581"), "premise: the response alone gets a dummy prefix"
    enc = encode(tok, prompt, response, EncodeConfig())
    assert enc.input_ids == tok(prompt + "\n" + response).input_ids  # as the joined text
    assert tok.decode(enc.input_ids, skip_special_tokens=True) == prompt + "\n" + response
    assert enc.n_prompt == len(tok(prompt + "\n").input_ids)


def test_chat_template_turns_and_generation_prompt(tiny_tokenizer):
    tok = tiny_tokenizer
    enc = encode(tok, "Add 3 and 4.", "7", EncodeConfig(chat_template=True))
    rendered = tok.apply_chat_template(
        [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "Add 3 and 4."}], tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("<|assistant|>\n")
    assert enc.input_ids[: enc.n_prompt] == tok(rendered, add_special_tokens=False).input_ids
    assert enc.input_ids.count(tok.bos_token_id) == 1  # the template's BOS, not a second one
    assert tok.decode(_label_ids(enc)) == "7"
    other = encode(tok, "Add 3 and 4.", "7", EncodeConfig(chat_template=True,
                                                         system_prompt="Be terse."))
    assert "Be terse." in tok.decode(other.input_ids[: other.n_prompt])


def test_chat_template_missing_is_a_user_error(tiny_tokenizer):
    from thoughtgrad.errors import UserError
    from thoughtgrad.models.tiny import build_tokenizer

    tok = build_tokenizer()
    tok.chat_template = None
    with pytest.raises(UserError, match="no chat template"):
        encode(tok, "a", "b", EncodeConfig(chat_template=True))


def test_truncation_keeps_the_prompt_and_cuts_the_response_end(tiny_tokenizer):
    tok = tiny_tokenizer
    full = encode(tok, PROMPT, RESPONSE, EncodeConfig())
    cut = encode(tok, PROMPT, RESPONSE, EncodeConfig(max_length=full.n_prompt + 5))
    assert cut.truncated and len(cut) == full.n_prompt + 5
    assert cut.input_ids == full.input_ids[: full.n_prompt + 5]
    assert cut.labels == full.labels[: full.n_prompt + 5] and cut.n_loss_tokens == 5
    assert not encode(tok, PROMPT, RESPONSE, EncodeConfig(max_length=len(full))).truncated
    with pytest.raises(EncodeError, match="prompt alone has"):
        encode(tok, PROMPT, RESPONSE, EncodeConfig(max_length=full.n_prompt))


def test_answer_loss_span_marks_the_tokens_overlapping_the_answer(tiny_tokenizer):
    tok = tiny_tokenizer
    enc = encode(tok, PROMPT, RESPONSE, EncodeConfig(loss_span="answer"))
    r_ids = enc.input_ids[enc.n_prompt:]
    # Independent offsets: cumulative lengths of each token's own decoded text (ASCII text).
    pieces = [tok.decode([t]) for t in r_ids]
    assert "".join(pieces) == RESPONSE
    a, b = RESPONSE.rindex("72"), len(RESPONSE)
    pos, expect = 0, []
    for piece in pieces:
        expect.append(pos < b and pos + len(piece) > a)
        pos += len(piece)
    got = [t != IGNORE_INDEX for t in enc.labels[enc.n_prompt:]]
    assert got == expect and any(got)
    assert tok.decode(_label_ids(enc)).strip() == "72"
    with pytest.raises(EncodeError, match="no final answer"):
        encode(tok, PROMPT, RESPONSE, EncodeConfig(loss_span="answer", answer_pattern="zzz"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=40), st.integers(1, 200),
       st.integers(1, 16))
def test_token_batches_cover_once_and_respect_the_budget(lengths, budget, chunk):
    batches = token_batches(lengths, budget, chunk=chunk)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= budget
        assert len({i // chunk for i in b}) == 1  # never mixes chunks


def test_token_batches_sorting_reduces_padding():
    lengths = [10, 100, 10, 100, 10, 100, 10, 100]
    batches = token_batches(lengths, 200)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded == sum(lengths)  # equal lengths grouped: no padding at all


def test_collate_right_pads(tiny_tokenizer):
    tok = tiny_tokenizer
    a = encode(tok, "Add 3 and 4.", "7", EncodeConfig())
    b = encode(tok, PROMPT, RESPONSE, EncodeConfig())
    ids, labels, mask = collate([a, b], pad_id=tok.pad_token_id)
    assert ids.shape == labels.shape == mask.shape == (2, len(b))
    assert ids[0, : len(a)].tolist() == a.input_ids
    assert (ids[0, len(a):] == tok.pad_token_id).all()
    assert (labels[0, len(a):] == IGNORE_INDEX).all() and labels[1].tolist() == b.labels
    assert mask.sum(1).tolist() == [len(a), len(b)] and mask.dtype == torch.long


def test_answer_loss_span_with_a_reference_carries_only_the_answer(tiny_tokenizer):
    tok = tiny_tokenizer
    resp = "1. **Add**\n\n   40 + 40 = 80\n\nTherefore, Pete needs 20 bottles after 2 days."
    q = "Pete has 2 bills of $40. How many bottles?"
    enc = encode(tok, q, resp, EncodeConfig(loss_span="answer"), reference="20")
    assert tok.decode(_label_ids(enc)).strip() == "20"
    with pytest.raises(EncodeError, match="never states yes or no"):
        encode(tok, "Is ice cold?", "Ice is frozen water.", EncodeConfig(loss_span="answer"))
