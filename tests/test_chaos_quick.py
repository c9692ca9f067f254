"""The fast part of bench/chaos.py (docs/reliability.md): a SIGKILL of prepare and of mask with 2 workers, each
followed by a rerun that must give the uninterrupted bytes, leave no temporary files and no live process;
and every bad-input case, which must exit 2 with one line and write nothing."""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import chaos

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc"),
]

# Cases that do not meet the expectation yet, with what they do instead.
KNOWN_FAILURES: dict[str, str] = {}  # case -> why it fails today (a strict xfail)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> chaos.Inputs:
    return chaos.build_inputs(tmp_path_factory.mktemp("chaos"), pretrain_steps=2)


@pytest.fixture(scope="module")
def bad_input_results(inputs) -> dict[str, chaos.BadInputResult]:
    return {r.case: r for r in chaos.run_bad_inputs(inputs)}


@pytest.mark.parametrize("stage", chaos.stage_variants(["prepare --workers 2", "mask --workers 2"]), ids=chaos.label)
def test_a_killed_stage_reruns_to_the_uninterrupted_bytes(inputs, stage):
    report = chaos.kill_stage(inputs, stage, kills=1, rng=random.Random(0))
    assert report.passed, report.kills


def test_the_checks_see_a_difference(inputs, tmp_path):
    reference = chaos.folder_digests(inputs.work / "prepared")
    changed = tmp_path / "prepared"
    shutil.copytree(inputs.work / "prepared", changed)
    (changed / "vocab.txt").write_text("[PAD]\n")
    (changed / "x.tmp-1").write_text("")
    assert chaos.folder_digests(changed) != reference
    assert chaos.leftover_files(changed) == ["x.tmp-1"]


def _expected_to_pass(case: str):
    """Strict: a case that starts passing fails here, so that it is taken off KNOWN_FAILURES."""
    marks = [pytest.mark.xfail(reason=KNOWN_FAILURES[case], strict=True)] if case in KNOWN_FAILURES else []
    return pytest.param(case, marks=marks, id=case)


@pytest.mark.parametrize("case", [_expected_to_pass(c.name) for c in chaos.BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(bad_input_results, case):
    result = bad_input_results[case]
    assert result.passed, result
