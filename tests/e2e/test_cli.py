"""The `ondol` command: generate, chat, info, and a one-line error with exit status 1 for every
user error the engine issue lists (no traceback)."""

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ondol.cli import main


def run(argv, capsys, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_streams_text(tiny_model_dir, capsys):
    code, out, err = run(["generate", str(tiny_model_dir), "거실 에어컨", "-n", "8", "-t", "0", "--ignore-eos"], capsys)
    assert code == 0 and out.endswith("\n") and len(out) > 1


def test_generate_json_matches_the_python_api(tiny_model_dir, capsys):
    from ondol import LLM, SamplingParams

    code, out, _ = run(["generate", str(tiny_model_dir), "turn off the lights", "--json", "-n", "6", "--seed", "5",
                        "--temperature", "0.8", "--top-k", "40", "--top-p", "0.95", "--ignore-eos", "--logprobs", "2"],
                       capsys)
    assert code == 0
    got = json.loads(out)
    expected = LLM(tiny_model_dir).generate("turn off the lights", SamplingParams(
        max_tokens=6, seed=5, temperature=0.8, top_k=40, top_p=0.95, ignore_eos=True, logprobs=2))
    assert got["token_ids"] == expected.token_ids and got["text"] == expected.text
    assert got["finish_reason"] == "length" and len(got["logprobs"]) == 6 and len(got["logprobs"][0]["top"]) == 2


def test_generate_chat_flag_and_stdin_prompt(tiny_model_dir, capsys, monkeypatch):
    code, out, _ = run(["generate", str(tiny_model_dir), "-", "--chat", "--system", "짧게", "--json", "-n", "3"],
                       capsys, stdin="거실 불 켜줘", monkeypatch=monkeypatch)
    assert code == 0 and json.loads(out)["prompt_tokens"] > 10


def test_chat_session_with_reset_multiline_and_exit(tiny_model_dir, capsys, monkeypatch):
    session = '안녕\n"""\n첫 줄\n둘째 줄\n"""\n/reset\nturn on \\\nthe lights\n/exit\n'
    code, out, err = run(["chat", str(tiny_model_dir), "-n", "4", "-t", "0", "--ignore-eos"], capsys,
                         stdin=session, monkeypatch=monkeypatch)
    assert code == 0
    assert out.count("\n\n") == 3  # three replies: the one-liner, the multi-line message, the continued line
    assert "conversation cleared" in err


def test_chat_ends_at_eof(tiny_model_dir, capsys, monkeypatch):
    code, _, _ = run(["chat", str(tiny_model_dir), "-n", "2"], capsys, stdin="hi\n", monkeypatch=monkeypatch)
    assert code == 0


def test_info_reads_only_metadata(tiny_model_dir, capsys):
    code, out, _ = run(["info", str(tiny_model_dir), "--json"], capsys)
    info = json.loads(out)
    assert code == 0
    assert info["architecture"] == "llama" and info["tied_embeddings"] and info["rope"]["type"] == "llama3"
    assert info["parameters"] == sum(p.numel() for p in __import__("ondol").LLM(tiny_model_dir).model.parameters()
                                     if p is not None) - 0  # tied weights are one tensor
    code, out, _ = run(["info", str(tiny_model_dir)], capsys)
    assert code == 0 and "parameters" in out and "memory needed" in out


def test_console_script_runs(tiny_model_dir):
    ondol = shutil.which("ondol", path=str(__import__("pathlib").Path(sys.executable).parent))
    r = subprocess.run([ondol, "info", str(tiny_model_dir), "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout)["format"] == "safetensors"


# --- user errors --------------------------------------------------------------------------------

def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _truncated(tmp_path, model):
    folder = _copy(model, tmp_path / "truncated")
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return folder


def _garbage(tmp_path, model):
    folder = _copy(model, tmp_path / "garbage")
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    return folder


def _pickle_only(tmp_path, model):
    folder = _copy(model, tmp_path / "pickle")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    return folder


def _edit_config(tmp_path, model, name, change):
    folder = _copy(model, tmp_path / name)
    cfg = json.loads((folder / "config.json").read_text())
    change(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


ERRORS = {
    "missing path": (lambda tmp, m: tmp / "does-not-exist", "does not exist"),
    "not a model folder": (lambda tmp, m: tmp, "not a model folder"),
    "truncated safetensors": (_truncated, "truncated"),
    "corrupt safetensors": (_garbage, "corrupt safetensors header"),
    "pickle weights": (_pickle_only, "never unpickles"),
    "pickle file": (lambda tmp, m: (tmp / "model.pth").write_bytes(b"\x80\x04") and tmp / "model.pth", "pickle"),
    "unsupported architecture": (lambda tmp, m: _edit_config(tmp, m, "arch", lambda c: c.update(
        architectures=["GPT2LMHeadModel"])), "GPT2LMHeadModel' is not supported; ondol runs LlamaForCausalLM"),
    "unsupported rope": (lambda tmp, m: _edit_config(tmp, m, "rope", lambda c: c.update(
        rope_parameters={"rope_type": "longrope", "rope_theta": 1e4})), "rope type 'longrope' is not supported"),
    "corrupt gguf": (lambda tmp, m: (tmp / "x.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40) and tmp / "x.gguf",
                     "truncated or corrupt"),
    "not gguf": (lambda tmp, m: (tmp / "y.gguf").write_bytes(b"hello world") and tmp / "y.gguf", "not a valid GGUF"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_user_errors_give_a_message_and_exit_1(case, tiny_model_dir, tmp_path, capsys):
    make, message = ERRORS[case]
    path = make(tmp_path, tiny_model_dir)
    for argv in (["info", str(path)], ["generate", str(path), "hi", "-n", "1"]):
        code, out, err = run(argv, capsys)
        assert code == 1, (argv, err)
        assert err.startswith("error: ") and message in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_prompt_longer_than_context(tiny_model_dir, capsys):
    # Over the context in tokens: counted after tokenizing.
    code, _, err = run(["generate", str(tiny_model_dir), "turn off all the bedroom lights " * 2, "--max-model-len", "16"],
                       capsys)
    assert code == 1 and "the context holds 16" in err
    # So long in characters that no tokenization could fit it: refused before tokenizing.
    code, _, err = run(["generate", str(tiny_model_dir), "거실 불 꺼줘 " * 200, "--max-model-len", "16"], capsys)
    assert code == 1 and "1600 characters, more than the 304 that can fit the context of 16 tokens" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_flag_values(tiny_model_dir, capsys):
    code, _, err = run(["generate", str(tiny_model_dir), "hi", "--top-p", "0"], capsys)
    assert code == 1 and "top_p" in err
    with pytest.raises(SystemExit) as e:
        main(["generate", str(tiny_model_dir), "hi", "--temperature", "hot"])
    assert e.value.code == 2


def test_generate_with_a_json_schema(tiny_model_dir, tmp_path, capsys):
    schema = {"type": "object", "properties": {"방": {"enum": ["거실", "침실"]}, "on": {"type": "boolean"}},
              "required": ["방", "on"], "additionalProperties": False}
    (tmp_path / "s.json").write_text(json.dumps(schema, ensure_ascii=False), encoding="utf-8")
    for value in (str(tmp_path / "s.json"), json.dumps(schema)):
        assert main(["generate", str(tiny_model_dir), "불 켜줘", "--json-schema", value, "-t", "1.0", "--seed", "3"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["방"] in ("거실", "침실") and isinstance(doc["on"], bool)
    (tmp_path / "g.lark").write_text('start: "네" | "아니요"\n', encoding="utf-8")
    assert main(["generate", str(tiny_model_dir), "?", "--grammar-file", str(tmp_path / "g.lark")]) == 0
    assert capsys.readouterr().out.strip() in ("네", "아니요")


@pytest.mark.parametrize("flags, message", [
    (["--json-schema", '{"type": "array", "uniqueItems": true}'], "uniqueItems"),
    (["--json-schema", "missing.json"], "no such file"),
    (["--grammar-file", "missing.lark"], "no such file"),
])
def test_bad_structure_flags(tiny_model_dir, capsys, flags, message):
    assert main(["generate", str(tiny_model_dir), "x", *flags]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_home_command(tmp_path, capsys):
    demo = str(Path(__file__).resolve().parents[2] / "examples" / "demo-home.yaml")
    assert main(["home", "show", demo]) == 0
    assert "거실 에어컨" in capsys.readouterr().out
    store = f"sqlite:///{tmp_path / 'h.db'}"
    action = '{"action": "turn_on", "target": {"area": "거실", "kind": "조명"}}'
    assert main(["home", "show", demo, "--store", store, "--apply", action]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert main(["home", "show", demo, "--store", store, "--apply", '{"action": "fly", "target": {"device": "TV"}}']) == 1
    assert "does not support" in json.loads(capsys.readouterr().out)["error"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("home: x\ndevices:\n  - id: a\n    type: aircon\n", encoding="utf-8")
    assert main(["home", "show", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml:4" in err and "air_conditioner" in err and "Traceback" not in err
