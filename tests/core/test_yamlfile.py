"""The strict YAML loader (a SafeLoader) and its messages: hostile or careless files get one bounded error
naming the file, line and what is wrong, in bounded time; ordinary files (merge keys included) load as before."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, model_validator

from harness.core.errors import HarnessError
from harness.core.yamlfile import MAX_DEPTH, read_yaml_mapping, validate


def _error(path: Path, text: str | bytes) -> str:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(HarnessError) as info:
        read_yaml_mapping(path, "task")
    return str(info.value)


def billion_laughs(levels: int = 9) -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_ordinary_yaml_and_merge_keys_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\nlist: [1, 2]\n")
    assert read_yaml_mapping(path, "task") == {"base": {"x": 1, "y": 2}, "other": {"x": 3, "y": 2}, "list": [1, 2]}


def test_duplicate_keys_are_refused_naming_line_and_key(tmp_path: Path) -> None:
    message = _error(tmp_path / "task.yaml", "name: a\ntype: generate\nname: b\n")
    assert "task.yaml line 3, column 1" in message and "key 'name' appears twice" in message and "first on line 1" in message
    nested = _error(tmp_path / "t2.yaml", "data:\n  test: a.jsonl\n  test: b.jsonl\n")
    assert "line 3" in nested and "'test' appears twice" in nested


def test_non_utf8_names_line_column_and_byte(tmp_path: Path) -> None:
    message = _error(tmp_path / "task.yaml", "name: a\ninput: caf\xe9\n".encode("latin-1"))
    assert message.endswith("task.yaml line 2, column 11 (byte 18): not UTF-8 text (byte 0xe9); save the file as UTF-8")


def test_control_character_names_the_line(tmp_path: Path) -> None:
    message = _error(tmp_path / "task.yaml", b"name: a\ninput: x\x00y\n")
    assert "line 2, column 9" in message and "#x0000 is not allowed" in message


@pytest.mark.parametrize("text", ["a: " + "[" * 20000 + "]" * 20000, "a: " + "{a: " * 5000 + "}" * 5000,
                                  "".join("  " * i + f"k{i}:\n" for i in range(2000))])
def test_deep_nesting_is_refused_in_bounded_time(tmp_path: Path, text: str) -> None:
    start = time.perf_counter()
    message = _error(tmp_path / "deep.yaml", text)
    assert time.perf_counter() - start < 5
    assert f"nested more than {MAX_DEPTH} levels deep" in message and "deep.yaml line" in message and len(message) < 400


def test_alias_bomb_is_refused_fast_with_a_short_message(tmp_path: Path) -> None:
    text = billion_laughs()
    assert len(text) < 700
    start = time.perf_counter()
    message = _error(tmp_path / "bomb.yaml", text)
    assert time.perf_counter() - start < 2
    assert "alias bomb" in message and "bomb.yaml line" in message and len(message) < 300


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    assert "recursive structure" in _error(tmp_path / "r.yaml", "a: &a [*a]\n")


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(billion_laughs(levels=3))  # 9 * 9 * 9 values
    assert len(read_yaml_mapping(path, "task")["c"]) == 9


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    size: int = 0


def test_validation_errors_bound_echoed_values() -> None:
    huge = {"name": "x", "size": ["y" * 100_000] * 1000}
    with pytest.raises(HarnessError) as info:
        validate(_Model, huge, "task.yaml", "task")
    message = str(info.value)
    assert message.startswith("task.yaml: invalid task: field 'size'") and len(message) < 600


def test_validation_errors_are_capped_in_number() -> None:
    raw = {"name": "x", **{f"extra{i}": i for i in range(100)}}
    with pytest.raises(HarnessError) as info:
        validate(_Model, raw, "task.yaml", "task")
    assert "(and 92 more problems)" in str(info.value) and len(str(info.value)) < 3000


class _Pair(BaseModel):
    model_config = ConfigDict(extra="forbid")
    a: str = ""
    b: str = ""

    @model_validator(mode="after")
    def _one(self) -> _Pair:
        if self.a and self.b:
            raise ValueError("give 'a' or 'b', not both")
        return self


def test_a_check_across_fields_does_not_echo_the_whole_file() -> None:
    with pytest.raises(HarnessError) as info:
        validate(_Pair, {"a": "x" * 10_000, "b": "y"}, "exp.yaml", "experiment")
    assert str(info.value) == "exp.yaml: invalid experiment: give 'a' or 'b', not both."
