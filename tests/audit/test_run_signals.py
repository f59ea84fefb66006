"""`run` and `run --preload` wait for the program as a shell waits for a foreground job.

Ctrl-C (SIGINT to the whole process group) ended the CLI's wait with KeyboardInterrupt,
and subprocess.run then killed the program a quarter of a second later, in the middle
of its own handling of the interrupt; SIGTERM sent to the CLI alone (`kill PID`) ended
the CLI and left the program running on its own. The program here is an interpreter
under the interposer (`run --preload`), whose report the CLI then shows, and the same
with no interposer (`run`, which then finds no pool report: status 1 after the
program's own 0, as before)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from _signals_testlib import CTRL_C, TERM, WAIT, interrupted

SAFE_PATH = {"PYTHONSAFEPATH": "1"}


def _interrupted(argv: list[str], cwd: Path, sig: int, group: bool) -> tuple[int, bytes, bytes]:
    return interrupted(argv, cwd, sig, group, SAFE_PATH)


def _cli(*words: str) -> list[str]:
    return [sys.executable, "-m", "audit", "run", *words]


@pytest.mark.parametrize("mode", ["--preload", "pool reports"])
def test_ctrl_c_reaches_the_program_which_ends_as_it_likes(mode: str, tmp_path: Path) -> None:
    (tmp_path / "ctrlc.py").write_text(CTRL_C)
    program = [sys.executable, "ctrlc.py"]
    plain = _interrupted(program, tmp_path, signal.SIGINT, True)
    assert plain[:2] == (0, b"ready\ncaught\ncleaned up\n")
    words = ["--preload"] if mode == "--preload" else []
    status, out, err = _interrupted(_cli(*words, "--output", str(tmp_path / "t.txt"), "--", *program),
                                    tmp_path, signal.SIGINT, True)
    assert out == plain[1]
    assert b"interrupted" not in err
    if mode == "--preload":
        assert status == 0, err
        assert (tmp_path / "t.txt").exists()
    else:       # no pool report from a program that links no libringpool: as without a signal
        assert status == 1 and b"exited with status 0" in err and b"wrote no report" in err, err


def test_sigterm_sent_to_the_cli_reaches_the_program(tmp_path: Path) -> None:
    (tmp_path / "term.py").write_text(TERM)
    program = [sys.executable, "term.py"]
    plain = _interrupted(program, tmp_path, signal.SIGTERM, False)
    assert plain[:2] == (5, b"ready\nterminated\n")
    status, out, err = _interrupted(_cli("--preload", "--output", str(tmp_path / "t.txt"), "--",
                                         *program), tmp_path, signal.SIGTERM, False)
    assert (status, out) == (5, plain[1]), err
    assert (tmp_path / "t.txt").exists()


def test_a_program_not_catching_ctrl_c_ends_by_sigint(tmp_path: Path) -> None:
    (tmp_path / "wait.py").write_text(WAIT)
    program = [sys.executable, "wait.py"]
    plain = _interrupted(program, tmp_path, signal.SIGINT, True)
    assert plain[0] == -signal.SIGINT
    status, out, err = _interrupted(_cli("--preload", "--output", str(tmp_path / "t.txt"), "--",
                                         *program), tmp_path, signal.SIGINT, True)
    assert (status, out) == (130, plain[1]), err
