"""The pytest plugin: ringpool_no_leaks marker and fixture, run inside pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def _run(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(source)
    return pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")


def test_marker_fails_a_leaking_test_naming_pool_and_tags(pytester: pytest.Pytester) -> None:
    result = _run(pytester, """
        import pytest
        from allocator import Pool

        KEEP = []

        @pytest.mark.ringpool_no_leaks
        def test_leaks():
            pool = Pool("parser")
            KEEP.append(pool)
            KEEP.append(pool.alloc(24, tag="tokens"))
            KEEP.append(pool.alloc(8, tag="tokens"))
            pool.free(pool.alloc(100, tag="scratch"))

        @pytest.mark.ringpool_no_leaks
        def test_clean():
            with Pool("clean") as pool:
                pool.alloc(10, tag="tokens")   # freed by the destroy at the end of with

        @pytest.mark.ringpool_no_leaks
        def test_freed():
            pool = Pool("freed")
            KEEP.append(pool)
            b = pool.alloc(10, tag="tokens")
            pool.free(b)
    """)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*ringpool_no_leaks: outstanding blocks at the end of the test:*",
                                 "*pool 'parser': tokens (2 blocks, 32 bytes)*"])
    assert "scratch" not in result.stdout.str()


def test_allow_patterns_in_marker_and_fixture(pytester: pytest.Pytester) -> None:
    result = _run(pytester, """
        import pytest
        from allocator import Pool

        KEEP = []

        @pytest.mark.ringpool_no_leaks(allow=["cache*"])
        def test_allowed():
            pool = Pool("p")
            KEEP.extend([pool, pool.alloc(5, tag="cache-entry")])

        @pytest.mark.ringpool_no_leaks("cache*")
        def test_positional_and_other_tag():
            pool = Pool("q")
            KEEP.extend([pool, pool.alloc(5, tag="cache-entry"), pool.alloc(7, tag="session")])

        def test_fixture(ringpool_no_leaks):
            ringpool_no_leaks.allow("log-*")
            pool = Pool("r")
            KEEP.extend([pool, pool.alloc(5, tag="log-line"), pool.alloc(9, tag="buffer")])

        def test_fixture_clean(ringpool_no_leaks):
            pool = Pool("s")
            KEEP.extend([pool, pool.alloc(5, tag="log-line")])
            pool.destroy()
    """)
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert "pool 'q': session (1 block, 7 bytes)" in out and "cache-entry" not in out
    assert "pool 'r': buffer (1 block, 9 bytes)" in out and "log-line" not in out


def test_child_pools_and_preexisting_pools(pytester: pytest.Pytester) -> None:
    result = _run(pytester, """
        import pytest
        from allocator import Pool

        OLD = Pool("module-level")
        OLD_BLOCK = OLD.alloc(3, tag="old")    # created before the test: not its business
        KEEP = []

        @pytest.mark.ringpool_no_leaks
        def test_child_leak():
            parent = Pool("parent")
            kid = parent.child("kid")
            KEEP.extend([parent, kid, kid.alloc(11, tag="kid-tag")])
    """)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "pool 'parent/kid': kid-tag (1 block, 11 bytes)" in out   # named by its path
    assert "old" not in out.replace("module-level", "")


def test_inert_without_marker_or_fixture(pytester: pytest.Pytester) -> None:
    result = _run(pytester, """
        from allocator import Pool
        KEEP = []

        def test_leaks_but_unchecked():
            pool = Pool("p")
            KEEP.extend([pool, pool.alloc(5, tag="t")])
    """)
    result.assert_outcomes(passed=1)


def test_marker_is_registered_and_bad_arguments_are_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.ringpool_no_leaks(allow=[3])
        def test_bad():
            pass

        @pytest.mark.ringpool_no_leaks(permit=["x"])
        def test_unknown():
            pass
    """)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "--strict-markers")
    out = result.stdout.str()
    assert "tag patterns are non-empty strings, not 3" in out
    assert "unknown argument(s) permit" in out
    markers = pytester.runpytest_inprocess("--markers")
    markers.stdout.fnmatch_lines(["*ringpool_no_leaks(allow=*"])


