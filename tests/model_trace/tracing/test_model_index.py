"""One walk over a module tree: paths as ``named_modules`` gives them, parameter names, and
structure keys that are equal exactly for modules built alike."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from model_trace.tracing.model_index import NO_KEY, ModelIndex


def _meta_linear(n_in: int = 4, n_out: int = 4) -> nn.Linear:
    return nn.Linear(n_in, n_out, device="meta")


class Tree(nn.Module):
    """Three blocks alike, one unlike; a module and a weight held at two places; a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(_meta_linear(), nn.ReLU())
                                     for _ in range(3)])
        self.other = nn.Sequential(_meta_linear(4, 5), nn.ReLU())
        self.norm = nn.LayerNorm(4, device="meta")
        self.alias = self.blocks[0]  # one module at two paths
        self.head = _meta_linear()
        self.tied = _meta_linear()
        self.tied.weight = self.head.weight  # one weight held by two modules
        self.register_buffer("table", torch.zeros(3))


def test_paths_and_module_order_are_those_of_named_modules() -> None:
    tree = Tree()
    index = ModelIndex(tree)
    assert [(path, module) for path, module in index.named_modules()] == list(
        tree.named_modules())
    assert index.path_of(tree) == "" and index.path_of(tree.alias) == "blocks.0"
    assert index.path_of(tree.blocks[1][0]) == "blocks.1.0"
    assert index.path_of(_meta_linear()) is None
    assert index.subtree(tree.other) == [tree.other, tree.other[0], tree.other[1]]
    skipped = [path for path, _ in index.named_modules({"blocks", "other.0"})]
    assert skipped == [p for p, _ in tree.named_modules() if not p.startswith("blocks.")]
    assert "blocks" in skipped and "other.0" in skipped
    assert ModelIndex(None).path_of(tree) is None


def test_modules_outside_the_tree_are_named_where_they_were_added() -> None:
    index = ModelIndex(Tree())
    made = nn.Sequential(_meta_linear())
    index.add_module(made, "Sequential")
    index.add_module(made, "Sequential#2")  # the first name stays
    assert index.path_of(made) == "Sequential" and index.path_of(made[0]) == "Sequential.0"


def test_tensors_are_named_at_their_first_holder() -> None:
    tree = Tree()
    index = ModelIndex(tree)
    assert index.tensor_name(tree.blocks[1][0].bias) == ("parameter", "blocks.1.0.bias")
    assert index.tensor_name(tree.blocks[1][0].bias, near=tree.blocks[1]) == (
        "parameter", "blocks.1.0.bias")
    assert index.tensor_name(tree.norm.weight, near=tree.blocks[0]) == (
        "parameter", "norm.weight")  # not below the module running: looked up everywhere
    assert index.tensor_name(tree.tied.weight, near=tree.tied) == ("parameter", "head.weight")
    assert index.tensor_name(tree.table) == ("buffer", "table")
    assert index.tensor_name(torch.zeros(3)) is None
    assert index.buffers() == [tree.table]


def test_modules_built_alike_share_a_structure_key() -> None:
    tree = Tree()
    index = ModelIndex(tree)
    one, two = index.key(tree.blocks[1]), index.key(tree.blocks[2])
    assert one == two != NO_KEY
    assert index.key(tree.blocks[1][0]) == index.key(tree.blocks[2][0])
    assert index.key(tree.other) not in (one, NO_KEY)  # another shape inside
    assert index.key(tree.norm) not in (one, NO_KEY)
    assert index.key(_meta_linear()) == NO_KEY  # outside the tree
    # held at two places, holding a tensor held twice, holding a buffer: no key, nor for
    # the modules holding them
    assert index.key(tree.alias) == NO_KEY == index.key(tree)
    assert index.key(tree.head) == NO_KEY == index.key(tree.tied)


def _key_pair(change) -> tuple[int, int]:
    """Keys of two modules alike but for ``change`` made to the second."""
    pair = nn.ModuleList([nn.Sequential(_meta_linear(), nn.Dropout(0.1)) for _ in range(2)])
    change(pair[1])
    index = ModelIndex(pair)
    return index.key(pair[0]), index.key(pair[1])


@dataclasses.dataclass(frozen=True)
class Frozen:
    size: int


@dataclasses.dataclass
class Mutable:
    size: int


def test_what_makes_a_structure_key_differ_or_vanish() -> None:
    def setter(name, value):
        return lambda module: setattr(module[1], name, value)

    same = _key_pair(lambda module: None)
    assert same[0] == same[1] != NO_KEY
    pair = nn.ModuleList([nn.Sequential(_meta_linear(), nn.Dropout(0.1)) for _ in range(2)])
    assert ModelIndex(pair).key(pair) not in (NO_KEY, same[0])  # the root has one too
    first, second = _key_pair(setter("p", 0.2))  # another plain attribute's value
    assert NO_KEY not in (first, second) and first != second
    first, second = _key_pair(setter("sizes", (1, Frozen(2))))  # immutable values: a key
    assert second != NO_KEY and second != first
    first, second = _key_pair(lambda module: module[0].train(False))
    assert NO_KEY not in (first, second) and first != second
    first, second = _key_pair(lambda module: module[0].half())  # another dtype
    assert NO_KEY not in (first, second) and first != second
    for change in (setter("sizes", [1, 2]),  # a mutable attribute
                   setter("config", Mutable(2)),
                   setter("table", (1, [2])),
                   lambda module: module[0].register_forward_hook(lambda *a: None),
                   lambda module: module[0].register_forward_pre_hook(lambda *a: None),
                   lambda module: module[0].register_buffer("count", torch.zeros(1)),
                   lambda module: module[0].to_empty(device="cpu"),  # values, not shapes
                   lambda module: setattr(module[0].weight, "scale", torch.ones(1))):
        first, second = _key_pair(change)
        assert first != NO_KEY and second == NO_KEY


def test_a_parameter_s_attributes_are_part_of_its_key() -> None:
    def scaled(module: nn.Module) -> None:
        linear = module[0]
        linear.weight.scale = linear.bias  # an fp8 weight's scale: another parameter
        linear.weight.block = 128

    first, second = _key_pair(scaled)
    assert NO_KEY not in (first, second) and first != second
    pair = nn.ModuleList([nn.Sequential(_meta_linear(), nn.Dropout(0.1)) for _ in range(2)])
    for module in pair:
        scaled(module)
    index = ModelIndex(pair)
    assert index.key(pair[0]) == index.key(pair[1]) != NO_KEY
    pair[1][0].register_buffer("empty", None)  # a buffer slot left empty: still a key
    assert ModelIndex(pair).key(pair[1]) not in (NO_KEY, ModelIndex(pair).key(pair[0]))
