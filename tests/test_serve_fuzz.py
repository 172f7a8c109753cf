"""Property-based fuzz of the whole API (schemathesis, from the service's own OpenAPI
document) against a real uvicorn server: every operation, with an auditor's and an admin's
token, valid and invalid inputs; a bounded number of examples per operation. No response may be
a 500, every status must be documented, every body must match its declared schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from serve_project import AREAS, LiveServer, built_project, project_env

from riskml.config import load_area_specs, load_params
from riskml.feedback import FeedbackStore
from riskml.serve import create_app

EXAMPLES = 25  # per operation and token: the suite stays quick
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    project = built_project(tmp_path_factory.getbasetemp())
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", project_env(project)["MLFLOW_TRACKING_URI"])
    params = load_params(project / "params.yaml")
    serve = params.serve.model_copy(update={"max_batch": 200, "max_body_mb": 1.0})
    params = params.model_copy(update={"serve": serve})
    specs = {a: s for a, s in load_area_specs(project / "pipelines").items() if a in AREAS}
    store = FeedbackStore(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'feedback.db'}")
    tokens = {
        "auditor": store.create_token("fuzz-auditor", "auditor"),
        "admin": store.create_token("fuzz-admin", "admin"),
    }
    app = create_app(project, params, specs, store=store, check_models=True)
    with LiveServer(app) as server:
        yield server.url, tokens
    mp.undo()


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_api_fuzz_finds_no_server_error_and_no_undocumented_response(fuzzed, role):
    url, tokens = fuzzed
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
        @given(case=operation.as_strategy())
        def run(case) -> None:
            nonlocal tried
            tried += 1
            response = case.call(headers={"Authorization": f"Bearer {tokens[role]}"})
            case.validate_response(response, checks=CHECKS)

        run()
    assert tried >= EXAMPLES
