"""A store for the web catalog's tests: registries of both visibilities, a collection with three
versions and metrics, lineage, aliases, a proposal branch, hostile descriptions, an automation run."""
from __future__ import annotations

from pathlib import Path

import canonry

HOSTILE = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'
MEMBER = "bob@example.com"
OUTSIDER = "carol@example.com"


def build_catalog_store(path: Path, files: Path) -> canonry.Store:
    files.mkdir(parents=True, exist_ok=True)

    def f(name: str, text: str) -> str:
        p = files / name
        p.write_text(text)
        return str(p)

    s = canonry.init(str(path))
    s.log_artifact(f("mnist.csv", "a,b\n1,2\n"), name="mnist", type="dataset", metrics={"rows": 2})
    s.link("mnist:v0", "dataset/mnist", aliases=["production"])
    for k, (acc, loss) in enumerate([(0.8, 0.5), (0.85, 0.4), (0.91, 0.3)]):
        s.log_artifact(f("my_model.txt", f"weights {k}\n"), name="gemma-finetuned", type="model",
                       metadata={"base": "gemma", "epochs": k + 1}, metrics={"accuracy": acc, "loss": loss},
                       inputs=["mnist:v0"], description=HOSTILE if k == 0 else "",
                       producer={"command": f"python train.py --epochs {k + 1}"})
        s.link(f"gemma-finetuned:v{k}", "model/first-collection", description=HOSTILE if k == 0 else "")
    s.set_alias("model/first-collection:v1", "production")
    s.set_alias("model/first-collection:v2", "staging")
    s.tag("model/first-collection", "vision")
    s.create_registry("evil", description=HOSTILE, visibility="organization", types=["model"])
    s.create_registry("secret", description="members only", visibility="restricted", types=["model"])
    s.set_member("secret", MEMBER, "viewer")
    s.log_artifact(f("hidden.txt", "hidden\n"), name="hidden-model", type="model")
    s.link("hidden-model:v0", "secret/skunkworks", aliases=["production"])
    s.set_automations([{"name": "notify", "on": "alias.added", "action": "carrier-pigeon"}])
    s.set_alias("model/first-collection:v2", "best")
    with canonry.open(str(path), branch="promote/x") as proposal:
        proposal.set_alias("model/first-collection:v2", "production")
    return s
