"""Fixtures: the Rust binaries (from METRICCARE_BIN and FHIR_GENERATOR_BIN), one local SparkSession
for the whole run, and the pseudonymisation key both pipelines use."""

import os
import sys
from pathlib import Path

import pytest

GLUE_SCRIPTS = Path(__file__).resolve().parents[1]
REPOSITORY = GLUE_SCRIPTS.parent
sys.path.insert(0, str(GLUE_SCRIPTS))
sys.path.insert(0, str(Path(__file__).resolve().parent))
# Spark's Python workers import the package too; they inherit this environment.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(GLUE_SCRIPTS), os.environ.get("PYTHONPATH")) if p)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

KEY = bytes(range(32))


def _binary(variable: str) -> str:
    path = os.environ.get(variable)
    if not path:
        pytest.fail(f"{variable} is not set: point it at the built binary "
                    f"(e.g. {variable}=/work/cargo-target/debug/{'metriccare' if 'METRICCARE' in variable else 'fhir-generator'})",
                    pytrace=False)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{variable}={path} is not an executable file", pytrace=False)
    return path


@pytest.fixture(scope="session")
def metriccare_bin() -> str:
    return _binary("METRICCARE_BIN")


@pytest.fixture(scope="session")
def generator_bin() -> str:
    return _binary("FHIR_GENERATOR_BIN")


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[1]").appName("metriccare-glue-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "2")
               # Every date the metrics read must be the UTC date whatever this machine's zone is.
               .config("spark.sql.session.timeZone", "America/New_York")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def rust_lake(tmp_path_factory, metriccare_bin):
    """A lake the Rust CLI wrote: the repository's fixtures for tenant `clinic-1`, gold refreshed, so
    every silver and gold table exists."""
    from parity import RustLake, expand

    lake = RustLake(metriccare_bin, tmp_path_factory.mktemp("rust") / "lake")
    fixtures = REPOSITORY / "tests" / "fixtures"
    lake.ingest("clinic-1", expand([fixtures / "synthea", fixtures / "bulk", fixtures / "edge-cases"]))
    lake.gold()
    return lake
