"""core.hooks: the shared global module hooks behind ``hook_modules(..., with_kwargs=False)``."""
import pytest
import torch
import torch.nn.modules.module as torch_module
from torch import nn

from dsnotebook.core.hooks import HookSet, global_hooks_installed, hook_modules


def _net():
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 2)))


def _no_global_hooks():
    return not torch_module._global_forward_hooks and not torch_module._global_forward_pre_hooks


@pytest.mark.parametrize("with_kwargs", [True, False])
def test_same_calls_either_way(with_kwargs):
    """Per-module and shared global hooks see the same calls, names and outputs, in the same order."""
    model, log, hooks = _net(), [], HookSet()
    hook_modules(model, lambda n, m, a, k: log.append(("pre", n)),
                 lambda n, m, a, k, out: log.append(("post", n, tuple(out.shape))), hooks, with_kwargs=with_kwargs)
    assert len(hooks) == 2 * len(list(model.modules()))
    model(torch.randn(3, 4))
    hooks.remove()
    assert log == [("pre", ""), ("pre", "0"), ("post", "0", (3, 4)), ("pre", "1"), ("post", "1", (3, 4)),
                   ("pre", "2"), ("pre", "2.0"), ("post", "2.0", (3, 2)), ("post", "2", (3, 2)), ("post", "", (3, 2))]
    assert len(hooks) == 0 and _no_global_hooks() and not global_hooks_installed()
    model(torch.randn(3, 4))
    assert len(log) == 10  # nothing after removal


def test_subscribers_nest_and_other_modules_are_ignored():
    """Pre hooks in subscription order, post hooks in reverse; modules outside the model never reach them."""
    model, other, log = _net(), nn.Linear(4, 4), []
    first, second = HookSet(), HookSet()
    hook_modules(model, lambda n, m, a, k: log.append(("a", n)), lambda n, m, a, k, o: log.append(("/a", n)), first,
                 with_kwargs=False)
    hook_modules(model, lambda n, m, a, k: log.append(("b", n)), lambda n, m, a, k, o: log.append(("/b", n)), second,
                 with_kwargs=False)
    other(torch.randn(1, 4))
    assert log == []
    model[0](torch.randn(1, 4))
    assert log == [("a", "0"), ("b", "0"), ("/b", "0"), ("/a", "0")]
    first.remove()
    assert global_hooks_installed()  # the second subscriber still needs them
    log.clear()
    model[0](torch.randn(1, 4))
    assert log == [("b", "0"), ("/b", "0")]
    second.remove()
    assert _no_global_hooks()


def test_post_hook_runs_when_forward_raises_and_the_users_exception_is_kept():
    class Bad(nn.Module):
        def forward(self, x):
            raise KeyError("user bug")

    model, seen, hooks = nn.Sequential(nn.Linear(2, 2), Bad()), [], HookSet()

    def post(name, m, a, k, out):
        seen.append(name)
        if name == "1":
            hooks.remove()  # asked for inside the always-called hook of a raising forward: deferred

    hook_modules(model, None, post, hooks, with_kwargs=False)
    with pytest.raises(KeyError, match="user bug"):
        model(torch.randn(1, 2))
    assert seen == ["0", "1", ""] and hooks.deferred
    hooks.remove()
    assert _no_global_hooks() and len(hooks) == 0


def test_replaced_module_gets_its_new_name_map():
    """The id -> name map is cached per model; replacing a submodule rebuilds it."""
    model, log = _net(), []
    hooks = HookSet()
    hook_modules(model, None, lambda n, m, a, k, o: log.append((n, m)), hooks, with_kwargs=False)
    hooks.remove()
    model[0] = nn.Linear(4, 4)
    hooks = HookSet()
    hook_modules(model, None, lambda n, m, a, k, o: log.append((n, m)), hooks, with_kwargs=False)
    model(torch.randn(1, 4))
    hooks.remove()
    assert ("0", model[0]) in log


def test_shared_hooks_run_after_a_modules_own_hooks():
    """A module with hooks of its own (FSDP2's all-gather, a user's hook) is bracketed inside them:
    its own pre-hook runs before ours, so its waiting is not counted as the module's compute."""
    from torch import nn
    from dsnotebook.core.hooks import HookSet, hook_modules

    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    order: list[str] = []
    own = model[1].register_forward_pre_hook(lambda m, a: order.append("own pre"))
    own_post = model[1].register_forward_hook(lambda m, a, o: order.append("own post"))
    hooks = HookSet()
    hook_modules(model, lambda name, *a: order.append(f"pre {name}"), lambda name, *a: order.append(f"post {name}"),
                 hooks, with_kwargs=False)
    model(torch.zeros(1, 2))
    hooks.remove()
    own.remove(), own_post.remove()
    i = order.index("own pre")
    assert order[i + 1] == "pre 1", order  # ours after theirs
    assert order.index("own post") < order.index("post 1"), order
    assert "pre 0" in order and "post 0" in order  # the others through the shared hooks
    assert len(hooks) == 0
