"""Python code that runs in the middle of a pool call cannot crash the process.

Argument subclasses (int, str, PathLike, __bool__), cleanup objects with an
``__eq__``, gc callbacks and ``__del__`` may run while a Pool or Block method
is between its checks and the C call; each case runs in a child process so a
crash shows as a signal exit, not as a dead test runner.
"""

from __future__ import annotations

import pytest

from child_helpers import run_script, script_output


def test_int_subclass_size_cannot_destroy_the_pool_mid_alloc() -> None:
    out = run_script("""
        from allocator import Pool
        p = Pool("a")
        class Evil(int):
            def __gt__(self, other):
                p.destroy()
                return False
            __lt__ = __ge__ = __le__ = __gt__
        b = p.alloc(Evil(64), "t")
        b.write(b"x" * 64)
        assert not p.destroyed and not b.freed
        c = p.calloc(Evil(2), Evil(8), "t")
        d = p.alloc_aligned(Evil(64), Evil(8), "t")
        assert not p.destroyed
        p.destroy()
        print("ok")
    """, dev=True).stdout
    assert out.strip() == "ok"


def test_int_subclass_offset_cannot_free_the_block_mid_write() -> None:
    out = run_script("""
        from allocator import Pool
        p = Pool("a")
        b = p.alloc(64, "t")
        class Evil(int):
            def __lt__(self, other):
                b.free()
                return False
        b.write(b"x" * 8, Evil(0))
        assert not b.freed
        p.destroy()
        print("ok")
    """, dev=True).stdout
    assert out.strip() == "ok"


@pytest.mark.parametrize("method", ["alloc", "calloc", "strdup", "aligned", "child"])
def test_str_subclass_tag_cannot_destroy_the_pool_mid_call(method: str) -> None:
    out = run_script(f"""
        from allocator import Pool, RingpoolError
        p = Pool("a")
        class Evil(str):
            def __hash__(self):
                if not p.destroyed:
                    p.destroy()
                return str.__hash__(self)
            def __eq__(self, other):
                if not p.destroyed:
                    p.destroy()
                return str.__eq__(self, other)
            def encode(self, *args, **kwargs):
                if not p.destroyed:
                    p.destroy()
                return str.encode(self, *args, **kwargs)
        tag = Evil("tag")
        m = {method!r}
        if m == "alloc":
            b = p.alloc(64, tag)
        elif m == "calloc":
            b = p.calloc(1, 64, tag)
        elif m == "strdup":
            b = p.strdup("abc", tag)
        elif m == "aligned":
            b = p.alloc_aligned(64, 64, tag)
        else:
            b = p.child(Evil("kid")).alloc(64, tag)
        assert type(b.tag) is str and b.tag == "tag"
        b.write(b"y" * len(b))
        p.destroy()
        print("ok")
    """, dev=True).stdout
    assert out.strip() == "ok"


def test_fspath_and_bool_arguments_cannot_destroy_the_pool_mid_call(tmp_path: object) -> None:
    out = run_script(f"""
        import os
        from allocator import Pool, PoolDestroyedError
        p = Pool("a")
        p.alloc(8, "t")
        class Path:
            def __fspath__(self):
                p.destroy()
                return os.path.join({str(tmp_path)!r}, "r.json")
        try:
            p.write_report(Path())
        except PoolDestroyedError:
            pass
        q = Pool("b")
        q.alloc(8, "t")
        class Flag:
            def __bool__(self):
                q.destroy()
                return True
        try:
            q.snapshot(blocks=Flag())
        except PoolDestroyedError:
            pass
        print("ok")
    """, dev=True).stdout
    assert out.strip() == "ok"


def test_remove_cleanup_whose_eq_destroys_the_pool() -> None:
    out = run_script("""
        from allocator import Pool, RingpoolError
        p = Pool("a")
        p.add_cleanup(lambda: None)
        class F:
            def __call__(self):
                pass
            def __eq__(self, other):
                if not p.destroyed:
                    p.destroy()
                return True
            __hash__ = object.__hash__
        try:
            p.remove_cleanup(F())
        except RingpoolError as exc:
            print(type(exc).__name__)
        else:
            print("no error")
    """, dev=True).stdout
    assert out.strip() in ("PoolBusy", "PoolDestroyedError")


