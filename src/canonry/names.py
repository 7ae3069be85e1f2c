"""Names and addresses: `REGISTRY`, `REGISTRY/COLLECTION[:vN|:ALIAS]`, `ARTIFACT[:vK|:latest]`;
and the dates and times a question may start from (`--since`)."""
from __future__ import annotations

import re
from typing import NamedTuple

from canonry.errors import InvalidAddress, InvalidInput, InvalidName, ReservedAlias

__all__ = [
    "LATEST",
    "NAME_RE",
    "VERSION_RE",
    "Address",
    "branch_problem",
    "check_alias",
    "check_branch",
    "check_name",
    "is_version",
    "iso_since",
    "parse",
    "parse_artifact_version",
    "parse_collection",
    "parse_link",
    "version_number",
]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
VERSION_RE = re.compile(r"^v(0|[1-9][0-9]{0,15})$")  # at most 16 digits: fits sqlite's integers
LATEST = "latest"


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidName(
            f"invalid {what} {name!r}: use letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, at most 128 characters, no '..' or '/'"
        )
    return name


def check_alias(alias: str) -> str:
    check_name(alias, "alias")
    # Compared case-insensitively: `LATEST` next to `latest` reads as the same name.
    if alias.lower() == LATEST:
        raise ReservedAlias(f"alias {alias!r} is reserved: 'latest' always follows the newest link")
    if re.fullmatch(r"v[0-9]+", alias):  # V1 is an ordinary alias: versions are lowercase
        raise ReservedAlias(f"alias {alias!r} is reserved: v<digits> names a version")
    return alias


def version_number(v: str) -> int:
    return int(v[1:])


def is_version(s: str) -> bool:
    return bool(VERSION_RE.fullmatch(s))


class Address(NamedTuple):
    """A parsed target. `kind` is one of: registry, collection, link, artifact, artifact_version.

    For links, `ref` is either a version (`v3`), `latest`, or an alias. For artifact versions,
    `ref` is `vK` or `latest`. Registry-or-artifact ambiguity (a bare name) is settled by the store.
    """

    kind: str
    registry: str | None = None
    collection: str | None = None
    artifact: str | None = None
    ref: str | None = None

    def __str__(self) -> str:
        if self.kind == "registry":
            return self.registry
        if self.kind == "collection":
            return f"{self.registry}/{self.collection}"
        if self.kind == "link":
            return f"{self.registry}/{self.collection}:{self.ref}"
        if self.kind == "artifact":
            return self.artifact
        return f"{self.artifact}:{self.ref}"

    @property
    def collection_path(self) -> str:
        return f"{self.registry}/{self.collection}"


def parse(text: str) -> Address:
    """Parse an address. A bare NAME parses as kind 'name' (registry or artifact)."""
    if not isinstance(text, str) or not text:
        raise InvalidAddress("empty address")
    base, sep, ref = text.partition(":")
    if sep and not ref:
        raise InvalidAddress(f"invalid address {text!r}: nothing after ':'")
    if sep:
        _check_ref(ref, text)
    parts = base.split("/")
    if len(parts) == 2:
        reg, coll = parts
        _check_part(reg, "registry", text)
        _check_part(coll, "collection", text)
        if sep:
            return Address("link", registry=reg, collection=coll, ref=ref)
        return Address("collection", registry=reg, collection=coll)
    if len(parts) == 1:
        _check_part(base, "name", text)
        if sep:
            if ref != LATEST and not is_version(ref):
                raise InvalidAddress(
                    f"invalid address {text!r}: an artifact version is ARTIFACT:vK or ARTIFACT:latest"
                )
            return Address("artifact_version", artifact=base, ref=ref)
        return Address("name", registry=base, artifact=base)
    raise InvalidAddress(
        f"invalid address {text!r}: expected REGISTRY/COLLECTION[:vN|:ALIAS] or ARTIFACT[:vK]"
    )


def parse_collection(text: str) -> Address:
    a = parse(text)
    if a.kind != "collection":
        raise InvalidAddress(f"expected REGISTRY/COLLECTION, got {text!r}")
    return a


def parse_link(text: str) -> Address:
    a = parse(text)
    if a.kind != "link":
        raise InvalidAddress(f"expected REGISTRY/COLLECTION:vN or REGISTRY/COLLECTION:ALIAS, got {text!r}")
    return a


def parse_artifact_version(text: str) -> Address:
    a = parse(text)
    if a.kind != "artifact_version":
        raise InvalidAddress(f"expected ARTIFACT:vK or ARTIFACT:latest, got {text!r}")
    return a


def _check_part(part: str, what: str, text: str) -> None:
    try:
        check_name(part, what)
    except InvalidName as e:
        raise InvalidAddress(f"invalid address {text!r}: {e}") from None


def _check_ref(ref: str, text: str) -> None:
    if not NAME_RE.fullmatch(ref) or ".." in ref:
        raise InvalidAddress(f"invalid address {text!r}: bad version or alias {ref!r}")


def branch_problem(name: object) -> str | None:
    """Why git would refuse `name` as a branch (`git check-ref-format --branch`), or None.

    git's rules for refs/heads/NAME: no component empty, starting with '.' or ending with
    '.lock'; no '..', '@{', '\\', space, control character, '~', '^', ':', '?', '*' or '[';
    not starting with '-' or ending with '/' or '.'; not '@' or 'HEAD'."""
    if not isinstance(name, str) or not name:
        return "it is empty"
    if name.startswith("-"):
        return "it starts with '-'"
    if name in ("@", "HEAD"):
        return f"{name!r} names something else in git"
    if name.endswith("."):
        return "it ends with '.'"
    for bad in ("..", "@{", "\\"):
        if bad in name:
            return f"it holds {bad!r}"
    for c in name:
        if ord(c) < 32 or ord(c) == 0x7F or c in " ~^:?*[":
            return f"it holds {c!r}"
        if 0xD800 <= ord(c) <= 0xDFFF:  # a lone surrogate: not encodable as UTF-8
            return "it is not valid UTF-8"
    for part in name.split("/"):
        if not part:
            return "it has an empty folder (a leading, trailing or double '/')"
        if part.startswith("."):
            return f"a part starts with '.' ({part!r})"
        if part.endswith(".lock"):
            return f"a part ends with '.lock' ({part!r})"
    return None


def check_branch(name: str) -> str:
    """`name` if git accepts it as a branch name (`branch_problem`), else InvalidName."""
    problem = branch_problem(name)
    if problem:
        raise InvalidName(f"invalid branch name {name!r}: {problem} (see `git check-ref-format`)")
    return name


def iso_since(since: str) -> str:
    """A date (2026-11-01) or UTC time (2026-11-01T12:00[:00][Z]) as the index keeps times
    (2026-11-01T12:00:00Z). Raises InvalidInput for anything else, an impossible date included."""
    from datetime import datetime

    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", since):
        text = since + "T00:00:00Z"
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?Z?", since):
        text = since.rstrip("Z") + (":00" if since.count(":") == 1 else "") + "Z"
    else:
        text = ""
    try:
        datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise InvalidInput(f"invalid --since {since!r}: use a date like 2026-11-01 or "
                           "2026-11-01T12:00:00Z") from None
    return text
