"""``%%deepseek_trace``: parse options -> find model/optimizer -> tracer -> live view -> run cell.

The cell body is executed like IPython's ``%%time`` does it (transform, compile, exec in
the user namespace, display the value of a trailing expression), so an exception inside
the cell propagates once, marks the cell as failed (Run All stops, nbval sees it) and
still leaves the tracer detached and the view showing the state reached.
"""
from __future__ import annotations

import ast
from argparse import ArgumentTypeError
from typing import Any

import torch
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from torch import nn

from dsnotebook.dataflow.nonfinite import MODES as NONFINITE_MODES
from dsnotebook.run.lock import RunDirBusy
from dsnotebook.views.text import nonfinite_lines
from dsnotebook.trace.tracer import BACKENDS, ModelTracer, describe_parameters


def _user_objects(ns: dict[str, Any], kind: type) -> dict[str, Any]:
    return {k: v for k, v in ns.items() if not k.startswith("_") and isinstance(v, kind)}


def find_model(ns: dict[str, Any], name: str | None) -> tuple[str, nn.Module]:
    """The one top-level nn.Module of the namespace, or the one named; UsageError otherwise."""
    if name is not None:
        if name not in ns:
            raise UsageError(f"--model {name}: no variable named {name!r} in the namespace")
        if not isinstance(ns[name], nn.Module):
            raise UsageError(f"--model {name}: {name!r} is a {type(ns[name]).__qualname__}, not a torch.nn.Module")
        return name, ns[name]
    modules = _user_objects(ns, nn.Module)
    # Submodules held in their own variables (e.g. `head = model.fc`) are not candidates.
    inner = {id(sub) for m in modules.values() for sub in m.modules() if sub is not m}
    tops: dict[int, tuple[str, nn.Module]] = {}
    for k, m in modules.items():
        if id(m) not in inner:
            tops.setdefault(id(m), (k, m))
    if not tops:
        raise UsageError("%%deepseek_trace found no torch.nn.Module in the namespace: define the model in an "
                         "earlier cell, or pass --model NAME")
    if len(tops) > 1:
        names = ", ".join(sorted(k for k, _ in tops.values()))
        raise UsageError(f"%%deepseek_trace found several models: {names}. Pick one with --model NAME "
                         f"(e.g. %%deepseek_trace --model {sorted(k for k, _ in tops.values())[0]})")
    return next(iter(tops.values()))


def find_optimizer(ns: dict[str, Any], name: str | None, model: nn.Module) -> tuple[str | None, Any]:
    """The optimizer named, else None: every optimizer stepping the model's parameters is traced."""
    if name is None:
        return None, None
    if name not in ns:
        raise UsageError(f"--optimizer {name}: no variable named {name!r} in the namespace")
    opt = ns[name]
    if not isinstance(opt, torch.optim.Optimizer):
        raise UsageError(f"--optimizer {name}: {name!r} is a {type(opt).__qualname__}, not a torch.optim.Optimizer")
    mine = {id(p) for p in model.parameters()}
    if not any(id(p) in mine for g in opt.param_groups for p in g["params"]):
        raise UsageError(f"--optimizer {name}: it updates none of the model's parameters")
    return name, opt


def _every(text: str) -> int | str:
    """--every: a positive integer or "auto"."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise ArgumentTypeError(f"expected a number of steps or auto, got {text!r}") from None


def _budget(text: str) -> float:
    """--budget: "2%" or "0.02" (a fraction of the step time)."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ArgumentTypeError(f"expected a percentage such as 2%, got {text!r}") from None
    if not 0 < value < 1:
        raise ArgumentTypeError(f"the budget must be between 0% and 100%, got {text!r}")
    return value


