"""Fixtures for the Apache Hudi reader tests: the metriccare binaries and a lake per test."""
import hashlib
import hmac
import json
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest
from hudi import HudiTableBuilder

KEY = bytes(range(32))
TABLES = ["patient", "encounter", "condition", "organization"]


def pseudonym(tenant: str, kind: str, source_id: str) -> str:
    """The keyed pseudonym MetricCare must produce, computed independently of the Rust code."""
    message = b"".join(len(p.encode()).to_bytes(4, "big") + p.encode() for p in (tenant, kind, source_id))
    return hmac.new(KEY, message, hashlib.sha256).hexdigest()[:32]


class Lake:
    def __init__(self, root: Path):
        self.root = root
        self.env = {**os.environ, "METRICCARE_PSEUDONYM_KEY": KEY.hex(), "METRICCARE_LOG": "error"}

    def run(self, *args, expect=0, env=None):
        binary = os.environ["METRICCARE_BIN"]
        done = subprocess.run([binary, "--lake", str(self.root), *args], env=env or self.env, capture_output=True,
                              text=True)
        assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def ingest(self, tenant, *paths, expect=0):
        return self.run("ingest", "--tenant", tenant, *map(str, paths), expect=expect)

    def ledger(self):
        return [json.loads(line) for line in self.run("status", "--json").stdout.splitlines()]

    def read(self, table: str, layer: str = "silver") -> pa.Table:
        """The table as the Apache Hudi reader sees it."""
        hudi_table = HudiTableBuilder.from_base_uri(str(self.root / layer / table)).build()
        batches = hudi_table.read()
        return pa.Table.from_batches(batches) if batches else pa.table({})

    def read_gold(self, table: str) -> pa.Table:
        return self.read(table, layer="gold")

    def commits(self, table: str):
        return sorted(p.name for p in (self.root / "silver" / table / ".hoodie").glob("*.commit"))


@pytest.fixture
def lake(tmp_path):
    return Lake(tmp_path / "lake")


@pytest.fixture
def write(tmp_path):
    def _write(name, lines):
        path = tmp_path / "input" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = lines if isinstance(lines, str) else "\n".join(json.dumps(r) for r in lines) + "\n"
        path.write_text(text)
        return path

    return _write
