from __future__ import annotations

import os

from botocore.session import get_session

from worker.local.emulator import cloudwatch_speaks_query


def _protocol(env: dict[str, str]) -> str:
    session = get_session()
    session.set_config_variable("data_path", env.get("AWS_DATA_PATH"))
    client = session.create_client("cloudwatch", region_name="us-east-1", aws_access_key_id="x",
                                   aws_secret_access_key="x")
    return str(client.meta.service_model.resolved_protocol)


def test_cloudwatch_clients_speak_query_while_the_emulator_runs_then_as_before() -> None:
    env = {"AWS_DATA_PATH": "/nonexistent/models"}
    before = _protocol(env)
    assert before != "query"  # botocore prefers CBOR or JSON, which LocalStack 4.4 cannot read
    with cloudwatch_speaks_query(env):
        assert env["AWS_DATA_PATH"].endswith(os.pathsep + "/nonexistent/models")  # the caller's path is kept
        assert _protocol(env) == "query"
        folder = env["AWS_DATA_PATH"].split(os.pathsep)[0]
    assert env == {"AWS_DATA_PATH": "/nonexistent/models"}
    assert not os.path.exists(folder)
    assert _protocol(env) == before