def test_init_twice_and_uninitialised_pool() -> None:
    out = run_script("""
        import gc
        from allocator import Pool, RingpoolError
        p = Pool("a")
        b = p.alloc(64, "t")
        try:
            p.__init__("b")
        except RingpoolError as exc:
            print(type(exc).__name__)
        gc.collect()
        b.write(b"z" * 64)
        b.free()
        p.destroy()
        for make in (Pool.__new__, object.__new__):
            q = make(Pool)
            for use in (lambda: q.alloc(8), lambda: q.destroy(), lambda: q.outstanding(),
                        lambda: q.snapshot(), lambda: q.child("c"), lambda: repr(q)):
                try:
                    use()
                except RingpoolError:
                    pass
                else:
                    print("no error")
        print("ok")
    """, dev=True).stdout
    assert out.split() == ["InvalidArgument", "ok"]


GC_REENTRY = """
import gc, sys
from allocator import Pool, PoolBusy
meth = sys.argv[1]
for attempt in range(120):
    p = Pool("a")
    armed = [False]
    def cb(phase, info, p=p, armed=armed):
        # A gc callback (or __del__) destroying the pool: the collection may
        # start inside any allocation of the call below.
        if phase == "start" and armed[0] and not p.destroyed:
            try:
                p.destroy()
            except PoolBusy:
                pass
    pre = None if meth != "resize" else p.alloc(64, "t")
    if meth == "blocks":
        keep = [p.alloc(8, "x") for _ in range(5)]
    gc.callbacks.append(cb)
    gc.set_threshold(1 + attempt % 5)
    junk = [[] for _ in range(attempt % 7)]
    armed[0] = True
    b = None
    try:
        if meth == "alloc":
            b = p.alloc(64, "t")
        elif meth == "calloc":
            b = p.calloc(1, 64, "t")
        elif meth == "strdup":
            b = p.strdup("abc", "t")
        elif meth == "memdup":
            b = p.memdup(b"abcd", "t")
        elif meth == "aligned":
            b = p.alloc_aligned(64, 64, "t")
        elif meth == "child":
            b = p.child("c").alloc(64, "t")
        elif meth == "resize":
            b = pre.resize(128)
        elif meth == "snapshot":
            p.snapshot(blocks=True)
        elif meth == "blocks":
            list(p.blocks())
    except Exception as exc:
        if not isinstance(exc, PoolBusy) and not p.destroyed:
            raise
    armed[0] = False
    gc.callbacks.remove(cb)
    gc.set_threshold(700)
    if b is not None and not b.freed:
        assert not p.destroyed, "a live block of a destroyed pool"
        b.write(b"q" * len(b))
    p.destroy()
print("ok")
"""


@pytest.mark.parametrize("method", ["alloc", "calloc", "strdup", "memdup", "aligned",
                                    "child", "resize", "snapshot", "blocks"])
def test_gc_callback_destroying_the_pool_inside_a_call(method: str) -> None:
    assert script_output(GC_REENTRY, method) == "ok"


@pytest.mark.parametrize("method", ["tobytes", "write"])
def test_gc_callback_freeing_the_block_inside_a_copy(method: str) -> None:
    out = run_script(f"""
        import gc
        from allocator import BlockFreedError, Pool
        freed = raised = 0
        for attempt in range(150):
            p = Pool("a")
            b = p.alloc(1 << 16, "t")
            armed = [False]
            def cb(phase, info, b=b, armed=armed):
                global freed
                if phase == "start" and armed[0] and not b.freed:
                    b.free()
                    freed += 1
            gc.callbacks.append(cb)
            gc.set_threshold(1 + attempt % 5)
            junk = [[] for _ in range(attempt % 7)]
            armed[0] = True
            try:
                if {method!r} == "tobytes":
                    b.tobytes()
                else:
                    b.write(b"x" * (1 << 16))
            except BlockFreedError:
                raised += 1
            armed[0] = False
            gc.callbacks.remove(cb)
            gc.set_threshold(700)
            p.destroy()
        # every free inside the call made the call fail: none copied freed memory
        print(freed == raised, freed > 0)
    """, dev=True).stdout
    assert out.split() == ["True", "True"]


def test_destroy_from_del_outside_any_call_still_works() -> None:
    out = run_script("""
        import gc
        from allocator import Pool
        p = Pool("a")
        class Owner:
            def __init__(self):
                self.me = self
            def __del__(self):
                p.destroy()
        Owner()
        gc.collect()
        print(p.destroyed)
    """, dev=True).stdout
    assert out.strip() == "True"


