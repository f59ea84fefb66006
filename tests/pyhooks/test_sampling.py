"""``run --python --sample-rate``: estimates per line against the exact counts of
the same script, reproducible seeds, the report's fields, and every output format."""

from __future__ import annotations

import gzip
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import line_of, load, run_cli, run_cli_out, run_python

Script = Callable[[str, str], Path]

# Three lines with known allocations: two hold about 10 MB each (many small
# blocks and a few large ones), one allocates 12 MB that it frees again (its
# sampled blocks must all be forgotten: no false negative in the free filter).
KNOWN = """
    import gc
    gc.collect()
    SMALL = []
    BIG = []
    for i in range(10000):
        SMALL.append(bytearray(1000))                  # SMALL
    for i in range(500):
        BIG.append(b"x" * (20000 + i))                 # BIG
    for r in range(4):
        tmp = [bytearray(300) for _ in range(10000)]   # FREED
        del tmp
"""

RATE = "1e-3"


def rows_of(out: str) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in json.loads(out)["rows"]}


def run_json(script: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path,
             *options: str) -> tuple[dict[str, dict[str, Any]], str]:
    code, out, err = run_cli_out(["run", "--python", "--format", "json", *options, "--", str(script)],
                                 capsys, tmp_path)
    assert code == 0, err
    return rows_of(out), err


@pytest.fixture
def known(script: Script) -> Path:
    return script("known.py", KNOWN)


def test_estimates_per_line_are_within_tolerance_of_the_exact_counts(
        known: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    keys = {m: f"{known}:{line_of(known, '# ' + m)} (<module>)" for m in ("SMALL", "BIG", "FREED")}
    exact, err = run_json(known, capsys, tmp_path)
    assert "estimated" not in err
    assert keys["FREED"] not in exact
    for m in ("SMALL", "BIG"):
        assert exact[keys[m]]["bytes"] > 9_000_000
    # At 1e-3 per byte a site of B bytes has a relative standard deviation of
    # 1/sqrt(B * 1e-3), about 1% for these 10 MB sites: 6% is 6 deviations.
    # The blocks of SMALL are half 57-byte objects (sampled with probability
    # 0.056, each weighing 18 blocks): about 2% for the site, 10% allowed.
    ratios: dict[str, list[float]] = {"SMALL": [], "BIG": []}
    for seed in range(1, 6):
        sampled, err = run_json(known, capsys, tmp_path, "--sample-rate", RATE, "--sample-seed", str(seed))
        assert "estimated (sampled at 0.001)" in err
        assert keys["FREED"] not in sampled, f"seed {seed}: freed blocks still counted"
        for m in ratios:
            got, want = sampled[keys[m]], exact[keys[m]]
            ratio = got["bytes"] / want["bytes"]
            ratios[m].append(ratio)
            assert abs(ratio - 1) < 0.06, (seed, m, got, want)
            assert abs(got["blocks"] / want["blocks"] - 1) < 0.10, (seed, m, got, want)
    for m, values in ratios.items():
        assert abs(statistics.mean(values) - 1) < 0.03, (m, values)


def test_the_same_seed_samples_the_same_blocks(known: Path, tmp_path: Path) -> None:
    def report(seed: str, name: str) -> Any:
        out = tmp_path / name
        r = run_python("-m", "audit._pyboot", str(known),
                       env={"RINGPOOL_PYTHON_REPORT": str(out), "RINGPOOL_PYTHON_SAMPLE_RATE": "1e-3",
                            "RINGPOOL_PYTHON_SAMPLE_SEED": seed, "PYTHONHASHSEED": "0"})
        assert r.returncode == 0, r.stderr
        doc = load(out)
        line = line_of(known, "# SMALL")
        return [s for s in doc["sites"] if s["frames"] and s["frames"][0]["line"] == line
                and s["frames"][0]["file"] == str(known)][0]

    first, again, other = report("42", "a.json"), report("42", "b.json"), report("43", "c.json")
    assert first == again
    assert first["samples"] != other["samples"] or first["est_blocks"] != other["est_blocks"]


def test_sampled_report_fields(known: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    r = run_python("-m", "audit._pyboot", str(known),
                   env={"RINGPOOL_PYTHON_REPORT": str(out), "RINGPOOL_PYTHON_SAMPLE_RATE": "0.001",
                        "RINGPOOL_PYTHON_SAMPLE_SEED": "5"})
    assert r.returncode == 0, r.stderr
    doc = load(out)
    assert doc["sample_rate"] == 0.001 and doc["sample_period"] == 1000
    assert doc["sites"], doc
    for section in (doc, doc["after_finalization"]):
        assert section["totals"]["blocks"] == sum(s["blocks"] for s in section["sites"])
        assert section["totals"]["bytes"] == sum(s["bytes"] for s in section["sites"])
    for s in doc["sites"]:
        assert s["sampled_blocks"] >= 1 and s["samples"] >= s["sampled_blocks"]
        assert s["bytes"] == round(s["est_bytes"]) == round(s["samples"] * 1000)
        assert s["blocks"] == round(s["est_blocks"]) >= s["sampled_blocks"]
        assert s["allocs"] == round(s["est_allocs"]) and s["est_alloc_bytes"] >= s["est_bytes"]


@pytest.mark.parametrize("rate", ["5e-324", "1e-310"])
def test_a_rate_too_small_to_invert_writes_json(known: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str], rate: str) -> None:
    # 1 / rate overflows for a subnormal rate: the report said "sample_period": inf,
    # which is not JSON, and every reader refused it
    out = tmp_path / "r.json"
    r = run_python("-m", "audit._pyboot", str(known),
                   env={"RINGPOOL_PYTHON_REPORT": str(out), "RINGPOOL_PYTHON_SAMPLE_RATE": rate})
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text(encoding="utf-8"), parse_constant=lambda c: pytest.fail(c))
    assert doc["sample_rate"] == float(rate) and doc["sample_period"] == sys.float_info.max
    code, _, err = run_cli(["show", str(out)], capsys)
    assert code == 0, err