@magics_class
class TraceMagics(Magics):
    """The ``%%deepseek_trace`` cell magic."""

    @magic_arguments()
    @argument("--model", "-m", default=None, help="variable holding the nn.Module (default: the only model in the namespace)")
    @argument("--optimizer", "-o", default=None,
              help="variable holding the optimizer (default: any optimizer that steps the model's parameters, "
                   "including one created inside the cell)")
    @argument("--every", "-e", type=_every, default=1, metavar="N|auto",
              help="record statistics every N training steps (default 1); auto: the stride that keeps "
                   "recording within --budget, with a cheap every-step sentinel (global norm, non-finite)")
    @argument("--budget", type=_budget, default=None, metavar="PCT",
              help="with --every auto (implied): recording costs at most PCT of the step time, e.g. 2%% (default 2%%)")
    @argument("--update-every", type=int, default=1, metavar="K",
              help="update statistics (||dw||/||w||) on every K-th recorded step only (default 1: every recorded "
                   "step); on large models they cost a snapshot of every weight")
    @argument("--keep", "-k", type=int, default=1000,
              help="training steps kept in memory; older ones are thinned, not dropped (default 1000)")
    @argument("--backend", default="auto", help=f"statistics backend: {', '.join(BACKENDS)} (default auto)")
    @argument("--activations-every", "-a", type=int, default=None, metavar="N",
              help="record per-module activation statistics and dead units every N steps (default: off)")
    @argument("--nonfinite", default="cheap",
              help="first non-finite localisation: cheap (checks armed after a non-finite statistic, default), "
                   "strict (checks every step) or off")
    @argument("--profile-every", "-p", type=int, default=None, metavar="N",
              help="per-layer forward/backward time, step phases and memory every N steps (default: off)")
    @argument("--no-graph", action="store_true", help="do not capture the dataflow graph of the first forward pass")
    @argument("--no-widget", action="store_true", help="no live heatmap; print a text summary at the end")
    @argument("--histogram", default=None, metavar="TENSOR",
              help="show this tensor's log2|g| histogram over steps from the first step (a click on a heatmap "
                   "row does it too, once the cell has ended)")
    @argument("--log-dir", default=None, metavar="DIR",
              help="also write the run to this new run directory while the cell runs (Run.open / "
                   "%%deepseek_open read it)")
    @argument("--name", "-n", default="_trace", help="variable that receives the tracer afterwards (default _trace)")
    @no_var_expand
    @cell_magic
    def deepseek_trace(self, line: str, cell: str) -> Any:
        """Run the cell under a ModelTracer and show its statistics live in the cell output."""
        try:
            args = parse_argstring(self.deepseek_trace, line)
        except UsageError:
            raise
        except SystemExit as exc:  # argparse exits on bad values
            raise UsageError(f"%%deepseek_trace: bad options {line!r}") from exc
        if args.every != "auto" and args.every < 1:
            raise UsageError(f"--every must be >= 1 or auto, got {args.every}")
        if args.update_every < 1:
            raise UsageError(f"--update-every must be >= 1, got {args.update_every}")
        if args.keep < 4:
            raise UsageError(f"--keep must be >= 4, got {args.keep}")
        if args.activations_every is not None and args.activations_every < 1:
            raise UsageError(f"--activations-every must be >= 1, got {args.activations_every}")
        if args.profile_every is not None and args.profile_every < 1:
            raise UsageError(f"--profile-every must be >= 1, got {args.profile_every}")
        if args.nonfinite not in NONFINITE_MODES:
            raise UsageError(f"--nonfinite must be one of {', '.join(NONFINITE_MODES)}, got {args.nonfinite!r}")
        if args.backend not in BACKENDS:
            raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got {args.backend!r}")
        if not args.name.isidentifier():
            raise UsageError(f"--name must be a Python identifier, got {args.name!r}")
        ns = self.shell.user_ns
        model_name, model = find_model(ns, args.model)
        opt_name, opt = find_optimizer(ns, args.optimizer, model)
        if args.histogram is not None:
            _check_histogram(args, model_name, model)
        try:
            tracer = ModelTracer(model, opt, every=args.every, budget=args.budget, keep=args.keep, backend=args.backend,
                                 activations_every=args.activations_every, nonfinite=args.nonfinite,
                                 capture_graph=not args.no_graph, profile_every=args.profile_every,
                                 log_dir=args.log_dir, update_every=args.update_every)
        except (TypeError, ValueError, FileExistsError, RunDirBusy) as exc:
            raise UsageError(f"%%deepseek_trace: {exc}") from exc
        tracer.run.meta["command"] = f"%%deepseek_trace {line}".strip()
        ns[args.name] = tracer
        view = None if args.no_widget else _live_view(tracer, graph=not args.no_graph, histogram=args.histogram)
        status = "finished"
        try:
            with tracer:
                if view is not None:
                    view.set_status(f"tracing {model_name}" + (f" with {opt_name}" if opt_name else "") + "…")
                result = self._execute(cell)
        except BaseException as exc:
            status = f"stopped by {type(exc).__name__}: {exc}"[:300]
            raise
        finally:
            if view is not None:
                view.close(status)
                for line in nonfinite_lines(tracer.run):
                    print(line)
            else:
                print(tracer.summary())
            if args.profile_every is not None:
                _print_advice(tracer)
        return result

    @magic_arguments()
    @argument("path", help="a run directory (live, finished or crashed), or a folder of run directories")
    @argument("--keep", "-k", type=int, default=None, help="steps kept in memory (default: what the writer kept)")
    @argument("--name", "-n", default="_run", help="variable that receives the follower / run set (default _run)")
    @no_var_expand
    @line_magic
    def deepseek_open(self, line: str) -> None:
        """Show the dashboard of a run directory, live while another process writes it."""
        try:
            args = parse_argstring(self.deepseek_open, line)
        except UsageError:
            raise
        except SystemExit as exc:
            raise UsageError(f"%deepseek_open: bad options {line!r}") from exc
        if not args.name.isidentifier():
            raise UsageError(f"--name must be a Python identifier, got {args.name!r}")
        if args.keep is not None and args.keep < 4:
            raise UsageError(f"--keep must be >= 4, got {args.keep}")
        import pathlib

        from dsnotebook.run.runs import RunSet, is_run_dir
        from dsnotebook.views.follow import follow

        path = pathlib.Path(args.path).expanduser()
        if not path.is_dir():
            raise UsageError(f"%deepseek_open: {path} is not a directory")
        if not is_run_dir(path) and any(p.is_dir() and is_run_dir(p) for p in path.iterdir()):
            runs = RunSet(path, keep=args.keep)
            self.shell.user_ns[args.name] = runs
            from IPython.display import display

            display(runs.list())
            return
        try:
            self.shell.user_ns[args.name] = follow(path, keep=args.keep)
        except (OSError, ValueError) as exc:
            raise UsageError(f"%deepseek_open: {exc}") from exc

    def _execute(self, cell: str) -> Any:
        """exec the cell in the user namespace; return the value of a trailing expression."""
        source = self.shell.transform_cell(cell)
        tree = ast.parse(source)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        filename = self.shell.compile.cache(source)
        ns = self.shell.user_ns
        exec(compile(tree, filename, "exec"), ns)
        return eval(compile(last, filename, "eval"), ns) if last is not None else None