@pytest.mark.parametrize("mode", ["resize", "free", "stat-free"])
def test_memprof_tracker_freeing_the_block_it_is_called_for(mode: str) -> None:
    """A tracker runs inside the library's free or resize of a block: freeing
    or resizing that same block from it raises PoolBusy (it used to free the
    block under the library: SIGSEGV)."""
    out = run_script(f"""
        import allocator
        from allocator import Pool, PoolBusy, RingpoolError, memprof
        mode = {mode!r}
        if mode == "stat-free":
            p = allocator.stat_create_pool()
            alloc = lambda: allocator.stat_alloc(256)
        else:
            p = Pool("m")
            alloc = lambda: p.alloc(256, "t")
        blocks = []
        busy = 0
        def reenter(_arg):
            global busy
            for b in list(blocks):
                for use in (b.free, lambda: b.resize(4096), lambda: memoryview(b)):
                    try:
                        use()
                    except PoolBusy:
                        busy += 1
                    except (RingpoolError, BufferError):
                        pass
            return 1
        prof = memprof.start(1.0, 0, memprof.Tracker(reenter, reenter))
        blocks += [alloc() for _ in range(3)]   # the tracker frees the earlier ones
        blocks[:] = [alloc()]
        target = blocks[0]
        if mode == "resize":
            new = target.resize(100000)
            blocks[:] = [new]
        elif mode == "free":
            target.free()
        else:
            allocator.stat_free(target)
        memprof.stop()
        prof.discard()
        assert target.freed
        if mode == "stat-free":
            allocator.stat_destroy_pool()
        else:
            p.destroy()
        print("ok", busy > 0)
    """, dev=True).stdout
    assert out.split() == ["ok", "True"]


GC_ORDER = """
import gc, os, sys, warnings
from allocator import Pool, RingpoolError
from allocator import _pool
mode = sys.argv[1]
warnings.simplefilter("ignore", ResourceWarning)
class Holder:
    def __init__(self):
        self.me = self
    def __del__(self):
        try:
            if mode == "view":
                self.view[:4] = b"abcd"
            else:
                self.b.write(b"x" * 8)
                self.b.free()
            os.write(1, b"used\\n")
        except RingpoolError as exc:
            os.write(1, (type(exc).__name__ + "\\n").encode())
for i in range(20):
    p = Pool("c")
    h = Holder()   # made after the pool: its __del__ runs after the pool's finalizer
    if mode == "child":
        h.k = p.child("k")
        h.b = h.k.alloc(64, "t")
    else:
        h.b = p.alloc(64, "t")
    if mode == "view":
        h.view = memoryview(h.b)
    h.p = p
    del p, h
    gc.collect()
gc.collect()
print("deferred", len(_pool._deferred))
"""


@pytest.mark.parametrize("mode", ["plain", "view", "child"])
def test_del_in_the_same_gc_pass_as_the_pool_finalizer(mode: str) -> None:
    """A pool, its blocks and an object whose __del__ uses a block die in one
    gc pass; the pass runs the pool handle's finalizer and the __del__ in no
    set order.  The block is dead (BlockFreedError) or still valid, never
    freed memory; the pool is freed by the end of the pass."""
    lines = run_script(GC_ORDER, mode).stdout.split("\n")
    assert lines[-2] == "deferred 0"
    assert set(lines[:-2]) <= {"used", "BlockFreedError"}
    assert len(lines[:-2]) == 20


def test_module_global_block_used_from_del_at_exit() -> None:
    out = run_script("""
        import os
        from allocator import Pool, RingpoolError
        P = Pool("global")
        B = P.alloc(64, "g")
        class D:
            def __del__(self):
                try:
                    with memoryview(B) as m:
                        m[:] = b"x" * 64
                    B.free()
                    os.write(1, b"used\\n")
                except RingpoolError as exc:
                    os.write(1, (type(exc).__name__ + "\\n").encode())
        d = D()
    """, dev=True).stdout
    assert out.strip() in ("used", "BlockFreedError")


