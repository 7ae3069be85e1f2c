"""Lineage on a diamond: a dataset feeds two models, both feed one ensemble. Walked both ways,
with depth limits; every rendering (tree, json, mermaid, dot, svg with the built-in layout)."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from conftest import assert_one_line_error

from canonry.query.lineage import Lineage, layered_svg, layout, render


def _diamond(s, work):
    def f(name):
        p = work / "files" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(name)
        return str(p)

    data = s.log_artifact(f("data.csv"), name="reviews", type="dataset",
                          producer={"git_commit": "a" * 40, "command": "python prepare.py"})
    a = s.log_artifact(f("a.bin"), name="model-a", type="model", inputs=[data.address], metrics={"acc": 0.8},
                       producer={"git_commit": "b" * 40, "command": "python train.py --arch a"})
    b = s.log_artifact(f("b.bin"), name="model-b", type="model", inputs=[data.address], metrics={"acc": 0.85},
                       producer={"git_commit": "c" * 40, "command": "python train.py --arch b"})
    ens = s.log_artifact(f("e.bin"), name="ensemble", type="model", inputs=[a.address, b.address],
                         metrics={"acc": 0.9}, producer={"git_commit": "d" * 40, "command": "python ensemble.py"})
    s.link(ens.address, "model/sentiment", aliases=["production"])
    s.link(a.address, "model/sentiment")
    s.link(data.address, "dataset/reviews", aliases=["golden"])
    s.log_artifact(f("other.bin"), name="unrelated", type="model")


@pytest.fixture
def diamond(from_template):
    return from_template("lineage-diamond", _diamond)


def test_upstream_of_the_ensemble(diamond):
    g = diamond.lineage("model/sentiment:production", direction="upstream")
    assert g.root == "ensemble:v0"
    assert sorted(g.nodes) == ["ensemble:v0", "model-a:v0", "model-b:v0", "reviews:v0"]
    assert g.edges == [("model-a:v0", "ensemble:v0"), ("model-b:v0", "ensemble:v0"),
                       ("reviews:v0", "model-a:v0"), ("reviews:v0", "model-b:v0")]
    assert g.nodes["reviews:v0"].distance == -2 and g.nodes["model-a:v0"].distance == -1
    assert not g.truncated


def test_downstream_of_the_dataset(diamond):
    g = diamond.lineage("reviews:v0", direction="downstream")
    assert sorted(g.nodes) == ["ensemble:v0", "model-a:v0", "model-b:v0", "reviews:v0"]
    assert ("model-b:v0", "ensemble:v0") in g.edges and len(g.edges) == 4
    assert g.nodes["ensemble:v0"].distance == 2  # reached twice, counted once


def test_both_ways_from_the_middle(diamond):
    g = diamond.lineage("model-a:v0")
    assert sorted(g.nodes) == ["ensemble:v0", "model-a:v0", "reviews:v0"]
    assert g.edges == [("model-a:v0", "ensemble:v0"), ("reviews:v0", "model-a:v0")]
    assert "model-b:v0" not in g.nodes  # a sibling: neither made from model-a nor made it


def test_depth_limit(diamond):
    g = diamond.lineage("ensemble:v0", direction="upstream", depth=1)
    assert sorted(g.nodes) == ["ensemble:v0", "model-a:v0", "model-b:v0"] and g.truncated
    assert diamond.lineage("ensemble", depth=0).nodes.keys() == {"ensemble:v0"}


def test_nodes_carry_links_aliases_and_producer(diamond):
    g = diamond.lineage("reviews:v0", direction="downstream")
    ens = g.nodes["ensemble:v0"]
    assert ens.links == [{"address": "model/sentiment:v0", "aliases": ["production"], "tags": []}]
    assert g.nodes["model-a:v0"].links[0]["aliases"] == ["latest"]
    assert g.nodes["reviews:v0"].links[0] == {"address": "dataset/reviews:v0", "aliases": ["golden", "latest"],
                                              "tags": []}
    assert ens.producer["git_commit"] == "d" * 40 and ens.producer["command"] == "python ensemble.py"
    assert ens.metrics == {"acc": 0.9} and ens.type == "model"


def test_tree_rendering(diamond):
    text = render(diamond.lineage("model/sentiment:production", direction="upstream"), "tree")
    lines = text.splitlines()
    assert lines[0].startswith("ensemble:v0 (model) ← model/sentiment:v0 [production]")
    assert "commit dddddddddd" in lines[0] and "`python ensemble.py`" in lines[0]
    assert lines[1] == "made from:"
    assert lines[2].startswith("├── model-a:v0 (model)")
    assert lines[3].startswith("│   └── reviews:v0 (dataset) ← dataset/reviews:v0 [golden, latest]")
    assert lines[4].startswith("└── model-b:v0 (model)")
    assert lines[5] == "    └── reviews:v0 (see above)"
    both = render(diamond.lineage("model-a:v0"), "tree")
    assert "made from:" in both and "used by:" in both and "ensemble:v0" in both


def test_json_mermaid_dot(diamond):
    g = diamond.lineage("ensemble:v0")
    data = json.loads(render(g, "json"))
    assert data["root"] == "ensemble:v0" and data["direction"] == "both"
    assert {n["ref"] for n in data["nodes"]} == {"ensemble:v0", "model-a:v0", "model-b:v0", "reviews:v0"}
    assert {"from": "reviews:v0", "to": "model-a:v0"} in data["edges"]
    mermaid = render(g, "mermaid")
    assert mermaid.startswith("graph LR\n") and mermaid.count(" --> ") == 4
    assert 'model/sentiment:v0 [production]' in mermaid
    dot = render(g, "dot")
    assert dot.startswith("digraph lineage {") and dot.count(" -> ") == 4 and "penwidth=2.5" in dot


def test_builtin_svg_layout(diamond):
    g = diamond.lineage("ensemble:v0")
    svg = layered_svg(g)
    root = ET.fromstring(svg)  # well-formed XML
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert len(root.findall(".//s:g[@class='node']", ns)) == 4
    assert len(root.findall(".//s:path[@class='edge']", ns)) == 4
    boxes = layout(g)
    # layers left to right: dataset, the two models, the ensemble
    assert boxes["reviews:v0"][0] < boxes["model-a:v0"][0] == boxes["model-b:v0"][0] < boxes["ensemble:v0"][0]
    assert boxes["model-a:v0"][1] != boxes["model-b:v0"][1]
    # render() picks graphviz when installed, else this layout; either way an <svg>
    assert "<svg" in render(g, "svg")


def test_missing_input_is_a_dashed_node(diamond):
    g = Lineage(root="x:v0", direction="upstream", depth=None, nodes={}, edges=[])
    from canonry.query.lineage import Node

    g.nodes["x:v0"] = Node(ref="x:v0", artifact="x", version="v0", type="model", inputs=["gone:v3"])
    g.nodes["gone:v3"] = Node(ref="gone:v3", artifact="gone", version="v3", missing=True, distance=-1)
    g.edges = [("gone:v3", "x:v0")]
    assert "stroke-dasharray" in layered_svg(g)
    assert "gone:v3 (not in this store)" in render(g, "tree")


def test_cli_lineage(diamond, cli, tmp_path):
    r = cli("lineage", "model/sentiment:production", "--upstream", "--json")
    assert r.exit_code == 0, r
    data = r.json()
    assert set(data) == {"root", "direction", "depth", "truncated", "nodes", "edges"}
    assert data["direction"] == "upstream" and len(data["nodes"]) == 4
    node = next(n for n in data["nodes"] if n["ref"] == "ensemble:v0")
    for key in ("ref", "artifact", "version", "type", "producer", "metrics", "inputs", "links", "distance",
                "missing"):
        assert key in node
    tree = cli("lineage", "reviews:v0", "--downstream", "--depth", "1")
    assert tree.exit_code == 0 and "used by:" in tree.stdout and "ensemble" not in tree.stdout
    out = tmp_path / "g.svg"
    r = cli("lineage", "ensemble", "--format", "svg", "-o", out)
    assert r.exit_code == 0 and out.read_text().lstrip().startswith(("<svg", "<?xml"))
    assert "wrote" in r.stderr
    assert cli("lineage", "ensemble:v0", "-f", "mermaid").stdout.startswith("graph LR")


@pytest.mark.parametrize("args, words", [
    (["model/sentiment"], ["version"]),
    (["model"], ["version"]),
    (["nope:v0"], ["nope"]),
    (["ensemble:v0", "--upstream", "--downstream"], ["--upstream"]),
])
def test_cli_lineage_errors(diamond, cli, args, words):
    r = cli("lineage", *args)
    assert_one_line_error(r, 2 if "--downstream" in args else 1, contains=tuple(words))