def test_failing_test_is_not_masked(pytester: pytest.Pytester) -> None:
    result = _run(pytester, """
        import pytest
        from allocator import Pool
        KEEP = []

        @pytest.mark.ringpool_no_leaks
        def test_raises():
            pool = Pool("p")
            KEEP.extend([pool, pool.alloc(5, tag="t")])
            assert 1 == 2, "the test's own failure"
    """)
    result.assert_outcomes(failed=1)
    assert "the test's own failure" in result.stdout.str()


def test_a_deep_chain_of_pools_is_checked_in_one_pass(pytester: pytest.Pytester) -> None:
    # each new pool was snapshotted (naming the pools above it) whether it held blocks or
    # not: a chain of N pools cost N**2 steps (4,000 pools with one leaking leaf took
    # seconds); a pool without blocks is passed over, and the leaking leaf named by its path
    result = _run(pytester, """
        import pytest
        from allocator import Pool

        KEEP = []
        SNAPSHOTS = []

        @pytest.mark.ringpool_no_leaks
        def test_deep_leak(monkeypatch):
            real = Pool.snapshot
            def counted(self, **kw):
                SNAPSHOTS.append(self.name)
                return real(self, **kw)
            monkeypatch.setattr(Pool, "snapshot", counted)
            pools = [Pool("root")]
            for i in range(3000):
                pools.append(pools[-1].child(f"d{i}"))
            KEEP.extend(pools + [pools[-1].alloc(5, tag="leaf")])

        def test_only_the_leaking_pool_was_snapshotted():
            assert SNAPSHOTS == ["d2999"]
    """)
    result.assert_outcomes(failed=1, passed=1)
    path = "root/" + "/".join(f"d{i}" for i in range(3000))
    assert f"pool '{path}': leaf (1 block, 5 bytes)" in result.stdout.str()


def test_the_default_pool_made_during_the_test_is_checked(pytester: pytest.Pytester) -> None:
    # stat_create_pool() makes its Pool without Pool.__init__ (Pool._wrap_default):
    # a test that leaked stat_alloc() blocks from a default pool it made passed
    result = _run(pytester, """
        import pytest
        import allocator

        @pytest.fixture(autouse=True)
        def no_default_pool_after():
            yield                               # after the plugin's check
            allocator.stat_destroy_pool()       # the pool is the process's (in-process run)

        @pytest.mark.ringpool_no_leaks
        def test_leaks_default_blocks():
            allocator.stat_create_pool()
            allocator.stat_alloc(100)
            allocator.stat_strdup("kept")

        @pytest.mark.ringpool_no_leaks
        def test_frees_them():
            allocator.stat_create_pool()
            allocator.stat_free(allocator.stat_alloc(7))

        @pytest.mark.ringpool_no_leaks
        def test_allowed(ringpool_no_leaks):
            ringpool_no_leaks.allow("rp_stat")
            allocator.stat_create_pool()
            allocator.stat_alloc(5)
    """)
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "rp_stat (2 blocks, 105 bytes)" in out
    assert "FAILED test_the_default_pool_made_during_the_test_is_checked.py::" \
           "test_leaks_default_blocks" in out


def test_a_bad_limit_beside_the_marker_leaves_no_guard_behind(pytester: pytest.Pytester) -> None:
    # the leak guard started before the limit_memory size was read: the UsageError
    # left it noting every Pool made for the rest of the session (Pool._init_common
    # stayed wrapped, and the guard's list of pools grew without end)
    result = _run(pytester, """
        import pytest
        import audit.pytest_plugin
        from allocator import Pool

        PLAIN = Pool.__dict__["_init_common"]

        @pytest.mark.ringpool_no_leaks
        @pytest.mark.limit_memory("lots")
        def test_bad_size():
            pass

        @pytest.mark.ringpool_no_leaks
        @pytest.mark.limit_leaks("1 MB", filter_fn=3)
        def test_bad_filter():
            pass

        def test_pools_are_no_longer_noted():
            assert Pool.__dict__["_init_common"] is PLAIN
            assert audit.pytest_plugin._guards == []
    """)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*'lots' is not a size like*"])