FORK_WHILE_ALLOCATING = """
import os, signal, threading, time
from allocator import Pool, RingpoolError
P = Pool("shared")
K = P.child("kid", thread_safe=False)
stop = False
def work(pool):
    while not stop:
        try:
            blocks = [pool.alloc(100, "w") for _ in range(20)]
            blocks[0] = blocks[0].resize(1000)
            for b in blocks:
                b.free()
            pool.snapshot(blocks=True)
        except RingpoolError:
            pass
threads = [threading.Thread(target=work, args=(P,)), threading.Thread(target=work, args=(K,))]
for t in threads:
    t.start()
bad = 0
for i in range(40):
    pid = os.fork()
    if pid == 0:
        rc = 1
        try:
            b = P.alloc(64, "c")
            memoryview(b)[:] = b"c" * 64
            b.free()
            K.alloc(8, "k")
            P.check()
            P.reset()
            P.destroy()
            rc = 0
        finally:
            os._exit(rc)
    for _ in range(2000):          # 20 s, then the child counts as hung
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        status = -1
    bad += status != 0
    if status == -1:
        break
stop = True
for t in threads:
    t.join()
print("bad", bad)
"""


@pytest.mark.threads
def test_fork_while_other_threads_use_the_pool() -> None:
    """The child of os.fork() gets every pool family lock free (the fork waits
    for the threads' calls to finish): it used to inherit a lock held by a
    thread that does not exist in the child, and hang in its first call."""
    assert script_output(FORK_WHILE_ALLOCATING) == "bad 0"


# blocks() walks the ring, then makes a Block for each record that has none.
# The walk's visitor and that loop allocate, so the gc runs in between; a gc
# callback that frees (or resizes away) a block already recorded left a record
# of freed memory, which blocks() wrapped in a live Block: writing through it
# wrote freed memory, freeing it freed it twice (seen: SIGSEGV).
WALK_FREES = """
import gc, sys
from allocator import Pool
backing, how, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = Pool("w", backing=backing)
bs = [p.alloc(64, tag="t") for _ in range(12)]
calls = 0
def cb(phase, info):
    global calls
    if phase != "start":
        return
    calls += 1
    if calls == nth:
        for i, b in enumerate(bs):
            if b.freed:
                continue
            if how == "free" or i % 2:
                b.free()
            else:
                bs[i] = b.resize(4096)
gc.callbacks.append(cb)
gc.set_threshold(1)
got = list(p.blocks())
gc.set_threshold(700)
gc.callbacks.remove(cb)
live = [b for b in got if not b.freed]
assert len(live) <= p.outstanding()[0], (len(live), p.outstanding())
for b in live:
    with memoryview(b) as v:
        v[:] = b"\\xaa" * len(b)
    b.free()
for b in bs:
    if not b.freed:
        b.free()
p.check()
assert p.outstanding() == (0, 0), p.outstanding()
p.destroy()
print("ok")
"""


@pytest.mark.parametrize("backing", ["malloc", "arena"])
@pytest.mark.parametrize("how", ["free", "resize"])
def test_gc_callback_freeing_blocks_during_a_walk(backing: str, how: str) -> None:
    for nth in (1, 3, 5, 9, 14):
        assert script_output(WALK_FREES, backing, how, str(nth)) == "ok", nth


# memdup() took the size from one buffer export and copied from a second: a
# bytearray that another thread shrank in between was read past its end (seen:
# SIGSEGV for 4 MiB; with 4 KiB, 4 in 100,000 copies held foreign bytes).  A
# profile hook on the call that makes the second export stands in for the
# thread switch, deterministically.
MEMDUP_SHRINK = """
import sys
from allocator import Pool
p = Pool("m")
ba = bytearray(b"\\x01" * (1 << 22))
def prof(frame, event, arg):
    if event == "c_call" and getattr(arg, "__name__", "") == "from_buffer":
        sys.setprofile(None)
        ba[:] = b""          # what another thread may do at that moment
sys.setprofile(prof)
b = p.memdup(ba, tag="x")
sys.setprofile(None)
assert len(b) == len(ba) == 0, (len(b), len(ba))
p.check()
p.destroy()
print("ok")
"""


def test_memdup_of_a_buffer_shrunk_between_exports() -> None:
    assert script_output(MEMDUP_SHRINK) == "ok"


