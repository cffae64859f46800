"""Tasks out to the executors, parts back, one commit per group on the driver.

The driver claims a tenant's files with `lake.claim` (the ledger claim the ingest Lambda makes; a
file it handed off is taken over), hands the group's tasks to Spark, one partition per task, and
commits the group once with `group.commit()`: the Rust group commit, then every file finished in the
ledger. A task that fails on every Spark attempt leaves its part missing: the commit fails that
file (FAILED, retried by the next run) and commits the others.
"""

import json
import os
import sys
import time
from typing import Callable, Iterable

import metriccare

# About this many bytes of an uncompressed NDJSON file per task (a Bundle or gzip file is one task).
DEFAULT_SPLIT_BYTES = 128 << 20
# Files per group commit (the ingest path's METRICCARE_GROUP_FILES default).
DEFAULT_GROUP_FILES = 100


def log_event(event: str, **fields) -> None:
    """One JSON line on stderr: ledger ids, tenants, counts; never an object key or content."""
    print(json.dumps({"event": event, "at": time.time(), **fields}, sort_keys=True), file=sys.stderr, flush=True)


def open_lake(spec: str) -> "metriccare.Lake":
    """The driver's lake in this process (an executor): its METRICCARE_* variables first, as the
    local backend reads them from the environment; opened once per process."""
    os.environ.update(json.loads(spec)["env"])
    return metriccare.Lake.from_spec(spec)


def stage_on_executor(spec: str, task: str) -> str:
    """What an executor runs for one task: parse, de-identify and stage its span."""
    return open_lake(spec).stage(task)


def stage_all(spark, lake, tasks: list, stage: Callable[[str, str], str] = stage_on_executor) -> str | None:
    """Runs every task on the executors; the error text when some did not stage (the commit then
    fails their files), else None."""
    if not tasks:
        return None
    spec = lake.spec()
    try:
        spark.sparkContext.parallelize(tasks, len(tasks)).map(lambda task: stage(spec, task)).collect()
        return None
    except Exception as e:  # noqa: BLE001 - Spark wraps executor errors in its own types
        # The first line names the failed task; the rest is a JVM stack trace.
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def ingest_group(spark, lake, tenant: str, keys: list, split_bytes: int = DEFAULT_SPLIT_BYTES,
                 stage: Callable[[str, str], str] = stage_on_executor) -> list:
    """Claims, stages and commits one group of a tenant's raw files; a report (dict) per file."""
    group = lake.claim(tenant, keys, split_bytes)
    tasks = group.tasks()
    log_event("group.planned", tenant_id=tenant, files=len(keys), tasks=len(tasks))
    error = stage_all(spark, lake, tasks, stage)
    if error is not None:
        log_event("group.staging_failed", tenant_id=tenant, error=error)
    reports = group.commit()
    for report in reports:
        log_event("file.processed", ledger_id=report["ledger_id"], tenant_id=report["tenant_id"],
                  result=report["result"], bytes=report["bytes"], rejected=report["outcome"]["rejected"],
                  error=report["outcome"]["error"])
    return reports


def chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), max(size, 1)):
        yield items[start:start + size]


def environment_from_arguments(argv: list) -> dict:
    """The job's `--METRICCARE_*` arguments (Terraform sets the ingest Lambda's variables as job
    defaults), as environment variables."""
    found = {}
    for i, arg in enumerate(argv[:-1]):
        if arg.startswith("--METRICCARE_"):
            found[arg[2:]] = argv[i + 1]
    return found
