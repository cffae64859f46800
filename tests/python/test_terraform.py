"""The Terraform deployment checked against the code it deploys.

Parses terraform/ with python-hcl2 and the Rust sources, and fails when they drift apart:
- every Lambda binary in functions/ is deployed, and nothing else is;
- each function gets exactly the environment variables its code reads;
- each function's role allows exactly the AWS calls its code makes, on only the resources the
  function is configured with;
- the Glue catalog's Hudi tables have the columns and types of the Parquet files the Rust writer
  produces (checked on a real lake written by the CLI).
"""
import os
import re
import tomllib
from pathlib import Path

import duckdb
import hcl2
import pyarrow.parquet as pq
import pytest
from conftest import Lake

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
FUNCTIONS = ROOT / "functions"
AWS_SRC = FUNCTIONS / "aws" / "src"

# IAM prefixes that differ from the SDK crate's service name.
IAM_PREFIX = {"eventbridge": "events"}

# Variables the code reads that a deployment must not set: the local backend's lake (a Lambda
# refuses to start with it) and the path-style switch for S3 emulators.
NOT_FOR_AWS = {"METRICCARE_LAKE", "METRICCARE_S3_FORCE_PATH_STYLE"}

# object_store requests are plain HTTP, not SDK operations, so the source cannot be scanned for
# them. What the core does with each bucket (functions/core: the raw file is streamed; the lake is
# read, written with conditional puts, cleaned and listed; quarantine gets multipart uploads),
# and the IAM actions those requests need.
OBJECT_STORE_ACTIONS = {
    "read": {"s3:GetObject"},
    "read_write": {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"},
    "upload": {"s3:PutObject", "s3:AbortMultipartUpload"},
}
BUCKET_ACCESS = {
    "metriccare-ingest": {"METRICCARE_RAW_BUCKET": "read", "METRICCARE_LAKE_BUCKET": "read_write",
                          "METRICCARE_QUARANTINE_BUCKET": "upload"},
    "metriccare-gold": {"METRICCARE_LAKE_BUCKET": "read_write"},
}
# The ingest function's own S3 SDK calls (tagging) are on the raw files.
SDK_S3_BUCKET = {"metriccare-ingest": "METRICCARE_RAW_BUCKET"}

# Operations the adapters implement for a port method that no function calls: the DynamoDB ledger's
# Scan serves Ledger::list (`metriccare status` on the embedded default). The test checks that the
# handlers indeed never call the port method.
UNCALLED_PORT_METHODS = {("dynamodb", "scan"): r"ledger\(\)\.list\(|\.ledger\.list\("}

HIVE_TYPE = {"string": "string", "int32": "int", "int64": "bigint", "double": "double", "bool": "boolean",
             "timestamp[us, tz=UTC]": "timestamp", "date32[day]": "date"}


# ---- reading HCL ------------------------------------------------------------------------------

def plain(value):
    """python-hcl2 keeps string literals quoted and marks blocks; strip both."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items() if k != "__is_block__"}
    return value


def load_hcl(folder: Path) -> dict:
    """Every block of every .tf file in a folder, merged: {"module": {name: body}, ...}."""
    merged: dict = {}
    for path in sorted(folder.glob("*.tf")):
        with path.open() as f:
            document = plain(hcl2.load(f))
        for kind, blocks in document.items():
            for block in blocks if isinstance(blocks, list) else [blocks]:
                for name, body in block.items():
                    if kind in ("resource", "data"):  # two labels: type, then name
                        merged.setdefault(kind, {}).setdefault(name, {}).update(body)
                    else:
                        merged.setdefault(kind, {})[name] = body
    return merged


@pytest.fixture(scope="module")
def root():
    return load_hcl(TERRAFORM / "envs")


@pytest.fixture(scope="module")
def deployed_functions(root):
    """binary name -> the lambda_function module block that deploys it."""
    return {body["binary"]: body for body in root["module"].values()
            if body["source"] == "../modules/lambda_function"}


def policy_statements(root, module_body) -> list:
    """The statements of the aws_iam_policy_document a function module's policy_json names."""
    match = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", module_body["policy_json"])
    assert match, f"policy_json must name one aws_iam_policy_document: {module_body['policy_json']}"
    return root["data"]["aws_iam_policy_document"][match.group(1)]["statement"]


def referenced_objects(expression: str) -> set:
    """module.X / resource.name / local.name references inside an HCL expression."""
    objects = set()
    for ref in re.findall(r"\b(module\.\w+|local\.\w+|aws_\w+\.\w+)", expression):
        objects.add(ref)
    return objects


# ---- reading the Rust sources -----------------------------------------------------------------

def lambda_binaries() -> dict:
    """binary name -> its main.rs, for every crate in functions/ built on lambda_runtime."""
    found = {}
    for manifest in FUNCTIONS.glob("*/Cargo.toml"):
        cargo = tomllib.loads(manifest.read_text())
        if "lambda_runtime" not in cargo.get("dependencies", {}):
            continue
        for binary in cargo.get("bin", []):
            found[binary["name"]] = manifest.parent / binary["path"]
    return found


CORE_TUNABLES = FUNCTIONS / "core" / "src" / "tunables.rs"
# A tunable a function gives its own default (`self.tunables(Settings { lease: DEFAULT_LEASE, ..})`)
# is a deployment decision: Terraform sets it explicitly. The field -> its variable.
TUNABLES_A_DEPLOYMENT_SETS = {"lease": "LEASE_SECONDS_VARIABLE"}


def config_constants() -> dict:
    """Constant -> variable name, from the AWS configuration and the core's shared tunables."""
    text = (AWS_SRC / "config.rs").read_text() + CORE_TUNABLES.read_text()
    return dict(re.findall(r'const (\w+): &str = "(METRICCARE_\w+)";', text))


def function_body(text: str, name: str) -> str:
    """The body of `fn name` (up to the next fn at the same indentation)."""
    match = re.search(rf"\n(\s*)(?:pub )?fn {name}\(.*?\n\1}}", text, re.S)
    assert match, f"fn {name} not found"
    return match.group(0)


def variables_read(main_rs: Path) -> set:
    """Environment variables the binary reads: its config method (and the common part) plus the
    logging filter set up in lib.rs."""
    method = re.search(r"Env::process\(\)\.(\w+)\(\)", main_rs.read_text()).group(1)
    config = (AWS_SRC / "config.rs").read_text()
    constants = config_constants()
    body = function_body(config, method)
    if "self.common()" in body:
        body += function_body(config, "common")
    names = {constants[c] for c in re.findall(r"\b([A-Z_]+)\b", body) if c in constants}
    names |= {c for c in constants.values() if c == "METRICCARE_LAKE" and "self.common()" in body}
    for tunables in re.findall(r"self\.tunables\(Settings \{(.*?)\}\)", body, re.S):
        names |= {constants[TUNABLES_A_DEPLOYMENT_SETS[field]]
                  for field in re.findall(r"(\w+):", tunables) if field in TUNABLES_A_DEPLOYMENT_SETS}
    lib = (AWS_SRC / "lib.rs").read_text()
    names |= {constants[c] for c in re.findall(r"tunables::([A-Z_]+)", lib)}
    return names


def handler_files(main_rs: Path) -> set:
    """The metriccare-aws source files the binary's handler reaches through `crate::` paths."""
    handler = re.search(r"(\w+Function)::from_config", main_rs.read_text()).group(1)
    start = next(p for p in AWS_SRC.glob("*.rs") if f"pub struct {handler}" in p.read_text())
    reached, todo = set(), [start]
    while todo:
        path = todo.pop()
        if path in reached:
            continue
        reached.add(path)
        todo += [AWS_SRC / f"{m}.rs" for m in re.findall(r"crate::(\w+)", path.read_text())
                 if (AWS_SRC / f"{m}.rs").exists()]
    return reached


def sdk_operations() -> dict:
    """SDK service -> its operation names, from the aws-sdk-* crate versions in Cargo.lock."""
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    registry = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")) / "registry" / "src"
    operations = {}
    for package in lock["package"]:
        name = package["name"]
        if not name.startswith("aws-sdk-"):
            continue
        dirs = list(registry.glob(f"*/{name}-{package['version']}/src/operation"))
        assert dirs, f"{name} {package['version']} is not in {registry} (run a cargo build first)"
        operations[name.removeprefix("aws-sdk-")] = {d.name for d in dirs[0].iterdir() if d.is_dir()}
    return operations


def sdk_calls(files: set) -> set:
    """(service, operation) for every SDK operation called in the files."""
    operations = sdk_operations()
    calls = set()
    for path in files:
        text = path.read_text()
        services = set(re.findall(r"aws_sdk_(\w+)::", text)) & operations.keys()
        called = set(re.findall(r"\.\s*([a-z][a-z0-9_]*)\(\)", text))
        calls |= {(s, op) for s in services for op in called & operations[s]}
    return calls


def iam_action(service: str, operation: str) -> str:
    return f"{IAM_PREFIX.get(service, service)}:" + "".join(w.title() for w in operation.split("_"))


# ---- the checks -------------------------------------------------------------------------------

def test_every_lambda_binary_is_deployed_and_nothing_else(deployed_functions):
    assert set(deployed_functions) == set(lambda_binaries())


@pytest.mark.parametrize("binary", sorted(lambda_binaries()))
def test_each_function_gets_exactly_the_variables_its_code_reads(binary, deployed_functions):
    read = variables_read(lambda_binaries()[binary])
    assert "METRICCARE_LAKE_BUCKET" in read  # the scan found the config method
    set_by_terraform = set(deployed_functions[binary]["environment"])
    assert set_by_terraform == read - NOT_FOR_AWS
    assert not set_by_terraform & NOT_FOR_AWS


@pytest.mark.parametrize("binary", sorted(lambda_binaries()))
def test_each_role_allows_exactly_the_calls_its_code_makes(binary, root, deployed_functions):
    module = deployed_functions[binary]
    environment = module["environment"]
    files = handler_files(lambda_binaries()[binary])
    calls = sdk_calls(files)
    assert calls, "the scan found no SDK call at all"
    for call, use in UNCALLED_PORT_METHODS.items():
        assert not any(re.search(use, p.read_text()) for p in files), f"{call} is called after all"
        calls.discard(call)

    # What the code needs, per environment variable naming the resource it is used on.
    needed: dict = {}
    for variable, access in BUCKET_ACCESS[binary].items():
        needed.setdefault(variable, set()).update(OBJECT_STORE_ACTIONS[access])
    for service, operation in calls:
        if service == "s3":
            needed.setdefault(SDK_S3_BUCKET[binary], set()).add(iam_action(service, operation))
        else:
            needed.setdefault(service, set()).add(iam_action(service, operation))

    statements = policy_statements(root, module)
    granted = {action for s in statements for action in s["actions"]}
    assert granted == set().union(*needed.values()), "role and code disagree"

    # Every statement is scoped to resources the function is configured with (a Glue table also
    # needs its catalog, which is named by account and region alone).
    configured = set().union(*(referenced_objects(v) for v in environment.values()))
    for statement in statements:
        assert statement.get("effect", "Allow") == "Allow"
        assert "*" not in statement["resources"], f"{statement['sid']} grants on every resource"
        assert set().union(*map(referenced_objects, statement["resources"])) & configured, \
            f"{statement['sid']}: {statement['resources']} is nothing {binary} is configured with"

    # S3 actions land on the bucket whose variable asked for them.
    for variable, actions in needed.items():
        if not variable.endswith("_BUCKET"):
            continue
        bucket_key = environment[variable].rsplit(".", 1)[-1].rstrip("}")
        on_bucket = {a for s in statements for a in s["actions"]
                     if any(r.startswith(f"${{module.data_lake.bucket_arns.{bucket_key}}}") for r in s["resources"])}
        assert on_bucket == actions, f"{variable} ({bucket_key})"


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory):
    """A lake the Rust CLI wrote: every silver and gold table, two tenants."""
    lake = Lake(tmp_path_factory.mktemp("demo") / "lake")
    lake.run("demo", "--patients", "60", "--tenants", "2")
    return lake


