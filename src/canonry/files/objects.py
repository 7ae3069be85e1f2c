"""Blobs in object storage (S3 and S3-compatible services, Google Cloud Storage, Azure Blob),
through obstore.

obstore (Rust's object_store) was chosen over fsspec after measuring both on canonry's
workload (docs/architecture.md, "Object storage"): one wheel with no dependencies for every
cloud, streaming multipart uploads, and it lets go of the GIL, so threads transfer in parallel.
It is an extra (`pip install 'canonry[s3]'`, `[gcs]`, `[azure]`), imported only here.

Credentials come from the environment as each cloud's own tools read them (AWS_ACCESS_KEY_ID,
AWS_ENDPOINT_URL, …, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_…); an AWS profile
(AWS_PROFILE, ~/.aws) through boto3 when it is installed. They never reach a record, a commit
or a message: errors are cut to their first line and every URL in them is redacted.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

from canonry.errors import CanonryError, IntegrityError, InvalidInput, StorageUnavailable
from canonry.files.blobs import CHUNK, BlobInfo, Progress, blob_key, hash_file

__all__ = ["MULTIPART_CHUNK", "ObjectBlobStore", "object_store", "storage_error"]

MULTIPART_CHUNK = 16 * CHUNK  # parts of a multipart upload; memory per upload is about this × concurrency
_EXTRA = {"s3": "s3", "s3a": "s3", "gs": "gcs", "az": "azure", "azure": "azure", "abfs": "azure",
          "abfss": "azure", "http": "s3", "https": "s3"}


def storage_error(url: str, action: str, err: BaseException) -> StorageUnavailable:
    """One line saying what failed, with no credential and no signed URL in it."""
    from canonry.files.location import redact

    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return StorageUnavailable(f"cannot {action} {url}: {redact(first)}")


def object_store(url: str):
    """An obstore store for `url` (s3://bucket/prefix, gs://…, az://…), configured from the
    environment; InvalidInput naming the extra to install when obstore is missing."""
    scheme = url.split("://", 1)[0].lower()
    try:
        from obstore.store import from_url
    except ImportError:
        raise InvalidInput(f"storage {url} needs obstore: pip install 'canonry[{_EXTRA.get(scheme, 's3')}]'") from None
    options = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    if scheme in ("s3", "s3a") and endpoint.startswith("http://"):
        options["allow_http"] = True  # MinIO or a test server on this machine
    kwargs: dict = {"client_options": options}
    if scheme in ("s3", "s3a"):
        if not os.environ.get("AWS_ACCESS_KEY_ID"):
            provider = _aws_profile_provider()
            if provider is not None:
                kwargs["credential_provider"] = provider
        if endpoint:
            kwargs["config"] = {"endpoint": endpoint}
    try:
        return from_url(url, **kwargs)
    except Exception as e:  # obstore's own configuration errors
        raise storage_error(url, "open storage", e) from None


def _aws_profile_provider():
    """The profile chain (AWS_PROFILE, ~/.aws/config, SSO) as the AWS CLI reads it, when boto3
    is installed; None otherwise (obstore then reads the environment and instance metadata)."""
    try:
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        return None
    try:
        return Boto3CredentialProvider()
    except Exception:
        return None


class _HashingChunks:
    """The chunks of a file as an upload reads them, hashed on the way: the bytes sent are the
    bytes checked. An iterator, so obstore streams it as a multipart upload in bounded memory."""

    def __init__(self, path: str, progress: Progress | None):
        import hashlib

        self._path = path
        self.hash = hashlib.sha256()
        self._progress = progress

    def __iter__(self) -> Iterator[bytes]:
        with open(self._path, "rb") as f:
            while data := f.read(MULTIPART_CHUNK):
                self.hash.update(data)
                if self._progress:
                    self._progress(len(data))
                yield data


class ObjectBlobStore:
    """Blobs at <prefix>/<2 hex digits>/<62> in a bucket."""

    def __init__(self, url: str):
        self.url = url
        self._store = None

    @property
    def store(self):
        if self._store is None:
            self._store = object_store(self.url)
        return self._store

    def _call(self, action: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise
        except CanonryError:
            raise
        except Exception as e:
            raise storage_error(self.url, action, e) from None

    def has(self, sha256: str) -> bool:
        import obstore

        try:
            self._call("read", obstore.head, self.store, blob_key(sha256))
            return True
        except FileNotFoundError:
            return False

    def put_file(self, src: str, progress: Progress | None = None) -> tuple[str, int]:
        """Hash `src`, and upload it unless storage has it already. An object appears whole or
        not at all (a multipart upload completes last), so an upload cut off is done again by
        running the command again. The bytes are hashed again as they are sent: a file changed
        under us is refused, and its object deleted, rather than stored under a wrong name."""
        import obstore

        sha256, size = hash_file(src)
        if self.has(sha256):
            if progress:
                progress(size)
            return sha256, size
        if size <= MULTIPART_CHUNK:  # one request, not a multipart upload's three
            import hashlib

            with open(src, "rb") as f:
                data = f.read(MULTIPART_CHUNK + 1)
            if hashlib.sha256(data).hexdigest() != sha256:
                raise InvalidInput(f"{src} changed while it was being logged; nothing recorded (log it again)")
            self._call("upload to", obstore.put, self.store, blob_key(sha256), data)
            if progress:
                progress(size)
            return sha256, size
        chunks = _HashingChunks(src, progress)
        self._call("upload to", obstore.put, self.store, blob_key(sha256), iter(chunks),
                   chunk_size=MULTIPART_CHUNK, max_concurrency=4)
        if chunks.hash.hexdigest() != sha256:
            self.delete(sha256)
            raise InvalidInput(f"{src} changed while it was being logged; nothing recorded (log it again)")
        return sha256, size

    def chunks(self, sha256: str) -> Iterator[bytes]:
        import obstore

        try:
            result = self._call("read", obstore.get, self.store, blob_key(sha256))
        except FileNotFoundError:
            raise IntegrityError(f"content {sha256[:12]} is not in storage {self.url}") from None
        stream = result.stream(min_chunk_size=4 * CHUNK)
        while True:
            try:
                chunk = next(stream)
            except StopIteration:
                return
            except Exception as e:
                raise storage_error(self.url, "read", e) from None
            yield bytes(chunk)

    def blobs(self) -> Iterator[BlobInfo]:
        import obstore

        try:
            for batch in obstore.list(self.store, chunk_size=1000):
                for meta in batch:
                    key = meta["path"]
                    top, _, rest = key.rpartition("/")
                    name = top[-2:] + rest
                    if len(rest) == 62 and len(name) == 64:
                        yield name, meta["size"], meta["last_modified"].timestamp()
        except FileNotFoundError:
            return
        except CanonryError:
            raise
        except Exception as e:
            raise storage_error(self.url, "list", e) from None

    def delete(self, sha256: str) -> None:
        import obstore

        try:
            self._call("delete from", obstore.delete, self.store, blob_key(sha256))
        except FileNotFoundError:
            pass

    def remove_leftovers(self) -> int:
        return 0  # an unfinished multipart upload is not an object; buckets expire them by rule