# A gc callback run by an allocation, between the library's call and the Block
# the call makes of it, called blocks(): the walk found the new block with no
# Block yet and wrapped it, so two live Blocks shared one allocation; freeing
# one freed the other's memory under it (seen: SIGSEGV on the write below,
# or a KeyError from the second free after a double free).
ADOPT_TWICE = """
import gc, sys
from allocator import Pool
p = Pool("a", backing=sys.argv[1])
how, nth = sys.argv[2], int(sys.argv[3])
p.alloc(1, tag="x").free()          # the tag is interned: fewer allocations
got, calls = [], [0]
def cb(phase, info):
    if phase == "start":
        calls[0] += 1
        if calls[0] == nth:
            got.extend(p.blocks())
gc.callbacks.append(cb)
gc.set_threshold(1)
b = {"alloc": lambda: p.alloc(64, tag="x"), "calloc": lambda: p.calloc(8, 8, tag="x"),
     "strdup": lambda: p.strdup("y" * 63, tag="x")}[how]()
gc.set_threshold(700)
gc.callbacks.remove(cb)
for g in got:
    if g is not b and not g.freed and g.address == b.address:
        g.free()                     # a twin: frees b's memory under b
b.write(b"y" * 64)
b.free()
p.check()
p.destroy()
print("ok")
"""


@pytest.mark.parametrize("how", ["alloc", "calloc", "strdup"])
def test_blocks_from_a_gc_callback_inside_an_allocation(how: str) -> None:
    for backing in ("malloc", "arena"):
        for nth in range(1, 5):
            assert script_output(ADOPT_TWICE, backing, how, str(nth)) == "ok", (backing, nth)


# The Blocks that a reset frees are released after the library's call, and
# their release runs weakref callbacks and __del__ methods, which may allocate
# from the pool that lives on.  The tables were emptied one after the other
# (PyDict_Clear, and the kept pool's table twice), so such a new Block was
# dropped from its table while live: the pool's destroy then freed its memory
# without killing it, and a view of it wrote freed memory.
LATE_ALLOC = """
import sys, weakref
from allocator import BlockFreedError, Pool
p = Pool("p", backing=sys.argv[1])
k = p.child("k")
made = []
def late():
    made.append(p.alloc(32, tag="late"))
for owner in (p, k):
    b = owner.alloc(16, tag="t")
    weakref.finalize(b, late)
    del b
p.reset()
assert len(made) == 2
for b in made:
    assert not b.freed and p._blocks.get(b._addr) is b
assert p.outstanding() == (2, 64)
p.destroy()
for b in made:
    assert b.freed
    try:
        memoryview(b)
    except BlockFreedError:
        pass
    else:
        raise AssertionError("a view of freed memory")
print("ok")
"""


@pytest.mark.parametrize("backing", ["malloc", "arena"])
def test_block_allocated_while_a_reset_releases_its_blocks(backing: str) -> None:
    assert script_output(LATE_ALLOC, backing) == "ok"


# cffi builds a C type the first time the bindings use it (pool.info()'s
# ffi.new("rp_pool_info *"), child()'s rp_pool_options), and that builder is
# not re-entrant: the gc it can start ran a callback that used the same type,
# which built it a second time underneath, and cffi's assertion aborted the
# process (seed 1316 of test_reentrancy_fuzz.py: a cleanup's child() from a
# destroy).  Here a gc callback repeats the call whenever the gc starts while
# the call is inside an ffi. line, in a process that never used the type.
FIRST_USE = """
import gc, linecache, sys
from allocator import Pool
p = Pool("r")
b = p.alloc(8, "t")
OPS = {
    "info": lambda: p.info(),
    "child": lambda: p.child("k"),
    "outstanding": lambda: p.outstanding(),
    "snapshot": lambda: p.snapshot(),
    "strconcat": lambda: p.strconcat("a", "b", tag="t"),
    "blocks": lambda: list(p.blocks()),
}
op = OPS[sys.argv[1]]
inside = 0
def cb(phase, info):
    global inside
    if phase != "start" or inside:
        return
    f = sys._getframe(1)
    if "ffi." not in linecache.getline(f.f_code.co_filename, f.f_lineno):
        return
    inside += 1
    try:
        op()
    finally:
        inside -= 1
gc.callbacks.append(cb)
gc.set_threshold(1)
op()
gc.set_threshold(700)
gc.callbacks.remove(cb)
p.check()
p.destroy()
print("ok")
"""


@pytest.mark.parametrize("op", ["info", "child", "outstanding", "snapshot", "strconcat", "blocks"])
def test_first_use_of_a_c_type_from_a_gc_callback(op: str) -> None:
    assert script_output(FIRST_USE, op) == "ok"


