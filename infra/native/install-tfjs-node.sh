#!/usr/bin/env bash
# Installs @tensorflow/tfjs-node (or -gpu) into <project>/node_modules with its native binding built by
# node-gyp against the libtensorflow inside a PyPI TensorFlow wheel. Only package registries are used
# (npm, PyPI): tfjs-node's own install script downloads libtensorflow from a host that is not a
# registry, so it is never run.
#
# Optional by design: nothing in package.json names tfjs-node, so `npm install` and `npm test` never
# depend on this script, and a failure here leaves the project on wasm. Note that `npm install` removes
# packages it does not know about (it prunes extraneous folders), so it removes this install too:
# re-run this script afterwards; with a warm cache it only re-links files (a few seconds).
#
# Why these choices (details and evidence in README.md beside this file):
#  - tfjs-node 4.22's binding imports 55 TF_*/TFE_* functions of TensorFlow's stable C API; it was
#    written against libtensorflow 2.9.1 (scripts/deps-constants.js).
#  - PyPI wheels up to 2.11 carry the C API only inside tensorflow/python/_pywrap_tensorflow_internal.so,
#    which needs libpython at load time (undefined symbol: PyTuple_Type). From 2.12 on the wheels carry
#    libtensorflow_cc.so.2 + libtensorflow_framework.so.2, Python-free, that together export every
#    symbol the binding needs (2.21 moved 17 of them into the framework library; we link both).
#
# Usage: infra/native/install-tfjs-node.sh [--variant cpu|gpu] [--tf VERSION] [--project DIR]
#                                          [--cache DIR] [--rebuild] [--no-cuda-wheels] [--verify-only]
#                                          [--require-gpu]
#   --require-gpu   fail unless the installed backend runs on a GPU (for provisioning GPU workers)
#   --verify-only   only check that the installed package loads and computes
set -euo pipefail

VARIANT=cpu
TF_VERSION=2.18.1
PROJECT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${DALLE_NATIVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dalle-native}
REBUILD=0
CUDA_WHEELS=1
VERIFY_ONLY=0
REQUIRE_GPU=0
# Only the libraries are taken from the wheel, so any Python tag with a manylinux x86_64 wheel will do.
PY_TAG=3.11

die() {
  echo "install-tfjs-node: error: $*" >&2
  exit 1
}
log() { echo "install-tfjs-node: $*" >&2; }
# Hard links when source and destination share a file system (instant, no space), else a copy.
link_copy() { cp -al "$1" "$2" 2>/dev/null || cp -a "$1" "$2"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
  --variant) VARIANT=${2:?--variant needs cpu or gpu}; shift 2 ;;
  --tf) TF_VERSION=${2:?--tf needs a version such as 2.18.1}; shift 2 ;;
  --project) PROJECT=$(cd "${2:?--project needs a folder}" && pwd); shift 2 ;;
  --cache) CACHE=${2:?--cache needs a folder}; shift 2 ;;
  --python-version) PY_TAG=${2:?--python-version needs e.g. 3.11}; shift 2 ;;
  --rebuild) REBUILD=1; shift ;;
  --no-cuda-wheels) CUDA_WHEELS=0; shift ;;
  --verify-only) VERIFY_ONLY=1; shift ;;
  --require-gpu) REQUIRE_GPU=1; shift ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument '$1' (see --help)" ;;
  esac
done

case "$VARIANT" in
cpu) PKG=@tensorflow/tfjs-node; WHEEL_PKG=tensorflow-cpu ;;
gpu) PKG=@tensorflow/tfjs-node-gpu; WHEEL_PKG=tensorflow ;;
*) die "--variant must be cpu or gpu, got '$VARIANT'" ;;
esac
[[ "$TF_VERSION" =~ ^2\.([0-9]+)\.[0-9]+ ]] || die "--tf must look like 2.18.1, got '$TF_VERSION'"
if ((BASH_REMATCH[1] < 12)); then
  die "TensorFlow $TF_VERSION: PyPI wheels before 2.12 have no libtensorflow_cc.so.2; their C API sits in _pywrap_tensorflow_internal.so, which cannot load without libpython (undefined symbol: PyTuple_Type). Use 2.12 or later."
fi
[[ "$(uname -s)-$(uname -m)" == Linux-x86_64 ]] || die "only Linux x86_64 is scripted (got $(uname -s)-$(uname -m))"

TARGET="$PROJECT/node_modules/$PKG"
[[ -f "$PROJECT/node_modules/@tensorflow/tfjs/package.json" ]] ||
  die "$PROJECT/node_modules/@tensorflow/tfjs is missing: run 'npm install' in $PROJECT first"

