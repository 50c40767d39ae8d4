from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proxy.config import ProxyConfig, is_loopback, load_config
from proxy.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def test_example_config_documents_exactly_the_defaults() -> None:
    loaded = load_config(EXAMPLE, env={})
    assert loaded == ProxyConfig()
    assert loaded.server.host == "127.0.0.1" and loaded.server.port == 8787
    assert loaded.upstreams.gemini.api_base.endswith("/v1beta")


def test_example_config_names_every_key() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    assert set(raw) == {"server", "storage_path", "storage_url", "budget_tokens", "agent_budget_tokens", "layout_policy", "upstreams", "embedding", "tenants", "limits",
                        "retention", "log_level", "log_content", "log_file", "store_images"}
    assert set(raw["server"]) == {"host", "port", "access_token", "max_body_bytes", "allowed_hosts", "allowed_origins", "workers"}
    assert set(raw["limits"]) == {"max_messages", "max_message_tokens"}
    assert set(raw["retention"]) == {"session_ttl_days", "max_sessions_per_caller", "sweep_interval_seconds"}
    assert set(raw["upstreams"]) == {"openai", "gemini", "anthropic", "timeout_seconds", "connect_timeout_seconds", "retries"}
    assert set(raw["embedding"]) == {"model", "model_dir"}


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server: {port: 9000}\nbudget_tokens: 100\nupstreams: {openai: {api_base: http://file/v1}}\n")
    env = {
        "MEMORY_RUNTIME_PORT": "9100",
        "MEMORY_RUNTIME_STORAGE_PATH": "/tmp/x.sqlite",
        "OPENAI_BASE_URL": "http://127.0.0.1:1/v1/",
        "GEMINI_API_BASE": "http://127.0.0.1:2/v1beta",
        "OPENAI_API_KEY": "sk-env",
        "MEMORY_RUNTIME_BUDGET_TOKENS": "1234",
    }
    config = load_config(cfg, env=env)
    assert config.server.port == 9100
    assert config.storage_path == "/tmp/x.sqlite"
    assert config.budget_tokens == 1234
    assert config.upstreams.openai.api_base == "http://127.0.0.1:1/v1"
    assert config.upstreams.openai.api_key == "sk-env"
    assert config.upstreams.gemini.api_key is None
    assert "sk-env" not in repr(config)


def test_storage_url_from_file_or_environment_and_never_in_repr(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("storage_url: postgresql://app:file-secret@db.internal:5432/memory\n")
    assert load_config(cfg, env={}).storage_url == "postgresql://app:file-secret@db.internal:5432/memory"
    config = load_config(cfg, env={"MEMORY_RUNTIME_STORAGE_URL": "postgresql://app:env-secret@db2/memory"})
    assert config.storage_url == "postgresql://app:env-secret@db2/memory"
    assert "env-secret" not in repr(config)
    assert load_config(env={}).storage_url is None


def test_config_path_from_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("budget_tokens: 777\n")
    assert load_config(env={"MEMORY_RUNTIME_CONFIG": str(cfg)}).budget_tokens == 777


@pytest.mark.parametrize(
    "text",
    [
        "server: {port: eighty}\n",
        "server: {port: 70000}\n",
        "budget_tokens: 0\n",
        "upstreams: {gemini: {api_base: http://x/v1}}\n",
        "upstreams: {retries: -1}\n",
        "server: [1, 2]\n",
        "- just a list\n",
        "server: {host: 0.0.0.0}\n",
        "server: {host: 127.attacker.example}\n",
        "key: [unclosed\n",
        "storage_url: mysql://db.example/memory\n",
        "tenants: [{name: a, token: short}]\n",
        "tenants: [{name: 'bad/name', token: long-enough-token-123}]\n",
        "tenants: [{name: a, token: long-enough-token-123}, {name: a, token: other-long-token-456}]\n",
        "server: {access_token: long-enough-token-123}\ntenants: [{name: a, token: long-enough-token-123}]\n",
        "limits: {max_messages: 0}\n",
        "limits: {max_message_tokens: many}\n",
        "retention: {session_ttl_days: -1}\n",
        "retention: {max_sessions_per_caller: 0}\n",
        "server: {allowed_hosts: example.com}\n",
        "log_content: maybe\n",
    ],
)
def test_bad_config_is_refused(tmp_path: Path, text: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError):
        load_config(cfg, env={})


def test_non_loopback_bind_needs_an_access_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        ProxyConfig().with_server(host="0.0.0.0")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server: {host: 0.0.0.0, access_token: secret}\n")
    assert load_config(cfg, env={}).server.host == "0.0.0.0"
    assert ProxyConfig().with_server(port=1234).server.port == 1234


@pytest.mark.parametrize(
    "host,loopback",
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True), ("LocalHost", True),
     ("127.attacker.example", False), ("127.0.0.1.nip.io", False), ("0.0.0.0", False), ("10.0.0.1", False), ("example.com", False)],
)
def test_loopback_is_decided_by_parsed_address(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(tmp_path / "nope.yaml", env={})


@pytest.mark.parametrize(
    "text,message",
    [
        ("budget_token: 2000\n", "unknown config key 'budget_token' (did you mean 'budget_tokens'?)"),
        ("server: {prot: 9999}\n", "unknown config key 'server.prot' (did you mean 'server.port'?)"),
        ("upstreams: {openai: {api_bse: 'http://x'}}\n", "unknown config key 'upstreams.openai.api_bse' (did you mean 'upstreams.openai.api_base'?)"),
        ("retention: {session_ttl: 3}\n", "unknown config key 'retention.session_ttl' (did you mean 'retention.session_ttl_days'?)"),
        ("tenants: [{name: alice, tokne: long-enough-token-123}]\n", "unknown config key 'tenants[].tokne' (did you mean 'tenants[].token'?)"),
        ("upstreams: {openai: {api_key: sk-in-a-file}}\n",
         "config key 'upstreams.openai.api_key' is not read from the file (API keys come from the environment only)"),
    ],
)
def test_unknown_keys_are_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(cfg, env={})
    assert str(caught.value) == message


def test_an_unknown_key_with_no_near_name_lists_the_known_ones(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("limits: {zzz: 1}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'limits.zzz' \(known here: max_message_tokens, max_messages\)"):
        load_config(cfg, env={})


def test_workers_come_from_the_file_and_the_flag(tmp_path: Path) -> None:
    assert ProxyConfig().server.workers == 1
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server: {workers: 2, port: 9000}\n")
    assert load_config(cfg, env={}).server.workers == 2
    flagged = load_config(cfg, env={}).with_server(workers=4)
    assert (flagged.server.workers, flagged.server.port) == (4, 9000)


@pytest.mark.parametrize("text", ["server: {workers: 0}\n", "server: {workers: -2}\n", "server: {workers: 65}\n",
                                  "server: {workers: two}\n", "server: {workers: true}\n"])
def test_bad_workers_are_refused(tmp_path: Path, text: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match="server.workers"):
        load_config(cfg, env={})


def test_a_bad_workers_flag_is_refused() -> None:
    with pytest.raises(ConfigError, match="server.workers must be from 1 to 64: 0"):
        ProxyConfig().with_server(workers=0)


def test_the_agent_budget_is_configured_like_the_others(tmp_path: Path) -> None:
    assert ProxyConfig().agent_budget_tokens == 16000 and load_config(env={}).agent_budget_tokens == 16000
    assert load_config(env={"MEMORY_RUNTIME_AGENT_BUDGET_TOKENS": "24000"}).agent_budget_tokens == 24000
    cfg = tmp_path / "c.yaml"
    cfg.write_text("agent_budget_tokens: null\n")  # requests with tools get budget_tokens, like the rest
    assert load_config(cfg, env={}).agent_budget_tokens is None
    for bad in ("agent_budget_tokens: 0\n", "agent_budget_tokens: -5\n", "agent_budget_tokens: lots\n"):
        cfg.write_text(bad)
        with pytest.raises(ConfigError, match="agent_budget_tokens"):
            load_config(cfg, env={})
    cfg.write_text("agent_budget_token: 20000\n")
    with pytest.raises(ConfigError, match="did you mean 'agent_budget_tokens'"):
        load_config(cfg, env={})