# A pool that a cleanup makes while an ancestor is being destroyed or reset
# is destroyed in the same library call, whose loop over the children runs
# its cleanups in turn.  Its own cleanup (or one of a pool below it) could
# destroy or reset it: the pool was not marked closing, so the library freed
# it under that loop, which read it next (heap-use-after-free in
# destroy_children under ASan; seeds 1438 and 1500 of test_reentrancy_fuzz.py).
# Now PoolBusy, as for the family's own pools; a pool that a cleanup makes and
# destroys itself (with ... as) still works.
OWN_CLEANUP = """
import sys
from allocator import Pool, PoolBusy
backing, op, who = sys.argv[1:4]
p = Pool("p", backing=backing)
made = []
refused = []
def late():
    target = made[0]
    for call in (target.destroy, target.reset):
        try:
            call()
        except PoolBusy:
            refused.append(call.__name__)
    target.alloc(8, tag="still usable")
def first():
    with p.child("tmp") as tmp:          # made and destroyed by the cleanup
        tmp.alloc(8, tag="t")
    k = p.child("k")
    made.append(k)
    k.alloc(16, tag="k")
    if who == "own":
        k.add_cleanup(late)
    else:
        kk = k.child("kk")
        kk.add_cleanup(late)
p.add_cleanup(first)
getattr(p, op)()
assert refused == ["destroy", "reset"], refused
assert made[0].destroyed
if op == "reset":
    assert not p.destroyed and p.outstanding() == (0, 0)
    p.destroy()
print("ok")
"""


@pytest.mark.parametrize("who", ["own", "below"])
@pytest.mark.parametrize("op", ["destroy", "reset"])
@pytest.mark.parametrize("backing", ["malloc", "arena"])
def test_cleanup_cannot_destroy_a_pool_made_during_the_call_under_the_library(
        backing: str, op: str, who: str) -> None:
    assert script_output(OWN_CLEANUP, backing, op, who) == "ok"

# A child pool that a weakref callback or __del__ makes while a reset releases
# the Blocks it freed (after the library's call) was marked dead with the
# children the reset destroyed, while its C pool lived on: its Blocks and
# cleanups stayed registered, and at the next destroy its cleanup ran with no
# fence (the pool "dead" in Python), so it walked a sibling the library had
# already freed (heap-use-after-free in rp_pool_walk under ASan; seed 2505 of
# test_reentrancy_fuzz.py).  Such a child now lives on until its parent's
# next destroy or reset.
LATE_CHILD = """
import sys, weakref
from allocator import Pool, PoolDestroyedError
p = Pool("p", backing=sys.argv[1])
made = []
seen = []
def late():
    k = p.child("late")
    k.alloc(8, tag="k")
    k.add_cleanup(reach)
    made.append(k)
def reach():
    try:
        seen.append(len(list(made[1].blocks())))
    except PoolDestroyedError:
        seen.append("fenced")
b = p.alloc(16, tag="t")
weakref.finalize(b, late)
del b
p.reset()
k = made[0]
assert not k.destroyed and k.outstanding() == (1, 8), k
k.alloc(24, tag="again")
sibling = p.child("sibling")     # newer: the library destroys it before k
sibling.alloc(32, tag="s")
made.append(sibling)
p.destroy()
assert seen == ["fenced"], seen
assert k.destroyed and sibling.destroyed
print("ok")
"""


@pytest.mark.parametrize("backing", ["malloc", "arena"])
def test_child_made_while_a_reset_releases_its_blocks(backing: str) -> None:
    assert script_output(LATE_CHILD, backing) == "ok"


@pytest.mark.parametrize("mode", ["free", "stat-free", "resize"])
def test_memprof_tracker_copying_the_block_it_is_called_for(mode: str) -> None:
    """The tracker's dealloc of a free or resize runs after the library freed
    the block: tobytes() or write() of that block from it read or wrote freed
    memory (ASan: heap-use-after-free in a stat free); they raise PoolBusy."""
    out = run_script(f"""
        import allocator
        from allocator import Pool, PoolBusy, memprof
        mode = {mode!r}
        if mode == "stat-free":
            p = allocator.stat_create_pool()
            alloc = lambda: allocator.stat_alloc(64)
        else:
            p = Pool("m")
            alloc = lambda: p.alloc(64, "t")
        seen = []
        def dealloc(_value):
            for use in (b.tobytes, lambda: b.write(b"x" * 64)):
                try:
                    use()
                    seen.append("ran")
                except PoolBusy:
                    seen.append("busy")
        with memprof.start(1.0, 0, memprof.Tracker(lambda a: 1, dealloc)):
            b = alloc()
            b.free() if mode != "resize" else b.resize(4096)
            seen.append("done")
        print(seen)
    """, dev=True).stdout
    assert out.strip() == "['busy', 'busy', 'done']", out


