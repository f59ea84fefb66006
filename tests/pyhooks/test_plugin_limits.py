"""The pytest plugin's limit_memory / limit_leaks markers and --ringpool, run inside pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def _run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(source)
    return pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", *args)


def test_limit_memory_fails_over_the_peak_and_names_the_line(pytester: pytest.Pytester) -> None:
    result = _run(pytester, """
        import pytest

        @pytest.mark.limit_memory("1 MB")
        def test_big_peak():
            data = [bytearray(100_000) for _ in range(30)]   # 3 MB at the peak, then freed
            del data

        @pytest.mark.limit_memory("1 MB")
        def test_small():
            data = [bytearray(1000) for _ in range(30)]

        @pytest.mark.limit_memory("4 MB")
        def test_under_a_larger_limit():
            data = [bytearray(100_000) for _ in range(30)]
    """)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*Test was limited to 1.0MiB but allocated 2.9MiB*",
                                 "*- test_big_peak.<locals>.<listcomp>:*test_limit_memory_fails_over_the_peak_and_names_the_line.py:5 -> 2.9MiB"])


def test_limit_leaks_per_call_stack_and_filter(pytester: pytest.Pytester) -> None:
    result = _run(pytester, """
        import pytest

        KEEP = []

        def keep(n):
            KEEP.append(bytearray(n))                        # KEEP LINE

        @pytest.mark.limit_leaks("100 KB")
        def test_leaks():
            for _ in range(200):
                keep(1000)

        @pytest.mark.limit_leaks("100 KB")
        def test_freed():
            for _ in range(200):
                bytearray(1000)

        @pytest.mark.limit_leaks("100 KB", filter_fn=lambda stack: stack.frames[0].function != "keep")
        def test_filtered():
            for _ in range(200):
                keep(1000)
    """)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*Test was allowed to leak 100.0KiB per location*",
                                 "*- keep:*test_limit_leaks_per_call_stack_and_filter.py:6 -> 20*KiB (401 blocks)"])


@pytest.mark.parametrize("marker, message", [
    ('limit_memory("lots")', "'lots' is not a size like '24 MB'"),
    ('limit_memory("1 XB")', "is not a size"),
    ("limit_memory()", "takes one size"),
    ('limit_leaks("1 MB", filter_fn=3)', "filter_fn must be callable"),
    ('limit_leaks("1 MB", warmups=2)', "unknown argument(s) warmups"),
    ('limit_memory("1 MB", current_thread_only=True)', "current_thread_only=True is not supported"),
    # sizes past a float's range (or Python's digit limit) ended in OverflowError
    ('limit_memory("' + "9" * 400 + ' PB")', "is larger than 18446744073709551615 bytes"),
    ('limit_leaks("1' + "0" * 5000 + ' B")', "is larger than 18446744073709551615 bytes"),
    ('limit_memory("16384 PB")', "'16384 PB' is larger than 18446744073709551615 bytes"),
], ids=lambda value: value[:48])
def test_bad_marker_arguments_are_usage_errors(pytester: pytest.Pytester, marker: str,
                                               message: str) -> None:
    result = _run(pytester, f"""
        import pytest

        @pytest.mark.{marker}
        def test_x():
            pass
    """)
    assert message in result.stdout.str() + result.stderr.str()
    assert result.ret != 0


def test_ringpool_switch_prints_top_lines_of_failing_tests(pytester: pytest.Pytester) -> None:
    result = _run(pytester, """
        KEEP = []

        def test_ok():
            KEEP.append(bytearray(50_000))

        def test_fails():
            KEEP.append(bytearray(70_000))                   # FAILING LINE
            assert False
    """, "--ringpool")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "ringpool: top Python lines" in out
    section = out.split("ringpool: top Python lines", 1)[1]
    assert "test_fails:" in section and ".py:7 -> 68.4KiB" in section
    assert "test_ok:" not in section


def test_no_leaks_marker_does_not_scan_the_heap(pytester: pytest.Pytester) -> None:
    result = _run(pytester, """
        import gc
        import pytest
        from allocator import Pool

        KEEP = []

        def forbidden(*args, **kwargs):
            raise AssertionError("gc.get_objects() called")

        @pytest.fixture(autouse=True)
        def no_heap_scan(monkeypatch):
            monkeypatch.setattr(gc, "get_objects", forbidden)

        @pytest.mark.ringpool_no_leaks
        def test_child_pool_leak():
            parent = Pool("parent")
            KEEP.append(parent)
            child = parent.child("kid")
            KEEP.append(child.alloc(16, tag="kid-tag"))
    """)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*pool 'parent/kid': kid-tag (1 block, 16 bytes)*"])


def test_a_test_that_stops_or_covers_the_hooks_fails_clearly(pytester: pytest.Pytester) -> None:
    # stopping the hooks inside the test would otherwise pass any limit on empty counters;
    # a hook left on top of ours (tracemalloc) is named, not an internal error
    result = _run(pytester, """
        import tracemalloc
        import pytest
        from allocator import _pyhooks

        @pytest.mark.limit_memory("1 KB")
        def test_stops_the_hooks():
            _pyhooks.stop()
            data = [bytearray(100_000) for _ in range(30)]

        @pytest.mark.limit_leaks("1 MB")
        def test_leaves_tracemalloc_on_top():
            tracemalloc.start()

        def test_next():
            tracemalloc.stop()
            from allocator import _pyhooks
            _pyhooks.stop()
    """)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*the test stopped ringpool's allocator hooks (allocator._pyhooks.stop()): its Python "
        "allocations were not measured*"])
    result.stdout.fnmatch_lines([
        "*ringpool's allocator hooks could not be stopped after the test: another allocator hook "
        "(tracemalloc?)*"])
    assert "INTERNALERROR" not in result.stdout.str() and "RuntimeError" not in result.stdout.str()


def test_a_test_that_restarts_the_hooks_fails_clearly(pytester: pytest.Pytester) -> None:
    # stop() and start() inside the test: the new counters began at zero, and
    # compared with the mark and base taken under the old ones they hid the
    # test's allocations (under --ringpool a 5 MB peak passed a 1 MB limit)
    source = """
        import pytest
        from allocator import _pyhooks

        HELD = [bytearray(1000) for _ in range(20_000)]   # 20 MB before the test

        @pytest.mark.limit_memory("1 MB")
        def test_restarts_and_peaks():
            _pyhooks.stop()
            _pyhooks.start(depth=8)
            data = [bytearray(10_000) for _ in range(500)]   # 5 MB

        @pytest.mark.limit_leaks("1 MB")
        def test_restarts_and_leaks():
            HELD.extend(bytearray(10_000) for _ in range(500))
            _pyhooks.stop()
            _pyhooks.start(depth=8)

        @pytest.mark.limit_memory("1 MB")
        def test_next_is_measured_again():
            data = [bytearray(10_000) for _ in range(500)]
    """
    for args in ((), ("--ringpool",)):
        result = _run(pytester, source, *args)
        result.assert_outcomes(failed=3)
        # counted in the failures' own sections: the short summary repeats their first
        # lines, and whole (not cut to the terminal's width) when $CI is set
        out = result.stdout.str().split("short test summary info")[0]
        assert out.count("the test stopped and started ringpool's allocator hooks again "
                         "(allocator._pyhooks.stop(), start()): its Python allocations were "
                         "not measured") == 2, args
        assert "Test was limited to 1.0MiB but allocated" in out, args
        assert "INTERNALERROR" not in out
