#!/usr/bin/env bash
# Regenerates the README's quality table: perplexity of stories260K and its outlier-injected copy (seed 1), in FP32
# and quantized W4A4 by every method, for each scale rule. Calibration: C4 (../shared/data/c4-validation-2k.jsonl);
# evaluation: TinyStories validation (../shared/data/tinystories-valid.txt), 512-token windows. Never the same text.
# Usage: bench/quality-table.sh [shared-dir] [work-dir]   (≈ 10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${1:-../shared}
work=${2:-$(mktemp -d)}
calib=$shared/data/c4-validation-2k.jsonl
text=$shared/data/tinystories-valid.txt
dotnet build src/LocalMxfp4.Cli -c Release -nologo -v q >/dev/null
lmx() { dotnet src/LocalMxfp4.Cli/bin/Release/net10.0/lmx.dll "$@"; }
ppl() { lmx eval ppl --model "$1" --text "$text" --ctx 512 2>/dev/null | sed -n 's/.*PPL \([0-9.]*\).*/\1/p'; }

lmx inject-outliers --model "$shared/models/stories260K" --out "$work/outliers" --seed 1 --overwrite >/dev/null
declare -A model=([stories260K]="$shared/models/stories260K" [outliers]="$work/outliers")
rules=(floor even roundup)

echo "| model | FP32 | scale rule | RTN | BlockHadamard32 | DuQuant++ | DuQuant++ + GPTQ |"
# Weights: the same scale rule as activations (--weight-scales rule, explicit); the ablation shows the default search.
echo "|---|---|---|---|---|---|---|"
for name in stories260K outliers; do
  fp=$(ppl "${model[$name]}")
  for rule in "${rules[@]}"; do
    row="| $name | $fp | $rule"
    for variant in rtn hadamard duquant duquant-gptq; do
      method=${variant%-gptq}; extra=(); [ "$variant" = duquant-gptq ] && extra=(--gptq)
      out="$work/$name-$rule-$variant"
      lmx quantize --model "${model[$name]}" --out "$out" --method "$method" --scale-rule "$rule" --weight-scales rule \
        --calib "$calib" --samples 128 --seq-len 512 --seed 2 --overwrite "${extra[@]}" >/dev/null 2>&1
      row="$row | $(ppl "$out")"
    done
    echo "$row |"
  done
done

echo
echo "Ablations (DuQuant++ without GPTQ, even scale rule; one seed, so differences of a few hundredths are within seed-to-seed variation):"
echo
echo "| model | row-mod index, rule weight scales, 128 steps | channel index | per-block weight exponent search (the default) | 256 steps |"
echo "|---|---|---|---|---|"
for name in stories260K outliers; do
  row="| $name | $(ppl "$work/$name-even-duquant")"
  for opts in "--rotation-index channel --weight-scales rule" "--weight-scales search" "--steps 256 --weight-scales rule"; do
    out="$work/$name-ablation-${opts// /_}"
    # shellcheck disable=SC2086
    lmx quantize --model "${model[$name]}" --out "$out" --method duquant --scale-rule even --calib "$calib" --samples 128 --seq-len 512 --seed 2 --overwrite $opts >/dev/null 2>&1
    row="$row | $(ppl "$out")"
  done
  echo "$row |"
done
