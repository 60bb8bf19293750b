"""Chat templates, loss masks and tokenization: exactly the assistant answers and their end of turn are trained.

Two tokenizers: the real stories260k SentencePiece one (byte fallback, Metaspace; the chat markers are not in
its vocabulary) when ../shared is present, and a byte-level BPE built here that has the chat markers as
special tokens, so the masks are tested even without ../shared.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from tunesmith.data import tokenize as tok_module
from tunesmith.data.templates import TEMPLATES, apply_template, end_of_turn, resolve_chat_template
from tunesmith.data.tokenize import check_round_trip, tokenize_conversation, tokenize_prompt, tokenize_text
from tunesmith.data.types import IGNORE_INDEX, Conversation, Message, Sample
from tunesmith.errors import UserError
from tunesmith.recipe import registry

STORIES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stories260k"
MARKERS = ["<|im_start|>", "<|im_end|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CORPUS = [
    "Once upon a time there was a little dog named Spot.",
    "What is two plus two? Four. And three plus three? Six, I think.",
    "You are a terse assistant. The weather tool says it is sunny.",
]


def _chat(*turns: tuple[str, str]) -> Conversation:
    return Conversation(tuple(Message(role, content) for role, content in turns))  # type: ignore[arg-type]


CHAT = _chat(
    ("system", "You are terse."),
    ("user", "What is two plus two?"),
    ("assistant", "Four."),
    ("user", "And three plus three, in a café?"),
    ("assistant", "Six, I think ☕."),
)
TOOL_CHAT = _chat(
    ("user", "Weather in Paris?"),
    ("assistant", "Let me check."),
    ("tool", '{"sky": "sunny"}'),
    ("assistant", "It is sunny."),
    ("user", "Thanks!"),
    ("assistant", "You are welcome."),
)
EOT = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>", "alpaca": "</s>", "plain": "</s>"}
LEAD = {"chatml": "", "llama3": "", "alpaca": "", "plain": " "}  # plain's answer keeps its leading space


@pytest.fixture(scope="module")
def bpe() -> PreTrainedTokenizerFast:
    """A byte-level BPE with bos/eos/pad and the chat markers as special tokens; no chat template."""
    model = Tokenizer(models.BPE())
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>", *MARKERS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    model.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=model, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


@pytest.fixture(scope="module")
def stories() -> PreTrainedTokenizerFast:
    if not STORIES.is_dir():
        pytest.skip(f"stories260k fixture not found at {STORIES} (../shared is absent)")
    return AutoTokenizer.from_pretrained(STORIES)


@pytest.fixture(params=["bpe", "stories"])
def tokenizer(request: pytest.FixtureRequest) -> PreTrainedTokenizerFast:
    return request.getfixturevalue(request.param)


def _trained_runs(tokenizer: PreTrainedTokenizerFast, sample: Sample) -> list[list[int]]:
    """Maximal runs of consecutive trained tokens, with labels checked to equal the ids (not shifted)."""
    runs: list[list[int]] = []
    previous = IGNORE_INDEX
    for token, label in zip(sample.input_ids, sample.labels):
        if label != IGNORE_INDEX:
            assert label == token
            if previous == IGNORE_INDEX:
                runs.append([])
            runs[-1].append(token)
        previous = label
    return runs


def _expected(tokenizer: PreTrainedTokenizerFast, name: str, answers: list[str]) -> list[str]:
    texts = [LEAD[name] + a + EOT[name] for a in answers]
    if tokenizer.name_or_path == str(STORIES):  # SentencePiece decoding drops a leading space
        texts = [t.removeprefix(" ") for t in texts]
    return texts


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_only_answers_and_end_of_turn_are_trained(tokenizer: PreTrainedTokenizerFast, name: str) -> None:
    apply_template(tokenizer, name)
    sample = tokenize_conversation(tokenizer, CHAT, max_len=4096)
    runs = _trained_runs(tokenizer, sample)
    assert [tokenizer.decode(r) for r in runs] == _expected(tokenizer, name, ["Four.", "Six, I think ☕."])
    assert not sample.truncated
    if EOT[name] in tokenizer.get_vocab():  # a real special token: one trained id closes each answer
        assert [r[-1] for r in runs] == [tokenizer.convert_tokens_to_ids(EOT[name])] * 2


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_last_mode_trains_only_the_final_answer(tokenizer: PreTrainedTokenizerFast, name: str) -> None:
    apply_template(tokenizer, name)
    everything = tokenize_conversation(tokenizer, TOOL_CHAT, max_len=4096)
    last = tokenize_conversation(tokenizer, TOOL_CHAT, max_len=4096, train_on="last")
    assert last.input_ids == everything.input_ids
    assert [tokenizer.decode(r) for r in _trained_runs(tokenizer, last)] == _expected(
        tokenizer, name, ["You are welcome."]
    )
    assert len(_trained_runs(tokenizer, everything)) == 3


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_training_ids_round_trip_through_apply_chat_template(tokenizer: PreTrainedTokenizerFast, name: str) -> None:
    apply_template(tokenizer, name)
    for chat in (CHAT, TOOL_CHAT):
        check_round_trip(tokenizer, chat)
        # The generation prompt is exactly what precedes the first answer, which starts training.
        first_answer = next(k for k, m in enumerate(chat.messages) if m.role == "assistant")
        prompt = tokenize_prompt(tokenizer, chat.messages[:first_answer])
        sample = tokenize_conversation(tokenizer, chat, max_len=4096)
        first_trained = next(i for i, label in enumerate(sample.labels) if label != IGNORE_INDEX)
        assert sample.input_ids[: len(prompt)] == prompt
        assert first_trained == len(prompt)


def test_round_trip_error_shows_the_first_difference(bpe: PreTrainedTokenizerFast, monkeypatch) -> None:
    apply_template(bpe, "chatml")
    real = tok_module.tokenize_conversation

    def corrupted(*args, **kwargs) -> Sample:
        sample = real(*args, **kwargs)
        sample.input_ids[3] = bpe.convert_tokens_to_ids("<pad>")
        return sample

    monkeypatch.setattr(tok_module, "tokenize_conversation", corrupted)
    with pytest.raises(UserError, match="differ from apply_chat_template at token 3 "):
        check_round_trip(bpe, CHAT)


def test_masks_do_not_rely_on_prefix_tokenization(stories: PreTrainedTokenizerFast) -> None:
    """On SentencePiece, ids of the parts are not the ids of the whole; the masks must still be exact."""
    apply_template(stories, "alpaca")
    chat = _chat(("user", "Hi"), ("assistant", "Hello friend"))
    messages = [{"role": m.role, "content": m.content} for m in chat.messages]
    text = stories.apply_chat_template(messages, tokenize=False)
    prompt = stories.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    whole = stories(text, add_special_tokens=False)["input_ids"]
    parts = [stories(part, add_special_tokens=False)["input_ids"] for part in (prompt, text[len(prompt) :])]
    assert parts[0] + parts[1] != whole  # the answer alone gets a "▁" prepended: "▁Hello" vs "H", "e", "ll", "o"

    sample = tokenize_conversation(stories, chat, max_len=512)
    assert sample.input_ids == whole
    assert [stories.decode(r) for r in _trained_runs(stories, sample)] == ["Hello friend</s>"]


def test_truncation_keeps_the_start(tokenizer: PreTrainedTokenizerFast) -> None:
    apply_template(tokenizer, "chatml")
    full = tokenize_conversation(tokenizer, CHAT, max_len=4096)
    cut = tokenize_conversation(tokenizer, CHAT, max_len=len(full) - 5)
    assert cut.truncated and not full.truncated
    assert cut.input_ids == full.input_ids[:-5] and cut.labels == full.labels[:-5]


def test_user_mistakes_fail_clearly(bpe: PreTrainedTokenizerFast) -> None:
    bpe.chat_template = None
    with pytest.raises(UserError, match="no chat template"):
        tokenize_conversation(bpe, CHAT, max_len=64)
    apply_template(bpe, "chatml")
    with pytest.raises(UserError, match="did you mean 'last'"):
        tokenize_conversation(bpe, CHAT, max_len=64, train_on="lats")
    with pytest.raises(UserError, match="no assistant message"):
        tokenize_conversation(bpe, _chat(("user", "Hi")), max_len=64)
    with pytest.raises(UserError, match="starts with an assistant message"):
        tokenize_conversation(bpe, _chat(("assistant", "Hi"), ("user", "Hello")), max_len=64)
    # A template whose generation prompt is not how it renders an answer cannot be masked.
    bpe.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}" \
        "{% if add_generation_prompt %}ASSISTANT>{% endif %}"
    with pytest.raises(UserError, match="renders the prompt before assistant turn 1 differently"):
        tokenize_conversation(bpe, _chat(("user", "Hi"), ("assistant", "Hello")), max_len=64)


def test_resolve_chat_template(bpe: PreTrainedTokenizerFast) -> None:
    bpe.chat_template = None
    assert resolve_chat_template(bpe, None) == resolve_chat_template(bpe, "auto") == TEMPLATES["plain"]
    bpe.chat_template = "{{ messages[0]['content'] }}"
    assert resolve_chat_template(bpe, "auto") == "{{ messages[0]['content'] }}"
    assert resolve_chat_template(bpe, "llama3") == TEMPLATES["llama3"]
    with pytest.raises(UserError, match="unknown chat template 'chatlm' \\(did you mean 'chatml'\\?\\)"):
        resolve_chat_template(bpe, "chatlm")
    with pytest.raises(UserError, match="did you mean 'llama3'"):
        apply_template(bpe, "llama-3")
    apply_template(bpe, "alpaca")
    assert bpe.chat_template == TEMPLATES["alpaca"]
    assert set(TEMPLATES) == set(registry.TEMPLATES)
    assert end_of_turn(bpe, "chatml") == "<|im_end|>" and end_of_turn(bpe, "plain") == "</s>"


def test_cpt_blocks_join_documents_with_eos(tokenizer: PreTrainedTokenizerFast) -> None:
    docs = ["Once upon a time there was a dog.", "Spot saw the sun.", "The end."]
    blocks = tokenize_text(tokenizer, docs, block_len=8)
    stream = []
    for doc in docs:
        stream += tokenizer(doc)["input_ids"] + [tokenizer.eos_token_id]  # BOS only if this tokenizer adds it
    assert stream.count(tokenizer.eos_token_id) == 3
    assert [t for b in blocks for t in b.input_ids] == stream[: len(stream) - (len(stream) % 8 == 1)]
    assert all(len(b) == 8 for b in blocks[:-1]) and 1 < len(blocks[-1]) <= 8
    assert all(b.labels == b.input_ids for b in blocks)
    if tokenizer.name_or_path == str(STORIES):
        assert stream[0] == tokenizer.bos_token_id and stream.count(tokenizer.bos_token_id) == 3
    else:
        assert tokenizer.bos_token_id not in stream