def test_sampled_reports_in_show_diff_and_every_format(known: Path, capsys: pytest.CaptureFixture[str],
                                                       tmp_path: Path) -> None:
    d = tmp_path / "r"
    code, _, err = run_cli(["run", "--python", "--sample-rate", RATE, "--sample-seed", "3",
                            "--report-dir", str(d), "--", str(known)], capsys)
    assert code == 0, err
    [report] = list(d.glob("python.*.json"))
    key = f"{known}:{line_of(known, '# SMALL')} (<module>)"
    code, out, err = run_cli(["show", str(report)], capsys)
    assert code == 0, err
    assert "(estimates: each byte sampled with probability 0.001)" in out
    assert "~blocks" in out and "~bytes" in out and "~peak" in out and key in out
    code, out, err = run_cli(["diff", str(report), str(report)], capsys)
    assert code == 0, err
    assert "~" in out
    for fmt in ("table", "github", "markdown", "json", "csv", "folded", "speedscope", "html"):
        code, out, err = run_cli_out(["show", str(report), "--format", fmt], capsys, tmp_path)
        assert code == 0 and out, (fmt, err)
    pb = tmp_path / "p.pb.gz"
    assert run_cli(["show", str(report), "--format", "pprof", "--output", str(pb), "--force"], capsys)[0] == 0
    raw = gzip.decompress(pb.read_bytes())
    assert top_level_varint(raw, 12) == 1000          # Profile.period: 1 / rate
    assert b"sampled at 0.001 per byte" in raw
    # an exact report does not join a sampled one in one profile
    exact_dir = tmp_path / "exact"
    assert run_cli(["run", "--python", "--report-dir", str(exact_dir), "--", str(known)], capsys)[0] == 0
    [exact] = list(exact_dir.glob("python.*.json"))
    code, _, err = run_cli(["show", str(exact), str(report), "--format", "pprof", "--output",
                            str(tmp_path / "both.pb.gz"), "--force"], capsys)
    assert code == 1 and "sampled" in err


