#!/usr/bin/env bash
# One call on the GPU machine (no .NET there; see ../shared/device/README.md): build the kernels with the machine's
# CUDA, disassemble, run the GPU tests plainly and under compute-sanitizer, run `lmx bench --backend cuda`, and look for
# pretrained LLaMA weights already on the machine. Expects .device/ from native/device-pack.sh (lmx and the CUDA tests,
# published by ../shared/device/pack.sh and pruned under the carry limit). Everything lands in $OUT.
#   usage: bash native/device-run.sh [steps…]   steps: build sass tests bench profile look sanitize (default: all but profile)
set -uo pipefail
OUT=${OUT:-/tmp/lmx-out}
mkdir -p "$OUT"
steps=${*:-build sass tests sanitize bench look}
has() { [[ " $steps " == *" $1 "* ]]; }

mkdir -p /tmp/dn && tar -xJf .device/dotnet.tar.xz -C /tmp/dn
export DOTNET_ROOT=/tmp/dn PATH=/tmp/dn:$PATH DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv; nvcc --version | tail -2; } | tee "$OUT/gpu.txt"
tests=.device/tests/LocalMxfp4.Cuda.Tests/LocalMxfp4.Cuda.Tests.dll

if has build; then
  echo "== build (CUDA on this machine)"
  cmake -S native -B /tmp/nb -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build /tmp/nb -j16 2>&1 | tee "$OUT/build.txt" | tail -5
  ls -la /tmp/nb/*.fatbin
  export LOCALMXFP4_KERNELS_DIR=/tmp/nb
fi

if has sass; then
  echo "== disassembly"
  {
    for arch in sm_90 sm_90a sm_100a sm_120a; do
      echo "-- $arch: instruction counts per kernel (IMMA = int8 tensor core, QMMA = fp8 tensor core, IDP.4A = dp4a)"
      cuobjdump -sass -arch $arch /tmp/nb/localmxfp4_kernels.fatbin 2>/dev/null | awk '/Function :/{f=$3} /IMMA|QMMA|IDP\.4A|HMMA|LDL|STL/{for(i=1;i<=NF;i++) if($i ~ /^(IMMA|QMMA|IDP|HMMA|LDL|STL)/){c[f" "$i]++; break}} END{for(k in c) print "  " k, c[k]}' | sort
    done
    echo "-- localmxfp4_blackwell.fatbin (sm_120a): block-scaled FP4 MMA instructions"
    cuobjdump -sass /tmp/nb/localmxfp4_blackwell.fatbin 2>&1 | grep -E "Function|arch|MMA" | head -20
  } | tee "$OUT/sass.txt"
fi

if has tests; then
  echo "== tests"
  timeout 240 dotnet $tests -parallel none 2>&1 | tee "$OUT/tests.txt" | grep -vE "^\s*$" | tail -25
fi

if has bench; then
  echo "== bench"
  timeout 240 dotnet .device/app/lmx.dll bench --backend cuda --prefill-tokens 2048 --decode-tokens 256 --repeats 5 2>&1 | tee "$OUT/bench.txt"
fi

if has profile; then
  echo "== ncu: decode kernels of a 2-layer model (LMX_BENCH_LAYERS=2)"
  LMX_BENCH_LAYERS=2 timeout 300 ncu --graph-profiling node --kernel-name regex:"lmx_(attention|gemv|rope|quantize)" --launch-skip 60 --launch-count 12 \
    --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
    dotnet .device/app/lmx.dll bench --backend cuda --prefill-tokens 16 --decode-tokens 8 --repeats 1 > "$OUT/ncu.txt" 2>&1
  grep -E "lmx_|Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per|Stall|Warp Cycles Per Issued|Grid Size|Block Size" "$OUT/ncu.txt" | head -150
fi

if has ab; then
  echo "== A/B: decode with the driver's carveout, and without programmatic launch"
  LOCALMXFP4_CARVEOUT=-1 timeout 120 dotnet .device/app/lmx.dll bench --backend cuda --prefill-tokens 0 --decode-tokens 256 --repeats 5 2>&1 | grep -E "carveout|decode|graph" | tee "$OUT/ab-carveout.txt"
  LMX_BENCH_PDL=0 timeout 120 dotnet .device/app/lmx.dll bench --backend cuda --prefill-tokens 0 --decode-tokens 256 --repeats 5 2>&1 | grep -E "carveout|decode|graph" | tee "$OUT/ab-pdl.txt"
fi

if has look; then
  echo "== pretrained LLaMA-family weights already on this machine?"
  {
    for d in ~/.cache/huggingface /root/.cache/huggingface /data /models /opt /workspace /mnt; do [ -e "$d" ] && { echo "$d:"; ls -la "$d" 2>&1 | head -20; }; done
    echo "HF_HOME=${HF_HOME:-} TRANSFORMERS_CACHE=${TRANSFORMERS_CACHE:-}"
    timeout 20 find / -xdev \( -name '*.safetensors' -o -name '*.gguf' -o -name 'consolidated*.pth' -o -name 'pytorch_model*.bin' \) -size +1M 2>/dev/null | grep -v "^/proc" | head -30
    timeout 20 find / -xdev -iname '*llama*' -maxdepth 6 -type d 2>/dev/null | grep -vE "^/(proc|sys|usr/share/doc)" | head -30
  } 2>&1 | tee "$OUT/weights-search.txt"
fi
if has sanitize; then
  echo "== compute-sanitizer memcheck (kernel tests + model tests)"
  timeout 200 compute-sanitizer --tool memcheck --print-limit 20 dotnet $tests -parallel none -class LocalMxfp4.Cuda.Tests.KernelTests -class LocalMxfp4.Cuda.Tests.ModelTests 2>&1 | tee "$OUT/sanitizer.txt" | grep -E "ERROR SUMMARY|Total:|Failed|error" | tail -8
fi

echo "== done"
