"""Built-in action `webhook`: POST the event as JSON, signed with HMAC-SHA256.

    automations:
      - name: deploy-on-production
        on: [alias.added, alias.moved]
        filter: {registry: model, alias: "^production$"}
        action: webhook
        with:
          url: https://ci.example.org/hooks/deploy
          secret_env: DEPLOY_HOOK_SECRET   # the secret's *name*; the value never enters the repo
          format: json                     # or slack: {"text": "..."}
          timeout: 10                      # seconds per attempt
          retries: 3                       # further attempts after a failure (5xx, 429, network)
          backoff: 0.5                     # seconds, doubled after each attempt

Headers: X-Canonry-Event (kind), X-Canonry-Delivery (event id: receivers can deduplicate),
X-Canonry-Signature-256: sha256=<hex HMAC of the body> when a secret is configured.
"""
import hashlib
import hmac
import json
import os
import time

from canonry import hookimpl

__version__ = "1.0"


def payload(event, store) -> dict:
    data = event.to_dict()
    data.pop("changes", None) if not data.get("changes") else None
    if event.artifact:
        try:
            version = store.artifact_version(event.artifact)
            data.update(artifact_type=version.type, digest=version.digest,
                        metadata=version.metadata, metrics=version.metrics)
        except Exception:  # the version may be gone from the head by now: send what we have
            pass
    return data


def slack_text(event) -> str:
    if event.kind == "alias.moved":
        what = f"{event.alias}: {event.previous_version} → {event.version}"
    elif event.kind == "alias.added":
        what = f"{event.alias} → {event.version}"
    elif event.kind == "alias.removed":
        what = f"{event.alias} removed (was {event.previous_version})"
    else:
        what = event.kind.replace(".", " ")
    subject = event.collection or event.registry or event.artifact or ""
    extra = f" ({event.artifact})" if event.artifact and event.artifact != subject else ""
    return f"[canonry] {subject}: {what}{extra} by {event.actor}"


def send(event, params, store):
    import urllib.error
    import urllib.request  # here, not at the top: loading plugins must stay cheap

    url = params.get("url")
    if not url:
        raise ValueError("webhook: `url` is required")
    body_obj = {"text": slack_text(event)} if params.get("format") == "slack" else payload(event, store)
    body = json.dumps(body_obj, sort_keys=True, default=str).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": "canonry-webhook",
               "X-Canonry-Event": event.kind, "X-Canonry-Delivery": event.id}
    secret_env = params.get("secret_env")
    if secret_env:
        secret = os.environ.get(secret_env)
        if secret is None:
            raise KeyError(f"webhook: environment variable {secret_env} (the signing secret) is not set")
        digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        headers["X-Canonry-Signature-256"] = "sha256=" + digest
    timeout = float(params.get("timeout", 10))
    retries = int(params.get("retries", 3))
    backoff = float(params.get("backoff", 0.5))
    last = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return {"status_code": response.status, "attempts": attempt + 1}
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
            if e.code < 500 and e.code != 429:
                break  # the receiver refused this payload: retrying will not help
        except (urllib.error.URLError, OSError) as e:
            last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
    raise ConnectionError(f"webhook to {_safe(url)} failed after {attempt + 1} attempt(s): {last}")


def _safe(url: str) -> str:
    """The URL without credentials or query (they may hold tokens)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


@hookimpl
def automation_actions():
    return {"webhook": send}