def test_glue_catalog_tables_match_the_files_the_writer_produces(demo_lake):
    """The Hudi tables Athena reads have the Rust writer's columns, in order, with matching types."""
    lake = demo_lake
    catalog = load_hcl(TERRAFORM / "modules" / "glue_catalog")
    local = catalog["locals"]
    # As main.tf concatenates them: meta columns, the table's own, then (silver) lineage and the
    # columns added since the first release.
    declared = {
        f"{layer}.{table}": [tuple(c) for c in
                             local["hoodie_columns"] + columns
                             + (local["lineage_columns"] + local["added_columns"].get(table, [])
                                if layer == "silver" else [])]
        for layer, tables in local["tables"].items() for table, columns in tables.items()
    }

    on_disk = {}
    for layer in ("silver", "gold"):
        for table_dir in sorted((lake.root / layer).iterdir()):
            schema = pq.read_schema(next(table_dir.rglob("*.parquet")))
            on_disk[f"{layer}.{table_dir.name}"] = [
                (f.name, HIVE_TYPE[str(f.type)]) for f in schema if f.name != "tenant_id"]
    assert declared == on_disk
    hudi_table = catalog["resource"]["aws_glue_catalog_table"]["hudi"]
    assert hudi_table["partition_keys"] == [{"name": "tenant_id", "type": "string"}]
    assert hudi_table["storage_descriptor"][0]["input_format"] == "org.apache.hudi.hadoop.HoodieParquetInputFormat"


