"""Bad input: every broken policy gives one clear ``path:LINE:COL: message`` line and exit 2.

The corpus lives in ``tests/broken/``. Each file holds one defect and states what ``troth check``
must say about it in a first-line comment::

    # expect: LINE:COL: SUBSTRING

(``COL`` may be ``*``). Files that cannot carry a comment (empty, binary, not UTF-8) put the same
line in a sidecar ``NAME.expect``. The CLI is run as a user would run it: as a subprocess, from
the repository root, with a time limit and a 1 GiB address-space cap.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

from troth.errors import Location, PolicyFileError
from troth.policy.loader import MAX_POLICY_BYTES, load_policy, parse_policy

REPO = Path(__file__).resolve().parents[1]
BROKEN = REPO / "tests" / "broken"
MINIMAL = REPO / "tests" / "fixtures" / "minimal.yaml"
TROTH = str(Path(sys.executable).with_name("troth"))
TIMEOUT = 20
MEMORY_CAP = 1 << 30  # 1 GiB
MIN_CORPUS = 24
EXPECT = re.compile(r"# expect: (?P<line>[1-9]\d*):(?P<col>[1-9]\d*|\*): (?P<text>\S.*)")


@dataclass(frozen=True)
class Expectation:
    line: int
    col: int | None  # None: any column
    text: str


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def _corpus() -> list[Path]:
    return sorted(p for p in BROKEN.iterdir() if p.is_file() and p.suffix != ".expect")


def _expectation(path: Path) -> Expectation:
    sidecar = path.with_name(path.name + ".expect")
    source = sidecar if sidecar.exists() else path
    first = source.read_bytes().split(b"\n", 1)[0].rstrip(b"\r")
    match = EXPECT.fullmatch(first.decode("utf-8", "replace"))
    assert match, f"{source.name}: first line is not '# expect: LINE:COL: SUBSTRING': {first!r}"
    col = match["col"]
    return Expectation(int(match["line"]), None if col == "*" else int(col), match["text"])


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _troth(*args: str, timeout: float = TIMEOUT) -> Outcome:
    try:
        done = subprocess.run(
            [TROTH, *args],
            cwd=REPO,
            capture_output=True,
            timeout=timeout,
            preexec_fn=_limit_memory,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"troth {' '.join(args)[:200]} did not finish within {timeout} s")
    return Outcome(
        done.returncode,
        done.stdout.decode("utf-8", "backslashreplace"),
        done.stderr.decode("utf-8", "backslashreplace"),
    )


def _one_error_line(outcome: Outcome) -> str:
    """The single error line of a run that must fail with exit 2 and print nothing else."""
    assert "Traceback" not in outcome.stderr + outcome.stdout, outcome.stderr[-3000:]
    assert outcome.code == 2, f"exit {outcome.code}; stderr: {outcome.stderr[-3000:]}"
    assert outcome.stdout == ""
    assert outcome.stderr.endswith("\n")
    line = outcome.stderr.removesuffix("\n")
    assert line.strip(), "stderr is empty"
    assert "\n" not in line, f"more than one line: {outcome.stderr!r}"
    assert "\r" not in line, f"carriage return in the message: {outcome.stderr!r}"
    controls = [c for c in line if unicodedata.category(c) == "Cc"]
    assert not controls, f"raw control characters {controls!r} in the message: {line!r}"
    return line


# --- the corpus ------------------------------------------------------------------------------


def test_corpus_is_complete() -> None:
    files = _corpus()
    assert len(files) >= MIN_CORPUS, f"only {len(files)} broken files in {BROKEN}"
    for path in files:
        _expectation(path)  # asserts that it is there and well formed
    names = {p.name for p in files}
    sidecars = BROKEN.glob("*.expect")
    orphans = [p.name for p in sidecars if p.name.removesuffix(".expect") not in names]
    assert not orphans, f"sidecars without a policy file: {orphans}"


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: p.name)
def test_check_reports_broken_file(path: Path) -> None:
    expected = _expectation(path)
    rel = path.relative_to(REPO).as_posix()
    line = _one_error_line(_troth("check", rel))
    prefix = f"{rel}:{expected.line}:"
    if expected.col is not None:
        prefix += f"{expected.col}:"
    assert line.startswith(prefix), f"expected {prefix!r}..., got {line!r}"
    assert re.match(rf"{re.escape(rel)}:\d+:\d+: \S", line), line
    assert expected.text in line, f"{expected.text!r} not in {line!r}"


# --- files that are not policies at all ------------------------------------------------------


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "policy.yaml"
    with big.open("w", encoding="utf-8") as fh:
        fh.write(MINIMAL.read_text(encoding="utf-8"))
        fh.write("# " + "x" * (50 * 1024 * 1024) + "\n")
    line = _one_error_line(_troth("check", str(big)))
    assert line.startswith(f"{big}:1:1: ")
    assert f"at most {MAX_POLICY_BYTES // 1_048_576} MiB" in line


def test_directory_instead_of_file() -> None:
    line = _one_error_line(_troth("check", "tests/broken"))
    assert line.startswith("tests/broken:1:1: ")
    assert "not a regular file" in line


def test_missing_file() -> None:
    line = _one_error_line(_troth("check", "tests/broken/no-such-policy.yaml"))
    assert line == "tests/broken/no-such-policy.yaml:1:1: no such file"


def test_unreadable_file_is_a_policy_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Running as root makes chmod 000 useless, so make opening the file fail instead.
    target = tmp_path / "policy.yaml"
    target.write_text(MINIMAL.read_text(encoding="utf-8"), encoding="utf-8")
    real_open = Path.open

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        if self == target:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(PolicyFileError) as info:
        load_policy(target)
    (problem,) = info.value.problems
    assert problem.location == Location(str(target), 1, 1)
    assert "Permission denied" in problem.message


# --- bounded time and memory on large broken files -------------------------------------------


def test_largest_allowed_file_of_tiny_values_stays_within_limits(tmp_path: Path) -> None:
    """A file at the size limit made of two-byte list items must not exhaust 1 GiB or 20 s."""
    head = MINIMAL.read_text(encoding="utf-8").replace("troth: 1\n", "troth: 2\n", 1)
    head += "example_values: ["
    items = (MAX_POLICY_BYTES - len(head.encode()) - 2) // 2
    text = head + ",".join(["a"] * items) + "]\n"
    assert len(text.encode()) <= MAX_POLICY_BYTES
    big = tmp_path / "policy.yaml"
    big.write_text(text, encoding="utf-8")
    line = _one_error_line(_troth("check", str(big)))
    assert re.match(rf"{re.escape(str(big))}:\d+:\d+: \S", line), line


def test_many_dangling_references_are_reported_quickly(tmp_path: Path) -> None:
    """Did-you-mean hints must not make a file with many bad references take minutes."""
    n = 3000
    text = MINIMAL.read_text(encoding="utf-8")
    declared = "".join(f"  - {{id: c{i:05d}, name: Category {i}}}\n" for i in range(n))
    text = text.replace("categories:\n", "categories:\n" + declared, 1)
    dangling = ", ".join(f"z{i:05d}" for i in range(n))
    text = text.replace("categories: [account]", f"categories: [{dangling}]", 1)
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    outcome = _troth("check", str(path), timeout=10)
    assert "Traceback" not in outcome.stderr
    assert outcome.code == 2, outcome.stderr[-2000:]
    assert outcome.stdout == ""
    lines = outcome.stderr.splitlines()
    assert len(lines) > 10
    assert lines[-1].endswith("... and more problems; fix these first")
    for line in lines[:-1]:
        assert re.match(rf"{re.escape(str(path))}:\d+:\d+: unknown data category 'z\d+'", line)


# --- other commands ------------------------------------------------------------------------

BROKEN_SAMPLES = ["basis_typo.yaml", "empty.yaml", "binary_png.yaml", "yaml_unclosed_bracket.yaml"]


@pytest.mark.parametrize("name", BROKEN_SAMPLES)
def test_render_refuses_broken_file_and_writes_nothing(name: str, tmp_path: Path) -> None:
    rel = f"tests/broken/{name}"
    existing = tmp_path / "existing"
    existing.mkdir()
    line = _one_error_line(_troth("render", rel, "-o", str(existing)))
    assert line.startswith(f"{rel}:")
    assert list(existing.iterdir()) == []
    fresh = tmp_path / "fresh"
    line = _one_error_line(_troth("render", rel, "-o", str(fresh), "--format", "md"))
    assert line.startswith(f"{rel}:")
    assert not fresh.exists()


@pytest.mark.parametrize("name", BROKEN_SAMPLES)
def test_diff_refuses_broken_file(name: str) -> None:
    rel = f"tests/broken/{name}"
    good = MINIMAL.relative_to(REPO).as_posix()
    for old, new in ((good, rel), (rel, good)):
        line = _one_error_line(_troth("diff", old, new))
        assert line.startswith(f"{rel}:"), line


# --- in-process: several problems, nested locations ------------------------------------------


def _minimal_with(edits: dict[int, str]) -> str:
    lines = MINIMAL.read_text(encoding="utf-8").splitlines()
    for number, text in edits.items():
        lines[number - 1] = text
    return "\n".join(lines) + "\n"


def test_every_problem_is_reported_sorted_by_line() -> None:
    text = _minimal_with(
        {
            67: "    category: marketing",
            7: "languages: en",
            38: "        desciption: Run your account.",
        }
    )
    with pytest.raises(PolicyFileError) as info:
        parse_policy(text, "policy.yaml")
    problems = info.value.problems
    assert [(p.location.line, p.location.column) for p in problems] == [
        (7, 12),
        (37, 9),
        (38, 9),
        (67, 15),
    ]
    assert "languages: expected a list" in problems[0].message
    assert "missing required key 'description'" in problems[1].message
    assert "unknown key 'desciption'" in problems[2].message
    assert "did you mean 'description'" in problems[2].message
    assert "'marketing' is not one of" in problems[3].message
    assert str(info.value).splitlines() == [str(p) for p in problems]
    assert all(str(p).startswith("policy.yaml:") for p in problems)


def test_renamed_required_key_is_reported_as_unknown_and_missing() -> None:
    with pytest.raises(PolicyFileError) as info:
        parse_policy(_minimal_with({33: "purpose:"}), "policy.yaml")
    messages = [p.message for p in info.value.problems]
    assert any("unknown key 'purpose'" in m and "did you mean 'purposes'" in m for m in messages)
    assert any("missing required key 'purposes'" in m for m in messages)


def test_nested_error_points_at_the_value() -> None:
    with pytest.raises(PolicyFileError) as info:
        parse_policy(_minimal_with({52: "        retention: {period: 13 months}"}), "p.yaml")
    (problem,) = info.value.problems
    assert problem.location == Location("p.yaml", 52, 29)
    assert problem.message.startswith("purposes[1].activities[0].retention.period: ")
    assert str(problem).startswith("p.yaml:52:29: ")


def test_nested_reference_error_points_at_the_list_item() -> None:
    text = _minimal_with({78: "    purposes: [analytics, provide_servise]"})
    with pytest.raises(PolicyFileError) as info:
        parse_policy(text, "p.yaml")
    (problem,) = info.value.problems
    assert problem.location.line == 78
    assert problem.location.column == 27
    assert "unknown purpose 'provide_servise' (did you mean 'provide_service'?)" in problem.message


def test_minimal_fixture_still_loads() -> None:
    """Guards the corpus: its files are minimal.yaml plus one defect each."""
    loaded = parse_policy(MINIMAL.read_bytes(), str(MINIMAL))
    assert loaded.policy.id == "minimal"
