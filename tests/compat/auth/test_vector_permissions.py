"""Vector collections with auth on: each collection is a resource of kind `collection`. A user whose default
permission is READ reads but cannot change or delete; an editor creates collections (and gets MANAGE on
them), writes to others' but cannot delete or replace them; grants name collections as any other kind."""

import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loopline_process import LooplineProcess, free_port  # noqa: E402

ADMIN = ("admin", "vector admin password")
POINTS = {"points": [{"id": 1, "vector": [1.0, 0.0, 0.0, 0.0]}, {"id": 2, "vector": [0.0, 1.0, 0.0, 0.0]}]}


def test_collections_follow_grants_and_the_default_permission(monkeypatch):
    from mlflow.server import get_app_client

    data = tempfile.mkdtemp(prefix="loopline-vector-auth-")
    port = free_port()
    server = LooplineProcess(["server", "--port", str(port), "--data-dir", data, "--auth", "basic,token"], port,
                             Path(data) / "server.log", timeout=60, env={"LOOPLINE_ADMIN_PASSWORD": ADMIN[1]})
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
        admin = get_app_client("basic-auth", tracking_uri=server.url)
        editor_role = next(role.id for role in admin.list_roles("default") if role.name == "editor")
        for name in ["alice", "bob"]:
            admin.create_user(name, f"{name} password long")
            admin.assign_role(name, editor_role)
        admin.create_user("reader", "reader password long")
        as_user = {name: (name, f"{name} password long") for name in ["alice", "bob", "reader"]}

        def call(user, method, path, body=None):
            return requests.request(method, f"{server.url}{path}", json=body, auth=as_user[user], timeout=30)

        assert requests.get(f"{server.url}/collections/docs", timeout=30).status_code == 401
        made = call("alice", "PUT", "/collections/docs", {"vectors": {"size": 4, "distance": "Cosine"}})
        assert made.status_code == 200, made.text
        assert call("alice", "PUT", "/collections/docs/points?wait=true", POINTS).status_code == 200
        # A collection the reader is denied: left out of the reader's list, refused by name.
        secret = call("alice", "PUT", "/collections/secret", {"vectors": {"size": 4, "distance": "Cosine"}})
        assert secret.status_code == 200, secret.text
        admin.grant_user_permission("reader", "collection", "secret", "DENY")

        def listed(user):
            return sorted(c["name"] for c in call(user, "GET", "/collections").json()["result"]["collections"])

        assert listed("reader") == ["docs"]
        assert listed("alice") == ["docs", "secret"]
        assert call("reader", "GET", "/collections/secret").status_code == 403
        assert call("reader", "POST", "/collections/secret/points/count", {}).status_code == 403
        # The reader reads, and changes nothing.
        assert call("reader", "POST", "/collections/docs/points/count", {}).json()["result"]["count"] == 2
        for method, path, body in [
            ("PUT", "/collections/docs/points?wait=true", POINTS),
            ("DELETE", "/collections/docs", None),
            ("POST", "/collections/docs/snapshots", None),
            ("PUT", "/collections/other", {"vectors": {"size": 4, "distance": "Cosine"}}),
        ]:
            refused = call("reader", method, path, body)
            assert refused.status_code == 403, (method, path, refused.text)
        # Another editor writes to alice's collection but cannot delete it or replace it from a snapshot.
        assert call("bob", "POST", "/collections/docs/points/delete?wait=true", {"points": [2]}).status_code == 200
        snapshot = call("bob", "POST", "/collections/docs/snapshots").json()["result"]["name"]
        assert call("bob", "DELETE", "/collections/docs").status_code == 403
        recover = call("bob", "PUT", "/collections/docs/snapshots/recover", {"location": snapshot})
        assert recover.status_code == 403
        # The creator manages hers.
        assert call("alice", "PUT", "/collections/docs/snapshots/recover", {"location": snapshot}).status_code == 200
        assert call("alice", "DELETE", "/collections/docs").status_code == 200
    finally:
        assert server.stop() == 0
