#!/usr/bin/env bash
# Installs the reference implementation that `dalle bench compare` measures our training step against:
# lucidrains' dalle-pytorch (DiscreteVAE, DALLE) on PyTorch's CPU kernels, into a virtual environment of
# its own, outside the repository. Nothing else in the project uses Python or this environment.
#
# Usage: bench/anchor/install-anchor.sh [--venv DIR] [--verify-only]
#   --venv DIR      where the environment lives (default $DALLE_ANCHOR_VENV, else
#                   ~/.cache/dalle/anchor/dalle-pytorch-1.6.6)
#   --verify-only   only check that the environment imports and runs both models
#
# Why it is installed this way:
#  - dalle-pytorch 1.6.6 declares dependencies that do not build here (youtokentome) or that the two
#    models never load (taming-transformers, transformers, webdataset): it is installed with --no-deps,
#    plus the packages its model code imports.
#  - dalle_pytorch.vae imports taming.models.vqgan at import time for the VQGAN wrapper only; a
#    two-class placeholder module stands in for it.
#  - PyPI's Linux torch wheel is the CUDA build and pulls ~4 GB of nvidia-* wheels; the CPU kernels it
#    uses here (MKL / oneDNN) are the same as in the CPU-only build. The environment is ~5.5 GB once.
set -euo pipefail

DALLE_PYTORCH_VERSION=1.6.6
VENV=${DALLE_ANCHOR_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/dalle/anchor/dalle-pytorch-$DALLE_PYTORCH_VERSION}
VERIFY_ONLY=0

die() {
  echo "install-anchor: error: $*" >&2
  exit 1
}
log() { echo "install-anchor: $*" >&2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
  --venv) VENV=${2:?--venv needs a folder}; shift 2 ;;
  --verify-only) VERIFY_ONLY=1; shift ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument '$1' (see --help)" ;;
  esac
done

PY="$VENV/bin/python"

verify() {
  "$PY" - <<'PY' || die "the environment in $VENV does not work (output above)"
import json, torch, dalle_pytorch
from dalle_pytorch import DALLE, DiscreteVAE
vae = DiscreteVAE(image_size=16, num_tokens=16, codebook_dim=8, num_layers=1, hidden_dim=8)
loss = vae(torch.rand(2, 3, 16, 16), return_loss=True)
loss.backward()
dalle = DALLE(dim=32, vae=vae, num_text_tokens=16, text_seq_len=4, depth=1, heads=2, dim_head=16)
loss = dalle(torch.randint(1, 16, (2, 4)), torch.randint(0, 16, (2, 64)), return_loss=True)
loss.backward()
print(json.dumps({"torch": torch.__version__, "dalle_pytorch": getattr(dalle_pytorch, "__version__", "?"),
                  "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}))
PY
}

if ((VERIFY_ONLY)); then
  [[ -x "$PY" ]] || die "no environment at $VENV (run without --verify-only to create it)"
  verify
  exit 0
fi

command -v python3 >/dev/null || die "python3 is not on PATH"
python3 -c 'import venv, ensurepip' 2>/dev/null || die "python3 lacks venv/ensurepip (Debian: apt-get install python3-venv)"
mkdir -p "$(dirname "$VENV")"
exec 9>"$(dirname "$VENV")/.lock"
flock 9 || die "could not lock $(dirname "$VENV")/.lock"

if [[ -f "$VENV/.dalle-anchor.json" ]]; then
  log "already installed in $VENV"
  verify
  exit 0
fi

[[ -x "$PY" ]] || python3 -m venv "$VENV" || die "could not create a virtual environment in $VENV"
PIP=("$PY" -m pip --disable-pip-version-check --no-input)
log "installing torch from PyPI into $VENV (several GB on first install)"
"${PIP[@]}" install torch >&2 || die "pip could not install torch"
log "installing dalle-pytorch==$DALLE_PYTORCH_VERSION without its declared dependencies"
"${PIP[@]}" install --no-deps "dalle-pytorch==$DALLE_PYTORCH_VERSION" >&2 || die "pip could not install dalle-pytorch"
"${PIP[@]}" install einops axial-positional-embedding rotary-embedding-torch packaging pillow requests tqdm \
  pyyaml omegaconf numpy "setuptools>=77.0.3,<81" >&2 || die "pip could not install dalle-pytorch's runtime imports"

# The placeholder for taming.models.vqgan (see the header).
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if ! "$PY" -c 'import taming.models.vqgan' 2>/dev/null; then
  mkdir -p "$SITE/taming/models"
  : >"$SITE/taming/__init__.py"
  : >"$SITE/taming/models/__init__.py"
  cat >"$SITE/taming/models/vqgan.py" <<'PY'
# Placeholder written by dalle-cluster's install-anchor.sh: the benchmark never builds a VQGAN.
class VQModel:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("VQGAN is not installed in this benchmark environment")


class GumbelVQ(VQModel):
    pass
PY
fi

info=$(verify)
echo "$info" >"$VENV/.dalle-anchor.json"
log "ready: $info"
