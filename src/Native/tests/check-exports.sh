#!/bin/sh
# check-exports.sh LIBRARY HEADER MAPFILE
#
# librstmem's ABI surface: the SONAME is librstmem.so.1, and the defined
# dynamic symbols are exactly the functions HEADER declares, each at version
# RSTMEM_1, and the same names MAPFILE lists. readelf reads ELF of any
# architecture, so this checks the arm64 build too.
set -eu
lib=$1 header=$2 map=$3
fail() { printf 'check-exports.sh: %s\n' "$*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = librstmem.so.1 ] || fail "SONAME is '$soname', expected librstmem.so.1"

# Declarations in the header: lines "int rstmem_x(" / "void rstmem_x(".
grep -oE '^(int|void) +rstmem_[a-z_]+\(' "$header" | sed -E 's/^[a-z]+ +//; s/\($//' | sort >"$tmp/header"
# Names in the version script's global: section.
sed -n '/global:/,/local:/p' "$map" | grep -oE '^[[:space:]]*rstmem_[a-z_]+;' | tr -d ' \t;' | sort >"$tmp/map"
# Defined global dynamic symbols (Ndx not UND, binding not LOCAL: aarch64
# keeps local section symbols in .dynsym), with their versions.
readelf --dyn-syms -W "$lib" | awk '$7 != "UND" && $5 != "LOCAL" && $8 != "" && NR > 3 { print $4, $8 }' >"$tmp/dynsyms"
grep '^FUNC ' "$tmp/dynsyms" | cut -d' ' -f2 | sort >"$tmp/exported"

[ -s "$tmp/header" ] || fail "no declarations found in $header"
diff -u "$tmp/header" "$tmp/map" >&2 || fail "$map does not list exactly the functions $header declares"
sed 's/@@RSTMEM_1$//' "$tmp/exported" | sort >"$tmp/exported-names"
diff -u "$tmp/header" "$tmp/exported-names" >&2 || fail "$lib exports other functions than $header declares"
if grep -v '@@RSTMEM_1$' "$tmp/exported" >&2; then fail "functions above are not at version RSTMEM_1"; fi
# Anything defined that is not a function must be the version node itself.
if grep -v '^FUNC ' "$tmp/dynsyms" | grep -v '^OBJECT RSTMEM_1$' >&2; then fail "unexpected non-function exports above"; fi
echo "exports ok: SONAME $soname; $(wc -l <"$tmp/exported") functions at RSTMEM_1: $(tr '\n' ' ' <"$tmp/header")"
