"""Loading encoders and tokenizers: a model that cannot be loaded is one line naming `model`."""

import pytest

from nerlab.errors import UserError
from nerlab.model import load_encoder, load_tokenizer


@pytest.mark.parametrize("load", [load_tokenizer, load_encoder])
def test_a_directory_that_is_not_a_model_is_a_one_line_error(tmp_path, load):
    (tmp_path / "config.json").write_text("{}")  # passes the config check, fails to load
    args = (None, tmp_path) if load is load_tokenizer else (None, 0)
    with pytest.raises(UserError) as e:
        load(str(tmp_path), *args)
    message = str(e.value)
    assert message.startswith(f"model {str(tmp_path)!r}: cannot load it (") and "\n" not in message
    assert message.endswith("a local model directory with config.json, or tiny")
