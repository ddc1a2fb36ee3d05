"""MLflow's own admin client (`mlflow.server.get_app_client("basic-auth")`, as pinned) against Loopline: every
call an admin script makes, with the answers MLflow's server gives, and the refusals it gives."""

import tempfile
from pathlib import Path

import pytest
import requests

import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loopline_process import LooplineProcess, free_port  # noqa: E402

ADMIN_PASSWORD = "admin client password"


@pytest.fixture(scope="module")
def server():
    data = tempfile.mkdtemp(prefix="loopline-admin-client-")
    port = free_port()
    process = LooplineProcess(["server", "--port", str(port), "--data-dir", data, "--auth", "basic,token"], port,
                              Path(data) / "server.log", timeout=60, env={"LOOPLINE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    yield process.url
    assert process.stop() == 0


def client_as(monkeypatch, url, username, password):
    from mlflow.server import get_app_client

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return get_app_client("basic-auth", tracking_uri=url)


def test_an_admin_script_runs_unchanged(server, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException, RestException

    admin = client_as(monkeypatch, server, "admin", ADMIN_PASSWORD)
    user = admin.create_user("dana", "dana password 1")
    assert (user.username, user.is_admin) == ("dana", False)
    assert admin.get_user("dana").id == user.id
    with pytest.raises(RestException, match="RESOURCE_ALREADY_EXISTS"):
        admin.create_user("dana", "another password")
    with pytest.raises(RestException, match="INVALID_PARAMETER_VALUE"):
        admin.create_user("eve", "short")

    # Roles: a custom one with grants, changed, listed, assigned and taken away.
    role = admin.create_role("default", "model-reviewers", description="reads every model")
    grant = admin.add_role_permission(role.id, "registered_model", "*", "READ")
    assert (grant.resource_type, grant.resource_pattern, grant.permission) == ("registered_model", "*", "READ")
    assert [p.id for p in admin.list_role_permissions(role.id)] == [grant.id]
    assert admin.update_role_permission(grant.id, "USE").permission == "USE"
    assert admin.update_role(role.id, description="uses every model").description == "uses every model"
    assert admin.get_role(role.id).name == "model-reviewers"
    assert "model-reviewers" in [r.name for r in admin.list_roles("default")]
    assert "model-reviewers" in [r.name for r in admin.list_all_roles()]
    assignment = admin.assign_role("dana", role.id)
    assert (assignment.role_id, assignment.user_id) == (role.id, user.id)
    assert "model-reviewers" in [r.name for r in admin.list_user_roles("dana")]
    assert [a.user_id for a in admin.list_role_users(role.id)] == [user.id]
    with pytest.raises(RestException, match="INVALID_PARAMETER_VALUE"):
        admin.add_role_permission(role.id, "no_such_kind", "*", "READ")
    with pytest.raises(RestException, match="INVALID_PARAMETER_VALUE"):
        admin.add_role_permission(role.id, "experiment", "*", "SUPERUSER")

    # Per-user grants, with DENY overriding the role.
    experiment = MlflowClient(server).create_experiment("reviewed")
    admin.grant_user_permission("dana", "experiment", experiment, "EDIT")
    assert admin.get_user_permission("dana", "experiment", experiment).permission == "EDIT"
    admin.grant_user_permission("dana", "experiment", experiment, "DENY")
    denied = admin.get_user_permission("dana", "experiment", experiment)
    assert (denied.permission, denied.allowed) == ("NO_PERMISSIONS", False)
    admin.revoke_user_permission("dana", "experiment", experiment)
    assert admin.get_user_permission("dana", "experiment", experiment).permission == "READ"
    with pytest.raises(RestException, match="RESOURCE_DOES_NOT_EXIST"):
        admin.grant_user_permission("dana", "experiment", "424242", "READ")

    # Dana: her own account, not others'; her password only with the current one.
    dana = client_as(monkeypatch, server, "dana", "dana password 1")
    assert dana.get_user("dana").username == "dana"
    with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
        dana.get_user("admin")
    with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
        dana.create_user("mallory", "mallory password")
    with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
        dana.update_user_admin("dana", True)
    with pytest.raises(RestException, match="INVALID_PARAMETER_VALUE"):
        dana.update_user_password("dana", "dana password 2")
    dana.update_user_password("dana", "dana password 2", current_password="dana password 1")
    assert requests.get(f"{server}/api/2.0/mlflow/users/current", auth=("dana", "dana password 1"),
                        timeout=30).status_code == 401
    me = requests.get(f"{server}/api/2.0/mlflow/users/current", auth=("dana", "dana password 2"), timeout=30).json()
    assert me["user"]["username"] == "dana"

    # Back to the admin: promotion, the last admin kept, clean-up.
    admin = client_as(monkeypatch, server, "admin", ADMIN_PASSWORD)
    admin.update_user_admin("dana", True)
    assert admin.get_user("dana").is_admin
    admin.unassign_role("dana", role.id)
    admin.remove_role_permission(grant.id)
    admin.delete_role(role.id)
    with pytest.raises(RestException, match="BAD_REQUEST"):
        admin.delete_user("admin")
    admin.delete_user("dana")
    with pytest.raises(RestException, match="RESOURCE_DOES_NOT_EXIST"):
        admin.get_user("dana")
