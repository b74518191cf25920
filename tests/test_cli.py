"""The troth command as a user runs it: exit codes, output formats, files written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import MINIMAL, ROOT, SEED, write_variant

TROTH = str(Path(sys.executable).with_name("troth"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TROTH, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )


def test_check_seed_exits_zero():
    r = run("check", str(SEED.relative_to(ROOT)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 errors" in r.stdout


def test_check_exits_one_on_lint_errors_and_names_the_place(tmp_path):
    path = write_variant(MINIMAL, tmp_path, lambda d: d["recipients"][0].pop("transfer"))
    r = run("check", str(path))
    assert r.returncode == 1
    line = next(x for x in r.stdout.splitlines() if "T020" in x)
    assert line.startswith(f"{path}:")
    assert "error T020" in line


def test_check_json_output(tmp_path):
    path = write_variant(MINIMAL, tmp_path, lambda d: d["recipients"][0].pop("transfer"))
    r = run("check", str(path), "--format", "json")
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report["errors"] >= 1
    finding = next(f for f in report["findings"] if f["code"] == "T020")
    assert finding["file"] == str(path)
    assert finding["line"] > 1
    assert finding["path"].startswith("recipients[0]")


def test_render_writes_every_output(tmp_path):
    r = run("render", str(SEED), "--format", "md", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    for locale in ("en", "de"):
        for name in (
            f"privacy-policy.{locale}.md",
            f"tracking.{locale}.md",
            f"recipients.{locale}.md",
            f"record-of-processing.{locale}.csv",
            f"record-of-processing.{locale}.json",
        ):
            assert name in names


def test_render_one_locale_and_reject_an_undeclared_one(tmp_path):
    r = run("render", str(SEED), "-l", "de", "-o", str(tmp_path / "de"))
    assert r.returncode == 0
    assert all(".de." in p.name for p in (tmp_path / "de").iterdir())
    r = run("render", str(SEED), "-l", "fr", "-o", str(tmp_path / "fr"))
    assert r.returncode == 2
    assert "fr" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "fr").exists()


def test_diff_of_identical_policies_exits_zero():
    r = run("diff", str(SEED), str(SEED))
    assert r.returncode == 0
    assert "0 material" in r.stdout


def test_unknown_command_and_option_exit_two():
    assert run("frobnicate").returncode == 2
    assert run("check", str(SEED), "--format", "yaml").returncode == 2
