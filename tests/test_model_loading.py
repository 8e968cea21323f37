"""Loading checkpoints: the bundle, the tokenizer, builtin:tiny, the tiny CLI, and clear errors.

Run: pytest tests/test_model_loading.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_helpers import one_thread
from xp.model import ModelLoadError, load_model

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)
ROOT = Path(__file__).resolve().parents[1]


def test_bundle_fields_and_tokenizer(tiny_ckpt):
    b = load_model(str(tiny_ckpt), dtype="fp32", lora_path=str(tiny_ckpt / "linear_spec_lora"), max_model_len=512)
    assert (b.eos_token_id, b.mask_token_id, b.max_model_len, b.has_lora) == (2, 4, 512, True)
    tok = b.tokenizer
    assert tok.eos_token_id == b.eos_token_id and tok.mask_token_id == b.mask_token_id
    assert tok.convert_ids_to_tokens(b.end_think_token_id) == "</think>"
    text = "Natalia sold 48 clips in April, and half as many in May. How many? \\boxed{72} 3.14 é"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    on = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    off = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert on.startswith("<s>[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]Hi[/INST]") and on.endswith("<think>\n")
    assert "<think>" not in off and off.endswith("[/INST]")
    assert load_model(str(tiny_ckpt), dtype="fp32").has_lora is False


def test_lora_path_relative_to_the_checkpoint(tiny_ckpt):
    assert load_model(str(tiny_ckpt), dtype="fp32", lora_path="linear_spec_lora").has_lora


def test_builtin_tiny_is_built_once_into_nld_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NLD_CACHE", str(tmp_path / "cache"))
    b = load_model("builtin:tiny", dtype="fp32", lora_path="linear_spec_lora")
    path = tmp_path / "cache" / "checkpoints" / "tiny"
    assert Path(b.path) == path and (path / "linear_spec_lora" / "adapter_config.json").is_file()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    load_model("builtin:tiny", dtype="fp32")
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ModelLoadError, match="unknown builtin model 'builtin:huge'"):
        load_model("builtin:huge")


def test_tiny_cli_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "xp.model.tiny", "--out", str(out), "--with-lora", "--seed", "3"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "wrote tiny checkpoint" in proc.stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "nemotron_labs_diffusion" and cfg["rope_parameters"]["rope_type"] == "yarn"
    assert not list(tmp_path.glob(".tmp-*"))
    assert load_model(str(out), dtype="fp32", lora_path=str(out / "linear_spec_lora")).has_lora


def broken_copy(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    edit(dst)
    return dst


def _set_config(**changes):
    def edit(d: Path):
        cfg = json.loads((d / "config.json").read_text())
        for k, v in changes.items():
            if v is None:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        (d / "config.json").write_text(json.dumps(cfg))
    return edit


CASES = {
    "no-config": (lambda d: (d / "config.json").unlink(), "no config.json"),
    "bad-json": (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
    "wrong-type": (_set_config(model_type="llama"), "model_type is 'llama', expected 'nemotron_labs_diffusion'"),
    "missing-field": (_set_config(hidden_size=None), "missing required field 'hidden_size'"),
    "bad-heads": (_set_config(num_key_value_heads=3), "num_key_value_heads=3 must be a positive divisor"),
    "bad-mask": (_set_config(mask_token_id=99999), "mask_token_id=99999 must be a token id"),
    "bad-rope": (_set_config(rope_parameters={"rope_type": "dynamic", "rope_theta": 1e4}), "rope_type 'dynamic'"),
    "shape-mismatch": (_set_config(intermediate_size=100), "has shape"),
    "no-weights": (lambda d: (d / "model.safetensors").unlink(), "no weights"),
    "damaged-weights": (lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 64), "cannot read weights"),
    "no-tokenizer": (lambda d: [p.unlink() for p in d.glob("tokenizer*")], "cannot load a tokenizer"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_checkpoints_give_clear_errors(tiny_ckpt, tmp_path, case):
    edit, message = CASES[case]
    path = broken_copy(tiny_ckpt, tmp_path / case, edit)
    with pytest.raises(ModelLoadError, match=message):
        load_model(str(path), dtype="fp32")


ADAPTER_CASES = {
    "no-config": (lambda d: (d / "adapter_config.json").unlink(), "no adapter_config.json"),
    "bad-json": (lambda d: (d / "adapter_config.json").write_text("[1,"), "not valid JSON"),
    "no-weights": (lambda d: (d / "adapter_model.safetensors").unlink(), "no adapter_model.safetensors"),
    "bad-target": (lambda d: _edit_adapter(d, target_modules=["nonexistent_proj"]), "match no layer"),
    "bad-rank": (lambda d: _edit_adapter(d, r=3), "do not fit"),
    "missing-key": (lambda d: _edit_adapter(d, target_modules=["o_proj", "q_proj"]), "no lora_A/lora_B"),
}


def _edit_adapter(d: Path, **changes):
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg.update(changes)
    (d / "adapter_config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("case", list(ADAPTER_CASES))
def test_broken_adapters_give_clear_errors(tiny_ckpt, tmp_path, case):
    edit, message = ADAPTER_CASES[case]
    adapter = broken_copy(tiny_ckpt / "linear_spec_lora", tmp_path / case, edit)
    with pytest.raises(ModelLoadError, match=message):
        load_model(str(tiny_ckpt), dtype="fp32", lora_path=str(adapter))


def test_bad_arguments_give_clear_errors(tiny_ckpt, tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "nowhere"))
    with pytest.raises(ModelLoadError, match="unknown dtype 'int8'"):
        load_model(str(tiny_ckpt), dtype="int8")
    with pytest.raises(ModelLoadError, match="LoRA folder .* has no adapter_config.json"):
        load_model(str(tiny_ckpt), dtype="fp32", lora_path=str(tmp_path))
    with pytest.raises(ModelLoadError, match="max_model_len must be > 0"):
        load_model(str(tiny_ckpt), dtype="fp32", max_model_len=0)
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model(str(tiny_ckpt / "config.json"))


def test_unknown_hub_id_without_network_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError, match="could not be fetched from the Hugging Face hub"):
        load_model("nobody-here/no-such-model")
