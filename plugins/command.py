"""Built-in action `command`: run a configured command with the event.

The event goes to the command as JSON on stdin and as environment variables
(CANONRY_EVENT_KIND, CANONRY_EVENT_ID, CANONRY_EVENT_TARGET, CANONRY_EVENT_COLLECTION,
CANONRY_EVENT_VERSION, CANONRY_EVENT_ALIAS, CANONRY_EVENT_PREVIOUS_VERSION,
CANONRY_EVENT_ARTIFACT, CANONRY_EVENT_COMMIT, CANONRY_EVENT_ACTOR). It runs without a shell.
Off unless the store's canonry.yaml says `trust_local_automations: true` on the store branch
(never a proposal's): the command comes from the repository, so running it is a decision the
store's owners make, in review.

    automations:
      - name: evaluate-new-versions
        on: link.created
        filter: {registry: model}
        action: command
        with: {command: ["python", "eval.py"], timeout: 600}
"""
import json
import os
import shlex
import subprocess

from canonry import hookimpl

__version__ = "1.0"


def run(event, params, store):
    from canonry.automation.trust import trusted_config, trusted_view

    # the switch is read at the store branch head: a proposal branch cannot turn it on
    if not trusted_config(trusted_view(store.storage, store.cache)).get("trust_local_automations", False):
        raise PermissionError("command automations are off: the store's canonry.yaml does not set "
                              "trust_local_automations: true")
    command = params.get("command")
    if isinstance(command, str):
        command = shlex.split(command)
    if not command:
        raise ValueError("command: `command` is required")
    env = dict(os.environ)
    for key, value in event.to_dict().items():
        if isinstance(value, (str, int)) and value is not None:
            env[f"CANONRY_EVENT_{key.upper()}"] = str(value)
    env["CANONRY_STORE"] = store.path
    done = subprocess.run(command, input=json.dumps(event.to_dict(), default=str), text=True,
                          capture_output=True, env=env, timeout=float(params.get("timeout", 60)),
                          cwd=params.get("cwd") or None)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"command exited with {done.returncode}: {tail[0][:200]}")
    return {"exit_code": 0}


@hookimpl
def automation_actions():
    return {"command": run}
