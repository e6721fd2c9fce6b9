#!/bin/sh
# check-exports.sh LIBRARY HEADER MAPFILE
#
# librstmem's ABI surface: the SONAME is librstmem.so.1, and the defined
# dynamic symbols are exactly the functions HEADER declares, the same names
# MAPFILE lists, each at the version node MAPFILE puts it in (RSTMEM_1 for
# 1.0.0, RSTMEM_2 for 1.1.0, ...). readelf reads ELF of any architecture, so
# this checks the arm64 build too.
set -eu
lib=$1 header=$2 map=$3
fail() { printf 'check-exports.sh: %s\n' "$*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = librstmem.so.1 ] || fail "SONAME is '$soname', expected librstmem.so.1"

# Declarations in the header: lines "int rstmem_x(" / "void rstmem_x(".
grep -oE '^(int|void) +rstmem_[a-z_]+\(' "$header" | sed -E 's/^[a-z]+ +//; s/\($//' | sort >"$tmp/header"
# "name@@NODE" for every name in the version script, by the node it is in.
awk '/^[A-Z0-9_]+ *\{/ { node = $1 } match($0, /^[[:space:]]*rstmem_[a-z_]+;/) { name = substr($0, RSTART, RLENGTH); gsub(/[[:space:];]/, "", name); print name "@@" node }' "$map" | sort >"$tmp/map-versioned"
sed 's/@@.*//' "$tmp/map-versioned" | sort >"$tmp/map"
awk '/^[A-Z0-9_]+ *\{/ { print "OBJECT " $1 }' "$map" | sort >"$tmp/nodes"
# Defined global dynamic symbols (Ndx not UND, binding not LOCAL: aarch64
# keeps local section symbols in .dynsym), with their versions.
readelf --dyn-syms -W "$lib" | awk '$7 != "UND" && $5 != "LOCAL" && $8 != "" && NR > 3 { print $4, $8 }' >"$tmp/dynsyms"
grep '^FUNC ' "$tmp/dynsyms" | cut -d' ' -f2 | sort >"$tmp/exported"

[ -s "$tmp/header" ] || fail "no declarations found in $header"
[ -s "$tmp/nodes" ] || fail "no version nodes found in $map"
diff -u "$tmp/header" "$tmp/map" >&2 || fail "$map does not list exactly the functions $header declares"
sed 's/@@.*//' "$tmp/exported" | sort >"$tmp/exported-names"
diff -u "$tmp/header" "$tmp/exported-names" >&2 || fail "$lib exports other functions than $header declares"
diff -u "$tmp/map-versioned" "$tmp/exported" >&2 || fail "$lib exports functions at other versions than $map gives them"
# Anything defined that is not a function must be a version node of the map.
grep -v '^FUNC ' "$tmp/dynsyms" | sort >"$tmp/objects"
diff -u "$tmp/nodes" "$tmp/objects" >&2 || fail "the non-function exports are not exactly the version nodes of $map"
echo "exports ok: SONAME $soname; $(wc -l <"$tmp/exported") functions: $(tr '\n' ' ' <"$tmp/exported")"
