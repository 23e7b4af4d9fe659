"""``pairsim serve``'s settings: where the key comes from, which hosts and origins, the connection limits."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pairsim.cli.main import build_parser, main
from pairsim.cli.serve import allowed_hosts, settings_from_args
from pairsim.service.config import LOOPBACK_HOSTS
from pairsim.service.server import uvicorn_config


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", "some-index", *argv])


def test_the_key_comes_from_the_environment_or_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAIRSIM_API_KEY", raising=False)
    assert settings_from_args(parse())[0].api_key is None
    monkeypatch.setenv("PAIRSIM_API_KEY", "from-env")
    assert settings_from_args(parse())[0].api_key == "from-env"
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert settings_from_args(parse("--api-key-file", str(key_file)))[0].api_key == "from-file"


def test_the_key_on_the_command_line_is_deprecated(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PAIRSIM_API_KEY", raising=False)
    assert settings_from_args(parse("--api-key", "visible"))[0].api_key == "visible"
    assert "--api-key shows in `ps`" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["env", "file"])
def test_an_empty_key_stops_the_server_with_one_error_line(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PAIRSIM_API_KEY", raising=False)
    argv = ["serve", str(tmp_path)]
    if source == "env":
        monkeypatch.setenv("PAIRSIM_API_KEY", "")
    else:
        (tmp_path / "key").write_text("\n")
        argv += ["--api-key-file", str(tmp_path / "key")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the API key of ") and "is empty" in err and len(err.splitlines()) == 1


def test_the_hosts_answered_follow_the_bound_address() -> None:
    assert allowed_hosts("127.0.0.1", []) == LOOPBACK_HOSTS
    assert allowed_hosts("::1", ["box.lan"]) == (*LOOPBACK_HOSTS, "box.lan")
    assert allowed_hosts("192.168.1.5", []) == ("192.168.1.5",)
    assert allowed_hosts("0.0.0.0", ["box.lan", "*"]) == ("box.lan", "*")
    with pytest.raises(ValueError, match="--allowed-host"):
        allowed_hosts("0.0.0.0", [])


def test_origins_must_be_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAIRSIM_API_KEY", raising=False)
    config = settings_from_args(parse("--allowed-origin", "https://app.example:8443"))[0]
    assert config.allowed_origins == ("https://app.example:8443",)
    for bad in ("app.example", "https://app.example/page", "ftp://app.example"):
        with pytest.raises(ValueError, match="not an origin"):
            settings_from_args(parse("--allowed-origin", bad))


def test_the_server_has_timeouts_and_a_connection_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAIRSIM_API_KEY", raising=False)
    config, server = settings_from_args(parse("--limit-concurrency", "16", "--body-timeout", "7"))
    assert (config.body_timeout_s, config.allow_anonymous_writes) == (7.0, False)
    uv = uvicorn_config(object(), server)
    assert (uv.limit_concurrency, uv.timeout_keep_alive, uv.access_log) == (16, 5, False)
    assert uv.http.header_timeout_s == 10.0
