"""Auth as users meet it, with the real clients: the first admin from the one-time code the server prints,
OIDC ID tokens (RS256, from a provider on loopback) through the stock mlflow client's MLFLOW_TRACKING_TOKEN,
and a server that will not listen beyond loopback without auth."""

import base64
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loopline_process import LooplineProcess, binary, free_port  # noqa: E402


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_the_first_admin_comes_from_the_printed_one_time_code():
    data = tempfile.mkdtemp(prefix="loopline-auth-")
    port = free_port()
    server = LooplineProcess(["server", "--port", str(port), "--data-dir", data, "--auth", "basic,token"], port,
                             Path(data) / "server.log", timeout=60)
    try:
        found = re.search(r"\"code\": \"(llb_[A-Za-z0-9_-]+)\"", server.log_text())
        assert found, server.log_text()
        code = found.group(1)
        # No admin yet: nothing but the bootstrap works, and a wrong code is refused.
        assert requests.get(f"{server.url}/api/2.0/mlflow/experiments/search", timeout=10).status_code == 401
        wrong = requests.post(f"{server.url}/api/loopline/v1/access/bootstrap",
                              json={"code": code + "x", "username": "root", "password": "root password 123"}, timeout=10)
        assert wrong.status_code == 403
        made = requests.post(f"{server.url}/api/loopline/v1/access/bootstrap",
                             json={"code": code, "username": "root", "password": "root password 123"}, timeout=30)
        assert made.status_code == 200, made.text
        again = requests.post(f"{server.url}/api/loopline/v1/access/bootstrap",
                              json={"code": code, "username": "root2", "password": "root password 123"}, timeout=10)
        assert again.status_code == 403
        me = requests.get(f"{server.url}/api/2.0/mlflow/users/current", auth=("root", "root password 123"), timeout=30)
        assert me.json()["user"] == {"id": me.json()["user"]["id"], "username": "root", "is_admin": True}
    finally:
        assert server.stop() == 0


class _Provider(BaseHTTPRequestHandler):
    issuer = ""
    jwks = {}

    def do_GET(self):
        if self.path == "/.well-known/openid-configuration":
            body = {"issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks"}
        elif self.path == "/jwks":
            body = self.jwks
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_the_stock_mlflow_client_works_with_an_oidc_id_token(monkeypatch):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    provider = ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    issuer = f"http://127.0.0.1:{provider.server_address[1]}"
    _Provider.issuer = issuer
    _Provider.jwks = {"keys": [{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
                                "n": _b64(numbers.n.to_bytes(256, "big")), "e": _b64(numbers.e.to_bytes(3, "big"))}]}
    threading.Thread(target=provider.serve_forever, daemon=True).start()

    def id_token(user, groups, audience="loopline"):
        header = _b64(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode())
        now = int(time.time())
        claims = _b64(json.dumps({"iss": issuer, "aud": audience, "sub": user, "preferred_username": user,
                                  "groups": groups, "iat": now, "exp": now + 300}).encode())
        signature = key.sign(f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{claims}.{_b64(signature)}"

    data = tempfile.mkdtemp(prefix="loopline-oidc-")
    port = free_port()
    server = LooplineProcess(
        ["server", "--port", str(port), "--data-dir", data, "--auth", "oidc", "--oidc-issuer", issuer,
         "--oidc-audience", "loopline", "--oidc-group-role", "ml-team=editor"],
        port, Path(data) / "server.log", timeout=60, env={"LOOPLINE_ADMIN_PASSWORD": "unused admin password"})
    try:
        import mlflow
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", id_token("ada", ["ml-team"]))
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        client = MlflowClient(server.url)
        experiment = client.create_experiment("oidc-experiment")
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "accuracy", 0.93)
        assert client.get_run(run.info.run_id).data.metrics == {"accuracy": 0.93}
        # Outside the group: a reader, refused when creating.
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", id_token("bo", []))
        with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
            MlflowClient(server.url).create_experiment("bo's")
        # A token for another audience is not a sign-in at all.
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", id_token("ada", ["ml-team"], audience="another-app"))
        with pytest.raises(MlflowException, match="UNAUTHENTICATED"):
            MlflowClient(server.url).get_experiment(experiment)
        del mlflow
    finally:
        provider.shutdown()
        assert server.stop() == 0


def test_no_auth_means_loopback_only():
    data = tempfile.mkdtemp(prefix="loopline-open-")
    done = subprocess.run([binary(), "server", "--host", "0.0.0.0", "--port", str(free_port()), "--data-dir", data],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "--allow-unauthenticated" in done.stderr + done.stdout
