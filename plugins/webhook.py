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
          follow_redirects: false          # the default: a 3xx answer is a failed delivery

Headers: X-Canonry-Event (kind), X-Canonry-Delivery (event id: receivers can deduplicate),
X-Canonry-Signature-256: sha256=<hex HMAC of the body> when a secret is configured.

Only http and https URLs are used (a `file:` or `ftp:` URL is refused). A redirect is not
followed: it is recorded as a failure naming the status and the Location, not retried, since
a receiver that moved should be configured at its new address (and a redirect must not carry
the signed payload somewhere nobody reviewed). With `follow_redirects: true`, a 301, 302, 307
or 308 is followed (at most 5 hops) by sending the same POST to its Location, when that is an
http(s) URL; the signature header is sent only to the scheme, host and port of the configured
URL, never to another host.
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


SIGNATURE = "X-Canonry-Signature-256"
MAX_HOPS = 5
_FOLLOWED = (301, 302, 307, 308)


def send(event, params, store):
    import urllib.error
    import urllib.request  # here, not at the top: loading plugins must stay cheap

    url = params.get("url")
    if not url:
        raise ValueError("webhook: `url` is required")
    _check_scheme(url, "url")
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
        headers[SIGNATURE] = "sha256=" + digest
    timeout = float(params.get("timeout", 10))
    retries = int(params.get("retries", 3))
    backoff = float(params.get("backoff", 0.5))
    follow = params.get("follow_redirects", False) is True
    opener = urllib.request.build_opener(_no_redirect_handler())
    last = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            status = _post(opener, url, body, headers, timeout, follow)
            return {"status_code": status, "attempts": attempt + 1}
        except _Redirected as e:
            last = str(e)
            break  # the receiver answered, elsewhere: retrying asks the same question again
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
            if e.code < 500 and e.code != 429:
                break  # the receiver refused this payload: retrying will not help
        except (urllib.error.URLError, OSError) as e:
            last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
    raise ConnectionError(f"webhook to {_safe(url)} failed after {attempt + 1} attempt(s): {last}")


def _post(opener, url: str, body: bytes, headers: dict, timeout: float, follow: bool) -> int:
    """POST `body` to `url`; the answer's status. A 3xx raises _Redirected, unless `follow`
    (then the same POST goes to the Location, signed only for the configured URL's origin)."""
    import urllib.error
    import urllib.request
    from urllib.parse import urljoin

    origin = _origin(url)
    current = url
    for _hop in range(MAX_HOPS + 1):
        sent = dict(headers) if _origin(current) == origin else \
            {k: v for k, v in headers.items() if k != SIGNATURE}
        request = urllib.request.Request(current, data=body, headers=sent, method="POST")
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.status
        except urllib.error.HTTPError as e:
            if not 300 <= e.code < 400:
                raise
            location = e.headers.get("Location") if e.headers is not None else None
            e.close()
            if not location:
                raise _Redirected(f"HTTP {e.code} redirect without a Location") from None
            target = urljoin(current, location)
            if not follow:
                raise _Redirected(f"HTTP {e.code} redirect to {_safe(target)} (not followed: "
                                  "configure the new URL, or set follow_redirects: true)") from None
            if e.code not in _FOLLOWED:
                raise _Redirected(f"HTTP {e.code} redirect to {_safe(target)} (not followed: "
                                  "only 301, 302, 307 and 308 are)") from None
            try:
                _check_scheme(target, "redirect")
            except ValueError as refused:
                raise _Redirected(f"HTTP {e.code} {refused}") from None
            current = target
    raise _Redirected(f"more than {MAX_HOPS} redirects (last to {_safe(current)})")


class _Redirected(Exception):
    """A 3xx answer that is not followed: a failed delivery, not retried."""


def _no_redirect_handler():
    import urllib.request

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        """urllib follows redirects itself (as a GET, headers and all): hand them back instead."""

        def redirect_request(self, req, fp, code, msg, headers, newurl):
            return None  # urllib then raises HTTPError(3xx) for send() to judge

    return NoRedirects


def _check_scheme(url: str, what: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"webhook: {what} must be an http or https URL, not {_safe(url)!r}")


def _origin(url: str) -> tuple:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


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
