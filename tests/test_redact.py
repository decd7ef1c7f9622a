"""Secrets in the environment never reach a message."""

from nerlab.redact import is_secret, redact


def test_every_secret_in_the_environment_is_redacted(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-one-0123")
    monkeypatch.setenv("HF_TOKEN", "hf_two_4567")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1")
    text = "bad key sk-one-0123 and hf_two_4567 at http://localhost:8000/v1"
    assert redact(text) == "bad key [redacted] and [redacted] at http://localhost:8000/v1"
    assert is_secret("GITHUB_TOKEN") and is_secret("X_SECRET") and not is_secret("TOKENIZERS_X")
