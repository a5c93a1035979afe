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

With "network": "ours" in a dVAE job (and "layout", our network's layout as model/dvae.ts's dvaeLayout
gives it, plus "parameters", our count), PyTorch runs OUR dVAE instead of dalle-pytorch's: the same convs,
resblocks, resampling and loss terms (logit-Laplace NLL with its edge weights, KL to uniform, Gumbel-softmax
sample, argmax codes and MSE), so the two implementations can be told apart from the two architectures.
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
    gen = torch.Generator().manual_seed(1)
    n, res = job["batch"], cfg["resolution"]
    batches = [torch.rand(n, 3, res, res, generator=gen) for _ in range(4)]
    step = image_step(model, batches, lambda x: model(x, return_loss=True))
    info = {"hidden": hidden, "forwardMacsPerItem": macs, "trainFlopsPerItem": 6 * macs}
    return step, model, info


def image_step(model, batches, loss_of):
    """One timed dVAE step over the batches in turn: zero the gradients, loss, backward, AdamW, EMA."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    ema = WeightEma(model.parameters(), 0.99)
    i = [0]

    def step():
        x = batches[i[0] % len(batches)]
        i[0] += 1
        opt.zero_grad(set_to_none=True)
        loss_of(x).backward()
        opt.step()
        ema.update()

    return step


class OurDvae(torch.nn.Module):
    """Our dVAE network (model/dvae.ts) from its layout, NCHW as PyTorch runs convolutions."""

    def __init__(self, layout):
        super().__init__()
        nn = torch.nn
        self.layout = layout
        self.convs = nn.ModuleDict()

        def conv(c, stride=1):
            name = c["name"].replace(".", "_")
            k = c["k"]
            pad = "same" if stride == 1 else (k - 1) // 2
            self.convs[name] = nn.Conv2d(c["nIn"], c["nOut"], k, stride=stride, padding=pad)
            return name

        def tconv(c):
            name = c["name"].replace(".", "_")
            self.convs[name] = nn.ConvTranspose2d(c["nIn"], c["nOut"], c["k"], stride=2, padding=1)
            return name

        def side(s):
            groups = []
            for g in s["groups"]:
                blocks = [
                    {"id": conv(b["id"]) if b.get("id") else None, "convs": [conv(c) for c in b["convs"]]}
                    for b in g["blocks"]
                ]
                resample = None
                if g["resample"]:
                    if g.get("transpose"):
                        resample = ("transpose", tconv(g["transpose"]))
                    elif g.get("shuffle"):
                        resample = ("shuffle", conv(g["shuffle"]))
                    elif g.get("down"):
                        resample = ("down", conv(g["down"], stride=2))
                    else:
                        resample = ("pool",) if s is layout["encoder"] else ("nearest",)
                groups.append((blocks, resample))
            return {"input": conv(s["input"]), "groups": groups, "output": conv(s["output"])}

        self.enc = side(layout["encoder"])
        self.dec = side(layout["decoder"])

    def run(self, s, h):
        F = torch.nn.functional
        gain = self.layout["postGain"]
        h = self.convs[s["input"]](h)
        for blocks, resample in s["groups"]:
            for b in blocks:
                r = h
                for name in b["convs"]:
                    r = self.convs[name](F.relu(r))
                h = (self.convs[b["id"]](h) if b["id"] else h) + gain * r
            if resample is None:
                continue
            kind = resample[0]
            if kind == "pool":
                h = F.max_pool2d(h, 2)
            elif kind == "nearest":
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            elif kind == "shuffle":
                h = F.pixel_shuffle(self.convs[resample[1]](h), 2)
            else:
                h = self.convs[resample[1]](h)
        return self.convs[s["output"]](F.relu(h))

    def loss(self, x255, tau, beta):
        """Our training loss for uint8-valued images [N, 3, R, R] (logit-Laplace, edge weights, KL)."""
        F = torch.nn.functional
        lay = self.layout
        eps = lay["eps"]
        n, _, r, _ = x255.shape
        x = x255 * ((1 - 2 * eps) / 255) + eps
        logits = self.run(self.enc, 2 * x - 1 if lay["centerInput"] else x)
        u = torch.rand_like(logits)
        z = F.softmax((logits - torch.log(-torch.log(u))) / tau, dim=1)
        out = self.run(self.dec, z)
        mu, ln_b = out[:, :3], out[:, 3:]
        if lay["maxLnB"] is not None:
            ln_b = ln_b.clamp(max=lay["maxLnB"])
        if lay["minLnB"] is not None:
            ln_b = ln_b.clamp(min=lay["minLnB"])
        logit_x = torch.log(x) - torch.log(1 - x)
        nll = (logit_x - mu).abs() * torch.exp(-ln_b) + ln_b + math.log(2) + torch.log(x * (1 - x))
        if lay["edgeWeight"] > 0:
            with torch.no_grad():
                spread = F.max_pool2d(x, 3, 1, 1) + F.max_pool2d(-x, 3, 1, 1)
                edge = (spread.amax(1, keepdim=True) > 0.02).float()
            fit = (nll * (1 + lay["edgeWeight"] * edge)).sum() / n
        else:
            fit = nll.sum() / n
        log_q = F.log_softmax(logits, dim=1)
        kl = ((log_q.exp() * log_q).sum(1) + math.log(logits.shape[1])).sum() / n
        loss = (fit + beta * kl) / (r * r * 3)
        with torch.no_grad():
            recon = ((torch.sigmoid(mu) - eps) / (1 - 2 * eps)).clamp(0, 1)
            mse = (recon - x255 / 255).square().mean()
            codes = logits.argmax(1)
        return loss, mse, codes


def our_dvae_job(job):
    cfg = job["dvae"]
    torch.manual_seed(0)
    model = OurDvae(cfg["layout"])
    count = sum(p.numel() for p in model.parameters())
    if count != cfg["parameters"]:
        raise SystemExit(f"our dVAE rebuilt in PyTorch has {count} parameters, ours {cfg['parameters']}")
    gen = torch.Generator().manual_seed(1)
    n, res = job["batch"], cfg["resolution"]
    batches = [torch.randint(0, 256, (n, 3, res, res), generator=gen).float() for _ in range(4)]
    step = image_step(model, batches, lambda x: model.loss(x, 1.0, 1.0)[0])
    macs = forward_macs(model, lambda: model.loss(batches[0][:1], 1.0, 1.0))
    info = {"network": "ours", "forwardMacsPerItem": macs, "trainFlopsPerItem": 6 * macs}
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
    if job["model"] == "dvae":
        step, model, info = (our_dvae_job if job.get("network") == "ours" else dvae_job)(job)
    else:
        step, model, info = transformer_job(job)
    for _ in range(job["warmup"]):
        step()
    times, cpu = [], []
    for _ in range(job["steps"]):
        c0, t0 = time.process_time(), time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    out = {
        "impl": "torch (our network)" if job.get("network") == "ours" else "dalle-pytorch",
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