@pytest.mark.parametrize("module", sorted(p.name for p in (TERRAFORM / "modules").iterdir()))
def test_each_module_has_its_files_and_documents_every_input_and_output(module):
    folder = TERRAFORM / "modules" / module
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
        assert (folder / name).is_file(), f"{module}/{name}"
    blocks = load_hcl(folder)
    readme = (folder / "README.md").read_text()
    for kind in ("variable", "output"):
        for name, body in blocks.get(kind, {}).items():
            assert body.get("description"), f"{module}: {kind} {name} has no description"
            assert f"| `{name}` |" in readme, f"{module}/README.md does not document {kind} {name}"


def test_athena_views_choose_gold_columns_and_compute_nothing(demo_lake):
    """Each view's SELECT, run over the real gold tables, returns the columns the Glue view declares
    and exactly the gold table's values."""
    athena = load_hcl(TERRAFORM / "modules" / "athena")["locals"]
    gold_columns = load_hcl(TERRAFORM / "modules" / "glue_catalog")["locals"]["tables"]["gold"]
    db = duckdb.connect()
    db.execute("CREATE SCHEMA gold")
    for table in gold_columns:
        arrow = demo_lake.read_gold(table)
        assert arrow.num_rows > 0, table
        db.register(f"{table}_arrow", arrow)
        db.execute(f"CREATE TABLE gold.{table} AS SELECT * FROM {table}_arrow")

    assert set(athena["view_sql"]) == set(gold_columns)
    # Every declared column type has its Presto name (the view's Glue columns are built from it:
    # a type missing there fails `terraform plan`, not `validate`).
    assert {kind for columns in gold_columns.values() for _, kind in columns} <= set(athena["presto_types"])
    for table, columns in gold_columns.items():
        heredoc = athena["view_sql"][table]
        sql = heredoc.split("\n", 1)[1].rsplit("\n", 1)[0].replace("${var.gold_database}", "gold")
        view = db.sql(f"SELECT * FROM ({sql}) ORDER BY ALL").to_arrow_table()
        declared = [("tenant_id", "string")] + [tuple(c) for c in columns if c[0] != "row_key"]
        assert view.column_names == [name for name, _ in declared], table
        quoted = ", ".join(f'"{name}"' for name in view.column_names)
        direct = db.sql(f"SELECT {quoted} FROM gold.{table} ORDER BY ALL").to_arrow_table()
        assert view.num_rows == direct.num_rows > 0 and view.equals(direct), table


