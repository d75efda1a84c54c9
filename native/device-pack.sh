#!/usr/bin/env bash
# Fill .device/ for the GPU machine (../shared/device/pack.sh: the .NET runtime + framework-dependent publishes of lmx and the
# CUDA tests), then drop what the machine does not need — code-coverage tooling, other platforms' native assets, satellite
# resources and fatbins compiled here (device-run.sh builds the kernels there) — so .device stays under the 64 MiB carry limit
# (the unpruned folder is ~76 MB). Usage, from the repository root: bash native/device-pack.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
bash ../shared/device/pack.sh src/LocalMxfp4.Cli tests/LocalMxfp4.Cuda.Tests
for d in .device/app .device/tests/LocalMxfp4.Cuda.Tests; do
  (cd "$d" && rm -rf CodeCoverage macos alpine ubuntu x86 arm64 x64 cs de es fr it ja ko pl pt-BR ru tr zh-Hans zh-Hant ./*.fatbin)
done
du -sh .device
