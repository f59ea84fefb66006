#!/usr/bin/env bash
# `make install` and `make uninstall`, checked from the outside:
#   check_make_install.sh
# Run by `make test-make-install` (MAKE, BUILD, VERSION, CC in the environment).
# - installs into a temporary prefix that already holds other software, and
#   checks the exact list of files written;
# - the .so has its SONAME, the .a exports only rp_ names: a program defining
#   every rpi_ internal name itself links against it and runs;
# - a CMake project (find_package(ringpool CONFIG REQUIRED), shared and static)
#   and a Meson project (pkg-config) build and run against the prefix, each when
#   its tool is installed (make setup-sys installs both);
# - `make uninstall` leaves the prefix exactly as it was; DESTDIR stages.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
make=${MAKE:-make}
build=${BUILD:-build}
cc=${CC:-cc}
version=${VERSION:?VERSION must be set}

step() { echo "== test-make-install: $*"; }
fail() { echo "test-make-install: FAILED: $*" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/ringpool-make-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
listing() { (cd "$prefix" && find . -mindepth 1 | LC_ALL=C sort); }

step "a prefix with other software in it"
mkdir -p "$prefix"/include "$prefix"/lib/pkgconfig "$prefix"/lib/cmake/other "$prefix"/share/doc/other
echo "/* other */" > "$prefix"/include/other.h
echo "Name: other" > "$prefix"/lib/pkgconfig/other.pc
echo "# other" > "$prefix"/lib/cmake/other/otherConfig.cmake
echo "other" > "$prefix"/share/doc/other/README
listing > "$work/before"

step "make install PREFIX=$prefix"
(cd "$repo" && "$make" --no-print-directory install PREFIX="$prefix" BUILD="$build") > "$work/install.log" ||
    { cat "$work/install.log"; fail "make install failed"; }
listing > "$work/after"
docs=$(cd "$repo" && ls docs/*.md | sed 's|^docs/|./share/doc/ringpool/|')
LC_ALL=C sort > "$work/expected" <<EOF
$(cat "$work/before")
./include/ringpool.h
./lib/cmake/ringpool
./lib/cmake/ringpool/ringpoolConfig.cmake
./lib/cmake/ringpool/ringpoolConfigVersion.cmake
./lib/libringpool.a
./lib/libringpool.so
./lib/libringpool.so.0
./lib/pkgconfig/ringpool.pc
./lib/ringpool
./lib/ringpool/libringpool-preload.so
./share/doc/ringpool
./share/doc/ringpool/LICENSE
./share/doc/ringpool/README.md
$docs
EOF
diff -u "$work/expected" "$work/after" || fail "make install wrote other files than expected"
[ "$(readlink "$prefix/lib/libringpool.so")" = libringpool.so.0 ] || fail "libringpool.so is not a link to libringpool.so.0"
grep -q 'SONAME.*\[libringpool.so.0\]' <<< "$(readelf -d "$prefix/lib/libringpool.so.0")" || fail "no SONAME libringpool.so.0"
grep -qx "prefix=$prefix" "$prefix/lib/pkgconfig/ringpool.pc" || fail "ringpool.pc has the wrong prefix"
[ "$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --modversion ringpool)" = "$version" ] || fail "pkg-config version"
[ -f "$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --variable=preloadlib ringpool)" ] ||
    fail "pkg-config's preloadlib is not the installed interposer"

step "libringpool.a: one object, only rp_ names global"
members=$(ar t "$prefix/lib/libringpool.a")
[ "$(echo "$members" | wc -l)" = 1 ] || fail "libringpool.a holds several members: $members"
bad=$(nm -g --defined-only "$prefix/lib/libringpool.a" | awk 'NF == 3 && $3 !~ /^rp_/ { print $3 }')
[ -z "$bad" ] || fail "libringpool.a defines global names outside rp_: $bad"
# Every internal name, defined by the program as a function that aborts: the
# link must not clash and the library must keep calling its own.
internals=$(nm --defined-only "$repo/$build"/obj/*.o | awk '$2 ~ /^[A-Z]$/ && $3 ~ /^rpi_/ { print $3 }' | sort -u)
[ -n "$internals" ] || fail "found no rpi_ internals in $build/obj (is the test looking at the right objects?)"
{
    echo "#include <stdlib.h>"
    for s in $internals; do echo "void $s(void); void $s(void) { abort(); }"; done
} > "$work/clash.c"
"$cc" -std=c11 -Wall -Wextra -Werror -I"$prefix/include" "$here/consumer/consumer.c" "$work/clash.c" \
    "$prefix/lib/libringpool.a" -lpthread -o "$work/static-clash" || fail "linking beside same-named internals failed"
"$work/static-clash" > /dev/null || fail "the static program with same-named functions failed"
echo "$(echo "$internals" | wc -w) rpi_ names defined by the program: linked and ran"

if command -v cmake > /dev/null; then
    step "a CMake project: find_package(ringpool CONFIG REQUIRED), ringpool::ringpool and ringpool::ringpool_static"
    cp -r "$here/consumer" "$work/cmake-src"
    cmake -S "$work/cmake-src" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" > "$work/cmake.log" 2>&1 &&
        cmake --build "$work/cmake-build" >> "$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; fail "CMake consumer"; }
    "$work/cmake-build/consumer_shared" || fail "consumer_shared failed"
    grep -q "=> $prefix/lib/libringpool.so.0" <<< "$(ldd "$work/cmake-build/consumer_shared")" ||
        { ldd "$work/cmake-build/consumer_shared"; fail "consumer_shared: not linked against the installed library"; }
    "$work/cmake-build/consumer_static" || fail "consumer_static failed"
    ! grep -q libringpool <<< "$(ldd "$work/cmake-build/consumer_static")" || fail "consumer_static links libringpool.so"
    # A version the package does not satisfy is refused.
    sed -i 's/find_package(ringpool 0.1 CONFIG REQUIRED)/find_package(ringpool 1.0 CONFIG REQUIRED)/' \
        "$work/cmake-src/CMakeLists.txt"
    if cmake -S "$work/cmake-src" -B "$work/cmake-build-v1" -DCMAKE_PREFIX_PATH="$prefix" > "$work/cmake-v1.log" 2>&1; then
        fail "find_package(ringpool 1.0) accepted version $version"
    fi
else
    step "cmake is not installed: CMake consumer skipped (make setup-sys installs it)"
fi

if command -v meson > /dev/null && command -v ninja > /dev/null; then
    step "a Meson project: dependency('ringpool') through pkg-config"
    cp -r "$here/consumer" "$work/meson-src"
    PKG_CONFIG_PATH="$prefix/lib/pkgconfig" meson setup "$work/meson-build" "$work/meson-src" > "$work/meson.log" 2>&1 &&
        ninja -C "$work/meson-build" >> "$work/meson.log" 2>&1 || { cat "$work/meson.log"; fail "Meson consumer"; }
    LD_LIBRARY_PATH="$prefix/lib" "$work/meson-build/consumer" || fail "the Meson consumer failed"
else
    step "meson or ninja is not installed: Meson consumer skipped (make setup-sys installs them)"
fi

step "make uninstall PREFIX=$prefix"
(cd "$repo" && "$make" --no-print-directory uninstall PREFIX="$prefix" BUILD="$build") > "$work/uninstall.log" ||
    { cat "$work/uninstall.log"; fail "make uninstall failed"; }
listing > "$work/after-uninstall"
diff -u "$work/before" "$work/after-uninstall" || fail "make uninstall did not restore the prefix"

step "make install DESTDIR=$work/stage PREFIX=/opt/ringpool"
(cd "$repo" && "$make" --no-print-directory install DESTDIR="$work/stage" PREFIX=/opt/ringpool BUILD="$build") \
    > "$work/install-destdir.log" || { cat "$work/install-destdir.log"; fail "make install DESTDIR failed"; }
grep -qx "prefix=/opt/ringpool" "$work/stage/opt/ringpool/lib/pkgconfig/ringpool.pc" || fail "staged .pc prefix"
[ -f "$work/stage/opt/ringpool/lib/cmake/ringpool/ringpoolConfig.cmake" ] || fail "staged CMake config"

step "make install and uninstall with a PREFIX holding spaces, a quote, '&' and non-ASCII"
# The recipes pasted PREFIX into the shell's command lines unquoted: under "My Prefix",
# install -d made "My" in /tmp and "Prefix/include" in the working directory, and failed.
# (CMake's Makefile generator itself cannot name a path holding '"' or '|': those are
# checked in the staged install below)
hp="$work/My Prefix é日本 it's a&b"
mkdir -p "$hp"
(cd "$repo" && "$make" --no-print-directory install PREFIX="$hp" BUILD="$build") > "$work/install-hostile.log" 2>&1 ||
    { cat "$work/install-hostile.log"; fail "make install PREFIX='$hp' failed"; }
(cd "$hp" && find . -mindepth 1 | LC_ALL=C sort) > "$work/after-hostile"
diff -u <(grep -v '/other' "$work/expected" | grep -vx './include\|./lib\|./lib/pkgconfig\|./lib/cmake\|./share\|./share/doc') \
        <(grep -vx './include\|./lib\|./lib/pkgconfig\|./lib/cmake\|./share\|./share/doc' "$work/after-hostile") ||
    fail "make install PREFIX='$hp' wrote other files than expected"
# pkg-config's output, escaped as it escapes ${prefix}, names the prefix through eval
pcflags=$(PKG_CONFIG_PATH="$hp/lib/pkgconfig" pkg-config --cflags --libs ringpool)
eval "\"\$cc\" -std=c11 -Wall -Wextra -Werror \"\$here/consumer/consumer.c\" $pcflags -o \"\$work/pc-consumer\"" ||
    fail "pkg-config's flags for PREFIX='$hp' do not name it: $pcflags"
LD_LIBRARY_PATH="$hp/lib" "$work/pc-consumer" > /dev/null || fail "the consumer built through pkg-config failed"
[ -f "$(eval "printf '%s' $(PKG_CONFIG_PATH="$hp/lib/pkgconfig" pkg-config --variable=preloadlib ringpool)")" ] ||
    fail "pkg-config's preloadlib does not name the installed interposer under '$hp'"
if command -v cmake > /dev/null; then
    cmake -S "$here/consumer" -B "$work/cmake-hostile" -DCMAKE_PREFIX_PATH="$hp" > "$work/cmake-hostile.log" 2>&1 &&
        cmake --build "$work/cmake-hostile" >> "$work/cmake-hostile.log" 2>&1 || { cat "$work/cmake-hostile.log"; fail "CMake consumer under '$hp'"; }
    "$work/cmake-hostile/consumer_shared" > /dev/null || fail "consumer_shared under '$hp' failed"
fi
(cd "$repo" && "$make" --no-print-directory uninstall PREFIX="$hp" BUILD="$build") > "$work/uninstall-hostile.log" 2>&1 ||
    { cat "$work/uninstall-hostile.log"; fail "make uninstall PREFIX='$hp' failed"; }
[ -z "$(cd "$hp" && find . -mindepth 1 -type f -o -mindepth 1 -type l)" ] || fail "make uninstall left files in '$hp'"

step "make install DESTDIR and PREFIX holding '\$', '\"', '|': taken as written, not as make variables"
(cd "$repo" && "$make" --no-print-directory install DESTDIR="$work/st age \$HOME" PREFIX='/opt/rp $x "q"|\1' BUILD="$build") \
    > "$work/install-dollar.log" 2>&1 || { cat "$work/install-dollar.log"; fail "make install DESTDIR with '\$' failed"; }
staged="$work/st age \$HOME/opt/rp \$x \"q\"|\\1"
grep -qxF 'prefix=/opt/rp\ \$x\ \"q\"\|\\1' "$staged/lib/pkgconfig/ringpool.pc" || fail "staged .pc prefix: $(head -1 "$staged/lib/pkgconfig/ringpool.pc")"
[ -f "$staged/lib/ringpool/libringpool-preload.so" ] || fail "staged interposer with '\$'"
[ -z "$(cd "$repo" && git status --porcelain --ignored -- My Prefix 2>/dev/null)" ] || fail "make install wrote into the checkout"

echo "test-make-install: installed, consumed by C, CMake and Meson, uninstalled exactly"
