"""Configuration: discovery, validation (unknown keys are errors) and precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clihelp import project, run

from rfalint.config import Settings, find_config, load_settings, parse_settings, tomllib
from rfalint.errors import UsageError

BASIC = """
    [tool.rfalint]
    res = 8
    fail-on = "error"

    [[tool.rfalint.models]]
    target = "models.py:Deep"
"""


def findings(result) -> list[tuple[str, str | None]]:
    data = json.loads(result.out)
    return [(f["code"], f["layer"]) for m in data["models"] for f in m["findings"]]


# ---------------------------------------------------------------------- discovery


def test_config_found_upward_and_targets_relative_to_it(tmp_path, monkeypatch):
    project(tmp_path, BASIC)
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert find_config(sub) == tmp_path / "pyproject.toml"
    result = run("check", "--format", "json")
    assert result.code == 1, result.err
    assert ("RFA101", "body.4") in findings(result)


def test_rfalint_toml_wins_over_pyproject_in_the_same_directory(tmp_path):
    project(tmp_path, BASIC)
    (tmp_path / "rfalint.toml").write_text('res = 16\n')
    settings = load_settings(start=tmp_path)
    assert settings.path == (tmp_path / "rfalint.toml").resolve()
    assert settings.res == "16" and settings.models == ()


def test_pyproject_without_rfalint_table_is_skipped(tmp_path):
    project(tmp_path, BASIC)
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert find_config(inner) == tmp_path / "pyproject.toml"


def test_no_config_gives_defaults(tmp_path):
    assert load_settings(start=tmp_path) == Settings()


def test_explicit_config_overrides_search(tmp_path, monkeypatch):
    project(tmp_path, BASIC)
    other = tmp_path / "ci.toml"
    other.write_text('res = 4\n[[models]]\ntarget = "models.py:shallow"\n')
    monkeypatch.chdir(tmp_path)
    assert run("check").code == 1  # pyproject: Deep at 8 px has a tail
    result = run("check", "--config", "ci.toml", "--format", "json")
    assert result.code == 0, result.err  # shallow at 4 px is clean
    assert json.loads(result.out)["models"][0]["model"] == "models.py:shallow"


def test_explicit_pyproject_without_table_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    monkeypatch.chdir(tmp_path)
    result = run("check", "--config", "pyproject.toml", "--show-settings")
    assert result.code == 2
    assert "no [tool.rfalint] table" in result.err


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize("config, expected", [
    ("[tool.rfalint]\ncolour = 1\n", "unknown key 'tool.rfalint.colour'"),
    ("[tool.rfalint]\n[[tool.rfalint.models]]\ntarget = 'm.py'\nresolution = 3\n",
     "unknown key 'resolution'"),
    ("[tool.rfalint]\nfail-on = 'sometimes'\n", "tool.rfalint.fail-on must be one of"),
    ("[tool.rfalint]\nselect = ['XYZ']\n", "'XYZ' matches no rule code"),
    ("[tool.rfalint]\nselect = 'RFA'\n", "tool.rfalint.select must be a list"),
    ("[tool.rfalint]\nres = 'big'\n", "tool.rfalint.res must be N, HxW or DxHxW"),
    ("[tool.rfalint]\nres = 0\n", "tool.rfalint.res must be N, HxW or DxHxW"),
    ("[tool.rfalint.per-layer-ignores]\n'a.*' = 'RFA101'\n", "per-layer-ignores must be"),
    ("[tool.rfalint]\n[[tool.rfalint.models]]\nres = 3\n", "'target' is required"),
    ("[tool.rfalint]\n[[tool.rfalint.models]]\ntarget = 'm.py'\nargs = 3\n",
     "'args' must be a table"),
    ("[tool.rfalint\n", "invalid TOML"),
])
def test_bad_config_is_one_line_exit_2(tmp_path, monkeypatch, config, expected):
    (tmp_path / "pyproject.toml").write_text(config)
    monkeypatch.chdir(tmp_path)
    result = run("check", "--show-settings")
    assert result.code == 2
    assert expected in result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert str(tmp_path / "pyproject.toml") in result.err


def test_unknown_key_in_rfalint_toml_names_the_bare_key(tmp_path):
    (tmp_path / "rfalint.toml").write_text("sellect = ['RFA']\n")
    with pytest.raises(UsageError, match="unknown key 'sellect'"):
        load_settings(start=tmp_path)


def test_cli_selector_is_validated_too(tmp_path, monkeypatch):
    project(tmp_path, BASIC)
    monkeypatch.chdir(tmp_path)
    result = run("check", "--select", "RFB")
    assert result.code == 2 and "--select: 'RFB' matches no rule code" in result.err


def test_no_model_and_no_config_is_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("check")
    assert result.code == 2
    assert "no MODEL given and no [[tool.rfalint.models]] configured" in result.err


def test_arg_without_model_is_exit_2(tmp_path, monkeypatch):
    project(tmp_path, BASIC)
    monkeypatch.chdir(tmp_path)
    result = run("check", "--arg", "depth=2")
    assert result.code == 2 and "--arg needs a MODEL" in result.err


def test_configured_model_without_resolution_names_it(tmp_path, monkeypatch):
    project(tmp_path, "[[tool.rfalint.models]]\ntarget = 'models.py:Deep'\n")
    monkeypatch.chdir(tmp_path)
    result = run("check")
    assert result.code == 2 and "models.py:Deep: no resolution" in result.err


def test_load_error_of_a_configured_model_names_it(tmp_path, monkeypatch):
    project(tmp_path, "[tool.rfalint]\nres = 8\n[[tool.rfalint.models]]\n"
                      "target = 'models.py:nope'\n")
    monkeypatch.chdir(tmp_path)
    result = run("check")
    assert result.code == 2 and "models.py:nope" in result.err and "no attribute" in result.err


# ---------------------------------------------------------------------- precedence


def show(*args: str) -> dict:
    result = run("check", "--show-settings", *args)
    assert result.code == 0, result.err
    return tomllib.loads(result.out)


def test_show_settings_reports_config_values(tmp_path, monkeypatch):
    project(tmp_path, """
        [tool.rfalint]
        res = 8
        select = ["RFA1"]
        ignore = ["RFA105"]
        fail-on = "warning"
        [tool.rfalint.per-layer-ignores]
        "body.*" = ["RFA103"]
        [[tool.rfalint.models]]
        target = "models.py:Deep"
        args = { depth = 3 }
        [[tool.rfalint.models]]
        target = "models.py:shallow"
        res = "16x12"
    """)
    monkeypatch.chdir(tmp_path)
    assert show() == {
        "res": 8, "select": ["RFA1"], "ignore": ["RFA105"], "fail-on": "warning",
        "per-layer-ignores": {"body.*": ["RFA103"]},
        "models": [{"target": "models.py:Deep", "res": 8, "args": {"depth": 3}},
                   {"target": "models.py:shallow", "res": "16x12", "args": {}}],
    }


def test_cli_flags_override_config(tmp_path, monkeypatch):
    project(tmp_path, """
        [tool.rfalint]
        res = 8
        select = ["RFA1"]
        fail-on = "warning"
        [[tool.rfalint.models]]
        target = "models.py:Deep"
        [[tool.rfalint.models]]
        target = "models.py:shallow"
        res = 16
    """)
    monkeypatch.chdir(tmp_path)
    settings = show("--res", "4", "--select", "RFA101,RFA2", "--fail-on", "never",
                    "--ignore", "RFA201")
    assert settings["res"] == 4
    assert [m["res"] for m in settings["models"]] == [4, 4]  # --res applies to every model
    assert settings["select"] == ["RFA101", "RFA2"]
    assert settings["ignore"] == ["RFA201"]
    assert settings["fail-on"] == "never"
    # A MODEL argument replaces the configured models; the config's other settings stay.
    settings = show("models.py:Deep", "--arg", "depth=2")
    assert settings["models"] == [{"target": "models.py:Deep", "res": 8, "args": {"depth": 2}}]
    assert settings["fail-on"] == "warning"


def test_precedence_changes_the_outcome(tmp_path, monkeypatch):
    project(tmp_path, """
        [tool.rfalint]
        res = 16
        fail-on = "warning"
        [[tool.rfalint.models]]
        target = "models.py:shallow"
    """)
    monkeypatch.chdir(tmp_path)
    assert run("check").code == 1  # under-coverage warning at 16 px, fail-on warning
    assert run("check", "--fail-on", "error").code == 0  # the flag beats the config
    assert run("check", "--res", "4").code == 0  # clean at 4 px


def test_select_ignore_and_per_layer_ignores_from_config(tmp_path, monkeypatch):
    project(tmp_path, BASIC)
    monkeypatch.chdir(tmp_path)
    codes = {code for code, _ in findings(run("check", "--format", "json"))}
    assert codes == {"RFA101", "RFA105"}
    (tmp_path / "pyproject.toml").write_text(BASIC.replace(
        "[[tool.rfalint.models]]",
        'ignore = ["RFA105"]\n[tool.rfalint.per-layer-ignores]\n"body.5" = ["RFA1"]\n'
        "[[tool.rfalint.models]]"))
    result = run("check", "--format", "json")
    assert findings(result) == [("RFA101", "body.4")]
    assert result.code == 1
    (tmp_path / "pyproject.toml").write_text(BASIC.replace(
        "[[tool.rfalint.models]]",
        '[tool.rfalint.per-layer-ignores]\n"body.*" = ["RFA101"]\n[[tool.rfalint.models]]'))
    assert run("check").code == 0  # every error ignored on the matching layers


def test_args_from_config_reach_the_factory(tmp_path, monkeypatch):
    project(tmp_path, BASIC.replace('target = "models.py:Deep"',
                                    'target = "models.py:Deep"\nargs = { depth = 2 }'))
    monkeypatch.chdir(tmp_path)
    result = run("check", "--format", "json")
    assert len(json.loads(result.out)["models"][0]["sequence"]) == 2


def test_show_settings_round_trips_through_the_parser(tmp_path):
    settings = parse_settings({
        "res": "224x160", "select": ["RFA1", "RFA2"], "ignore": ["RFA105"], "fail-on": "info",
        "per-layer-ignores": {"layer4.*": ["RFA103"], 'odd "name"': ["RFA1"]},
        "models": [{"target": "m.py:f", "args": {"flag": True, "w": 0.5, "s": "32",
                                                 "xs": [1, 2]}}],
    }, tmp_path / "rfalint.toml", where="")
    text = settings.to_toml()
    again = parse_settings(tomllib.loads(text), tmp_path / "rfalint.toml", where="")
    assert again == settings
    assert not isinstance(tomllib.loads(text)["models"][0]["args"]["s"], int)


def test_configured_paths_are_resolved_against_the_config(tmp_path):
    settings = parse_settings({"models": [{"target": "nets/a.py:f"}, {"target": "pkg.mod:f"}]},
                              tmp_path / "pyproject.toml")
    file_model, dotted = settings.models
    assert file_model.load_target() == str(tmp_path / "nets/a.py") + ":f"
    assert dotted.load_target() == "pkg.mod:f"
    assert Path(file_model.load_target().rpartition(":")[0]).is_absolute()