# snapshot() read the totals, the tags and the walk of the blocks in calls of
# their own, with Python code between them (the gc's callbacks and __del__,
# which may allocate from the pool or free its blocks): the snapshot then
# disagreed with itself (totals of 10 blocks, tags of 9, a walk listing 11).
# A profile hook on a call of that sequence stands in for the gc.
SNAPSHOT_CHANGES = """
import sys
from allocator import Pool
backing = sys.argv[1]
for where, nth in (("pool_info", 1), ("pool_info", 2), ("tag_stats", 1), ("walk", 1),
                   ("rpy_py_visit", 1), ("rpy_py_visit", 4), ("rpy_py_visit", 10)):
    for action in ("free", "alloc", "both", "resize"):
        p = Pool("s", backing=backing.split("-")[0], checked=backing.endswith("-checked"))
        bs = [p.alloc(8 + i, "t") for i in range(10)]
        calls = [0]
        def prof(frame, event, arg):
            if event == "call" and frame.f_code.co_name == where:
                calls[0] += 1
                if calls[0] == nth:
                    sys.setprofile(None)
                    if action in ("free", "both"):
                        bs.pop(0).free()
                    if action in ("alloc", "both"):
                        bs.append(p.alloc(100, "new"))
                    if action == "resize":
                        bs[0] = bs[0].resize(50)
        sys.setprofile(prof)
        snap = p.snapshot(blocks=True)
        sys.setprofile(None)
        case = (where, nth, action)
        assert calls[0] >= nth, case
        live = sorted((b.address, b.size, b.tag) for b in bs)
        listed = sorted((r.address, r.size, r.tag) for r in snap.blocks)
        want: dict = {}
        for _, size, tag in live:
            n, m = want.get(tag, (0, 0))
            want[tag] = (n + 1, m + size)
        tags = {s.tag: (s.blocks, s.bytes) for s in snap.statistics() if s.blocks}
        assert listed == live, (case, len(listed), len(live))
        assert tags == want, (case, tags, want)
        totals = (snap.totals.blocks, snap.totals.bytes)
        assert totals == (len(live), sum(s for _, s, _ in live)), (case, totals)
        p.destroy()
print("ok")
"""


@pytest.mark.parametrize("backing", ["malloc", "arena", "malloc-checked"])
def test_snapshot_agrees_with_itself_when_the_pool_changes_during_it(backing: str) -> None:
    assert script_output(SNAPSHOT_CHANGES, backing) == "ok"


