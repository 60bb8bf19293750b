"""Rows of every format -> internal examples; bad rows report `file:line: what is wrong`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tunesmith.data.formats import detect_format, parse_row, parse_rows
from tunesmith.data.loading import Row, load_rows
from tunesmith.data.types import Conversation, Message, Preference, Prompt, Text, Unpaired
from tunesmith.errors import DataError, UserError

S, U, A, T = "system", "user", "assistant", "tool"


def _chat(*turns: tuple[str, str]) -> Conversation:
    return Conversation(tuple(Message(role, content) for role, content in turns))


def _msgs(*turns: tuple[str, str]) -> tuple[Message, ...]:
    return tuple(Message(role, content) for role, content in turns)


def _bad(row: dict[str, Any], fmt: str) -> str:
    with pytest.raises(DataError) as info:
        parse_row(row, fmt, "f.jsonl:7")
    message = str(info.value)
    assert message.startswith("f.jsonl:7: ")
    return message.removeprefix("f.jsonl:7: ")


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---- positive cases, one or more per format ----------------------------------------------------


def test_alpaca_joins_input_and_keeps_system() -> None:
    row = {"instruction": "Translate.", "input": "Bonjour", "output": "Hello", "system": "Be brief."}
    assert parse_row(row, "alpaca", "x") == _chat((S, "Be brief."), (U, "Translate.\n\nBonjour"), (A, "Hello"))
    no_input = {"instruction": "Say hi.", "input": "  ", "output": "Hi"}
    assert parse_row(no_input, "alpaca", "x") == _chat((U, "Say hi."), (A, "Hi"))


def test_sharegpt_multiturn_with_tools_and_system() -> None:
    row = {
        "system": "You help.",
        "tools": '[{"name": "f"}]',
        "conversations": [
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello"},
            {"from": "human", "value": "Call f"},
            {"from": "function_call", "value": '{"name": "f"}'},
            {"from": "observation", "value": "42"},
            {"from": "gpt", "value": "It is 42."},
        ],
    }
    assert parse_row(row, "sharegpt", "x") == _chat(
        (S, 'You help.\n\nAvailable tools:\n[{"name": "f"}]'),
        (U, "Hi"), (A, "Hello"), (U, "Call f"), (A, '{"name": "f"}'), (T, "42"), (A, "It is 42."),
    )


def test_sharegpt_empty_tools_add_no_system_and_inner_system_is_kept() -> None:
    row = {"tools": "[]", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}
    assert parse_row(row, "sharegpt", "x") == _chat((U, "Hi"), (A, "Yo"))
    row["conversations"].insert(0, {"from": "system", "value": "Inner."})
    assert parse_row(row, "sharegpt", "x") == _chat((S, "Inner."), (U, "Hi"), (A, "Yo"))


def test_messages_multiturn_with_developer_parts_and_tool_calls() -> None:
    call = {"type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
    row = {"messages": [
        {"role": "developer", "content": "Rules."},
        {"role": "user", "content": [{"type": "text", "text": "Add "}, {"type": "text", "text": "1"}]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "1"},
        {"role": "assistant", "content": "The sum is 1."},
    ]}
    assert parse_row(row, "messages", "x") == _chat(
        (S, "Rules."), (U, "Add 1"), (A, '{"name": "add", "arguments": {"a": 1}}'), (T, "1"), (A, "The sum is 1."),
    )


def test_prompt_completion_as_text_and_as_messages() -> None:
    assert parse_row({"prompt": "2+2=", "completion": "4"}, "prompt_completion", "x") == _chat((U, "2+2="), (A, "4"))
    row = {
        "prompt": [{"role": "system", "content": "Math."}, {"role": "user", "content": "2+2="}],
        "completion": [{"role": "assistant", "content": "4"}],
    }
    assert parse_row(row, "prompt_completion", "x") == _chat((S, "Math."), (U, "2+2="), (A, "4"))


def test_text() -> None:
    assert parse_row({"text": "Once upon a time."}, "text", "x") == Text("Once upon a time.")


def test_preference_with_text_prompt_and_message_answers() -> None:
    assert parse_row({"prompt": "Q", "chosen": "good", "rejected": "bad"}, "preference", "x") == Preference(
        _msgs((U, "Q")), _msgs((A, "good")), _msgs((A, "bad"))
    )
    row = {
        "prompt": [{"role": "user", "content": "Q"}],
        "chosen": [{"role": "assistant", "content": "good"}],
        "rejected": [{"role": "assistant", "content": "bad"}],
    }
    assert parse_row(row, "preference", "x") == Preference(_msgs((U, "Q")), _msgs((A, "good")), _msgs((A, "bad")))


def test_preference_llama_factory_style() -> None:
    row = {
        "conversations": [{"from": "system", "value": "Sys"}, {"from": "human", "value": "Q"}],
        "chosen": {"from": "gpt", "value": "good"},
        "rejected": {"from": "gpt", "value": "bad"},
    }
    assert parse_row(row, "preference", "x") == Preference(
        _msgs((S, "Sys"), (U, "Q")), _msgs((A, "good")), _msgs((A, "bad"))
    )


def test_preference_hh_transcripts_split_at_the_last_assistant_turn() -> None:
    shared = "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Tell a joke"
    row = {"chosen": shared + "\n\nAssistant: A good joke.", "rejected": shared + "\n\nAssistant: No."}
    assert parse_row(row, "preference", "x") == Preference(
        _msgs((U, "Hi"), (A, "Hello."), (U, "Tell a joke")), _msgs((A, "A good joke.")), _msgs((A, "No."))
    )


def test_preference_implicit_prompt_from_message_lists() -> None:
    question = {"role": "user", "content": "Q"}
    row = {
        "chosen": [question, {"role": "assistant", "content": "good"}],
        "rejected": [question, {"role": "assistant", "content": "bad"}],
    }
    assert parse_row(row, "preference", "x") == Preference(_msgs((U, "Q")), _msgs((A, "good")), _msgs((A, "bad")))


def test_kto_label_from_boolean_or_csv_text() -> None:
    row = {"prompt": "Q", "completion": "A", "label": False}
    assert parse_row(row, "kto", "x") == Unpaired(_msgs((U, "Q")), _msgs((A, "A")), False)
    assert parse_row({**row, "label": "True"}, "kto", "x").desirable is True


def test_prompt_keeps_other_fields_for_rewards() -> None:
    example = parse_row({"question": "2+2?", "answer": "#### 4"}, "prompt", "x")
    assert example == Prompt(_msgs((U, "2+2?")))
    assert example.fields == {"answer": "#### 4"}
    chat = parse_row({"prompt": [{"role": "user", "content": "Hi"}], "id": 3}, "prompt", "x")
    assert chat.prompt == _msgs((U, "Hi")) and chat.fields == {"id": 3}


# ---- bad rows -------------------------------------------------------------------------------------


def test_missing_field() -> None:
    assert _bad({"instruction": "Do it."}, "alpaca") == "missing field 'output'"
    assert _bad({"instruction": "Do it.", "output": None}, "alpaca") == "missing field 'output'"
    assert _bad({"answer": "4"}, "prompt") == "missing field 'prompt' (or 'question')"


def test_wrong_type() -> None:
    assert _bad({"instruction": "Do it.", "output": 5}, "alpaca") == "field 'output' should be text, got number"
    assert _bad({"messages": "hi"}, "messages") == "field 'messages' should be a list of messages, got text"
    bad_label = {"prompt": "Q", "completion": "A", "label": 1}
    assert _bad(bad_label, "kto") == "field 'label' should be true or false, got number 1"
    audio = {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}
    assert "only text and image content parts are supported, got 'input_audio'" in _bad(audio, "messages")


def test_empty_responses() -> None:
    assert _bad({"instruction": "Do it.", "output": "  "}, "alpaca") == "field 'output' is empty"
    turns = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "\n"}]
    assert _bad({"conversations": turns}, "sharegpt") == "the last assistant turn is empty"
    assert _bad({"prompt": "Q", "chosen": "", "rejected": "no"}, "preference") == "field 'chosen' has an empty response"
    hh = {"chosen": "\n\nHuman: Hi\n\nAssistant: ", "rejected": "\n\nHuman: Hi\n\nAssistant: Hey"}
    assert _bad(hh, "preference") == "field 'chosen' has an empty response"
    assert _bad({"text": " "}, "text") == "field 'text' is empty"


def test_conversation_without_assistant_turn() -> None:
    row = {"messages": [{"role": "user", "content": "Hi"}]}
    assert _bad(row, "messages") == "the conversation has no assistant turn, so there is nothing to train on"


def test_unknown_role_suggests_the_nearest() -> None:
    row = {"conversations": [{"from": "humann", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}
    assert _bad(row, "sharegpt").startswith("'conversations' turn 1: unknown role 'humann' (did you mean 'human'?)")


def test_hh_transcripts_with_different_prompts() -> None:
    row = {"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"}
    assert "differ before their last assistant turn" in _bad(row, "preference")
    assert "whole transcript" in _bad({"chosen": "x", "rejected": "y"}, "preference")


def test_unknown_format_name_suggests_the_nearest() -> None:
    with pytest.raises(UserError, match=r"unknown data format 'sharegtp' \(did you mean 'sharegpt'\?\)"):
        parse_row({}, "sharegtp", "x")
    with pytest.raises(UserError, match=r"on_bad_row must be 'error' or 'skip', got 'skp' \(did you mean 'skip'\?\)"):
        parse_rows([], "text", on_bad_row="skp")


# ---- whole files: locations, skip mode ------------------------------------------------------------


def _mixed_alpaca_file(tmp_path: Path) -> Path:
    return _jsonl(tmp_path / "a.jsonl", [
        '{"instruction": "one", "output": "1"}',
        "",
        '{"instruction": "two", "output": 2}',
        '{"instruction": "three"}',
        '{"instruction": "four", "output": " "}',
        '{"instruction": "five", "output": "5"}',
    ])


def test_bad_rows_in_a_file_are_reported_at_their_line(tmp_path: Path) -> None:
    path = _mixed_alpaca_file(tmp_path)
    with pytest.raises(DataError, match=f"^{path}:3: field 'output' should be text, got number; 2 more bad row") as info:
        parse_rows(load_rows(path), "auto")
    assert "(3 of 5 rows bad in total)" in str(info.value), "every row is checked, not only up to the first bad one"
    assert "data.on_bad_row: skip" in str(info.value), "the error says how to go on"


def test_skip_mode_keeps_good_rows_and_records_each_bad_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _mixed_alpaca_file(tmp_path)
    parsed = parse_rows(load_rows(path), "auto", on_bad_row="skip")
    assert (parsed.format, parsed.detected) == ("alpaca", True)
    assert [ex.messages[0].content for ex in parsed.examples] == ["one", "five"]
    assert parsed.bad_rows == [
        f"{path}:3: field 'output' should be text, got number",
        f"{path}:4: missing field 'output'",
        f"{path}:5: field 'output' is empty",
    ]
    assert "skipped 3 of 5 rows" in caplog.text


def test_skip_mode_with_every_row_bad_is_an_error(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "t.jsonl", ['{"text": ""}', '{"text": 3}'])
    first = f"{path}:1: field 'text' is empty"
    with pytest.raises(DataError, match=f"all 2 rows are bad for format 'text' .*first: {first}"):
        parse_rows(load_rows(path), "text", on_bad_row="skip")


def test_csv_bad_row_reports_its_line(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('instruction,output\n"multi\nline",ok\nq,\n', encoding="utf-8")
    with pytest.raises(DataError, match=f"^{path}:4: field 'output' is empty \\(1 of 2 rows bad in total\\)"):
        parse_rows(load_rows(path), "alpaca")


def test_parquet_bad_row_reports_its_row(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"prompt": ["Q1", "Q2"], "completion": ["A1", ""]}), path)
    with pytest.raises(DataError, match=f"^{path}:row 2: field 'completion' has an empty response \\(1 of 2 rows"):
        parse_rows(load_rows(path), "auto")


def test_explicit_format_is_not_marked_detected() -> None:
    parsed = parse_rows([Row({"text": "hi", "instruction": "x", "output": "y"}, "f:1")], "text")
    assert (parsed.format, parsed.detected, parsed.examples) == ("text", False, [Text("hi")])


# ---- detection ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "expected"), [
    ({"instruction": "i", "input": "", "output": "o", "text": "rendered"}, "alpaca"),
    ({"conversations": [], "tools": "[]"}, "sharegpt"),
    ({"messages": []}, "messages"),
    ({"prompt": "p", "completion": "c"}, "prompt_completion"),
    ({"prompt": "p", "completion": "c", "label": True}, "kto"),
    ({"prompt": "p", "chosen": "c", "rejected": "r"}, "preference"),
    ({"prompt": "p", "answer": "4"}, "prompt"),
    ({"question": "q", "answer": "4"}, "prompt"),
    ({"text": "t"}, "text"),
    ({"text": "t", "instruction": None, "output": None}, "text"),  # null fields, as datasets fills them
])
def test_detect_format(fields: dict[str, Any], expected: str) -> None:
    assert detect_format([fields]) == expected


def test_detect_rejects_a_mix_of_formats() -> None:
    rows = [{"text": "t"}] * 3 + [{"messages": []}]
    with pytest.raises(UserError, match=r"several formats: text \(3 rows\), messages \(1 rows\)"):
        detect_format(rows)


def test_detect_unknown_fields_lists_fields_and_formats() -> None:
    with pytest.raises(UserError) as info:
        detect_format([{"ctx": "a", "endings": []}])
    message = str(info.value)
    assert "fields ['ctx', 'endings']" in message
    assert "alpaca: instruction + output" in message and "prompt: prompt or question" in message


REAL_FILES = [
    ("alpaca_1k.jsonl", "alpaca", 1000),
    ("sharegpt_glaive_toolcall_300.jsonl", "sharegpt", 300),
    ("preference_dpo_en_demo_300.jsonl", "preference", 300),
    ("preference_hh_harmless_base_test_500.jsonl", "preference", 500),
    ("gsm8k_test.jsonl", "prompt", 1319),
    ("tinystories_train_first1000.txt", "text", None),
    ("tinystories_valid_head.txt", "text", None),
]


@pytest.mark.parametrize(("name", "expected", "count"), REAL_FILES)
def test_real_files_are_detected_and_every_row_parses(
    shared_data: Path, name: str, expected: str, count: int | None
) -> None:
    path = shared_data / name
    rows = load_rows(path)
    parsed = parse_rows(rows, "auto", on_bad_row="skip")
    assert parsed.format == expected
    if count is not None:
        assert len(rows) == count
    # The one bad row of the real files: HH's line 87 prefers an empty answer to a harmful one.
    hh_line_87 = [f"{path}:87: field 'chosen' has an empty response"]
    assert parsed.bad_rows == (hh_line_87 if name.startswith("preference_hh") else [])
    assert len(parsed.examples) == len(rows) - len(parsed.bad_rows)


def test_real_sharegpt_tool_calls_become_assistant_and_tool_turns(shared_data: Path) -> None:
    rows = load_rows(shared_data / "sharegpt_glaive_toolcall_300.jsonl")
    raw = rows[0].data["conversations"]
    example = parse_row(rows[0].data, "sharegpt", rows[0].where)
    assert example.messages[0].content.startswith("Available tools:\n[")
    roles = {"human": U, "gpt": A, "function_call": A, "observation": T}
    assert [m.role for m in example.messages[1:]] == [roles[turn["from"]] for turn in raw]
    assert json.loads(example.messages[4].content)["name"] == "search_recipes"


def test_the_real_hh_file_names_its_one_bad_row_and_how_to_go_on(shared_data: Path) -> None:
    path = shared_data / "preference_hh_harmless_base_test_500.jsonl"
    with pytest.raises(DataError, match=f"^{path}:87: field 'chosen' has an empty response "
                                        r"\(1 of 500 rows bad in total\)\. .*data\.on_bad_row: skip"):
        parse_rows(load_rows(path), "auto")