def top_level_varint(message: bytes, field: int) -> int | None:
    """The value of a top-level varint field of a protobuf message (None if absent)."""
    i, found = 0, None

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            b = message[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value

    while i < len(message):
        tag = varint()
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value = varint()
            if number == field:
                found = value
        elif wire == 2:
            length = varint()
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")
    return found


@pytest.mark.parametrize("argv, message", [
    (["--sample-rate", "0"], "the sample rate must be in (0, 1]"),
    (["--sample-rate", "1.5"], "the sample rate must be in (0, 1]"),
    (["--sample-rate", "nan"], "the sample rate must be in (0, 1]"),
    (["--sample-seed", "3"], "--sample-seed needs --sample-rate"),
])
def test_bad_sampling_options(known: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                              message: str) -> None:
    code, _, err = run_cli(["run", "--python", *argv, "--", str(known)], capsys)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("env, message", [
    ({"RINGPOOL_PYTHON_SAMPLE_RATE": "often"}, "must be a number in (0, 1]"),
    ({"RINGPOOL_PYTHON_SAMPLE_RATE": "2"}, "must be a number in (0, 1]"),
    ({"RINGPOOL_PYTHON_SAMPLE_RATE": "1e-3", "RINGPOOL_PYTHON_SAMPLE_SEED": "x"}, "must be an integer"),
    ({"RINGPOOL_PYTHON_SAMPLE_RATE": "1e-3", "RINGPOOL_PYTHON_SAMPLE_SEED": "-1"}, "from 0 to 2**64-1"),
])
def test_bad_sampling_environment(known: Path, tmp_path: Path, env: dict[str, str], message: str) -> None:
    r = run_python("-m", "audit._pyboot", str(known),
                   env={"RINGPOOL_PYTHON_REPORT": str(tmp_path / "r.json"), **env})
    assert r.returncode == 1 and message in r.stderr and not (tmp_path / "r.json").exists()


def test_start_checks_the_rate_and_seed(tmp_path: Path) -> None:
    r = run_python("-c", """if True:
        from allocator import _pyhooks
        for kw in ({"sample_rate": -1.0}, {"sample_rate": 1.5}, {"sample_rate": float("nan")},
                   {"seed": 3}, {"sample_rate": 0.5, "seed": -1}, {"sample_rate": 0.5, "seed": 2**64}):
            try:
                _pyhooks.start(**kw)
            except ValueError as exc:
                print("refused", exc)
        try:
            _pyhooks.start(sample_rate=0.5, seed="x")
        except TypeError as exc:
            print("refused", exc)
        print(_pyhooks.is_tracing())
        _pyhooks.start(sample_rate=1.0, seed=0)     # rate 1: every byte, so every block
        data = [bytearray(100) for _ in range(1000)]
        rows = [r for r in _pyhooks.sites() if r[0] and r[0][0][0] == "<string>"]
        _pyhooks.stop()
        print(_pyhooks.sample_rate(), sum(r[1] for r in rows) >= 2000, sum(r[2] for r in rows) >= 100 * 1000)
    """)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len([ln for ln in lines if ln.startswith("refused")]) == 7, r.stdout
    assert "seed applies to sampling" in r.stdout
    assert lines[-2:] == ["False", "1.0 True True"], r.stdout


@pytest.mark.threads
def test_sampling_survives_threads_and_fork(script: Script, tmp_path: Path) -> None:
    s = script("forky.py", """
        import os, threading
        HOLD = []
        def work():
            for _ in range(3000):
                HOLD.append(bytearray(2000))      # THREADS
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        pid = os.fork()
        if pid == 0:
            KEEP = [bytearray(4000) for _ in range(2000)]     # CHILD
            raise SystemExit(0)
        os.waitpid(pid, 0)
    """)
    r = run_python("-m", "audit._pyboot", str(s),
                   env={"RINGPOOL_PYTHON_REPORT": str(tmp_path / "python.%p.json"),
                        "RINGPOOL_PYTHON_SAMPLE_RATE": "1e-3", "RINGPOOL_PYTHON_SAMPLE_SEED": "9"})
    assert r.returncode == 0, r.stderr
    docs = [load(p) for p in tmp_path.glob("python.*.json")]
    assert len(docs) == 2

    def line_bytes(doc: Any, marker: str) -> int:
        n = line_of(s, marker)
        return sum(x["bytes"] for x in doc["sites"]
                   if x["frames"] and (x["frames"][0]["file"], x["frames"][0]["line"]) == (str(s), n))

    parent = [d for d in docs if line_bytes(d, "# CHILD") == 0]
    child = [d for d in docs if line_bytes(d, "# CHILD") > 0]
    assert len(parent) == 1 and len(child) == 1, [line_bytes(d, "# CHILD") for d in docs]
    # 12000 blocks of 2001 bytes (24 MB) and 2000 of 4001 (8 MB), with their objects:
    # relative deviations of 0.6% and 1.1% at 1e-3
    assert abs(line_bytes(parent[0], "# THREADS") / (12000 * 2001) - 1) < 0.08
    assert abs(line_bytes(child[0], "# CHILD") / (2000 * 4001) - 1) < 0.10


def test_sampling_over_the_c_allocator(known: Path, tmp_path: Path) -> None:
    # PYTHONMALLOC=malloc: the object domains do not hand large requests to the raw
    # one (the hooks check at start), and the estimates hold the same way
    out = tmp_path / "r.json"
    r = run_python("-m", "audit._pyboot", str(known),
                   env={"RINGPOOL_PYTHON_REPORT": str(out), "RINGPOOL_PYTHON_SAMPLE_RATE": "1e-3",
                        "RINGPOOL_PYTHON_SAMPLE_SEED": "4", "PYTHONMALLOC": "malloc"})
    assert r.returncode == 0, r.stderr
    small = line_of(known, "# SMALL")
    got = sum(s["bytes"] for s in load(out)["sites"]
              if s["frames"] and (s["frames"][0]["file"], s["frames"][0]["line"]) == (str(known), small))
    assert abs(got / (10000 * (1001 + 57)) - 1) < 0.06, got


def test_scripts_compile_as_python_compiles_them(script: Script, tmp_path: Path) -> None:
    # the launcher compiles the script through the C compiler entry point: a coding
    # cookie still applies, and a NUL byte is still refused
    s = tmp_path / "latin.py"
    s.write_bytes("# -*- coding: latin-1 -*-\nimport sys\nprint('caf\xe9', __file__ == sys.argv[0])\n"
                  .encode("latin-1"))
    env = {"RINGPOOL_PYTHON_REPORT": str(tmp_path / "r.%p.json")}
    r = run_python("-m", "audit._pyboot", str(s), env=env)
    assert r.returncode == 0 and r.stdout == "caf\xe9 True\n", r.stderr
    r = run_python("-m", "audit._pyboot", "-c", "print('c\u00e9')", env=env)
    assert r.returncode == 0 and r.stdout == "c\u00e9\n", r.stderr
    bad = tmp_path / "nul.py"
    bad.write_bytes(b"x = 1\x00\n")
    r = run_python("-m", "audit._pyboot", str(bad), env=env)
    assert r.returncode != 0 and "null bytes" in r.stderr


@pytest.mark.parametrize("size, rate, count", [
    (16, 0.05, 200_000),     # 49-byte objects: the object domain's small-block hooks
    (2000, 0.001, 60_000),   # 2033 bytes: pymalloc hands them to the raw domain's hooks
])
def test_sampled_blocks_follow_the_per_byte_law(script: Script, size: int, rate: float,
                                                count: int) -> None:
    # count blocks of n bytes, each byte sampled with probability rate: a block is
    # sampled with probability P = 1 - (1 - rate)^n and holds n * rate samples on
    # average.  The numbers of sampled blocks and of samples are checked against
    # their binomial means, within 5 standard deviations, for three seeds.  (A
    # countdown off by one byte moves P for the 49-byte blocks by 7 deviations, or
    # their samples by 36.)
    s = script("law.py", f"""
        import sys
        from allocator import _pyhooks
        keep = [None] * {count}
        n = sys.getsizeof(bytes({size}))
        for seed in (1, 2, 3):
            _pyhooks.start(sample_rate={rate}, seed=seed)
            for i in range({count}):
                keep[i] = bytes({size})      # BLOCKS
            rows = [r for r in _pyhooks.sites() if r[0] and r[0][0][:2] == (__file__, 8)]
            _pyhooks.stop()
            print(n, rows[0][1], rows[0][2])
    """)
    assert line_of(s, "# BLOCKS") == 8
    r = run_python(str(s), env={"PYTHONHASHSEED": "0"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert len(lines) == 9, r.stdout
    for n, est_blocks, est_bytes in zip(*[iter(int(x) for x in lines)] * 3):
        assert n == size + 33
        p = 1 - (1 - rate) ** n
        sampled = est_blocks * p                   # the estimate weighs each by 1 / P
        want = count * p
        assert abs(sampled - want) < 5 * (count * p * (1 - p)) ** 0.5 + 1, (n, sampled, want)
        samples = est_bytes * rate                 # the estimate weighs each by 1 / rate
        want = count * n * rate
        assert abs(samples - want) < 5 * (count * n * rate * (1 - rate)) ** 0.5 + 1, (n, samples, want)


def test_sampled_hooks_keep_the_guard_of_the_calls_they_serve(script: Script) -> None:
    # sites() builds its list with the guard raised; the sampled resize hook it
    # reaches must leave the guard raised, or the allocations after sites()
    # returns are taken for the hooks' own (at rate 1 every byte is sampled)
    s = script("guard.py", """
        from allocator import _pyhooks
        _pyhooks.start(sample_rate=1.0, seed=1)
        junk = [bytes(100 + i) for i in range(20)]
        for _ in range(3):
            rows = _pyhooks.sites()
        buf = bytes(100000)                      # AFTER
        rows = {r[0][0][1]: r[2] for r in _pyhooks.sites() if r[0] and r[0][0][0] == __file__}
        _pyhooks.stop()
        print(rows.get(6, 0), rows.get(5, 0))
    """)
    assert line_of(s, "# AFTER") == 6
    r = run_python(str(s))
    assert r.returncode == 0, r.stderr
    after, own = (int(x) for x in r.stdout.split())
    assert after == 100000 + 33 and own == 0, r.stdout


def test_sampled_small_blocks_keep_sys_getallocatedblocks(script: Script) -> None:
    # the sampled small blocks are raw blocks that pymalloc made and counted, so
    # what sys.getallocatedblocks() says after they are freed is what it said before
    s = script("blocks.py", """
        import sys
        from allocator import _pyhooks
        junk = [bytes(20) for _ in range(1000)]
        del junk
        before = sys.getallocatedblocks()
        _pyhooks.start(sample_rate=0.01, seed=3)
        for _ in range(5):
            junk = [bytes(20) for _ in range(100000)]
            del junk
        during = sys.getallocatedblocks()
        _pyhooks.stop()
        print(before, during)
    """)
    r = run_python(str(s))
    assert r.returncode == 0, r.stderr
    before, during = (int(x) for x in r.stdout.split())
    assert abs(during - before) < 200, (before, during)


def test_sampled_mode_over_pymalloc_keeps_pymallocs_free(script: Script) -> None:
    # over pymalloc the object domains are installed with pymalloc's own free (the
    # sampled blocks are raw blocks, forgotten by the RAW domain's free hook); over
    # the C allocator every domain's free is hooked
    s = script("free.py", """
        import ctypes
        from allocator import _pyhooks
        class Allocator(ctypes.Structure):
            _fields_ = [(name, ctypes.c_void_p) for name in ("ctx", "malloc", "calloc", "realloc", "free")]
        def get(domain):
            a = Allocator()
            ctypes.pythonapi.PyMem_GetAllocator(ctypes.c_int(domain), ctypes.byref(a))
            return a
        before = [get(d) for d in (0, 1, 2)]
        _pyhooks.start(sample_rate=1e-4, seed=1)
        during = [get(d) for d in (0, 1, 2)]
        _pyhooks.stop()
        print(*[int(b.free == d.free) for b, d in zip(before, during)],
              *[int(b.malloc == d.malloc) for b, d in zip(before, during)])
    """)
    # pymalloc named: the environment may choose another (make test-py-asan: malloc)
    r = run_python(str(s), env={"PYTHONMALLOC": "pymalloc"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "1", "1", "0", "0", "0"], r.stdout
    r = run_python(str(s), env={"PYTHONMALLOC": "malloc"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "0", "0", "0", "0", "0"], r.stdout
