"""The pod runner's base image comes from images/Dockerfile.base itself, parsed as Docker reads it."""

from __future__ import annotations

import pytest

from sdworker_tools.podrunner import image


def test_the_real_base_image_declares_user_workdir_home_and_interpreter() -> None:
    base = image.load()
    assert base.uid_gid() == (10001, 10001)
    assert base.workdir == "/home/sd"
    assert base.env["HOME"] == "/home/sd"
    assert base.python == "/usr/bin/python3.10"
    assert [(login.name, login.uid, login.gid, login.home) for login in base.logins] == [
        ("sd", 10001, 10001, "/home/sd")
    ]


def test_later_instructions_win_and_a_new_stage_starts_over() -> None:
    text = """
    FROM builder AS build
    USER 5
    WORKDIR /build
    FROM base
    # a comment
    ENV A=1 \\
        B="two words"
    ENV LEGACY value with spaces
    RUN apt-get update \\
     && useradd --uid 7 --user-group --home-dir /srv/app app && true
    USER app
    WORKDIR /srv
    WORKDIR app
    """
    base = image.parse(text)
    assert base.workdir == "/srv/app"  # a relative WORKDIR is relative to the previous one
    assert base.env["A"] == "1"
    assert base.env["B"] == "two words"
    assert base.env["LEGACY"] == "value with spaces"
    assert base.uid_gid() == (7, 7)  # a user name resolves through the useradd the image ran


def test_defaults_without_user_or_workdir_are_root_and_slash() -> None:
    base = image.parse("FROM scratch\n")
    assert base.uid_gid() == (0, 0)
    assert base.workdir == "/"
    with pytest.raises(image.DockerfileError, match="SDWORKER_PYTHON"):
        _ = base.python


def test_an_unknown_user_name_cannot_be_resolved() -> None:
    assert image.parse("FROM x\nUSER nobody-here\n").uid_gid() == (None, 0)


def test_env_without_key_value_pairs_is_an_error_naming_it() -> None:
    with pytest.raises(image.DockerfileError, match="KEY=VALUE"):
        image.parse("FROM x\nENV A=1 B\n")