# tfjs-node must match the project's tfjs exactly: it registers its kernels in that tfjs-core instance.
TFJS_VERSION=$(node -p "require('$PROJECT/node_modules/@tensorflow/tfjs/package.json').version")
# Our patches to the binding's source (patches/): part of the build's identity, so a changed patch set
# builds a new stage instead of reusing one built without it.
PATCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/patches"
PATCHES=("$PATCH_DIR"/*.patch)
[[ -e "${PATCHES[0]}" ]] || PATCHES=()
PATCH_ID=$( ((${#PATCHES[@]})) && cat "${PATCHES[@]}" | sha256sum | cut -c1-8 || echo none)
NAME="$VARIANT-tfjs${TFJS_VERSION}-tf${TF_VERSION}-p${PATCH_ID}"
STAGE="$CACHE/stage/$NAME" # the finished package, copied (hard-linked) into node_modules
WORK="$CACHE/build/$NAME"

verify() {
  # Loads the package exactly as model/tf-backend.ts does (a bare import from the project) and checks a
  # matmul against the pure-JS cpu backend, so a binding that loads but computes wrongly is caught.
  (cd "$PROJECT" && TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2} node --input-type=module -e "
    const tf = await import('$PKG');
    if (tf.getBackend() !== 'tensorflow') throw new Error('backend is ' + tf.getBackend() + ', not tensorflow');
    const b = tf.backend();
    const a = tf.tensor2d([[1, 2], [3, 4]]); const c = tf.matMul(a, a).dataSync().join(',');
    if (c !== '7,10,15,22') throw new Error('matmul gave ' + c);
    // patches/binding-list-attrs.patch: a list(string) attribute reaches TensorFlow.
    const B = b.binding;
    const fused = b.executeSingleOutput('_FusedMatMul', [
      { name: 'T', type: B.TF_ATTR_TYPE, value: B.TF_FLOAT },
      { name: 'num_args', type: B.TF_ATTR_INT, value: 1 },
      { name: 'fused_ops', type: B.TF_ATTR_STRING, value: ['BiasAdd'] },
    ], [a, a, tf.tensor1d([1, 1])]).dataSync().join(',');
    if (fused !== '8,11,16,23') throw new Error('_FusedMatMul with fused_ops [BiasAdd] gave ' + fused);
    const core = await import('@tensorflow/tfjs');
    if (core.engine() !== tf.engine()) throw new Error('tfjs-node loaded a second copy of tfjs-core');
    console.log(JSON.stringify({ package: '$PKG', tensorflow: b.binding.TF_Version, gpu: b.isUsingGpuDevice, tfjs: tf.version.tfjs }));
    if ($REQUIRE_GPU && !b.isUsingGpuDevice) throw new Error('no GPU device: TensorFlow fell back to the CPU (driver, libcuda.so.1 and the log above tell why)');
  ") || die "$PKG is in $TARGET but does not work (output above)"
}

if ((VERIFY_ONLY)); then
  verify
  exit 0
fi

for tool in node npm python3 make g++ nm readelf flock patch; do
  command -v "$tool" >/dev/null || die "'$tool' is not on PATH (Debian: apt-get install build-essential binutils python3-pip)"
done
python3 -m pip --version >/dev/null 2>&1 || die "python3 has no pip (Debian: apt-get install python3-pip)"

# node-gyp would download Node's headers from a non-registry host; point it at the installed ones.
NODEDIR=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
[[ -f "$NODEDIR/include/node/node_api.h" && -f "$NODEDIR/include/node/common.gypi" ]] ||
  die "Node headers not found under $NODEDIR/include/node (node-gyp cannot fetch them offline); install Node from a package that ships include/node"
NODE_GYP=$(node -p "require.resolve('node-gyp/bin/node-gyp.js', { paths: ['$(npm root -g)/npm/node_modules', '$(npm root -g)'] })" 2>/dev/null) ||
  die "node-gyp not found (npm normally bundles it); try: npm install -g node-gyp"

# One installer at a time per cache: two builds of the same stage would overwrite each other's files.
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9 || die "could not lock $CACHE/.lock"

# Each step leaves its output in the cache; a re-run only places the staged package.
if ((REBUILD)) || [[ ! -f "$STAGE/dalle-native.json" ]]; then
  rm -rf "$WORK" "$STAGE"
  mkdir -p "$CACHE/wheels" "$WORK"

  # 1. The TensorFlow wheel: only its two shared libraries and headers are used.
  wheel=$(ls "$CACHE/wheels/${WHEEL_PKG//-/_}-$TF_VERSION-"*.whl 2>/dev/null | head -1 || true)
  if [[ -z "$wheel" ]]; then
    log "downloading $WHEEL_PKG==$TF_VERSION from PyPI (a few hundred MB)"
    python3 -m pip download --no-deps --only-binary=:all: --python-version "$PY_TAG" \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
      -d "$CACHE/wheels" "$WHEEL_PKG==$TF_VERSION" >&2 || die "pip could not download $WHEEL_PKG==$TF_VERSION"
    wheel=$(ls "$CACHE/wheels/${WHEEL_PKG//-/_}-$TF_VERSION-"*.whl | head -1)
  fi
  log "extracting libtensorflow from $(basename "$wheel")"
  python3 - "$wheel" "$WORK/tf" <<'EOF' || die "could not extract the C API libraries from $wheel"
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(wheel)
names = set(z.namelist())
want = ['tensorflow/libtensorflow_cc.so.2', 'tensorflow/libtensorflow_framework.so.2']
missing = [n for n in want if n not in names]
if missing:
    sys.exit(f'{wheel} lacks {missing}')
for n in names:
    if n in want or n.startswith('tensorflow/include/'):
        z.extract(n, out)
EOF

  # 2. tfjs-node itself, from npm, at the project's tfjs version.
  log "fetching $PKG@$TFJS_VERSION from npm"
  (cd "$WORK" && npm pack --silent "$PKG@$TFJS_VERSION" >/dev/null) || die "npm pack $PKG@$TFJS_VERSION failed"
  mkdir -p "$WORK/pkg"
  tar xzf "$WORK"/tensorflow-tfjs-node-*"$TFJS_VERSION".tgz -C "$WORK/pkg" --strip-components=1
  for p in "${PATCHES[@]}"; do
    log "applying $(basename "$p")"
    patch -p1 -d "$WORK/pkg" <"$p" >&2 || die "$(basename "$p") does not apply to $PKG@$TFJS_VERSION"
  done
  # binding.gyp links -ltensorflow -ltensorflow_framework from deps/lib, with rpath $ORIGIN/../../deps/lib.
  mkdir -p "$WORK/pkg/deps/lib"
  cp -r "$WORK/tf/tensorflow/include" "$WORK/pkg/deps/include"
  ln "$WORK/tf/tensorflow/libtensorflow_cc.so.2" "$WORK/pkg/deps/lib/libtensorflow_cc.so.2"
  ln "$WORK/tf/tensorflow/libtensorflow_framework.so.2" "$WORK/pkg/deps/lib/libtensorflow_framework.so.2"
  ln -s libtensorflow_cc.so.2 "$WORK/pkg/deps/lib/libtensorflow.so"
  ln -s libtensorflow_framework.so.2 "$WORK/pkg/deps/lib/libtensorflow_framework.so"

  # 3. Runtime JS dependencies (index.js, callbacks.js, proto): nested inside the package so that the
  # project's tree is untouched. @tensorflow/tfjs is deliberately NOT nested: it must resolve to the
  # project's copy, or the 'tensorflow' backend would register in a second tfjs-core.
  log "installing the binding's runtime JS dependencies"
  mkdir -p "$WORK/jsdeps"
  echo '{"name":"tfjs-node-runtime-deps","version":"0.0.0","private":true}' >"$WORK/jsdeps/package.json"
  (cd "$WORK/jsdeps" && npm install --silent --ignore-scripts --no-package-lock --no-audit --no-fund \
    "@mapbox/node-pre-gyp@$(node -p "require('$WORK/pkg/package.json').dependencies['@mapbox/node-pre-gyp']")" \
    progress@2.0.3 google-protobuf@3.21.4 >&2) || die "npm could not install tfjs-node's runtime dependencies"
  mv "$WORK/jsdeps/node_modules" "$WORK/pkg/node_modules"

  # 4. Build the binding. napi version: what node-pre-gyp will look for at load time.
  napi=$(cd "$WORK/pkg" && node -e "
    const p = require('./package.json');
    const v = Math.max(...p.binary.napi_versions.filter((n) => n <= Number(process.versions.napi)));
    console.log(v)")
  log "building tfjs_binding.node (N-API $napi) against libtensorflow $TF_VERSION"
  (cd "$WORK/pkg" && node "$NODE_GYP" rebuild --nodedir="$NODEDIR" -j 2 --module_name=tfjs_binding \
    --module_path="$WORK/pkg/lib/napi-v$napi" --napi_build_version="$napi" >"$WORK/node-gyp.log" 2>&1) ||
    { tail -30 "$WORK/node-gyp.log" >&2; die "node-gyp failed (full log: $WORK/node-gyp.log)"; }
  binding="$WORK/pkg/lib/napi-v$napi/tfjs_binding.node"

  # 5. Every TF_*/TFE_* symbol the binding imports must be exported by one of the two libraries.
  nm -D --undefined-only "$binding" | awk '{print $2}' | sed 's/@.*//' | grep -E '^TFE?_' | sort -u >"$WORK/needed.txt"
  for l in libtensorflow_cc.so.2 libtensorflow_framework.so.2; do
    nm -D --defined-only "$WORK/pkg/deps/lib/$l" | awk '{print $3}' | sed 's/@.*//' | grep -E '^TFE?_' || true
  done | sort -u >"$WORK/exported.txt"
  missing=$(comm -23 "$WORK/needed.txt" "$WORK/exported.txt" | tr '\n' ' ')
  [[ -z "$missing" ]] || die "libtensorflow $TF_VERSION does not export: $missing"
  log "symbols: the binding imports $(wc -l <"$WORK/needed.txt") TF_/TFE_ functions; all exported"

  # 6. GPU: CUDA/cuDNN from PyPI's nvidia-* wheels, pinned by the TensorFlow wheel's 'and-cuda' extra.
  # The wheel's libraries carry RUNPATH $ORIGIN/../nvidia/<lib>/lib, so deps/nvidia/<lib>/lib is found
  # both at link time and by TensorFlow's own dlopen() calls, as in a Python site-packages tree.
  if [[ "$VARIANT" == gpu ]] && ((CUDA_WHEELS)); then
    mapfile -t reqs < <(python3 - "$wheel" <<'EOF'
import sys, zipfile, re
z = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))
for line in z.read(meta).decode().splitlines():
    m = re.match(r"Requires-Dist: (nvidia-[\w-]+)\s*\(?([=<>!~][^;)]*)\)?\s*;\s*extra == .and-cuda.", line)
    if m:
        print(m.group(1) + m.group(2).replace(' ', ''))
