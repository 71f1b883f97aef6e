"""Reference numbers for the activation tests: seeded batches, plain float64 statistics of one output,
and clones of every module's output from a separate forward (hooks of the test's own)."""
import torch
import torch.nn.functional as F


def _batch(i, n=16):
    g = torch.Generator().manual_seed(100 + i)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def _step(model, opt, i):
    x, y = _batch(i)
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.detach()


def _plain(t):
    """Straightforward float64 statistics of one module output."""
    x = t.detach().double().reshape(-1)
    fin = torch.isfinite(x)
    xf = x[fin]
    return {"mean": float(xf.mean()), "std": float(xf.std()), "absmax": float(xf.abs().max()),
            "zero_frac": float((x == 0).double().mean()), "nonfinite": int((~fin).sum())}


def _reference_outputs(model, x):
    """Clones of every module's output for one forward (first call of each module)."""
    seen, handles = {}, []
    for name, m in model.named_modules():
        def hook(mod, args, out, _n=name or "(root)"):
            if isinstance(out, tuple):
                out = out[0]
            seen.setdefault(_n, out.detach().clone())
        handles.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def sampled_run(model, make_input, steps, loss=lambda out: out.sum(), lr=0.0, **tracer_kw):
    """``steps`` SGD steps of ``model`` on ``make_input()`` under a tracer sampling every step; the tracer."""
    from dsnotebook import ModelTracer

    opt = torch.optim.SGD(model.parameters(), lr=lr)
    with ModelTracer(model, opt, activations_every=1, **tracer_kw) as tracer:
        for _ in range(steps):
            opt.zero_grad()
            loss(model(make_input())).backward()
            opt.step()
    return tracer
