from __future__ import annotations

from pathlib import Path

from chainwatch.registry.npmrc import NpmConfig, parse_npmrc


def test_parse_expands_environment_and_strips_quotes() -> None:
    cfg = parse_npmrc('; c\n# c\nregistry="https://r.invalid/"\n//r.invalid/:_authToken=${TOK}\n',
                      {"TOK": "s3cret"})
    assert cfg == {"registry": "https://r.invalid/", "//r.invalid/:_authToken": "s3cret"}


def test_precedence_flag_env_project_user(tmp_path: Path) -> None:
    user = tmp_path / "user.npmrc"
    user.write_text("registry=https://user.invalid/\n")
    project = tmp_path / "proj"
    project.mkdir()
    (project / "package.json").write_text("{}")
    (project / ".npmrc").write_text("registry=https://project.invalid\n")
    env = {"NPM_CONFIG_USERCONFIG": str(user)}
    assert NpmConfig.load(cwd=project, env=env).registry == "https://project.invalid/"
    env["npm_config_registry"] = "https://env.invalid/"
    assert NpmConfig.load(cwd=project, env=env).registry == "https://env.invalid/"
    assert NpmConfig.load("https://flag.invalid", cwd=project, env=env).registry == (
        "https://flag.invalid/")


def test_scoped_registry_and_longest_auth_match(tmp_path: Path) -> None:
    rc = tmp_path / ".npmrc"
    rc.write_text(
        "@acme:registry=https://npm.acme.invalid/private\n"
        "//npm.acme.invalid/:_authToken=broad\n"
        "//npm.acme.invalid/private/:_authToken=narrow\n"
    )
    (tmp_path / "package.json").write_text("{}")
    cfg = NpmConfig.load(cwd=tmp_path, env={"NPM_CONFIG_USERCONFIG": str(tmp_path / "none")})
    assert cfg.registry_for("@acme/widget") == "https://npm.acme.invalid/private/"
    assert cfg.registry_for("lodash") == "https://registry.npmjs.org/"
    assert cfg.auth_header("https://npm.acme.invalid/private/@acme%2fwidget") == "Bearer narrow"
    assert cfg.auth_header("https://npm.acme.invalid/other/x") == "Bearer broad"
    assert cfg.auth_header("https://registry.npmjs.org/lodash") is None