# What the Glue jobs call. The Rust core through the `metriccare` module (functions/python): the
# ledger's get, claim, take-over and finish; the key; the catalog registration; alerts and gold
# announcements; S3 through object_store (the raw file read in ranges and listed for a backfill, the
# lake read, written, cleaned and listed, the quarantine bucket's staged parts written, read, listed
# and removed, rejects and quarantined files uploaded). In Python, only the backfill's workflow run
# properties. And what Glue itself needs: the scripts and the wheel, logs, metrics, the key.
GLUE_MODULE_CALLS = {("dynamodb", "get_item"), ("dynamodb", "update_item"), ("ssm", "get_parameter"),
                     ("glue", "get_table"), ("glue", "batch_create_partition"), ("sns", "publish")}
GLUE_BUCKET_ACCESS = {"raw_bucket_name": {"s3:GetObject", "s3:ListBucket"},
                      "lake_bucket_name": OBJECT_STORE_ACTIONS["read_write"] | {"s3:AbortMultipartUpload"},
                      "quarantine_bucket_name": OBJECT_STORE_ACTIONS["read_write"] | OBJECT_STORE_ACTIONS["upload"]}
GLUE_PLATFORM_ACTIONS = {
    "s3:GetObject",  # the scripts and the wheel in the artifacts bucket
    "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey",
    "cloudwatch:PutMetricData", "kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt",
}
IAM_ALIASES = {"s3:HeadObject": "s3:GetObject", "s3:ListObjectsV2": "s3:ListBucket"}


