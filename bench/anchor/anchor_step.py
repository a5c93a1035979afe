"""Training-step timing of dalle-pytorch (the reference `dalle bench compare` measures against).

Run by bench/compare.ts inside the environment that bench/anchor/install-anchor.sh creates; it is never
imported by the project. One job per process, given as JSON on the command line:

  {"model": "dvae", "batch": 32, "threads": 2, "warmup": 3, "steps": 10,
   "dvae": {"resolution": 32, "grid": 8, "codebookSize": 128, "targetMacs": 9630000}}
  {"model": "transformer", "batch": 32, "threads": 2, "warmup": 3, "steps": 10,
   "transformer": {"dModel": 64, "layers": 4, "heads": 4, "textLen": 16, "vocabSize": 128,
                   "grid": 8, "codebookSize": 128, "attention": "full"}}

A timed step is what our trainer does in one step: zero the gradients, forward with the loss, backward,
(global-norm clipping at 4 for the transformer), AdamW, and an EMA of the weights. The dVAE has no
architecture in common with ours, so its width is chosen to match our forward multiply-accumulates per
image (the work); the transformer takes our sizes directly. Prints one JSON line with the step times.
"""
import json
import math
import statistics
import sys
import time

JOB = json.loads(sys.argv[1])

import torch  # noqa: E402  (threads must be set before any work)

torch.set_num_threads(int(JOB["threads"]))
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass  # already fixed by an earlier parallel call; intra-op threads are what matter here

import warnings  # noqa: E402

warnings.filterwarnings("ignore")
import dalle_pytorch  # noqa: E402
from dalle_pytorch import DALLE, DiscreteVAE  # noqa: E402


def forward_macs(module, run):
    """Multiply-accumulates per batch item of every conv / transposed conv / linear layer in one forward."""
    total = 0

    def hook(mod, inputs, out):
        nonlocal total
        if isinstance(mod, torch.nn.Conv2d):
            per_out = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += out[0].numel() * per_out
        elif isinstance(mod, torch.nn.ConvTranspose2d):
            total += inputs[0][0].numel() * mod.kernel_size[0] * mod.kernel_size[1] * mod.out_channels
        elif isinstance(mod, torch.nn.Linear):
            total += out[0].numel() * mod.in_features

    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        run()
    for h in handles:
        h.remove()
    return total


def discrete_vae(cfg, hidden):
    return DiscreteVAE(
        image_size=cfg["resolution"],
        num_tokens=cfg["codebookSize"],
        codebook_dim=hidden,
        num_layers=int(round(math.log2(cfg["resolution"] / cfg["grid"]))),
        num_resnet_blocks=1,
        hidden_dim=hidden,
        temperature=1.0,
        kl_div_loss_weight=1.0,  # the KL term is part of our loss too
    )


def matched_vae(cfg):
    """The DiscreteVAE whose forward MACs per image are closest to ours (width a multiple of 4)."""
    best = None
    x = torch.rand(1, 3, cfg["resolution"], cfg["resolution"])
    for hidden in range(4, 257, 4):
        vae = discrete_vae(cfg, hidden)
        macs = forward_macs(vae, lambda: vae(x))
        if best is None or abs(macs - cfg["targetMacs"]) < abs(best[1] - cfg["targetMacs"]):
            best = (hidden, macs)
        if macs > 2 * cfg["targetMacs"]:
            break
    torch.manual_seed(0)
    return discrete_vae(cfg, best[0]), best[0], best[1]


class WeightEma:
    def __init__(self, params, decay):
        self.params = [p for p in params if p.requires_grad]
        self.shadow = [p.detach().clone() for p in self.params]
        self.weight = 1 - decay

    @torch.no_grad()
    def update(self):
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], self.weight)


def dvae_job(job):
    cfg = job["dvae"]
    model, hidden, macs = matched_vae(cfg)
    model.train()
    n, res = job["batch"], cfg["resolution"]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    ema = WeightEma(model.parameters(), 0.99)
    gen = torch.Generator().manual_seed(1)
    batches = [torch.rand(n, 3, res, res, generator=gen) for _ in range(4)]
    i = [0]

    def step():
        x = batches[i[0] % len(batches)]
        i[0] += 1
        opt.zero_grad(set_to_none=True)
        loss = model(x, return_loss=True)
        loss.backward()
        opt.step()
        ema.update()

    info = {"hidden": hidden, "forwardMacsPerItem": macs, "trainFlopsPerItem": 6 * macs}
    return step, model, info


def transformer_job(job):
    cfg = job["transformer"]
    torch.manual_seed(0)
    grid = cfg["grid"]
    layers_vae = 2
    # Only the VAE's sizes matter to DALLE (image_size / 2^num_layers = grid, num_tokens = codebook).
    vae = DiscreteVAE(
        image_size=grid * 2**layers_vae,
        num_tokens=cfg["codebookSize"],
        codebook_dim=16,
        num_layers=layers_vae,
        hidden_dim=16,
    )
    attn = {
        "full": ("full",),
        "sparse": ("axial_row", "axial_col", "axial_row", "conv_like"),
    }[cfg.get("attention", "full")]
    d, heads, L = cfg["dModel"], cfg["heads"], cfg["textLen"]
    model = DALLE(
        dim=d,
        vae=vae,
        num_text_tokens=cfg["vocabSize"],
        text_seq_len=L,
        depth=cfg["layers"],
        heads=heads,
        dim_head=d // heads,
        attn_types=attn,
    )
    model.train()
    n, N = job["batch"], grid * grid
    params = [p for p in model.parameters() if p.requires_grad]  # the VAE is frozen inside DALLE
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.96), weight_decay=0.045)
    ema = WeightEma(params, 0.99)
    gen = torch.Generator().manual_seed(1)
    text = torch.randint(1, cfg["vocabSize"], (n, L), generator=gen)
    lengths = 4 + torch.arange(n) % max(1, L - 3)  # captions of varying length, 0-padded at the end
    text = torch.where(torch.arange(L)[None, :] < lengths[:, None], text, torch.zeros_like(text))
    image = torch.randint(0, cfg["codebookSize"], (n, N), generator=gen)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(text, image, return_loss=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 4.0)
        opt.step()
        ema.update()

    T = L + N
    linear = forward_macs(model, lambda: model(text[:1], image[:1], return_loss=True))
    attention = cfg["layers"] * 2 * T * T * d  # QKᵀ and AV over all T positions (dense-equivalent)
    macs = linear + attention
    info = {"seqLen": T, "forwardMacsPerItem": macs, "trainFlopsPerItem": 6 * macs}
    return step, model, info


def main():
    job = JOB
    step, model, info = (dvae_job if job["model"] == "dvae" else transformer_job)(job)
    for _ in range(job["warmup"]):
        step()
    times, cpu = [], []
    for _ in range(job["steps"]):
        c0, t0 = time.process_time(), time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    out = {
        "impl": "dalle-pytorch",
        "model": job["model"],
        "versions": {"torch": torch.__version__, "dalle_pytorch": getattr(dalle_pytorch, "__version__", "?")},
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "stepSec": times,
        "cpuSec": cpu,
        "stepSecMedian": statistics.median(times),
        **info,
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
