"""make mlflow-server's bad input: one line naming what is wrong, before any server starts; the flow's --dask values."""

from __future__ import annotations

import pytest

from flows import mlflow_server


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup for credentials
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))


def test_a_destination_that_is_not_s3_is_named(tmp_path, capsys, no_aws):
    code = mlflow_server.main(["--artifacts-destination", "gs://bucket/mlflow", "--data", str(tmp_path / "d")])
    assert code == 1
    assert capsys.readouterr().err == "error: --artifacts-destination 'gs://bucket/mlflow': expected s3://bucket/prefix\n"
    assert not (tmp_path / "d" / "pgdata").exists()  # nothing started


def test_missing_credentials_name_the_bucket_and_where_credentials_come_from(tmp_path, capsys, no_aws):
    code = mlflow_server.main(["--artifacts-destination", "s3://team-bucket/mlflow", "--data", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith("error: s3://team-bucket at AWS S3: Unable to locate credentials") and "AWS_PROFILE" in err
    assert not (tmp_path / "d" / "pgdata").exists()


def test_the_sandbox_never_hands_the_server_the_callers_s3_settings(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-teams-real-secret")
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "https://s3.example.org")
    env = mlflow_server.server_env("http://127.0.0.1:9999")
    assert env["AWS_SECRET_ACCESS_KEY"] == "cvpipe-sandbox" and env["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:9999"
    assert mlflow_server.server_env(None)["AWS_SECRET_ACCESS_KEY"] == "the-teams-real-secret"  # a real bucket: the caller's


def test_a_port_in_use_is_named_before_anything_starts(tmp_path, capsys, no_aws):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = mlflow_server.main(["--port", str(port), "--data", str(tmp_path / "d")])
    assert code == 1
    assert capsys.readouterr().err.startswith(f"error: 127.0.0.1:{port} is in use")
    assert not (tmp_path / "d").exists()


def test_a_data_folder_too_deep_for_postgresqls_socket_is_refused(tmp_path):
    from cvpipe.core.errors import CvpipeError
    from cvpipe.mlops.servers import start_postgres

    deep = tmp_path / ("x" * 60) / ("y" * 40)
    with pytest.raises(CvpipeError, match="too long a path for PostgreSQL's Unix socket"):
        start_postgres(deep / "pgdata")
    assert not deep.exists()


def test_the_flows_dask_option_takes_local_or_a_scheduler_address():
    from cvpipe.core.errors import UsageError
    from flows.pipeline import dask_runner

    assert dask_runner("tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    local = dask_runner("local", workers=3)
    assert local.address is None and local.cluster_kwargs["n_workers"] == 3 and local.cluster_kwargs["host"] == "127.0.0.1"
    with pytest.raises(UsageError, match=r"--dask '10\.0\.0\.5': 'local' or a scheduler address"):
        dask_runner("10.0.0.5")
