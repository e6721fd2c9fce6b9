#!/usr/bin/env bash
# compare-tap.sh MODEL.tap REAL.tap LABEL
# The model-vs-real table: every conformance check (case @ target) that ran
# on both — neither skipped — with its result on each. Exits 1 when any
# result differs (a model bug: fix the model) or when nothing ran on both.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: compare-tap.sh MODEL.tap REAL.tap LABEL" >&2; exit 2; }
awk -v label="$3" '
  function outcome(line) { return line ~ /^not ok / ? "fail" : (line ~ / # SKIP/ ? "skip" : "pass") }
  function key(line,   rest) { rest = line; sub(/^(not )?ok [0-9]+ /, "", rest); sub(/ - .*/, "", rest); return rest }
  FNR == 1 { file++ }
  /^(not )?ok [0-9]+ / { if (file == 1) model[key($0)] = outcome($0); else { real[key($0)] = outcome($0); order[++n] = key($0) } }
  END {
    printf "model vs real (%s): checks that ran on both\n", label
    printf "%-62s %-6s %-6s\n", "case @ target", "model", "real"
    for (i = 1; i <= n; i++) {
      k = order[i]
      if (!(k in model) || model[k] == "skip" || real[k] == "skip") { if (real[k] != "skip") only++; continue }
      compared++
      same = model[k] == real[k]
      if (!same) differ++
      printf "%-62s %-6s %-6s%s\n", k, model[k], real[k], same ? "" : "  <-- DIFFERS"
    }
    printf "%s: %d checks ran on both, %d differ; %d ran only on the real kernel (skipped or absent on the model)\n", label, compared, differ, only
    exit (differ > 0 || compared == 0) ? 1 : 0
  }' "$1" "$2"