def test_the_fixture_asked_for_while_the_test_runs_is_checked(pytester: pytest.Pytester) -> None:
    # request.getfixturevalue("ringpool_no_leaks") in the test body gave a guard that
    # nothing started or checked: the leak passed
    result = _run(pytester, """
        import pytest
        from allocator import Pool

        KEEP = []

        def test_asks_late(request):
            guard = request.getfixturevalue("ringpool_no_leaks")
            guard.allow("ok*")
            pool = Pool("late")
            KEEP.extend([pool, pool.alloc(5, tag="kept"), pool.alloc(6, tag="ok-tag")])

        def test_asks_late_and_frees(request):
            request.getfixturevalue("ringpool_no_leaks")
            with Pool("clean") as pool:
                pool.alloc(5, tag="kept")

        def test_pools_before_the_request_are_not_its_business(request):
            pool = Pool("before")
            KEEP.extend([pool, pool.alloc(5, tag="early")])
            request.getfixturevalue("ringpool_no_leaks")
    """)
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "pool 'late': kept (1 block, 5 bytes)" in out and "ok-tag" not in out
    assert "________ test_asks_late ________" in out


def test_allow_patterns_of_module_class_and_test_markers_add_up(pytester: pytest.Pytester) -> None:
    # the closest marker alone was read: a test's own ringpool_no_leaks(allow=[...])
    # dropped the patterns its class and module (pytestmark) allowed
    result = _run(pytester, """
        import pytest
        from allocator import Pool

        pytestmark = pytest.mark.ringpool_no_leaks(allow=["mod-*"])
        KEEP = []

        def _leak(name, *tags):
            pool = Pool(name)
            KEEP.append(pool)
            KEEP.extend(pool.alloc(5, tag=t) for t in tags)

        @pytest.mark.ringpool_no_leaks(allow=["cls-*"])
        class TestLevels:
            @pytest.mark.ringpool_no_leaks(allow=["fn-*"])
            def test_all_allowed(self):
                _leak("a", "mod-x", "cls-x", "fn-x")

            def test_class_and_module(self):
                _leak("b", "mod-x", "cls-x")

            @pytest.mark.ringpool_no_leaks("fn-*")
            def test_other_tag(self):
                _leak("c", "mod-x", "cls-x", "fn-x", "other")

        @pytest.mark.ringpool_no_leaks(allow=["fn-*"])
        def test_module_and_test():
            _leak("d", "mod-x", "fn-x")

        def test_not_the_class_patterns():
            _leak("e", "mod-x", "cls-x")
    """)
    result.assert_outcomes(passed=3, failed=2)
    out = result.stdout.str()
    assert "pool 'c': other (1 block, 5 bytes)" in out
    assert "pool 'e': cls-x (1 block, 5 bytes)" in out
    assert "mod-x" not in out and "fn-x" not in out and "pool 'c': cls-x" not in out


def test_the_fixture_asked_for_late_beside_the_marker_is_the_markers_guard(
        pytester: pytest.Pytester) -> None:
    # request.getfixturevalue("ringpool_no_leaks") in a test under the marker gave a
    # second guard: it knew nothing of the marker's allow=[...] (an allowed tag failed)
    # and what it allowed did not reach the marker's guard (nor did its allow() calls)
    result = _run(pytester, """
        import pytest
        from allocator import Pool

        KEEP = []

        @pytest.mark.ringpool_no_leaks(allow=["cache*"])
        def test_marker_patterns_hold(request):
            guard = request.getfixturevalue("ringpool_no_leaks")
            guard.allow("log-*")
            pool = Pool("p")
            KEEP.extend([pool, pool.alloc(5, tag="cache-x"), pool.alloc(6, tag="log-x")])

        @pytest.mark.ringpool_no_leaks
        def test_named_once(request):
            request.getfixturevalue("ringpool_no_leaks")
            pool = Pool("q")
            KEEP.extend([pool, pool.alloc(7, tag="kept")])
    """)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    # counted in the failure's own section: the short summary repeats its first
    # lines, and whole (not cut to the terminal's width) when $CI is set
    failures = out.split("short test summary info")[0]
    assert failures.count("pool 'q': kept (1 block, 7 bytes)") == 1
    assert "cache-x" not in out and "log-x" not in out