EOF
    )
    ((${#reqs[@]})) || die "$(basename "$wheel") names no nvidia-* wheels in its 'and-cuda' extra"
    log "downloading CUDA wheels: ${reqs[*]}"
    python3 -m pip download --no-deps --only-binary=:all: --python-version "$PY_TAG" \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
      -d "$CACHE/wheels" "${reqs[@]}" >&2 || die "pip could not download the CUDA wheels"
    for r in "${reqs[@]}"; do
      base=${r%%[=<>!~]*}
      ver=${r#"$base"}
      ver=${ver#==}
      w=$(ls "$CACHE/wheels/${base//-/_}-$ver-"*.whl | head -1)
      python3 -c "
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for n in z.namelist():
    if n.startswith('nvidia/'):
        z.extract(n, sys.argv[2])
" "$w" "$WORK/pkg/deps" || die "could not unpack $w"
    done
  fi

  # 7. Stage: the package as it will sit in node_modules, plus a record of what it was built from.
  mkdir -p "$STAGE/deps"
  for p in package.json dist node_modules lib; do link_copy "$WORK/pkg/$p" "$STAGE/"; done
  link_copy "$WORK/pkg/deps/lib" "$STAGE/deps/"
  [[ ! -d "$WORK/pkg/deps/nvidia" ]] || link_copy "$WORK/pkg/deps/nvidia" "$STAGE/deps/"
  rm -f "$STAGE/deps/lib/libtensorflow.so" "$STAGE/deps/lib/libtensorflow_framework.so" # link-time names only
  sha=$(sha256sum "$wheel" | cut -d' ' -f1)
  cat >"$STAGE/dalle-native.json" <<EOF
{
  "package": "$PKG",
  "tfjsNode": "$TFJS_VERSION",
  "tensorflow": "$TF_VERSION",
  "wheel": "$(basename "$wheel")",
  "wheelSha256": "$sha",
  "library": "libtensorflow_cc.so.2 + libtensorflow_framework.so.2",
  "symbols": $(wc -l <"$WORK/needed.txt"),
  "napi": $napi,
  "patches": "$(for p in "${PATCHES[@]}"; do basename "$p"; done | paste -sd, -)",
  "node": "$(node -v)",
  "cudaWheels": $([[ -d "$STAGE/deps/nvidia" ]] && echo true || echo false),
  "builtAt": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
EOF
fi

# 8. Place it. Hard links make this instant and cost no space; the cache keeps the files alive after
# `npm install` prunes the folder. Never touches package.json or package-lock.json.
log "placing $PKG in $TARGET"
rm -rf "$TARGET"
mkdir -p "$(dirname "$TARGET")"
link_copy "$STAGE" "$TARGET"
verify