def boto3_calls(folder: Path) -> set:
    """IAM actions of the boto3 client calls in a Python source tree (services named by
    client("..."), operations by the botocore models)."""
    import botocore.session

    session = botocore.session.get_session()
    sources = [p.read_text() for p in folder.rglob("*.py") if "tests" not in p.parts]
    services = set().union(*(re.findall(r'client\("(\w+)"\)', text) for text in sources))
    operations = {}
    for service in services:
        model = session.get_service_model(service)
        for name in model.operation_names:
            operations.setdefault(botocore.xform_name(name), set()).add(f"{model.signing_name}:{name}")
    called = set()
    for text in sources:
        names = set(re.findall(r"\.([a-z][a-z0-9_]*)\(", text)) | set(re.findall(r'get_paginator\("(\w+)"\)', text))
        for name in names & operations.keys():
            called |= {IAM_ALIASES.get(action, action) for action in operations[name]}
    return called


def test_the_glue_role_allows_the_jobs_calls_and_nothing_else():
    # The declared module calls are calls the AWS adapters make; the Python ones are scanned.
    adapters = {AWS_SRC / name for name in ("ledger.rs", "glue.rs", "sns.rs", "ingest_function.rs")}
    assert GLUE_MODULE_CALLS <= sdk_calls(adapters)
    python_calls = boto3_calls(ROOT / "glue-scripts")
    assert python_calls == {"glue:GetWorkflowRunProperties"}
    assert "metriccare.Lake" in (ROOT / "glue-scripts" / "jobs" / "backfill.py").read_text()

    module = load_hcl(TERRAFORM / "modules" / "glue_job")
    statements = module["data"]["aws_iam_policy_document"]["jobs"]["statement"]
    granted = {action for s in statements for action in s["actions"]}
    needed = {iam_action(*call) for call in GLUE_MODULE_CALLS} | python_calls
    needed |= set().union(*GLUE_BUCKET_ACCESS.values())
    assert granted == needed | GLUE_PLATFORM_ACTIONS, "role and code disagree"
    assert all("*" not in s["resources"] or s["actions"] == ["cloudwatch:PutMetricData"] for s in statements)
    # Each bucket gets exactly what the module does with it.
    for variable, actions in GLUE_BUCKET_ACCESS.items():
        on_bucket = {a for s in statements for a in s["actions"]
                     if any(f"var.{variable}" in r for r in s["resources"])}
        assert on_bucket == actions, variable


