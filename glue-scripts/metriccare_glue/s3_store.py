"""The lake store on S3 for the Glue jobs: the `LakeStore` operations over a boto3 S3 client the
caller builds (this module imports no AWS library). Create-if-absent is a conditional put
(`If-None-Match: *`), the same linearisation the Rust writer relies on."""

# S3 answers a conditional put that lost to an existing object with 412, and one that raced another
# conditional put to the same key with 409 (retry: one of the two will exist).
_EXISTS = "PreconditionFailed"
_RACED = "ConditionalRequestConflict"
_MISSING = ("NoSuchKey", "404", "NotFound")
_RACE_RETRIES = 5


def _code(error: Exception) -> str | None:
    return getattr(error, "response", {}).get("Error", {}).get("Code")


class S3LakeStore:
    def __init__(self, client, bucket: str):
        self.client = client
        self.bucket = bucket

    def get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as e:
            if _code(e) in _MISSING:
                return None
            raise

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def create(self, key: str, data: bytes) -> bool:
        for attempt in range(_RACE_RETRIES):
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
                return True
            except Exception as e:
                if _code(e) == _EXISTS:
                    return False
                if _code(e) != _RACED or attempt == _RACE_RETRIES - 1:
                    raise

    def list(self, prefix: str) -> list:
        keys = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{prefix}/", Delimiter="/")
        for page in pages:
            keys.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(keys)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)
