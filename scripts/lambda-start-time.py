"""Time from a Lambda binary's start to its first poll for an event (its init), five runs each.

Usage: METRICCARE_TEST_AWS_ENDPOINT=http://127.0.0.1:PORT .venv/bin/python scripts/lambda-start-time.py \
           target/lambda/metriccare-ingest/bootstrap target/lambda/metriccare-gold/bootstrap
(unzip the bootstrap.zip files first). A stand-in Lambda Runtime API on loopback records the first
`GET /runtime/invocation/next`; the ingest function's one SSM call goes to the emulator (moto).
"""
import http.server
import os
import subprocess
import sys
import threading
import time

import boto3

ep = os.environ["METRICCARE_TEST_AWS_ENDPOINT"]
ssm = boto3.client("ssm", endpoint_url=ep, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
name = "/starttime/key"
ssm.put_parameter(Name=name, Value="ab" * 32, Type="SecureString", Overwrite=True)
first = {}


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        first.setdefault("t", time.perf_counter())
        time.sleep(2)
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args):
        pass



srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
threading.Thread(target=srv.serve_forever, daemon=True).start()
env = {"PATH": os.environ["PATH"], "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{srv.server_address[1]}",
       "AWS_LAMBDA_FUNCTION_NAME": "f", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024", "AWS_LAMBDA_FUNCTION_VERSION": "1",
       "AWS_ENDPOINT_URL": ep, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t",
       "METRICCARE_RAW_BUCKET": "raw-b", "METRICCARE_LAKE_BUCKET": "lake-b", "METRICCARE_QUARANTINE_BUCKET": "q-b",
       "METRICCARE_LEDGER_TABLE": "l", "METRICCARE_ALERTS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:a",
       "METRICCARE_NOTIFICATIONS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:n", "METRICCARE_PSEUDONYM_KEY_PARAMETER": name,
       "METRICCARE_GLUE_JOB_NAME": "j", "METRICCARE_SILVER_DATABASE": "s", "METRICCARE_GOLD_DATABASE": "g"}
for binary in sys.argv[1:]:
    times = []
    for _ in range(5):
        first.clear()
        t0 = time.perf_counter()
        p = subprocess.Popen([binary], env=env, stderr=subprocess.DEVNULL)
        while "t" not in first and p.poll() is None:
            time.sleep(0.0005)
        times.append((first.get("t", float("nan")) - t0) * 1000)
        p.kill()
        p.wait()
    print(os.path.basename(os.path.dirname(binary)) or binary, "ms to first poll:", sorted(round(t, 1) for t in times))