def test_the_glue_jobs_get_the_configuration_the_module_reads():
    """The job defaults carry every variable the module's configuration requires (the ingest and gold
    functions' `Env::ingest` and `Env::gold`), nothing the local backend reads; the ingest function's
    StartJobRun adds only ids; the scripts' own arguments are given."""
    module = load_hcl(TERRAFORM / "modules" / "glue_job")
    defaults = {k.removeprefix("--") for k in module["locals"]["common_arguments"]}
    config = (AWS_SRC / "config.rs").read_text()
    constants = config_constants()
    required = set()
    for method in ("ingest", "gold", "common"):
        body = function_body(config, method)
        required |= {constants[c] for c in re.findall(r"self\.(?:required|bucket|arn)\(([A-Z_]+)\)", body)}
    assert "METRICCARE_LEDGER_TABLE" in required  # the scan works
    given = {d for d in defaults if d.startswith("METRICCARE_")}
    assert required <= given, f"the module needs {required - given}"
    assert not given & NOT_FOR_AWS
    from_lambda = set(re.findall(r'"--(\w+)"', (AWS_SRC / "glue.rs").read_text()))
    # Only ids: a key may name a patient, and job arguments are visible to anyone listing runs.
    assert from_lambda == {"tenant_id", "ledger_id"}
    for job in module["locals"]["jobs"].values():
        script = (ROOT / "glue-scripts" / "jobs" / job["script"]).read_text()
        asked = set()
        for names in re.findall(r"getResolvedOptions\([\w.]+, (\[.*?\]|\w+)\)", script):
            literal = names if names.startswith("[") else re.search(rf"^{names} = (\[.*?\])", script, re.M).group(1)
            asked |= set(re.findall(r'"(\w+)"', literal))
        own = {"tenant_id", "ledger_id"} if job["script"] == "ingest_large_file.py" else \
            {"tenant_id", "prefix", "WORKFLOW_NAME", "WORKFLOW_RUN_ID"}
        assert asked and asked <= own | defaults, f"{job['script']} asks for {asked - own - defaults}"


# ---- what validate and plan pass but an apply or a real account fails ------------------------

def load_tfvars(name: str) -> dict:
    with (TERRAFORM / "envs" / name).open() as f:
        return plain(hcl2.load(f))


def test_lambda_concurrency_is_reserved_only_where_asked(root, deployed_functions):
    """A reservation fails in an account whose Lambda concurrency quota cannot keep 100 unreserved
    beside it (new accounts may start at 10): off by default and in dev, asked for in prod. The
    queue's event source caps the ingest either way."""
    module = load_hcl(TERRAFORM / "modules" / "lambda_function")
    function = module["resource"]["aws_lambda_function"]["this"]
    assert function["reserved_concurrent_executions"] == "${var.reserve_concurrency ? var.max_concurrency : null}"
    assert module["variable"]["reserve_concurrency"]["default"] is False
    event_source = module["resource"]["aws_lambda_event_source_mapping"]["queue"]
    assert event_source["scaling_config"][0]["maximum_concurrency"] == "${var.max_concurrency}"
    assert root["variable"]["reserve_lambda_concurrency"]["default"] is False
    for body in deployed_functions.values():
        assert body["reserve_concurrency"] == "${var.reserve_lambda_concurrency}", body["name"]
    assert load_tfvars("dev.tfvars").get("reserve_lambda_concurrency", False) is False
    assert load_tfvars("prod.tfvars")["reserve_lambda_concurrency"] is True


def test_access_logging_starts_after_the_log_buckets_policy():
    data_lake = load_hcl(TERRAFORM / "modules" / "data_lake")
    logging = data_lake["resource"]["aws_s3_bucket_logging"]["data"]
    assert "${aws_s3_bucket_policy.access_logs}" in logging["depends_on"], logging["depends_on"]


def test_the_key_policy_uses_only_conditions_aws_documents_for_these_services():
    """Whether S3, EventBridge and CloudWatch put aws:SourceAccount in their KMS calls' context is not
    documented: a condition on it could silently stop every notification. The queue and topic
    policies, where AWS documents it, decide whose events get in."""
    kms = load_hcl(TERRAFORM / "modules" / "kms")
    statements = kms["data"]["aws_iam_policy_document"]["key"]["statement"]
    services = next(s for s in statements if s["sid"] == "ServicesEncryptForThisAccount")
    assert "condition" not in services
    logs = next(s for s in statements if s["sid"] == "CloudWatchLogsEncryptThisAccountsLogGroups")
    assert [c["variable"] for c in logs["condition"]] == ["kms:EncryptionContext:aws:logs:arn"]


