"""Label inference and the errors a transcript file can earn at load time."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from hearth.prompts import (
    Message,
    PromptFileError,
    bundled_prompts,
    load_chat_format,
    load_transcript,
)
from hearth.prompts.placeholders import PlaceholderValues, fill_placeholders

# Transcripts in llama.cpp's prompt-file format, written for these tests in the shapes its own
# prompts/ folder uses: plain dialog, reason-act, placeholders, and a trailing space and newline.
FILES = {
    "dialog.txt": "Some scene.\n\nUser: Hello.\nBob: Hi there.\nUser: Bye.\nBob: Bye!\nUser: ",
    "reason.txt": (
        "Loop of thoughts.\n\nQuestion: 2+2?\nThought: Use a tool.\nAction: calculate[2+2]\n"
        "Observation: 4\nAnswer: 4\nQuestion: Sky?\nThought: Known.\nAnswer: Blue.\nQuestion:\n"
    ),
    "crlf.txt": "Intro\r\n\r\nMe: a\r\nYou: b\r\nMe:\r\n",
    "names.txt": "[[USER_NAME]] talks with [[AI_NAME]].\n\n[[USER_NAME]]: Hi\n"
    "[[AI_NAME]]: Hello\n[[USER_NAME]]:",
    "no-preamble.txt": "Customer: Is it open?\nClerk: Until six.\nCustomer:",
    "multiline.txt": "Help desk.\n\nUser: Two lines?\nAgent: Step 1: this\nStep 2: that\n"
    "User: Thanks\nAgent: You're welcome.\nUser:",
}
EXPECTED = {
    "dialog.txt": ("User:", "Bob:"),
    "reason.txt": ("Question:", "Thought:"),
    "crlf.txt": ("Me:", "You:"),
    "names.txt": ("User:", "Assistant:"),
    "no-preamble.txt": ("Customer:", "Clerk:"),
    "multiline.txt": ("User:", "Agent:"),
}
BUNDLED = {
    "chat-with-bob": ("User:", "Bob:"),
    "coder": ("User:", "Ada:"),
    "reason-act": ("Question:", "Thought:"),
    "chat-cs": ("Uživatel:", "Jana:"),
    "chat-pl": ("Użytkownik:", "Ola:"),
    "chat-zh": ("用户：", "小明："),
    "assistant": ("User:", "Assistant:"),
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


@pytest.mark.parametrize("name", sorted(FILES))
def test_labels_are_inferred(tmp_path: Path, name: str) -> None:
    layout = load_transcript(write(tmp_path, name, FILES[name])).layout
    assert (layout.user_label, layout.ai_label) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_labels(name: str) -> None:
    layout = load_chat_format(name, model_template=None).layout
    assert (layout.user_label, layout.ai_label) == BUNDLED[name]


def test_every_bundled_prompt_is_listed_and_loads() -> None:
    prompts = bundled_prompts()
    assert set(prompts) == set(BUNDLED)
    for name, path in prompts.items():
        assert path.is_file() and path.stem == name
        assert load_chat_format(str(path), model_template=None).name == name


def test_crlf_file_renders_with_plain_newlines(tmp_path: Path) -> None:
    fmt = load_transcript(write(tmp_path, "crlf.txt", FILES["crlf.txt"]))
    assert fmt.render([Message("user", "c")]).text == "Intro\n\nMe: a\nYou: b\nMe: c\nYou:"


def test_placeholders_are_filled_from_the_names(tmp_path: Path) -> None:
    path = write(tmp_path, "names.txt", FILES["names.txt"])
    fmt = load_transcript(path, user_name="Ann", ai_name="Max")
    assert (fmt.layout.user_label, fmt.layout.ai_label) == ("Ann:", "Max:")
    assert fmt.layout.preamble == "Ann talks with Max."


def test_date_placeholders() -> None:
    values = PlaceholderValues(now=datetime(2031, 4, 5, 9, 7))
    assert fill_placeholders("[[DATE_YEAR]] at [[DATE_TIME]]", values) == "2031 at 09:07"
    assert fill_placeholders("[[1, 2]] stays", values) == "[[1, 2]] stays"


def test_bundled_assistant_fills_year() -> None:
    fmt = load_chat_format("assistant", model_template=None, user_name="Eva", ai_name="Otto")
    assert f"Otto: It is {datetime.now():%Y}." in fmt.layout.examples
    assert "[[" not in fmt.layout.preamble + fmt.layout.examples


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is empty"),
        ("  \n\n", "is empty"),
        ("A scene.\nUser: hi\nBob: hello", "does not end with the user's label"),
        ("Intro.\nUser: hi\nUser:", "one speaker only"),
        ("Intro.\n\nUser:", "one speaker only"),
        ("Intro.\nA: x\nB: y\nA: z\nC: w\nA:", "ambiguous"),
        ("[[USR_NAME]]: hi\nBob: yo\n[[USR_NAME]]:", "unknown placeholder [[USR_NAME]]"),
    ],
)
def test_unusable_files_are_named_with_their_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, "broken.txt", text)
    with pytest.raises(PromptFileError) as raised:
        load_chat_format(str(path), model_template=None)
    assert str(path) in str(raised.value)
    assert problem in str(raised.value)


def test_not_utf8_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Uživatel: a\nJana: b\nUživatel:".encode("cp1250"))
    with pytest.raises(PromptFileError, match="not UTF-8"):
        load_transcript(path)


def test_flags_settle_an_ambiguous_file(tmp_path: Path) -> None:
    path = write(tmp_path, "three.txt", "Intro.\nA: x\nB: y\nA: z\nC: w\nA:")
    assert load_transcript(path, ai_name="C").layout.ai_label == "C:"


def test_user_name_names_the_user_of_a_file_without_final_label(tmp_path: Path) -> None:
    path = write(tmp_path, "open.txt", "Intro.\n\nKid: Why?\nSage: Because.")
    fmt = load_transcript(path, user_name="Kid")
    assert (fmt.layout.user_label, fmt.layout.ai_label) == ("Kid:", "Sage:")
    assert fmt.render([Message("user", "How?")]).text.endswith("Sage: Because.\nKid: How?\nSage:")


def test_ai_name_that_is_not_a_speaker_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "dialog.txt", FILES["dialog.txt"])
    assert load_transcript(path, ai_name="Zed").layout.ai_label == "Bob:"
    assert "Zed" in caplog.text


def test_urls_and_times_are_not_labels(tmp_path: Path) -> None:
    path = write(tmp_path, "links.txt", "Intro.\nUser: see\nhttp://x.org\n12:30 ok\nBot: ok\nUser:")
    assert load_transcript(path).layout.speakers == ("User", "Bot")