def _check_histogram(args: Any, model_name: str, model: Any) -> None:
    """``--histogram TENSOR`` names a parameter tensor of the model, and the dashboard is on."""
    if args.no_graph or args.no_widget:
        raise UsageError("--histogram shows in the dashboard: drop --no-graph / --no-widget")
    names = [t["name"] for t in describe_parameters(model)[1]]
    if args.histogram not in names:
        raise UsageError(f"--histogram: {model_name} has no tensor {args.histogram!r} (e.g. {', '.join(names[:8])})")


def _live_view(tracer: ModelTracer, graph: bool = True, histogram: str | None = None) -> Any:
    """The dashboard (heatmap, graph, events, performance, suggestions, ``histogram``'s histogram
    over steps); the heatmap alone without a graph capture (``--no-graph``)."""
    if graph:
        from dsnotebook.views.live_dashboard import LiveDashboard

        view: Any = LiveDashboard(tracer.run, flush=tracer.flush, histogram=histogram)
    else:
        from dsnotebook.views.live_heatmap import LiveHeatmap

        view = LiveHeatmap(tracer.run, flush=tracer.flush)
    tracer.add_view(view)  # reachable afterwards: _trace.dashboard (the widget), _trace.views[-1] (the feeder)
    view.display()
    return view


def _print_advice(tracer: ModelTracer) -> None:
    """One line per tuning suggestion (details: ``_trace.advise()``; the suggestions panel shows them)."""
    try:
        for s in tracer.advise():
            print(f"advice [{s.category}] {s.title}")
    except Exception as exc:  # advice is a bonus: never fail the cell for it
        print(f"advice unavailable: {type(exc).__name__}: {exc}")
