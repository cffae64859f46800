"""Fixtures: the Rust binaries (METRICCARE_BIN, FHIR_GENERATOR_BIN), the `metriccare` module built into
this environment (scripts/test.sh runs `maturin develop`), one local Spark session with two executor
threads for the whole run, and the pseudonymisation key both paths use."""

import os
import sys
from pathlib import Path

import pytest

GLUE_SCRIPTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(GLUE_SCRIPTS))
sys.path.insert(0, str(GLUE_SCRIPTS / "jobs"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
# Spark's Python workers import the package too; they inherit this environment.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(GLUE_SCRIPTS), os.environ.get("PYTHONPATH")) if p)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# Executors run this interpreter: the one the module was built into.
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["METRICCARE_PSEUDONYM_KEY"] = bytes(range(32)).hex()
os.environ["METRICCARE_LOG"] = "error"


def _binary(variable: str) -> str:
    path = os.environ.get(variable)
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"{variable} must name the built binary (e.g. $CARGO_TARGET_DIR/debug/...), not {path!r}",
                    pytrace=False)
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

    session = (SparkSession.builder.master("local[2]").appName("metriccare-glue-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
