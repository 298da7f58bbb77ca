#!/bin/sh
# Installs libveil (static and shared), veil.h and veil.pc under PREFIX.
#
#   cargo build --release -p veil-ffi
#   sh bindings/c/install.sh /usr/local target/release
#   cc app.c $(pkg-config --cflags --libs veil)            # shared
#   cc app.c $(pkg-config --cflags --libs --static veil)   # static (libveil.a)
set -eu
if [ $# -ne 2 ]; then
    echo "usage: $0 PREFIX BUILD_DIR (the cargo output directory holding libveil.a)" >&2
    exit 2
fi
prefix=$1
build=$2
here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/../../Cargo.toml" | head -n 1)
private_libs="-lstdc++ -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

mkdir -p "$prefix/lib/pkgconfig" "$prefix/include"
cp "$build/libveil.a" "$prefix/lib/"
if [ -f "$build/libveil.so" ]; then
    cp "$build/libveil.so" "$prefix/lib/"
fi
cp "$here/include/veil.h" "$prefix/include/"
sed -e "s|@PREFIX@|$prefix|" \
    -e "s|@LIBDIR@|$prefix/lib|" \
    -e "s|@INCLUDEDIR@|$prefix/include|" \
    -e "s|@VERSION@|$version|" \
    -e "s|@PRIVATE_LIBS@|$private_libs|" \
    "$here/veil.pc.in" > "$prefix/lib/pkgconfig/veil.pc"
echo "installed libveil $version under $prefix"