# What the Athena ODBC and JDBC drivers (Power BI's connector) call beyond plain queries, from the
# actions AWS's managed policy AWSQuicksightAthenaAccess lists for them
# (docs.aws.amazon.com/athena/latest/ug/policy-actions.html).
ODBC_DRIVER_ACTIONS = {
    "athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults",
    "athena:GetQueryResultsStream", "athena:StopQueryExecution", "athena:GetWorkGroup",
    "athena:ListWorkGroups", "athena:ListDataCatalogs", "athena:GetDataCatalog", "athena:ListDatabases",
    "athena:GetDatabase", "athena:ListTableMetadata", "athena:GetTableMetadata",
    "glue:GetDatabase", "glue:GetDatabases", "glue:GetTable", "glue:GetTables", "glue:GetPartition",
    "glue:GetPartitions", "glue:BatchGetPartition",
    "s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:AbortMultipartUpload",
    "s3:ListBucketMultipartUploads", "s3:ListMultipartUploadParts",
}


def test_the_gold_reader_allows_what_the_odbc_driver_calls_on_gold_only():
    athena = load_hcl(TERRAFORM / "modules" / "athena")
    statements = athena["data"]["aws_iam_policy_document"]["gold_reader"]["statement"]
    granted = {action for s in statements for action in s["actions"]}
    assert ODBC_DRIVER_ACTIONS <= granted, f"missing {ODBC_DRIVER_ACTIONS - granted}"
    # "*" only for the two list calls that take no resource; nothing of silver or raw.
    for statement in statements:
        if "*" in statement["resources"]:
            assert set(statement["actions"]) == {"athena:ListWorkGroups", "athena:ListDataCatalogs"}
        assert not any("silver" in r or "raw" in r for r in statement["resources"]), statement["sid"]


def test_the_pull_request_plan_writes_nothing_to_the_state_bucket():
    """The plan runs with a read-only role: taking the S3 backend's lock writes a lock object, and
    `workspace select -or-create` would create a workspace."""
    workflow = (ROOT / ".github" / "workflows" / "terraform.yml").read_text()
    plan_job = workflow.split("\n  plan:\n", 1)[1]
    assert re.search(r'read-only: "true"', plan_job)
    plan_commands = [line for line in plan_job.splitlines() if re.match(r"\s*terraform plan ", line)]
    assert plan_commands and all("-lock=false" in line for line in plan_commands), plan_commands
    setup = (ROOT / ".github" / "actions" / "terraform-setup" / "action.yml").read_text()
    read_only_branch = setup.split('if [ "${{ inputs.read-only }}" = "true" ]; then', 1)[1].split("else", 1)[0]
    assert "terraform workspace select" in read_only_branch and "-or-create" not in read_only_branch


def test_the_glue_package_holds_files_not_links():
    """archive_file zips the scripts folder as it is: a symbolic link would reach Glue as a link (or
    not at all), not as the file it points to. The HAI value set is compiled into the wheel."""
    glue_job = load_hcl(TERRAFORM / "modules" / "glue_job")
    excludes = set(glue_job["data"]["archive_file"]["package"]["excludes"])
    scripts = ROOT / "glue-scripts"
    packaged = [p for p in scripts.rglob("*")
                if not {part for part in p.relative_to(scripts).parts} & {"jobs", "tests", "__pycache__"}
                and str(p.relative_to(scripts)) not in excludes]
    assert packaged, "nothing would be packaged"
    assert [p for p in packaged if p.is_symlink()] == []
    assert "include_str!(\"../../hai-value-set.json\")" in (FUNCTIONS / "core" / "src" / "gold" / "metrics.rs").read_text()


def test_the_glibc_check_refuses_a_binary_newer_than_the_lambda_runtime(tmp_path):
    """scripts/check-glibc.sh, which the Lambda build runs on every bootstrap against
    provided.al2023's glibc 2.34, fails on a newer symbol version, inside a zip too."""
    import subprocess
    import sys
    import zipfile

    check = ROOT / "scripts" / "check-glibc.sh"
    binary = Path(os.path.realpath(sys.executable))
    archive = tmp_path / "bootstrap.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(binary, "bootstrap")
    for target in (binary, archive):
        old = subprocess.run([check, "2.2.5", target], capture_output=True, text=True)
        assert old.returncode == 1 and "@GLIBC_2." in old.stderr, old.stderr
        new = subprocess.run([check, "99.0", target], capture_output=True, text=True)
        assert new.returncode == 0, new.stderr
    action = (ROOT / ".github" / "actions" / "lambda-zips" / "action.yml").read_text()
    assert "./scripts/check-glibc.sh 2.34 target/lambda/*/bootstrap.zip" in action
