"""`canonry quickstart DIR`: the seeds' hello_collection flow, in a new local store.

W&B's version logs my_model.txt as an artifact and links it to model/first-collection; here
every step is a commit in DIR, and the history at the end is read back from git.
"""
from __future__ import annotations

import os
import tempfile

from canonry.errors import InvalidInput

__all__ = ["run"]


def run(directory: str, say) -> None:
    from canonry.cli import render as views
    from canonry.store import init_store

    if os.path.exists(directory) and os.listdir(directory):
        raise InvalidInput(f"quickstart wants a new or empty directory; {directory} is not empty")
    store, _ = init_store(directory)
    say(f"$ canonry init {directory}")
    say(f"  initialized store on branch {store.branch}: registries model, dataset\n")
    with tempfile.TemporaryDirectory(prefix="canonry-quickstart-") as work:
        model_file = os.path.join(work, "my_model.txt")
        with open(model_file, "w") as f:
            f.write("A small model: weights would go here.\n")
        v = store.log_artifact(model_file, name="gemma-finetuned", type="model",
                               metadata={"base": "gemma", "epochs": 3}, metrics={"accuracy": 0.91})
    say("$ canonry log my_model.txt --name gemma-finetuned --type model --metric accuracy=0.91")
    say(f"  logged {v.address} ({v.digest[:19]})\n")
    lv = store.link(v.address, "model/first-collection", aliases=["staging"])
    say(f"$ canonry link {v.address} model/first-collection --alias staging")
    say(f"  linked {v.address} -> {lv.address} [staging]\n")
    say("$ canonry show model/first-collection")
    say(views.render_show(store.show("model/first-collection")) + "\n")
    say("$ canonry history model/first-collection")
    say(views.history_table(store.history("model/first-collection")) + "\n")
    say(f"Try: canonry -C {directory} alias set model/first-collection:v0 production")
    say(f"     git -C {directory} log --stat")
