"""An S3-compatible server for the tests: moto in server mode, a real process speaking HTTP.

Never a mock of boto: django-storages and boto3 talk to it over the network exactly as they
would to a bucket in production, so signing, uploads and presigned URLs are all exercised.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass

ACCESS_KEY = "storyboard-test"
SECRET_KEY = "storyboard-test-secret"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class S3Server:
    process: subprocess.Popen
    endpoint: str

    @classmethod
    def start(cls) -> S3Server:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = cls(process=process, endpoint=f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while not server.answers():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("the local S3 server (moto) did not start")
            time.sleep(0.05)
        return server

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):  # noqa: S310
                return True
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def new_bucket(self) -> str:
        name = f"sb-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def storage_options(self, bucket: str, *, expire: int = 300) -> dict:
        """STORAGES["default"] as settings.py builds it from S3_* for this server."""
        return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
            "bucket_name": bucket, "endpoint_url": self.endpoint, "region_name": REGION,
            "access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "default_acl": "private",
            "signature_version": "s3v4", "querystring_auth": True,
            "querystring_expire": expire, "file_overwrite": False}}

    def env(self, bucket: str) -> dict[str, str]:
        """The same, as the environment a server or worker process reads."""
        return {"S3_BUCKET": bucket, "S3_ENDPOINT_URL": self.endpoint, "S3_REGION": REGION,
                "S3_ACCESS_KEY_ID": ACCESS_KEY, "S3_SECRET_ACCESS_KEY": SECRET_KEY}

    def keys(self, bucket: str) -> set[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}