# os.fork() took every family's lock in creation order, waiting for each: a
# thread holding a later family's lock (in a cleanup of its pool) and wanting
# an earlier one's (allocating from a pool made before) waited for the fork,
# which waited for it: both hung.  And a fork from a pool's cleanup waited for
# ever for the lock of a thread that waited for that pool.  The fork then went
# without that lock, and the child used the family as it was, though its
# holder was in the middle of a call on it (Python and C state may disagree):
# in the child every pool of it and its Blocks must refuse every use.
FORK_LOCK_ORDER = """
import gc, os, sys, threading, time, traceback
import allocator
from allocator import Pool, RingpoolError
Lost = getattr(allocator, "PoolLostAtFork", None)
case = sys.argv[1]
first = Pool("first")
second = Pool("second")
started = threading.Event()

def in_child(pool):
    try:
        pool.alloc(3, "child").free()
    except RingpoolError:
        pass                     # destroyed, or being destroyed: its lock was usable
    os._exit(0)

def fork_and_wait(pool, child=in_child):
    pid = os.fork()
    if pid == 0:
        child(pool)
    _, status = os.waitpid(pid, 0)
    assert status == 0, status

if case == "cleanup-takes-an-earlier-family":
    def cleanup():
        started.set()
        time.sleep(0.3)          # the second family's lock held meanwhile
        first.alloc(1, "from-cleanup").free()
    second.add_cleanup(cleanup)
    t = threading.Thread(target=second.destroy)
    t.start()
    started.wait()
    fork_and_wait(first)
    t.join()
elif case == "lost-family-in-use":
    # thread T holds the second family's lock (in a cleanup of a child of
    # second, which stays alive) and waits for the first's, which this thread
    # holds while it forks from a cleanup of first: the fork goes without the
    # second family's lock, and second and its Blocks are lost in the child
    kept = second.alloc(8, "kept")
    kept.write(b"12345678")
    sub = second.child("sub")
    def holder():
        started.set()
        try:
            first.alloc(1, "from-holder")
        except RingpoolError:
            pass                 # destroyed by then
    sub.add_cleanup(holder)
    def in_lost_child(_):
        try:
            uses = {"alloc": lambda: second.alloc(1, "c"), "child": lambda: second.child("c"),
                    "reset": second.reset, "info": second.info, "sub.alloc": lambda: sub.alloc(1),
                    "tobytes": kept.tobytes, "write": lambda: kept.write(b"x"),
                    "memoryview": lambda: memoryview(kept), "free": kept.free,
                    "len": lambda: len(kept)}
            for what, use in uses.items():
                try:
                    use()
                except RingpoolError as exc:
                    if Lost is None or type(exc) is not Lost or "forked" not in str(exc):
                        raise
                else:
                    raise AssertionError(f"{what} was not refused in the child")
            assert second.destroyed and sub.destroyed and kept.freed
            second.destroy()     # nothing: the memory is left alone
            assert second.destroyed
            del uses
            gc.collect()
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    threads = []
    def cleanup():
        t = threading.Thread(target=sub.destroy)
        threads.append(t)
        t.start()
        started.wait()
        time.sleep(0.1)
        fork_and_wait(first, in_lost_child)
    first.add_cleanup(cleanup)
    first.destroy()
    threads[0].join()
    assert sub.destroyed and not second.destroyed    # the parent is unchanged
    assert kept.tobytes() == b"12345678"
    second.alloc(2, "after").free()
    second.destroy()
else:                            # fork-from-a-cleanup
    def other():
        started.set()
        time.sleep(0.3)          # the first family's lock held meanwhile
        try:
            second.alloc(1, "from-other")
        except RingpoolError:
            pass                 # destroyed by then
    first.add_cleanup(other)
    threads = []
    def cleanup():
        t = threading.Thread(target=first.destroy)
        threads.append(t)
        t.start()
        started.wait()
        time.sleep(0.1)
        fork_and_wait(first)     # its holder waits for this cleanup's family
    second.add_cleanup(cleanup)
    second.destroy()
    threads[0].join()
assert first.destroyed == (case != "cleanup-takes-an-earlier-family")
print("ok")
"""


@pytest.mark.parametrize("case", ["cleanup-takes-an-earlier-family", "fork-from-a-cleanup",
                                  "lost-family-in-use"])
def test_fork_while_a_thread_holds_families_out_of_order(case: str) -> None:
    assert script_output(FORK_LOCK_ORDER, case, timeout=60, quiet=True) == "ok"


FORK_WHILE_STAT_LOCK_HELD = """
import gc, os, signal, sys, threading, time
import allocator

inside = threading.Event()
holder = None

def on_gc(phase, info):
    # Runs in the thread that makes the default pool, once it holds the
    # facade's lock (stat_create_pool wraps the library's pool under it).
    if (threading.current_thread() is holder and not inside.is_set()
            and allocator._stat._lock._is_owned()):
        inside.set()
        time.sleep(0.5)

gc.callbacks.append(on_gc)

def make_default():
    gc.set_threshold(1)
    allocator.stat_create_pool()
    gc.set_threshold(700)

holder = threading.Thread(target=make_default)
holder.start()
assert inside.wait(30), "the gc callback never ran inside stat_create_pool"
pid = os.fork()
if pid == 0:
    signal.alarm(10)             # the old code waits here for ever
    pool = allocator.stat_create_pool()   # the lock, whoever made the pool
    block = allocator.stat_alloc(8)
    allocator.stat_free(block)
    os._exit(0 if allocator.stat_pool() is pool else 3)
_, status = os.waitpid(pid, 0)
holder.join()
gc.callbacks.remove(on_gc)
print("ok" if status == 0 else f"child status {status:#x}")
"""


def test_fork_while_another_thread_is_in_the_default_pool_facade() -> None:
    """os.fork() took every pool family's lock but not the default-pool facade's
    (allocator._stat): a fork while another thread was inside stat_create_pool()
    gave a child where that lock was held by a thread it does not have, and its
    first stat_* call waited for ever (killed by SIGALRM here). The fork now takes
    it after the family locks."""
    assert script_output(FORK_WHILE_STAT_LOCK_HELD, timeout=60, quiet=True) == "ok"
