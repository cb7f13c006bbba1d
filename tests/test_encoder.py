"""Which model --model means: a directory, or one of the two models every install has, by name."""

import pytest

from skilltag.encoder import (
    MODEL_ENV_VAR, PACKAGED_MODEL, Encoder, EncoderError, default_model_path, resolve_model, stock_model_path,
)


def test_models_by_name_path_or_default(tmp_path, monkeypatch):
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    assert resolve_model("all-MiniLM-L6-v2") == stock_model_path()
    assert (stock_model_path() / "modules.json").is_file()
    assert resolve_model("minilm-esco-v1") == PACKAGED_MODEL == resolve_model(None) == default_model_path()
    assert resolve_model(str(tmp_path)) == tmp_path
    (tmp_path / "all-MiniLM-L6-v2").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_model("all-MiniLM-L6-v2").resolve() == tmp_path / "all-MiniLM-L6-v2", "a directory wins"
    monkeypatch.setenv(MODEL_ENV_VAR, "ALL-MINILM-L6-V2")
    assert default_model_path() == stock_model_path()


def test_an_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(EncoderError, match="No sentence-transformers model at .*no-such-model"):
        Encoder(tmp_path / "no-such-model", device="cpu")
